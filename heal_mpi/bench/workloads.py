"""The workloads the benchmark measures, and their yardsticks: plain PyTorch training and inference of
one LeNet-5, heal-mpi runs of the reference workload under mpirun."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from heal_mpi import single_copy
from heal_mpi.config import DataConfig, EvalConfig, ModelConfig, TrainConfig

CORES = os.cpu_count() or 1
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1", "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
}


def mpi_env(**extra) -> dict:
    """The environment for a child mpirun. A process that initialised MPI itself (a singleton, or a
    rank of `mpirun pytest`) carries its job's PMIx variables, and a child mpirun that inherits them
    fails without a word: they are dropped."""
    env = {**os.environ, **MPI_ENV, **single_copy.environment(), **extra}
    for key in list(env):
        if key.startswith(("OMPI_COMM_WORLD", "PMIX_", "OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_UNIVERSE")):
            env.pop(key)
    return env


def lenet_data(n: int, device="cpu"):
    """n Fashion-MNIST training images (random ones when the files are missing: speed is the same)."""
    from heal_mpi.learning.datasets import DatasetError, load_dataset, to_float
    try:
        raw = load_dataset(DataConfig(dataset="fashion-mnist", max_train=n), seed=0)
        return to_float(raw, raw.x_train[:n], device), torch.as_tensor(raw.y_train[:n], device=device)
    except DatasetError:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def fmnist_model(name: str = "lenet5"):
    """The model `name` for 28x28 images of 10 classes (Fashion-MNIST)."""
    from heal_mpi.learning.models import build_model
    return build_model(ModelConfig(name=name), (1, 28, 28), 10)


def fmnist_nodes(nodes: int, per_node: int):
    """LocalData of `nodes` nodes holding `per_node` Fashion-MNIST images each (one rank owns all)."""
    from heal_mpi.learning.partition import load_local_data
    return load_local_data(DataConfig(dataset="fashion-mnist", max_train=nodes * per_node), 0, nodes, 0, nodes,
                           "cpu")


def random_nodes(nodes: int, per_node: int, device):
    """LocalData of random 28x28 images: training speed does not depend on pixel values."""
    from heal_mpi.learning.partition import LocalData
    g = torch.Generator().manual_seed(0)
    n = nodes * per_node
    x = torch.randn(n, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    offsets = np.arange(nodes + 1, dtype=np.int64) * per_node
    empty = np.zeros(nodes + 1, dtype=np.int64)
    return LocalData(x, y, offsets, x[:0], y[:0], empty, x[:256], y[:256], (1, 28, 28), 10, nodes, 0, nodes)


def lenet_population(data, backend: str = "loop", eval_samples: int = 0, device="cpu", model: str = "lenet5",
                     batch: int = 32):
    """LeNet-5 nodes (or `model`) with the reference recipe: Adam 1e-3, batch 32, one local epoch."""
    from heal_mpi.learning.population import Population
    return Population(ModelConfig(name=model), TrainConfig(optimizer="adam", lr=1e-3, backend=backend, batch_size=batch),
                      EvalConfig(max_samples=eval_samples), data, 0, device)


def train_round(pop, device="cpu") -> float:
    """Samples/s of one round of local training of every node of `pop`."""
    n = pop.n_local
    sync(device)
    t0 = time.perf_counter()
    pop.train(np.ones(n, dtype=bool), 0, np.zeros(n, dtype=np.int64))
    sync(device)
    return pop.train_samples / (time.perf_counter() - t0)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plain_train(x, y, batch: int, device="cpu", model: str = "lenet5") -> float:
    """Samples/s of plain PyTorch training one LeNet-5 (or `model`; nn.Module + torch.optim.Adam)."""
    model = fmnist_model(model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for warm in range(2):  # allocator and kernel warm-up
        opt.zero_grad()
        F.cross_entropy(model(x[:batch]), y[:batch]).backward()
        opt.step()
    sync(device)
    t0 = time.perf_counter()
    for lo in range(0, len(y) - batch + 1, batch):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[lo:lo + batch]), y[lo:lo + batch]).backward()
        opt.step()
    sync(device)
    return (len(y) // batch * batch) / (time.perf_counter() - t0)


@torch.no_grad()
def plain_infer(x, batch: int, device="cpu", passes: int = 1) -> float:
    """Samples/s of plain PyTorch inference of one LeNet-5 over x, `passes` times."""
    model = fmnist_model().to(device).eval()
    model(x[:batch])
    sync(device)
    t0 = time.perf_counter()
    for _ in range(passes):
        for lo in range(0, len(x), batch):
            model(x[lo:lo + batch])
    sync(device)
    return passes * len(x) / (time.perf_counter() - t0)


def reference_config(path: Path, protocol: str, nodes: int, per_node: int, rounds: int, **sections) -> Path:
    """A heal-mpi config for the reference workload (nodes x per_node LeNet-5 samples)."""
    text = f"""
[run]
rounds = {rounds}
progress = "none"
threads = {sections.get('threads', 1)}
[nodes]
count = {nodes}
[protocol]
kind = "{protocol}"
[overlay]
cache_size = {min(20, nodes - 1)}
hubs = {min(5, nodes // 4 or 1)}
[data]
dataset = "{sections.get('dataset', 'fashion-mnist')}"
max_train = {nodes * per_node}
[model]
name = "lenet5"
[train]
optimizer = "adam"
lr = 0.001
batch_size = 32
[eval]
every = {sections.get('eval_every', 1000)}
max_samples = {sections.get('eval_samples', 0)}
"""
    path.write_text(text)
    return path


def run_mpi(ranks: int, args: list[str], timeout: float = 900, **env) -> str:
    """`python -m ARGS` on RANKS ranks (`env`: variables to set); its standard output, or an error
    with everything it printed."""
    cmd = ["mpirun", "-n", str(ranks), sys.executable, "-m", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(**env))
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def steady_round(path: Path, index: int = 1) -> dict:
    """The /rounds scalars of round `index` (from 0), by default the second: the first warms up, the
    last one is always evaluated."""
    with h5py.File(path, "r") as f:
        return {k: float(f["rounds"][k][index]) for k in f["rounds"]}


def dataset_available() -> str:
    from heal_mpi.learning.datasets import DatasetError, check_dataset_files
    try:
        check_dataset_files(DataConfig(dataset="fashion-mnist"))
        return "fashion-mnist"
    except DatasetError:
        raise SystemExit("heal-mpi bench: the reference workload needs Fashion-MNIST "
                         "(Debian package dataset-fashion-mnist; make setup installs it)")
