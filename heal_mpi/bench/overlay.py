"""Benchmark of the Elevator overlay alone: cycles per second and MPI bytes per cycle.

    mpirun -n 2 python -m heal_mpi.bench.overlay [--sizes 1000 10000 100000] [--cycles 100]
        [--semantics sequential [--substeps K]]

Runs fault-free Elevator (c = 20, h = 10, the paper's setting) for each N, in the cycle
semantics asked (snapshot, or sequential in K turns, 0 = one node a turn), times the
cycles after construction, and prints one table row per N on rank 0 (with the largest
per-rank CPU time: on a shared machine it tells what the ranks would need alone, though
it also counts MPI's busy waiting). MPI bytes are the
payload bytes all ranks sent to other ranks (point-to-point exchanges plus each rank's
in-degree Allreduce contribution), averaged per cycle; 0 on one rank.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from mpi4py import MPI

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay.common import hub_metrics
from heal_mpi.overlay.elevator import Elevator
from heal_mpi.runtime import make_world

HEADER = (f"{'N':>8} {'ranks':>5} {'order':>10} {'turns':>6} {'cycles':>6} {'seconds':>8} {'cycles/s':>9} "
          f"{'CPU s/rank':>10} {'MPI bytes/cycle':>16} {'hubs':>5}")


def bench_one(n: int, cycles: int, comm: MPI.Comm = MPI.COMM_WORLD, c: int = 20, h: int = 10,
              semantics: str = "snapshot", substeps: int = 0) -> dict:
    """Time `cycles` Elevator cycles at N = n. Collective over `world.comm`: every rank must call."""
    world = make_world(n, "cpu", comm)
    ov = Elevator(world, Channel(1), c, h, seed=1)
    ov.set_order(semantics, substeps)
    alive, inc, none = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ov.comm.take_bytes()
    comm.Barrier()
    start, cpu = time.perf_counter(), time.process_time()
    for rnd in range(cycles):
        ov.step(RoundContext(rnd, 1, alive, inc, none, none))
    cpu = comm.allreduce(time.process_time() - cpu, op=MPI.MAX)  # includes MPI's busy waiting
    comm.Barrier()
    seconds = time.perf_counter() - start
    sent = comm.allreduce(ov.comm.take_bytes())
    turns = 1 if semantics == "snapshot" else (substeps or n)
    return {"n": n, "ranks": world.size, "order": semantics, "turns": turns, "cycles": cycles, "seconds": seconds, "cycles_per_s": cycles / seconds,
            "cpu_per_rank": cpu,
            "mpi_bytes_per_cycle": sent / cycles, "hubs": hub_metrics(ov.in_degree, ov.alive, ov.hub_width)[0]}


def bench_overlay(sizes=(1000, 10000, 100000), cycles=100, comm: MPI.Comm = MPI.COMM_WORLD,
                  semantics: str = "snapshot", substeps: int = 0) -> list[dict]:
    """Benchmark each N and print the table on rank 0. Collective over `world.comm`: every rank must call.

    Args:
        sizes: the node counts N.
        cycles: cycles per N, an int or one per size.
        semantics, substeps: the cycle's order (`overlay.semantics`, `overlay.substeps`).
    """
    per = [cycles] * len(sizes) if isinstance(cycles, int) else list(cycles)
    rows = []
    if comm.Get_rank() == 0:
        print(HEADER, flush=True)
    for n, k in zip(sizes, per):
        r = bench_one(n, k, comm, semantics=semantics, substeps=substeps)
        rows.append(r)
        if comm.Get_rank() == 0:
            print(f"{r['n']:>8} {r['ranks']:>5} {r['order']:>10} {r['turns']:>6} {r['cycles']:>6} {r['seconds']:>8.4f} {r['cycles_per_s']:>9.2f} "
                  f"{r['cpu_per_rank']:>10.1f} {r['mpi_bytes_per_cycle']:>16,.0f} {r['hubs']:>5}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Elevator overlay benchmark (run under mpirun)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--cycles", type=int, nargs="+", default=[100], help="one value, or one per size")
    ap.add_argument("--semantics", choices=("snapshot", "sequential"), default="snapshot")
    ap.add_argument("--substeps", type=int, default=0, help="sequential: turns per cycle, 0 = one node a turn")
    args = ap.parse_args(argv)
    bench_overlay(args.sizes, args.cycles[0] if len(args.cycles) == 1 else args.cycles, semantics=args.semantics,
                  substeps=args.substeps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
