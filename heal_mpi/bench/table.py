"""The benchmark's table: one `Row` per measurement beside its yardstick, and the sizes it runs at."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    section: str
    what: str
    value: float
    unit: str
    ratio: float = float("nan")  # against the section's yardstick
    goal: str = ""

    def line(self) -> str:
        ratio = "" if np.isnan(self.ratio) else f"{self.ratio:6.2f}x"
        return f"| {self.section} | {self.what} | {self.value:,.3g} {self.unit} | {ratio} | {self.goal} |"


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run: the reference workload, or a tiny one (--quick, for tests)."""

    nodes: int = 100
    per_node: int = 600
    rounds: int = 3               # round 2 is reported: round 1 warms up, the last one is always evaluated
    limit_samples: int = 12800    # samples timed per batch size in the compute-bound sweep
    eval_nodes: int = 30
    overlay_sizes: tuple = (1000, 10000, 100000)
    overlay_cycles: tuple = (100, 100, 5)
    sequential_sizes: tuple = (1000, 10000)  # overlay.semantics = "sequential", one node a turn
    sequential_cycles: tuple = (3, 1)
    output_nodes: int = 10000
    clock_nodes: int = 1000       # a HEAL round with and without [time]
    clock_per_node: int = 60
    memory_nodes: int = 1000
    backend_nodes: int = 20
    backend_per_node: int = 320
    tiny_nodes: int = 10000       # cross-device nodes of 10 samples (the batched backend)
    world_sizes: tuple = (1000, 10000, 100000)  # heal-mpi bench nodes
    transport_mib: int = 480      # rows each way between 2 ranks (a 10,000-node Gossip round's)


QUICK = Scale(nodes=6, per_node=64, limit_samples=512, eval_nodes=4, overlay_sizes=(200,), overlay_cycles=(5,),
              sequential_sizes=(200,), sequential_cycles=(1,),
              output_nodes=300, clock_nodes=20, clock_per_node=16, memory_nodes=20, backend_nodes=3, backend_per_node=64,
              tiny_nodes=50, world_sizes=(60,), transport_mib=60)
