"""The single-copy probe (heal_mpi/single_copy.py): it says "cma" only where Open MPI can copy a
message once, and the launchers then leave Open MPI's choice alone."""

import ctypes
import os
import subprocess
import sys

import pytest

from conftest import ROOT, mpi_env
from heal_mpi import single_copy


def fake_libc(read):
    """A libc whose process_vm_readv is `read(local_iov, remote_iov) -> bytes read`."""
    class Libc:
        pass
    libc = Libc()
    libc.prctl = lambda *args: 0
    libc.process_vm_readv = lambda pid, local, n_local, remote, n_remote, flags: read(local._obj, remote._obj)
    return libc


def copy(local, remote):  # the child's memory is at the same address in the parent (fork)
    ctypes.memmove(local.iov_base, remote.iov_base, remote.iov_len)
    return remote.iov_len


def test_the_probe_believes_only_bytes_that_arrived():
    assert single_copy.works(fake_libc(copy))
    assert not single_copy.works(fake_libc(lambda local, remote: -1))  # EPERM: a container's seccomp
    assert not single_copy.works(fake_libc(lambda local, remote: remote.iov_len))  # a count, but nothing read
    dying = fake_libc(copy)
    dying.prctl = lambda *args: os._exit(3)  # the child is gone before it could be read
    assert not single_copy.works(dying)


def test_the_launchers_set_none_only_where_the_probe_fails_and_never_over_the_user(monkeypatch):
    monkeypatch.setattr(single_copy, "works", lambda: False)
    assert single_copy.environment({}) == dict.fromkeys(single_copy.VARIABLES, "none")
    assert single_copy.environment({single_copy.VARIABLES[0]: "cma"}) == {}
    monkeypatch.setattr(single_copy, "works", lambda: True)
    assert single_copy.environment({}) == {}
    r = subprocess.run([sys.executable, str(ROOT / "heal_mpi" / "single_copy.py")], capture_output=True, text=True)
    assert r.stdout.strip() in ("cma", "none") and r.returncode == 0  # as a file, standard library only


SEND_BOTH_WAYS = """
import numpy as np
from mpi4py import MPI
c = MPI.COMM_WORLD
sent = np.arange(1 << 21, dtype=np.float32) + c.rank  # 8 MiB: far above the eager limit, copied by CMA
got = np.empty_like(sent)
MPI.Request.Waitall([c.Irecv(got, source=1 - c.rank), c.Isend(sent, dest=1 - c.rank)])
print("ok" if (got == np.arange(1 << 21, dtype=np.float32) + 1 - c.rank).all() else "wrong", flush=True)
"""


@pytest.mark.skipif(not single_copy.works(), reason="cross-memory attach is forbidden here: the launchers set none")
def test_where_the_probe_says_cma_open_mpi_copies_with_it():
    forced = dict.fromkeys(single_copy.VARIABLES, "cma")
    r = subprocess.run(["mpirun", "-n", "2", sys.executable, "-c", SEND_BOTH_WAYS], capture_output=True, text=True,
                       timeout=120, env=mpi_env(**forced))
    assert r.returncode == 0 and r.stdout.split() == ["ok", "ok"], r.stdout + r.stderr
    assert "Read -1" not in r.stderr and "CMA" not in r.stderr
