"""The registries: every kind the simulator can run, found by name, in heal_mpi or in any installed package.

Four kinds, one `Registry` each: PROTOCOLS, OVERLAYS, ATTACKS and FAULTS. A kind is described
by a *spec* (the dataclasses below): its name, its own options (a dataclass of `opt` fields:
the config's `[protocol.<name>]`, `[overlay.<name>]` or `[adversary.<name>]` namespace), its
checks, and what the rest of the simulator must know about it. The config's choices,
validation and reference (README, `heal-mpi config`), the protected slots, the HDF5 `method`
attribute and the analysis labels all derive from the specs.

A spec names its implementation by "module:Name" (`target`), imported only when a run builds
it. The module that holds a spec imports neither mpi4py nor torch, because the config loads
every spec (`heal-mpi validate`, `heal-mpi config` and `jobs/sweep.py` run without them).

Where specs come from, in this order:
1. heal_mpi's own: the "module:SPEC" lists at the end of this file (adding a kind is one line);
2. installed packages, through entry points, one group per kind (`heal_mpi.protocols`,
   `heal_mpi.overlays`, `heal_mpi.attacks`, `heal_mpi.faults`), each `name = "module:SPEC"`;
3. a "package.module:SPEC" value where a config names a kind (protocol.kind, overlay.kind,
   adversary.kind, adversary.models): imported and registered under the spec's name on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable

from heal_mpi.errors import ConfigError

NO_PROTOCOL = "none"  # protocol.kind = "none": the overlay alone (on elevator unless overlay.kind says)
NO_PROTOCOL_OVERLAY = "elevator"


def load(target: str):
    """The object a "module:name" target names (imported on first use)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def no_slots(cfg) -> list[int]:
    return []


def no_check(cfg) -> None:
    pass


# ----------------------------------------------------------------------------- the specs

@dataclass(frozen=True)
class ProtocolSpec:
    """A learning protocol.

    Attributes:
        name: its `protocol.kind` and the name of its options namespace `[protocol.<name>]`.
        target: "module:Class" of the heal_mpi.protocols.base.Protocol subclass, built as Class(cfg, local ids).
        label: its name on plots and tables.
        doc: one round, in a sentence or two (the README's table of protocols).
        default_overlay: what overlay.kind = "auto" runs.
        overlays: the overlays it can run on (empty: any).
        options: a dataclass of `opt` fields, or None; the run's values are `cfg.protocol.options`.
        protected: cfg -> slots that never fail (servers).
        check: cfg -> None, raises ConfigError naming the key.
        asynchronous: it can run on its nodes' own timers (`time.slice`): its rounds act with the
            nodes in `ctx.acting` only, and a node that does not act still receives.
    """

    name: str
    target: str
    label: str
    doc: str
    default_overlay: str
    overlays: tuple[str, ...] = ()
    options: type | None = None
    protected: Callable = no_slots
    check: Callable = no_check
    asynchronous: bool = False


@dataclass(frozen=True)
class OverlaySpec:
    """An overlay. `target` "module:Class" has a classmethod from_config(cfg, world, channel, comm).

    Attributes:
        purposes: every message purpose it passes to the channel (loss keys, alterations): an
            attack that alters a purpose can run only on an overlay that sends it, and every
            other purpose the channel sees is a model.
        hubs: whether it elects hubs (HEAL's hub lists, hub attacks, the hub metrics mean something).
        sequential: whether its cycle can run in turns (`overlay.semantics = "sequential"`).
    """

    name: str
    target: str
    doc: str
    options: type | None = None
    check: Callable = no_check
    purposes: tuple[str, ...] = ()
    hubs: bool = False
    sequential: bool = False


@dataclass(frozen=True)
class AttackSpec:
    """What Byzantine nodes do (heal_mpi/adversary/). `target` "module:Class" is built as
    Class(cfg, world, byzantine_ids, options) and has `alters(purpose) -> bool` and
    `alter(purpose, senders, payload, rnd, receivers)`, optionally `before_train(pop, nodes)`.

    Attributes:
        layer: "overlay" (chosen by adversary.kind: alters the overlay's replies) or "model"
            (chosen by adversary.models: alters every message that carries a model).
        alters: overlay attacks: the purposes they may alter (the overlay must send them).
    """

    name: str
    target: str
    doc: str
    layer: str
    alters: tuple[str, ...] = ()
    options: type | None = None
    check: Callable = no_check


@dataclass(frozen=True)
class FaultSpec:
    """A fault event kind: the list `faults.<name>` of `event` dataclasses.

    Attributes:
        apply: "module:function", apply(state, i, event), run at the start of every round
            (heal_mpi.faults.schedule.FaultState), kinds in registry order, events in list order.
        check: (key, event, cfg) -> None, raises ConfigError naming the key.
        start, end: the event fields holding its first round and, for a window, the round after
            its last (the analysis draws a line or a band; validation checks them against run.rounds).
        label: the event as a plain dict (as stored in a file) -> its label on plots and tables.
    """

    name: str
    event: type
    apply: str
    doc: str
    label: Callable[[dict], str]
    check: Callable = lambda key, ev, cfg: None
    start: str = "round"
    end: str | None = None


# ----------------------------------------------------------------------------- the registry

class Registry:
    """The specs of one kind: heal_mpi's own, then the entry points of `group`, then "module:SPEC"
    values as they are used. Loaded on first use; the order is stable (heal_mpi's first)."""

    def __init__(self, kind: str, group: str, spec_type: type, builtin: list[str]):
        self.kind, self.group, self.spec_type, self._builtin = kind, group, spec_type, builtin
        self._specs: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._specs is None:
            specs: dict[str, Any] = {}
            for target in self._builtin:
                self._add(specs, load(target), f"heal_mpi's {target}")
            for ep in _entry_points(self.group):
                try:
                    spec = ep.load()
                except Exception as e:  # noqa: BLE001 - a broken plug-in is named, whatever it raised
                    raise ConfigError(f"plug-in {self.kind} {ep.name!r} ({ep.value}, entry point group "
                                      f"{self.group}) cannot be loaded: {type(e).__name__}: {e}") from None
                if getattr(spec, "name", None) != ep.name:
                    raise ConfigError(f"plug-in {self.kind} {ep.name!r} ({ep.value}): the entry point's name must be "
                                      f"the spec's name, {getattr(spec, 'name', None)!r}")
                self._add(specs, spec, f"entry point {ep.value}")
            self._specs = specs
        return self._specs

    def _add(self, specs: dict, spec, where: str) -> None:
        if not isinstance(spec, self.spec_type):
            raise ConfigError(f"{where}: expected a heal_mpi.registry.{self.spec_type.__name__}, "
                              f"got {type(spec).__name__}")
        if spec.name in specs and specs[spec.name] is not spec:
            raise ConfigError(f"{where}: a {self.kind} named {spec.name!r} is registered already")
        specs[spec.name] = spec

    def names(self) -> tuple[str, ...]:
        return tuple(self._all())

    def specs(self) -> list:
        return list(self._all().values())

    def __contains__(self, name: str) -> bool:
        return name in self._all()

    def get(self, name: str, key: str):
        """The spec `name` (a registered name or "package.module:SPEC"); ConfigError naming `key` if none."""
        specs = self._all()
        if name in specs:
            return specs[name]
        if ":" not in name:
            raise ConfigError(f"{key}: {name!r} is not one of {', '.join(map(repr, specs))} "
                              f"(or a plug-in's \"package.module:SPEC\")")
        try:
            spec = load(name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"{key}: cannot load the plug-in {name!r} ({type(e).__name__}: {e})") from None
        self._add(specs, spec, f"{key} = {name!r}")
        return spec

    def register(self, spec) -> None:
        """Add a spec (tests, notebooks); a name can be taken once."""
        self._add(self._all(), spec, f"register({spec.name!r})")


def _entry_points(group: str) -> list:
    return sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)


# ----------------------------------------------------------------------------- helpers of the run

def resolve_protocol(cfg) -> ProtocolSpec | None:
    return None if cfg.protocol.kind == NO_PROTOCOL else PROTOCOLS.get(cfg.protocol.kind, "protocol.kind")


def build_protocol(cfg, local):
    """The protocol `cfg.protocol.kind` for this rank's nodes (global ids `local`)."""
    return load(resolve_protocol(cfg).target)(cfg, local)


def build_overlay(cfg, world, channel, comm=None):
    """The overlay `cfg.overlay_kind` on this rank's nodes. Collective over `world.comm`: every rank must call."""
    return load(OVERLAYS.get(cfg.overlay_kind, "overlay.kind").target).from_config(cfg, world, channel, comm)


def protected_slots(cfg) -> list[int]:
    """Slots that never fail: the FedAvg and Gaia servers (the HEAL evaluation's convention)."""
    spec = resolve_protocol(cfg)
    return spec.protected(cfg) if spec else []


def method_label(protocol_kind: str, overlay_kind: str) -> str:
    """"FedAvg", "HEAL", "Gossip (elevator)": the protocol, plus the overlay when not its default.
    A kind this environment does not know (a plug-in not installed here) is labelled by its name."""
    if protocol_kind == NO_PROTOCOL:
        return "overlay only"
    try:
        spec = PROTOCOLS.get(protocol_kind, "protocol.kind")
    except ConfigError:
        return protocol_kind
    return spec.label if overlay_kind in ("auto", spec.default_overlay) else f"{spec.label} ({overlay_kind})"


# ----------------------------------------------------------------------------- heal_mpi's own kinds

PROTOCOLS = Registry("protocol", "heal_mpi.protocols", ProtocolSpec, [
    "heal_mpi.protocols.hub:HEAL",
    "heal_mpi.protocols.hub:FEDAVG",
    "heal_mpi.protocols.hub:GAIA",
    "heal_mpi.protocols.gossip:SPEC",
    "heal_mpi.protocols.epidemic:SPEC",
    "heal_mpi.protocols.dpsgd:SPEC",
])
OVERLAYS = Registry("overlay", "heal_mpi.overlays", OverlaySpec, [
    "heal_mpi.overlay.kinds:ELEVATOR",
    "heal_mpi.overlay.kinds:NEWSCAST",
    "heal_mpi.overlay.kinds:STAR",
    "heal_mpi.overlay.kinds:MULTISTAR",
    "heal_mpi.overlay.kinds:RING",
    "heal_mpi.overlay.kinds:REGULAR",
    "heal_mpi.overlay.kinds:COMPLETE",
])
ATTACKS = Registry("attack", "heal_mpi.attacks", AttackSpec, [
    "heal_mpi.adversary.kinds:PASSIVE",
    "heal_mpi.adversary.kinds:ACTIVE",
    "heal_mpi.adversary.kinds:NONCOORDINATED",
    "heal_mpi.adversary.kinds:COORDINATED",
    "heal_mpi.adversary.kinds:NOISE",
    "heal_mpi.adversary.kinds:ZERO",
    "heal_mpi.adversary.kinds:SIGN_FLIP",
])
FAULTS = Registry("fault kind", "heal_mpi.faults", FaultSpec, [  # applied in this order within a round
    "heal_mpi.faults.events:CRASH",
    "heal_mpi.faults.events:HUB_CRASH",
    "heal_mpi.faults.events:CHURN",
])
