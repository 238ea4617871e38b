"""Datasets, read from local files only (no network), plus a seeded synthetic one.

Owns the on-disk formats (IDX for MNIST/Fashion-MNIST, the python pickle batches of
CIFAR-10), their validation and their normalization constants. Images stay uint8 until a
rank has cut out its own nodes' samples (`to_float`), so a rank never holds a float copy
of samples it does not own.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

from heal_mpi.errors import DatasetError
from heal_mpi.rng import stream

DEFAULT_ROOTS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}

WHERE_TO_GET = {
    "fashion-mnist": "install the Debian package dataset-fashion-mnist (files in "
                     "/usr/share/datasets/fashion-mnist) or download the IDX files from "
                     "https://github.com/zalandoresearch/fashion-mnist",
    "mnist": "download the four IDX files from http://yann.lecun.com/exdb/mnist/ "
             "(or any MNIST mirror) into data.root",
    "cifar10": "download and unpack the 'CIFAR-10 python version' from "
               "https://www.cs.toronto.edu/~kriz/cifar.html into data.root",
}

# Per-channel (mean, std) of the training images scaled to [0, 1].
NORMALIZATION = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
CIFAR_SUBDIR = "cifar-10-batches-py"

_IDX_MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions
_IDX_MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension


@dataclass(frozen=True)
class RawDataset:
    """A whole dataset as loaded from disk, before partitioning.

    Attributes:
        name: data.dataset.
        x_train: uint8 [n_train, C, H, W] for images, float32 [n_train, F] for synthetic.
        y_train: int64 [n_train].
        x_test: like x_train, [n_test, ...].
        y_test: int64 [n_test].
        num_classes: number of labels (labels are 0..num_classes-1).
        mean, std: per-channel normalization applied by `to_float` (images only).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def to_float(raw: RawDataset, x: np.ndarray, device="cpu"):
    """Samples of `raw` (a slice of its x arrays) as normalized float32 on `device`."""
    import torch  # here, not at the top: config validation reads this module without torch

    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if t.dtype == torch.float32:
        return t
    shape = (1, -1) + (1,) * (t.dim() - 2)  # broadcast over [n, C, H, W]
    mean = torch.tensor(raw.mean, dtype=torch.float32, device=device).view(shape)
    std = torch.tensor(raw.std, dtype=torch.float32, device=device).view(shape)
    return (t.float().div_(255.0) - mean).div_(std)


# ----------------------------------------------------------------------------- file checks

def dataset_root(data_cfg) -> str:
    """data.root, or the dataset's default; DatasetError when neither exists."""
    if data_cfg.root:
        return data_cfg.root
    if data_cfg.dataset in DEFAULT_ROOTS:
        return DEFAULT_ROOTS[data_cfg.dataset]
    raise DatasetError(f"data.root is empty and {data_cfg.dataset!r} has no default location; "
                       f"set data.root: {WHERE_TO_GET[data_cfg.dataset]}")


def _missing(dataset: str, path: str) -> DatasetError:
    return DatasetError(f"{dataset}: missing file {path}; {WHERE_TO_GET[dataset]}")


def _idx_path(root: str, stem: str, dataset: str) -> str:
    """`stem.gz` or `stem` under root (the .gz wins when both exist)."""
    for candidate in (os.path.join(root, stem + ".gz"), os.path.join(root, stem)):
        if os.path.isfile(candidate):
            return candidate
    raise _missing(dataset, os.path.join(root, stem) + "[.gz]")


def _cifar_dir(root: str) -> str:
    sub = os.path.join(root, CIFAR_SUBDIR)
    return sub if os.path.isdir(sub) else root


def check_dataset_files(data_cfg) -> None:
    """Cheap existence check of every file the dataset needs (no reading).

    Raises:
        DatasetError: naming the first missing path and where to obtain the data.
        ValueError: unknown data.dataset.
    """
    if data_cfg.dataset == "synthetic":
        return
    if data_cfg.dataset not in WHERE_TO_GET:
        raise ValueError(f"data.dataset = {data_cfg.dataset!r} is not one of "
                         f"synthetic, fashion-mnist, mnist, cifar10")
    root = dataset_root(data_cfg)
    if not os.path.isdir(root):
        raise _missing(data_cfg.dataset, root + os.sep)
    if data_cfg.dataset == "cifar10":
        folder = _cifar_dir(root)
        for name in CIFAR_TRAIN + [CIFAR_TEST]:
            if not os.path.isfile(os.path.join(folder, name)):
                raise _missing("cifar10", os.path.join(folder, name))
        return
    for stem in IDX_FILES.values():
        _idx_path(root, stem, data_cfg.dataset)


NOMINAL_TRAIN = {"fashion-mnist": 60000, "mnist": 60000, "cifar10": 50000}


def train_size(data_cfg, read_files: bool = True) -> int:
    """How many training samples the run has (data.max_train applied): synthetic_train, the count in
    the training labels' IDX header when `read_files` and the file is there, else the data set's
    published size. Reads 8 bytes at most: validation uses it."""
    if data_cfg.dataset == "synthetic":
        n = data_cfg.synthetic_train
    else:
        n = NOMINAL_TRAIN[data_cfg.dataset]
        if read_files and data_cfg.dataset in ("fashion-mnist", "mnist"):
            try:
                path = _idx_path(dataset_root(data_cfg), IDX_FILES["y_train"], data_cfg.dataset)
                with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
                    magic, n = struct.unpack(">II", f.read(8))
            except (DatasetError, OSError, EOFError, struct.error):
                pass  # the data set's own check names the file; its published size stands in
    return min(n, data_cfg.max_train) if data_cfg.max_train else n


# ----------------------------------------------------------------------------- readers

def read_idx(path: str, dataset: str = "mnist") -> np.ndarray:
    """One IDX file (raw or gzip) of unsigned bytes: images [n, rows, cols] or labels [n].

    Raises:
        DatasetError: unreadable file, bad magic number, or a size that does not match the header.
    """
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise _missing(dataset, path) from None
    except (OSError, EOFError) as e:  # bad gzip stream, truncated archive
        raise DatasetError(f"{dataset}: cannot read {path} ({e}); {WHERE_TO_GET[dataset]}") from None
    if len(blob) < 8:
        raise DatasetError(f"{dataset}: {path} is truncated ({len(blob)} bytes); {WHERE_TO_GET[dataset]}")
    magic, n = struct.unpack(">II", blob[:8])
    if magic == _IDX_MAGIC_IMAGES and len(blob) >= 16:
        rows, cols = struct.unpack(">II", blob[8:16])
        shape, header = (n, rows, cols), 16
    elif magic == _IDX_MAGIC_LABELS:
        shape, header = (n,), 8
    else:
        raise DatasetError(f"{dataset}: {path} is not an IDX ubyte file (magic 0x{magic:08x}); "
                           f"{WHERE_TO_GET[dataset]}")
    expected = header + int(np.prod(shape))
    if len(blob) != expected:
        raise DatasetError(f"{dataset}: {path} has {len(blob)} bytes, its header says {expected}; "
                           f"{WHERE_TO_GET[dataset]}")
    # A copy: frombuffer views are read-only, which torch.from_numpy warns about.
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape).copy()


def _load_idx_dataset(data_cfg) -> RawDataset:
    name, root = data_cfg.dataset, dataset_root(data_cfg)
    arrays = {k: read_idx(_idx_path(root, stem, name), name) for k, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or len(x) != len(y):
            raise DatasetError(f"{name}: {root}: {split} images {x.shape} and labels {y.shape} "
                               f"do not match; {WHERE_TO_GET[name]}")
        if len(y) and y.max() >= 10:
            raise DatasetError(f"{name}: {root}: {split} label {int(y.max())} out of range 0..9")
    mean, std = NORMALIZATION[name]
    return RawDataset(name, arrays["x_train"][:, None], arrays["y_train"].astype(np.int64),
                      arrays["x_test"][:, None], arrays["y_test"].astype(np.int64), 10, mean, std)


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    # The official distribution is pickled; we only read files the user pointed us to.
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise _missing("cifar10", path) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DatasetError(f"cifar10: cannot read {path} ({type(e).__name__}: {e}); "
                           f"{WHERE_TO_GET['cifar10']}") from None
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y) or (len(y) and y.max() >= 10):
        raise DatasetError(f"cifar10: {path} has data {x.shape} and labels {y.shape}, expected "
                           f"[n, 3072] and [n] in 0..9; {WHERE_TO_GET['cifar10']}")
    return x.reshape(-1, 3, 32, 32), y


def _load_cifar10(data_cfg) -> RawDataset:
    folder = _cifar_dir(dataset_root(data_cfg))
    parts = [_read_cifar_batch(os.path.join(folder, n)) for n in CIFAR_TRAIN]
    x_test, y_test = _read_cifar_batch(os.path.join(folder, CIFAR_TEST))
    mean, std = NORMALIZATION["cifar10"]
    return RawDataset("cifar10", np.concatenate([p[0] for p in parts]),
                      np.concatenate([p[1] for p in parts]), x_test, y_test, 10, mean, std)


def make_synthetic(data_cfg, seed: int) -> RawDataset:
    """Gaussian classes: centroid_c + noise * N(0, I) in R^features, seeded by `seed` only.

    Centroids are N(0, I) scaled to norm 3 (well apart for a linear model), so
    `synthetic_noise` alone sets the difficulty: about 1 is easy, about 3 is hard.
    """
    f, k = data_cfg.synthetic_features, data_cfg.synthetic_classes
    centroids = stream(seed, "synthetic-centroids").standard_normal((k, f))
    centroids *= 3.0 / np.linalg.norm(centroids, axis=1, keepdims=True)

    def draw(n: int, purpose: str) -> tuple[np.ndarray, np.ndarray]:
        rng = stream(seed, purpose)
        y = rng.integers(0, k, size=n)
        x = centroids[y] + data_cfg.synthetic_noise * rng.standard_normal((n, f))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(data_cfg.synthetic_train, "synthetic-train")
    x_test, y_test = draw(data_cfg.synthetic_test, "synthetic-test")
    return RawDataset("synthetic", x_train, y_train, x_test, y_test, k)


def load_dataset(data_cfg, seed: int) -> RawDataset:
    """The whole dataset named by data.dataset, capped to its first data.max_train train samples.

    (The training files of these datasets are not sorted by label, so a prefix keeps the
    classes balanced.)
    """
    if data_cfg.dataset == "synthetic":
        raw = make_synthetic(data_cfg, seed)
    else:
        check_dataset_files(data_cfg)
        raw = _load_cifar10(data_cfg) if data_cfg.dataset == "cifar10" else _load_idx_dataset(data_cfg)
    cap = data_cfg.max_train
    if 0 < cap < len(raw.y_train):
        raw = RawDataset(raw.name, raw.x_train[:cap], raw.y_train[:cap], raw.x_test, raw.y_test,
                         raw.num_classes, raw.mean, raw.std)
    return raw
