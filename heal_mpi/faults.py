"""The fault schedule: who crashes, who is attacked, who churns, at the start of each round.

Owns the `[faults]` section's semantics. Every decision is a keyed draw from the global
seed (`rng.uniform`), so every rank computes the same `alive[N]` and `incarnation[N]`
vectors without talking, whatever the rank count.

Order inside one round: crash events, then hub attacks, then churn windows (each list in
config order). Rules:

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
- **protected** slots (FedAvg's and Gaia's servers) are never picked by any of them.
- **message loss** is not decided here: it travels in the RoundContext and every
  simulated message draws its own keyed loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.context import RoundContext
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
        self.faults = cfg.faults
        self.default_hubs = cfg.overlay.hubs
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
        alive = np.array(alive, dtype=bool)
        incarnation = np.array(incarnation, dtype=np.int64)
        gone, joined = [], []
        for i, ev in enumerate(self.faults.crash):
            if ev.round == rnd:
                out = pick_uniform(self.seed, "fault-crash", rnd, i, alive & ~self.protected,
                                   share(ev.fraction, int((alive & ~self.protected).sum())))
                alive[out] = False
                gone.append(out)
        for ev in self.faults.hub_crash:
            if ev.round == rnd:
                count = self.default_hubs if ev.count == "all" else int(ev.count)
                out = pick_top_degree(in_degree, alive & ~self.protected, count)
                alive[out] = False
                gone.append(out)
        for i, ev in enumerate(self.faults.churn):
            if ev.start <= rnd < ev.end:
                out = pick_uniform(self.seed, "fault-churn", rnd, i, alive & ~self.protected,
                                   share(ev.fraction, int((alive & ~self.protected).sum())))
                incarnation[out] += 1  # the newcomer takes the slot; alive stays True
                gone.append(out)
                joined.append(out)
        return FaultStep(alive=alive, incarnation=incarnation, joined=_union(joined), crashed=_union(gone))

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
