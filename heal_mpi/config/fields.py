"""One TOML table -> one dataclass: every value checked against its field's annotation and `opt` metadata.

The annotation is the type (read with typing.get_type_hints, never as a string): bool, int,
float, str, a Literal, a union of those (tried in order), or `list[Event]` for the fault
lists. The metadata (heal_mpi/options.py) adds the range, the choices, or the registry of
kinds the value names. Every failure is one ConfigError line that starts with the dotted key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from typing import Any, Literal, Union

from heal_mpi.errors import ConfigError

COUNT_MAX = 10**9  # counts that size arrays and output rows: beyond any machine, low enough to catch typos
INT_MAX = 2**63 - 1  # TOML integers are 64-bit and every integer ends up in NumPy or HDF5 as int64
FLOAT32_MAX = 3.4028234663852886e38  # the models compute in float32: a larger number becomes inf there


@functools.cache
def hints(cls) -> dict[str, Any]:
    """The evaluated annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def short(value) -> str:
    """repr(value) on one line and at most 60 characters: error messages stay one readable line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def key_name(name: str) -> str:
    """A TOML key as written in a message: bare when it can be, else quoted (one line either way)."""
    return name if name and all(ch.isalnum() or ch in "_-" for ch in name) and name.isascii() else json.dumps(name)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def choices(meta) -> tuple:
    """The allowed values of a field: its choices, or the names of its registry (plus `also`)."""
    if meta.get("kinds") is not None:
        return (*meta.get("also", ()), *meta["kinds"].names())
    return tuple(meta.get("choices") or ())


def describe(tp, meta) -> str:
    """What a value of this type must be, in words ('an integer >= 1 or "all"')."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(describe(arm, meta) for arm in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(tp))
    lo = meta.get("lo")
    bound = f" {'>' if meta.get('lo_open') else '>='} {lo}" if lo is not None and tp in (int, float) else ""
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp)) + bound


def check_value(key: str, tp, meta, value):
    """Type- and range-check one value against its annotation; returns it converted (int -> float
    where declared). A union takes the first of its arms that accepts the value."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return check_value(key, arm, meta, value)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {describe(tp, meta)}, got {short(value)}")
    if typing.get_origin(tp) is Literal:
        if any(type(value) is type(a) and value == a for a in typing.get_args(tp)):
            return value
        raise ConfigError(f"{key}: expected {describe(tp, meta)}, got {short(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {short(value)}")
    elif tp is int:
        if not is_int(value):
            raise ConfigError(f"{key}: expected an integer, got {short(value)}")
        if abs(value) > INT_MAX:
            raise ConfigError(f"{key}: {short(value)} does not fit in 64 bits")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        # nan passes every < and > test below, and inf reaches the run as a silent nan loss
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {short(value)}")
        if abs(number) > FLOAT32_MAX:
            raise ConfigError(f"{key}: {short(value)} does not fit in float32, the precision the models "
                              f"compute in (at most 3.4e38 in size)")
        value = number
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {short(value)}")
    else:
        raise TypeError(f"{key}: no check for the annotation {tp!r}")
    if meta.get("kinds") is not None:
        if value not in meta.get("also", ()):
            meta["kinds"].get(value, key)  # a registered name, or a plug-in it can load; ConfigError otherwise
        return value
    allowed = choices(meta)
    if allowed and value not in allowed:
        raise ConfigError(f"{key}: {short(value)} is not one of {', '.join(map(repr, allowed))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        raise ConfigError(f"{key}: {short(value)} must be {'>' if meta.get('lo_open') else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {short(value)} must be <= {hi}")
    return value


def event_type(tp):
    """The event dataclass of a `list[Event]` annotation, else None."""
    if typing.get_origin(tp) is list:
        (arm,) = typing.get_args(tp)
        return arm if dataclasses.is_dataclass(arm) else None
    return None


def build(cls, table, prefix: str, required: bool = False, skip=()):
    """cls from one TOML table, every key checked; `skip`: keys the caller handles (namespaces).

    `required`: every field must be given (fault events have no meaningful defaults: a crash
    without its fraction would silently crash nobody).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {short(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    types_ = hints(cls)
    values = {}
    for name, value in table.items():
        if name in skip:
            continue
        key = f"{prefix}.{key_name(name)}"
        if name not in fields:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(fields)})")
        values[name] = check_value(key, types_[name], fields[name].metadata, value)
    missing = [name for name in fields if name not in values]
    if required and missing:
        raise ConfigError(f"{prefix}: missing {', '.join(missing)} (give every key: {', '.join(fields)})")
    return cls(**values)


def build_events(event: type, value, key: str) -> tuple:
    """One fault list: `[{...}, ...]` of `event` tables, every key required."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of tables like [{{round = 10, ...}}]")
    return tuple(build(event, ev, f"{key}[{i}]", required=True) for i, ev in enumerate(value))
