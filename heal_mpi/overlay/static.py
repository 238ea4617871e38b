"""Static topologies: star, multi-star, ring, random k-regular, complete.

Owns nothing that changes: the graph is a pure function of (kind, N, seed), so every rank
knows it whole and computes the in-degree of every slot without talking. Links are never
pruned: a dead neighbour simply stops sending (the protocols check `ctx.alive`).

- star: node 0 is the server. Every node's hub list is [0] (node 0 lists itself, so it is
  the hub); a client's view is [0], the server's view is every client.
- multistar (Gaia): servers 0..k-1; client i >= k belongs to server (i - k) mod k
  (round-robin). A client's hub list and view are [its server]; a server's hub list is
  every server, its view every other server plus its clients.
- ring: i sees i-1 and i+1. regular: a random d-regular graph (configuration model with
  edge-switch repair, seeded). complete: everyone sees everyone else.

In-degree counts, for each slot, the live nodes whose view or hub list holds it. Views are
rectangular `[n_local, max degree]`: the star's server and the complete graph make that
N - 1 wide, so those two are for small N.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay.base import Overlay
from heal_mpi.overlay.common import compact_rows
from heal_mpi.rng import stream

KINDS = ("star", "multistar", "ring", "regular", "complete")


def random_regular_edges(n: int, d: int, seed: int, max_passes: int = 1000) -> np.ndarray:
    """Undirected edges int64 [n*d/2, 2] of a random simple d-regular graph on n nodes.

    Configuration model (a random pairing of n*d stubs), then every self-loop or repeated
    edge is removed by a random double-edge swap with another edge. Deterministic in seed.
    """
    if (n * d) % 2 or d >= n:
        raise ValueError(f"no {d}-regular graph on {n} nodes")
    rng = stream(seed, "regular-graph")
    pairs = rng.permutation(np.repeat(np.arange(n, dtype=np.int64), d)).reshape(-1, 2)
    pairs.sort(axis=1)
    for _ in range(max_passes):
        bad = _bad_edges(pairs, n)
        if len(bad) == 0:
            return pairs
        edges = set(map(tuple, pairs.tolist()))
        for e in bad:  # swap (a, b), (x, y) -> (a, x), (b, y) when both are new and not loops
            a, b = pairs[e]
            f = int(rng.integers(len(pairs)))
            x, y = pairs[f]
            n1, n2 = (min(a, x), max(a, x)), (min(b, y), max(b, y))
            if e != f and a != x and b != y and n1 not in edges and n2 not in edges and n1 != n2:
                edges.difference_update({(a, b), (x, y)})
                edges.update({n1, n2})
                pairs[e], pairs[f] = n1, n2
    raise RuntimeError(f"could not build a simple {d}-regular graph on {n} nodes")


def _bad_edges(pairs: np.ndarray, n: int) -> np.ndarray:
    """Indices of self-loops and of every repeat of an edge after its first occurrence."""
    key = pairs[:, 0] * n + pairs[:, 1]
    _, first = np.unique(key, return_index=True)
    repeat = np.ones(len(pairs), dtype=bool)
    repeat[first] = False
    return np.flatnonzero(repeat | (pairs[:, 0] == pairs[:, 1]))


def _edge_list(kind: str, n: int, servers: int, degree: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Directed view edges (src, dst) of every node (not for complete). Sorted by src."""
    ids = np.arange(n, dtype=np.int64)
    if kind == "star":
        src, dst = np.concatenate([ids[1:], np.zeros(n - 1, np.int64)]), np.concatenate([np.zeros(n - 1, np.int64), ids[1:]])
    elif kind == "multistar":
        cl = ids[servers:]
        home = (cl - servers) % servers
        s_src, s_dst = np.meshgrid(ids[:servers], ids[:servers], indexing="ij")
        off = s_src != s_dst
        src = np.concatenate([cl, home, s_src[off]])
        dst = np.concatenate([home, cl, s_dst[off]])
    elif kind == "ring":
        nb = np.stack([(ids - 1) % n, (ids + 1) % n], axis=1) if n > 2 else ((ids + 1) % n)[:, None]
        src, dst = np.repeat(ids, nb.shape[1]), nb.ravel()
        keep = src != dst
        src, dst = src[keep], dst[keep]
    elif kind == "regular":
        e = random_regular_edges(n, degree, seed)
        src, dst = np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])
    else:
        raise ValueError(f"unknown static overlay {kind!r}")
    order = np.lexsort((dst, src))
    return src[order], dst[order]


def _with_hub_edges(src, dst, kind: str, n: int, servers: int) -> tuple[np.ndarray, np.ndarray]:
    """The view edges plus the hub-list edges, each (src, dst) pair once (for the in-degree)."""
    ids = np.arange(n, dtype=np.int64)
    if kind == "star":
        hs, hd = ids, np.zeros(n, np.int64)
    elif kind == "multistar":
        s_src, s_dst = np.meshgrid(ids[:servers], ids[:servers], indexing="ij")
        hs = np.concatenate([s_src.ravel(), ids[servers:]])
        hd = np.concatenate([s_dst.ravel(), (ids[servers:] - servers) % servers])
    else:
        return src, dst
    key = np.unique(np.concatenate([src * n + dst, hs * n + hd]))
    return key // n, key % n


class StaticOverlay(Overlay):
    """A fixed topology. Not collective (no step talks), but built on every rank alike.

    Args:
        world: the World; channel: unused (nothing is sent); kind: one of KINDS;
        servers: multistar's k; degree: regular's d;
        seed: the run's seed (regular only); hub_width: width of the `hub_ids` metric row.
    """

    STATE = {"in_degree": np.int64, "alive": bool}

    def __init__(self, world, channel: Channel, kind: str, servers: int = 1, degree: int = 4, seed: int = 0,
                 hub_width: int | None = None, comm=None):
        if kind not in KINDS:
            raise ValueError(f"unknown static overlay {kind!r}")
        servers = 1 if kind == "star" else servers
        super().__init__(world, channel, hub_width or (servers if kind in ("star", "multistar") else 1), comm)
        self.kind, self.n, self.servers = kind, world.n_nodes, servers
        if kind != "complete":
            self.src, self.dst = _edge_list(kind, self.n, self.servers, degree, seed)
            self.deg_src, self.deg_dst = _with_hub_edges(self.src, self.dst, kind, self.n, self.servers)
        self._hubs = self._hub_lists_all()
        self.in_degree = self._in_degree(self.alive)

    @classmethod
    def from_config(cls, cfg, world, channel: Channel, comm=None) -> "StaticOverlay":
        own = cfg.overlay.options
        return cls(world, channel, cfg.overlay_kind, servers=getattr(own, "servers", 1),
                   degree=getattr(own, "degree", 4), seed=cfg.run.seed, comm=comm)

    def _hub_lists_all(self) -> np.ndarray:
        """int64 [n_local, hub width] of the local nodes."""
        local = self.world.local_slots
        if self.kind == "star":
            return np.zeros((len(local), 1), dtype=np.int64)
        if self.kind == "multistar":
            k = self.servers
            out = np.where(local[:, None] < k, np.arange(k)[None, :], -1)  # servers: every server
            home = (local - k) % k
            out[local >= k, 0] = home[local >= k]
            return out
        return np.zeros((len(local), 0), dtype=np.int64)

    def _in_degree(self, alive: np.ndarray) -> np.ndarray:
        """In-degree int64 [N]: live nodes whose view or hub list holds each slot (once each)."""
        if self.kind == "complete":
            return (int(alive.sum()) - alive).astype(np.int64)
        return np.bincount(self.deg_dst[alive[self.deg_src]], minlength=self.n).astype(np.int64)

    def step(self, ctx: RoundContext) -> None:
        """Nothing moves; only the in-degree follows the live set."""
        self.new_cycle(ctx)
        self.in_degree = self._in_degree(ctx.alive)

    def neighbours(self) -> np.ndarray:
        """int64 [n_local, max degree]: each local node's fixed view, -1 padded."""
        lo, hi = self.world.slot_lo, self.world.slot_hi
        local = self.world.local_slots
        if self.kind == "complete":
            others = np.arange(self.n - 1, dtype=np.int64)[None, :]
            return others + (others >= local[:, None])  # [n_local, N-1]
        a, b = np.searchsorted(self.src, [lo, hi])
        src, dst = self.src[a:b] - lo, self.dst[a:b]
        width = int(np.bincount(self.src, minlength=self.n).max())
        start = np.searchsorted(src, np.arange(hi - lo))
        out = np.full((hi - lo, width), -1, dtype=np.int64)
        out[src, np.arange(len(src)) - start[src]] = dst
        return out

    def hub_lists(self) -> np.ndarray:
        return self._hubs

    def random_peers(self) -> np.ndarray:
        """The view without the hub-list entries, compacted (same width)."""
        view = self.neighbours()
        hub = (view[:, :, None] == self._hubs[:, None, :]).any(axis=2) if self._hubs.shape[1] else False
        return compact_rows(np.where(hub, -1, view))

    def snapshot(self) -> np.ndarray:
        return self.neighbours().copy()
