"""The isolation fault (spec: kinds.ISOLATE): one given node is cut off for good at a given round."""

from __future__ import annotations

import numpy as np


def apply_isolate(state, i, ev) -> None:
    """state: heal_mpi.faults.schedule.FaultState (global arrays, the same on every rank)."""
    if ev.round == state.rnd and state.eligible()[ev.node]:  # protected servers and Byzantines stay
        state.alive[ev.node] = False
        state.gone.append(np.array([ev.node], dtype=np.int64))
