"""`heal-mpi bench SECTION... | all`: one table of measured speeds, each next to its yardstick.

Speed is only ever compared side by side in one run (plain PyTorch on the same cores, one
rank against two), never asserted in tests. The reference workload: 100 LeNet-5 nodes on
Fashion-MNIST, 600 samples each, batch 32, one local epoch, Adam (one round = 60,000
sample-gradients). Sections that need several ranks launch `mpirun` themselves.
"""

from __future__ import annotations

import sys
import time

import torch

from heal_mpi.bench.memory import section_memory
from heal_mpi.bench.nodes import section_nodes
from heal_mpi.bench.sections import (section_backends, section_clock, section_eval, section_gpu, section_limit, section_output,
                                     section_overlay, section_round, section_scaling)
from heal_mpi.bench.table import QUICK, Row, Scale
from heal_mpi.bench.transport import section_transport
from heal_mpi.bench.workloads import CORES, dataset_available

SECTIONS = {"limit": section_limit, "backends": section_backends, "round": section_round, "eval": section_eval, "scaling": section_scaling,
            "overlay": section_overlay, "output": section_output, "clock": section_clock,
            "memory": section_memory, "nodes": section_nodes, "transport": section_transport, "gpu": section_gpu}


def machine() -> str:
    from heal_mpi.info import mpi_library
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"machine: {CORES} cores, torch {torch.__version__} ({torch.get_num_threads()} threads by default), "
            f"{mpi_library()}, device: {dev}")


def run(sections: list[str], quick: bool = False, stream=sys.stdout) -> list[Row]:
    """Run the sections in order and print one markdown table."""
    dataset_available()
    scale = QUICK if quick else Scale()
    names = list(SECTIONS) if "all" in sections else sections
    rows = []
    t0 = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        rows += SECTIONS[name](scale)
        print(f"[bench] {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print(machine(), file=stream)
    print(f"total {time.perf_counter() - t0:.0f} s{' (quick sizes)' if quick else ''}\n", file=stream)
    print("| section | what | value | ratio | goal |\n|---|---|---|---|---|", file=stream)
    for row in rows:
        print(row.line(), file=stream)
    return rows
