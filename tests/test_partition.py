"""Partitions: sizes, label skew, determinism, and independence from the slot range."""


import numpy as np
import pytest
import torch

from heal_mpi.config import DataConfig
from heal_mpi.learning.datasets import RawDataset
from heal_mpi.learning.partition import local_data_from, local_split, partition_indices, sampled_indices


def data_cfg(**kw):
    """The real [data] section: 6,000 + 100 samples of 4 features, 10 classes."""
    return DataConfig(**{"synthetic_features": 4, "synthetic_classes": 10, "synthetic_train": 6000,
                         "synthetic_test": 100, **kw})


def labels(n_per_class=600, classes=10, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), n_per_class))


def raw_dataset(y):
    """Features that encode the sample index, so tests can see which samples a node got."""
    x = np.arange(len(y), dtype=np.float32)[:, None].repeat(2, axis=1)
    return RawDataset("synthetic", x, y, x[:10], y[:10], int(y.max()) + 1)


def assert_exact_cover(parts, n):
    flat = np.concatenate(parts)
    assert len(flat) == n and np.array_equal(np.sort(flat), np.arange(n))  # disjoint and complete


def test_iid_equal_sizes():
    y = labels()
    parts = partition_indices(y, 7, data_cfg(), seed=3)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(y)
    assert_exact_cover(parts, len(y))
    again = partition_indices(y, 7, data_cfg(), seed=3)
    other = partition_indices(y, 7, data_cfg(), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not np.array_equal(parts[0], other[0])


def test_dirichlet_01_over_100_nodes_is_skewed_and_covers_the_data():
    y = labels()
    parts = partition_indices(y, 100, data_cfg(partition="dirichlet", alpha=0.1), seed=0)
    sizes = np.array([len(p) for p in parts])
    assert sizes.sum() == len(y) and sizes.min() >= 1
    assert_exact_cover(parts, len(y))
    max_frac = np.array([np.bincount(y[p], minlength=10).max() / len(p) for p in parts])
    assert max_frac.mean() > 0.5                       # strong label skew
    iid = partition_indices(y, 100, data_cfg(), seed=0)
    assert np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in iid]) < 0.3


def test_dirichlet_never_leaves_a_node_empty():
    y = labels(n_per_class=30)  # 300 samples over 200 nodes at alpha 0.01: many empty draws
    parts = partition_indices(y, 200, data_cfg(partition="dirichlet", alpha=0.01), seed=1)
    assert min(len(p) for p in parts) >= 1
    assert_exact_cover(parts, len(y))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shards_at_most_k_classes(k):
    y = labels()
    parts = partition_indices(y, 50, data_cfg(partition="shards", shards_per_node=k), seed=0)
    assert all(len(np.unique(y[p])) <= k for p in parts)
    assert all(len(p) > 0 for p in parts)
    assert_exact_cover(parts, len(y))
    if k == 2:  # most nodes really get two classes
        assert np.mean([len(np.unique(y[p])) == 2 for p in parts]) > 0.8


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="cannot be split"):
        partition_indices(np.zeros(5, dtype=np.int64), 6, data_cfg(), seed=0)


def test_local_split():
    idx = np.arange(100, 200)
    train, test = local_split(idx, node=4, fraction=0.2, seed=0)
    assert len(test) == 20 and len(train) == 80
    assert_exact_cover([train - 100, test - 100], 100)
    again, _ = local_split(idx, node=4, fraction=0.2, seed=0)
    other, _ = local_split(idx, node=5, fraction=0.2, seed=0)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    one_train, one_test = local_split(np.array([7]), node=0, fraction=0.9, seed=0)
    assert len(one_train) == 1 and len(one_test) == 0  # a node keeps a training sample


@pytest.mark.parametrize("partition", ["iid", "dirichlet", "shards"])
def test_a_node_gets_the_same_samples_whatever_slot_range(partition):
    y = labels(n_per_class=100)
    raw = raw_dataset(y)
    cfg = data_cfg(partition=partition, alpha=0.1, local_test_fraction=0.25)
    whole = local_data_from(raw, cfg, 5, 100, 0, 100)
    part = local_data_from(raw, cfg, 5, 100, 33, 67)
    assert part.n_local == 34 and len(part.train_offsets) == 35
    assert whole.train_offsets[-1] + whole.local_test_offsets[-1] == len(y)
    for node in (33, 50, 66):
        for x, off in (("x_train", "train_offsets"), ("x_local_test", "local_test_offsets")):
            ow, op = getattr(whole, off), getattr(part, off)
            a = getattr(whole, x)[ow[node]:ow[node + 1]]
            b = getattr(part, x)[op[node - 33]:op[node - 32]]
            assert torch.equal(a, b)
    assert torch.equal(whole.x_test, part.x_test)


# ----------------------------------------------------------------------------- more nodes than samples

def test_iid_draws_give_every_node_its_samples_whatever_the_node_count():
    y = labels()  # 6,000 samples
    parts = sampled_indices(y, np.arange(20000), 10, data_cfg(samples_per_node=10), seed=1)
    assert len(parts) == 20000 and all(len(p) == 10 for p in parts)  # 200,000 draws from 6,000 samples
    flat = np.concatenate(parts)
    assert flat.min() >= 0 and flat.max() < 6000
    counts = np.bincount(flat, minlength=6000)
    assert abs(counts.mean() - 200000 / 6000) < 1e-9 and counts.std() < 1.2 * np.sqrt(200000 / 6000)  # uniform
    some = sampled_indices(y, np.array([7, 19999]), 10, data_cfg(samples_per_node=10), seed=1)
    assert np.array_equal(some[0], parts[7]) and np.array_equal(some[1], parts[19999])  # keyed by node id


def test_dirichlet_draws_skew_each_node_to_its_own_classes():
    y = labels()

    def mean_classes(alpha):
        parts = sampled_indices(y, np.arange(2000), 20, data_cfg(partition="dirichlet", alpha=alpha), seed=2)
        return np.mean([len(np.unique(y[p])) for p in parts]), parts

    few, parts = mean_classes(0.1)
    many, _ = mean_classes(100.0)
    assert few < 3.5 and many > 8  # 20 draws over 10 classes: ~8.8 when the mix is nearly uniform
    overall = np.bincount(y[np.concatenate(parts)], minlength=10) / (2000 * 20)
    assert np.allclose(overall, 0.1, atol=0.02)  # Dir(alpha, ..., alpha): no class favoured overall


def test_cross_device_data_on_any_slot_range():
    y = labels()
    cfg = data_cfg(partition="dirichlet", alpha=0.5, samples_per_node=8)
    whole = local_data_from(raw_dataset(y), cfg, 3, 9000, 0, 9000)
    part = local_data_from(raw_dataset(y), cfg, 3, 9000, 4000, 4003)
    assert np.array_equal(np.diff(part.train_offsets), [8, 8, 8])
    assert torch.equal(part.x_train, whole.x_train[4000 * 8:4003 * 8])


def test_cross_device_configs():
    from heal_mpi import config as cfgmod
    from heal_mpi.config import ConfigError
    base = ["nodes.count=20000", "data.synthetic_train=6000", "overlay.cache_size=10", "protocol.kind='gossip'"]
    with pytest.raises(ConfigError, match="or let each draw data.samples_per_node"):
        cfgmod.validate(cfgmod.load(None, base))
    cfgmod.validate(cfgmod.load(None, [*base, "data.samples_per_node=10"]))
    with pytest.raises(ConfigError, match="data.samples_per_node: nodes draw from an iid or dirichlet mix"):
        cfgmod.validate(cfgmod.load(None, [*base, "data.samples_per_node=10", "data.partition='shards'"]))
