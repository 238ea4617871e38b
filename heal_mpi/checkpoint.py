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

from heal_mpi.errors import OutputError
from heal_mpi.failures import checkpoint_dir, checkpoint_failure, damaged_checkpoint
from heal_mpi.runtime import World

INTERRUPTED_EXIT = 3  # exit status of a run stopped by SIGTERM/SIGUSR1 after checkpointing


class _Recorded:
    """A file whose first OSError is kept: torch.save reports a failed write as a RuntimeError
    ("unexpected pos"), and the errno it hides is what tells a full device."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data):
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self.fh, name)


def _atomic_write(path: Path, write) -> None:
    """Write `path` under a temporary name, fsync, rename; on failure remove the temporary file and
    raise the OSError that caused it (the one the writer saw first)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as raw:
            fh = _Recorded(raw)
            try:
                write(fh)
                raw.flush()
                os.fsync(raw.fileno())
            except Exception as e:
                raise (fh.error or e) from e
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(out: Path, world: World, rnd: int, state: dict, completed: int) -> None:
    """Save the state from which round `rnd` starts (`completed` rounds are in the HDF5 file). A
    failed write raises OutputError naming the file; the previous checkpoint stays valid.
    Collective over `world.comm`: every rank must call."""
    folder = checkpoint_dir(out)
    file = folder / f"rank{world.rank}.round{rnd}.pt"
    try:
        if world.is_root:
            folder.mkdir(parents=True, exist_ok=True)
        world.comm.Barrier()
        _atomic_write(file, lambda fh: torch.save(state, fh))
        world.comm.Barrier()
        if world.is_root:
            file = folder / "meta.json"
            meta = {"round": rnd, "ranks": world.size}
            _atomic_write(file, lambda fh: fh.write(json.dumps(meta).encode()))
    except (OSError, RuntimeError) as e:
        raise checkpoint_failure(file, out, completed, e) from e
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
    file = checkpoint_dir(out) / f"rank{world.rank}.round{meta['round']}.pt"
    try:
        state = torch.load(file, weights_only=False)
    except Exception as e:  # noqa: BLE001 - whatever torch raises for a file it cannot read
        raise OutputError(f"reading the checkpoint {file} failed: {damaged_checkpoint(file) or e}; "
                          f"--overwrite starts again") from None
    return int(meta["round"]), state


class StopRequest:
    """Remembers SIGTERM / SIGUSR1 (Slurm's warning before the time limit) until the round ends."""

    def __init__(self):
        self.signal = 0
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.signal = signum
