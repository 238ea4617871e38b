"""Whether Open MPI's shared-memory transport may copy a message once, straight from one rank's
memory into another's (cross-memory attach, CMA: the process_vm_readv syscall), or must copy it
twice, through a shared buffer.

Containers often forbid that syscall (Docker's default seccomp profile, a Yama ptrace policy);
Open MPI then fails every large message ("Read -1, expected ..., errno = 1") unless told
`btl_vader_single_copy_mechanism = none`. Where it is allowed, one copy makes a Mix's rows cross
ranks several times faster (a 10,000-node Gossip round on 2 ranks: its rows' exchange 0.45-0.60 s
with two copies, 0.06-0.11 s with one, on the development VM). So the launchers (Makefile, jobs/laptop.sh, jobs/slurm, the
benchmark) ask this probe and set `none` only where the syscall fails.

The probe does what Open MPI's ranks do: a process that allowed any process to trace it
(PR_SET_PTRACER_ANY, as Open MPI's vader transport sets) has its memory read by another one.
It imports nothing but the standard library, so that a shell script can run it as a file:

    python3 heal_mpi/single_copy.py      # prints "cma" or "none"
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PTRACER = 0x59616D61
PR_SET_PTRACER_ANY = ctypes.c_ulong(-1).value
VARIABLES = ("OMPI_MCA_btl_vader_single_copy_mechanism", "OMPI_MCA_btl_sm_single_copy_mechanism")  # Open MPI 4, 5
_PROBE = b"heal-mpi single-copy probe\0"


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def works(libc=None) -> bool:
    """Whether this process may read a child's memory with process_vm_readv, the child having
    allowed any tracer. False off Linux and wherever the syscall or the fork fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = libc or ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        libc.process_vm_readv.restype = ctypes.c_ssize_t
        libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                          ctypes.c_ulong, ctypes.c_ulong]
        source = ctypes.create_string_buffer(_PROBE, len(_PROBE))  # at the same address in the child
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
    except (OSError, AttributeError):
        return False
    if pid == 0:  # the child: lets any process read it, says so, waits until it was read
        try:
            os.close(ready_r)
            os.close(done_w)
            libc.prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            return False
        target = ctypes.create_string_buffer(len(_PROBE))
        here = _IoVec(ctypes.addressof(target), len(_PROBE))
        there = _IoVec(ctypes.addressof(source), len(_PROBE))
        n = libc.process_vm_readv(pid, ctypes.byref(here), 1, ctypes.byref(there), 1, 0)
        return n == len(_PROBE) and target.raw == _PROBE
    finally:
        try:
            os.write(done_w, b"1")
        except OSError:  # the child is gone already
            pass
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def mechanism() -> str:
    """What Open MPI's shared-memory transport can use here: "cma" or "none"."""
    return "cma" if works() else "none"


def environment(env: dict | None = None) -> dict:
    """The variables to set for a child mpirun: `none` where the probe fails (nothing where it
    works: Open MPI picks its best mechanism), and never over a value the user set."""
    env = os.environ if env is None else env
    if any(v in env for v in VARIABLES) or works():
        return {}
    return dict.fromkeys(VARIABLES, "none")


if __name__ == "__main__":
    print(mechanism())
