"""Robust aggregation on hand-made rows: mean, median, trimmed mean, centered clipping."""

import numpy as np
import pytest
import torch

from heal_mpi.engine.aggregation import RULES, aggregate, clipped_deltas

G = torch.Generator().manual_seed(0)  # local: no global torch state


def _reference(rule, rows, group, n_groups, beta=0.1):
    """A per-group, per-row loop: the obvious implementation to compare the vectorized one with."""
    out = torch.full((n_groups, rows.shape[1]), float("nan"), dtype=rows.dtype)
    for g in range(n_groups):
        x = rows[torch.as_tensor(group == g)]
        k = len(x)
        if k == 0:
            continue
        s = x.sort(dim=0).values
        if rule == "mean":
            out[g] = x.mean(0)
        elif rule == "median":
            out[g] = s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2
        else:
            t = int(beta * k + 1e-9)
            out[g] = s[t:k - t].mean(0)
    return out


@pytest.mark.parametrize("rule", ["mean", "median", "trimmed_mean"])
def test_vectorized_equals_per_group_loop(rule):
    rows = torch.randn(60, 7, dtype=torch.float64, generator=G)
    group = np.random.default_rng(1).integers(0, 9, 60)
    group[group == 4] = 5  # group 4 empty
    got = aggregate(rule, rows, group, 9, beta=0.25)
    want = _reference(rule, rows, group, 9, beta=0.25)
    assert torch.allclose(got, want, equal_nan=True)
    assert torch.isnan(got[4]).all() and not torch.isnan(got[[0, 1, 2, 3, 5, 6, 7, 8]]).any()


def test_mean_is_torch_mean():
    rows, group = torch.randn(10, 3, generator=G), np.array([0, 1] * 5)
    got = aggregate("mean", rows, group, 2)
    assert torch.allclose(got[0], rows[0::2].mean(0)) and torch.allclose(got[1], rows[1::2].mean(0))


def test_median_ignores_a_minority_of_arbitrary_rows():
    honest = torch.tensor([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    evil = torch.tensor([[1e9, -1e9], [-1e12, 1e12]])
    got = aggregate("median", torch.cat([evil, honest]), np.zeros(5, np.int64), 1)
    assert got.tolist() == [[2.0, 3.0]]  # within the honest range whatever the two others say
    even = aggregate("median", torch.tensor([[1.0], [2.0], [4.0], [1e9]]), np.zeros(4, np.int64), 1)
    assert even.item() == 3.0  # even count: the mean of the two middle values


def test_trimmed_mean_drops_exactly_floor_beta_k_at_each_end():
    # per coordinate the values are 0, 1, 4, ..., 81 (squares) in a different order per coordinate
    k = 10
    vals = torch.arange(k, dtype=torch.float64) ** 2
    rows = torch.stack([vals, vals.flip(0), vals[torch.randperm(k, generator=G)]], dim=1)  # [10, 3]
    for beta, t in [(0.0, 0), (0.1, 1), (0.15, 1), (0.2, 2), (0.29, 2), (0.3, 3), (0.49, 4)]:
        got = aggregate("trimmed_mean", rows, np.zeros(k, np.int64), 1, beta=beta)
        assert torch.allclose(got[0], vals[t:k - t].mean().expand(3)), beta
    big = torch.arange(100, dtype=torch.float64)[:, None]
    got = aggregate("trimmed_mean", big, np.zeros(100, np.int64), 1, beta=0.29)  # 0.29 * 100 is 28.999...
    assert got.item() == big[29:71].mean().item()


def test_trimmed_mean_ignores_beta_k_outliers():
    rows = torch.cat([torch.full((2, 4), 1e9), torch.ones(8, 4)])
    assert aggregate("trimmed_mean", rows, np.zeros(10, np.int64), 1, beta=0.2).tolist() == [[1.0] * 4]


def test_centered_clip_with_huge_tau_is_the_mean():
    rows, group = torch.randn(30, 5, dtype=torch.float64, generator=G) * 10, np.arange(30) % 4
    mean = aggregate("mean", rows, group, 4)
    assert torch.allclose(aggregate("centered_clip", rows, group, 4, clip_tau=1e9), mean)
    center = torch.randn(4, 5, dtype=torch.float64, generator=G)
    assert torch.allclose(aggregate("centered_clip", rows, group, 4, clip_tau=1e9, center=center), mean)


def test_centered_clip_by_hand_and_against_outliers():
    rows = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1 from the origin
    got = aggregate("centered_clip", rows, np.zeros(2, np.int64), 1, clip_tau=1.0, center=torch.zeros(1, 2))
    assert torch.allclose(got, torch.tensor([[0.3, 0.9]]))  # mean of (0.6, 0.8) and (0, 1)
    honest = torch.randn(9, 6, generator=G) * 0.1
    rows = torch.cat([honest, torch.full((2, 6), 1e6)])
    got = aggregate("centered_clip", rows, np.zeros(11, np.int64), 1, clip_tau=0.5, clip_iters=3)
    assert (got - honest.mean(0)).norm() < 0.5  # two huge rows move it by at most 2 * tau / 11 per step


def test_clipped_deltas_caps_the_norm():
    rows = torch.tensor([[6.0, 8.0], [0.3, 0.4], [1.0, 1.0]])
    d = clipped_deltas(rows, torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), 2.0)
    assert torch.allclose(d, torch.tensor([[1.2, 1.6], [0.3, 0.4], [0.0, 0.0]]))


def test_singletons_dtype_and_empty_input():
    rows = torch.randn(3, 4, dtype=torch.float64, generator=G)
    for rule in RULES:
        got = aggregate(rule, rows, np.array([2, 0, 1]), 3)
        assert got.dtype == torch.float64 and torch.allclose(got, rows[[1, 2, 0]])
        empty = aggregate(rule, torch.zeros(0, 4), np.zeros(0, np.int64), 2)
        assert empty.shape == (2, 4) and torch.isnan(empty).all()


def test_bad_input_raises():
    rows, group = torch.zeros(4, 2), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="rule"):
        aggregate("krum", rows, group, 1)
    with pytest.raises(ValueError, match="beta"):
        aggregate("trimmed_mean", rows, group, 1, beta=0.5)
    with pytest.raises(ValueError, match="group"):
        aggregate("mean", rows, np.array([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match="match"):
        aggregate("mean", rows, group[:3], 1)
    with pytest.raises(ValueError, match="center"):
        aggregate("centered_clip", rows, group, 1, center=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="tau"):
        aggregate("centered_clip", rows, group, 1, clip_tau=0.0)
