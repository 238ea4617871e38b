"""One round's metrics, contributed by name and reduced in one Allreduce.

Any component (overlay, engine, evaluator, the loop itself) adds what it measured to a
`RoundMetrics`: sums and means over ranks, per-node columns for /nodes, global rows for
/overlay and values already the same on every rank. `reduce` packs every reduced value
by name into one float64 vector, sums it over the ranks and finishes the means, so a
mean does not depend on how the nodes are spread over the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _moments(values: np.ndarray) -> tuple[float, float, int]:
    """(sum, sum of squares, count) of the values that are not NaN."""
    ok = np.asarray(values, dtype=np.float64)
    ok = ok[~np.isnan(ok)]
    return float(ok.sum()), float((ok ** 2).sum()), len(ok)


@dataclass
class Record:
    """A reduced round: /rounds scalars, /nodes [n_local] columns, /overlay global rows."""

    rounds: dict
    nodes: dict
    rows: dict


@dataclass
class RoundMetrics:
    """What the components measured this round, before the reduction over ranks.

    Every rank must add the same names (values may differ); `reduce` checks them first.
    """

    _sums: dict = field(default_factory=dict)    # name -> float, summed over ranks
    _means: dict = field(default_factory=dict)   # name -> (sum, count), nan-ignoring
    _stds: dict = field(default_factory=dict)    # name -> (sum, sum of squares, count)
    _sems: dict = field(default_factory=dict)    # name -> (sum, sum of squares, count, population)
    _same: dict = field(default_factory=dict)    # name -> value identical on every rank
    nodes: dict = field(default_factory=dict)    # name -> [n_local] array
    rows: dict = field(default_factory=dict)     # name -> global row

    def add_sum(self, name: str, value: float) -> None:
        """A total over ranks (several contributions to one name add up)."""
        self._sums[name] = self._sums.get(name, 0.0) + float(value)

    def add_mean(self, name: str, values: np.ndarray) -> None:
        """The mean over every rank's values, NaN ignored (NaN when none)."""
        values = np.asarray(values, dtype=np.float64)
        s, n = self._means.get(name, (0.0, 0.0))
        self._means[name] = (s + float(np.nansum(values)), n + float(np.count_nonzero(~np.isnan(values))))

    def add_std(self, name: str, values: np.ndarray) -> None:
        """The standard deviation over every rank's values, NaN ignored."""
        self._stds[name] = tuple(np.add(self._stds.get(name, (0.0, 0.0, 0.0)), _moments(values)))

    def add_sem(self, name: str, values: np.ndarray, population: int) -> None:
        """The standard error of the mean of values (NaN ignored) as an estimate of the mean over a
        `population` they were drawn from without replacement (summed over ranks): the sample's
        standard deviation / sqrt(n), times the finite-population correction sqrt(1 - n / N), so 0
        when all of it was measured; NaN from fewer than two values of a larger population."""
        self._sems[name] = tuple(np.add(self._sems.get(name, (0.0, 0.0, 0.0, 0.0)), _moments(values) + (population,)))

    def set(self, name: str, value) -> None:
        """A scalar every rank already knows (alive count, hubs): written as is."""
        self._same[name] = value

    def add_node(self, name: str, column: np.ndarray) -> None:
        """A per-node column [n_local]; contributions to one name add up (overlay + model traffic)."""
        column = np.asarray(column)
        self.nodes[name] = self.nodes[name] + column if name in self.nodes else column.copy()

    def add_row(self, name: str, row: np.ndarray) -> None:
        """A global row, the same on every rank (e.g. the hub ids)."""
        self.rows[name] = np.asarray(row)

    def reduce(self, comm) -> Record:
        """Sum over ranks and finish the means, in one Allreduce after `comm.end_round` has checked that
        every rank ran the same steps and adds the same names. Collective over `comm` (a heal_mpi.comm.Comm)."""
        sums, means, stds, sems = sorted(self._sums), sorted(self._means), sorted(self._stds), sorted(self._sems)
        comm.end_round(sums + ["--"] + means + ["--"] + stds + ["--"] + sems)
        vec = np.array([self._sums[k] for k in sums]
                       + [x for k in means for x in self._means[k]]
                       + [x for k in stds for x in self._stds[k]]
                       + [x for k in sems for x in self._sems[k]], dtype=np.float64)
        total = comm.allreduce_sum(vec, "metrics", checked=True, counted=False) if len(vec) else vec
        it = iter(total)
        rounds = dict(self._same)
        rounds |= {k: next(it) for k in sums}
        for k in means:
            s, n = next(it), next(it)
            rounds[k] = s / n if n else np.nan
        for k in stds:
            s, q, n = next(it), next(it), next(it)
            rounds[k] = np.sqrt(max(q / n - (s / n) ** 2, 0.0)) if n else np.nan
        for k in sems:
            s, q, n, pop = next(it), next(it), next(it), next(it)
            var = max(q - s * s / n, 0.0) / (n - 1) if n > 1 else np.nan  # the sample's, n - 1
            rounds[k] = 0.0 if 0 < pop <= n else np.sqrt(var / n * (1 - n / pop)) if n > 1 else np.nan
        return Record(rounds=rounds, nodes=self.nodes, rows=self.rows)


class Traffic:
    """Simulated messages and bytes of one round, per local node (overlay or model traffic).

    Attributes:
        msgs_sent, msgs_recv, bytes_sent, bytes_recv: int64 [n_local].
    """

    def __init__(self, n_local: int):
        self.msgs_sent, self.msgs_recv = np.zeros(n_local, np.int64), np.zeros(n_local, np.int64)
        self.bytes_sent, self.bytes_recv = np.zeros(n_local, np.int64), np.zeros(n_local, np.int64)

    def send(self, local_idx: np.ndarray, nbytes, counts=1) -> None:
        """Local rows `local_idx` sent `counts` messages each of `nbytes` (scalars or per entry)."""
        self._add(self.msgs_sent, self.bytes_sent, local_idx, nbytes, counts)

    def recv(self, local_idx: np.ndarray, nbytes, counts=1) -> None:
        """Local rows `local_idx` received `counts` messages each of `nbytes`."""
        self._add(self.msgs_recv, self.bytes_recv, local_idx, nbytes, counts)

    @staticmethod
    def _add(msgs, total, idx, nbytes, counts):
        idx = np.asarray(idx, dtype=np.int64)
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), idx.shape)
        nbytes = np.broadcast_to(np.asarray(nbytes, dtype=np.int64), idx.shape)
        msgs += np.bincount(idx, weights=counts, minlength=len(msgs)).astype(np.int64)
        total += np.bincount(idx, weights=counts * nbytes, minlength=len(msgs)).astype(np.int64)

    def contribute(self, metrics: RoundMetrics, kind: str) -> None:
        """Add to /rounds/<kind>_messages|bytes, the totals messages|bytes, and the /nodes columns."""
        for name, value in ((f"{kind}_messages", self.msgs_sent.sum()), (f"{kind}_bytes", self.bytes_sent.sum())):
            metrics.add_sum(name, value)
            metrics.add_sum(name.split("_", 1)[1], value)
        metrics.add_node("msgs_sent", self.msgs_sent.astype(np.int32))
        metrics.add_node("msgs_recv", self.msgs_recv.astype(np.int32))
        metrics.add_node("bytes_sent", self.bytes_sent)
        metrics.add_node("bytes_recv", self.bytes_recv)
