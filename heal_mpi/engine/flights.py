"""Rows in flight: the Mix edges of asynchronous rounds (heal_mpi/timers.py) that arrive in a
later round, held on their senders' rank as they were sent."""

from __future__ import annotations

import numpy as np
import torch


class Flights:
    """Rows of Mix edges that arrive in a later round (asynchronous rounds, heal_mpi/timers.py),
    held on their senders' rank as they were sent, per purpose."""

    FIELDS = ("due", "src", "dst", "weight", "values", "key")

    def __init__(self):
        self.held: dict[str, dict] = {}

    def hold(self, purpose: str, due, src, dst, weight, values, key, rows: torch.Tensor) -> None:
        """Edges (src local rows, dst global ids) arriving in round `due` [E], with what they carry."""
        new = dict(zip(self.FIELDS, (due, src, dst, weight, values, key)), rows=rows)
        old = self.held.get(purpose)
        self.held[purpose] = new if old is None else {
            k: torch.cat([old[k], v]) if k == "rows" else np.concatenate([old[k], v]) for k, v in new.items()}

    def land(self, purpose: str, rnd: int) -> dict | None:
        """The edges of `purpose` arriving in round `rnd` (removed from the queue), or None."""
        held = self.held.get(purpose)
        if held is None:
            return None
        now = held["due"] == rnd
        if not now.any():
            return None
        rest = np.flatnonzero(~now)
        take = {k: v[torch.as_tensor(np.flatnonzero(now), device=v.device)] if k == "rows" else v[now]
                for k, v in held.items()}
        self.held[purpose] = {k: v[torch.as_tensor(rest, device=v.device)] if k == "rows" else v[rest]
                              for k, v in held.items()}
        return take

    def count(self) -> int:
        return sum(len(h["due"]) for h in self.held.values())

    def state_dict(self) -> dict:
        return {p: {k: v.cpu() if k == "rows" else v for k, v in h.items()} for p, h in self.held.items()}

    def load_state_dict(self, state: dict, device) -> None:
        self.held = {p: {k: v.to(device) if k == "rows" else v for k, v in h.items()} for p, h in state.items()}
