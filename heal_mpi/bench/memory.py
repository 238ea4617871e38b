"""Memory: the peak RSS of one rank running a HEAL round of LeNet-5 nodes with Adam, against the floor
(parameters + optimizer state). The round runs in a fresh process (`python -m heal_mpi.bench.memory N`),
so that nothing else the benchmark did counts in its peak."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import torch

from heal_mpi.bench.table import Row, Scale
from heal_mpi.bench.workloads import fmnist_nodes, lenet_population


def current_rss() -> int:
    """Resident set size of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ElectedHubs:
    """The overlay surface a HEAL round reads, with Elevator's converged state: h hubs every node lists."""

    def __init__(self, n: int, h: int):
        self.n, self.h = n, h

    def hub_lists(self) -> np.ndarray:
        return np.tile(np.arange(self.h, dtype=np.int64), (self.n, 1))

    def is_hub(self) -> np.ndarray:
        return np.arange(self.n) < self.h


def memory_child(nodes: int) -> None:
    """Run in a fresh process: print baseline RSS, peak RSS and the floor, in bytes.

    The peak covers a full HEAL round (train, the up, hub-hub and reply mixes, the assigns)
    and an evaluation, on one rank: 10 hubs, every client sends to s = 2 of them.
    """
    from mpi4py import MPI

    from heal_mpi.config import load
    from heal_mpi.context import RoundContext
    from heal_mpi.engine.channel import Channel
    from heal_mpi.engine.core import Engine
    from heal_mpi.protocols.hub import HubProtocol
    from heal_mpi.runtime import make_world

    torch.set_num_threads(1)
    data = fmnist_nodes(nodes, 32)
    world = make_world(nodes, "cpu", MPI.COMM_SELF)
    base = current_rss()  # not the high-water mark: loading the data peaks higher than it stays
    pop = lenet_population(data, eval_samples=1000)
    cfg = load(None, ["protocol.kind='heal'", "protocol.heal.fanout=2"])
    engine = Engine(world, pop, HubProtocol(cfg, world.local_slots), Channel(0))
    none = np.zeros(0, dtype=np.int64)
    engine.round(RoundContext(0, 0, np.ones(nodes, bool), np.zeros(nodes, np.int64), none, none),
                 ElectedHubs(nodes, 10))
    pop.evaluate(0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    floor = sum(v.numel() * v.element_size() for v in pop.opt_state.values()) + pop.rows.numel() * 4
    print(base, peak, floor)


def section_memory(s: Scale) -> list[Row]:
    """Peak RSS of one rank running a HEAL round of LeNet-5 nodes with Adam, against parameters + optimizer state."""
    out = subprocess.run([sys.executable, "-m", "heal_mpi.bench.memory", str(s.memory_nodes)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    base, peak, floor = map(int, out.stdout.split())
    mib = 2 ** 20
    return [Row("memory", f"peak RSS minus the fixed overhead, HEAL round of {s.memory_nodes:,} LeNet-5 nodes + Adam",
                (peak - base) / mib, "MiB", (peak - base) / floor, "<= 1.5x the floor"),
            Row("memory", "floor: parameters + optimizer state", floor / mib, "MiB", 1.0),
            Row("memory", "fixed overhead: RSS before the nodes (interpreter, torch, the dataset)", base / mib, "MiB"),
            Row("memory", "peak RSS of the rank", peak / mib, "MiB")]


if __name__ == "__main__":
    memory_child(int(sys.argv[1]))
