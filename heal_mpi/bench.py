"""`heal-mpi bench SECTION... | all`: one table of measured speeds, each next to its yardstick.

Speed is only ever compared side by side in one run (plain PyTorch on the same cores, one
rank against two), never asserted in tests. The reference workload: 100 LeNet-5 nodes on
Fashion-MNIST, 600 samples each, batch 32, one local epoch, Adam (one round = 60,000
sample-gradients). Sections that need several ranks launch `mpirun` themselves.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from heal_mpi.config import DataConfig, EvalConfig, ModelConfig, TrainConfig

CORES = os.cpu_count() or 1
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


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


# ----------------------------------------------------------------------------- helpers

def lenet_data(n: int, device="cpu"):
    """n Fashion-MNIST training images (random ones when the files are missing: speed is the same)."""
    from heal_mpi.learning.datasets import DatasetError, load_dataset, to_float
    try:
        raw = load_dataset(DataConfig(dataset="fashion-mnist", max_train=n), seed=0)
        return to_float(raw, raw.x_train[:n], device), torch.as_tensor(raw.y_train[:n], device=device)
    except DatasetError:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def lenet():
    from heal_mpi.learning.models import build_model
    return build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10)


def fmnist_nodes(nodes: int, per_node: int):
    """LocalData of `nodes` nodes holding `per_node` Fashion-MNIST images each (one rank owns all)."""
    from heal_mpi.learning.partition import load_local_data
    return load_local_data(DataConfig(dataset="fashion-mnist", max_train=nodes * per_node), 0, nodes, 0, nodes,
                           "cpu")


def random_nodes(nodes: int, per_node: int, device):
    """LocalData of random 28x28 images: training speed does not depend on pixel values."""
    from heal_mpi.learning.partition import LocalData
    g = torch.Generator().manual_seed(0)
    n = nodes * per_node
    x = torch.randn(n, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    offsets = np.arange(nodes + 1, dtype=np.int64) * per_node
    empty = np.zeros(nodes + 1, dtype=np.int64)
    return LocalData(x, y, offsets, x[:0], y[:0], empty, x[:256], y[:256], (1, 28, 28), 10, nodes, 0, nodes)


def lenet_population(data, backend: str = "loop", eval_samples: int = 0, device="cpu"):
    """LeNet-5 nodes with the reference recipe: Adam 1e-3, batch 32, one local epoch."""
    from heal_mpi.learning.population import Population
    return Population(ModelConfig(name="lenet5"), TrainConfig(optimizer="adam", lr=1e-3, backend=backend),
                      EvalConfig(max_samples=eval_samples), data, 0, device)


def train_round(pop, device="cpu") -> float:
    """Samples/s of one round of local training of every node of `pop`."""
    n = pop.n_local
    sync(device)
    t0 = time.perf_counter()
    pop.train(np.ones(n, dtype=bool), 0, np.zeros(n, dtype=np.int64))
    sync(device)
    return pop.train_samples / (time.perf_counter() - t0)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plain_train(x, y, batch: int, device="cpu") -> float:
    """Samples/s of plain PyTorch training one LeNet-5 (nn.Module + torch.optim.Adam)."""
    model = lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for warm in range(2):  # allocator and kernel warm-up
        opt.zero_grad()
        F.cross_entropy(model(x[:batch]), y[:batch]).backward()
        opt.step()
    sync(device)
    t0 = time.perf_counter()
    for lo in range(0, len(y) - batch + 1, batch):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[lo:lo + batch]), y[lo:lo + batch]).backward()
        opt.step()
    sync(device)
    return (len(y) // batch * batch) / (time.perf_counter() - t0)


@torch.no_grad()
def plain_infer(x, batch: int, device="cpu") -> float:
    model = lenet().to(device).eval()
    model(x[:batch])
    sync(device)
    t0 = time.perf_counter()
    for lo in range(0, len(x), batch):
        model(x[lo:lo + batch])
    sync(device)
    return len(x) / (time.perf_counter() - t0)


def reference_config(path: Path, protocol: str, nodes: int, per_node: int, rounds: int, **sections) -> Path:
    """A heal-mpi config for the reference workload (nodes x per_node LeNet-5 samples)."""
    text = f"""
[run]
rounds = {rounds}
progress = "none"
threads = {sections.get('threads', 1)}
[nodes]
count = {nodes}
[protocol]
kind = "{protocol}"
[overlay]
cache_size = {min(20, nodes - 1)}
hubs = {min(5, nodes // 4 or 1)}
[data]
dataset = "{sections.get('dataset', 'fashion-mnist')}"
max_train = {nodes * per_node}
[model]
name = "lenet5"
[train]
optimizer = "adam"
lr = 0.001
batch_size = 32
[eval]
every = {sections.get('eval_every', 1000)}
max_samples = {sections.get('eval_samples', 0)}
"""
    path.write_text(text)
    return path


def run_mpi(ranks: int, args: list[str], timeout: float = 900) -> None:
    cmd = ["mpirun", "-n", str(ranks), sys.executable, "-m", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **MPI_ENV})
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def steady_round(path: Path) -> dict:
    """The /rounds scalars of the second round: the first warms up, the last one is always evaluated."""
    with h5py.File(path, "r") as f:
        return {k: float(f["rounds"][k][1]) for k in f["rounds"]}


def dataset_available() -> str:
    from heal_mpi.learning.datasets import DatasetError, check_dataset_files
    try:
        check_dataset_files(DataConfig(dataset="fashion-mnist"))
        return "fashion-mnist"
    except DatasetError:
        raise SystemExit("heal-mpi bench: the reference workload needs Fashion-MNIST "
                         "(Debian package dataset-fashion-mnist; make setup installs it)")


# ----------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run: the reference workload, or a tiny one (--quick, for tests)."""

    nodes: int = 100
    per_node: int = 600
    rounds: int = 3               # round 2 is reported: round 1 warms up, the last one is always evaluated
    limit_samples: int = 12800    # samples timed per batch size in the compute-bound sweep
    eval_nodes: int = 100
    overlay_sizes: tuple = (1000, 10000, 100000)
    overlay_cycles: tuple = (100, 100, 5)
    output_nodes: int = 10000
    memory_nodes: int = 1000
    backend_nodes: int = 20
    backend_per_node: int = 320


QUICK = Scale(nodes=6, per_node=64, limit_samples=512, eval_nodes=4, overlay_sizes=(200,), overlay_cycles=(5,),
              output_nodes=300, memory_nodes=20, backend_nodes=3, backend_per_node=64)
STATE: dict = {}  # the compute bound, shared by the sections that compare with it


def section_limit(s: Scale) -> list[Row]:
    """Plain PyTorch, one LeNet-5, all cores: batch 32, and the batch that gives the most samples/s."""
    torch.set_num_threads(CORES)
    x, y = lenet_data(s.limit_samples)
    b32 = plain_train(x, y, 32)
    sweep = {b: plain_train(x, y, b) for b in (64, 128, 256, 512, 1024, 2048, 4096) if b <= len(y) // 2}
    best = max(sweep, key=sweep.get) if sweep else 32
    STATE["bound"] = max(sweep.get(best, b32), b32)
    return [Row("limit", "plain PyTorch, batch 32", b32, "samples/s", b32 / STATE["bound"]),
            Row("limit", f"plain PyTorch, best batch ({best})", STATE["bound"], "samples/s", 1.0,
                "the compute bound")]


def section_backends(s: Scale) -> list[Row]:
    """The loop and vmap training backends on one CPU thread, against plain PyTorch at batch 32.

    One thread per rank is the default split, so this is what each rank sees (`auto` = loop on CPUs).
    """
    torch.set_num_threads(1)
    data = random_nodes(s.backend_nodes, s.backend_per_node, "cpu")
    plain = plain_train(data.x_train, data.y_train, 32)
    rows = []
    for backend in ("loop", "vmap"):
        train_round(lenet_population(random_nodes(2, 64, "cpu"), backend))  # warm-up
        rate = train_round(lenet_population(data, backend))
        rows.append(Row("backends", f"{backend}, {s.backend_nodes} nodes x {s.backend_per_node}, batch 32, "
                        "1 thread", rate, "samples/s", rate / plain))
    torch.set_num_threads(CORES)
    return rows + [Row("backends", "plain PyTorch, batch 32, 1 thread", plain, "samples/s", 1.0)]


def section_round(s: Scale) -> list[Row]:
    """A full round of FedAvg, HEAL and Gossip on the reference workload, all cores as ranks."""
    bound = STATE.get("bound") or section_limit(s)[1].value
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for proto in ("fedavg", "heal", "gossip"):
            cfg = reference_config(Path(tmp) / f"{proto}.toml", proto, s.nodes, s.per_node, s.rounds,
                                   eval_every=1, eval_samples=1000)
            out = Path(tmp) / f"{proto}.h5"
            run_mpi(CORES, ["heal_mpi", "run", str(cfg), "--out", str(out)])
            r = steady_round(out)
            phases = {k[8:]: v for k, v in r.items() if k.startswith("seconds_")}
            total = sum(phases.values())
            split = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            rate = r["train_samples"] / max(phases["train"], 1e-9)
            other = (total - phases["train"] - phases["evaluate"]) / total
            rows += [Row("round", f"{proto}: seconds per round ({split})", total, "s"),
                     Row("round", f"{proto}: training throughput vs compute bound", rate, "samples/s",
                         rate / bound, ">= 0.8x"),
                     Row("round", f"{proto}: share outside train and eval", 100 * other, "%", goal="< 10 %")]
    return rows


def section_eval(s: Scale) -> list[Row]:
    """Evaluating distinct models (a Gossip round) against plain PyTorch inference at its best batch."""
    torch.set_num_threads(CORES)
    data = fmnist_nodes(s.eval_nodes, 8)
    pop = lenet_population(data)
    pop.rows.add_(0.01 * torch.randn_like(pop.rows))  # every node a different model
    t0 = time.perf_counter()
    _, _, distinct = pop.evaluate(0)
    ours = distinct * len(data.y_test) / (time.perf_counter() - t0)
    x = data.x_test
    best = max(plain_infer(x, b) for b in (256, 1024, 4096))
    return [Row("eval", f"{distinct} distinct models on the {len(x):,}-image test set", ours, "samples/s",
                ours / best, ">= 0.8x"),
            Row("eval", "plain PyTorch inference, best batch", best, "samples/s", 1.0)]


def section_scaling(s: Scale) -> list[Row]:
    """The same FedAvg round on 1 and 2 ranks (and 3, 4 oversubscribed), one thread each."""
    rows, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        cfg = reference_config(Path(tmp) / "fedavg.toml", "fedavg", s.nodes, s.per_node, s.rounds)
        for ranks in (1, 2, 3, 4):
            out = Path(tmp) / f"r{ranks}.h5"
            run_mpi(ranks, ["heal_mpi", "run", str(cfg), "--out", str(out)])
            r = steady_round(out)
            secs = sum(v for k, v in r.items() if k.startswith("seconds_"))
            base = base or secs
            note = "oversubscribed" if ranks > CORES else ""
            rows.append(Row("scaling", f"{ranks} rank(s) {note}".strip(), secs, "s/round", base / secs,
                            ">= 1.6x" if ranks == 2 else ""))
    return rows


def section_overlay(s: Scale) -> list[Row]:
    """Elevator cycles per second at each N, on 1 and 2 ranks."""
    rows = []
    for ranks in (1, 2):
        cmd = ["mpirun", "-n", str(ranks), sys.executable, "-m", "heal_mpi.bench_overlay",
               "--sizes", *map(str, s.overlay_sizes), "--cycles", *map(str, s.overlay_cycles)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MPI_ENV}, timeout=900)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        for line in out.stdout.splitlines()[1:]:
            n, _, cycles, secs, cps, _, mpi, _ = line.split()
            goal = "100 cycles < 30 s" if int(n) == 10000 and ranks == 2 else ""
            rows.append(Row("overlay", f"Elevator N={int(n):,}, {ranks} rank(s), {cycles} cycles, "
                            f"{mpi} MPI B/cycle", float(secs), "s", goal=goal))
    return rows


def section_output(s: Scale) -> list[Row]:
    """HDF5 write time per round against the whole overlay-only round at N = 10,000 (2 ranks)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "ov.toml"
        cfg.write_text(f"[run]\nrounds = 6\nprogress = 'none'\n[nodes]\ncount = {s.output_nodes}\n"
                       "[protocol]\nkind = 'none'\n")
        out = Path(tmp) / "ov.h5"
        run_mpi(min(2, CORES), ["heal_mpi", "run", str(cfg), "--out", str(out)])
        with h5py.File(out, "r") as f:
            rec = f["rounds/seconds_record"][1:].mean()
            total = sum(f[f"rounds/{k}"][1:].mean() for k in f["rounds"] if k.startswith("seconds_"))
    return [Row("output", f"HDF5 write per round, N={s.output_nodes:,}", rec, "s", goal="< 3 % of the round"),
            Row("output", "share of the overlay-only round", 100 * rec / total, "%")]


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

    from heal_mpi.channel import Channel
    from heal_mpi.config import Config, ProtocolConfig
    from heal_mpi.context import RoundContext
    from heal_mpi.engine import Engine
    from heal_mpi.protocols.hub import HubProtocol
    from heal_mpi.runtime import make_world

    torch.set_num_threads(1)
    data = fmnist_nodes(nodes, 32)
    world = make_world(nodes, "cpu", MPI.COMM_SELF)
    base = current_rss()  # not the high-water mark: loading the data peaks higher than it stays
    pop = lenet_population(data, eval_samples=1000)
    cfg = Config(protocol=ProtocolConfig(kind="heal", fanout=2))
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
    out = subprocess.run([sys.executable, "-m", "heal_mpi.bench", "--memory-child", str(s.memory_nodes)],
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


def section_gpu(s: Scale) -> list[Row]:
    """The vmap backend with 1,000 LeNet-5 nodes on one GPU against plain PyTorch at its best batch."""
    if not torch.cuda.is_available():
        return [Row("gpu", "skipped: no CUDA device on this machine", float("nan"), "")]
    dev = torch.device("cuda:0")
    nodes = 10 * s.nodes
    data = random_nodes(nodes, s.per_node, dev)
    train_round(lenet_population(random_nodes(8, 64, dev), "vmap", device=dev), dev)  # warm-up, vmap tracing
    ours = train_round(lenet_population(data, "vmap", device=dev), dev)
    x, y = data.x_train[:s.limit_samples * 4], data.y_train[:s.limit_samples * 4]
    best = max(plain_train(x, y, b, dev) for b in (256, 1024, 4096))
    name = torch.cuda.get_device_name(dev)
    return [Row("gpu", f"vmap, {nodes:,} nodes x {s.per_node}, batch 32 on {name}", ours, "samples/s", ours / best),
            Row("gpu", "plain PyTorch, best batch, same GPU", best, "samples/s", 1.0),
            Row("gpu", "seconds per round (1 local epoch)", nodes * s.per_node / ours, "s")]


SECTIONS = {"limit": section_limit, "backends": section_backends, "round": section_round, "eval": section_eval, "scaling": section_scaling,
            "overlay": section_overlay, "output": section_output, "memory": section_memory, "gpu": section_gpu}


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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(int(sys.argv[2]))
