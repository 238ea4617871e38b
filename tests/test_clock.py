"""Simulated time ([time], heal_mpi/clock.py): the devices, a round computed by hand, the models
untouched by the clock, and the same clock on any rank count."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.clock import Devices, slow_nodes
from heal_mpi.config import ConfigError
from heal_mpi.runtime import make_world
from heal_mpi.simulation import Simulation
from heal_mpi.steps import Train

BASE = ["run.rounds=4", "run.threads=1", "run.progress='none'", "nodes.count=14", "data.synthetic_train=700",
        "data.synthetic_test=200", "train.local_steps=2", "train.batch_size=16"]
CLOCK = ["time.enabled=true", "time.compute_dist='lognormal'", "time.compute_spread=1.0",
         "time.bandwidth_dist='uniform'", "time.bandwidth_spread=0.5", "time.slow_fraction=0.2",
         "time.slow_factor=4.0"]


def config(*overrides, check_files=True):
    return cfgmod.validate(cfgmod.load(None, [*BASE, *overrides]), check_files=check_files)


def devices(*overrides, n=20000):
    cfg = config(f"nodes.count={n}", "protocol.kind='none'", "overlay.kind='ring'", "time.enabled=true", *overrides)
    return Devices.from_config(cfg.time, n, cfg.run.seed)


# ----------------------------------------------------------------------------- devices

def test_devices_are_drawn_from_their_distributions():
    d = devices()
    assert (d.compute == 1000).all() and (d.uplink == 1e6).all() and (d.downlink == 4e6).all()
    u = devices("time.compute_dist='uniform'", "time.compute_spread=0.5").compute
    assert u.min() >= 500 and u.max() <= 1500 and abs(np.median(u) - 1000) < 30
    ln = devices("time.compute_dist='lognormal'", "time.compute_spread=1.0").compute
    assert abs(np.median(ln) - 1000) < 40 and abs(np.log(ln).std() - 1.0) < 0.03  # median = compute, σ of log
    b = devices("time.bandwidth_dist='lognormal'", "time.bandwidth_spread=0.5")
    assert np.allclose(b.downlink / b.uplink, 4.0)  # one draw scales both links


def test_a_fraction_of_slow_nodes():
    d = devices("time.slow_fraction=0.1", "time.slow_factor=5.0", n=1000)
    slow = d.compute < 1000
    assert slow.sum() == 100 and np.allclose(d.compute[slow], 200) and np.allclose(d.uplink[slow], 2e5)
    assert np.array_equal(np.flatnonzero(slow), slow_nodes(1, 1000, 0.1))
    assert not np.array_equal(slow_nodes(1, 1000, 0.1), slow_nodes(2, 1000, 0.1))


def test_devices_from_a_csv_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("node,compute,uplink,downlink,latency\n" + "".join(f"{i},{10 + i},{100 * (i + 1)},5e3,0.01\n"
                                                                       for i in (2, 0, 1)))
    d = devices(f"time.devices_csv='{path}'", n=3)
    assert np.array_equal(d.compute, [10, 11, 12]) and np.array_equal(d.uplink, [100, 200, 300])
    path.write_text("node,compute,uplink,downlink,latency\n0,1,1,1,0\n")
    with pytest.raises(ConfigError, match="time.devices_csv: .* one row for each node 0..2"):
        devices(f"time.devices_csv='{path}'", n=3)
    path.write_text("node,speed\n")
    with pytest.raises(ConfigError, match="the header must be node,compute,uplink,downlink,latency"):
        devices(f"time.devices_csv='{path}'", n=3)
    with pytest.raises(ConfigError, match="time.compute_spread: 1.0 must be < 1"):
        config("time.compute_dist='uniform'", "time.compute_spread=1.0")


# ----------------------------------------------------------------------------- a round by hand

def test_a_fedavg_round_by_hand(tmp_path):
    """The recorded duration of one round equals the hand computation, and the server's downlink
    takes the three client models one after another."""
    fast = 1e12

    def by_hand(B, down0):
        ready = {1: 32 / 32, 2: 32 / 16, 3: 32 / 64}  # each client trains 32 samples
        lat0, up0 = 0.01, B / 0.5
        free, server = -np.inf, 0.0
        for arrive, i in sorted((ready[i] + lat0, i) for i in ready):  # the server's downlink, a model at a time
            free = max(free, arrive) + B / down0
            server = max(server, free, ready[i] + B / fast + lat0)
        answers = [max(server + j * B / up0 + lat0 + B / fast, server + (j + 1) * B / up0 + lat0) for j in range(3)]
        return max(answers)

    for seconds_a_model in (1.0, 0.0):  # the server's downlink takes a model in one second; or at once
        sim = build_fedavg(tmp_path, seconds_a_model)
        B = sim.engine.model_bytes
        sim.step(0)
        assert sim.clock.duration == pytest.approx(by_hand(B, B / seconds_a_model if seconds_a_model else fast),
                                                   rel=1e-12)
    # the models reach the server at 0.51, 1.01 and 2.01 s; queued a second each, the last is in at 3.51;
    # the answers leave 0.5 s apart from there, the last one is in at 3.51 + 1.5 + 0.01
    assert by_hand(B, B) == pytest.approx(5.02, abs=1e-6)
    assert by_hand(B, fast) == pytest.approx(2.01 + 1.5 + 0.01, abs=1e-6)  # no queue: the last arrival


def trained_rows(sim):
    """{}: after sim.step, 'rows' holds every row as training left it (before any mix)."""
    seen, execute = {}, sim.engine.execute

    def spy(step, ctx):
        out = execute(step, ctx)
        if isinstance(step, Train):
            seen["rows"] = sim.engine.pop.rows.clone()
        return out
    sim.engine.execute = spy
    return seen


@pytest.mark.parametrize("wait, duration", [("time.deadline=1.5", 1.5 + 1.5 + 0.01),  # waits until its deadline
                                            ("time.quorum=0.6", 1.01 + 1.5 + 0.01)])  # until 2 of 3 are in
def test_the_server_drops_a_late_model(tmp_path, wait, duration):
    """Client 2 is done at 2.01 s, past the deadline and beyond the quorum: the server averages the
    other two, still answers all three, and counts the drop."""
    sim = build_fedavg(tmp_path, 0.0, wait)
    seen = trained_rows(sim)
    sim.step(0)
    rows, trained = sim.engine.pop.rows, seen["rows"]
    torch.testing.assert_close(rows[0], (trained[1] + trained[3]) / 2)
    for client in (1, 2, 3):  # the late one too
        torch.testing.assert_close(rows[client], rows[0])
    assert sim.clock.late == 1 and sim.clock.duration == pytest.approx(duration, rel=1e-9)
    waited = build_fedavg(tmp_path, 0.0)  # without: the late model is averaged too
    seen = trained_rows(waited)
    waited.step(0)
    torch.testing.assert_close(waited.engine.pop.rows[0], seen["rows"][1:].mean(0))
    assert waited.clock.late == 0 and waited.clock.duration == pytest.approx(2.01 + 1.5 + 0.01, rel=1e-9)


def test_a_client_whose_model_is_late_gives_it_up(tmp_path):
    """Client 2 needs 32 s to train; the server stops waiting at 1.5 s: the client abandons its update
    then, gets the answer (the second of three, at 1.5 + 1.0 + 0.01 s), and the round ends with the
    third answer, not 30 s later."""
    sim = build_fedavg(tmp_path, 0.0, "time.deadline=1.5", speeds=(32, 1, 64))
    sim.step(0)
    assert sim.clock.duration == pytest.approx(1.5 + 1.5 + 0.01, rel=1e-9)
    assert sim.clock.ready[2] == pytest.approx(1.5 + 1.0 + 0.01, rel=1e-9)
    assert 0 < sim.clock.busy[2] <= sim.clock.ready[2]
    waited = build_fedavg(tmp_path, 0.0, speeds=(32, 1, 64))
    waited.step(0)
    assert waited.clock.duration > 32


def test_a_late_model_applied_in_the_next_round(tmp_path):
    """time.late = 'next': client 2's model of round 0 joins the server's average of round 1, at half
    the weight of a fresh one (its model of round 1 is late again, for round 2)."""
    sim = build_fedavg(tmp_path, 0.0, "time.deadline=1.5", "time.late='next'", "time.staleness=0.5")
    seen = trained_rows(sim)
    sim.step(0)
    late = seen["rows"][2].clone()
    torch.testing.assert_close(sim.engine.pop.rows[0], (seen["rows"][1] + seen["rows"][3]) / 2)
    sim.step(1)
    fresh = seen["rows"]
    torch.testing.assert_close(sim.engine.pop.rows[0], (fresh[1] + fresh[3] + 0.5 * late) / 2.5)
    assert sim.clock.late == 1 and sim.engine.flights.held["up"]["dst"].tolist() == [0]


def test_a_deadline_needs_the_clock():
    with pytest.raises(ConfigError, match="time.deadline = 2.0 needs the clock: set time.enabled = true"):
        cfgmod.validate(cfgmod.load(None, [*BASE, "time.deadline=2.0"]))
    with pytest.raises(ConfigError, match="time.quorum"):
        config("time.enabled=true", "time.quorum=0")


FEDAVG4 = ["nodes.count=4", "data.synthetic_train=400", "protocol.kind='fedavg'"]


def build_fedavg(tmp_path, seconds_a_model: float, *overrides, speeds=(32, 16, 64)):
    """A server (node 0) whose uplink sends a model in 0.5 s, whose downlink takes `seconds_a_model`
    (0: at once) and whose latency is 0.01 s, and three clients of 32, 16 and 64 samples per second
    with fast links and no latency."""
    model_bytes = Simulation.build(config(*FEDAVG4), make_world(4, "cpu", MPI.COMM_SELF), out=None).engine.model_bytes
    down0 = model_bytes / seconds_a_model if seconds_a_model else 1e12
    rows = [f"0,1,{model_bytes / 0.5!r},{down0!r},0.01"] + [f"{i},{c},1e12,1e12,0" for i, c in enumerate(speeds, 1)]
    path = tmp_path / "devices.csv"
    path.write_text("node,compute,uplink,downlink,latency\n" + "\n".join(rows) + "\n")
    return Simulation.build(config(*FEDAVG4, "time.enabled=true", f"time.devices_csv='{path}'", *overrides),
                            make_world(4, "cpu", MPI.COMM_SELF), out=None)


# ----------------------------------------------------------------------------- runs

def run(overrides, comm, out):
    cfg = config(*overrides)
    assert Simulation.build(cfg, make_world(cfg.nodes.count, "cpu", comm), Path(out)).run() == 0
    comm.Barrier()
    with h5py.File(out, "r") as f:
        return {name: f[name][()] for name in ("nodes/acc", "nodes/alive", "nodes/finish_time", "nodes/idle_time", "nodes/acted",
                                               "rounds/sim_seconds", "rounds/sim_time", "rounds/late_dropped",
                                               "rounds/in_flight", "devices/compute")}


def test_the_clock_leaves_the_models_alone(tmp_path):
    heal = ["protocol.kind='heal'", "overlay.cache_size=6", "overlay.hubs=2", "faults.message_loss=0.1"]
    timed, plain = run([*heal, *CLOCK], MPI.COMM_SELF, tmp_path / "t.h5"), run(heal, MPI.COMM_SELF, tmp_path / "p.h5")
    assert np.array_equal(timed["nodes/acc"], plain["nodes/acc"], equal_nan=True)
    assert np.isnan(plain["rounds/sim_seconds"]).all() and np.isnan(plain["devices/compute"]).all()
    assert (plain["rounds/late_dropped"] == -1).all() and (timed["rounds/late_dropped"] == 0).all()
    seconds, finish = timed["rounds/sim_seconds"], timed["nodes/finish_time"]
    assert (seconds > 0).all() and np.allclose(np.cumsum(seconds), timed["rounds/sim_time"])
    assert np.allclose(np.nanmax(finish, axis=1), seconds, rtol=1e-6)  # the round ends with its last node
    idle = timed["nodes/idle_time"]
    assert (idle >= -1e-4).all() and (idle <= seconds[:, None] + 1e-4).all()  # waiting is part of the round


CLOCKED = {
    "fedavg": ["protocol.kind='fedavg'"],
    "gaia": ["protocol.kind='gaia'", "overlay.multistar.servers=3"],
    "heal": ["protocol.kind='heal'", "overlay.cache_size=6", "overlay.hubs=2", "faults.hub_crash=[{round = 2, count = 'all'}]"],
    "gossip": ["protocol.kind='gossip'", "overlay.cache_size=5"],
    "epidemic": ["protocol.kind='epidemic'", "overlay.cache_size=4"],
    "dpsgd": ["protocol.kind='dpsgd'", "overlay.cache_size=4"],
}
WAITING = {  # aggregators that drop late models (some, in these runs)
    "heal-deadline": [*CLOCKED["heal"], "time.deadline=0.1"],
    "fedavg-deadline": [*CLOCKED["fedavg"], "time.deadline=0.2"],
    "gaia-quorum": [*CLOCKED["gaia"], "time.quorum=0.7", "time.deadline=10.0"],
    "heal-late-next": [*CLOCKED["heal"], "time.deadline=0.1", "time.late='next'"],
}
ASYNC = {  # asynchronous rounds shorter than most periods: nodes skip rounds, messages stay in flight
    "gossip-async": [*CLOCKED["gossip"], "time.slice=0.05", "time.jitter=0.2"],
    "gossip-per-model-async": [*CLOCKED["gossip"], "protocol.gossip.gossip_update='per_model'", "time.slice=0.05"],
    "epidemic-async": [*CLOCKED["epidemic"], "time.slice=0.05"],
}
AVAILABLE = {  # diurnal availability: days of 1.5 s, each node online 60 % of each
    "heal-diurnal": [*CLOCKED["heal"], "time.online_fraction=0.6", "time.day=1.5", "run.rounds=6"],
    "fedavg-diurnal-deadline": [*WAITING["fedavg-deadline"], "time.online_fraction=0.6", "time.day=1.5"],
    "gossip-diurnal-async": [*ASYNC["gossip-async"], "time.online_fraction=0.6", "time.day=0.3", "run.rounds=8"],
}


@pytest.mark.mpi
@pytest.mark.parametrize("name", [*CLOCKED, *WAITING, *ASYNC, *AVAILABLE])
def test_the_same_clock_on_any_rank_count(name):
    comm = MPI.COMM_WORLD
    overrides = [*{**CLOCKED, **WAITING, **ASYNC, **AVAILABLE}[name], *CLOCK, "faults.message_loss=0.1",
                 "faults.crash=[{round = 1, fraction = 0.15}]"]
    tmp = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None)
    together = run(overrides, comm, f"{tmp}/world.h5")
    alone = run(overrides, MPI.COMM_SELF, f"{tmp}/self{comm.rank}.h5")
    for key in ("nodes/finish_time", "nodes/idle_time", "rounds/sim_seconds", "rounds/sim_time", "rounds/late_dropped",
                "rounds/in_flight", "nodes/acted", "nodes/alive"):
        np.testing.assert_array_equal(together[key], alone[key], err_msg=key)
    dropped, in_flight, acted = together["rounds/late_dropped"], together["rounds/in_flight"], together["nodes/acted"]
    if name in AVAILABLE:  # someone went offline and came back
        alive = together["nodes/alive"]
        assert ((alive[1:-1] == 0) & (alive[2:] == 1) & (alive[:-2] == 1)).any() or \
            ((alive[:-1] == 0) & (alive[1:] == 1)).any()
        return
    assert dropped.sum() > 0 if name in WAITING else (dropped == 0).all()
    if name in ASYNC:
        assert in_flight.sum() > 0 and 0 < (acted == 1).mean() < 1
    else:
        assert (in_flight == -1).all() and (acted == -1).all()
    np.testing.assert_allclose(together["nodes/acc"], alone["nodes/acc"], atol=1e-6)
