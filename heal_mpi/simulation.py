"""The round loop (design §1): faults, overlay, protocol, evaluate, record.

Everything is built once in `Simulation.build`; `Simulation.run` is the loop and reads
like the design. Every rank runs the same loop in lock step; each step is collective.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi import checkpoint
from heal_mpi import config as config_mod
from heal_mpi.comm import Comm
from heal_mpi.context import RoundContext
from heal_mpi.faults import FaultSchedule
from heal_mpi.metrics import round_metrics
from heal_mpi.output import Writer, run_attributes
from heal_mpi.overlay import build_overlay
from heal_mpi.progress import Progress
from heal_mpi.protocols import RoundTraffic, build_protocol, protected_slots
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


@dataclass
class Simulation:
    cfg: config_mod.Config
    world: World
    faults: FaultSchedule
    overlay: object
    protocol: object | None
    writer: Writer
    progress: Progress
    alive: np.ndarray
    incarnation: np.ndarray
    out: Path = Path("run.h5")
    start_round: int = 0
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    stop: checkpoint.StopRequest = field(default_factory=checkpoint.StopRequest)
    n_snapshots: int = 0

    @classmethod
    def build(cls, cfg: config_mod.Config, world: World, out: Path, resume: bool = False) -> "Simulation":
        """Construct every component (from the last checkpoint when resuming).

        Collective over `world.comm`: every rank must call.
        """
        set_threads(cfg, world)
        n = cfg.nodes.count
        overlay = build_overlay(cfg, world)
        protocol = None
        if cfg.protocol.kind != "none":
            from heal_mpi.learning.partition import load_local_data
            from heal_mpi.learning.population import Population
            data = load_local_data(cfg.data, cfg.run.seed, n, world.slot_lo, world.slot_hi, world.device)
            pop = Population(cfg.model, cfg.train, cfg.eval, data, cfg.run.seed, world.device)
            protocol = build_protocol(cfg, world, Comm(world), pop)
        every = cfg.overlay.snapshot_every
        writer = Writer(out, world, cfg.run.rounds, run_attributes(world, config_mod.to_toml(cfg)), resume=resume)
        faults = FaultSchedule(cfg, n, protected_slots(cfg))
        alive, incarnation = faults.initial_state()
        sim = cls(cfg=cfg, world=world, faults=faults, overlay=overlay, protocol=protocol, writer=writer,
                  progress=Progress(cfg, world), alive=alive, incarnation=incarnation, out=out,
                  n_snapshots=len(range(0, cfg.run.rounds, every)) if every else 0)
        if resume:
            sim.start_round, state = checkpoint.load(out, world)
            sim.load_state_dict(state)
            writer.mark_completed(sim.start_round)
        return sim

    def state_dict(self) -> dict:
        state = {"alive": self.alive, "incarnation": self.incarnation, "overlay": self.overlay.state_dict()}
        if self.protocol is not None:
            state |= {"population": self.protocol.pop.state_dict(), "protocol": self.protocol.state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.alive, self.incarnation = state["alive"], state["incarnation"]
        self.overlay.load_state_dict(state["overlay"])
        if self.protocol is not None:
            self.protocol.pop.load_state_dict(state["population"])
            self.protocol.load_state_dict(state["protocol"])

    def run(self) -> int:
        """All rounds; returns the exit status. Collective over `world.comm`: every rank must call."""
        interrupted = False
        for rnd in range(self.start_round, self.cfg.run.rounds):
            self.timer.start()
            debug_fault(self.world.rank, rnd)

            # 1. faults: crashes, churn, hub attacks -> who is alive this round
            ctx = self.faults.start_round(rnd, self.alive, self.incarnation, self.overlay.in_degree,
                                          do_eval=self.eval_due(rnd))
            self.alive, self.incarnation = ctx.alive, ctx.incarnation
            self.timer.lap("faults")

            # 2. overlay: one cycle; views and hub lists for this round
            self.overlay.step(ctx)
            self.timer.lap("overlay")

            # 3. protocol: local training and mixing
            traffic = self.protocol_round(ctx)
            self.timer.lap("mix")
            self.timer.move("mix", "train", traffic.train_seconds)

            # 4. evaluate
            acc, loss, distinct = self.evaluate(ctx)
            self.timer.lap("evaluate")

            # 5. record
            self.record(ctx, traffic, acc, loss, distinct)

            if self.checkpoint_due(rnd):  # a signal asked us to stop; the checkpoint is saved
                interrupted = True
                break
        self.writer.close()
        self.progress.close()
        return checkpoint.INTERRUPTED_EXIT if interrupted else 0

    def checkpoint_due(self, rnd: int) -> bool:
        """Save a checkpoint when due or when any rank got SIGTERM/SIGUSR1; True means stop now.

        After the last round there is nothing left to resume: no checkpoint, no interruption.
        """
        flag = np.array([self.stop.signal], dtype=np.int64)
        self.world.comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        self.stop.signal = int(flag[0])
        if rnd + 1 == self.cfg.run.rounds:
            return False
        every = self.cfg.run.checkpoint_every
        if self.stop.signal or (every and (rnd + 1) % every == 0):
            checkpoint.save(self.out, self.world, rnd + 1, self.state_dict())
            if self.stop.signal and self.world.is_root:
                print(f"stopped by signal {self.stop.signal} after round {rnd + 1}; checkpoint saved, "
                      f"continue with --resume", flush=True)
        return bool(self.stop.signal)

    # -- the steps ---------------------------------------------------------------------
    def eval_due(self, rnd: int) -> bool:
        last = rnd == self.cfg.run.rounds - 1
        return self.protocol is not None and (last or (rnd + 1) % self.cfg.eval.every == 0)

    def protocol_round(self, ctx: RoundContext) -> RoundTraffic:
        if self.protocol is None:
            return RoundTraffic.zeros(self.world.n_local, 0)
        pop = self.protocol.pop
        joined = ctx.joined[(ctx.joined >= self.world.slot_lo) & (ctx.joined < self.world.slot_hi)]
        if len(joined):  # churn newcomers start from a fresh model
            pop.init_nodes(joined - self.world.slot_lo, ctx.incarnation[joined])
            self.protocol.on_join(joined - self.world.slot_lo)
        pop.train_seconds, pop.train_samples = 0.0, 0
        traffic = self.protocol.round(ctx, self.overlay)
        traffic.train_seconds, traffic.train_samples = pop.train_seconds, pop.train_samples
        return traffic

    def evaluate(self, ctx: RoundContext):
        nan = np.full(self.world.n_local, np.nan)
        if not ctx.do_eval:
            return nan, nan, 0
        mask = ctx.alive[self.world.slot_lo:self.world.slot_hi]
        return self.protocol.pop.evaluate(ctx.rnd, mask=mask)

    def record(self, ctx: RoundContext, traffic: RoundTraffic, acc, loss, distinct) -> None:
        """Reduce and write this round's metrics, and a view snapshot when due."""
        w = self.world
        mpi_bytes = self.overlay_comm_bytes() + (self.protocol.comm.take_bytes() if self.protocol else 0)
        rounds, nodes = round_metrics(w.comm, ctx, slice(w.slot_lo, w.slot_hi), traffic, self.overlay,
                                      acc, loss, distinct, mpi_bytes, learning=self.protocol is not None)
        ov_rounds, ov_nodes, ov_rows = self.overlay.metrics()
        # seconds_record: the writer fills it in for this row at its next call
        rounds |= ov_rounds | {f"seconds_{p}": s for p, s in self.timer.seconds.items() if p != "record"}
        self.writer.record(ctx.rnd, rounds, nodes | ov_nodes, ov_rows)
        every = self.cfg.overlay.snapshot_every
        if every and ctx.rnd % every == 0:
            self.writer.snapshot("cache", ctx.rnd // every, ctx.rnd, self.overlay.snapshot(), self.n_snapshots)
        self.progress.update(ctx.rnd, rounds)

    def overlay_comm_bytes(self) -> int:
        comm = getattr(self.overlay, "comm", None)
        return comm.take_bytes() if comm is not None else 0


def set_threads(cfg: config_mod.Config, world: World) -> None:
    """Torch intra-op threads per rank: run.threads, or `default_threads`."""
    torch.set_num_threads(cfg.run.threads or default_threads(world.local_size))


def default_threads(ranks_on_host: int, env=os.environ) -> int:
    """The cores a rank may use: Slurm's --cpus-per-task when set, else the host's cores shared.

    On CPUs, small-batch training gains more from ranks than from threads, and a rank with
    more threads than cores slows down many times over, so a rank never gets more than its share.
    """
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(env["SLURM_CPUS_PER_TASK"]))
    return max(1, (os.cpu_count() or 1) // ranks_on_host)
