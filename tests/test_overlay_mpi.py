"""The overlay state does not depend on the rank count, faults included.

Run under `mpirun -n 1|2|3 ... --with-mpi -m mpi`: every rank runs the scenario on
MPI.COMM_WORLD (the state spread over the ranks) and again on MPI.COMM_SELF (all nodes on
one rank), gathers the distributed state, and compares exactly.
"""

import numpy as np
import pytest
from mpi4py import MPI

from helpers import gather_rows, reduced_metrics, overlay_cfg, simulate

FAULTS = dict(message_loss=0.05, crash=[{"round": 6, "fraction": 0.2}], hub_crash=[{"round": 11, "count": "all"}],
              churn=[{"start": 3, "end": 16, "fraction": 0.05}])
SEQUENTIAL = [{"semantics": "sequential"}, {"semantics": "sequential", "substeps": 7}]  # one node a turn; 7 groups


def traces(cfg, comm):
    """Per round: (hubs, max in-degree, in-degree [N], messages sent in all); then the final state."""
    def observe(ctx, ov):
        recv = comm.allreduce(int(ov.traffic.bytes_recv.sum()))
        m = reduced_metrics(ov)
        return m["hubs"], m["max_in_degree"], ov.in_degree.copy(), m["overlay_messages"], recv
    world, ov, seen = simulate(cfg, comm, observe)
    state = {"cache": gather_rows(world, ov.neighbours())}
    if hasattr(ov, "back"):
        state["back"] = gather_rows(world, ov.back)
        state["back_t"] = gather_rows(world, ov.back_t)
    if hasattr(ov, "stamps"):
        state["stamps"] = gather_rows(world, ov.stamps)
    return seen, state


def assert_same(cfg):
    seen_w, state_w = traces(cfg, MPI.COMM_WORLD)
    seen_s, state_s = traces(cfg, MPI.COMM_SELF)
    for a, b in zip(seen_w, seen_s):
        assert a[:2] == b[:2] and (a[2] == b[2]).all() and a[3:] == b[3:]
    for key in state_s:
        assert np.array_equal(state_w[key], state_s[key]), key


@pytest.mark.mpi
@pytest.mark.parametrize("preferred", ["top-h", "top-c"])
def test_elevator_identical_on_any_rank_count(preferred):
    assert_same(overlay_cfg(61, 20, overlay={"cache_size": 8, "hubs": 4, "elevator": {"preferred": preferred,
                                                                                     "max_backward": 10}}, **FAULTS))


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ["passive", "noncoordinated", "coordinated"])
def test_elevator_under_attack_and_lift_identical_on_any_rank_count(kind):
    assert_same(overlay_cfg(61, 16, overlay={"cache_size": 8, "hubs": 3, "elevator": {"max_backward": 10}},
                            adversary={"byzantine": 4, "kind": kind, "lift_round": 9}, **FAULTS))


@pytest.mark.mpi
@pytest.mark.parametrize("order", SEQUENTIAL)
def test_sequential_elevator_identical_on_any_rank_count(order):
    assert_same(overlay_cfg(61, 16, overlay={"cache_size": 8, "hubs": 4, "elevator": {"max_backward": 10}, **order},
                            **FAULTS))


@pytest.mark.mpi
@pytest.mark.parametrize("order", SEQUENTIAL)
def test_sequential_elevator_under_attack_and_lift_identical_on_any_rank_count(order):
    assert_same(overlay_cfg(61, 16, overlay={"cache_size": 8, "hubs": 3, "elevator": {"max_backward": 10}, **order},
                            adversary={"byzantine": 4, "kind": "coordinated", "lift_round": 9}, **FAULTS))


@pytest.mark.mpi
@pytest.mark.parametrize("order", [{}, *SEQUENTIAL])
def test_newscast_identical_on_any_rank_count(order):
    assert_same(overlay_cfg(47, 20, kind="newscast", overlay={"cache_size": 6, **order}, **FAULTS))


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ["star", "multistar", "ring", "regular", "complete"])
def test_static_identical_on_any_rank_count(kind):
    assert_same(overlay_cfg(23, 5, kind=kind, overlay={"multistar": {"servers": 3}, "regular": {"degree": 4}},
                            crash=[{"round": 2, "fraction": 0.3}]))


@pytest.mark.mpi
def test_alive_vector_is_the_same_on_every_rank():
    cfg = overlay_cfg(40, 12, overlay={"cache_size": 6, "hubs": 3}, **FAULTS)
    _, _, seen = simulate(cfg, MPI.COMM_WORLD, lambda ctx, ov: (ctx.alive.copy(), ctx.incarnation.copy()))
    for alive, inc in seen:
        every = MPI.COMM_WORLD.allgather((alive, inc))
        assert all((a == alive).all() and (i == inc).all() for a, i in every)
