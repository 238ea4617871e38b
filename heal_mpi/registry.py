"""The registries: every protocol, overlay and fault event, registered once, by name.

Each entry says everything the rest of the simulator needs to know about a kind: which
class runs it, its own parameters, its defaults and compatibilities, its checks. The
config's choices and validation, the README's config table, the protected slots, the
HDF5 `method` / `overlay` attributes and the analysis labels all derive from here.

Adding a kind is one module and one line below. This module and what it imports are
plain stdlib, like the config (sweeps expand on any python3): classes and functions are
named by "module:name" and imported only when a run builds them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from heal_mpi import fault_events as fe
from heal_mpi.errors import ConfigError
from heal_mpi.protocols.params import AggregationParams, EpidemicParams, GossipParams, HubParams


def load(target: str):
    """The object a "module:name" target names (imported on first use)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _no_slots(cfg) -> list[int]:
    return []


def _no_check(cfg) -> None:
    pass


@dataclass(frozen=True)
class ProtocolSpec:
    """A learning protocol.

    Attributes:
        target: "module:Class" of the Protocol subclass, built as Class(cfg, local ids).
        label: its name on plots and tables.
        default_overlay: what overlay.kind = "auto" runs.
        overlays: the overlays it can run on (empty: any).
        params: its own options, dataclasses whose fields join the [protocol] section.
        protected: cfg -> slots that never fail (servers).
        check: cfg -> None, raises ConfigError naming the key.
    """

    target: str
    label: str
    default_overlay: str
    overlays: tuple[str, ...] = ()
    params: tuple = ()
    protected: Callable = _no_slots
    check: Callable = _no_check


@dataclass(frozen=True)
class OverlaySpec:
    """An overlay. `target` "module:Class" has a classmethod from_config(cfg, world, channel)."""

    target: str
    check: Callable = _no_check


@dataclass(frozen=True)
class FaultSpec:
    """A fault event kind: its event dataclass (one entry of `faults.<name>`), its "module:function"
    `apply(state, i, event)` run at the start of every round, and `check(key, event, cfg)`."""

    event: type
    apply: str
    doc: str
    check: Callable = lambda key, ev, cfg: None

    def load_apply(self) -> Callable:
        return load(self.apply)


# ----------------------------------------------------------------------------- checks

def _check_hub_fanout(cfg) -> None:
    if cfg.overlay_kind == "elevator" and cfg.protocol.fanout > cfg.overlay.hubs:
        raise ConfigError(f"protocol.fanout: s = {cfg.protocol.fanout} must be <= overlay.hubs = {cfg.overlay.hubs}")


def _check_aggregation(cfg) -> None:
    if cfg.protocol.trim_beta >= 0.5:
        raise ConfigError(f"protocol.trim_beta: {cfg.protocol.trim_beta} must be < 0.5 (nothing would be left)")


def _check_gossip(cfg) -> None:
    _check_aggregation(cfg)
    if cfg.protocol.gossip_update == "per_model" and cfg.protocol.aggregation != "mean":
        raise ConfigError(f"protocol.aggregation: {cfg.protocol.aggregation!r} needs the models of a round together; "
                          "protocol.gossip_update = 'per_model' merges them one at a time")


def _check_hub(cfg) -> None:
    _check_aggregation(cfg)
    if cfg.overlay_kind in ("star", "multistar") and cfg.protocol.fanout > 1:
        raise ConfigError(f"protocol.fanout: s = {cfg.protocol.fanout}, but a {cfg.overlay_kind} client has one hub")
    if cfg.protocol.client_merge == "median" and cfg.protocol.fanout < 3:
        raise ConfigError(f"protocol.client_merge: a median of s = {cfg.protocol.fanout} copies needs "
                          "protocol.fanout >= 3")
    if cfg.protocol.hub_weights == "clients" and cfg.protocol.hub_merge != "mean":
        raise ConfigError(f"protocol.hub_weights: 'clients' weighs a mean; protocol.hub_merge = "
                          f"{cfg.protocol.hub_merge!r} ignores weights")


def _check_heal(cfg) -> None:
    _check_hub(cfg)
    _check_hub_fanout(cfg)


def _check_epidemic(cfg) -> None:
    _check_aggregation(cfg)
    n = cfg.nodes.count
    if cfg.protocol.epidemic != "neighbours" and cfg.protocol.fanout >= n:
        raise ConfigError(f"protocol.fanout: s = {cfg.protocol.fanout} must be < nodes.count = {n}")


def _check_cache(cfg) -> None:
    ov, n = cfg.overlay, cfg.nodes.count
    if ov.cache_size >= n:
        raise ConfigError(f"overlay.cache_size: c = {ov.cache_size} must be < nodes.count = {n}")


def _check_elevator(cfg) -> None:
    _check_cache(cfg)
    if cfg.overlay.hubs >= cfg.overlay.cache_size:
        raise ConfigError(f"overlay.hubs: h = {cfg.overlay.hubs} must be < overlay.cache_size = "
                          f"{cfg.overlay.cache_size}")


def _check_multistar(cfg) -> None:
    if cfg.overlay.servers >= cfg.nodes.count:
        raise ConfigError(f"overlay.servers: {cfg.overlay.servers} servers need more than nodes.count = "
                          f"{cfg.nodes.count}")


def _check_ring(cfg) -> None:
    if cfg.nodes.count < 3:
        raise ConfigError(f"overlay.kind: a ring needs nodes.count >= 3, not {cfg.nodes.count}")


def _check_regular(cfg) -> None:
    d, n = cfg.overlay.degree, cfg.nodes.count
    if d >= n or (d * n) % 2:
        raise ConfigError(f"overlay.degree: no {d}-regular graph on {n} nodes")


# ----------------------------------------------------------------------------- the registries

HUB = "heal_mpi.protocols.hub:HubProtocol"  # HEAL, FedAvg and Gaia: one protocol, different hub lists
PROTOCOLS: dict[str, ProtocolSpec] = {
    "heal": ProtocolSpec(HUB, "HEAL", "elevator", ("elevator", "star", "multistar"), (AggregationParams, HubParams),
                         check=_check_heal),
    "fedavg": ProtocolSpec(HUB, "FedAvg", "star", ("star",), (AggregationParams, HubParams),
                           protected=lambda cfg: [0], check=_check_hub),
    "gaia": ProtocolSpec(HUB, "Gaia", "multistar", ("multistar",), (AggregationParams, HubParams),
                         protected=lambda cfg: list(range(cfg.overlay.servers)), check=_check_hub),
    "gossip": ProtocolSpec("heal_mpi.protocols.gossip:GossipProtocol", "Gossip", "newscast",
                           params=(AggregationParams, GossipParams), check=_check_gossip),
    "epidemic": ProtocolSpec("heal_mpi.protocols.epidemic:EpidemicProtocol", "Epidemic", "newscast",
                             params=(AggregationParams, EpidemicParams), check=_check_epidemic),
}
NO_PROTOCOL = "none"  # protocol.kind = "none": the overlay alone, on elevator
NO_PROTOCOL_OVERLAY = "elevator"

OVERLAYS: dict[str, OverlaySpec] = {
    "elevator": OverlaySpec("heal_mpi.overlay.elevator:Elevator", _check_elevator),
    "newscast": OverlaySpec("heal_mpi.overlay.newscast:Newscast", _check_cache),
    "star": OverlaySpec("heal_mpi.overlay.static:StaticOverlay"),
    "multistar": OverlaySpec("heal_mpi.overlay.static:StaticOverlay", _check_multistar),
    "ring": OverlaySpec("heal_mpi.overlay.static:StaticOverlay", _check_ring),
    "regular": OverlaySpec("heal_mpi.overlay.static:StaticOverlay", _check_regular),
    "complete": OverlaySpec("heal_mpi.overlay.static:StaticOverlay"),
}

FAULT_EVENTS: dict[str, FaultSpec] = {  # applied in this order within a round
    "crash": FaultSpec(fe.CrashEvent, "heal_mpi.faults:apply_crash", "crash events: [{round, fraction}]"),
    "hub_crash": FaultSpec(fe.HubCrashEvent, "heal_mpi.faults:apply_hub_crash",
                           'hub attacks: [{round, count}], count an integer or "all"', fe.check_hub_crash),
    "churn": FaultSpec(fe.ChurnEvent, "heal_mpi.faults:apply_churn", "churn windows: [{start, end, fraction}]",
                       fe.check_churn),
}


def build_protocol(cfg, local):
    """The protocol `cfg.protocol.kind` for this rank's nodes (global ids `local`)."""
    return load(PROTOCOLS[cfg.protocol.kind].target)(cfg, local)


def build_overlay(cfg, world, channel):
    """The overlay `cfg.overlay_kind` on this rank's nodes. Collective over `world.comm`: every rank must call."""
    return load(OVERLAYS[cfg.overlay_kind].target).from_config(cfg, world, channel)


def protected_slots(cfg) -> list[int]:
    """Slots that never fail: the FedAvg and Gaia servers (the HEAL evaluation's convention)."""
    spec = PROTOCOLS.get(cfg.protocol.kind)
    return spec.protected(cfg) if spec else []


def method_label(protocol_kind: str, overlay_kind: str) -> str:
    """"FedAvg", "HEAL", "Gossip (elevator)": the protocol, plus the overlay when not its default."""
    if protocol_kind == NO_PROTOCOL:
        return "overlay only"
    spec = PROTOCOLS.get(protocol_kind)
    if spec is None:
        return protocol_kind
    return spec.label if overlay_kind in ("auto", spec.default_overlay) else f"{spec.label} ({overlay_kind})"
