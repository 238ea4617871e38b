"""The read-only facts of one round, identical on every rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RoundContext:
    """What every module may read about the current round.

    Attributes:
        rnd: the round index, 0-based.
        seed: the global seed (key of every random stream).
        alive: bool [N], slots alive after this round's faults.
        incarnation: int64 [N], churn generation of each slot (0 = original node).
        joined: int64 [k], slots whose newcomer arrived this round (fresh model, fresh links).
        crashed: int64 [k], slots that crashed or left this round.
        do_eval: whether the models are evaluated this round.
        acting: bool [N], the nodes whose own timer fires this round (asynchronous rounds,
            `time.slice`); None: every live node acts (synchronous rounds).
        returned: int64 [k], slots back online this round (`[time]` availability): in `joined`
            (the overlays wire them anew) but they keep their models.
    """

    rnd: int
    seed: int
    alive: np.ndarray
    incarnation: np.ndarray
    joined: np.ndarray
    crashed: np.ndarray
    do_eval: bool = True
    acting: np.ndarray | None = None
    returned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def acts(self, local: np.ndarray) -> np.ndarray:
        """bool [len(local)]: which of these nodes act this round (live, and their timer fired)."""
        alive = self.alive[local]
        return alive if self.acting is None else alive & self.acting[local]

    @property
    def n_alive(self) -> int:
        return int(self.alive.sum())
