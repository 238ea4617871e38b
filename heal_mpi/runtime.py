"""The parallel world: ranks, node-slot ownership, devices, random streams, fail-fast.

Owns everything that depends on *which process this is*. Other modules read the frozen
`World` and never ask MPI for their rank. Randomness never depends on the rank either:
every draw comes from a stream keyed by (seed, purpose, node, incarnation, round).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi.errors import OutputError


def block_bounds(n_nodes: int, n_ranks: int) -> np.ndarray:
    """Contiguous block partition of slots 0..n_nodes-1: rank r owns [b[r], b[r+1]).

    The first `n_nodes % n_ranks` ranks get one slot more, so uneven splits are allowed.
    """
    base, extra = divmod(n_nodes, n_ranks)
    sizes = np.full(n_ranks, base, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass(frozen=True)
class World:
    """This process's place in the run. Built once by `make_world`.

    Attributes:
        comm: the communicator of the run (every collective in heal_mpi goes over a Dup of it).
        rank, size: this rank and the rank count.
        local_rank, local_size: rank among, and number of, the ranks on this host (GPU binding,
            threads per rank).
        device: torch device holding this rank's node rows.
        bounds: int64 [size + 1], slot block boundaries; this rank owns [slot_lo, slot_hi).
    """

    comm: MPI.Comm
    rank: int
    size: int
    local_rank: int
    local_size: int
    device: torch.device
    bounds: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.bounds[-1])

    @property
    def slot_lo(self) -> int:
        return int(self.bounds[self.rank])

    @property
    def slot_hi(self) -> int:
        return int(self.bounds[self.rank + 1])

    @property
    def n_local(self) -> int:
        return self.slot_hi - self.slot_lo

    @property
    def local_slots(self) -> np.ndarray:
        return np.arange(self.slot_lo, self.slot_hi, dtype=np.int64)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def owner(self, slots: np.ndarray) -> np.ndarray:
        """Rank owning each slot (int64 array of the same shape)."""
        return np.searchsorted(self.bounds, np.asarray(slots, dtype=np.int64), side="right") - 1


def host_rank_and_size(comm: MPI.Comm) -> tuple[int, int]:
    """Rank among, and number of, the processes sharing this host. Collective over `comm`."""
    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local = node_comm.Get_rank(), node_comm.Get_size()
    node_comm.Free()
    return local


def pick_device(choice: str, local_rank: int) -> torch.device:
    """`auto`: cuda:<local rank mod GPUs> when CUDA is available, else CPU."""
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device = 'cuda' but torch sees no CUDA device on this host")
    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    return torch.device("cpu")


def make_world(n_nodes: int, device: str = "auto", comm: MPI.Comm = MPI.COMM_WORLD) -> World:
    """Build the World. Collective over `comm`: every rank must call.

    Callers validate `n_nodes >= comm.size` first (config validation names the key).
    """
    size = comm.Get_size()
    if n_nodes < size:
        raise ValueError(f"nodes.count = {n_nodes} is smaller than the {size} ranks")
    local_rank, local_size = host_rank_and_size(comm)
    return World(
        comm=comm,
        rank=comm.Get_rank(),
        size=size,
        local_rank=local_rank,
        local_size=local_size,
        device=pick_device(device, local_rank),
        bounds=block_bounds(n_nodes, size),
    )


# ----------------------------------------------------------------------------- fail fast

# A failing rank other than 0 waits this long before it reports: when rank 0 fails too (a
# collective write fails everywhere at once), rank 0's report and abort come first, so the
# job prints one line, not one per rank.
REPORT_DELAY_S = 2.0


def debug_enabled() -> bool:
    """HEAL_MPI_DEBUG=1: print full tracebacks instead of one line per failure."""
    return os.environ.get("HEAL_MPI_DEBUG", "") not in ("", "0")


def failure_line(error: BaseException, rank: int, size: int) -> str:
    """What the user reads for a failure during the run: one line, the cause first."""
    if isinstance(error, OutputError):
        return f"heal-mpi: error: {error}"
    if isinstance(error, KeyboardInterrupt):
        return "heal-mpi: interrupted"
    first = (str(error).strip().splitlines() or [""])[0]
    where = f" on rank {rank}" if size > 1 else ""
    return (f"heal-mpi: error{where}: {type(error).__name__}: {first} "
            "(HEAL_MPI_DEBUG=1 prints the traceback)")


@contextmanager
def abort_on_exception(comm: MPI.Comm = MPI.COMM_WORLD, bad_input: tuple = (), cleanup=()):
    """Any exception on any rank ends the whole job with exit 1 and one line on stderr.

    Without this, the other ranks would wait forever in their next collective.
    `SystemExit` and the `bad_input` exception types pass through untouched: every rank
    raises them together (they come from the same config and the same files), and the
    caller reports them as bad input. HEAL_MPI_DEBUG=1 adds every failing rank's traceback.
    `cleanup` callables run first (the output's lock: the abort ends the process at once).
    """
    try:
        yield
    except (SystemExit, *bad_input):
        raise
    except BaseException as e:  # noqa: BLE001 - we must catch KeyboardInterrupt too
        for undo in cleanup:
            undo()
        rank, size = comm.Get_rank(), comm.Get_size()
        if debug_enabled():
            sys.stderr.write(f"[heal_mpi rank {rank}] fatal error, aborting all ranks:\n")
            traceback.print_exc(file=sys.stderr)
        elif rank != 0:
            time.sleep(REPORT_DELAY_S)  # rank 0, if it failed as well, reports and aborts first
        sys.stderr.write(failure_line(e, rank, size) + "\n")
        sys.stderr.flush()
        sys.stdout.flush()
        if size > 1:
            comm.Abort(1)
        # One rank: end here too. A normal exit would close the half-written HDF5 file and
        # finalize MPI, and after a failed write both print tracebacks or crash.
        os._exit(1)


def debug_fault(rank: int, rnd: int) -> None:
    """Raise on purpose when HEAL_MPI_DEBUG_RAISE="RANK:ROUND" matches (tests of fail-fast)."""
    spec = os.environ.get("HEAL_MPI_DEBUG_RAISE")
    if spec and spec == f"{rank}:{rnd}":
        raise RuntimeError(f"HEAL_MPI_DEBUG_RAISE: injected failure on rank {rank} at round {rnd}")
