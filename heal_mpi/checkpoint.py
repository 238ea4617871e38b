"""Checkpoints: every rank's state at a round boundary, written durably, and read back.

Layout, next to the HDF5 file `OUT`:
    OUT.ckpt/meta.json                  {"round": k, "ranks": P, ...}: the valid checkpoint
    OUT.ckpt/rank<r>.round<k>.pt        rank r's state before round k (torch.save)
Every file is written under a temporary name, fsync'ed, then renamed, and meta.json is
replaced only after every rank's file is in place (a barrier). A job killed at any moment
therefore leaves either the old or the new checkpoint valid, never a mix. Files of older
rounds are removed after meta.json moves on.

Resuming needs the same rank count (each rank's file holds its own slot block). Since no
random state is saved (all draws are keyed by round), a resumed run repeats exactly what
the uninterrupted run would have done.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import torch

from heal_mpi.runtime import World

INTERRUPTED_EXIT = 3  # exit status of a run stopped by SIGTERM/SIGUSR1 after checkpointing


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(out: Path, world: World, rnd: int, state: dict) -> None:
    """Save the state from which round `rnd` starts. Collective over `world.comm`: every rank must call."""
    folder = checkpoint_dir(out)
    if world.is_root:
        folder.mkdir(parents=True, exist_ok=True)
    world.comm.Barrier()
    _atomic_write(folder / f"rank{world.rank}.round{rnd}.pt", lambda fh: torch.save(state, fh))
    world.comm.Barrier()
    if world.is_root:
        meta = {"round": rnd, "ranks": world.size}
        _atomic_write(folder / "meta.json", lambda fh: fh.write(json.dumps(meta).encode()))
    world.comm.Barrier()
    for old in folder.glob(f"rank{world.rank}.round*.pt"):
        if old.name != f"rank{world.rank}.round{rnd}.pt":
            old.unlink(missing_ok=True)


def load(out: Path, world: World) -> tuple[int, dict]:
    """(round to start from, this rank's state). Raises ValueError naming what does not fit."""
    meta_path = checkpoint_dir(out) / "meta.json"
    if not meta_path.exists():
        raise ValueError(f"--resume: no checkpoint at {meta_path}")
    meta = json.loads(meta_path.read_text())
    if meta["ranks"] != world.size:
        raise ValueError(f"--resume: the checkpoint was written by {meta['ranks']} ranks; "
                         f"resume with mpirun -n {meta['ranks']}")
    state = torch.load(checkpoint_dir(out) / f"rank{world.rank}.round{meta['round']}.pt", weights_only=False)
    return int(meta["round"]), state


class StopRequest:
    """Remembers SIGTERM / SIGUSR1 (Slurm's warning before the time limit) until the round ends."""

    def __init__(self):
        self.signal = 0
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.signal = signum
