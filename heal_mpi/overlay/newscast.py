"""Newscast peer sampling (PeerSim `SimpleNewscast`, protocols.md §3.1) in snapshot semantics.

Owns the local nodes' caches of (id, timestamp) pairs, freshest first; timestamps are
round numbers. One `step` = one cycle (design.md §8):

1. prune: drop dead and departed ids; churn newcomers get `c` random live links, stamped now.
2. every live node A picks a uniformly random entry B of its (pruned, so live) cache and
   sends B its cache; B answers with its own. Both read the caches of the cycle start.
3. every live node's new cache merges its own cache, the cache it got back, every cache
   it received as a target, and a fresh descriptor (peer, now) of every partner; no self,
   no duplicates (an id keeps its freshest stamp); freshest first, ties by a keyed coin
   (PeerSim alternates a coin); the first `c` are kept.

Message loss (through the channel): a lost request means no exchange; a lost reply means
only B merged. Replies pass through `channel.alter` ("newscast-reply").
Simulated sizes: HEADER_BYTES + 16 bytes (id + timestamp) per cache entry carried.
No hubs: `hub_lists()` is `[n_local, 0]` and `is_hub()` all False.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay.base import Overlay
from heal_mpi.overlay.common import ID_BYTES, compact_rows, local_mask, row_lengths, sample_from_pool
from heal_mpi.rng import uniform

ENTRY_BYTES = 2 * ID_BYTES  # id + timestamp


class Newscast(Overlay):
    """Newscast on this rank's nodes. Collective over `world.comm`: every rank must call.

    Args:
        world: the World; channel: loses or alters the simulated messages;
        cache_size: c; seed: the run's seed; hub_width: width of the
            `hub_ids` metric row (kept equal to overlay.hubs so every overlay writes one shape).

    Attributes:
        ids: int64 [n_local, c], cache ids freshest first, -1 padded.
        stamps: int64 [n_local, c], their timestamps (rounds).
        alive: bool [N]; in_degree: int64 [N], occurrences in the live nodes' caches.
    """

    STATE = {"ids": np.int64, "stamps": np.int64, "in_degree": np.int64, "alive": bool}
    ITEM_BYTES = ENTRY_BYTES

    def __init__(self, world, channel: Channel, cache_size: int, seed: int, hub_width: int = 1, comm=None):
        super().__init__(world, channel, hub_width, comm)
        self.c, self.seed = cache_size, seed
        n, local = world.n_nodes, world.local_slots
        self.ids = sample_from_pool(seed, "newscast-init", (local,), np.arange(n, dtype=np.int64), cache_size, local)
        self.stamps = np.zeros_like(self.ids)
        self.in_degree, _ = self.count_in_degree(self.ids)

    @classmethod
    def from_config(cls, cfg, world, channel: Channel, comm=None) -> "Newscast":
        newscast = cls(world, channel, cfg.overlay.cache_size, cfg.run.seed, hub_width=cfg.overlay.hubs, comm=comm)
        newscast.set_order(cfg.overlay.semantics, cfg.overlay.substeps)
        return newscast

    def step(self, ctx: RoundContext) -> None:
        """One Newscast cycle: every live node's exchange at once (snapshot), or in turns on the caches
        the turns before left (sequential). Collective over `world.comm`: every rank must call."""
        self.new_cycle(ctx)
        self._prune(ctx)
        for rows in self.substeps(ctx):
            self._turn(ctx, rows)
        lo = self.world.slot_lo
        self.in_degree, _ = self.count_in_degree(self.ids[ctx.alive[lo:self.world.slot_hi]])

    def _turn(self, ctx: RoundContext, rows: np.ndarray) -> None:
        """The exchanges the local live `rows` start. Collective: every rank must call, maybe with no rows."""
        lo = self.world.slot_lo
        a = rows + lo
        length = row_lengths(self.ids[rows])  # [n] (compacted: the valid entries come first)
        pick = np.minimum((uniform(ctx.seed, "newscast-peer", ctx.rnd, a) * length).astype(np.int64),
                          np.maximum(length - 1, 0))
        has = length > 0
        rows, a, b = rows[has], a[has], self.ids[rows[has], pick[has]]
        lost_req, lost_rep = self.lost(ctx, "newscast-request", a, b), self.lost(ctx, "newscast-reply", b, a)
        self.count(a, sent=True, n_items=row_lengths(self.ids[rows]))
        go = ~lost_req
        payload = np.concatenate([a[go, None], self.ids[rows[go]], self.stamps[rows[go]]], axis=1)  # [k, 1+2c]
        self._inbox = np.zeros((0, 1 + 2 * self.c), dtype=np.int64)
        self._rnd = ctx.rnd
        reply = self.comm.request(b[go], payload, self._serve, "newscast-exchange")  # [k, 2c]
        heard = ~lost_rep[go]
        got_rows, got = rows[go][heard], reply[heard]
        self.count(a[go][heard], sent=False, n_items=row_lengths(got[:, :self.c]))
        touched = None if self.semantics == "snapshot" else np.union1d(got_rows, self._inbox[:, 0])
        self._merge(ctx, got_rows, b[go][heard], got, touched)

    def _serve(self, local_idx: np.ndarray, payload: np.ndarray) -> np.ndarray:
        """Passive side: keep the requests for the merge; answer with the cache as it is (the cycle's start,
        in snapshot semantics)."""
        self._inbox = np.concatenate([local_idx[:, None], payload], axis=1)  # [m, 2 + 2c]: row, sender, cache
        lo = self.world.slot_lo
        self.count(local_idx + lo, sent=False, n_items=row_lengths(payload[:, 1:1 + self.c]))
        self.count(local_idx + lo, sent=True, n_items=row_lengths(self.ids[local_idx]))
        reply = np.concatenate([self.ids[local_idx], self.stamps[local_idx]], axis=1)
        if self.channel.alterations:
            reply = self.channel.alter("newscast-reply", local_idx + lo, reply, self._rnd, receivers=payload[:, 0])
        return reply

    def _prune(self, ctx: RoundContext) -> None:
        lo, hi = self.world.slot_lo, self.world.slot_hi
        self.ids = self.prune_departed(self.ids, ctx)
        keep = self.ids >= 0
        self.stamps = compact_rows(np.where(keep, self.stamps, -1))
        self.ids = compact_rows(self.ids)
        new = local_mask(ctx.joined, lo, hi)
        if len(new):
            ids = new + lo
            self.ids[new] = sample_from_pool(ctx.seed, "newscast-join", (ctx.rnd, ids, ctx.incarnation[ids]),
                                             np.flatnonzero(ctx.alive), self.c, ids)
            self.stamps[new] = np.where(self.ids[new] >= 0, ctx.rnd, -1)

    def _merge(self, ctx, got_rows, got_from, got, touched=None) -> None:
        """New caches: own + answer + inbox + partners' fresh descriptors, freshest c. Every local row
        (snapshot: each merges once a cycle), or only the `touched` rows (a sequential turn)."""
        c, lo, rnd = self.c, self.world.slot_lo, ctx.rnd
        inbox = self._inbox
        touched = np.arange(len(self.ids)) if touched is None else touched.astype(np.int64)
        own_r = np.repeat(touched, c)
        parts_r = [own_r, np.repeat(got_rows, c), got_rows, np.repeat(inbox[:, 0], c), inbox[:, 0]]
        parts_i = [self.ids[touched].ravel(), got[:, :c].ravel(), got_from, inbox[:, 2:2 + c].ravel(), inbox[:, 1]]
        parts_t = [self.stamps[touched].ravel(), got[:, c:].ravel(), np.full(len(got_rows), rnd),
                   inbox[:, 2 + c:].ravel(), np.full(len(inbox), rnd)]
        r, i, t = (np.concatenate(p).astype(np.int64) for p in (parts_r, parts_i, parts_t))
        ok = (i >= 0) & (i != r + lo)
        n, span = self.world.n_nodes, rnd + 2  # stamps lie in [0, rnd]
        key = np.sort(((r[ok] * n + i[ok]) * span) + (rnd - t[ok]))  # by (row, id), freshest first
        pair = key // span
        first = np.concatenate([[True], pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, bool)
        r, i, t = pair[first] // n, pair[first] % n, rnd - key[first] % span  # one entry per (row, id)
        coin = (uniform(ctx.seed, "newscast-tie", rnd, r + lo, i) * 2**20).astype(np.int64)
        order = np.argsort(((r * span + (rnd - t)) << 20) | coin, kind="stable")  # freshest first, keyed coin
        r, i, t = r[order], i[order], t[order]
        start = np.searchsorted(r, np.arange(len(self.ids)))
        rank = np.arange(len(r)) - start[r]
        keep = rank < c
        self.ids[touched], self.stamps[touched] = -1, -1
        self.ids[r[keep], rank[keep]], self.stamps[r[keep], rank[keep]] = i[keep], t[keep]

    # ------------------------------------------------------------------ the API
    def neighbours(self) -> np.ndarray:
        """int64 [n_local, c]: the cache ids, freshest first, -1 padded."""
        return self.ids

    def hub_lists(self) -> np.ndarray:
        """int64 [n_local, 0]: Newscast elects no hubs."""
        return np.zeros((self.world.n_local, 0), dtype=np.int64)

    def random_peers(self) -> np.ndarray:
        """int64 [n_local, c]: the whole cache (it is a random sample)."""
        return self.ids

    def snapshot(self) -> np.ndarray:
        """int64 [n_local, c]: a copy of the cache ids for /overlay/cache."""
        return self.ids.copy()
