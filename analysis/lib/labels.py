"""Labels of groups: the method ("HEAL", "Gossip (elevator)"), the scenario from the fault events
("fault-free", "crash 20% @10", ...), their display order, and file-name slugs.

Fault events are labelled by their kind's spec in heal_mpi.registry.FAULTS (a plug-in's kind by
its own label); message loss and the adversary are added here.

Rounds on plot axes count from 1: round k is the row written after k rounds. A fault
configured at round r (0-based: it strikes at the start of the loop's round r) therefore
falls between round r and r + 1, and is drawn at x = r; a window [s, e) spans x = s..e.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from heal_mpi import registry
from heal_mpi.faults.events import pct

METHOD_ORDER = list(registry.PROTOCOLS.names())  # display order: the registry's


@dataclass(frozen=True)
class Event:
    """One fault event for plots: kind is crash, hub_crash, churn, message_loss, byzantine or lift."""

    kind: str
    start: int            # config round (0-based); for churn the window's start
    end: int | None       # churn: the window's end (exclusive); else None
    label: str


def method_label(config: dict) -> str:
    """"FedAvg", "HEAL", "Gossip (elevator)" for a config dict (the registry's labels)."""
    return registry.method_label(str(config.get("protocol", {}).get("kind", "?")),
                                 str(config.get("overlay", {}).get("kind", "auto")))


def method_rank(group) -> int:
    kind = group.runs[0].method if group.runs else ""
    return METHOD_ORDER.index(kind) if kind in METHOD_ORDER else len(METHOD_ORDER)


def fault_events(config: dict) -> list[Event]:
    """The [faults] events, kind by kind in registry order (crash, hub attack, churn, then plug-ins),
    then message loss and the adversary. A kind this environment does not know keeps its name."""
    faults = config.get("faults", {})
    events = []
    specs = {spec.name: spec for spec in registry.FAULTS.specs()}
    for name in [*specs, *(k for k in faults if k not in specs and k != "message_loss")]:
        spec = specs.get(name)
        for e in faults.get(name, []):
            if spec is None:
                events.append(Event(name, int(e.get("round", e.get("start", 0))), e.get("end"), f"{name} {e}"))
            else:
                end = e.get(spec.end) if spec.end else None
                events.append(Event(name, int(e[spec.start]), None if end is None else int(end), spec.label(e)))
    if float(faults.get("message_loss", 0.0)) > 0:
        events.append(Event("message_loss", 0, None, f"message loss {pct(faults['message_loss'])}"))
    return events + adversary_events(config)


def adversary_events(config: dict) -> list[Event]:
    """The [adversary] as events: the Byzantine nodes (the whole run) and Lift (a round)."""
    adv = config.get("adversary", {})
    count, fraction = int(adv.get("byzantine", 0)), float(adv.get("byzantine_fraction", 0.0))
    events = []
    if count or fraction:
        what = [w for w in (adv.get("kind", "none"), adv.get("models", "honest")) if w not in ("none", "honest")]
        if adv.get("backward_mode", "honest") != "honest":  # byzantine.md A1: the spec's other backward answers
            what.append(f"backward {adv['backward_mode']}")
        who = f"{count} Byzantine" if count else f"{pct(fraction)} Byzantine"
        events.append(Event("byzantine", 0, None, who + (f" ({', '.join(what)})" if what else "")))
    lift = int(adv.get("lift_round", -1))
    if lift >= 0:
        period = int(adv.get("lift_period", 0))
        events.append(Event("lift", lift, None, f"Lift @{lift}" + (f" every {period}" if period else "")))
    return events


def scenario_label(config: dict) -> str:
    """The fault events ("fault-free" without), then the clock when the run has one:
    "fault-free; compute lognormal 1, deadline 15 s"."""
    events = fault_events(config)
    faults = ", ".join(e.label for e in events) if events else "fault-free"
    clock = clock_label(config)
    return f"{faults}; {clock}" if clock else faults


def clock_label(config: dict) -> str | None:
    """The [time] devices and waits in a few words ("equal devices", "devices slow_hubs", "compute
    lognormal 1, bandwidth lognormal 1, deadline 15 s"); None without a clock."""
    t = config.get("time", {})
    if not t.get("enabled", False):
        return None
    if t.get("devices_csv"):
        parts = [f"devices {Path(t['devices_csv']).stem}"]
    else:
        parts = [f"{what} {t[what + '_dist']} {float(t[what + '_spread']):g}" for what in ("compute", "bandwidth", "latency")
                 if t.get(what + "_dist", "constant") != "constant" and float(t.get(what + "_spread", 0))]
        if float(t.get("slow_fraction", 0)) and float(t.get("slow_factor", 1)) != 1:
            parts.append(f"{pct(t['slow_fraction'])} {float(t['slow_factor']):g}x slower")
        parts = parts or ["equal devices"]
    if float(t.get("deadline", 0)) > 0:
        parts.append(f"deadline {float(t['deadline']):g} s")
    if float(t.get("quorum", 1)) < 1:
        parts.append(f"quorum {float(t['quorum']):g}")
    if float(t.get("slice", 0)) > 0:
        parts.append(f"async {float(t['slice']):g} s")
    return ", ".join(parts)


def scenario_rank(scenario: str) -> tuple:
    return (scenario != "fault-free", scenario)


def by_scenario(groups: list) -> dict[str, list]:
    """{scenario: its groups}, fault-free first, methods in METHOD_ORDER (groups arrive sorted)."""
    out: dict[str, list] = {}
    for g in groups:
        out.setdefault(g.scenario, []).append(g)
    return out


def methods(groups: list) -> list[str]:
    """Method labels in display order (HEAL, FedAvg, Gaia, Gossip, Epidemic, then others)."""
    ordered = sorted(groups, key=lambda g: (method_rank(g), g.method))
    return list(dict.fromkeys(g.method for g in ordered))


def slug(text: str) -> str:
    """A file-name-safe form of a label: "crash 20% @10" -> "crash-20pct-at10"."""
    text = text.lower().replace("%", "pct").replace("@", "at")
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-") or "x"


def overlay_labels(groups: list) -> None:
    """Overlay-only runs (protocol "none") labelled by their overlay: "Elevator", "Elevator (top-c)",
    "Newscast", "Elevator (sequential, k = 100)", instead of "overlay only (overlay.kind=...)". Other
    groups keep their labels. When every group is overlay-only, the list is re-sorted: scenario, then label."""
    for g in groups:
        if g.runs and g.runs[0].method == "none":
            g.method = overlay_name(g.config.get("overlay", {}))
    if groups and all(g.runs and g.runs[0].method == "none" for g in groups):
        groups.sort(key=lambda g: (scenario_rank(g.scenario), g.method))


def overlay_name(overlay: dict, with_order: bool = True) -> str:
    """An [overlay] table's name: "Elevator", "Elevator (top-c)", "Newscast (sequential)"; the cycle
    semantics left out when `with_order` is False."""
    kind = str(overlay.get("kind", "elevator"))
    kind = "elevator" if kind == "auto" else kind
    preferred = overlay.get("elevator", {}).get("preferred", "top-h")
    notes = [preferred] if kind == "elevator" and preferred != "top-h" else []
    notes += order_notes(overlay) if with_order else []
    return kind.capitalize() + (f" ({', '.join(notes)})" if notes else "")


def order_notes(overlay: dict) -> list[str]:
    """The cycle semantics of an [overlay] table, for a label: [] (snapshot), ["sequential"] (one node
    a turn, PeerSim's order) or ["sequential, k = 100"]."""
    if overlay.get("semantics", "snapshot") != "sequential":
        return []
    k = int(overlay.get("substeps", 0))
    return ["sequential" + (f", k = {k}" if k else "")]


def setup_text(config: dict) -> str:
    """The world a figure shows, for its title: "100 nodes, fashion-mnist Dirichlet α = 0.5, c = 20, h = 5"."""
    data, ov = config.get("data", {}), config.get("overlay", {})
    n = config.get("nodes", {}).get("count", "?")
    part = data.get("partition", "iid")
    skew = {"dirichlet": f"Dirichlet α = {data.get('alpha', 0.5):g}",
            "shards": f"{data.get('shards_per_node', 2)} classes a node"}.get(part, "IID")
    return f"{n} nodes, {data.get('dataset', 'synthetic')} {skew}, c = {ov.get('cache_size', 20)}, " \
           f"h = {ov.get('hubs', 10)}"
