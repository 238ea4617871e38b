"""Asynchronous rounds (`time.slice`, heal_mpi/timers.py): timers that fire in proportion to speed,
one-period slices of equal devices that are synchronous rounds, and messages that arrive rounds later.
(The same results on 1, 2 and 3 ranks: tests/test_clock.py, ASYNC.)"""

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi.config import ConfigError
from heal_mpi.learning.backends import node_plan
from heal_mpi.runtime import make_world
from heal_mpi.simulation import Simulation
from heal_mpi.timers import Timers, samples_per_training
from test_clock import config, run

GOSSIP = ["protocol.kind='gossip'", "overlay.cache_size=5"]
EQUAL = ["time.enabled=true", "time.compute=1000.0", "time.uplink=1.0e6", "time.downlink=4.0e6", "time.latency=0.02"]


def test_timers_fire_in_proportion_to_speed():
    periods = np.array([1.0, 2.0, 4.0, 1.5, 0.5])
    t = Timers(periods, 1.0, 0.0, seed=1)
    acted = sum(t.fire(float(r), np.ones(5, bool), r)[0].astype(int) for r in range(24))
    assert acted.tolist() == [24, 12, 6, 16, 24]  # one faster than the slice acts once a round
    t = Timers(np.full(400, 2.5), 1.0, 0.3, seed=1)
    acted = sum(t.fire(float(r), np.ones(400, bool), r)[0].astype(int) for r in range(100))
    assert abs(acted.mean() - 40) < 1 and acted.std() > 0  # jitter: the same rate on average, not in step


def test_a_node_back_from_the_dead_acts_at_once():
    t = Timers(np.array([3.0, 3.0]), 1.0, 0.0, seed=1)
    alive = np.array([True, False])
    assert t.fire(0.0, alive, 0)[0].tolist() == [True, False]
    for r in (1, 2, 3, 4):
        acting, offset = t.fire(float(r), np.array([True, r >= 4]), r)
    assert acting.tolist() == [False, True] and offset[1] == 0  # it owes no rounds, starts now


@pytest.mark.parametrize("epochs, steps", [(1, 0), (2, 0), (0, 3), (0, 7)])
def test_samples_per_training_counts_the_batches(epochs, steps):
    sizes = np.array([0, 1, 5, 16, 17, 50])
    plans = [node_plan(int(s), 16, epochs, steps, np.random.default_rng(0)) for s in sizes]
    assert samples_per_training(sizes, 16, epochs, steps).tolist() == [float((p >= 0).sum()) for p in plans]


def period(overrides) -> float:
    """One period of the equal devices: 2 local steps of 16 samples, one model up and one down, two latencies."""
    sim = Simulation.build(config(*overrides), make_world(14, "cpu", MPI.COMM_SELF), out=None)
    return 32 / 1000 + sim.engine.model_bytes / 1.0e6 + sim.engine.model_bytes / 4.0e6 + 2 * 0.02


@pytest.mark.parametrize("protocol", [GOSSIP, [*GOSSIP, "protocol.gossip.gossip_update='per_model'"],
                                      ["protocol.kind='epidemic'", "protocol.epidemic.variant='local'", "overlay.cache_size=4"]],
                         ids=["gossip", "gossip-per-model", "epidemic"])
def test_one_period_slices_of_equal_devices_are_synchronous_rounds(tmp_path, protocol):
    world = [*protocol, *EQUAL, "faults.crash=[{round = 2, fraction = 0.2}]"]
    T = period(world)
    sync = run(world, MPI.COMM_SELF, tmp_path / "sync.h5")
    timed = run([*world, f"time.slice={T!r}"], MPI.COMM_SELF, tmp_path / "async.h5")
    np.testing.assert_array_equal(timed["nodes/acc"], sync["nodes/acc"])
    live = ~np.isnan(timed["nodes/finish_time"])
    assert (timed["nodes/acted"][live] == 1).all() and (timed["rounds/in_flight"] == 0).all()
    assert np.allclose(timed["rounds/sim_seconds"], T) and (sync["nodes/acted"] == -1).all()


def test_fast_nodes_act_more_often_in_proportion_to_their_speed(tmp_path):
    """Periods of 1, 2, 3 and 4 slices (training is all of it): each node acts once in that many rounds."""
    slowness = np.array([1, 2, 3, 4] * 3 + [1, 2])
    path = tmp_path / "devices.csv"
    path.write_text("node,compute,uplink,downlink,latency\n" + "".join(
        f"{i},{32 / k},1e12,1e12,0\n" for i, k in enumerate(slowness)))
    out = run([*GOSSIP, "time.enabled=true", f"time.devices_csv='{path}'", "time.slice=1.0", "run.rounds=12"],
              MPI.COMM_SELF, tmp_path / "a.h5")
    acted = (out["nodes/acted"] == 1).sum(axis=0)
    assert acted.tolist() == (12 // slowness).tolist()


def test_a_slow_message_arrives_rounds_later(tmp_path):
    """Node 0's uplink takes 2.5 slices for a model: what it sends in round 0 lands in round 2, and
    no message is lost or counted twice on the way (received = sent - in flight, every round)."""
    world = [*GOSSIP, "nodes.count=4", "data.synthetic_train=200", "overlay.cache_size=3"]
    B = Simulation.build(config(*world), make_world(4, "cpu", MPI.COMM_SELF), out=None).engine.model_bytes
    path = tmp_path / "devices.csv"
    path.write_text("node,compute,uplink,downlink,latency\n" + f"0,1e9,{B / 2.5!r},1e12,0\n" +
                    "".join(f"{i},1e9,1e12,1e12,0\n" for i in (1, 2, 3)))
    sim = Simulation.build(config(*world, "time.enabled=true", f"time.devices_csv='{path}'", "time.slice=1.0"),
                           make_world(4, "cpu", MPI.COMM_SELF), out=None)
    sent = received = 0
    acted = []
    for rnd in range(6):
        sim.step(rnd)
        acted.append(bool(sim.clock.acting[0]))
        sent, received = sent + sim.engine.traffic.msgs_sent.sum(), received + sim.engine.traffic.msgs_recv.sum()
        held = sim.engine.flights.held["gossip"]
        assert received == sent - len(held["due"])
        assert set(held["src"].tolist()) <= {0} and (held["due"] > rnd).all()
        if rnd in (0, 1):
            assert held["due"].tolist() == [2]  # sent at 0, 2.5 s on the way
    assert np.flatnonzero(acted).tolist() == [0, 2, 5]  # node 0's timer: at 0 s, 2.5 s, 5 s (every 2.5 s)


def test_asynchronous_rounds_need_a_protocol_that_can_run_them():
    with pytest.raises(ConfigError, match="time.slice: FedAvg runs in synchronous rounds only; asynchronous rounds "
                                          "are for gossip, epidemic"):
        config("protocol.kind='fedavg'", "time.enabled=true", "time.slice=1.0")
    with pytest.raises(ConfigError, match="time.slice = 1.0 needs the clock"):
        config(*GOSSIP, "time.slice=1.0")
