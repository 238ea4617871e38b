"""Availability (`[time]`): when each node is online, in simulated seconds.

Diurnal: a node is online for `online_fraction` of every simulated day of `day` seconds, from
a phase drawn per node from the seed. Or intervals from a CSV file (`node,start,end`, seconds,
online in [start, end), several rows per node allowed; a node without a row is always online).
Servers and Byzantine nodes (the slots that never fail) stay online.

A node is online in a round when it is online at the round's start. An offline node is not
live that round: it neither trains nor sends nor answers, and the overlays drop it like a
crashed node (Elevator's failure detector included). When it comes back it keeps its model and
rejoins the overlay like a newcomer (fresh links): `ctx.returned`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heal_mpi.clock import read_numbers
from heal_mpi.errors import ConfigError
from heal_mpi.rng import uniform

CSV_COLUMNS = ("node", "start", "end")


class Availability:
    """online(t) for every node (bool [N], the same on every rank)."""

    def __init__(self, n: int, seed: int, fraction: float, day: float, intervals: np.ndarray | None,
                 always: np.ndarray):
        self.fraction, self.day, self.intervals = fraction, day, intervals
        self.phase = uniform(seed, "time-phase", np.arange(n))
        self.always = np.zeros(n, dtype=bool)
        self.always[np.asarray(always, dtype=np.int64)] = True

    @classmethod
    def from_config(cls, tc, n: int, seed: int, always) -> "Availability | None":
        if tc.availability_csv:
            return cls(n, seed, 1.0, tc.day, read_intervals(Path(tc.availability_csv), n), always)
        if tc.online_fraction < 1:
            return cls(n, seed, tc.online_fraction, tc.day, None, always)
        return None

    def online(self, t: float) -> np.ndarray:
        if self.intervals is None:
            on = np.mod(t / self.day + self.phase, 1.0) < self.fraction
        else:
            listed = np.zeros(len(self.phase), dtype=bool)
            listed[self.intervals[:, 0].astype(np.int64)] = True
            inside = self.intervals[(self.intervals[:, 1] <= t) & (t < self.intervals[:, 2])]
            on = ~listed
            on[inside[:, 0].astype(np.int64)] = True
        return on | self.always


def read_intervals(path: Path, n: int) -> np.ndarray:
    """float64 [rows, 3]: (node, start, end) of a CSV file with a header row."""
    table = read_numbers(path, "time.availability_csv", CSV_COLUMNS)
    nodes = table[:, 0]
    if ((nodes < 0) | (nodes >= n) | (nodes != np.floor(nodes))).any():
        raise ConfigError(f"time.availability_csv: {path}: node ids must be in 0..{n - 1}")
    if not np.isfinite(table[:, 1]).all() or (table[:, 2] <= table[:, 1]).any():
        raise ConfigError(f"time.availability_csv: {path}: every interval needs start < end")
    return table
