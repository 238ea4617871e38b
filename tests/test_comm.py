"""exchange and request/reply against dense computations, and the step check that turns a rank out
of step into an error on every rank instead of a hang, at any rank count."""

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi.comm import Comm, StepMismatch
from heal_mpi.metrics import RoundMetrics
from helpers import make_world


def check_exchange(comm):
    w = make_world(comm, 10)
    c = Comm(w)
    out = [np.full((w.rank + dst, 2), 100 * w.rank + dst, dtype=np.int64) for dst in range(w.size)]
    got = c.exchange(out, "test")
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

    reply = c.request(targets, payload, serve, "test")
    assert (reply[:, 0] == targets * 10).all() and (reply[:, 1] == w.rank).all()
    # zero requests still work (every rank must call)
    assert c.request(np.zeros(0, np.int64), np.zeros((0, 2), np.int64), serve, "test").shape[0] == 0


def check_another_step_raises_on_every_rank(comm):
    """Rank 0 in one step, the others in another: every rank raises, naming both ranks and both steps."""
    c = Comm(make_world(comm, 10))
    c.start_round(4)
    empty = [np.zeros(0, np.int64)] * comm.Get_size()
    c.exchange(empty, "same-step")
    if comm.Get_size() == 1:
        return
    mine = "mix-up" if comm.Get_rank() == 0 else "mix-down"
    with pytest.raises(StepMismatch, match=rf"rank {comm.Get_rank()} is in collective step 2 of round 4 "
                                           rf"\('{mine}'\) but rank \d is in collective step 2 of round 4 \('mix-(up|down)'\)"):
        c.exchange(empty, mine)


def check_a_rank_that_finished_early_raises_everywhere(comm):
    """The last rank skips a step and reaches the end of the round: it and the others raise."""
    c = Comm(make_world(comm, 10))
    c.start_round(0)
    if comm.Get_size() == 1:
        return
    last = comm.Get_size() - 1
    with pytest.raises(StepMismatch) as err:
        if comm.Get_rank() == last:
            c.end_round(["alive"])
        else:
            c.allreduce_sum(np.zeros(3), "overlay-in-degree")
    expect = "has finished the round's steps" if comm.Get_rank() == last else "('overlay-in-degree') but rank"
    assert expect in str(err.value) and "\n" not in str(err.value)


def check_different_metric_names_raise_before_any_data_is_reduced(comm):
    c = Comm(make_world(comm, 10))
    metrics = RoundMetrics()
    metrics.add_sum("alive", 3)
    if comm.Get_rank() == comm.Get_size() - 1:
        metrics.add_mean("acc_mean", np.ones(2))
    if comm.Get_size() == 1:
        assert metrics.reduce(c).rounds == {"alive": 3.0, "acc_mean": 1.0}
        return
    with pytest.raises(StepMismatch, match=r"rank \d and rank \d contributed different metric names"):
        metrics.reduce(c)


def check_sampling_error_of_a_mean_over_ranks(comm):
    """acc_sem: the standard error of a mean from a sample of a population spread over the ranks,
    finite-population corrected (0 when all of it was measured, NaN from one value or none)."""
    c = Comm(make_world(comm, 10))
    rank, size = comm.Get_rank(), comm.Get_size()
    drawn = np.array([0.2, 0.5, 0.9, 0.4, 0.7, 0.6])          # the sample, split over the ranks
    mine = np.array_split(drawn, size)[rank]
    metrics = RoundMetrics()
    metrics.add_sem("sampled", np.r_[mine, np.nan], 10 if rank == 0 else 0)  # a population of 10
    metrics.add_sem("all", mine, len(mine))
    metrics.add_sem("one", np.array([0.3]) if rank == 0 else np.zeros(0), 4 if rank == 0 else 0)
    metrics.add_sem("none", np.full(2, np.nan), 5)
    got = metrics.reduce(c).rounds
    assert got["sampled"] == pytest.approx(np.std(drawn, ddof=1) / np.sqrt(6) * np.sqrt(1 - 6 / 10), rel=1e-12)
    assert got["all"] == 0.0 and np.isnan(got["one"]) and np.isnan(got["none"])


CHECKS = [check_exchange, check_request, check_another_step_raises_on_every_rank,
          check_a_rank_that_finished_early_raises_everywhere, check_different_metric_names_raise_before_any_data_is_reduced,
          check_sampling_error_of_a_mean_over_ranks]


@pytest.mark.parametrize("check", CHECKS)
def test_single_rank(check):
    check(MPI.COMM_SELF)


@pytest.mark.mpi
@pytest.mark.parametrize("check", CHECKS)
def test_across_ranks(check):
    check(MPI.COMM_WORLD)
