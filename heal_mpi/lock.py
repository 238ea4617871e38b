"""A job owns its output: one lock per output path, taken before anything is written, for as long as the job runs.

`OUT.lock`, beside the HDF5 file, covers the file and its checkpoint folder `OUT.ckpt/`. It
holds who took it (host, process id of rank 0, since when, the Slurm job id when there is
one) and is created with O_CREAT | O_EXCL, which is atomic on local disks and on the shared
file systems of clusters (NFS v3 and later, Lustre, GPFS). While the job runs, rank 0 touches
it every HEARTBEAT_S seconds. A second job on the same path, `--overwrite` or `--resume`
included, is refused with one line naming the holder.

A lock whose holder is gone does not block the next job: it is stale, and taken over with a
line on stderr, when its holder ran on this host and its process is gone; when it belongs to
an earlier run of the same Slurm job (a requeue); or when it has not been touched for
`HEAL_MPI_LOCK_STALE` seconds (default 300: a holder on another host we cannot ask; the hosts'
clocks must agree to well within that). The lock is removed however the job ends: success,
an error on any rank (every rank knows the job's token and the failing one removes it before
the abort), SIGTERM or SIGUSR1 (the checkpoint exit). Only a job killed outright (SIGKILL, a
node lost) leaves it, and then it is stale by the rules above.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from heal_mpi.errors import ConfigError

HEARTBEAT_S = 30.0


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def stale_after() -> float:
    return float(os.environ.get("HEAL_MPI_LOCK_STALE", "300"))


class OutputLock:
    """The lock of one output path, taken by rank 0 of the job that writes it; every rank of the job
    knows its `token` and may release it."""

    def __init__(self, out: Path, token: str = ""):
        self.out, self.path, self.token = Path(out), lock_path(Path(out)), token
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError (exit 2) naming the job that holds it."""
        self.token = uuid.uuid4().hex
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
              "slurm_job": os.environ.get("SLURM_JOB_ID", ""), "out": str(self.out), "token": self.token}
        for _ in range(3):  # a race with another job taking over the same stale lock: read again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                why = self._stale(holder, me)
                if why is None:
                    raise ConfigError(f"run.out: {self.out} is being written by another job ({describe(holder)}); "
                                      f"wait for it to end or choose another --out (its lock: {self.path})") from None
                self._take_over(why, holder)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._beat = threading.Thread(target=self._heartbeat, name="heal-mpi-lock", daemon=True)
            self._beat.start()
            return
        raise ConfigError(f"run.out: cannot take the lock {self.path}: other jobs keep taking it")

    def release(self) -> None:
        """Remove the lock if it is this job's (idempotent; any rank; safe on an abort path)."""
        self._stop.set()
        if self.token and self._read().get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = ""

    def _read(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
            holder["touched"] = self.path.stat().st_mtime
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {"touched": _mtime(self.path)}  # half written, or gone meanwhile: judged by its age

    def _stale(self, holder: dict, me: dict) -> str | None:
        """Why the holder is gone, or None when it may be running."""
        if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
            return f"its process {holder['pid']} on this host is gone"
        if holder.get("slurm_job") and holder.get("slurm_job") == me["slurm_job"]:
            return f"it was taken by an earlier run of this Slurm job {me['slurm_job']} (a requeue)"
        age = time.time() - holder.get("touched", time.time())
        if age > stale_after():
            return f"it was last touched {age:.0f} s ago (HEAL_MPI_LOCK_STALE = {stale_after():.0f} s)"
        return None

    def _take_over(self, why: str, holder: dict) -> None:
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)  # only one of two racing jobs moves this very file
            aside.unlink()
        except OSError:
            return
        sys.stderr.write(f"heal-mpi: taking over the lock of {self.out} left by a job that ended "
                         f"({describe(holder)}): {why}\n")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return


def describe(holder: dict) -> str:
    """"host h, process 123, Slurm job 55, since 2026-12-04 11:00:00 UTC"."""
    parts = [f"host {holder.get('host', '?')}", f"process {holder.get('pid', '?')}"]
    if holder.get("slurm_job"):
        parts.append(f"Slurm job {holder['slurm_job']}")
    if "since" in holder:
        since = datetime.fromtimestamp(float(holder["since"]), tz=timezone.utc)
        parts.append(f"since {since:%Y-%m-%d %H:%M:%S} UTC")
    return ", ".join(parts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
