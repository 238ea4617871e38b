"""Protocols: rank-count independence under faults, HEAL == FedAvg on one static hub, message counts."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.runtime import make_world
from heal_mpi.simulation import Simulation

BASE = ["run.rounds=6", "run.threads=1", "run.progress='none'", "nodes.count=14", "data.synthetic_train=700",
        "data.synthetic_test=200", "train.local_steps=2", "train.batch_size=16"]
FAULTS = ["faults.crash=[{round = 2, fraction = 0.15}]", "faults.churn=[{start = 3, end = 5, fraction = 0.15}]",
          "faults.message_loss=0.1"]
PROTOCOLS = {
    "fedavg": ["protocol.kind='fedavg'"],
    "gaia": ["protocol.kind='gaia'", "overlay.multistar.servers=3"],
    "heal": ["protocol.kind='heal'", "overlay.cache_size=6", "overlay.hubs=2",
             "faults.hub_crash=[{round = 4, count = 'all'}]"],
    "heal-by-clients": ["protocol.kind='heal'", "protocol.heal.hub_weights='clients'", "overlay.cache_size=6",
                        "overlay.hubs=3", "faults.hub_crash=[{round = 4, count = 'all'}]"],
    "heal-median": ["protocol.kind='heal'", "protocol.heal.aggregation='median'", "protocol.heal.hub_merge='median'",
                    "overlay.cache_size=6", "overlay.hubs=3", "faults.hub_crash=[{round = 4, count = 'all'}]"],
    "gossip": ["protocol.kind='gossip'", "overlay.cache_size=5"],
    "gossip-age": ["protocol.kind='gossip'", "protocol.gossip.merge='age'", "overlay.cache_size=5"],
    "gossip-per-model": ["protocol.kind='gossip'", "protocol.gossip.gossip_update='per_model'", "protocol.gossip.merge='age'",
                         "overlay.cache_size=5"],
    "el-neighbours": ["protocol.kind='epidemic'", "overlay.cache_size=4"],
    "el-oracle": ["protocol.kind='epidemic'", "protocol.epidemic.variant='oracle'", "protocol.epidemic.fanout=3", "overlay.cache_size=5"],
    "el-local": ["protocol.kind='epidemic'", "protocol.epidemic.variant='local'", "protocol.epidemic.fanout=3", "overlay.cache_size=5"],
}


def config(*overrides):
    return cfgmod.validate(cfgmod.load(None, [*BASE, *overrides]))


def simulate(cfg, comm, out):
    world = make_world(cfg.nodes.count, "cpu", comm)
    assert Simulation.build(cfg, world, Path(out)).run() == 0
    comm.Barrier()
    with h5py.File(out, "r") as f:
        return {name: f[name][()] for name in ("nodes/acc", "nodes/alive", "nodes/msgs_sent", "rounds/messages")}


@pytest.mark.mpi
@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_same_results_on_any_rank_count(name):
    """The whole world vs one rank alone on COMM_SELF: per-node results agree (atol 1e-6)."""
    comm = MPI.COMM_WORLD
    cfg = config(*PROTOCOLS[name], *FAULTS)
    tmp = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None)
    together = simulate(cfg, comm, f"{tmp}/world.h5")
    alone = simulate(cfg, MPI.COMM_SELF, f"{tmp}/self{comm.rank}.h5")
    assert not np.all(together["nodes/alive"])  # the faults did strike
    np.testing.assert_allclose(together["nodes/acc"], alone["nodes/acc"], atol=1e-6, equal_nan=True)
    for key in ("nodes/alive", "nodes/msgs_sent", "rounds/messages"):
        np.testing.assert_array_equal(together[key], alone[key], err_msg=key)


def test_heal_on_one_static_hub_equals_fedavg(tmp_path):
    heal = simulate(config("protocol.kind='heal'", "overlay.kind='star'"), MPI.COMM_SELF, tmp_path / "h.h5")
    fed = simulate(config("protocol.kind='fedavg'"), MPI.COMM_SELF, tmp_path / "f.h5")
    np.testing.assert_array_equal(heal["nodes/acc"], fed["nodes/acc"])


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_one_rank_stages_nothing(name, tmp_path):
    """On one rank every mix is reduced where the rows live: no byte crosses device and host."""
    out = tmp_path / "one.h5"
    simulate(config(*PROTOCOLS[name], *FAULTS), MPI.COMM_SELF, out)
    with h5py.File(out, "r") as f:
        assert (f["rounds/staged_bytes"][:] == 0).all() and (f["rounds/model_messages"][:] > 0).all()


def model_messages(cfg, tmp_path):
    out = tmp_path / "m.h5"
    simulate(cfg, MPI.COMM_SELF, out)
    with h5py.File(out, "r") as f:
        return f["rounds/model_messages"][:], f["rounds/hubs"][:] if "rounds/hubs" in f else None


@pytest.mark.parametrize("n,servers", [(14, 1), (20, 4)])
def test_fedavg_and_gaia_message_counts(tmp_path, n, servers):
    kind = "fedavg" if servers == 1 else "gaia"
    msgs, _ = model_messages(config(f"protocol.kind='{kind}'", f"nodes.count={n}", f"overlay.multistar.servers={servers}"),
                             tmp_path)
    assert (msgs == 2 * (n - servers) + servers * (servers - 1)).all()  # FedAvg: 2(n-1)


def test_gossip_sends_n_and_el_sends_n_times_c(tmp_path):
    msgs, _ = model_messages(config("protocol.kind='gossip'", "overlay.cache_size=5"), tmp_path)
    assert (msgs == 14).all()
    msgs, _ = model_messages(config("protocol.kind='epidemic'", "overlay.cache_size=5"), tmp_path)
    assert (msgs[2:] == 14 * 5).all()  # once Newscast caches are full
    msgs, _ = model_messages(config("protocol.kind='epidemic'", "protocol.epidemic.variant='oracle'", "protocol.epidemic.fanout=3",
                                    "overlay.cache_size=5"),
                             tmp_path)
    assert (msgs == 14 * 3).all()


def test_gossip_per_model_trains_once_per_model_received(tmp_path):
    """Gossipy's MERGE_UPDATE trains as often as models arrive; `once` trains each receiver once, so less
    wherever two models reached one node."""
    per_training = 2 * 16  # train.local_steps x train.batch_size
    samples = {}
    for update in ("once", "per_model"):
        out = tmp_path / f"{update}.h5"
        simulate(config("protocol.kind='gossip'", "overlay.cache_size=5", f"protocol.gossip.gossip_update='{update}'"),
                 MPI.COMM_SELF, out)
        with h5py.File(out, "r") as f:
            samples[update], models = f["rounds/train_samples"][:], f["rounds/model_messages"][:]
    np.testing.assert_array_equal(samples["per_model"], per_training * models)  # no fault: every model arrives
    assert (samples["once"] % per_training == 0).all() and (samples["once"] <= samples["per_model"]).all()
    assert (samples["once"] < samples["per_model"]).any()


def test_gossip_per_model_refuses_a_robust_merge():
    with pytest.raises(cfgmod.ConfigError, match=r"protocol\.gossip\.aggregation: 'median'.*one at a time"):
        config("protocol.kind='gossip'", "overlay.cache_size=5", "protocol.gossip.gossip_update='per_model'",
               "protocol.gossip.aggregation='median'")


@pytest.mark.parametrize("s", [1, 2])
def test_heal_message_formula_on_converged_overlay(tmp_path, s):
    n, h = 40, 4
    cfg = config("protocol.kind='heal'", f"nodes.count={n}", "overlay.cache_size=10", f"overlay.hubs={h}",
                 f"protocol.heal.fanout={s}", "run.rounds=14", "data.synthetic_train=1200")
    msgs, hubs = model_messages(cfg, tmp_path)
    converged = hubs == h
    assert converged[-4:].all(), hubs
    assert (msgs[-4:] == 2 * (n - h) * s + h * (h - 1)).all(), msgs
