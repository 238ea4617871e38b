"""heal-mpi info and config work from a plain shell."""

import subprocess
import sys


def test_info_prints_versions_and_model_size():
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "info", "--model", "lenet5"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("heal_mpi", "torch", "MPI library", "parallel HDF5", "61,706"):
        assert word in r.stdout, r.stdout
