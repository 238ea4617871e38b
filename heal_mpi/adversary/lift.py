"""Lift: the one-shot hub redistribution run by the correct nodes (byzantine.md §2.3).

Every correct node reads the hub list in its own first h cache slots, seeds a generator with
it, draws h distinct live ids, and rewrites its cache. Nodes that hold the same hub list
draw the same new hubs, with no message exchanged.

Decisions (byzantine.md §4):
- B1 seed: SHA-256 of the ASCII string of the ascending ids joined by ",", first 8 bytes
  big-endian unsigned; no run salt. The -1 padding of an incomplete hub prefix is left out.
- B2 generator: `java_lcg` (java.util.Random, `JavaRandom`) by default, `pcg64` (NumPy
  `Generator(PCG64(seed)).integers`, one draw per call so the order is the draw order).
- B3 hub source: the caller passes each node's cache; its slots [0, h) are the hubs read
  (`local_prefix`). An `oracle` run passes caches whose prefix holds the global hub set.
- B6 refill `keep_then_fill`: slots [h, c) keep the old non-hub entries (minus old and new
  hubs, repeats dropped, order kept), then are topped up with uniform live ids that are
  neither a new or old hub, nor already kept, nor the node itself. The top-up is keyed by
  (seed, "lift-fill", rnd, node id, j), so it does not depend on the rank count. The spec's
  first top-up source, the last frequency map, is not kept by the overlay, so the uniform
  fallback is used for the whole top-up.
- B7, B8, B11: Byzantine ids are eligible; dead ids (`alive` False) are skipped and the
  draw consumed; new hubs keep their draw order.
- B9: only the rows `correct_rows` are rewritten; the caller leaves Byzantine rows out.
- With fewer than h live ids the draw stops early and the hub slots are -1 padded.
"""

from __future__ import annotations

import hashlib

import numpy as np

from heal_mpi.adversary.javarandom import JavaRandom
from heal_mpi.overlay.common import _BIG, compact_rows, dedupe_rows, draw_positions, row_lengths

PRNGS = ("java_lcg", "pcg64")


def lift_seed(hub_ids) -> int:
    """The Lift seed of a hub list: SHA-256 of "id,id,..." (ascending, ids >= 0), first 8 bytes big-endian."""
    ids = sorted(int(i) for i in np.asarray(hub_ids, dtype=np.int64).ravel() if i >= 0)
    digest = hashlib.sha256(",".join(str(i) for i in ids).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big")


def _bounded_draws(seed: int, n_nodes: int, prng: str):
    """An endless iterator of uniform ints in [0, n_nodes) from the named generator."""
    if prng == "java_lcg":
        r = JavaRandom(seed)
        while True:
            yield r.next_int(n_nodes)
    elif prng == "pcg64":
        g = np.random.Generator(np.random.PCG64(seed))
        while True:
            yield int(g.integers(n_nodes))
    else:
        raise ValueError(f"unknown Lift prng {prng!r}; expected one of {PRNGS}")


def draw_hubs(hub_ids, h: int, n_nodes: int, alive: np.ndarray, prng: str = "java_lcg") -> np.ndarray:
    """The new hubs of a node whose hub list is `hub_ids` (the §2.3 draw loop).

    Args:
        hub_ids: the node's hub ids (any order; -1 entries ignored).
        h: how many hubs to draw.
        n_nodes: the id space, ids 0..n_nodes-1 (N_initial).
        alive: bool [>= n_nodes]; ids with alive False are skipped (their draw is consumed).
        prng: "java_lcg" or "pcg64".
    Returns:
        int64 [min(h, live ids)], distinct live ids in draw order.
    """
    target = min(h, int(np.count_nonzero(alive[:n_nodes])))
    out: list[int] = []
    draws = _bounded_draws(lift_seed(hub_ids), n_nodes, prng)
    while len(out) < target:
        x = next(draws)
        if alive[x] and x not in out:  # out holds <= h ids: a list scan is cheapest
            out.append(x)
    return np.array(out, dtype=np.int64)


def lift_caches(cache: np.ndarray, h: int, n_nodes: int, alive: np.ndarray, correct_rows: np.ndarray,
                seed: int, rnd: int, node_ids: np.ndarray, prng: str = "java_lcg") -> np.ndarray:
    """Lift applied to the rows `correct_rows` of `cache`; the other rows are copied unchanged.

    Args:
        cache: int64 [n, c], -1 padded; slots [0, h) hold each node's hubs.
        alive: bool [n_nodes], the live ids (same on every rank).
        correct_rows: bool [n], the rows that run Lift (correct, live nodes).
        seed, rnd: key the top-up draws with node_ids.
        node_ids: int64 [n], the global id of each row.
    Returns:
        int64 [n, c]: new hubs in slots [0, h) (draw order, -1 padded), then keep_then_fill.
    """
    cache = np.asarray(cache, dtype=np.int64)
    n, c = cache.shape
    if not 1 <= h <= c:
        raise ValueError(f"need 1 <= h <= c, got h={h}, c={c}")
    out = cache.copy()
    sel = np.flatnonzero(np.asarray(correct_rows, dtype=bool))
    if len(sel) == 0:
        return out
    old = cache[sel, :h]  # [s, h]
    new = _new_hubs(np.sort(old, axis=1), h, n_nodes, alive, prng)  # [s, h]
    out[sel, :h] = new
    if c > h:
        out[sel, h:] = _keep_then_fill(cache[sel, h:], old, new, alive, seed, rnd,
                                       np.asarray(node_ids, dtype=np.int64)[sel])
    return out


def _new_hubs(keys: np.ndarray, h: int, n_nodes: int, alive: np.ndarray, prng: str) -> np.ndarray:
    """int64 [s, h]: the new hubs per row; each distinct sorted hub list draws once."""
    # distinct rows by lexsort (np.unique(axis=0) sorts a void view, ~20x slower at N = 1e5)
    order = np.lexsort(keys.T[::-1])  # [s]
    ranked = keys[order]
    first = np.concatenate([[True], (ranked[1:] != ranked[:-1]).any(axis=1)])  # [s] a new list starts
    table = np.full((int(first.sum()), h), -1, dtype=np.int64)  # [u, h]
    for i, hub_list in enumerate(ranked[first]):
        drawn = draw_hubs(hub_list, h, n_nodes, alive, prng)
        table[i, :len(drawn)] = drawn
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return table[inverse]


def _keep_then_fill(rest: np.ndarray, old: np.ndarray, new: np.ndarray, alive: np.ndarray, seed: int,
                    rnd: int, node_ids: np.ndarray) -> np.ndarray:
    """int64 [s, c-h]: the old non-hub entries minus old and new hubs, then a keyed uniform top-up."""
    s, width = rest.shape
    hubs = np.concatenate([old, new], axis=1)  # [s, 2h]
    is_hub = (rest[:, :, None] == hubs[:, None, :]).any(axis=2) & (rest >= 0)  # [s, c-h]
    rest = compact_rows(dedupe_rows(np.where(is_hub, -1, rest)))
    need = width - row_lengths(rest)  # [s]
    todo = np.flatnonzero(need > 0)  # after convergence most rows keep all their entries
    if len(todo) == 0:
        return rest
    pool = np.flatnonzero(alive).astype(np.int64)  # [m] sorted live ids
    banned = np.concatenate([hubs[todo], rest[todo], node_ids[todo, None]], axis=1)  # [f, t]
    taken = _pool_positions(pool, banned)
    pos = draw_positions(seed, "lift-fill", (rnd, node_ids[todo]), np.full(len(todo), len(pool), np.int64),
                         int(need[todo].max()), taken)  # [f, max need]
    fill = np.where(pos >= 0, pool[np.maximum(pos, 0)] if len(pool) else -1, -1)
    fill[np.arange(fill.shape[1])[None, :] >= need[todo, None]] = -1  # each row takes only what it needs
    rest[todo] = compact_rows(np.concatenate([rest[todo], fill], axis=1))[:, :width]
    return rest


def _pool_positions(pool: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int64 [f, t]: the distinct positions in `pool` of each row's ids, `_BIG` for none (draw_positions' `taken`)."""
    pos = np.searchsorted(pool, ids)
    hit = (ids >= 0) & (pos < len(pool))
    hit[hit] = pool[pos[hit]] == ids[hit]
    taken = np.sort(np.where(hit, pos, _BIG), axis=1)
    taken[:, 1:][taken[:, 1:] == taken[:, :-1]] = _BIG  # nth_free needs each position once
    return taken
