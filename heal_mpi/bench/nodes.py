"""World size: a HEAL, FedAvg and Gossip round at 1,000, 10,000 and 100,000 nodes on 1 and 2 ranks.

Cross-device nodes: 10 Fashion-MNIST images each (`data.samples_per_node`), batch 10, the batched
backend, SGD (lr 0.05), and at 10,000 nodes also Adam (lr 1e-3, the reference recipe's optimizer,
whose two moments are part of the floor). The MLP up to 10,000 nodes; logistic regression at
100,000, where 100,000 MLP rows with Gossip's float64 sums would not fit 24 GiB. Each run is
`heal-mpi run` under mpirun, every rank wrapped by `python -m heal_mpi.bench.nodes MODULE ARGS`
so that it prints its own peak resident memory when it exits. The round reported is the fourth
of five: in the first ones Elevator is still electing (HEAL's clients then send mostly to nodes
that are no hubs, whose rows are dropped: cheaper rounds than a steady one), the last is
evaluated.

The floor beside the peak: the interpreter with torch, MPI and HDF5 loaded (the peak of
`heal-mpi info`), the rank's rows (parameters, float32) and optimizer state (none for SGD, two
float32 moments for Adam), its nodes' samples and the test set. What the peak holds above it is
mostly the mixes' float64 sums (Gossip: one per receiver).
"""

from __future__ import annotations

import math
import re
import resource
import runpy
import sys
import tempfile
from pathlib import Path

from heal_mpi.bench.table import Row, Scale
from heal_mpi.bench.workloads import fmnist_model, run_mpi, steady_round

MIB = 2**20
SAMPLE_BYTES = 785 * 4  # a Fashion-MNIST image as float32 and its label


ROUNDS, STEADY = 5, 3  # the fourth of five rounds is reported
OPTIMIZERS = {"sgd": 0.05, "adam": 1e-3}  # learning rates
MOMENTS = {"sgd": 0, "adam": 2}            # float32 numbers of state per parameter


def world_config(path: Path, protocol: str, nodes: int, model: str, rounds: int, optimizer: str = "sgd") -> Path:
    path.write_text(f"""
[run]
rounds = {rounds}
progress = "none"
threads = 1
[nodes]
count = {nodes}
[overlay]
cache_size = 20
hubs = 10
[protocol]
kind = "{protocol}"
[data]
dataset = "fashion-mnist"
samples_per_node = 10
[model]
name = "{model}"
[train]
optimizer = "{optimizer}"
lr = {OPTIMIZERS[optimizer]}
batch_size = 10
[eval]
every = 1000
max_samples = 1000
nodes_fraction = {min(1.0, 100 / nodes)}
""")
    return path


def row_bytes(model: str) -> int:
    """Float32 bytes of one node's row on Fashion-MNIST."""
    from heal_mpi.learning.models import param_count
    return 4 * param_count(fmnist_model(model))


def peak_rss(text: str) -> int:
    """Bytes: the largest peak that the ranks of a wrapped run printed."""
    return max(int(k) for k in re.findall(r"peak_rss_kib (\d+)", text)) * 1024


def worlds(sizes: tuple) -> list[tuple[int, str, str]]:
    """(nodes, model, optimizer) of each world the section runs."""
    out = []
    for nodes in sizes:
        model = "mlp" if nodes <= 10000 else "logreg"
        out += [(nodes, model, "sgd")] + ([(nodes, model, "adam")] if nodes == 10000 else [])
    return out


def run_world(tmp: Path, protocol: str, nodes: int, model: str, optimizer: str, ranks: int) -> tuple[dict, int]:
    """(seconds of each phase of the steady round, the largest rank's peak resident bytes) of one world."""
    cfg = world_config(tmp / "w.toml", protocol, nodes, model, ROUNDS, optimizer)
    out = tmp / "w.h5"
    peak = peak_rss(run_mpi(ranks, ["heal_mpi.bench.nodes", "heal_mpi", "run", str(cfg), "--out", str(out),
                                    "--overwrite"], timeout=3600))
    return {k[8:]: v for k, v in steady_round(out, STEADY).items() if k.startswith("seconds_")}, peak


def section_nodes(s: Scale) -> list[Row]:
    rows = []
    interpreter = peak_rss(run_mpi(1, ["heal_mpi.bench.nodes", "heal_mpi", "info"]))
    with tempfile.TemporaryDirectory() as tmp:
        for nodes, model, optimizer in worlds(s.world_sizes):
            for protocol in ("heal", "fedavg", "gossip"):
                for ranks in (1, 2):
                    phases, peak = run_world(Path(tmp), protocol, nodes, model, optimizer, ranks)
                    total = sum(phases.values())
                    other = 100 * (total - phases["train"] - phases["evaluate"]) / total
                    per_rank = math.ceil(nodes / ranks)
                    state = row_bytes(model) * (1 + MOMENTS[optimizer])
                    floor = interpreter + per_rank * (state + 10 * SAMPLE_BYTES) + 10000 * SAMPLE_BYTES
                    what = f"{protocol}, {nodes:,} {model} nodes x 10, {optimizer}, {ranks} rank(s)"
                    rows += [Row("nodes", f"{what}: seconds per round (train {phases['train']:.2f}, "
                                 f"mix {phases['mix']:.2f}, overlay {phases['overlay']:.2f})", total, "s"),
                             Row("nodes", f"{what}: share outside train and eval", other, "%", goal="< 15 %"),
                             Row("nodes", f"{what}: peak RSS of the largest rank, against the floor", peak / MIB,
                                 "MiB", peak / floor, "<= 1.5x")]
    return rows + [Row("nodes", "the interpreter with torch, MPI and HDF5 (the peak of `heal-mpi info`)", interpreter / MIB,
                       "MiB")]


def main() -> None:
    """`python -m heal_mpi.bench.nodes MODULE ARGS...`: run MODULE as a script, then print this
    process's peak resident memory (whatever way it ended)."""
    module, sys.argv = sys.argv[1], sys.argv[1:]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        print(f"peak_rss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)


if __name__ == "__main__":
    main()
