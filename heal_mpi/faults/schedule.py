"""The fault schedule: who crashes, who is attacked, who churns, at the start of each round.

Owns the `[faults]` section's semantics. Every decision is a keyed draw from the global
seed (`rng.uniform`), so every rank computes the same `alive[N]` and `incarnation[N]`
vectors without talking, whatever the rank count.

The event kinds are registered in `heal_mpi.registry.FAULTS` (the built-in event dataclasses
and specs in events.py, their `apply` here); within a round they apply in registry order,
each list in config order. The built-in ones:

- **crash**: `round(fraction * L)` of the L live, unprotected slots, chosen uniformly, die
  for good (`alive = False`).
- **hub attack**: the `count` live, unprotected slots of highest in-degree (the overlay's
  in-degree of the previous round; ties by smallest id) die for good. `count = "all"`
  means `overlay.hubs`.
- **churn**: every round of `[start, end)`, `round(fraction * L)` live, unprotected slots
  are replaced: the node leaves and a newcomer takes its slot (`incarnation += 1`, still
  alive). The slot is reported both in `crashed` (the old node left) and in `joined` (the
  newcomer arrived): overlays drop links to it and give it fresh links; protocols give it
  a fresh model.
- **protected** slots (FedAvg's and Gaia's servers, and Byzantine nodes, which never crash)
  are never picked by any of them.
- **message loss** is not decided here: the Channel (channel.py) draws it per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heal_mpi.context import RoundContext
from heal_mpi.faults.events import ChurnEvent, CrashEvent, HubCrashEvent
from heal_mpi.registry import FAULTS, load
from heal_mpi.rng import uniform


@dataclass(frozen=True)
class FaultStep:
    """The outcome of one round's faults (all arrays global, identical on every rank).

    Attributes:
        alive: bool [N], after this round's faults.
        incarnation: int64 [N], after this round's churn.
        joined: int64 [k], sorted slots whose newcomer arrived this round.
        crashed: int64 [k], sorted slots whose node crashed or left this round.
    """

    alive: np.ndarray
    incarnation: np.ndarray
    joined: np.ndarray
    crashed: np.ndarray


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


# ----------------------------------------------------------------------------- the built-in kinds

def pick_share(state: FaultState, purpose: str, i: int, fraction: float) -> np.ndarray:
    """round(fraction * L) of the L live, unprotected slots, drawn uniformly (keyed by purpose and event i)."""
    eligible = state.eligible()
    return pick_uniform(state.seed, purpose, state.rnd, i, eligible, share(fraction, int(eligible.sum())))


def apply_crash(state: FaultState, i: int, ev: CrashEvent) -> None:
    """round(fraction * L) of the L live, unprotected slots, uniformly, die for good."""
    if ev.round != state.rnd:
        return
    out = pick_share(state, "fault-crash", i, ev.fraction)
    state.alive[out] = False
    state.gone.append(out)


def apply_hub_crash(state: FaultState, i: int, ev: HubCrashEvent) -> None:
    """The `count` live, unprotected slots of highest in-degree (ties by smallest id) die for good."""
    if ev.round != state.rnd:
        return
    count = state.default_hubs if ev.count == "all" else int(ev.count)
    out = pick_top_degree(state.in_degree, state.eligible(), count)
    state.alive[out] = False
    state.gone.append(out)


def apply_churn(state: FaultState, i: int, ev: ChurnEvent) -> None:
    """Every round of [start, end): round(fraction * L) live, unprotected slots get a newcomer.

    The slot is both in `gone` (the old node left) and in `joined` (the newcomer arrived,
    alive, incarnation + 1): overlays drop links to it and wire it anew, protocols give it
    a fresh model.
    """
    if not ev.start <= state.rnd < ev.end:
        return
    out = pick_share(state, "fault-churn", i, ev.fraction)
    state.incarnation[out] += 1
    state.gone.append(out)
    state.joined.append(out)


# ----------------------------------------------------------------------------- the schedule

class FaultSchedule:
    """The `[faults]` events of a run, applied round by round.

    Args:
        cfg: the run's Config (reads `cfg.faults`, `cfg.run.seed`, `cfg.overlay.hubs`).
        n_nodes: N, the number of slots.
        protected: slots that never fail (FedAvg's server [0], Gaia's servers 0..k-1).
    """

    def __init__(self, cfg, n_nodes: int, protected=()):
        self.n = n_nodes
        self.seed = cfg.run.seed
        self.default_hubs = cfg.overlay.hubs
        self.kinds = [(load(spec.apply), cfg.faults.events.get(spec.name, ())) for spec in FAULTS.specs()]
        self.protected = np.zeros(n_nodes, dtype=bool)
        self.protected[np.asarray(protected, dtype=np.int64)] = True

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(alive [N] all True, incarnation [N] all 0): the state before round 0."""
        return np.ones(self.n, dtype=bool), np.zeros(self.n, dtype=np.int64)

    def apply(self, rnd: int, alive: np.ndarray, incarnation: np.ndarray, in_degree: np.ndarray) -> FaultStep:
        """This round's crashes, hub attacks and churn. Pure: the inputs are not modified.

        Args:
            rnd: the round about to start.
            alive: bool [N], before this round.
            incarnation: int64 [N], before this round.
            in_degree: int64 [N], the overlay's in-degree after the previous round (hub attack).
        """
        state = FaultState(rnd=rnd, seed=self.seed, alive=np.array(alive, dtype=bool),
                           incarnation=np.array(incarnation, dtype=np.int64), eligible_base=~self.protected,
                           in_degree=np.asarray(in_degree), default_hubs=self.default_hubs)
        for apply, events in self.kinds:
            for i, ev in enumerate(events):
                apply(state, i, ev)
        return FaultStep(alive=state.alive, incarnation=state.incarnation, joined=_union(state.joined),
                         crashed=_union(state.gone))

    def start_round(self, rnd: int, alive: np.ndarray, incarnation: np.ndarray, in_degree: np.ndarray,
                    do_eval: bool = True) -> RoundContext:
        """Apply this round's faults and build the round's RoundContext (one call in the loop)."""
        step = self.apply(rnd, alive, incarnation, in_degree)
        return RoundContext(rnd=rnd, seed=self.seed, alive=step.alive, incarnation=step.incarnation,
                            joined=step.joined, crashed=step.crashed, do_eval=do_eval)


def _union(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(parts)).astype(np.int64)
