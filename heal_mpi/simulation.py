"""The round loop (design §1): faults, overlay, protocol, evaluate, record.

Everything is built once in `Simulation.build`; `Simulation.step` is one round and reads
like the design. Every rank runs the same loop in lock step. The overlay and the engine
share one Comm, which checks at every collective step, and once more before the metrics
are reduced, that every rank is in the same step (heal_mpi/comm.py): a rank out of step
ends the job with a message instead of a hang. The protocol's round runs in the Engine
(heal_mpi/engine/). Each component adds what it measured to one RoundMetrics; the reduced
Record goes to the after-round callbacks (the HDF5 writer, the progress line, the checkpoint).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi import checkpoint
from heal_mpi import config as config_mod
from heal_mpi.adversary import wiring
from heal_mpi.availability import Availability
from heal_mpi.clock import Clock
from heal_mpi.timers import samples_per_training
from heal_mpi.comm import Comm
from heal_mpi.context import RoundContext
from heal_mpi.engine.channel import Channel
from heal_mpi.engine.core import Engine
from heal_mpi.faults.schedule import FaultSchedule
from heal_mpi.metrics import Record, RoundMetrics
from heal_mpi.output import Writer, run_attributes
from heal_mpi.progress import Progress
from heal_mpi.registry import NO_PROTOCOL, OVERLAYS, build_overlay, build_protocol, protected_slots, resolve_protocol
from heal_mpi.runtime import World, debug_fault

PHASES = ("faults", "overlay", "train", "mix", "evaluate")  # and "record", timed by the Writer


@dataclass
class PhaseTimer:
    """Seconds per phase of the current round (rank 0's clock is what gets recorded)."""

    seconds: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    _t: float = 0.0

    def start(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._t = time.perf_counter()

    def lap(self, phase: str):
        now = time.perf_counter()
        self.seconds[phase] += now - self._t
        self._t = now

    def move(self, src: str, dst: str, seconds: float):
        """Book `seconds` of what was timed as `src` under `dst` (training inside the protocol)."""
        self.seconds[src] -= seconds
        self.seconds[dst] += seconds


AfterRound = Callable[[RoundContext, Record], None]


@dataclass
class Simulation:
    cfg: config_mod.Config
    world: World
    comm: Comm
    faults: FaultSchedule
    overlay: object
    engine: Engine | None  # None: no learning (protocol.kind = "none")
    writer: Writer | None  # None: nothing is written (tests drive `step` themselves)
    progress: Progress
    alive: np.ndarray
    incarnation: np.ndarray
    out: Path = Path("run.h5")
    start_round: int = 0
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    stop: checkpoint.StopRequest = field(default_factory=checkpoint.StopRequest)
    n_snapshots: int = 0
    after_round: list[AfterRound] = field(default_factory=list)
    byzantine: wiring.Byzantine | None = None  # when the run has Byzantine nodes
    clock: Clock | None = None  # simulated time ([time]); None: off
    interrupted: bool = False  # a signal asked to stop; the checkpoint callback saved one

    @classmethod
    def build(cls, cfg: config_mod.Config, world: World, out: Path | None, resume: bool = False) -> "Simulation":
        """Construct every component (from the last checkpoint when resuming). With `out` None there is
        no output file, no progress line and no checkpoint: the caller runs `step` and reads the parts.

        Collective over `world.comm`: every rank must call.
        """
        set_threads(cfg, world)
        n = cfg.nodes.count
        comm = Comm(world)
        channel = Channel(cfg.run.seed, cfg.faults.message_loss)
        overlay = build_overlay(cfg, world, channel, comm)
        clock = Clock.from_config(cfg, world, comm, len(OVERLAYS.get(cfg.overlay_kind, "overlay.kind").purposes) // 2)
        engine = None
        if cfg.protocol.kind != NO_PROTOCOL:
            from heal_mpi.learning.partition import load_local_data
            from heal_mpi.learning.population import Population
            data = load_local_data(cfg.data, cfg.run.seed, n, world.slot_lo, world.slot_hi, world.device)
            pop = Population(cfg.model, cfg.train, cfg.eval, data, cfg.run.seed, world.device)
            engine = Engine(world, pop, build_protocol(cfg, world.local_slots), channel, comm=comm, clock=clock)
            if clock is not None and cfg.time.slice > 0:
                t = cfg.train
                clock.start_timers(samples_per_training(data.train_sizes, t.batch_size, t.local_epochs, t.local_steps),
                                   engine.model_bytes, cfg.time, cfg.run.seed)
        byzantine = wiring.attach(cfg, world, channel, overlay, engine)
        every = cfg.overlay.snapshot_every
        method = NO_PROTOCOL if engine is None else resolve_protocol(cfg).name
        attrs = run_attributes(world, config_mod.to_toml(cfg), method=method, overlay=cfg.overlay_kind,
                               threads_per_rank=world.comm.allgather(torch.get_num_threads()))
        sizes = {"h": overlay.hub_width, "S": len(range(0, cfg.run.rounds, every)) if every else 0,
                 "c": overlay.snapshot().shape[1] if every else 1,  # a star's server views all N - 1
                 "K": engine.pop.data.num_classes if engine else 0}
        writer = None if out is None else Writer(out, world, cfg.run.rounds, attrs, resume=resume, sizes=sizes)
        if writer is not None and not resume:
            samples, labels = partition_counts(engine, world)
            writer.node_table("partition/samples", samples)
            writer.node_table("partition/labels", labels)
            if clock is not None:
                for name in ("compute", "uplink", "downlink", "latency"):
                    writer.node_table(f"devices/{name}", getattr(clock.devices, name)[world.slot_lo:world.slot_hi])
        never_fail = protected_slots(cfg) + ([] if byzantine is None else byzantine.ids.tolist())  # nor Byzantines
        faults = FaultSchedule(cfg, n, never_fail)
        if clock is not None:  # what never fails is never offline either
            clock.availability = Availability.from_config(cfg.time, n, cfg.run.seed, never_fail)
        alive, incarnation = faults.initial_state()
        sim = cls(cfg=cfg, world=world, comm=comm, faults=faults, overlay=overlay, engine=engine, writer=writer,
                  progress=Progress(cfg, world), alive=alive, incarnation=incarnation, out=out,
                  n_snapshots=sizes["S"], byzantine=byzantine, clock=clock)
        sim.after_round = [] if writer is None else [sim.write, sim.show_progress, sim.checkpoint]
        if resume:
            sim.start_round, state = checkpoint.load(out, world)
            sim.load_state_dict(state)
            writer.mark_completed(sim.start_round)
            comm.take_bytes()  # the set-up's collectives (initial in-degrees) were counted in round 0 already
        return sim

    def state_dict(self) -> dict:
        state = {"alive": self.alive, "incarnation": self.incarnation, "overlay": self.overlay.state_dict()}
        if self.clock is not None:
            state["clock"] = self.clock.state_dict()
        if self.engine is not None:
            state |= {"population": self.engine.pop.state_dict(), "protocol": self.engine.protocol.state_dict(),
                      "flights": self.engine.flights.state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.alive, self.incarnation = state["alive"], state["incarnation"]
        self.overlay.load_state_dict(state["overlay"])
        if self.clock is not None:
            self.clock.load_state_dict(state["clock"])
        if self.engine is not None:
            self.engine.pop.load_state_dict(state["population"])
            self.engine.protocol.load_state_dict(state["protocol"])
            self.engine.flights.load_state_dict(state.get("flights", {}), self.world.device)

    def run(self) -> int:
        """All rounds; returns the exit status. Collective over `world.comm`: every rank must call."""
        for rnd in range(self.start_round, self.cfg.run.rounds):
            self.step(rnd)
            if self.interrupted:
                break
        if self.writer is not None:
            self.writer.close()
        self.progress.close()
        self.comm.free()
        return checkpoint.INTERRUPTED_EXIT if self.interrupted else 0

    def step(self, rnd: int) -> None:
        """One round. Collective over `world.comm`: every rank must call."""
        self.timer.start()
        self.comm.start_round(rnd)
        debug_fault(self.world.rank, rnd)

        # 1. faults: crashes, churn, hub attacks -> who is alive this round
        ctx = self.faults.start_round(rnd, self.alive, self.incarnation, self.overlay.in_degree,
                                      do_eval=self.eval_due(rnd))
        self.alive, self.incarnation = ctx.alive, ctx.incarnation
        if self.clock is not None:  # who is online, and (asynchronous rounds) whose timer fires
            ctx = self.clock.start_round(ctx)
        self.timer.lap("faults")

        # 2. overlay: one cycle; views and hub lists for this round
        self.overlay.step(ctx)
        if self.clock is not None:
            self.clock.overlay(self.overlay.traffic)
        self.timer.lap("overlay")

        # 3. protocol: local training and mixing, step by step in the engine (and on the simulated clock)
        if self.engine is not None:
            self.engine.round(ctx, self.overlay)
            self.timer.lap("mix")
            self.timer.move("mix", "train", self.engine.train_seconds)
        if self.clock is not None:
            self.clock.end_round(ctx.alive[self.world.slot_lo:self.world.slot_hi])

        # 4. evaluate
        acc, loss, distinct = self.evaluate(ctx)
        self.timer.lap("evaluate")

        # 5. record: reduce what every component measured, then the after-round callbacks
        #    (write the row, show progress, checkpoint; a signal makes the last one stop the run)
        record = self.measure(ctx, acc, loss, distinct)
        for callback in self.after_round:
            callback(ctx, record)

    def checkpoint(self, ctx: RoundContext, record: Record) -> None:
        """Save a checkpoint when due or when any rank got SIGTERM/SIGUSR1, and then stop.

        After the last round there is nothing left to resume: no checkpoint, no interruption.
        """
        rnd = ctx.rnd
        flag = np.array([self.stop.signal], dtype=np.int64)
        self.world.comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        # Only the agreed value decides: a signal that reaches one rank after the Allreduce is
        # kept in self.stop for the next round (reading self.stop again here let the ranks disagree).
        signal = int(flag[0])
        if rnd + 1 == self.cfg.run.rounds:
            return
        every = self.cfg.run.checkpoint_every
        if signal or (every and (rnd + 1) % every == 0):
            checkpoint.save(self.out, self.world, rnd + 1, self.state_dict(), self.writer.completed)
            if signal and self.world.is_root:
                print(f"stopped by signal {signal} after round {rnd + 1}; checkpoint saved, "
                      f"continue with --resume", flush=True)
        self.interrupted = bool(signal)

    # -- the steps ---------------------------------------------------------------------
    def eval_due(self, rnd: int) -> bool:
        last = rnd == self.cfg.run.rounds - 1
        return self.engine is not None and (last or (rnd + 1) % self.cfg.eval.every == 0)

    def evaluate(self, ctx: RoundContext):
        nan = np.full(self.world.n_local, np.nan)
        if not ctx.do_eval:
            return nan, nan, 0
        mask = ctx.alive[self.world.slot_lo:self.world.slot_hi]
        return self.engine.pop.evaluate(ctx.rnd, mask=mask)

    def measure(self, ctx: RoundContext, acc, loss, distinct) -> Record:
        """This round's metrics from every component, reduced over the ranks (one Allreduce)."""
        local = slice(self.world.slot_lo, self.world.slot_hi)
        metrics = RoundMetrics()
        metrics.set("alive", ctx.n_alive)
        metrics.add_node("alive", ctx.alive[local].astype(np.int8))
        metrics.add_node("incarnation", ctx.incarnation[local].astype(np.int32))
        honest = np.ones(self.world.n_local, dtype=bool)
        if self.byzantine is not None:
            self.byzantine.contribute(metrics, self.overlay)
            honest = ~self.byzantine.mask[local]
        self.overlay.contribute(metrics)
        if self.clock is not None:
            self.clock.contribute(metrics, ctx.alive[local])
        if self.engine is not None:
            self.engine.contribute(metrics, honest)
            metrics.add_mean("acc_mean", np.where(honest, acc, np.nan))  # Byzantine models are not the result
            metrics.add_std("acc_std", np.where(honest, acc, np.nan))
            metrics.add_sem("acc_sem", np.where(honest, acc, np.nan), int((honest & ctx.alive[local]).sum()))
            metrics.add_mean("loss_mean", np.where(honest, loss, np.nan))
            if self.byzantine is not None:
                metrics.add_mean("byzantine_acc_mean", np.where(honest, np.nan, acc))
            metrics.add_sum("evaluated_models", distinct)
            metrics.add_node("acc", np.asarray(acc, dtype=np.float32))
            metrics.add_node("loss", np.asarray(loss, dtype=np.float32))
        metrics.add_sum("mpi_bytes", self.comm.take_bytes())  # every exchange of the round, overlay and engine
        record = metrics.reduce(self.comm)
        # seconds_record: the writer fills it in for this row at its next call
        record.rounds |= {f"seconds_{p}": s for p, s in self.timer.seconds.items()}
        return record

    # -- after-round callbacks ---------------------------------------------------------------
    def write(self, ctx: RoundContext, record: Record) -> None:
        """The round's row of /rounds, /nodes and /overlay, and a view snapshot when due."""
        self.writer.record(ctx.rnd, record.rounds, record.nodes, record.rows)
        every = self.cfg.overlay.snapshot_every
        if every and ctx.rnd % every == 0:
            self.writer.snapshot("cache", ctx.rnd // every, ctx.rnd, self.overlay.snapshot(), self.n_snapshots)

    def show_progress(self, ctx: RoundContext, record: Record) -> None:
        self.progress.update(ctx.rnd, record.rounds)


def partition_counts(engine: Engine | None, world: World) -> tuple[np.ndarray, np.ndarray]:
    """This rank's nodes' training samples [n_local] and samples per class [n_local, K] (K = 0 without data)."""
    if engine is None:
        return np.zeros(world.n_local, np.int64), np.zeros((world.n_local, 0), np.int64)
    data = engine.pop.data
    y = data.y_train.cpu().numpy()
    node = np.repeat(np.arange(world.n_local), np.diff(data.train_offsets))
    labels = np.zeros((world.n_local, data.num_classes), np.int64)
    np.add.at(labels, (node, y), 1)
    return np.diff(data.train_offsets).astype(np.int64), labels


def set_threads(cfg: config_mod.Config, world: World) -> None:
    """Torch intra-op threads per rank: run.threads, or `default_threads`."""
    torch.set_num_threads(cfg.run.threads or default_threads(world.local_size))


def default_threads(ranks_on_host: int, env=os.environ) -> int:
    """The cores a rank may use: Slurm's --cpus-per-task when set, one in a Slurm job without it (Slurm
    gave the task one CPU, and array tasks share the node), else the host's cores shared.

    On CPUs, small-batch training gains more from ranks than from threads, and a rank with
    more threads than cores slows down many times over, so a rank never gets more than its share.
    """
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(env["SLURM_CPUS_PER_TASK"]))
    if env.get("SLURM_JOB_ID"):
        return 1
    return max(1, (os.cpu_count() or 1) // ranks_on_host)
