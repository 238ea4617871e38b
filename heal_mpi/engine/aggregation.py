"""Robust aggregation of model rows grouped by destination (issue 11 item 4; byzantine.md §5.4).

`aggregate` reduces the rows [E, P] that arrive at each destination (a hub's clients, a
client's s hub copies, a gossip merge) to one row per group, by one of RULES. Everything is
vectorized: rows are ordered by group once and each distinct group size is one batched
sort, so there is no Python loop per group or per coordinate.

Decisions:
- `median`: coordinate-wise; for an even count, the mean of the two middle values (the
  symmetric choice; `torch.median` would return the lower one and bias the result).
- `trimmed_mean`: per coordinate, drop the floor(beta * k) smallest and as many largest
  values of a group of k, average the rest; 0 <= beta < 0.5 so at least one value remains.
  floor has a 1e-9 slack so that e.g. beta = 0.29, k = 100 drops 29, not 28.
- `centered_clip` (Karimireddy, He, Jaggi 2021): v <- v + mean_i clip(x_i - v, tau), with
  clip(d, tau) = d * min(1, tau / ||d||_2) over the whole row, repeated `clip_iters` times.
  The start v is `center` [n_groups, P] when given (the engine passes e.g. the hub's
  previous model, so each rank can sum clipped deltas locally with `clipped_deltas` and keep
  the partial-sum path), else the group's coordinate-wise median: a mean start would let
  one huge row drag the start arbitrarily far, and one clipping step would not recover.
  With tau above every distance, one step returns the plain mean, whatever the start.
- Groups with no rows give NaN rows, for every rule (the caller knows its counts and keeps
  its own value there; a silent zero row would look like a model).
- Median and trimmed mean gather each group's rows into a [g, k, P] block: memory about two
  copies of `rows` at a time.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from heal_mpi.steps import RULES  # one list: the config's choices


def aggregate(rule: str, rows: torch.Tensor, group: np.ndarray, n_groups: int, beta: float = 0.1,
              clip_tau: float = 1.0, clip_iters: int = 1, center: torch.Tensor | None = None) -> torch.Tensor:
    """One aggregated row per group.

    Args:
        rule: one of RULES.
        rows: float [E, P].
        group: int64 [E] in [0, n_groups), the destination of each row.
        beta: trimmed_mean's trimmed fraction at each end, in [0, 0.5).
        clip_tau, clip_iters: centered_clip's radius (> 0) and number of steps (>= 1).
        center: centered_clip's start, float [n_groups, P]; default the coordinate-wise median.
    Returns:
        float [n_groups, P], dtype and device of `rows`; NaN rows for empty groups.
    """
    group = _check(rule, rows, group, n_groups, beta, clip_tau, clip_iters, center)
    counts = np.bincount(group, minlength=n_groups)  # [G]
    if rule == "mean":
        return _group_mean(rows, group, counts)
    if rule == "median":
        return _by_size(rows, group, counts, _median)
    if rule == "trimmed_mean":
        return _by_size(rows, group, counts, lambda s, k: s[:, _n_trim(beta, k):k - _n_trim(beta, k)].mean(dim=1))
    v = _by_size(rows, group, counts, _median) if center is None else center.to(rows)  # [G, P]
    g = torch.as_tensor(group, device=rows.device)
    for _ in range(clip_iters):
        v = v + _group_mean(clipped_deltas(rows, v[g], clip_tau), group, counts)  # [G, P]
    return v


def clipped_deltas(rows: torch.Tensor, centers: torch.Tensor, tau: float) -> torch.Tensor:
    """[E, P]: (rows - centers), each row scaled down to L2 norm at most tau (centered clipping's summand)."""
    d = rows - centers  # [E, P]
    norm = torch.linalg.vector_norm(d, dim=1, keepdim=True)  # [E, 1]
    return d * torch.clamp(tau / norm, max=1.0)  # norm 0 -> inf -> 1


def _n_trim(beta: float, k: int) -> int:
    return math.floor(beta * k + 1e-9)


def _median(s: torch.Tensor, k: int) -> torch.Tensor:
    """[g, P] from sorted blocks [g, k, P]: the middle value, or the mean of the two middle ones."""
    return s[:, k // 2] if k % 2 else 0.5 * (s[:, k // 2 - 1] + s[:, k // 2])


def _group_mean(rows: torch.Tensor, group: np.ndarray, counts: np.ndarray) -> torch.Tensor:
    """[G, P]: per-group mean (0/0 = NaN for empty groups)."""
    g = torch.as_tensor(group, device=rows.device)
    sums = torch.zeros((len(counts), rows.shape[1]), dtype=rows.dtype, device=rows.device).index_add_(0, g, rows)
    return sums / torch.as_tensor(counts, dtype=rows.dtype, device=rows.device)[:, None]


def _by_size(rows: torch.Tensor, group: np.ndarray, counts: np.ndarray, fn) -> torch.Tensor:
    """[G, P]: fn(sorted block [g, k, P], k) for the groups of each distinct size k; NaN for empty groups."""
    out = torch.full((len(counts), rows.shape[1]), float("nan"), dtype=rows.dtype, device=rows.device)
    order = np.argsort(group, kind="stable")  # rows of a group are now contiguous
    starts = np.cumsum(counts) - counts  # [G]
    for k in np.unique(counts[counts > 0]):
        gs = np.flatnonzero(counts == k)  # [g] groups of this size
        idx = order[starts[gs][:, None] + np.arange(k)]  # [g, k] row indices
        block = rows[torch.as_tensor(idx, device=rows.device)]  # [g, k, P]
        out[torch.as_tensor(gs, device=rows.device)] = fn(block.sort(dim=1).values, int(k))
    return out


def _check(rule, rows, group, n_groups, beta, clip_tau, clip_iters, center) -> np.ndarray:
    if rule not in RULES:
        raise ValueError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")
    if not 0 <= beta < 0.5:
        raise ValueError(f"trimmed-mean beta must be in [0, 0.5), got {beta}")
    if not (clip_tau > 0 and clip_iters >= 1):
        raise ValueError(f"centered clipping needs tau > 0 and iters >= 1, got {clip_tau}, {clip_iters}")
    group = np.asarray(group, dtype=np.int64)
    if rows.dim() != 2 or group.shape != (rows.shape[0],):
        raise ValueError(f"rows {tuple(rows.shape)} and group {group.shape} do not match")
    if len(group) and (group.min() < 0 or group.max() >= n_groups):
        raise ValueError(f"group ids must be in [0, {n_groups})")
    if center is not None and tuple(center.shape) != (n_groups, rows.shape[1]):
        raise ValueError(f"center must be [{n_groups}, {rows.shape[1]}], got {tuple(center.shape)}")
    return group
