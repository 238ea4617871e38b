"""The fault schedule: who crashes, who is attacked, who churns, at the start of each round.

Owns the `[faults]` section's semantics. Every decision is a keyed draw from the global
seed (`rng.uniform`), so every rank computes the same `alive[N]` and `incarnation[N]`
vectors without talking, whatever the rank count.

The event kinds are registered in `heal_mpi.registry.FAULT_EVENTS` (event dataclass and
`apply`, in heal_mpi/fault_events.py); within a round they apply in registry order, each
list in config order. The built-in ones:

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
- **message loss** is not decided here: the Channel (channel.py) draws it per message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.context import RoundContext
from heal_mpi.fault_events import FaultState, pick_top_degree, pick_uniform, share  # noqa: F401
from heal_mpi.registry import FAULT_EVENTS


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
        state = FaultState(rnd=rnd, seed=self.seed, alive=np.array(alive, dtype=bool),
                           incarnation=np.array(incarnation, dtype=np.int64), eligible_base=~self.protected,
                           in_degree=np.asarray(in_degree), default_hubs=self.default_hubs)
        for name, spec in FAULT_EVENTS.items():
            for i, ev in enumerate(getattr(self.faults, name)):
                spec.apply(state, i, ev)
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
