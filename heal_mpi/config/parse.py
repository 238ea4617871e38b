"""TOML text and --set overrides -> a Config, every key, type and range checked.

A section that names kinds (protocol, overlay, adversary) also takes one sub-table per kind,
named after it, holding that kind's options: `[protocol.heal] fanout = 2`. Every sub-table
given is checked; the run keeps the options of the kinds it runs (a base config shared by a
sweep may carry several protocols' tables).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from heal_mpi.config.fields import build, build_events, key_name, short
from heal_mpi.config.sections import SECTIONS, Config, FaultsConfig, chosen_options
from heal_mpi.errors import ConfigError
from heal_mpi.registry import FAULTS


def from_dict(raw: dict) -> Config:
    """Build a Config from parsed TOML, checking every key, type and range."""
    sections, namespaces = {}, {}
    for name, table in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{key_name(name)}: unknown section (known: {', '.join(SECTIONS)})")
        cls = SECTIONS[name]
        if cls is FaultsConfig:
            sections[name] = _faults(table)
            continue
        others = _other_keys(cls, table)  # the kinds' tables: checked once the section's kind is known
        sections[name] = build(cls, table, name, skip=others)
        subs = _namespace_tables(cls, table, name)
        if subs:
            namespaces[name] = subs
    cfg = Config(**sections)
    return _with_options(cfg, namespaces)


def _other_keys(cls, table) -> set:
    """The keys of a section that names kinds that are not its own fields."""
    if getattr(cls, "NAMESPACES", None) is None or not isinstance(table, dict):
        return set()
    return set(table) - {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _namespace_tables(cls, table, prefix: str) -> dict:
    """The sub-tables of a section that names kinds: {kind name: table}. A key that is neither a
    field nor a registered kind is refused, with a pointer when it is some kind's option."""
    registry = getattr(cls, "NAMESPACES", None)
    if registry is None or not isinstance(table, dict):
        return {}
    fields = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    subs = {}
    for name, value in table.items():
        if name in fields:
            continue
        if isinstance(value, dict) and name in registry:
            subs[name] = value
            continue
        owners = [f"{prefix}.{spec.name}.{name}" for spec in registry.specs()
                  if spec.options and name in {f.name for f in dataclasses.fields(spec.options)}]
        hint = f"; a {registry.kind}'s own options live in its table: {', '.join(owners)}" if owners else \
            f" (known: {', '.join(sorted(fields))}, and a table per {registry.kind}: {', '.join(registry.names())})"
        raise ConfigError(f"{prefix}.{key_name(name)}: unknown key{hint}")
    return subs


def _with_options(cfg: Config, namespaces: dict) -> Config:
    """Check every kind's sub-table and give the chosen kinds their options."""
    for section, subs in namespaces.items():
        registry = getattr(type(getattr(cfg, section)), "NAMESPACES")
        chosen = {}
        for name, table in subs.items():
            spec = registry.get(name, f"{section}.{name}")
            if spec.options is None:
                if table:
                    raise ConfigError(f"{section}.{name}.{key_name(next(iter(table)))}: unknown key "
                                      f"(the {registry.kind} {name!r} has no options)")
                continue
            chosen[name] = build(spec.options, table, f"{section}.{name}")
        cfg = _give(cfg, section, chosen)
    return cfg


def _give(cfg: Config, section: str, built: dict) -> Config:
    """cfg with the options in `built` ({kind name: options}) given to the kinds it runs."""
    chosen = chosen_options(cfg, section)  # the kinds it runs, at their defaults
    mine = {name: built[name] for name in chosen if name in built}
    if not mine:
        return cfg
    if section == "adversary":
        return cfg.replace(section, options={**chosen, **mine})
    return cfg.replace(section, options=next(iter(mine.values())))


def _faults(table) -> FaultsConfig:
    """[faults]: message_loss and one list of events per registered fault kind."""
    if not isinstance(table, dict):
        raise ConfigError(f"faults: expected a table, got {short(table)}")
    kinds = {spec.name: spec for spec in FAULTS.specs()}
    for name in table:
        if name not in kinds and name != "message_loss":
            raise ConfigError(f"faults.{key_name(name)}: unknown key (known: message_loss, {', '.join(kinds)})")
    plain = {k: v for k, v in table.items() if k not in kinds}
    base = build(FaultsConfig, plain, "faults")
    events = {name: build_events(kinds[name].event, value, f"faults.{key_name(name)}")
              for name, value in table.items() if name in kinds}
    return dataclasses.replace(base, events=events)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'section.key=value' or 'section.kind.key=value' -> (the dotted path, value); the value is read
    as TOML, else as a plain string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text if text.isprintable() else json.dumps(text)}: expected section.key=value "
                          "(quote it for the shell: --set 'faults.crash=[{round = 3, fraction = 0.2}]')")
    dotted, raw = text.split("=", 1)
    path = [part.strip() for part in dotted.strip().split(".")]
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML file (None = defaults only), apply --set overrides, check everything."""
    raw: dict = {}
    if path is not None:
        raw = read_toml(Path(path))
    for text in overrides:
        keys, value = parse_override(text)
        table = raw
        for depth, key in enumerate(keys[:-1]):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{'.'.join(map(key_name, keys[:depth + 1]))}: expected a table")
        table[keys[-1]] = value
    return from_dict(raw)


def read_toml(path: Path) -> dict:
    """The parsed file; ConfigError naming the path when it cannot be read as TOML text."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
