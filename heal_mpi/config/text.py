"""The config as text: the resolved TOML stored in every output file, and the README's generated blocks
(the config reference and the tables of kinds), also printed by `heal-mpi config`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from heal_mpi.config.fields import choices
from heal_mpi.config.sections import Config, chosen_options
from heal_mpi.registry import ATTACKS, FAULTS, OVERLAYS, PROTOCOLS


def toml_value(v) -> str:
    """A config value as TOML text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if dataclasses.is_dataclass(v):
        return "{" + ", ".join(f"{f.name} = {toml_value(getattr(v, f.name))}" for f in dataclasses.fields(v)) + "}"
    raise TypeError(v)


def _keys(obj) -> list[str]:
    return [f"{f.name} = {toml_value(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
            if not f.metadata.get("internal")]


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (stored in every output file; loads back to cfg): every key,
    the chosen kinds' options as their sub-tables, every registered fault list."""
    out = []
    for section in dataclasses.fields(cfg):
        sec = getattr(cfg, section.name)
        out += [f"[{section.name}]", *_keys(sec)]
        if section.name == "faults":
            out += [f"{name} = {toml_value(list(events))}" for name, events in sec.events.items()]
        out.append("")
        for name, options in chosen_options(cfg, section.name).items():
            if options is not None:
                out += [f"[{section.name}.{name}]", *_keys(options), ""]
    return "\n".join(out)


def _table(title: str, cls) -> list[str]:
    lines = [f"**[{title}]**", "", "| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        doc = f.metadata["doc"]
        if choices(f.metadata) and f.metadata.get("kinds") is None:
            doc += " (" + " \\| ".join(choices(f.metadata)) + ")"
        elif f.metadata.get("kinds") is not None:
            doc += " (" + " \\| ".join(choices(f.metadata)) + ", or a plug-in's `package.module:SPEC`)"
        lines.append(f"| `{f.name}` | `{toml_value(default)}` | {doc} |")
    return lines + [""]


def reference_markdown() -> str:
    """Every option with its default and meaning, as markdown (the README's config reference):
    each section, then each kind's own options as the sub-table it is set in."""
    lines = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory
        lines += _table(section.name, cls)
        if cls.__name__ == "FaultsConfig":
            lines[-1:-1] = [f"| `{spec.name}` | `[]` | {spec.doc} |" for spec in FAULTS.specs()]
        registry = getattr(cls, "NAMESPACES", None)
        for spec in registry.specs() if registry is not None else ():
            if spec.options is not None:
                lines += _table(f"{section.name}.{spec.name}", spec.options)
    return "\n".join(lines)


def kinds_markdown() -> str:
    """The tables of protocols, overlays and attacks, from their specs (the README's)."""
    lines = ["| protocol (`protocol.kind`) | runs on | one round |", "|---|---|---|"]
    for spec in PROTOCOLS.specs():
        on = ", ".join(spec.overlays) if spec.overlays else "any"
        lines.append(f"| `{spec.name}` | {on} (default {spec.default_overlay}) | {spec.doc} |")
    lines += ["", "| overlay (`overlay.kind`) | what each node holds |", "|---|---|"]
    lines += [f"| `{spec.name}` | {spec.doc} |" for spec in OVERLAYS.specs()]
    lines += ["", "| attack | set in | what a Byzantine node does |", "|---|---|---|"]
    lines += [f"| `{spec.name}` | `adversary.{'kind' if spec.layer == 'overlay' else 'models'}` | {spec.doc} |"
              for spec in ATTACKS.specs()]
    return "\n".join(lines) + "\n"


def _hdf5_markdown() -> str:
    from heal_mpi import schema
    return schema.markdown()


BLOCKS = {"config-reference": reference_markdown, "kinds": kinds_markdown, "hdf5": _hdf5_markdown}


def update_readme(path: str | Path) -> None:
    """Rewrite the README's generated blocks (<!-- NAME:start ... --> to <!-- NAME:end -->)."""
    text = Path(path).read_text()
    for name, make in BLOCKS.items():
        start, end = f"<!-- {name}:start", f"<!-- {name}:end -->"
        head, rest = text.split(start, 1)
        marker_line, _ = rest.split("\n", 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}{marker_line}\n\n{make()}\n{end}{tail}"
    Path(path).write_text(text)


def summary(cfg: Config) -> str:
    """One line on what a run will do: the protocol and its options, the world, the overlay's cycle order,
    the faults, the adversary and the clock (what `heal-mpi validate` prints, so that nothing a preset
    carries is hidden)."""
    from heal_mpi.config.checks import byzantine_count
    parts = [f"{cfg.protocol.kind} on {cfg.overlay_kind}, {cfg.nodes.count} nodes, {cfg.run.rounds} rounds"]
    for section in ("protocol", "overlay"):
        for name, options in chosen_options(cfg, section).items():
            if options is not None:
                parts.append(f"{section}.{name}: " + ", ".join(f"{f.name} = {toml_value(getattr(options, f.name))}"
                                                               for f in dataclasses.fields(options)))
    if cfg.overlay.semantics != "snapshot":
        turns = f"{cfg.overlay.substeps} turns" if cfg.overlay.substeps else "one node a turn"
        parts.append(f"overlay cycle: {cfg.overlay.semantics}, {turns}")
    events = [spec.label(dataclasses.asdict(ev)) for spec in FAULTS.specs() for ev in cfg.faults.events[spec.name]]
    if cfg.faults.message_loss:
        events.append(f"message loss {cfg.faults.message_loss:g}")
    parts.append("faults: " + (", ".join(events) if events else "none"))
    adv = cfg.adversary
    if byzantine_count(cfg):
        lift = f", Lift @{adv.lift_round}" if adv.lift_round >= 0 else ""
        parts.append(f"adversary: {byzantine_count(cfg)} Byzantine (overlay {adv.kind}, models {adv.models}){lift}")
    else:
        parts.append("adversary: none")
    parts.append("clock: " + (clock_text(cfg.time) if cfg.time.enabled else "none"))
    return "; ".join(parts)


def clock_text(t) -> str:
    """The devices [time] draws and how long aggregators wait, in a few words."""
    waits = [f"deadline {t.deadline:g} s"] * (t.deadline > 0) + [f"quorum {t.quorum:g}"] * (t.quorum < 1)
    if t.slice > 0:
        waits.append(f"asynchronous rounds of {t.slice:g} s" + (f", jitter {t.jitter:g}" if t.jitter else ""))
    if t.availability_csv:
        waits.append(f"online as in {t.availability_csv}")
    elif t.online_fraction < 1:
        waits.append(f"online {100 * t.online_fraction:g}% of each {t.day:g}-s day")
    return devices_text(t) + "".join(f", {w}" for w in waits)


def devices_text(t) -> str:
    if t.devices_csv:
        return f"devices from {t.devices_csv}"

    def drawn(value, dist, spread, unit):
        return f"{value:g} {unit}" + (f" ({dist} {spread:g})" if dist != "constant" and spread else "")
    text = (f"compute {drawn(t.compute, t.compute_dist, t.compute_spread, 'samples/s')}, "
            f"up {drawn(t.uplink, t.bandwidth_dist, t.bandwidth_spread, 'B/s')}, down {t.downlink:g} B/s, "
            f"latency {drawn(t.latency, t.latency_dist, t.latency_spread, 's')}")
    if t.slow_fraction and t.slow_factor != 1:
        text += f", {100 * t.slow_fraction:g}% of the nodes {t.slow_factor:g}x slower"
    return text
