"""Datasets: synthetic determinism, the IDX and CIFAR readers, clear errors for bad files."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from heal_mpi.config import DataConfig
from heal_mpi.learning.datasets import (DatasetError, check_dataset_files, load_dataset, read_idx,
                                        to_float)

FMNIST = "/usr/share/datasets/fashion-mnist"


def data_cfg(**kw):
    """The real [data] section, small: 300 + 100 samples of 8 features, 3 classes."""
    return DataConfig(**{"synthetic_features": 8, "synthetic_classes": 3, "synthetic_train": 300,
                         "synthetic_test": 100, **kw})


def write_idx(path, array: np.ndarray, gz: bool = False, magic: int | None = None) -> str:
    magic = magic if magic is not None else (0x803 if array.ndim == 3 else 0x801)
    blob = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
    blob += array.astype(np.uint8).tobytes()
    path = str(path) + (".gz" if gz else "")
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(blob)
    return path


def write_mnist(root, n_train=12, n_test=5, gz=False, side=28):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, side, side)), gz)
        write_idx(root / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_is_a_function_of_the_seed():
    a, b, c = (load_dataset(data_cfg(), s) for s in (1, 1, 2))
    assert a.x_train.shape == (300, 8) and a.x_test.shape == (100, 8)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert set(np.unique(a.y_train)) == {0, 1, 2}
    assert a.input_shape == (8,) and a.num_classes == 3


def test_synthetic_noise_sets_the_spread_and_max_train_caps():
    easy, hard = load_dataset(data_cfg(synthetic_noise=0.5), 0), load_dataset(data_cfg(synthetic_noise=3.0), 0)
    assert hard.x_train.std() > 2 * easy.x_train.std()
    capped = load_dataset(data_cfg(max_train=50), 0)
    assert len(capped.y_train) == 50 and len(capped.y_test) == 100


# ----------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset_raw_and_gz(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    raw = load_dataset(data_cfg(dataset="mnist", root=str(tmp_path)), 0)
    assert raw.x_train.shape == (12, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (5, 1, 28, 28) and raw.y_test.shape == (5,)
    assert raw.input_shape == (1, 28, 28) and raw.num_classes == 10
    x = to_float(raw, raw.x_train[:3])
    assert x.dtype == torch.float32 and x.shape == (3, 1, 28, 28)
    expected = (raw.x_train[:3] / 255.0 - 0.1307) / 0.3081  # MNIST normalization
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)


def test_missing_file_names_the_path(tmp_path):
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    cfg = data_cfg(dataset="fashion-mnist", root=str(tmp_path))
    for call in (lambda: check_dataset_files(cfg), lambda: load_dataset(cfg, 0)):
        with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as err:
            call()
        assert str(tmp_path) in str(err.value) and "dataset-fashion-mnist" in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(DatasetError, match="nowhere"):
        check_dataset_files(data_cfg(dataset="mnist", root=str(tmp_path / "nowhere")))


def test_empty_root_without_default_names_data_root():
    with pytest.raises(DatasetError, match="data.root"):
        check_dataset_files(data_cfg(dataset="mnist", root=""))


def test_corrupt_idx_files(tmp_path):
    path = write_idx(tmp_path / "bad-magic", np.zeros((2, 4, 4)), magic=0x0801FFFF)
    with pytest.raises(DatasetError, match="magic"):
        read_idx(path)
    path = write_idx(tmp_path / "short", np.zeros((3, 4, 4)))
    with open(path, "r+b") as f:
        f.truncate(16 + 20)  # header says 48 pixel bytes
    with pytest.raises(DatasetError, match="header says"):
        read_idx(path)
    path = tmp_path / "not-gzip.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(str(path))
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2]))  # 12 images, 2 labels
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset(data_cfg(dataset="mnist", root=str(tmp_path)), 0)


# ----------------------------------------------------------------------------- CIFAR-10

def write_cifar(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)


def test_cifar10_batches_in_subfolder(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    cfg = data_cfg(dataset="cifar10", root=str(tmp_path))
    check_dataset_files(cfg)
    raw = load_dataset(cfg, 0)
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert to_float(raw, raw.x_test).shape == (4, 3, 32, 32)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset(cfg, 0)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetError, match="data_batch_3.*cs.toronto.edu"):
        check_dataset_files(cfg)


# ----------------------------------------------------------------------------- real files

@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST not installed")
def test_fashion_mnist_default_root():
    cfg = data_cfg(dataset="fashion-mnist", root="")
    check_dataset_files(cfg)
    raw = load_dataset(cfg, 0)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.y_train.shape == (60000,)
    assert raw.x_test.shape == (10000, 1, 28, 28) and raw.y_test.shape == (10000,)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    x = to_float(raw, raw.x_train[:5000])
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1.0) < 0.05
