"""The fault events of `[faults]`: each kind is an event dataclass and an `apply` function.

A kind is registered once in `heal_mpi.registry.FAULT_EVENTS`; the config section, its
validation, the README's table and the schedule (faults.py) follow from that entry.
`apply(state, i, event)` acts on one event of the list at the start of a round: it reads
and changes the `FaultState` (liveness, incarnations, who left and who joined) and sees
the previous round's overlay in-degree; every draw is keyed (`rng.uniform`), so every rank
decides the same without talking. Protected slots (the FedAvg and Gaia servers) are
never picked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.rng import uniform


@dataclass
class FaultState:
    """What the fault events of one round read and change (global arrays, the same on every rank).

    Attributes:
        rnd, seed: the round about to start and the run's seed.
        alive: bool [N]; incarnation: int64 [N] (changed in place by the events).
        eligible_base: bool [N], slots an event may pick (not protected).
        in_degree: int64 [N], the overlay's in-degree after the previous round.
        default_hubs: overlay.hubs (a hub attack's "all").
        gone, joined: slot arrays the events append: nodes that left, newcomers that arrived.
    """

    rnd: int
    seed: int
    alive: np.ndarray
    incarnation: np.ndarray
    eligible_base: np.ndarray
    in_degree: np.ndarray
    default_hubs: int
    gone: list = field(default_factory=list)
    joined: list = field(default_factory=list)

    def eligible(self) -> np.ndarray:
        """bool [N]: live slots an event may pick."""
        return self.alive & self.eligible_base


def pick_uniform(seed: int, purpose: str, rnd: int, event: int, eligible: np.ndarray, k: int) -> np.ndarray:
    """k slots drawn uniformly (without replacement) from the True entries of `eligible`.

    Keyed by (seed, purpose, round, event, slot): the same on every rank. Returns sorted ids.
    """
    ids = np.flatnonzero(eligible)
    k = min(k, len(ids))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    prio = uniform(seed, purpose, rnd, event, ids)  # [L]
    pick = np.argpartition(prio, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
    return np.sort(ids[pick]).astype(np.int64)


def pick_top_degree(in_degree: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """The k eligible slots of highest in-degree, ties by smallest id. Returns sorted ids."""
    ids = np.flatnonzero(eligible)
    order = np.lexsort((ids, -np.asarray(in_degree)[ids]))  # degree desc, then id asc
    return np.sort(ids[order[:k]]).astype(np.int64)


def share(fraction: float, count: int) -> int:
    """round(fraction * count), halves rounded up (50% of 999 is 500)."""
    return int(np.floor(fraction * count + 0.5))


# ----------------------------------------------------------------------------- crash

@dataclass(frozen=True)
class CrashEvent:
    round: int = opt(0, "round at whose start the nodes crash", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes that crash", lo=0.0, hi=1.0)


def apply_crash(state: FaultState, i: int, ev: CrashEvent) -> None:
    """round(fraction * L) of the L live, unprotected slots, uniformly, die for good."""
    if ev.round != state.rnd:
        return
    eligible = state.eligible()
    out = pick_uniform(state.seed, "fault-crash", state.rnd, i, eligible, share(ev.fraction, int(eligible.sum())))
    state.alive[out] = False
    state.gone.append(out)


# ----------------------------------------------------------------------------- hub attack

@dataclass(frozen=True)
class HubCrashEvent:
    round: int = opt(0, "round at whose start the hubs crash", lo=0)
    count: int | str = opt("all", 'how many of the highest in-degree nodes crash, or "all" (= overlay.hubs)')


def apply_hub_crash(state: FaultState, i: int, ev: HubCrashEvent) -> None:
    """The `count` live, unprotected slots of highest in-degree (ties by smallest id) die for good."""
    if ev.round != state.rnd:
        return
    count = state.default_hubs if ev.count == "all" else int(ev.count)
    out = pick_top_degree(state.in_degree, state.eligible(), count)
    state.alive[out] = False
    state.gone.append(out)


def check_hub_crash(key: str, ev: HubCrashEvent, cfg) -> None:
    if isinstance(ev.count, int) and ev.count >= cfg.nodes.count:
        raise ConfigError(f"{key}.count: {ev.count} must be < nodes.count = {cfg.nodes.count}")


# ----------------------------------------------------------------------------- churn

@dataclass(frozen=True)
class ChurnEvent:
    start: int = opt(0, "first round of the churn window", lo=0)
    end: int = opt(0, "round after the last one of the window", lo=0)
    fraction: float = opt(0.0, "fraction of the live nodes replaced every round of the window", lo=0.0, hi=1.0)


def apply_churn(state: FaultState, i: int, ev: ChurnEvent) -> None:
    """Every round of [start, end): round(fraction * L) live, unprotected slots get a newcomer.

    The slot is both in `gone` (the old node left) and in `joined` (the newcomer arrived,
    alive, incarnation + 1): overlays drop links to it and wire it anew, protocols give it
    a fresh model.
    """
    if not ev.start <= state.rnd < ev.end:
        return
    eligible = state.eligible()
    out = pick_uniform(state.seed, "fault-churn", state.rnd, i, eligible, share(ev.fraction, int(eligible.sum())))
    state.incarnation[out] += 1
    state.gone.append(out)
    state.joined.append(out)


def check_churn(key: str, ev: ChurnEvent, cfg) -> None:
    rounds = cfg.run.rounds
    if ev.end <= ev.start:
        raise ConfigError(f"{key}.end: {ev.end} must be > start = {ev.start}")
    if ev.end > rounds:
        raise ConfigError(f"{key}.end: {ev.end} is past the end of the run (run.rounds = {rounds})")
