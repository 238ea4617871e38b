"""heal-mpi info and config work from a plain shell."""

import subprocess
import sys


def test_info_prints_versions_and_model_size():
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "info", "--model", "lenet5"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("heal_mpi", "torch", "MPI library", "parallel HDF5", "61,706"):
        assert word in r.stdout, r.stdout


def test_bench_quick_prints_its_table():
    """A smoke run at tiny sizes: the sections run and print rows (no timing is asserted)."""
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "bench", "limit", "backends", "eval", "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for row in ("| limit | plain PyTorch, batch 32", "| backends | loop", "| backends | vmap", "| eval |"):
        assert row in r.stdout, r.stdout
