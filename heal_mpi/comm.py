"""Communication between ranks: batched exchange, request/reply, and the `mix` primitive.

Owns every MPI call of the hot path. All traffic is contiguous NumPy buffers moved with
non-blocking Isend/Irecv on a private duplicate of the run's communicator: post the
receives, post the sends, wait. Nothing is pickled. Incoming data is consumed in rank
order, so sums are formed in a canonical order whatever the message timing.

Protocols never import this module's MPI details: they describe *edges* (who sends which
row to whom, with what weight) and call `Comm.mix`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi.runtime import World

_TAG_DATA = 7


@dataclass
class MixResult:
    """What arrived at this rank's nodes in one mix.

    Attributes:
        sums: float64 [n_local, P], the weighted sum of the rows sent to each local node.
        weights: float64 [n_local], the sum of the edge weights that reached each local node.
        counts: int64 [n_local], how many edges (messages) reached each local node.
    """

    sums: torch.Tensor
    weights: np.ndarray
    counts: np.ndarray

    def mean_rows(self, received: np.ndarray) -> torch.Tensor:
        """float32 [k, P]: weighted means for the local nodes in `received` (each count > 0)."""
        dev = self.sums.device
        w = torch.as_tensor(self.weights[received], dtype=torch.float64, device=dev)
        return (self.sums[torch.as_tensor(received, device=dev)] / w[:, None]).to(torch.float32)  # [k, P]


class Comm:
    """Point-to-point traffic of one subsystem. Every method is collective over the world.

    Attributes:
        mpi_bytes: payload bytes this rank sent to *other* ranks since the last `take_bytes`.
    """

    def __init__(self, world: World):
        self.world = world
        self.comm = world.comm.Dup()
        self.mpi_bytes = 0

    def take_bytes(self) -> int:
        """Return and reset the MPI byte counter (per-round accounting)."""
        sent, self.mpi_bytes = self.mpi_bytes, 0
        return sent

    def exchange(self, outgoing: list[np.ndarray]) -> list[np.ndarray]:
        """Send outgoing[r] to rank r; return what every rank sent here, in rank order.

        Collective over `world.comm`: every rank must call. Arrays share one dtype and one
        trailing shape; any may be empty. Sizes travel first in one Alltoall of int64 counts,
        then the payloads as non-blocking point-to-point messages.
        """
        size, rank = self.world.size, self.world.rank
        outgoing = [np.ascontiguousarray(a) for a in outgoing]
        trail, dtype = outgoing[rank].shape[1:], outgoing[rank].dtype
        send_counts = np.array([a.size for a in outgoing], dtype=np.int64)
        recv_counts = np.empty(size, dtype=np.int64)
        self.comm.Alltoall(send_counts, recv_counts)

        width = int(np.prod(trail)) if trail else 1
        incoming = [np.empty((int(n) // width, *trail), dtype=dtype) for n in recv_counts]
        requests = []
        for src in range(size):
            if src != rank and recv_counts[src] > 0:
                requests.append(self.comm.Irecv(incoming[src], source=src, tag=_TAG_DATA))
        for dst in range(size):
            if dst != rank and send_counts[dst] > 0:
                requests.append(self.comm.Isend(outgoing[dst], dest=dst, tag=_TAG_DATA))
                self.mpi_bytes += outgoing[dst].nbytes
        incoming[rank] = outgoing[rank]
        MPI.Request.Waitall(requests)
        return incoming

    def split_by_owner(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stable order grouping `targets` by owner rank, and the group boundaries [size + 1]."""
        owners = self.world.owner(targets)
        order = np.argsort(owners, kind="stable")
        bounds = np.searchsorted(owners[order], np.arange(self.world.size + 1))
        return order, bounds

    def request(self, targets: np.ndarray, payload: np.ndarray,
                serve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """Request/reply: ask each target node's owner for an answer row.

        Collective over `world.comm`: every rank must call (with zero requests if need be).

        Args:
            targets: int64 [k], global node ids asked.
            payload: [k, ...] one request row per target (e.g. the requester's id).
            serve: called once on the owner with (local target index [m], payload [m, ...]) of
                every request this rank received, in source-rank order; returns the replies [m, w].
        Returns:
            the replies [k, w], in the order of `targets`.
        """
        order, bounds = self.split_by_owner(targets)
        size = self.world.size
        ids_in = self.exchange([targets[order[bounds[r]:bounds[r + 1]]] for r in range(size)])
        pay_in = self.exchange([payload[order[bounds[r]:bounds[r + 1]]] for r in range(size)])
        sizes_in = np.array([len(a) for a in ids_in])
        replies = np.asarray(serve(np.concatenate(ids_in) - self.world.slot_lo, np.concatenate(pay_in)))
        cuts = np.concatenate([[0], np.cumsum(sizes_in)])
        back = self.exchange([replies[cuts[r]:cuts[r + 1]] for r in range(size)])
        out = np.empty((len(targets), *replies.shape[1:]), dtype=replies.dtype)
        if len(targets):
            out[order] = np.concatenate(back)
        return out

    def mix(self, rows: torch.Tensor, src_local: np.ndarray, dst: np.ndarray,
            weight: np.ndarray | None = None) -> MixResult:
        """x_dst <- sum over edges of w * x_src, with counts. The one mixing primitive.

        Collective over `world.comm`: every rank must call (with zero edges if need be).
        The rank first reduces its own edges by destination (one partial sum per destination
        node, not one row per message), then ships each partial to the destination's owner,
        which adds them up in source-rank order. Sums run in float64: float32 rows add up
        exactly, so the result does not depend on how nodes are spread over ranks.

        Args:
            rows: float32 [n_local, P], this rank's node models.
            src_local: int64 [E], local row index of each edge's sender.
            dst: int64 [E], global id of each edge's receiver.
            weight: float64 [E], edge weights (default 1).
        """
        n_local, p = rows.shape
        dev = rows.device
        size = self.world.size
        w = np.ones(len(dst)) if weight is None else np.asarray(weight, dtype=np.float64)

        # rank-local reduction: one partial (dst, weight sum, count, row sum) per destination
        uniq, inverse = np.unique(dst, return_inverse=True)
        part = torch.zeros((len(uniq), p), dtype=torch.float64, device=dev)  # [U, P]
        if len(dst):
            src = torch.as_tensor(src_local, device=dev)
            wt = torch.as_tensor(w, device=dev)
            part.index_add_(0, torch.as_tensor(inverse, device=dev), rows[src].double() * wt[:, None])
        head = np.stack([uniq.astype(np.float64), np.bincount(inverse, w, len(uniq)),
                         np.bincount(inverse, minlength=len(uniq)).astype(np.float64)], axis=1)  # [U, 3]
        packed = np.concatenate([head, part.cpu().numpy()], axis=1)  # [U, 3 + P]

        owners = self.world.owner(uniq)
        cuts = np.searchsorted(owners, np.arange(size + 1))  # uniq is sorted, so owners are too
        incoming = self.exchange([packed[cuts[r]:cuts[r + 1]] for r in range(size)])

        sums = torch.zeros((n_local, p), dtype=torch.float64, device=dev)  # [n_local, P]
        weights = np.zeros(n_local)
        counts = np.zeros(n_local, dtype=np.int64)
        for block in incoming:  # canonical order: source rank 0, 1, ...
            if len(block) == 0:
                continue
            local = block[:, 0].astype(np.int64) - self.world.slot_lo
            sums.index_add_(0, torch.as_tensor(local, device=dev), torch.as_tensor(block[:, 3:], device=dev))
            np.add.at(weights, local, block[:, 1])
            np.add.at(counts, local, block[:, 2].astype(np.int64))
        return MixResult(sums=sums, weights=weights, counts=counts)
