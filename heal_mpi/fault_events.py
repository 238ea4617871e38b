"""The fault events of `[faults]`: one dataclass per kind (one list entry), and its checks.

A kind is registered once in `heal_mpi.registry.FAULT_EVENTS` with its event class, its
`apply` function (in heal_mpi/faults.py, where the schedule runs it every round) and its
check; the config section, its validation and the README's table follow from that entry.
Plain stdlib, like the config: sweeps expand on any python3.
"""

from __future__ import annotations

from dataclasses import dataclass

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt


@dataclass(frozen=True)
class CrashEvent:
    round: int = opt(0, "round at whose start the nodes crash", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes that crash", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class HubCrashEvent:
    round: int = opt(0, "round at whose start the hubs crash", lo=0)
    count: int | str = opt("all", 'how many of the highest in-degree nodes crash, or "all" (= overlay.hubs)')


def check_hub_crash(key: str, ev: HubCrashEvent, cfg) -> None:
    if isinstance(ev.count, int) and ev.count >= cfg.nodes.count:
        raise ConfigError(f"{key}.count: {ev.count} must be < nodes.count = {cfg.nodes.count}")


@dataclass(frozen=True)
class ChurnEvent:
    start: int = opt(0, "first round of the churn window", lo=0)
    end: int = opt(0, "round after the last one of the window", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes replaced every round of the window", lo=0.0, hi=1.0)


def check_churn(key: str, ev: ChurnEvent, cfg) -> None:
    rounds = cfg.run.rounds
    if ev.end <= ev.start:
        raise ConfigError(f"{key}.end: {ev.end} must be > start = {ev.start}")
    if ev.end > rounds:
        raise ConfigError(f"{key}.end: {ev.end} is past the end of the run (run.rounds = {rounds})")
