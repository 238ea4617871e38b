"""Elevator hub sampling (protocols.md §2.7-2.8) on a rank's share of the nodes.

Owns the local nodes' caches and backward sets. One `step` = one cycle for every local
live node. In snapshot semantics (the default) every node reads the caches as they were at
the start of the cycle; new caches are installed together at the end. In sequential
semantics (`overlay.semantics`, PeerSim's cycle order) the nodes take turns, in groups over a
keyed permutation (`Overlay.substeps`): a turn reads the caches and backward sets the turns
before it left, replies included, and installs its nodes' new caches at its end. Within a
turn the two phases run one after the other, as in the synchronous model of the theory: the
requesters of the CACHE phase are in the backward sets when the BACKWARD phase reads them.

1. prune: drop dead and departed ids from the caches (backward sets: lazily, below); churn newcomers get
   `c` random live links and an empty backward set.
2. CACHE_REQUEST to every cache member; the member records the requester in its backward
   set and answers with its cache.
3. frequency map over the answers; preferred = its top-h (or top-c), count desc then id asc.
4. BACKWARD_REQUEST to every preferred node; each answers a uniform random sample of at
   most `max_backward` live entries of its backward set.
5. new cache = preferred[:h] in slots [0, h) + the first c-h usable entries of the
   shuffled answers in slots [h, c), topped up from the frequency map (uniform over its
   distinct keys). Usable = not the node itself, not in its hub part, not seen before.

Decisions (design.md §8 and these):
- Caches hold no duplicate ids; a node may list itself among its hub entries, never among
  its random ones. Slots [0, h) are the hub list (-1 where fewer than h were preferred).
- Backward sets: a node's set is (a) every node that sent it a CACHE_REQUEST this cycle,
  however many, plus (b) the earlier recordings kept in a fixed-capacity ring
  `[n_local, cap]` of the `cap` most recent ones (`cap` = `backward_cap`, default
  max(2 * max_backward, 2c); keeping every recording forever would be O(N) per node).
  (a) makes a hub's set the whole live network, as with the paper's unbounded lists, so
  the random links stay uniform; (b) gives the history a newly preferred node answers
  from. Pruning is lazy: the set keeps the distinct ring ids that are alive and were
  recorded after their slot's current node joined, so recording costs O(requests).
  Recordings pushed out of the rings are counted in the `backward_evicted` metric.
- A node never messages itself: its own cache and backward set are read directly,
  unrecorded, uncounted and never lost.
- Message loss: every simulated request and every reply goes through the channel
  (`channel.delivered`, keyed draws). A lost request is neither recorded nor answered; a
  lost reply was recorded but gives the requester nothing. Cache and backward replies of
  the senders the channel says forge ("cache-reply", "backward-reply")
  are replaced by its forgery, one per (sender, requester), on the requester's side.
- A node whose new cache would be empty (every answer lost) keeps its pruned old cache.
- Simulated sizes: a message is `HEADER_BYTES` (16) + 8 bytes per id it carries.

MPI traffic (not the simulated one): requests go to the target's owner as (target,
requester) pairs; the owner answers each requesting rank once per distinct target, with
the target's cache (CACHE) or its whole backward set (BACKWARD). The requester rank then
draws each node's own sample from it with the node's keyed draws, so the answer a node
gets is a function of (target state, requester, round) only, never of the rank layout.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.metrics import RoundMetrics
from heal_mpi.overlay import elevator_ops as ops
from heal_mpi.overlay.base import Overlay
from heal_mpi.overlay.common import compact_rows, local_mask, positions, row_lengths, sample_from_pool, sorted_unique
from heal_mpi.rng import uniform

CHUNK = 8192  # rows per frequency-map block: bounds the [rows, c*c] temporaries


class Elevator(Overlay):
    """Elevator on this rank's nodes. Collective over `world.comm`: every rank must call.

    Args:
        world: the World; channel: loses or alters the simulated messages;
        cache_size: c; hubs: h (< c); seed: the run's seed.
        preferred: "top-h" (BACKWARD_REQUEST to the h preferred) or "top-c" (to the c
            preferred; still only the first h enter the cache).
        max_backward: most ids one BACKWARD_REQUEST answer carries.
        backward_cap: capacity of a backward set (default max(2 * max_backward, 2c)).

    Attributes:
        cache: int64 [n_local, c], slots [0, h) hub entries, [h, c) random entries, -1 padded.
        back: int64 [n_local, cap], backward rings (requester ids), -1 = empty slot.
        back_t: int64 [n_local, cap], the round of each recording; head: int64 [n_local],
            next write position of each ring.
        since: int64 [N], the round each slot's current node joined (0 for the originals).
        alive: bool [N], liveness of the last cycle.
        in_degree: int64 [N], occurrences in the live nodes' caches (self-links count).
        backward_evicted: recordings pushed out of the backward rings in the last cycle (all ranks).
    """

    STATE = {"cache": np.int64, "back": np.int64, "back_t": np.int64, "head": np.int64, "since": np.int64,
             "in_degree": np.int64, "alive": bool}

    def __init__(self, world, channel: Channel, cache_size: int, hubs: int, seed: int, preferred: str = "top-h",
                 max_backward: int = 100, backward_cap: int | None = None, comm=None):
        super().__init__(world, channel, hub_width=hubs, comm=comm)
        self.c, self.h, self.seed, self.max_backward = cache_size, hubs, seed, max_backward
        self.k_pref = hubs if preferred == "top-h" else cache_size
        self.cap = backward_cap or max(2 * max_backward, 2 * cache_size)
        self.depth = min(self.k_pref * max_backward, 2 * (cache_size - hubs))  # buffer read depth
        n, local = world.n_nodes, world.local_slots
        # random k-out start, k = c: c distinct random other nodes each
        self.cache = sample_from_pool(seed, "elevator-init", (local,), np.arange(n, dtype=np.int64),
                                      cache_size, local)
        self.back = np.full((world.n_local, self.cap), -1, dtype=np.int64)
        self.back_t = np.zeros((world.n_local, self.cap), dtype=np.int64)
        self.head = np.zeros(world.n_local, dtype=np.int64)
        self.since = np.zeros(n, dtype=np.int64)
        self.backward_evicted = 0
        self.in_degree, _ = self.count_in_degree(self.cache)

    @classmethod
    def from_config(cls, cfg, world, channel: Channel, comm=None) -> "Elevator":
        ov, own = cfg.overlay, cfg.overlay.options
        elevator = cls(world, channel, ov.cache_size, ov.hubs, cfg.run.seed, preferred=own.preferred,
                       max_backward=own.max_backward, comm=comm)
        elevator.set_order(ov.semantics, ov.substeps)
        return elevator

    # ------------------------------------------------------------------ the cycle
    def step(self, ctx: RoundContext) -> None:
        """One Elevator cycle. Collective over `world.comm`: every rank must call."""
        self.new_cycle(ctx)
        self._prune(ctx)
        for hook in self.before_cycle:  # e.g. Lift (heal_mpi.adversary.wiring), before any node's step
            hook(self, ctx)
        empty = np.zeros(0, dtype=np.int64)
        self._requesters, evicted = (empty, empty), 0  # this cycle's requesters so far (row, requester), sorted
        for rows in self.substeps(ctx):  # one turn (snapshot), or the nodes' turns in this cycle's order
            evicted += self._turn(ctx, rows)
        live_caches = self.cache[np.flatnonzero(ctx.alive[self.world.slot_lo:self.world.slot_hi])]
        self.in_degree, extra = self.count_in_degree(live_caches, [evicted])
        self.backward_evicted = int(extra[0])

    def _turn(self, ctx: RoundContext, rows: np.ndarray) -> int:
        """The active thread of the local live `rows`, on the state left by the turns before: returns the
        backward entries evicted on this rank. Collective: every rank must call, maybe with no rows."""
        v = rows + self.world.slot_lo
        table, slot_row, evicted = self._cache_phase(ctx, rows, v)
        pref = np.full((len(rows), self.k_pref), -1, dtype=np.int64)
        for a in range(0, len(rows), CHUNK):  # the frequency maps, block by block
            pref[a:a + CHUNK] = ops.top_k(self._two_hop(table, slot_row[a:a + CHUNK]), self.k_pref,
                                          self.world.n_nodes)
        randoms = self._backward_phase(ctx, v, pref)
        self._rebuild(ctx, rows, v, pref, randoms, table, slot_row)
        return evicted

    def _prune(self, ctx: RoundContext) -> None:
        """Drop dead and departed ids; clear dead local nodes; wire the churn newcomers."""
        lo, hi = self.world.slot_lo, self.world.slot_hi
        self.cache = self.prune_departed(self.cache, ctx)
        self.since[ctx.joined] = ctx.rnd  # older records of these slots name the node that left
        new = local_mask(ctx.joined, lo, hi)
        if len(new):
            ids = new + lo
            pool = np.flatnonzero(ctx.alive)
            self.cache[new] = sample_from_pool(ctx.seed, "elevator-join", (ctx.rnd, ids, ctx.incarnation[ids]),
                                               pool, self.c, ids)
            self.back[new], self.head[new] = -1, 0

    def _send_pairs(self, tgt: np.ndarray, req: np.ndarray, step: str):
        """Ship (target, requester) pairs, sorted by target, to the targets' owners.

        Returns (incoming pairs per source rank, unique targets asked, in rank order).
        """
        order = np.argsort(tgt * self.world.n_nodes + req)
        tgt, req = tgt[order], req[order]
        cuts = np.searchsorted(tgt, self.world.bounds)  # owners are contiguous blocks of ids
        pairs = np.stack([tgt, req], axis=1)  # [m, 2]
        incoming = self.comm.exchange([pairs[cuts[r]:cuts[r + 1]] for r in range(self.world.size)], step)
        return incoming, sorted_unique(tgt)

    def _cache_phase(self, ctx, rows, v):
        """CACHE_REQUEST and replies. Returns (reply table [T, c], reply row per cache slot
        [n, c] (-1 = no reply), backward entries evicted on this rank)."""
        lo = self.world.slot_lo
        tgt = self.cache[rows]  # [n, c] snapshot
        r_idx, col = np.nonzero(tgt >= 0)
        t, q = tgt[r_idx, col], v[r_idx]
        lost_req, lost_rep = self.lost(ctx, "cache-request", q, t), self.lost(ctx, "cache-reply", t, q)
        self.count(q[q != t], sent=True)
        incoming, asked = self._send_pairs(t[~lost_req], q[~lost_req], "elevator-cache-request")

        arrived = np.concatenate(incoming)  # [M, 2] requests received here
        tl, rq = arrived[:, 0] - lo, arrived[:, 1]
        other = rq != tl + lo
        self.count(tl[other] + lo, sent=False)
        self.count(tl[other] + lo, sent=True, n_items=row_lengths(self.cache)[tl[other]])
        prio = uniform(ctx.seed, "elevator-backward-order", ctx.rnd, tl + lo, rq)
        replies = [self.cache[sorted_unique(a[:, 0]) - lo] for a in incoming]  # each asked cache once per rank
        evicted, rows_in, req_in = ops.record_backward(self.back, self.back_t, self.head, tl[other], rq[other],
                                                       prio[other], ctx.rnd, self.world.n_nodes)
        self._requesters = _merged(self._requesters, (rows_in, req_in), self.world.n_nodes)
        # ^ this cycle's requesters, all of them so far, sorted: part of the backward sets
        table = np.concatenate(self.comm.exchange(replies, "elevator-cache-reply"))

        got = ~lost_req & ~lost_rep
        slot_row = np.full(tgt.shape, -1, dtype=np.int64)
        slot_row[r_idx[got], col[got]] = positions(asked, t[got], self.world.n_nodes)
        table, slot_row = self._forged_cache_replies(ctx, table, slot_row, r_idx[got], col[got], t[got], q[got])
        heard = got & (q != t)
        self.count(q[heard], sent=False, n_items=row_lengths(table)[slot_row[r_idx[heard], col[heard]]])
        return table, slot_row, evicted

    def _forged_cache_replies(self, ctx, table, slot_row, rows, cols, t, q):
        """The replies of senders the channel says forge, one per (sender, requester), appended
        to the table; the requesters' slots point at them. A node's read of itself is no message."""
        if not self.channel.alterations:
            return table, slot_row
        forged = self.channel.forging("cache-reply", t) & (t != q)
        if not forged.any():
            return table, slot_row
        real = table[slot_row[rows[forged], cols[forged]]]
        fake = self.channel.alter("cache-reply", t[forged], real, ctx.rnd, receivers=q[forged])
        slot_row = slot_row.copy()
        slot_row[rows[forged], cols[forged]] = len(table) + np.arange(int(forged.sum()))
        return np.concatenate([table, fake]), slot_row

    def _two_hop(self, table: np.ndarray, slot_row: np.ndarray) -> np.ndarray:
        """[n, c*c] (int32 when ids fit): the caches each node received, concatenated (-1 = none)."""
        if len(table) == 0:
            return np.full((len(slot_row), self.c * self.c), -1, dtype=np.int64)
        small = table.astype(np.int32) if self.world.n_nodes < 2**31 - 1 else table
        got = np.where(slot_row[:, :, None] >= 0, small[np.maximum(slot_row, 0)], -1)  # [n, c, c]
        return got.reshape(len(slot_row), -1)

    def _backward_phase(self, ctx, v, pref) -> np.ndarray:
        """BACKWARD_REQUEST to the preferred nodes; returns the random part [n, c-h]."""
        lo = self.world.slot_lo
        r_idx, col = np.nonzero(pref >= 0)
        t, q = pref[r_idx, col], v[r_idx]
        lost_req, lost_rep = self.lost(ctx, "backward-request", q, t), self.lost(ctx, "backward-reply", t, q)
        self.count(q[q != t], sent=True)
        incoming, asked = self._send_pairs(t[~lost_req], q[~lost_req], "elevator-backward-request")
        every = np.unique(np.concatenate([sorted_unique(a[:, 0]) for a in incoming])) - lo  # rows asked by anyone
        lens, ids = ops.backward_sets(self.back, self.back_t, every, *self._requesters, ctx.alive, self.since)
        owner_row = np.repeat(np.arange(len(every)), lens)  # [sum(lens)] which row each id belongs to
        outgoing = []
        for a in incoming:  # one answer per (requesting rank, distinct target): the whole set
            tl, rq = a[:, 0] - lo, a[:, 1]
            other = rq != tl + lo
            self.count(tl[other] + lo, sent=False)
            sample = np.minimum(lens[np.searchsorted(every, tl[other])], self.max_backward)
            self.count(tl[other] + lo, sent=True, n_items=sample)
            uniq = np.searchsorted(every, sorted_unique(tl))
            outgoing.append(np.concatenate([lens[uniq], ids[np.isin(owner_row, uniq)]]))
        sizes, flat, offsets = self._unpack_sets(self.comm.exchange(outgoing, "elevator-backward-reply"), asked)

        got = ~lost_req & ~lost_rep
        which = np.full(pref.shape, -1, dtype=np.int64)  # [n, K] index into `asked`
        which[r_idx[got], col[got]] = positions(asked, t[got], self.world.n_nodes)
        sizes, flat, offsets = self._forged_backward_replies(ctx, sizes, flat, offsets, which, r_idx[got], col[got],
                                                             t[got], q[got])
        m = np.where(which >= 0, sizes[np.maximum(which, 0)], 0) if len(sizes) else np.zeros_like(which)  # [n, K]
        heard = got & (q != t)
        self.count(q[heard], sent=False, n_items=np.minimum(m[r_idx[heard], col[heard]], self.max_backward))
        src, pos = ops.read_backward_buffer(ctx.seed, ctx.rnd, v, m, self.max_backward, self.depth)
        w = np.take_along_axis(which, np.maximum(src, 0), axis=1)  # [n, D]
        at = np.minimum(offsets[np.maximum(w, 0)] + np.maximum(pos, 0), len(flat) - 1)  # masked slots may point past
        entries = np.where(src >= 0, flat[at] if len(flat) else -1, -1)
        return ops.pick_random_part(entries, v, pref[:, :self.h], self.c - self.h)

    def _forged_backward_replies(self, ctx, sizes, flat, offsets, which, rows, cols, t, q):
        """Forged backward replies, one per (sender, requester), appended as extra sets that the
        requesters' `which` entries point at (changed in place)."""
        if not self.channel.alterations:
            return sizes, flat, offsets
        forged = self.channel.forging("backward-reply", t) & (t != q)
        if not forged.any():
            return sizes, flat, offsets
        fake = self.channel.alter("backward-reply", t[forged], None, ctx.rnd, receivers=q[forged])
        lens = row_lengths(fake)
        which[rows[forged], cols[forged]] = len(sizes) + np.arange(len(fake))
        offsets = np.concatenate([offsets, len(flat) + np.cumsum(lens) - lens]).astype(np.int64)
        flat = np.concatenate([flat, compact_rows(fake)[np.arange(fake.shape[1])[None, :] < lens[:, None]]])
        return np.concatenate([sizes, lens]).astype(np.int64), flat, offsets

    def _unpack_sets(self, parts: list[np.ndarray], asked: np.ndarray):
        """Split the answers (per source rank: lengths, then the ids) into sizes [T], ids, offsets [T]."""
        sizes, flats = [], []
        cuts = np.searchsorted(self.world.owner(asked), np.arange(self.world.size + 1))
        for r, part in enumerate(parts):
            k = cuts[r + 1] - cuts[r]
            sizes.append(part[:k])
            flats.append(part[k:])
        sizes = np.concatenate(sizes).astype(np.int64) if sizes else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return sizes, np.concatenate(flats) if flats else np.zeros(0, np.int64), offsets

    def _rebuild(self, ctx, rows, v, pref, randoms, table, slot_row) -> None:
        """Install the new caches: hub part, random part, top-up from the frequency map."""
        width = self.c - self.h
        need = width - row_lengths(randoms)  # [n]
        short = np.flatnonzero(need > 0)
        if len(short):
            fill = ops.top_up(ctx.seed, ctx.rnd, v[short], self._two_hop(table, slot_row[short]),
                              np.concatenate([pref[short], randoms[short]], axis=1), need[short])
            merged = np.concatenate([randoms[short], fill], axis=1)
            randoms[short] = compact_rows(merged)[:, :width]
        new = np.concatenate([pref[:, :self.h], randoms], axis=1)  # [n, c]
        empty = row_lengths(new) == 0  # every answer lost: keep the old links
        self.cache[rows[~empty]] = new[~empty]

    # ------------------------------------------------------------------ the API
    def neighbours(self) -> np.ndarray:
        """int64 [n_local, c]: the caches (slots [0, h) hubs, [h, c) random), -1 padded."""
        return self.cache

    def hub_lists(self) -> np.ndarray:
        """int64 [n_local, h]: the first h cache entries (-1 where fewer were preferred)."""
        return self.cache[:, :self.h]

    def random_peers(self) -> np.ndarray:
        """int64 [n_local, c - h]: the random part of each cache."""
        return self.cache[:, self.h:]

    def snapshot(self) -> np.ndarray:
        """int64 [n_local, c]: a copy of the caches (dead nodes: all -1) for /overlay/cache."""
        return self.cache.copy()

    def gossip_peers(self) -> np.ndarray:
        """Gossip pushes along the random links only: the hub links would funnel every model to the hubs."""
        return self.random_peers()

    def contribute(self, metrics: RoundMetrics) -> None:
        """The base metrics plus `backward_evicted` (backward entries pushed out of the rings)."""
        super().contribute(metrics)
        metrics.set("backward_evicted", self.backward_evicted)


def _merged(a: tuple, b: tuple, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted lists of (row, requester) pairs as one, sorted (a cycle's turns add to it)."""
    if len(a[0]) == 0:
        return b
    key = np.sort(np.concatenate([a[0] * n + a[1], b[0] * n + b[1]]), kind="stable")  # two sorted runs: a merge
    return key // n, key % n
