"""Which samples each node holds, and this rank's share of them (`LocalData`).

Every rank computes the partition of the whole label vector from the seed alone, so node
j gets the same samples whatever the rank count; then it keeps the nodes it owns. The
per-node local train/test split is keyed by node id for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from heal_mpi.learning.datasets import RawDataset, load_dataset, to_float
from heal_mpi.rng import stream, uniform


def partition_indices(labels: np.ndarray, n_nodes: int, data_cfg, seed: int) -> list[np.ndarray]:
    """Sample indices of every node 0..n_nodes-1 (each sorted int64), by data.partition.

    - iid: a seeded permutation cut into n_nodes near-equal parts (sizes differ by <= 1).
    - dirichlet: for each class, proportions over nodes ~ Dir(alpha); smaller alpha, more skew.
      Every node gets at least one sample (see `_fill_empty`).
    - shards: class-pure shards, `shards_per_node` of them per node (McMahan et al.'s
      pathological non-IID), so a node holds at most `shards_per_node` classes.

    Raises:
        ValueError: fewer samples than nodes (or than shards), unknown partition.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n < n_nodes:
        raise ValueError(f"data: {n} train samples cannot be split over {n_nodes} nodes "
                         f"(raise data.max_train, lower nodes.count, or draw data.samples_per_node each)")
    rng = stream(seed, f"partition-{data_cfg.partition}")
    if data_cfg.partition == "iid":
        parts = np.array_split(rng.permutation(n), n_nodes)
    elif data_cfg.partition == "dirichlet":
        parts = _dirichlet(labels, n_nodes, data_cfg.alpha, rng)
    elif data_cfg.partition == "shards":
        parts = _shards(labels, n_nodes, data_cfg.shards_per_node, rng)
    else:
        raise ValueError(f"data.partition = {data_cfg.partition!r} is not iid, dirichlet or shards")
    return [np.sort(p).astype(np.int64) for p in parts]


def sampled_indices(labels: np.ndarray, nodes: np.ndarray, k: int, data_cfg, seed: int) -> list[np.ndarray]:
    """Sample indices of each node in `nodes` (each sorted int64, k of them, repeats allowed): the
    cross-device set-up, where nodes may outnumber samples (data.samples_per_node = k).

    - iid: k draws with replacement from the whole training set.
    - dirichlet: the node's class mix q ~ Dir(alpha, ..., alpha), then k draws: a class from q,
      and a sample of that class uniformly (with replacement).
    Every draw is keyed by the node's id, so a node holds the same samples on any rank count
    and computing a rank's nodes costs O(its nodes x k), whatever the number of nodes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    nodes = np.asarray(nodes, dtype=np.int64)
    j = np.arange(k)[None, :]
    u = uniform(seed, "sample", nodes[:, None], j)  # [n, k]
    if data_cfg.partition == "iid":
        return [np.sort(row) for row in (u * len(labels)).astype(np.int64)]
    if data_cfg.partition != "dirichlet":
        raise ValueError(f"data.samples_per_node: draws from an iid or dirichlet mix, not {data_cfg.partition!r}")
    classes, counts = np.unique(labels, return_counts=True)
    by_class = np.argsort(labels, kind="stable")  # the samples of class c: by_class[start[c]:start[c] + counts[c]]
    start = np.r_[0, np.cumsum(counts)[:-1]]
    mix = np.stack([stream(seed, "sample-mix", int(v)).dirichlet(np.full(len(classes), data_cfg.alpha))
                    for v in nodes]) if len(nodes) else np.zeros((0, len(classes)))
    cdf = np.cumsum(mix, axis=1)
    pick = uniform(seed, "sample-class", nodes[:, None], j)  # [n, k]
    c = np.minimum((pick[:, :, None] >= cdf[:, None, :]).sum(axis=2), len(classes) - 1)  # [n, k] class index
    return [np.sort(row) for row in by_class[start[c] + (u * counts[c]).astype(np.int64)]]


def _dirichlet(labels: np.ndarray, n_nodes: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(n_nodes)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        p = rng.dirichlet(np.full(n_nodes, alpha))
        cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)  # [n_nodes - 1] split points
        for j, chunk in enumerate(np.split(idx, cuts)):
            parts[j].append(chunk)
    return _fill_empty([np.concatenate(p) for p in parts])


def _fill_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Give each empty node (ascending id) the last sample of the currently largest node.

    With a small alpha some nodes draw almost nothing of every class; a deterministic fix
    keeps the partition a pure function of the seed (no resampling loop to reason about).
    """
    sizes = np.array([len(p) for p in parts])
    for j in np.flatnonzero(sizes == 0):
        donor = int(np.argmax(sizes))  # ties: smallest id
        parts[j], parts[donor] = parts[donor][-1:], parts[donor][:-1]
        sizes[j], sizes[donor] = 1, sizes[donor] - 1
    return parts


def _shards(labels: np.ndarray, n_nodes: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    n_shards = n_nodes * k
    classes, counts = np.unique(labels, return_counts=True)
    if n_shards > len(labels):
        raise ValueError(f"data.shards_per_node = {k}: {n_shards} shards for {len(labels)} samples")
    # Shards per class proportional to its size (largest remainder), each shard class-pure.
    quota = counts * n_shards / counts.sum()
    per_class = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - per_class), kind="stable")
    per_class[order[: n_shards - per_class.sum()]] += 1
    per_class = np.minimum(per_class, counts)  # never an empty shard
    shards = [s for c, m in zip(classes, per_class) if m > 0
              for s in np.array_split(rng.permutation(np.flatnonzero(labels == c)), m)]
    while len(shards) < n_shards:  # only when a tiny class was capped above: split the largest
        big = max(range(len(shards)), key=lambda i: len(shards[i]))
        shards[big:big + 1] = np.array_split(shards[big], 2)
    deal = rng.permutation(n_shards).reshape(n_nodes, k)  # [n_nodes, k] shard ids
    return [np.concatenate([shards[s] for s in row]) for row in deal]


def local_split(idx: np.ndarray, node: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of one node: round(fraction * size) seeded samples held out.

    A node always keeps at least one training sample.
    """
    n_test = min(int(round(fraction * len(idx))), len(idx) - 1)
    if n_test <= 0:
        return idx, idx[:0]
    perm = stream(seed, "local-split", node).permutation(len(idx))
    return np.sort(idx[perm[n_test:]]), np.sort(idx[perm[:n_test]])


# ----------------------------------------------------------------------------- local data

@dataclass
class LocalData:
    """This rank's nodes' samples, concatenated node after node, on its device.

    Node slot_lo + i owns x_train[train_offsets[i]:train_offsets[i+1]] (same for the local
    test split); every rank also holds the whole global test set.

    Attributes:
        x_train: float32 [n_train_local, *input_shape].
        y_train: int64 [n_train_local].
        train_offsets: int64 numpy [n_local + 1].
        x_local_test, y_local_test, local_test_offsets: the nodes' held-out splits, same layout.
        x_test: float32 [n_test, *input_shape], the global test set.
        y_test: int64 [n_test].
        input_shape: one sample's shape, e.g. (1, 28, 28) or (features,).
        num_classes: number of labels.
        n_nodes: nodes in the run; slot_lo, slot_hi: this rank owns [slot_lo, slot_hi).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    train_offsets: np.ndarray
    x_local_test: torch.Tensor
    y_local_test: torch.Tensor
    local_test_offsets: np.ndarray
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    n_nodes: int
    slot_lo: int
    slot_hi: int

    @property
    def n_local(self) -> int:
        return self.slot_hi - self.slot_lo

    @property
    def train_sizes(self) -> np.ndarray:
        """int64 [n_local]: training samples per local node."""
        return np.diff(self.train_offsets)


def _gather(raw: RawDataset, x: np.ndarray, y: np.ndarray, parts: list[np.ndarray],
            device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return to_float(raw, x[idx], device), torch.from_numpy(y[idx]).to(device), offsets


def local_data_from(raw: RawDataset, data_cfg, seed: int, n_nodes: int, slot_lo: int, slot_hi: int,
                    device: torch.device | str = "cpu") -> LocalData:
    """Partition `raw` over n_nodes and keep nodes [slot_lo, slot_hi) (see `load_local_data`)."""
    if data_cfg.samples_per_node:
        parts = sampled_indices(raw.y_train, np.arange(slot_lo, slot_hi), data_cfg.samples_per_node, data_cfg, seed)
    else:
        parts = partition_indices(raw.y_train, n_nodes, data_cfg, seed)[slot_lo:slot_hi]
    splits = [local_split(p, slot_lo + i, data_cfg.local_test_fraction, seed) for i, p in enumerate(parts)]
    x_tr, y_tr, off_tr = _gather(raw, raw.x_train, raw.y_train, [s[0] for s in splits], device)
    x_lt, y_lt, off_lt = _gather(raw, raw.x_train, raw.y_train, [s[1] for s in splits], device)
    return LocalData(
        x_train=x_tr, y_train=y_tr, train_offsets=off_tr,
        x_local_test=x_lt, y_local_test=y_lt, local_test_offsets=off_lt,
        x_test=to_float(raw, raw.x_test, device), y_test=torch.from_numpy(raw.y_test).to(device),
        input_shape=raw.input_shape, num_classes=raw.num_classes,
        n_nodes=n_nodes, slot_lo=slot_lo, slot_hi=slot_hi,
    )


def load_local_data(data_cfg, seed: int, n_nodes: int, slot_lo: int, slot_hi: int,
                    device: torch.device | str = "cpu") -> LocalData:
    """Load the dataset once on this rank and keep its own nodes' samples on `device`.

    All of a rank's samples go to its device: the datasets here are at most 60k small
    images (CIFAR-10: 600 MB as float32 if one rank owns every node), which fits any GPU
    we target; the raw uint8 copy is dropped when this returns.
    """
    raw = load_dataset(data_cfg, seed)
    return local_data_from(raw, data_cfg, seed, n_nodes, slot_lo, slot_hi, device)
