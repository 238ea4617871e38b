"""The benchmark's sections: each measures one thing next to its yardstick and returns its rows."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from heal_mpi.bench.table import Row, Scale
from heal_mpi.bench.workloads import (CORES, fmnist_nodes, lenet_data, lenet_population, plain_infer,
                                      plain_train, random_nodes, reference_config, run_mpi, steady_round,
                                      train_round)

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
    rows.append(Row("backends", "plain PyTorch, batch 32, 1 thread", plain, "samples/s", 1.0))
    return rows + crossdevice_rows(s)


def crossdevice_rows(s: Scale) -> list[Row]:
    """Many nodes of a few samples (batch 10), logreg and mlp, one thread: the loop against the
    batched backend, and plain PyTorch training one such model at batch 10 and at its best batch.
    Each backend's second round is timed: its first touches the optimizer state's fresh memory
    (once a run; on the development VM it took three times a later round), as plain PyTorch
    times only after its warm-up steps."""
    rows = []
    for model in ("logreg", "mlp"):
        data = random_nodes(s.tiny_nodes, 10, "cpu")
        x, y = data.x_train, data.y_train
        plain = {b: plain_train(x, y, b, model=model) for b in (10, 64, 256, 1024, 4096) if b <= len(y) // 2}
        best = max(plain, key=plain.get)
        what = f"{model}, {s.tiny_nodes:,} nodes x 10, batch 10, 1 thread"
        for backend in ("loop", "batched"):
            pop = lenet_population(data, backend, model=model, batch=10)
            train_round(pop)
            rate = train_round(pop)
            rows.append(Row("backends", f"{backend}, {what}", rate, "samples/s", rate / plain[best],
                            ">= 0.25x" if backend == "batched" and model == "logreg" else ""))
        rows += [Row("backends", f"plain PyTorch {model}, batch 10, 1 thread", plain[10], "samples/s",
                     plain[10] / plain[best]),
                 Row("backends", f"plain PyTorch {model}, best batch ({best}), 1 thread", plain[best], "samples/s", 1.0)]
    torch.set_num_threads(CORES)
    return rows


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
    """Evaluating distinct models (a Gossip round) against plain PyTorch inference at its best batch.

    The two alternate, three times, over as many images each, and each keeps its best: on a shared
    machine a single pass of either can lose a quarter of its speed to a neighbour.
    """
    torch.set_num_threads(CORES)
    data = fmnist_nodes(s.eval_nodes, 8)
    pop = lenet_population(data)
    pop.rows.add_(0.01 * torch.randn_like(pop.rows))  # every node a different model
    x = data.x_test
    batch = max((64, 128, 256, 512, 1024, 4096), key=lambda b: plain_infer(x, b))
    ours, best = 0.0, 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        _, _, distinct = pop.evaluate(0)
        ours = max(ours, distinct * len(data.y_test) / (time.perf_counter() - t0))
        best = max(best, plain_infer(x, batch, passes=distinct))
    return [Row("eval", f"{distinct} distinct models on the {len(x):,}-image test set", ours, "samples/s",
                ours / best, ">= 0.9x"),
            Row("eval", f"plain PyTorch inference, best batch ({batch})", best, "samples/s", 1.0)]


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
    """Elevator cycles at each N on 1 and 2 ranks: snapshot semantics, then sequential (one node a
    turn, PeerSim's order, and 10 turns a cycle) at the smaller sizes, as a multiple of the snapshot
    cycle's time."""
    rows, snapshot = [], {}
    orders = [("snapshot", 0, s.overlay_sizes, s.overlay_cycles),
              ("sequential", 0, s.sequential_sizes, s.sequential_cycles),
              ("sequential", 10, s.sequential_sizes, s.overlay_cycles[:len(s.sequential_sizes)])]
    for semantics, substeps, sizes, cycles in orders:
        for ranks in (1, 2):
            out = run_mpi(ranks, ["heal_mpi.bench.overlay", "--sizes", *map(str, sizes), "--cycles", *map(str, cycles),
                                  "--semantics", semantics, "--substeps", str(substeps)])
            for line in out.splitlines()[1:]:
                n, _, _, turns, n_cycles, secs, _, _, mpi, _ = line.split()
                per_cycle = float(secs) / int(n_cycles)
                if semantics == "snapshot":
                    snapshot[(n, ranks)] = per_cycle
                goal = "< 0.3 s (100 cycles < 30 s)" if int(n) == 10000 and ranks == 2 and semantics == "snapshot" \
                    else ""
                order = semantics if semantics == "snapshot" else f"sequential in {int(turns):,} turns"
                base = snapshot.get((n, ranks), 0.0)  # a quick run's snapshot cycle can round to 0 s
                rows.append(Row("overlay", f"Elevator N={int(n):,}, {order}, {ranks} rank(s): one cycle "
                                f"({n_cycles} timed, {mpi} MPI B/cycle)", per_cycle, "s",
                                per_cycle / base if base > 0 else np.nan, goal))
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


def section_clock(s: Scale) -> list[Row]:
    """The same HEAL round (LeNet-5, 2 ranks) without and with simulated time (`[time]`, a fifth of
    the nodes 4x slower): the clock's share of the round."""
    ranks, rounds, seconds = min(2, CORES), 5, {}
    with tempfile.TemporaryDirectory() as tmp:
        for clock in (False, True):
            cfg = reference_config(Path(tmp) / f"clock{clock}.toml", "heal", s.clock_nodes, s.clock_per_node, rounds)
            if clock:
                cfg.write_text(cfg.read_text() + "[time]\nenabled = true\nslow_fraction = 0.2\nslow_factor = 4.0\n")
            out = Path(tmp) / f"clock{clock}.h5"
            run_mpi(ranks, ["heal_mpi", "run", str(cfg), "--out", str(out)])
            with h5py.File(out, "r") as f:  # rounds 2 to R-1: the first warms up, the last is evaluated
                seconds[clock] = np.median(sum(f[f"rounds/{k}"][1:-1] for k in f["rounds"] if k.startswith("seconds_")))
    n = f"HEAL N={s.clock_nodes:,}, {s.clock_per_node} samples/node, {ranks} rank(s)"
    return [Row("clock", f"{n}: one round without [time]", seconds[False], "s", 1.0),
            Row("clock", f"{n}: one round with [time]", seconds[True], "s", seconds[True] / seconds[False], "<= 1.05x")]


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
    best = max(plain_train(x, y, b, dev) for b in (64, 128, 256, 512, 1024, 4096))
    name = torch.cuda.get_device_name(dev)
    return [Row("gpu", f"vmap, {nodes:,} nodes x {s.per_node}, batch 32 on {name}", ours, "samples/s", ours / best),
            Row("gpu", "plain PyTorch, best batch, same GPU", best, "samples/s", 1.0),
            Row("gpu", "seconds per round (1 local epoch)", nodes * s.per_node / ours, "s")]
