"""Pure, vectorized kernels of one Elevator cycle (no MPI): frequency maps, preferred sets,
the backward-set bookkeeping and the lazy shuffle of the preferred nodes' backward replies.

Shapes: n = local live nodes handled, c = cache size, h = hubs, K = preferred-set size
(h for top-h, c for top-c), D = how deep a node reads its shuffled backward buffer.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.overlay.common import _BIG, compact_rows, dedupe_rows, nth_free, sorted_unique
from heal_mpi.rng import uniform


def frequency_runs(replies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ids of each row's 2-hop view and how often each occurs.

    Args:
        replies: int32 or int64 [n, W], the concatenated caches a node received (-1 = nothing).
    Returns:
        (flat int64 [u]: row * W + column of each distinct id in the row-sorted layout,
        ids int64 [u], counts int64 [u]), in row order, ids ascending within a row.
    """
    n, w = replies.shape
    top = np.iinfo(replies.dtype).max  # int32 sorts faster: ids fit whenever N < 2**31
    s = np.sort(np.where(replies < 0, top, replies), axis=1)  # [n, W]
    start = np.empty((n, w), dtype=bool)
    start[:, 0] = True
    np.not_equal(s[:, 1:], s[:, :-1], out=start[:, 1:])
    flat = np.flatnonzero(start)  # run starts, row-major; every row opens a run at column 0
    counts = np.diff(flat, append=s.size)  # so a run never spans two rows
    ids = s.ravel()[flat]
    ok = ids != top
    return flat[ok], ids[ok].astype(np.int64), counts[ok]


def top_k(replies: np.ndarray, k: int, n_nodes: int) -> np.ndarray:
    """The k most frequent ids of each row, count desc then id asc (the preferred set).

    Args:
        replies: int32 or int64 [n, W] (W >= k), -1 = nothing.
    Returns:
        int64 [n, k], -1 padded when a row has fewer than k distinct ids.
    """
    n, w = replies.shape
    flat, ids, counts = frequency_runs(replies)
    key = np.full(n * w, _BIG, dtype=np.int64)
    key[flat] = (w + 1 - counts) * (n_nodes + 1) + ids  # smaller = more frequent, then smaller id
    best = np.sort(np.partition(key.reshape(n, w), k - 1, axis=1)[:, :k], axis=1)  # [n, k]
    return np.where(best == _BIG, -1, best % (n_nodes + 1))


def record_backward(back: np.ndarray, back_t: np.ndarray, head: np.ndarray, tgt: np.ndarray, req: np.ndarray,
                    prio: np.ndarray, rnd: int, n_nodes: int) -> int:
    """Write this cycle's CACHE_REQUESTs into the local backward rings (in place).

    Each row is a ring of the `cap` most recent recordings. A row's requesters of one cycle
    are written in keyed-random order, at most `cap` of them, so a hub keeps a uniform random
    `cap`-subset of its requesters. O(requests): nothing else is touched.

    Args:
        back: int64 [n_local, cap] requester ids (-1 = empty); back_t: int64 [n_local, cap]
            the round each was recorded; head: int64 [n_local] next write position.
        tgt: int64 [m] local row of each request; req: int64 [m] requester; prio: float [m].
        rnd: the round (stamped on each recording); n_nodes: N.
    Returns:
        (the number of recordings lost: overwritten ones plus those past `cap` in one cycle,
        the requests' rows and requesters sorted by (row, requester)).
    """
    n_local, cap = back.shape
    canon = np.argsort(tgt * n_nodes + req, kind="stable")  # (target, id): independent of arrival order
    tgt, req, prio = tgt[canon], req[canon], prio[canon]
    canon_tgt, canon_req = tgt, req
    order = np.argsort((tgt << 32) | (prio * 2.0**32).astype(np.int64), kind="stable")  # then keyed priority
    tgt, req = tgt[order], req[order]
    n_new = np.bincount(tgt, minlength=n_local)  # [n_local]
    first = np.concatenate([[0], np.cumsum(n_new)[:-1]]).astype(np.int64)
    rank_new = np.arange(len(tgt)) - first[tgt]  # [m] position among the row's new entries
    fits = rank_new < cap
    row, col = tgt[fits], (head[tgt[fits]] + rank_new[fits]) % cap
    lost = int((back[row, col] >= 0).sum() + (~fits).sum())
    back[row, col], back_t[row, col] = req[fits], rnd
    head[:] = (head + np.minimum(n_new, cap)) % cap
    return lost, canon_tgt, canon_req


def backward_sets(back: np.ndarray, back_t: np.ndarray, rows: np.ndarray, cur_row: np.ndarray,
                  cur_req: np.ndarray, alive: np.ndarray, since: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The backward *sets* of the local `rows`: every requester of this cycle (unbounded, so a
    hub's set is the whole live network, as in the paper) plus the ring's earlier recordings
    that are alive and were made after their slot's current node joined (lazy pruning).

    Args:
        back, back_t: int64 [n_local, cap], the rings; rows: int64 [U] sorted local rows.
        cur_row, cur_req: int64 [m], this cycle's CACHE_REQUESTs (local row, requester),
            sorted by (row, requester).
        alive: bool [N]; since: int64 [N], the round the slot's current node joined.
    Returns:
        (sizes int64 [U], ids int64 [sum(sizes)]: row by row, each row's ids sorted).
    """
    n_nodes = len(alive)
    ring, ring_t = back[rows], back_t[rows]  # [U, cap]
    ok = ring >= 0
    ok[ok] = alive[ring[ok]] & (ring_t[ok] >= since[ring[ok]])
    k_ring = np.broadcast_to(np.arange(len(rows))[:, None], ring.shape)[ok]
    first, end = np.searchsorted(cur_row, rows), np.searchsorted(cur_row, rows, side="right")  # each row's run
    n_cur = end - first
    k_cur = np.repeat(np.arange(len(rows)), n_cur)
    at = np.arange(n_cur.sum()) - np.repeat(np.cumsum(n_cur) - n_cur, n_cur) + np.repeat(first, n_cur)
    keys = np.sort(np.concatenate([k_ring * n_nodes + ring[ok], k_cur * n_nodes + cur_req[at]]))
    keys = sorted_unique(keys)  # the second part arrives sorted: the sort is cheap
    return np.bincount(keys // n_nodes, minlength=len(rows)).astype(np.int64), keys % n_nodes


def read_backward_buffer(seed: int, rnd: int, v: np.ndarray, sizes: np.ndarray, max_backward: int,
                         depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `depth` entries of each node's shuffled `preferred_backward` buffer, lazily.

    Each preferred node p answers with a uniform random sample of min(max_backward, sizes[p])
    entries of its backward set; the node concatenates the answers and shuffles them. Reading
    that shuffle in order is the same as: at each step pick answer p with probability
    proportional to its unread entries, then an unread entry of p uniformly. We draw exactly
    that, step by step, without materialising the answers.

    Args:
        v: int64 [n] node ids (draw keys); sizes: int64 [n, K] backward-set sizes of the
            preferred nodes whose answer arrived (0 otherwise).
    Returns:
        (src int64 [n, depth]: which preferred node each entry came from, -1 when the buffer
        ran out; pos int64 [n, depth]: the entry's position in that node's backward set).
    """
    n, k = sizes.shape
    rem = np.minimum(sizes, max_backward)  # [n, K] unread entries of each answer
    sample = rem.copy()
    src = np.full((n, depth), -1, dtype=np.int64)
    pos = np.full((n, depth), -1, dtype=np.int64)
    ar = np.arange(n)
    steps = np.arange(depth)[None, :]
    u_pick = uniform(seed, "elevator-buffer-pick", rnd, v[:, None], steps)  # [n, D]
    u_entry = uniform(seed, "elevator-buffer-entry", rnd, v[:, None], steps)  # [n, D]
    for t in range(depth):
        tot = rem.sum(axis=1)  # [n]
        act = tot > 0
        if not act.any():
            break
        thr = np.minimum((u_pick[:, t] * tot).astype(np.int64), np.maximum(tot - 1, 0))
        p = (np.cumsum(rem, axis=1) > thr[:, None]).argmax(axis=1)  # [n] answer picked
        m, read = sizes[ar, p], sample[ar, p] - rem[ar, p]
        i = np.minimum((u_entry[:, t] * np.maximum(m - read, 1)).astype(np.int64), np.maximum(m - read - 1, 0))
        taken = np.where(src[:, :t] == p[:, None], pos[:, :t], _BIG)  # [n, t] entries read from p
        x = nth_free(i, taken)
        src[act, t], pos[act, t] = p[act], x[act]
        rem[ar[act], p[act]] -= 1
    return src, pos


def pick_random_part(entries: np.ndarray, v: np.ndarray, hub_part: np.ndarray, width: int) -> np.ndarray:
    """The first `width` usable entries of the shuffled buffer: not the node itself, not in
    its hub part, no repeats.

    Args:
        entries: int64 [n, D] in buffer order (-1 = none); v: int64 [n]; hub_part: int64 [n, h].
    Returns:
        int64 [n, width], -1 padded.
    """
    bad = (entries == v[:, None]) | (entries[:, :, None] == hub_part[:, None, :]).any(axis=2)
    e = dedupe_rows(np.where(bad, -1, entries))
    e = compact_rows(e)[:, :width]
    if e.shape[1] < width:
        e = np.concatenate([e, np.full((len(e), width - e.shape[1]), -1, dtype=np.int64)], axis=1)
    return e


def top_up(seed: int, rnd: int, v: np.ndarray, replies: np.ndarray, exclude: np.ndarray,
           need: np.ndarray) -> np.ndarray:
    """Random distinct ids of each row's frequency map (uniform over its distinct keys) that are
    not the node itself nor in `exclude`; `need[row]` of them, -1 padded to need.max().

    Args:
        replies: int64 [n, W] 2-hop views; exclude: int64 [n, e] (preferred set + chosen ids).
    """
    n, w = replies.shape
    flat, ids, _ = frequency_runs(replies)
    s = np.full(n * w, -1, dtype=np.int64)
    s[flat] = ids
    s = s.reshape(n, w)  # each row's distinct ids, -1 elsewhere
    ok = (s >= 0) & (s != v[:, None]) & ~(s[:, :, None] == exclude[:, None, :]).any(axis=2)
    prio = np.where(ok, uniform(seed, "elevator-topup", rnd, v[:, None], np.where(ok, s, 0)), 2.0)
    width = int(need.max()) if len(need) else 0
    order = np.argsort(prio, axis=1)[:, :width]  # [n, width]
    ids = np.take_along_axis(np.where(ok, s, -1), order, axis=1)
    return np.where(np.arange(width)[None, :] < need[:, None], ids, -1)
