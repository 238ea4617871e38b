"""Byzantine overlay nodes: who they are and what they answer (byzantine.md §1.3, §1.4).

A Byzantine node runs the honest Elevator active step for its own cache; only its replies
lie. These kernels compute the replies of a batch of Byzantine senders, vectorized over the
senders, from keyed draws only, so a reply is the same whichever rank computes it and
however the senders are split into batches.

Decisions (byzantine.md §4 A1-A12, and ours where the spec leaves a choice):
- A8 choice: a uniform subset, the `count` ids with the smallest keyed draw
  (seed, "byzantine-choice", id), ties by id; protected slots are never chosen. The subset
  for count k is a prefix of the one for k + 1.
- Cache replies (A2, A3, A5, A6): `passive` sends an empty cache; `active` and
  `noncoordinated` (same algorithm, A5: no filtering of other Byzantines) send the real
  cache with one uniformly random valid entry removed and their own id appended, literally:
  a duplicate is possible when self was already listed (A6; `dedup=True` drops the repeat,
  the spec's `byz_dedup` flag). `coordinated` sends min(B, c) Byzantine ids (self included,
  A3) in a uniformly random order: the first min(B, c) entries of a keyed shuffle, drawn as
  sequential sampling without replacement (`overlay.common.draw_positions`), which costs
  O(c^2) per reply instead of O(B log B). Replies are -1 padded to width c (A2: the receiver
  merges only the valid entries).
- Draw keys: without `requesters`, the draws are keyed by (seed, purpose, round, sender, 0),
  so a sender answers every requester of a round the same way. That matches the overlay,
  which builds one reply per asked cache per requesting rank, and keeps the replies
  independent of the rank count. With `requesters`, they are keyed by (sender, requester),
  as the pseudocode's per-request `random()` / `shuffle()`: each requester gets its own
  removal or shuffle.
- Backward replies (A1, `byz_backward_mode`): "paper_second_arg" (default) reads the
  pseudocode's second `send` argument as the backward answer: passive `[]`, active and
  noncoordinated `[self]`, coordinated `[one uniformly random Byzantine id]`; "honest"
  returns None (the caller answers honestly); "no_reply" returns empty replies (a caller
  that tells a missing reply from an empty one handles that itself).
"""

from __future__ import annotations

import numpy as np

from heal_mpi.overlay.common import compact_rows, dedupe_rows, draw_positions, row_lengths
from heal_mpi.rng import uniform

KINDS = ("passive", "active", "noncoordinated", "coordinated")
BACKWARD_MODES = ("paper_second_arg", "honest", "no_reply")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown Byzantine kind {kind!r}; expected one of {KINDS}")


def choose_byzantine(seed: int, n_nodes: int, count: int, protected=()) -> np.ndarray:
    """The Byzantine ids of a run: `count` slots drawn uniformly, never a protected one.

    Returns:
        int64 [count], sorted.
    """
    ids = np.arange(n_nodes, dtype=np.int64)
    banned = np.zeros(n_nodes, dtype=bool)
    banned[[p for p in protected if 0 <= p < n_nodes]] = True
    if not 0 <= count <= n_nodes - banned.sum():
        raise ValueError(f"cannot choose {count} Byzantine nodes among {n_nodes - banned.sum()} unprotected slots")
    u = np.where(banned, np.inf, uniform(seed, "byzantine-choice", ids))  # [n]
    return np.sort(np.lexsort((ids, u))[:count]).astype(np.int64)


def _keys(senders: np.ndarray, requesters) -> tuple[np.ndarray, np.ndarray]:
    senders = np.asarray(senders, dtype=np.int64)
    req = np.zeros_like(senders) if requesters is None else np.asarray(requesters, dtype=np.int64)
    if req.shape != senders.shape:
        raise ValueError(f"requesters {req.shape} must match senders {senders.shape}")
    return senders, req


def fake_cache_replies(kind: str, senders, caches: np.ndarray, byz_ids, c: int, seed: int, rnd: int,
                       requesters=None, dedup: bool = False) -> np.ndarray:
    """The replies of Byzantine `senders` to cache requests.

    Args:
        kind: one of KINDS.
        senders: int64 [m], global ids of the Byzantine senders.
        caches: int64 [m, w] (w <= c), their real caches, -1 padded.
        byz_ids: int64 [B], all Byzantine ids (used by `coordinated`).
        c: the cache size, the width of every reply.
        requesters: optional int64 [m], the requester of each reply (per-pair draws).
        dedup: active/noncoordinated only, drop a repeat of self (the spec's byz_dedup).
    Returns:
        int64 [m, c], -1 padded.
    """
    _check_kind(kind)
    senders, req = _keys(senders, requesters)
    m = len(senders)
    out = np.full((m, c), -1, dtype=np.int64)
    if kind == "passive" or m == 0:
        return out
    if kind == "coordinated":
        byz = np.unique(np.asarray(byz_ids, dtype=np.int64))  # sorted: the reply must not depend on list order
        k = min(len(byz), c)
        pos = draw_positions(seed, "byz-coord-shuffle", (rnd, senders, req), np.full(m, len(byz), np.int64), k)
        out[:, :k] = byz[np.maximum(pos, 0)] if len(byz) else -1  # [m, k]
        return out
    return _swap_in_self(senders, req, np.asarray(caches, dtype=np.int64), c, seed, rnd, dedup)


def _swap_in_self(senders, req, caches, c, seed, rnd, dedup) -> np.ndarray:
    """active/noncoordinated: the real cache, one uniform valid entry removed, self appended."""
    m, w = caches.shape
    if w > c:
        raise ValueError(f"caches have width {w} > c = {c}")
    comp = compact_rows(caches)  # [m, w]
    n_valid = row_lengths(comp)  # [m]
    u = uniform(seed, "byz-drop", rnd, senders, req)  # [m]
    drop = np.minimum((u * n_valid).astype(np.int64), np.maximum(n_valid - 1, 0))  # [m]; unused if empty
    kept = np.where(np.arange(w)[None, :] == drop[:, None], -1, comp)  # [m, w]
    out = np.full((m, c), -1, dtype=np.int64)
    out[:, :w] = compact_rows(kept)  # n_valid - 1 entries (0 if empty)
    out[np.arange(m), np.maximum(n_valid - 1, 0)] = senders  # self in the freed place at the end
    return compact_rows(dedupe_rows(out)) if dedup else out


def fake_backward_replies(kind: str, senders, byz_ids, seed: int, rnd: int, mode: str = "paper_second_arg",
                          requesters=None) -> np.ndarray | None:
    """The replies of Byzantine `senders` to backward requests (A1).

    Args:
        kind: one of KINDS.
        senders: int64 [m].
        byz_ids: int64 [B], all Byzantine ids (used by `coordinated`).
        mode: one of BACKWARD_MODES.
        requesters: optional int64 [m], per-(sender, requester) draws as in `fake_cache_replies`.
    Returns:
        int64 [m, 1], -1 = empty; None for mode "honest" (the caller answers honestly).
    """
    _check_kind(kind)
    if mode not in BACKWARD_MODES:
        raise ValueError(f"unknown backward mode {mode!r}; expected one of {BACKWARD_MODES}")
    senders, req = _keys(senders, requesters)
    if mode == "honest":
        return None
    out = np.full((len(senders), 1), -1, dtype=np.int64)
    if mode == "no_reply" or kind == "passive":
        return out
    if kind in ("active", "noncoordinated"):
        out[:, 0] = senders
        return out
    byz = np.unique(np.asarray(byz_ids, dtype=np.int64))
    if len(byz):
        u = uniform(seed, "byz-backward", rnd, senders, req)  # [m]
        out[:, 0] = byz[np.minimum((u * len(byz)).astype(np.int64), len(byz) - 1)]
    return out
