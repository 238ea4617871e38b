"""The registries: every kind is declared once, and the config, its checks, the faults and the
analysis labels follow from the spec (a kind registered here reaches all of them)."""

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from heal_mpi import config as cfgmod
from heal_mpi import registry
from heal_mpi.errors import ConfigError
from heal_mpi.faults.schedule import FaultSchedule, FaultState
from heal_mpi.options import opt
from helpers import ROOT

sys.path.insert(0, str(ROOT / "analysis"))
import common  # noqa: E402  (analysis/ is a folder of scripts, not a package)


def field_of(cls, name):
    return next(f for f in dataclasses.fields(cls) if f.name == name)


@pytest.fixture
def fresh_registries():
    """Registrations made by a test are forgotten after it."""
    saved = {reg: dict(reg._all()) for reg in (registry.PROTOCOLS, registry.OVERLAYS, registry.ATTACKS,
                                                registry.FAULTS)}
    yield
    for reg, specs in saved.items():
        reg._specs = specs


def test_config_choices_and_option_tables_come_from_the_registries():
    assert cfgmod.validate(cfgmod.load(None, ["protocol.kind='gossip'", "nodes.count=30"]),
                           check_files=False).protocol.name == "gossip"
    with pytest.raises(ConfigError, match=r"protocol.kind: 'nope' is not one of 'heal', 'fedavg'.*"):
        cfgmod.load(None, ["protocol.kind='nope'"])
    ref = cfgmod.reference_markdown()
    for spec in registry.PROTOCOLS.specs():  # each protocol's options: its own table in the reference
        assert (f"**[protocol.{spec.name}]**" in ref) == (spec.options is not None)
    assert "**[overlay.elevator]**" in ref and "| `preferred` |" in ref and "**[protocol.gossip]**" in ref
    kinds = cfgmod.kinds_markdown()
    assert all(f"| `{spec.name}` |" in kinds for reg in (registry.PROTOCOLS, registry.OVERLAYS, registry.ATTACKS)
               for spec in reg.specs())


def test_fanout_means_one_thing_per_protocol():
    heal = cfgmod.load(None, ["protocol.kind='heal'", "protocol.heal.fanout=3", "protocol.epidemic.fanout=7"])
    assert heal.protocol.options.fanout == 3  # the epidemic table is checked, and not the run's
    with pytest.raises(ConfigError, match=r"protocol.fanout: unknown key; .*protocol.heal.fanout, "
                                          r"protocol.epidemic.fanout"):
        cfgmod.load(None, ["protocol.fanout=2"])
    with pytest.raises(ConfigError, match=r"protocol.epidemic.fanout: expected an integer"):
        cfgmod.load(None, ["protocol.kind='heal'", "protocol.epidemic.fanout='x'"])


def test_a_kind_change_gives_the_new_kind_its_defaults():
    cfg = cfgmod.load(None, ["protocol.kind='heal'", "protocol.heal.fanout=2"])
    gossip = cfg.replace("protocol", kind="gossip")
    assert type(gossip.protocol.options).__name__ == "GossipOptions" and gossip.overlay_kind == "newscast"
    assert "[protocol.gossip]" in cfgmod.to_toml(gossip) and "[protocol.heal]" not in cfgmod.to_toml(gossip)
    again = cfgmod.from_dict(__import__("tomllib").loads(cfgmod.to_toml(cfg)))
    assert again == cfg  # the stored TOML loads back to the same config


@pytest.mark.parametrize("kind", registry.PROTOCOLS.names())
def test_auto_overlay_is_the_protocols_default_and_others_are_refused(kind):
    spec = registry.PROTOCOLS.get(kind, "protocol.kind")
    cfg = cfgmod.validate(cfgmod.load(None, [f"protocol.kind='{kind}'", "nodes.count=30", "overlay.cache_size=8",
                                             "overlay.hubs=3"]), check_files=False)
    assert cfg.overlay_kind == spec.default_overlay
    refused = [o for o in registry.OVERLAYS.names() if spec.overlays and o not in spec.overlays]
    for overlay in refused:
        with pytest.raises(ConfigError, match="overlay.kind"):
            cfgmod.validate(cfg.replace("overlay", kind=overlay), check_files=False)


def test_protected_slots_are_the_servers():
    cfg = cfgmod.load(None, ["protocol.kind='gaia'", "overlay.multistar.servers=3"])
    assert registry.protected_slots(cfg) == [0, 1, 2]
    assert registry.protected_slots(cfg.replace("protocol", kind="fedavg")) == [0]
    assert registry.protected_slots(cfg.replace("protocol", kind="heal")) == []


def test_method_labels():
    assert registry.method_label("heal", "elevator") == "HEAL"
    assert registry.method_label("gossip", "elevator") == "Gossip (elevator)"
    assert registry.method_label("none", "elevator") == "overlay only"
    assert registry.method_label("not-installed-here", "ring") == "not-installed-here"


@dataclass(frozen=True)
class Isolate:
    round: int = opt(0, "round at whose start the node is cut off", lo=0)
    node: int = opt(0, "the node", lo=0)


def apply_isolate(state: FaultState, i, ev):  # named by "module:function", like every kind
    if ev.round == state.rnd and state.eligible()[ev.node]:
        state.alive[ev.node] = False
        state.gone.append(np.array([ev.node]))


def check_isolate(key, ev, cfg):
    if ev.node >= cfg.nodes.count:
        raise ConfigError(f"{key}.node: {ev.node} is not a node of nodes.count = {cfg.nodes.count}")


ISOLATE = registry.FaultSpec("isolate", Isolate, f"{__name__}:apply_isolate", "isolate one node: [{round, node}]",
                             label=lambda e: f"isolate node {e['node']} @{e['round']}", check=check_isolate)


def test_a_new_fault_kind_is_one_spec(fresh_registries):
    """Registered once, the kind is a [faults] key (checked, documented), is applied by the schedule in
    registry order, and is labelled by its own name in the analysis."""
    registry.FAULTS.register(ISOLATE)
    cfg = cfgmod.validate(cfgmod.load(None, ["protocol.kind='fedavg'", "nodes.count=6",
                                             "faults.isolate=[{round = 2, node = 3}, {round = 2, node = 0}]"]),
                          check_files=False)
    assert "| `isolate` | `[]` | isolate one node" in cfgmod.reference_markdown()
    with pytest.raises(ConfigError, match=r"faults.isolate\[0\].node: 9 is not a node"):
        cfgmod.validate(cfgmod.load(None, ["nodes.count=6", "faults.isolate=[{round = 1, node = 9}]"]),
                        check_files=False)
    with pytest.raises(ConfigError, match=r"faults.isolate\[0\].round: 30 is past the last round"):
        cfgmod.validate(cfgmod.load(None, ["nodes.count=6", "faults.isolate=[{round = 30, node = 1}]"]),
                        check_files=False)
    sched = FaultSchedule(cfg, 6, protected=registry.protected_slots(cfg))
    alive, inc = sched.initial_state()
    step = sched.apply(2, alive, inc, np.zeros(6, np.int64))
    assert step.alive.tolist() == [True, True, True, False, True, True]  # 0 is FedAvg's server: protected
    assert step.crashed.tolist() == [3]
    stored = __import__("tomllib").loads(cfgmod.to_toml(cfg))
    assert common.scenario_label(stored) == "isolate node 3 @2, isolate node 0 @2"
    assert [e.kind for e in common.fault_events(stored)] == ["isolate", "isolate"]


def test_event_round_past_the_run_names_the_key():
    with pytest.raises(ConfigError, match=r"faults.churn\[0\].start"):
        cfgmod.validate(cfgmod.load(None, ["run.rounds=5", "faults.churn=[{start = 5, end = 6, fraction = 0.1}]"]),
                        check_files=False)


def test_a_spec_named_in_the_config_is_loaded_and_registered(fresh_registries):
    cfg = cfgmod.load(None, ["protocol.kind='heal_mpi.protocols.gossip:SPEC'", "protocol.gossip.merge='age'"])
    assert cfg.protocol.name == "gossip" and cfg.protocol.options.merge == "age"
    with pytest.raises(ConfigError, match=r"protocol.kind: cannot load the plug-in 'no_such_package.x:SPEC' "
                                          r"\(ModuleNotFoundError"):
        cfgmod.load(None, ["protocol.kind='no_such_package.x:SPEC'"])
    with pytest.raises(ConfigError, match=r"expected a heal_mpi.registry.ProtocolSpec, got OverlaySpec"):
        cfgmod.load(None, ["protocol.kind='heal_mpi.overlay.kinds:RING'"])
