"""Shared helpers: launching heal-mpi under mpirun from a single-process test."""

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from heal_mpi.bench.workloads import mpi_env

ROOT = Path(__file__).resolve().parents[1]


def mpi_command(n_ranks: int, *args: str) -> list[str]:
    # --quiet, as in jobs/laptop.sh: a failing run's one line is not followed by Open MPI's MPI_ABORT banner
    return ["mpirun", "--quiet", "-n", str(n_ranks), sys.executable, "-m", "heal_mpi", *args]


def run_mpi(n_ranks: int, *args: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(mpi_command(n_ranks, *args), capture_output=True, text=True, timeout=timeout,
                          env=mpi_env(**env), cwd=ROOT)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def small_fedavg(tmp_path) -> Path:
    """A FedAvg run that takes a second or two."""
    return write_config(tmp_path / "fedavg.toml", """
[run]
rounds = 5
progress = "lines"
threads = 1
[nodes]
count = 11
[protocol]
kind = "fedavg"
[data]
synthetic_train = 880
synthetic_test = 200
[train]
local_steps = 3
batch_size = 16
""")


@pytest.fixture(params=["one rank", pytest.param("all ranks", marks=pytest.mark.mpi)])
def comm(request):
    """COMM_SELF in the single-process run; COMM_WORLD in the runs under mpirun -n 2 and -n 3
    (pytest-mpi runs only the `mpi`-marked cases there, and skips them in the single-process run)."""
    from mpi4py import MPI
    return MPI.COMM_SELF if request.param == "one rank" else MPI.COMM_WORLD


@pytest.fixture
def one_thread():
    """Torch at one intra-op thread for the test (float sums then do not depend on the tests run before)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A run with checkpoints every 4 rounds and a crash: the checkpoint, resume and failure tests share it.
CHECKPOINTED = """
[run]
rounds = 12
progress = "lines"
threads = 1
checkpoint_every = 4
[nodes]
count = 9
[protocol]
kind = "fedavg"
[data]
synthetic_train = 540
[train]
optimizer = "adam"
lr = 0.01
local_steps = 3
[faults]
crash = [{round = 5, fraction = 0.3}]
"""


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["rounds_completed"] = f.attrs["rounds_completed"]
    return {k: v for k, v in out.items() if "seconds_" not in k}


def rank_pids(mpirun_pid):
    ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(mpirun_pid)], capture_output=True, text=True)
    return [int(p) for p in ps.stdout.split()]


def wait_for_round(proc, k: int) -> None:
    """Read the job's progress lines until round k is done."""
    for line in proc.stdout:
        if line.startswith("round") and line.split()[1].startswith(f"{k}/"):
            return
    raise AssertionError(f"the job ended before round {k}")
