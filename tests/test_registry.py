"""The registries: every kind is declared once and the config, checks, faults and labels follow."""

import dataclasses
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from heal_mpi import config as cfgmod
from heal_mpi import registry
from heal_mpi.errors import ConfigError
from heal_mpi.faults import FaultSchedule, FaultState


def field_of(cls, name):
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def test_config_choices_and_options_come_from_the_registries():
    assert field_of(cfgmod.ProtocolConfig, "kind").metadata["choices"] == (*registry.PROTOCOLS, "none")
    assert field_of(cfgmod.OverlayConfig, "kind").metadata["choices"] == ("auto", *registry.OVERLAYS)
    for spec in registry.PROTOCOLS.values():  # a protocol's own options join [protocol]
        for f in (f for params in spec.params for f in dataclasses.fields(params)):
            assert field_of(cfgmod.ProtocolConfig, f.name).metadata == f.metadata
    assert [f.name for f in dataclasses.fields(cfgmod.FaultsConfig)] == ["message_loss", *registry.FAULT_EVENTS]
    ref = cfgmod.reference_markdown()
    assert all(name in ref for name in registry.PROTOCOLS) and "| `merge` |" in ref


@pytest.mark.parametrize("kind", list(registry.PROTOCOLS))
def test_auto_overlay_is_the_protocols_default_and_others_are_refused(kind):
    spec = registry.PROTOCOLS[kind]
    cfg = cfgmod.validate(cfgmod.load(None, [f"protocol.kind='{kind}'", "nodes.count=30", "overlay.cache_size=8",
                                             "overlay.hubs=3"]), check_files=False)
    assert cfg.overlay_kind == spec.default_overlay
    refused = [o for o in registry.OVERLAYS if spec.overlays and o not in spec.overlays]
    for overlay in refused:
        with pytest.raises(ConfigError, match="overlay.kind"):
            cfgmod.validate(cfg.replace("overlay", kind=overlay), check_files=False)


def test_protected_slots_are_the_servers():
    cfg = cfgmod.load(None, ["protocol.kind='gaia'", "overlay.servers=3"])
    assert registry.protected_slots(cfg) == [0, 1, 2]
    assert registry.protected_slots(cfg.replace("protocol", kind="fedavg")) == [0]
    assert registry.protected_slots(cfg.replace("protocol", kind="heal")) == []


def test_method_labels():
    assert registry.method_label("heal", "elevator") == "HEAL"
    assert registry.method_label("gossip", "elevator") == "Gossip (elevator)"
    assert registry.method_label("none", "elevator") == "overlay only"


def test_a_new_fault_kind_is_one_spec(monkeypatch):
    """A registered kind is applied by the schedule, in registry order, with the keyed state."""

    @dataclasses.dataclass(frozen=True)
    class Isolate:
        round: int = 0
        node: int = 0

    def apply_isolate(state: FaultState, i, ev):  # registered by name, like every kind
        if ev.round == state.rnd and state.eligible()[ev.node]:
            state.alive[ev.node] = False
            state.gone.append(np.array([ev.node]))

    monkeypatch.setattr(sys.modules[__name__], "apply_isolate", apply_isolate, raising=False)
    monkeypatch.setitem(registry.FAULT_EVENTS, "isolate",
                        registry.FaultSpec(Isolate, f"{__name__}:apply_isolate", "isolate one node: [{round, node}]"))
    cfg = SimpleNamespace(run=SimpleNamespace(seed=1), overlay=SimpleNamespace(hubs=1),
                          faults=SimpleNamespace(crash=[], hub_crash=[], churn=[],
                                                 isolate=[Isolate(round=2, node=3), Isolate(round=2, node=0)]))
    sched = FaultSchedule(cfg, 6, protected=[0])
    alive, inc = sched.initial_state()
    step = sched.apply(2, alive, inc, np.zeros(6, np.int64))
    assert step.alive.tolist() == [True, True, True, False, True, True]  # 0 is protected
    assert step.crashed.tolist() == [3]


def test_event_round_past_the_run_names_the_key():
    with pytest.raises(ConfigError, match=r"faults.churn\[0\].start"):
        cfgmod.validate(cfgmod.load(None, ["run.rounds=5", "faults.churn=[{start = 5, end = 6, fraction = 0.1}]"]),
                        check_files=False)
