"""exchange, request/reply and mix against dense computations, at any rank count."""

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


def check_mix(comm):
    n, p, e = 13, 5, 60
    w = make_world(comm, n)
    c = Comm(w)
    g = np.random.default_rng(42)  # same edges on every rank
    src, dst, wt = g.integers(0, n, e), g.integers(0, n, e), g.random(e)
    full = torch.as_tensor(g.standard_normal((n, p)), dtype=torch.float32)
    rows = full[w.slot_lo:w.slot_hi].clone()
    mine = (src >= w.slot_lo) & (src < w.slot_hi)
    res = c.mix(rows, src[mine] - w.slot_lo, dst[mine], wt[mine])
    expect = np.zeros((n, p))
    np.add.at(expect, dst, full.double().numpy()[src] * wt[:, None])
    local = slice(w.slot_lo, w.slot_hi)
    np.testing.assert_allclose(res.sums.numpy(), expect[local], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.weights, np.bincount(dst, wt, n)[local], rtol=1e-12)
    assert (res.counts == np.bincount(dst, minlength=n)[local]).all()
    # weight is conserved over the whole world
    total = comm.allreduce(res.weights.sum())
    assert np.isclose(total, wt.sum())


@pytest.mark.parametrize("check", [check_exchange, check_request, check_mix])
def test_single_rank(check):
    check(MPI.COMM_SELF)


@pytest.mark.mpi
@pytest.mark.parametrize("check", [check_exchange, check_request, check_mix])
def test_across_ranks(check):
    check(MPI.COMM_WORLD)
