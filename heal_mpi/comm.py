"""Communication between ranks: batched exchange, request/reply, a counted Allreduce, and the step check.

Owns every MPI call of the round. All traffic is contiguous NumPy buffers moved with
non-blocking Isend/Irecv on a private duplicate of the run's communicator: post the
receives, post the sends, wait. Nothing is pickled. Incoming data is consumed in rank
order, so sums are formed in a canonical order whatever the message timing.

Fail, never hang. Every collective of a round (the overlay's, the engine's, the metrics')
opens with the same handshake, one Alltoall of fixed shape on the same communicator: each
rank says which step it is in (the step's name, its place in the round, a running
fingerprint of the round's steps so far) and how much it sends to each rank. So whatever
two ranks are doing, they meet in a handshake and see each other's step: a rank that ran
another step, or finished the round's steps early (`end_round`), raises an error naming
both ranks and both steps instead of waiting forever, and the fail-fast handler
(runtime.abort_on_exception) ends the job. `end_round` also compares the metric names the
ranks are about to reduce, before any data is reduced.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from mpi4py import MPI

from heal_mpi.rng import purpose_id
from heal_mpi.runtime import World

_TAG_DATA = 7
ROUND_END = "round-end"
_MASK = (1 << 62) - 1


class StepMismatch(RuntimeError):
    """Two ranks reached different collective steps (or one finished the round early)."""


class Comm:
    """Point-to-point traffic and collective steps of one run. Every method is collective over the world.

    Attributes:
        mpi_bytes: payload bytes this rank sent to *other* ranks since the last `take_bytes`.
    """

    def __init__(self, world: World):
        self.world = world
        self.comm = world.comm.Dup()
        self.mpi_bytes = 0
        self.rnd = -1
        self._seq, self._print = 0, 0  # collective steps of this round so far, their running fingerprint

    def take_bytes(self) -> int:
        """Return and reset the MPI byte counter (per-round accounting)."""
        sent, self.mpi_bytes = self.mpi_bytes, 0
        return sent

    def free(self) -> None:
        self.comm.Free()

    # ------------------------------------------------------------------ the step check
    def start_round(self, rnd: int) -> None:
        self.rnd, self._seq, self._print = rnd, 0, 0

    def _handshake(self, step: str, sizes: np.ndarray, check: int = 0) -> np.ndarray:
        """One Alltoall: every rank's (size sent here, step id, place in the round, fingerprint, check).
        Raises StepMismatch when any rank is in another step."""
        size, rank = self.world.size, self.world.rank
        sid = purpose_id(step)
        fingerprint = (self._print * 1000003 + sid) & _MASK
        head = np.empty((size, 5), dtype=np.int64)
        head[:, 0] = sizes
        head[:, 1:] = [sid, self._seq, fingerprint, check]
        heard = np.empty_like(head)
        self.comm.Alltoall(head, heard)
        bad = np.flatnonzero((heard[:, 1:4] != head[0, 1:4]).any(axis=1))
        if len(bad):  # every rank sees a row unlike its own, so every rank gets here: they can talk once more
            steps = self.comm.allgather(step)
            self._mismatch(step, int(bad[0]), heard[bad[0]], steps[bad[0]])
        if (heard[:, 4] != check).any():
            other = int(np.flatnonzero(heard[:, 4] != check)[0])
            raise StepMismatch(f"rank {rank} and rank {other} contributed different metric names in round "
                               f"{self.rnd}: every rank must add the same names")
        self._seq, self._print = self._seq + 1, fingerprint
        return heard

    def _mismatch(self, step: str, other: int, theirs: np.ndarray, their_step: str) -> None:
        where = f" of round {self.rnd}" if self.rnd >= 0 else ""
        def doing(name, seq):
            return "has finished the round's steps" if name == ROUND_END else f"is in collective step {seq + 1}{where} ({name!r})"
        them = doing(their_step, int(theirs[2]))
        if their_step == step and theirs[2] == self._seq:
            them = f"is in the same step after other ones ({their_step!r})"
        raise StepMismatch(f"rank {self.world.rank} {doing(step, self._seq)} but rank {other} {them}: every rank "
                           "must run the same communicating steps in the same order")

    def end_round(self, names: list[str]) -> None:
        """Check that every rank ran the same collective steps this round and will reduce the same
        metric `names`, before anything is reduced. Collective: every rank must call."""
        check = purpose_id("\n".join(names))
        self._handshake(ROUND_END, np.zeros(self.world.size, dtype=np.int64), check)

    # ------------------------------------------------------------------ the collectives
    def exchange(self, outgoing: list[np.ndarray], step: str, expect: list[int] | None = None) -> list[np.ndarray]:
        """Send outgoing[r] to rank r; return what every rank sent here, in rank order.

        Collective: every rank must call, in the same `step`. Arrays share one dtype and one
        trailing shape; any may be empty. The sizes travel in the handshake, then the payloads
        as non-blocking point-to-point messages. `expect` (elements from each rank) skips the
        handshake: for a second payload of a step whose first one told the sizes.
        """
        size, rank = self.world.size, self.world.rank
        outgoing = [np.ascontiguousarray(a) for a in outgoing]
        trail, dtype = outgoing[rank].shape[1:], outgoing[rank].dtype
        send_counts = np.array([a.size for a in outgoing], dtype=np.int64)
        recv_counts = self._handshake(step, send_counts)[:, 0] if expect is None else np.asarray(expect)

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

    def allreduce_sum(self, values: np.ndarray, step: str, checked: bool = False, counted: bool = True) -> np.ndarray:
        """Element-wise sum over the ranks (int64 or float64), after the handshake of `step`
        (`checked`: the caller's own handshake, e.g. `end_round`, has just run). `counted`: its
        bytes go to `mpi_bytes` (the simulator's own bookkeeping, the metrics, is not counted)."""
        values = np.ascontiguousarray(values)
        if not checked:
            self._handshake(step, np.zeros(self.world.size, dtype=np.int64))
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=MPI.SUM)
        if counted and self.world.size > 1:
            self.mpi_bytes += values.nbytes
        return out

    def allreduce_max(self, values: np.ndarray, step: str) -> np.ndarray:
        """Element-wise maximum over the ranks, after the handshake of `step`."""
        values = np.ascontiguousarray(values)
        self._handshake(step, np.zeros(self.world.size, dtype=np.int64))
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=MPI.MAX)
        if self.world.size > 1:
            self.mpi_bytes += values.nbytes
        return out

    def all_flags(self, local: np.ndarray, step: str, what: str) -> np.ndarray:
        """bool [N]: every rank's flags of its own nodes (`what`, bool [n_local]) side by side,
        after the handshake of `step`."""
        local = np.asarray(local)
        if local.shape != (self.world.n_local,) or local.dtype != bool:
            raise ValueError(f"{what} must be bool [{self.world.n_local}] (one per local node), "
                             f"not {local.dtype} {list(local.shape)}")
        flags = np.zeros(self.world.n_nodes, dtype=np.uint8)
        flags[self.world.slot_lo:self.world.slot_hi] = local
        return self.allreduce_max(flags, step).astype(bool)

    def split_by_owner(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stable order grouping `targets` by owner rank, and the group boundaries [size + 1]."""
        owners = self.world.owner(targets)
        order = np.argsort(owners, kind="stable")
        bounds = np.searchsorted(owners[order], np.arange(self.world.size + 1))
        return order, bounds

    def request(self, targets: np.ndarray, payload: np.ndarray,
                serve: Callable[[np.ndarray, np.ndarray], np.ndarray], step: str) -> np.ndarray:
        """Request/reply: ask each target node's owner for an answer row.

        Collective: every rank must call (with zero requests if need be).

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
