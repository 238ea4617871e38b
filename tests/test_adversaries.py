"""The adversary wired in: Byzantine overlay nodes capture Elevator's hubs, Lift redistributes
them, poisoned models reach the hubs, and bad adversary settings fail with one line."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.adversary.wiring import Byzantine, byzantine_ids
from heal_mpi.engine.channel import Channel
from heal_mpi.errors import ConfigError
from heal_mpi.steps import Mix
from helpers import FakePop, Script, context, make_world, overlay_cfg, simulate

SMALL = {"cache_size": 12, "hubs": 4}


def capture(adversary, rounds=30):
    cfg = overlay_cfg(300, rounds, overlay=SMALL, adversary=adversary)
    _, ov, seen = simulate(cfg, MPI.COMM_SELF, lambda ctx, ov: reduced_metrics_with(cfg, ov))
    return seen


def reduced_metrics_with(cfg, ov):
    from heal_mpi.metrics import RoundMetrics
    metrics = RoundMetrics()
    ov.contribute(metrics)
    Byzantine(cfg, ov.world).contribute(metrics, ov)
    r = metrics.reduce(ov.comm).rounds
    return int(r["hubs"]), int(r["byzantine_hubs"]), int(r["hubs_strict"]), int(r["byzantine_hubs_strict"])


def test_coordinated_byzantines_capture_every_hub():
    seen = capture({"byzantine_fraction": 0.05, "kind": "coordinated"})
    assert seen[-1][:2] == (4, 4)  # all h hubs, all Byzantine: the LIFT paper's 5 % result


def test_lift_hands_the_hubs_back_to_correct_nodes():
    seen = capture({"byzantine_fraction": 0.05, "kind": "coordinated", "lift_round": 15})
    assert seen[14][1] == 4  # captured before Lift
    assert all(h == 4 and b == 0 for h, b, _, _ in seen[16:])  # h hubs again, none Byzantine


def test_one_passive_byzantine_changes_nothing_visible():
    honest = capture({})
    passive = capture({"byzantine": 1, "kind": "passive"})
    assert [h for h, *_ in passive[10:]] == [h for h, *_ in honest[10:]] == [4] * 20
    assert max(b for _, b, _, _ in passive) == 0


def test_byzantine_nodes_are_keyed_never_protected_and_independent_of_ranks():
    cfg = cfgmod.from_dict({"nodes": {"count": 50}, "protocol": {"kind": "gaia"}, "overlay": {"multistar": {"servers": 5}},
                            "adversary": {"byzantine_fraction": 0.2, "models": "zero"}})
    ids = byzantine_ids(cfg)
    assert len(ids) == 10 and ids.min() >= 5  # Gaia's servers are protected
    assert np.array_equal(ids, byzantine_ids(cfg))


def test_poisoned_models_reach_the_hub():
    """A Byzantine client's model arrives as zeros; the honest ones as they are."""
    n = 8
    cfg = cfgmod.from_dict({"nodes": {"count": n}, "protocol": {"kind": "fedavg"},
                            "adversary": {"byzantine": 2, "models": "zero"}})
    world = make_world(MPI.COMM_SELF, n)
    adversary = Byzantine(cfg, world)
    byz = adversary.ids

    def body(ctx, seen):
        src = np.arange(1, n)
        seen.append((yield Mix("up", src, np.zeros(n - 1, np.int64))))

    full = torch.randn(n, 5)
    proto = Script(body)
    channel = Channel(1)
    channel.alterations.append(adversary)
    from heal_mpi.engine.core import Engine
    engine = Engine(world, FakePop(full, world), proto, channel)
    engine.round(context(n), None)
    honest = np.setdiff1d(np.arange(1, n), byz)
    expect = full[honest].double().sum(0).numpy()
    np.testing.assert_allclose(proto.seen[0].sums_of(np.array([0]))[0].numpy(), expect, rtol=1e-6, atol=1e-6)


def test_sign_flip_reverses_the_update_of_the_last_training():
    n = 4
    cfg = cfgmod.from_dict({"nodes": {"count": n}, "protocol": {"kind": "fedavg"},
                            "adversary": {"byzantine": 1, "models": "sign_flip", "poison_scale": 2.0}})
    world = make_world(MPI.COMM_SELF, n)
    adversary = Byzantine(cfg, world)
    b = int(adversary.ids[0])
    start = torch.randn(n, 3)
    pop = FakePop(start, world)
    adversary.before_train(pop, np.ones(n, dtype=bool))
    pop.rows[b] += 1.0  # its honest update
    sent = adversary.alter("up", np.array([b]), pop.rows[[b]], 0)
    np.testing.assert_allclose(sent[0].numpy(), (start[b] - 2.0).numpy(), atol=1e-6)


@pytest.mark.parametrize("override,key", [
    ("adversary.byzantine=20", "adversary.byzantine"),
    ("adversary.kind='lying'", "adversary.kind"),
    ("adversary.lift_round=30", "adversary.lift_round"),
    ("adversary.byzantine_fraction=1.0", "adversary.byzantine_fraction"),
    ("adversary.byzantine_fraction=0.98", "adversary.byzantine_fraction"),  # rounds to all 20
    ("protocol.heal.trim_beta=0.5", "protocol.heal.trim_beta"),
    ("protocol.heal.client_merge='median'", "protocol.heal.client_merge"),  # s = 1
])
def test_bad_adversary_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        cfgmod.validate(cfgmod.load(None, ["nodes.count=20", "overlay.cache_size=8", "overlay.hubs=3",
                                           "run.rounds=30", "protocol.kind='heal'", override]), check_files=False)
    assert "\n" not in str(err.value)


def test_hub_weights_refuse_a_robust_hub_merge():
    with pytest.raises(ConfigError, match=r"protocol\.heal\.hub_weights"):
        cfgmod.validate(cfgmod.load(None, ["nodes.count=20", "overlay.cache_size=8", "overlay.hubs=3",
                                           "protocol.kind='heal'", "protocol.heal.hub_weights='clients'",
                                           "protocol.heal.hub_merge='median'"]), check_files=False)


def test_an_overlay_attack_needs_an_overlay_that_sends_what_it_alters():
    with pytest.raises(ConfigError, match=r"adversary.kind: 'passive' alters cache-reply, backward-reply, which "
                                          r"overlay.kind = 'newscast' does not send"):
        cfgmod.validate(cfgmod.load(None, ["nodes.count=20", "overlay.cache_size=8", "protocol.kind='gossip'",
                                           "adversary.byzantine=2", "adversary.kind='passive'"]), check_files=False)


def test_heal_under_attack_end_to_end_and_its_report(tmp_path):
    """A HEAL run whose overlay is captured and whose Byzantine nodes send noise: the file has
    the Byzantine columns, the honest accuracy leaves them out, and report.py tables it."""
    import subprocess
    import sys

    import h5py

    from conftest import ROOT
    from heal_mpi.runtime import make_world
    from heal_mpi.simulation import Simulation
    cfg = cfgmod.validate(cfgmod.load(None, [
        "nodes.count=40", "run.rounds=8", "run.threads=1", "run.progress='none'", "protocol.kind='heal'",
        "overlay.cache_size=8", "overlay.hubs=3", "data.synthetic_train=800", "train.local_steps=2",
        "adversary.byzantine=4", "adversary.kind='coordinated'", "adversary.models='noise'",
        "adversary.lift_round=5"]), check_files=False)
    out = tmp_path / "attacked.h5"
    assert Simulation.build(cfg, make_world(40, "cpu", MPI.COMM_SELF), out).run() == 0
    with h5py.File(out, "r") as f:
        byz = f["nodes/is_byzantine"][-1].astype(bool)
        acc = f["nodes/acc"][-1]
        assert byz.sum() == 4 and (f["rounds/byzantine"][:] == 4).all()
        assert np.isclose(f["rounds/acc_mean"][-1], np.nanmean(acc[~byz]))
        assert np.isclose(f["rounds/byzantine_acc_mean"][-1], np.nanmean(acc[byz]))
        assert f["rounds/byzantine_hubs"][4] >= 1 and f["rounds/byzantine_hubs"][-1] <= f["rounds/hubs"][-1]
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "report.py"), str(out), "--out", str(tmp_path / "rep"),
                        "--smoke"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Lift @5" in (tmp_path / "rep" / "byzantine.md").read_text()
    assert "4 Byzantine (coordinated, noise)" in (tmp_path / "rep" / "attack_table.md").read_text()


def test_a_star_client_has_one_hub():
    with pytest.raises(ConfigError, match="protocol.heal.fanout: s = 3, but a star client has one hub"):
        cfgmod.validate(cfgmod.load(None, ["nodes.count=20", "protocol.kind='heal'", "overlay.kind='star'",
                                           "protocol.heal.fanout=3", "protocol.heal.client_merge='median'"]),
                        check_files=False)
    with pytest.raises(ConfigError, match=r"protocol.fedavg.fanout: unknown key \(known: aggregation"):
        cfgmod.load(None, ["protocol.kind='fedavg'", "protocol.fedavg.fanout=3"])


@pytest.mark.parametrize("kind,models", [("gossip", "sign_flip"), ("epidemic", "zero"), ("fedavg", "noise")])
def test_poisoned_peers_run_in_every_protocol(tmp_path, kind, models):
    """Gossip pushes before it ever trains: sign_flip has no update to reverse yet and sends the truth."""
    import h5py

    from heal_mpi.runtime import make_world
    from heal_mpi.simulation import Simulation
    cfg = cfgmod.validate(cfgmod.load(None, [
        "nodes.count=20", "run.rounds=3", "run.threads=1", "run.progress='none'", f"protocol.kind='{kind}'",
        "overlay.cache_size=5", "data.synthetic_train=400", "train.local_steps=1", f"protocol.{kind}.aggregation='median'",
        "adversary.byzantine=2", f"adversary.models='{models}'"]), check_files=False)
    out = tmp_path / "p.h5"
    assert Simulation.build(cfg, make_world(20, "cpu", MPI.COMM_SELF), out).run() == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["rounds_completed"] == 3 and f["nodes/is_byzantine"][-1].sum() == 2
