"""Generated legal worlds: whatever `validate` accepts runs to its last round, writes a readable file,
and gives the same results on 1, 2 and 3 ranks.

Small random worlds (N, c, h, s), every protocol and overlay, random fault schedules (crashes up
to everyone, hub attacks, churn, message loss up to 1), adversaries and defences. The hypothesis
profile is derandomized: every run, CI included, checks the same worlds. One rank runs in this
process; 2 and 3 ranks under mpirun, their files compared with the one-rank file.
"""

import sys

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mpi4py import MPI

from conftest import ROOT, run_mpi, write_config
from heal_mpi import config as cfgmod
from heal_mpi.config import ConfigError
from heal_mpi.runtime import make_world
from heal_mpi.simulation import Simulation
from heal_mpi.steps import RULES

sys.path.insert(0, str(ROOT / "analysis"))
import common  # noqa: E402  (analysis/ is a folder of scripts, not a package)

settings.register_profile("legal-worlds", derandomize=True, deadline=None, database=None, max_examples=5,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much])
OVERLAYS = {"heal": ["elevator", "star", "multistar"], "fedavg": ["star"], "gaia": ["multistar"],
            "gossip": ["newscast", "elevator", "ring", "regular", "complete"],
            "epidemic": ["newscast", "elevator", "ring", "regular", "complete"],
            "dpsgd": ["newscast", "elevator", "ring", "regular", "complete"], "none": ["elevator", "newscast"]}
COMPARED = ("nodes/acc", "nodes/alive", "nodes/incarnation", "nodes/msgs_sent", "nodes/in_degree", "rounds/messages",
            "rounds/bytes")


@st.composite
def worlds(draw, kind: str) -> dict:
    """A config of this protocol as TOML tables: small, any overlay, any faults, maybe an adversary."""
    n = draw(st.integers(3, 12))
    rounds = draw(st.integers(2, 5))
    overlay = draw(st.sampled_from(OVERLAYS[kind]))
    c = draw(st.integers(2, n - 1))
    h = draw(st.integers(1, c - 1))
    cfg = {"run": {"rounds": rounds, "seed": draw(st.integers(0, 9)), "threads": 1, "progress": "none"},
           "nodes": {"count": n},
           "overlay": {"kind": overlay, "cache_size": c, "hubs": h,
                       "multistar": {"servers": draw(st.integers(1, n - 1))},
                       "regular": {"degree": draw(st.sampled_from([d for d in range(1, n) if d * n % 2 == 0]))}},
           "protocol": {"kind": kind},
           "data": {"synthetic_train": 6 * n, "synthetic_test": 30, "synthetic_features": 4, "synthetic_classes": 3},
           "train": {"local_steps": 1, "batch_size": 4}, "eval": {"every": draw(st.integers(1, 2))}}
    rule = {"aggregation": draw(st.sampled_from(RULES))}
    options = {"heal": {**rule, "fanout": draw(st.integers(1, h)), "hub_merge": draw(st.sampled_from(RULES)),
                        "client_merge": draw(st.sampled_from(["mean", "median"]))},
               "fedavg": rule, "gaia": {**rule, "hub_weights": draw(st.sampled_from(["uniform", "clients"]))},
               "gossip": {"gossip_update": draw(st.sampled_from(["once", "per_model"])),
                          "merge": draw(st.sampled_from(["uniform", "age"])), **rule},
               "epidemic": {**rule, "variant": draw(st.sampled_from(["neighbours", "oracle", "local"])),
                            "fanout": draw(st.integers(1, n - 1))},
               "dpsgd": {"order": draw(st.sampled_from(["atc", "cta"]))}}
    if kind in options:
        cfg["protocol"][kind] = options[kind]
    round_ = st.integers(0, rounds - 1)
    faults = {"message_loss": draw(st.sampled_from([0.0, 0.0, 0.2, 1.0]))}
    faults["crash"] = draw(st.lists(st.fixed_dictionaries({"round": round_, "fraction": st.sampled_from(
        [0.0, 0.3, 0.5, 1.0])}), max_size=2))
    faults["hub_crash"] = draw(st.lists(st.fixed_dictionaries({"round": round_, "count": st.one_of(
        st.just("all"), st.integers(1, n - 1))}), max_size=1))
    start = draw(round_)
    faults["churn"] = draw(st.lists(st.just({"start": start, "end": draw(st.integers(start + 1, rounds)),
                                             "fraction": draw(st.sampled_from([0.2, 0.5, 1.0]))}), max_size=1))
    cfg["faults"] = faults
    if draw(st.booleans()):
        cfg["adversary"] = {"byzantine": draw(st.integers(1, max(1, n // 3))),
                            "kind": draw(st.sampled_from(["none", "passive", "active", "coordinated"]))
                            if overlay == "elevator" else "none",
                            "backward_mode": draw(st.sampled_from(["honest", "paper_second_arg", "no_reply"])),
                            "models": draw(st.sampled_from(["honest", "noise", "zero", "sign_flip"]))
                            if kind != "none" else "honest",
                            "lift_round": draw(st.integers(-1, rounds - 1)) if overlay == "elevator" else -1}
    return cfg


def legal(raw: dict) -> cfgmod.Config:
    try:
        return cfgmod.validate(cfgmod.from_dict(raw), check_files=False)
    except ConfigError:
        assume(False)  # an illegal world is test_bad_input's business


def datasets(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in COMPARED if k in f}


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
@settings(settings.get_profile("legal-worlds"))
@given(data=st.data())
def test_every_legal_world_runs_to_the_end_alike_on_1_2_and_3_ranks(tmp_path_factory, kind, data):
    cfg = legal(data.draw(worlds(kind), label="world"))
    tmp = tmp_path_factory.mktemp("world")
    one = tmp / "one.h5"
    assert Simulation.build(cfg, make_world(cfg.nodes.count, "cpu", MPI.COMM_SELF), one).run() == 0
    run = common.load_run(one)  # readable by the analysis, every round complete
    assert run.completed == cfg.run.rounds and len(run.series["alive"]) == cfg.run.rounds
    expect = datasets(one)
    text = write_config(tmp / "c.toml", cfgmod.to_toml(cfg))
    for ranks in (2, 3):
        if ranks > cfg.nodes.count:
            continue
        out = tmp / f"r{ranks}.h5"
        r = run_mpi(ranks, "run", str(text), "--out", str(out), timeout=120)
        assert r.returncode == 0, f"{ranks} ranks: {r.stderr[-2000:]}\n{cfgmod.to_toml(cfg)}"
        got = datasets(out)
        for key, value in expect.items():
            np.testing.assert_allclose(got[key], value, atol=1e-5, equal_nan=True, err_msg=f"{key}, {ranks} ranks")


def test_the_four_node_gossip_world_of_the_report_runs_to_the_end(tmp_path):
    """Gossip, 4 nodes, cache 2, half of them crashing at round 2: a mix with values on a rank that
    has no edge that round used to fail (cannot reshape an array of size 0)."""
    cfg = cfgmod.validate(cfgmod.load(None, ["protocol.kind='gossip'", "nodes.count=4", "overlay.cache_size=2",
                                             "run.rounds=5", "run.progress='none'",
                                             "faults.crash=[{round = 2, fraction = 0.5}]"]), check_files=False)
    out = tmp_path / "g.h5"
    assert Simulation.build(cfg, make_world(4, "cpu", MPI.COMM_SELF), out).run() == 0
    assert common.load_run(out).completed == 5
