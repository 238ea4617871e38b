"""Rank 0's progress report: one line per round, or a bar redrawn in place on a terminal."""

from __future__ import annotations

import os
import sys
import time

import numpy as np


class Progress:
    def __init__(self, cfg, world, stream=None):
        self.stream = stream or sys.stdout
        self.total = cfg.run.rounds
        mode = cfg.run.progress
        if mode == "auto":
            # Open MPI hands every rank a pseudo-terminal even when mpirun's output goes to a
            # file, so under mpirun a terminal cannot be told from a log: print lines there.
            launched = "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ
            mode = "bar" if self.stream.isatty() and not launched else "lines"
        self.mode = mode if world.is_root else "none"
        self.t0 = time.perf_counter()
        self.done = 0

    def update(self, rnd: int, rounds: dict) -> None:
        self.done += 1
        if self.mode == "none":
            return
        elapsed = time.perf_counter() - self.t0
        per_round = elapsed / self.done
        eta = per_round * (self.total - rnd - 1)
        acc = rounds.get("acc_mean", np.nan)  # absent in overlay-only runs
        sem = rounds.get("acc_sem", 0.0)  # from evaluating a sample of the nodes; shown where it is not 0.0000
        acc_text = "   -  " if np.isnan(acc) else f"{acc:.4f}" + (f" ± {sem:.4f}" if sem >= 5e-5 else "")
        text = (f"round {rnd + 1:>{len(str(self.total))}}/{self.total}  alive {int(rounds['alive'])}  "
                f"acc {acc_text}  {per_round:.2f} s/round  ETA {eta:5.0f} s")
        if self.mode == "bar":
            filled = int(30 * (rnd + 1) / self.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
