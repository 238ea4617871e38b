"""The built-in fault kinds of `[faults]`: one event dataclass per kind (one list entry), its checks,
its label, and its spec (registered in heal_mpi.registry.FAULTS; `apply` is in schedule.py).

Light: no mpi4py, no torch, no NumPy (the config loads these specs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.registry import FaultSpec


def pct(fraction: float) -> str:
    """0.2 -> "20%" (4 significant digits): how fault labels write a fraction."""
    return f"{100 * float(fraction):.4g}%"


@dataclass(frozen=True)
class CrashEvent:
    round: int = opt(0, "round at whose start the nodes crash", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes that crash", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class HubCrashEvent:
    round: int = opt(0, "round at whose start the hubs crash", lo=0)
    count: int | Literal["all"] = opt("all", 'how many of the highest in-degree nodes crash, or "all" (= overlay.hubs)',
                                      lo=1)


def check_hub_crash(key: str, ev: HubCrashEvent, cfg) -> None:
    if isinstance(ev.count, int) and ev.count >= cfg.nodes.count:
        raise ConfigError(f"{key}.count: {ev.count} must be < nodes.count = {cfg.nodes.count}")


@dataclass(frozen=True)
class ChurnEvent:
    start: int = opt(0, "first round of the churn window", lo=0)
    end: int = opt(0, "round after the last one of the window", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes replaced every round of the window", lo=0.0, hi=1.0)


def check_churn(key: str, ev: ChurnEvent, cfg) -> None:
    if ev.end <= ev.start:
        raise ConfigError(f"{key}.end: {ev.end} must be > start = {ev.start}")
    if ev.end > cfg.run.rounds:
        raise ConfigError(f"{key}.end: {ev.end} is past the end of the run (run.rounds = {cfg.run.rounds})")


CRASH = FaultSpec("crash", CrashEvent, "heal_mpi.faults.schedule:apply_crash", "crash events: [{round, fraction}]",
                  label=lambda e: f"crash {pct(e['fraction'])} @{e['round']}")
HUB_CRASH = FaultSpec("hub_crash", HubCrashEvent, "heal_mpi.faults.schedule:apply_hub_crash",
                      'hub attacks: [{round, count}], count an integer or "all"',
                      label=lambda e: f"hub attack {e.get('count', 'all')} @{e['round']}", check=check_hub_crash)
CHURN = FaultSpec("churn", ChurnEvent, "heal_mpi.faults.schedule:apply_churn", "churn windows: [{start, end, fraction}]",
                  label=lambda e: f"churn {pct(e['fraction'])} [{e['start']},{e['end']})", check=check_churn,
                  start="start", end="end")
