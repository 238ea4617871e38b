"""exchange and request/reply against dense computations, at any rank count."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from heal_mpi.comm import Comm
from heal_mpi.runtime import block_bounds, World


def make_world(comm, n):
    return World(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), local_rank=0, local_size=1,
                  device=torch.device("cpu"), bounds=block_bounds(n, comm.Get_size()))


def check_exchange(comm):
    w = make_world(comm, 10)
    c = Comm(w)
    out = [np.full((w.rank + dst, 2), 100 * w.rank + dst, dtype=np.int64) for dst in range(w.size)]
    got = c.exchange(out)
    for src, arr in enumerate(got):
        assert arr.shape == (src + w.rank, 2) and (arr == 100 * src + w.rank).all()


def check_request(comm):
    n = 23
    w = make_world(comm, n)
    c = Comm(w)
    rng = np.random.default_rng(w.rank)
    targets = rng.integers(0, n, size=17)
    payload = np.stack([targets, np.full(17, w.rank)], axis=1)

    def serve(local_idx, pay):
        assert (local_idx + w.slot_lo == pay[:, 0]).all()  # requests reached the owner
        return np.stack([(local_idx + w.slot_lo) * 10, pay[:, 1]], axis=1)

    reply = c.request(targets, payload, serve)
    assert (reply[:, 0] == targets * 10).all() and (reply[:, 1] == w.rank).all()
    # zero requests still work (every rank must call)
    assert c.request(np.zeros(0, np.int64), np.zeros((0, 2), np.int64), serve).shape[0] == 0


def check_step_names_must_agree(comm):
    """A rank in another collective step raises (the message names both) instead of hanging."""
    c = Comm(make_world(comm, 10))
    empty = [np.zeros(0, np.int64)] * comm.Get_size()
    c.exchange(empty, "same-step")
    if comm.Get_size() == 1:
        return
    with pytest.raises(RuntimeError, match="collective step"):
        c.exchange(empty, "up" if comm.Get_rank() == 0 else "down")


@pytest.mark.parametrize("check", [check_exchange, check_request, check_step_names_must_agree])
def test_single_rank(check):
    check(MPI.COMM_SELF)


@pytest.mark.mpi
@pytest.mark.parametrize("check", [check_exchange, check_request, check_step_names_must_agree])
def test_across_ranks(check):
    check(MPI.COMM_WORLD)
