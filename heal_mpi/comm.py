"""Communication between ranks: batched exchange, request/reply, and a counted Allreduce.

Owns every MPI call of the hot path. All traffic is contiguous NumPy buffers moved with
non-blocking Isend/Irecv on a private duplicate of the run's communicator: post the
receives, post the sends, wait. Nothing is pickled. Incoming data is consumed in rank
order, so sums are formed in a canonical order whatever the message timing.

Every exchange names the step it serves; the ranks compare the names in the Alltoall that
opens it, so a rank that reaches a different collective step raises instead of hanging.
Protocols never see this module: they yield steps (steps.py) that the engine executes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from mpi4py import MPI

from heal_mpi.rng import purpose_id
from heal_mpi.runtime import World

_TAG_DATA = 7


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

    def exchange(self, outgoing: list[np.ndarray], step: str = "") -> list[np.ndarray]:
        """Send outgoing[r] to rank r; return what every rank sent here, in rank order.

        Collective over `world.comm`: every rank must call, in the same `step`. Arrays share
        one dtype and one trailing shape; any may be empty. Sizes and the step's id travel
        first in one Alltoall, then the payloads as non-blocking point-to-point messages.
        """
        size, rank = self.world.size, self.world.rank
        outgoing = [np.ascontiguousarray(a) for a in outgoing]
        trail, dtype = outgoing[rank].shape[1:], outgoing[rank].dtype
        tag = purpose_id(step) if step else 0
        head = np.array([[a.size, tag] for a in outgoing], dtype=np.int64)  # [size, 2]
        heard = np.empty_like(head)
        self.comm.Alltoall(head, heard)
        if (heard[:, 1] != tag).any():
            other = int(np.flatnonzero(heard[:, 1] != tag)[0])
            raise RuntimeError(f"rank {rank} is in collective step {step!r} but rank {other} is in another one: "
                               "every rank must run the same steps in the same order")
        send_counts, recv_counts = head[:, 0], heard[:, 0]

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

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over the ranks (int64 or float64). Collective over `world.comm`."""
        values = np.ascontiguousarray(values)
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=MPI.SUM)
        if self.world.size > 1:
            self.mpi_bytes += values.nbytes
        return out

    def request(self, targets: np.ndarray, payload: np.ndarray,
                serve: Callable[[np.ndarray, np.ndarray], np.ndarray], step: str = "") -> np.ndarray:
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
        ids_in = self.exchange([targets[order[bounds[r]:bounds[r + 1]]] for r in range(size)], step)
        pay_in = self.exchange([payload[order[bounds[r]:bounds[r + 1]]] for r in range(size)], step)
        sizes_in = np.array([len(a) for a in ids_in])
        replies = np.asarray(serve(np.concatenate(ids_in) - self.world.slot_lo, np.concatenate(pay_in)))
        cuts = np.concatenate([[0], np.cumsum(sizes_in)])
        back = self.exchange([replies[cuts[r]:cuts[r + 1]] for r in range(size)], step)
        out = np.empty((len(targets), *replies.shape[1:]), dtype=replies.dtype)
        if len(targets):
            out[order] = np.concatenate(back)
        return out
