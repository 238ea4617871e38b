"""Availability (`[time]`, heal_mpi/availability.py): diurnal schedules and intervals from a file;
an offline node neither trains nor answers, keeps its model, and comes back; offline hubs are
replaced like crashed ones. (The same on 1, 2 and 3 ranks: tests/test_clock.py, AVAILABLE.)"""

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from heal_mpi.availability import Availability, read_intervals
from heal_mpi.config import ConfigError
from heal_mpi.runtime import make_world
from heal_mpi.simulation import Simulation
from test_clock import build_fedavg, config, trained_rows


def test_diurnal_nodes_are_online_their_fraction_of_each_day():
    a = Availability(2000, seed=1, fraction=0.3, day=100.0, intervals=None, always=[0, 1])
    on = np.array([a.online(t) for t in np.arange(0, 100, 0.5)])  # [times, nodes]
    assert on[:, :2].all()  # servers and Byzantine nodes stay online
    share = on[:, 2:].mean(axis=0)
    assert np.allclose(share, 0.3, atol=0.006)
    assert abs(on[0, 2:].mean() - 0.3) < 0.03 and on[0].tolist() != on[100].tolist()  # phases differ
    assert np.array_equal(a.online(7.0), a.online(107.0))  # every day alike


def test_intervals_from_a_file(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("node,start,end\n1,0,10\n1,20,inf\n2,5,6\n")
    a = Availability(4, 1, 1.0, 1.0, read_intervals(path, 4), always=[])
    assert [a.online(t).tolist() for t in (0, 5, 10, 25)] == [[True, True, False, True], [True, True, True, True],
                                                              [True, False, False, True], [True, True, False, True]]
    path.write_text("node,start,end\n7,0,1\n")
    with pytest.raises(ConfigError, match="time.availability_csv: .* node ids must be in 0..3"):
        read_intervals(path, 4)
    path.write_text("node,start,end\n1,3,2\n")
    with pytest.raises(ConfigError, match="every interval needs start < end"):
        read_intervals(path, 4)
    with pytest.raises(ConfigError, match="time.online_fraction = 0.5 needs the clock"):
        config("protocol.kind='fedavg'", "time.online_fraction=0.5")


def test_an_offline_client_keeps_its_model_and_comes_back(tmp_path):
    """FedAvg: client 2 is offline at the starts of rounds 1 and 2 (3.52 s, 5.54 s: rounds without it are
    shorter) and online again at round 3's (7.56 s); meanwhile the server averages the two others and
    client 2's model waits untouched."""
    path = tmp_path / "online.csv"
    path.write_text("node,start,end\n2,0,1\n2,7,inf\n")
    sim = build_fedavg(tmp_path, 0.0, f"time.availability_csv='{path}'")
    seen = trained_rows(sim)
    sim.step(0)
    kept = sim.engine.pop.rows[2].clone()
    for rnd in (1, 2):
        sim.step(rnd)
        assert sim.alive[2] and sim.engine.train_loss[2] != sim.engine.train_loss[2]  # not crashed; not trained
        torch.testing.assert_close(sim.engine.pop.rows[0], (seen["rows"][1] + seen["rows"][3]) / 2)
        torch.testing.assert_close(sim.engine.pop.rows[2], kept)  # neither trained nor answered
    sim.step(3)
    torch.testing.assert_close(sim.engine.pop.rows[0], seen["rows"][1:].mean(0))  # back, with its model trained on
    assert sim.clock.online.tolist() == [True] * 4


def test_offline_hubs_are_replaced_and_come_back(tmp_path):
    """HEAL: the hubs of round 3 go offline from round 4's start to round 8's; Elevator elects others
    (clients still get answers), and the old hubs are live again afterwards."""
    heal = ["protocol.kind='heal'", "overlay.cache_size=6", "overlay.hubs=2", "run.rounds=11", "time.enabled=true"]
    plain = tmp_path / "plain.h5"
    assert Simulation.build(config(*heal), make_world(14, "cpu", MPI.COMM_SELF), plain).run() == 0
    with h5py.File(plain, "r") as f:
        hubs, t = f["overlay/hub_ids"][3], f["rounds/sim_time"][()]
    path = tmp_path / "online.csv"
    path.write_text("node,start,end\n" + "".join(f"{h},0,{float(t[2]) + 1e-9!r}\n{h},{float(t[6]) + 1e-9!r},inf\n" for h in hubs))
    out = tmp_path / "away.h5"
    assert Simulation.build(config(*heal, f"time.availability_csv='{path}'"), make_world(14, "cpu", MPI.COMM_SELF),
                            out).run() == 0
    with h5py.File(out, "r") as f:
        alive, active, ids = f["nodes/alive"][()], f["rounds/hubs_active"][()], f["overlay/hub_ids"][()]
    assert (alive[:4, hubs] == 1).all() and (alive[4:8, hubs] == 0).all() and (alive[8:, hubs] == 1).all()
    assert (active[5:8] > 0).all() and not set(ids[7].tolist()) & set(hubs.tolist())  # others serve meanwhile
    assert (alive.sum(axis=1)[[3, 4, 8]] == [14, 12, 14]).all()
