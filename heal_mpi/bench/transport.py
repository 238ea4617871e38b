"""The rows' exchange between two ranks, with Open MPI copying each message once (cross-memory attach)
or twice (through a shared buffer, `single_copy_mechanism = none`, where containers forbid the syscall:
heal_mpi/single_copy.py).

What a 10,000-node Gossip round of the MLP on 2 ranks sends: about 470 MiB each way, in pieces of
about 30 MiB (engine/routes.py: Pieces), from rows that lie in memory, not in the cache. Timed alone,
so that the noise of the round's memory-bound sums (up to 50 % between runs of this VM) stays out.
`python -m heal_mpi.bench.transport` under mpirun -n 2 prints the seconds of the fastest of 3 passes.
"""

from __future__ import annotations

import time

import numpy as np

from heal_mpi import single_copy
from heal_mpi.bench.table import Row, Scale
from heal_mpi.bench.workloads import run_mpi

EACH_WAY, PIECE = 480 << 20, 30 << 20  # bytes


def exchange_seconds(each_way: int = EACH_WAY, piece: int = PIECE, passes: int = 3) -> float:
    """Collective over 2 ranks: the fastest pass of sending `each_way` bytes to the other rank while
    receiving as much, a piece at a time into fresh buffers, as the engine's pieces do."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    other = 1 - comm.rank
    rows = np.ones(each_way // 4, dtype=np.float32)  # far larger than the cache: read from memory
    n = piece // 4
    best = np.inf
    for _ in range(passes):
        comm.Barrier()
        t = time.perf_counter()
        for a in range(0, len(rows), n):
            got = np.empty(min(n, len(rows) - a), dtype=np.float32)
            MPI.Request.Waitall([comm.Irecv(got, source=other), comm.Isend(rows[a:a + n], dest=other)])
        best = min(best, comm.allreduce(time.perf_counter() - t, op=MPI.MAX))
    return best


def section_transport(s: Scale) -> list[Row]:
    """One copy against two, each the fastest of two runs (alternated), where one copy works here."""
    if not single_copy.works():
        return [Row("transport", "skipped: cross-memory attach is forbidden here, every message is copied twice",
                    float("nan"), "")]
    each_way = s.transport_mib << 20
    twice = dict.fromkeys(single_copy.VARIABLES, "none")
    best = {1: np.inf, 2: np.inf}
    for copies in (1, 2, 1, 2):
        out = run_mpi(2, ["heal_mpi.bench.transport", str(each_way)], **(twice if copies == 2 else {}))
        best[copies] = min(best[copies], float(out.split()[-1]))
    what = f"2 ranks send each other {s.transport_mib} MiB of rows in {PIECE >> 20} MiB pieces"
    return [Row("transport", f"{what}, each message copied once (cross-memory attach)", best[1], "s"),
            Row("transport", f"{what}, each copied twice (single_copy_mechanism none), against once", best[2], "s",
                best[2] / best[1])]


if __name__ == "__main__":
    import sys
    seconds = exchange_seconds(int(sys.argv[1]) if len(sys.argv) > 1 else EACH_WAY)
    from mpi4py import MPI
    if MPI.COMM_WORLD.rank == 0:
        print(f"{seconds:.6f}")
