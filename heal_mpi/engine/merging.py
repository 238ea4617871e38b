"""How nodes take their means of a result: an Assign step, and a Mix's receivers that merge as its
rows arrive (Mix.merge), with the same arithmetic.

A merging Mix (Gossip's, EL's push) holds one piece of receivers' sums at a time, not every
receiver's: the receivers of piece k (routes.Pieces) take their means as soon as the rows of every
rank have been added into their sums. A receiver that also sends to a receiver of a later piece
must keep its round-start row until that piece has read it, so its new row waits aside (`Merging`).
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.engine.results import MixResult
from heal_mpi.engine.summing import Held, SumBuffers, pass_rows, scratch
from heal_mpi.steps import MEAN, Rule


def assign_means(res: MixResult, nodes: np.ndarray, own_weight: np.ndarray | None, rows: torch.Tensor, write,
                 rule: Rule = MEAN) -> None:
    """write(nodes chunk, their new rows float32) for these local rows: their mean of `res` (with
    their own row in `rows` at `own_weight` where given), a bounded chunk of rows at a time, in
    float64 until the quotient (an own weight of 1, Gossip's and EL's, is added unmultiplied: x * 1
    is x). The rows written are valid until the next write."""
    at = res.pos[nodes]
    if (at < 0).any():
        raise ValueError("Assign: a node takes a mean of a result it received nothing in")
    if rule.robust and own_weight is not None:
        raise ValueError(f"Assign: a {rule.name} of the copies takes no own weight")
    shared = res.shared_means(at) if own_weight is None and not rule.robust else None
    if shared is not None:  # a few distinct means (HEAL's, FedAvg's clients): each formed once, written to its nodes
        for u in np.unique(shared[1]):
            write(nodes[shared[1] == u], shared[0][u].expand(int((shared[1] == u).sum()), -1))
        return
    order = np.argsort(res.lone(at), kind="stable")  # the held sums, then the lone rows: chunks of one kind
    nodes, at = nodes[order], at[order]
    own_weight = None if own_weight is None else own_weight[order]
    chunk = pass_rows(rows.shape[1])
    dev, shape = rows.device, (min(chunk, len(nodes)), rows.shape[1])
    wide, wide_own, narrow = (scratch(name, shape, t, dev) for name, t in (("sums", torch.double),
                                                                          ("own", torch.double), ("means", torch.float)))
    for a in range(0, len(nodes), chunk):  # into reused buffers: fresh ones a chunk cost page faults
        idx, m = nodes[a:a + chunk], len(nodes[a:a + chunk])
        if rule.robust:
            new = res.combine(at[a:a + chunk], rule)
        else:
            sums = res.sums_of(at[a:a + chunk], out=wide[:m], read_only=True)
            w = torch.as_tensor(res.weights[idx], dtype=sums.dtype, device=dev)[:, None]
            if own_weight is not None:
                own = torch.as_tensor(own_weight[a:a + chunk], dtype=sums.dtype, device=dev)[:, None]
                mine = torch.index_select(rows, 0, torch.as_tensor(idx, device=dev), out=narrow[:m])
                sums = torch.add(sums, mine if (own_weight[a:a + chunk] == 1).all() else
                                 wide_own[:m].copy_(mine).mul_(own), out=wide[:m])
                w = w + own
            new = torch.div(sums, w, out=narrow[:m])  # the float64 quotient, rounded to float32 once
        write(idx, new)


class Merging:
    """The receivers of a Mix with `merge` taking their means piece by piece (module docstring).

    Args:
        own_weight: float64 [n_local], Mix.merge (NaN: the node does not merge).
        by_piece: the Held sums of each piece in turn (SumBuffers.by_piece).
        result: the Mix's result without sums (counts, weights; `nodes`, the rows that rows reach).
        piece: int64 [n_local], each local row's piece.
        reads: (local rows, piece) of the Mix's edges that read the rows table at their piece.
        buffers, key: where the rows waiting aside live from round to round.
        rows: the rows table, the merging nodes' own rows.
    """

    def __init__(self, own_weight: np.ndarray, by_piece, result: MixResult, piece: np.ndarray, reads: tuple,
                 buffers: SumBuffers, key: tuple, rows: torch.Tensor):
        n_local = len(piece)
        self.own_weight, self.by_piece, self.result, self.rows = own_weight, by_piece, result, rows
        self.merging = np.zeros(n_local, dtype=bool)
        self.merging[result.nodes] = True
        self.merging &= ~np.isnan(own_weight)
        self.last_read = np.full(n_local, -1, dtype=np.int64)
        np.maximum.at(self.last_read, *reads)
        self.late = self.merging & (self.last_read > piece)  # merged at `piece`, written after `last_read`
        waiting = [int((self.late & (piece <= k) & (self.last_read >= k)).sum())  # set aside, not yet written
                   for k in range(int(piece.max(initial=0)) + 1)]
        self.aside = buffers.memory(key, max(waiting, default=0), rows.shape[1], rows.dtype, rows.device)
        self.free, self.slot = list(range(len(self.aside))), np.full(n_local, -1, dtype=np.int64)
        self.chunk = pass_rows(rows.shape[1], rows.element_size())  # rows written from aside at once
        self.passing = torch.empty((min(self.chunk, len(self.aside)), rows.shape[1]), dtype=rows.dtype,
                                   device=rows.device)

    def sums(self) -> Held:
        """The next piece's sums, zero."""
        return next(self.by_piece)

    def piece(self, k: int, held: Held, write) -> None:
        """Piece k's sums are complete in `held`: its merging receivers take their means (written, or
        aside until a later piece has read their rows), and the rows read last in piece k are written."""
        nodes = held.nodes[self.merging[held.nodes]]
        r = self.result
        res = MixResult(len(self.merging), held.nodes, r.counts, r.messages, r.weights, held=held)
        now, late = nodes[~self.late[nodes]], nodes[self.late[nodes]]
        assign_means(res, now, self.own_weight[now], self.rows, write)
        self.slot[late] = [self.free.pop() for _ in range(len(late))]
        assign_means(res, late, self.own_weight[late], self.rows, self._aside)
        due = np.flatnonzero(self.late & (self.last_read == k))
        for a in range(0, len(due), self.chunk):  # through one reused buffer: 4.5x faster than one gather of all
            idx = due[a:a + self.chunk]
            write(idx, torch.index_select(self.aside, 0, torch.as_tensor(self.slot[idx], device=self.aside.device),
                                          out=self.passing[:len(idx)]))
        self.free.extend(self.slot[due].tolist())

    def _aside(self, idx: np.ndarray, new: torch.Tensor) -> None:
        self.aside.index_copy_(0, torch.as_tensor(self.slot[idx], device=self.aside.device), new)
