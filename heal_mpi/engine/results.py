"""What the engine's steps hand back.

`MixResult` is what reached this rank's nodes in a Mix or a Reply (steps.Received), `HeardEdges`
what reached them in an Exchange (steps.Heard), `HeldRows` what a Snapshot kept (steps.Held).
How the rows an edge carries are gathered and summed: engine/summing.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from heal_mpi.engine import summing
from heal_mpi.engine.summing import Held, weighted_sum
from heal_mpi.steps import Rule



@dataclass(frozen=True)
class Links:
    """The delivered edges of a Mix, as a Reply needs them to answer along them.

    Attributes:
        edges: (src local rows [E], dst global ids [E]) of the delivered edges this rank sent.
        sent_to: per rank, the distinct remote destinations this rank's edges went to, sorted
            (None for this rank).
        heard_from: per rank, the local rows that received from that rank (None for this rank).
    """

    edges: tuple[np.ndarray, np.ndarray]
    sent_to: list
    heard_from: list


class MixResult:
    """What reached this rank's nodes in one Mix or Reply (see steps.Received).

    Attributes:
        counts, messages: int64 [n_local]; weights: float64 [n_local]; values: float64 [n_local, k].
        nodes: int64 [m], the local rows that received (counts > 0), sorted.
        pos: int64 [n_local], each local row's index in `nodes`, -1 if it received nothing.
        links: the Links of the delivered edges (what a Reply answers along).

    The weighted sums ([m, P] on the rows' device) are either held (`held`, a Mix: a float64
    sum per receiver, or the one float32 row that reached it: summing.Held) or kept as terms
    (sums[k] = sum of w[e] * table[index[e]] over the edges e with group[e] == k, w None for
    1), or neither (a Mix with `merge`: its receivers took their means as it ran). A Reply's
    table holds the few distinct answers, so a reply to every client costs the answers, not one row per client,
    until `sums_of` reads it; a Mix with `order` keeps every row that arrived, with each
    edge's place in its receiver's arrival order (`arrivals`, for `arrival(j)`).
    """

    def __init__(self, n_local: int, nodes: np.ndarray, counts, messages, weights, values=None, *,
                 held: Held | None = None, terms=None, arrivals=None, links: Links | None = None):
        self.nodes, self.held, self._terms, self._arrivals = nodes, held, terms, arrivals
        self.counts, self.messages, self.weights = counts, messages, weights
        self.values = np.zeros((n_local, 0)) if values is None else values
        self.pos = np.full(n_local, -1, dtype=np.int64)
        self.pos[nodes] = np.arange(len(nodes))
        self.links = links

    def _terms_of(self, at: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray | None]:
        """(table, index into it, group in 0..len(at)-1, weights or None) of the terms of nodes[at]."""
        table, index, group, w = self._terms
        where = np.full(len(self.nodes), -1, dtype=np.int64)
        where[at] = np.arange(len(at))
        keep = where[group] >= 0
        return table, index[keep], where[group[keep]], None if w is None else w[keep]

    def sums_of(self, at: np.ndarray, out: torch.Tensor | None = None, read_only: bool = False) -> torch.Tensor:
        """float64 [len(at), P]: the weighted sums of nodes[at] (a copy: into `out` when given and
        the sums are held, so that a caller going through chunks reuses one buffer; `read_only`:
        a view of the held sums where `at` is a run of them, which the caller must not write)."""
        if self._terms is None:
            return self._held_sums().sums_of(self.nodes[at], self.weights, out, read_only)
        table, index, group, w = self._terms_of(at)
        return weighted_sum(table, index, group, w, len(at))

    def lone(self, at: np.ndarray) -> np.ndarray:
        """bool [len(at)]: which of nodes[at] hold the one row that reached them, not a sum (summing.Held)."""
        return np.zeros(len(at), dtype=bool) if self.held is None else self.held.lone_of(self.nodes[at])

    def shared_means(self, at: np.ndarray, most: int = 64) -> tuple[torch.Tensor, np.ndarray] | None:
        """(means float32 [u, P], which int64 [len(at)]): nodes[at]'s means when they received the same
        few sequences of rows (HEAL's clients, their hubs' answers): each distinct sequence (rows and
        weights, in arrival order) is summed once, exactly as `sums_of` sums it, so node k's mean is
        means[which[k]] bit for bit. None when the result keeps no terms or has more than `most`."""
        if self._terms is None:
            return None
        _, index, group, w = self._terms_of(at)
        order = np.argsort(group, kind="stable")  # each node's terms, in the order they are summed
        cuts = np.searchsorted(group[order], np.arange(len(at) + 1))
        keys = [tuple(index[order[a:b]]) + (() if w is None else tuple(w[order[a:b]])) for a, b in zip(cuts, cuts[1:])]
        first: dict[tuple, int] = {}
        which = np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)
        if len(first) > most:
            return None
        return self._means_of(at[np.unique(which, return_index=True)[1]]), which

    def _held_sums(self) -> Held:
        if self.held is None:
            raise ValueError("this Mix's receivers took their means as it ran (Mix.merge): it holds no sums to Assign")
        return self.held

    def arrival(self, j: int) -> "MixResult":
        """The j-th edge to reach each node, alone (steps.Received.arrival)."""
        if self._arrivals is None:
            raise ValueError("arrival(j) needs the result of a Mix with `order`, which keeps the rows one by one")
        place, local, real, values = self._arrivals
        table, index, _, w = self._terms
        sel = np.flatnonzero(place == j)
        nodes, n = local[sel], len(self.pos)  # one edge per node: nodes ascend with sel
        weights, counts, messages = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        out_values = np.zeros((n, values.shape[1]))
        weights[nodes], counts[nodes], messages[nodes], out_values[nodes] = w[sel], 1, real[sel], values[sel]
        return MixResult(n, nodes, counts, messages, weights, out_values,
                         terms=(table, index[sel], np.arange(len(sel)), w[sel]))

    def combine(self, at: np.ndarray, rule: Rule) -> torch.Tensor:
        """[len(at), P]: nodes[at]'s rows that arrived one by one (a Reply), combined by a robust rule."""
        if self._terms is None:
            raise ValueError(f"a {rule.name} of the copies needs a Reply result, which keeps them one by one")
        from heal_mpi.engine.aggregation import aggregate
        table, index, group, _ = self._terms_of(at)
        rows = table[torch.as_tensor(index, device=table.device)]
        return aggregate(rule.name, rows, group, len(at), beta=rule.beta, clip_tau=rule.clip_tau)

    def means(self) -> torch.Tensor:
        """float32 [m, P]: the weighted mean of each receiving node (order of `nodes`)."""
        return self._means_of(np.arange(len(self.nodes)))

    def _means_of(self, at: np.ndarray) -> torch.Tensor:
        """float32 [len(at), P]: the weighted means of nodes[at], a bounded chunk of float64 sums at a
        time (HEAL's first round, before Elevator has elected, has thousands of hubs)."""
        table = self._held_sums().wide if self._terms is None else self._terms[0]
        out = torch.empty((len(at), table.shape[1]), dtype=torch.float32, device=table.device)
        chunk = summing.pass_rows(table.shape[1])
        held = torch.empty((min(chunk, len(at)), table.shape[1]), dtype=torch.float64, device=table.device)
        for a in range(0, len(at), chunk):
            idx = at[a:a + chunk]
            sums = self.sums_of(idx, out=held[:len(idx)])  # one reused buffer: a fresh one a chunk costs page faults
            w = torch.as_tensor(self.weights[self.nodes[idx]], dtype=torch.float64, device=sums.device)
            out[a:a + chunk] = sums.div_(w[:, None])
        return out


class HeardEdges:
    """What reached this rank's nodes in an Exchange (steps.Heard): every delivered edge, sorted
    by (receiver, sender)."""

    def __init__(self, n_local: int, receiver: np.ndarray, sender: np.ndarray, values: np.ndarray):
        order = np.lexsort((sender, receiver))
        self.receiver, self.sender, self.values = receiver[order], sender[order], values[order]
        self.counts = np.bincount(self.receiver, minlength=n_local).astype(np.int64)


class HeldRows:
    """Rows a Snapshot kept (steps.Held): `rows` [m, P] of the local rows `nodes` (sorted)."""

    def __init__(self, nodes: np.ndarray, rows: torch.Tensor):
        self.nodes, self.rows = nodes, rows

    def of(self, local: np.ndarray) -> torch.Tensor:
        """[len(local), P]: the held rows of these local rows (each must be held)."""
        at = np.searchsorted(self.nodes, local)
        if len(local) and ((at >= len(self.nodes)).any() or (self.nodes[np.minimum(at, len(self.nodes) - 1)] != local).any()):
            raise ValueError("Train(start=...): a training node is not in the Snapshot it starts from")
        return self.rows[torch.as_tensor(at, device=self.rows.device)]


def edge_values(values, n_edges: int) -> np.ndarray:
    """float64 [E, k]: a step's per-edge values ([E] or [E, k]; None is k = 0), also when E is 0."""
    if values is None:
        return np.zeros((n_edges, 0))
    values = np.asarray(values, np.float64)
    return values.reshape(n_edges, values.shape[1] if values.ndim == 2 else 1)


def tally(n: int, local: np.ndarray, weight, count, messages, values: np.ndarray) -> tuple:
    """(weights float64 [n], counts int64 [n], messages int64 [n], values float64 [n, k]): what
    messages add up to at their receivers, local[i] the receiver of message i, added in order."""
    out = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((n, values.shape[1]))
    for acc, x in zip(out, (weight, count, messages, values)):
        np.add.at(acc, local, x)
    return out


def group_sum(x: np.ndarray, inverse: np.ndarray, n: int) -> np.ndarray:
    """[n, k]: rows of x [E, k] summed per group."""
    out = np.zeros((n, x.shape[1]))
    np.add.at(out, inverse, x)
    return out
