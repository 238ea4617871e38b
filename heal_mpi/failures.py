"""One place that turns OS and I/O errors into the line a user reads: which file, the reason in
words, what is safe in the output, and the next step. Used for output paths (before a run),
the HDF5 file (during it), checkpoints (writing them, and reading them back on --resume).

Light (no mpi4py, no torch, no h5py at import).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from heal_mpi.errors import OutputError

REASONS = {  # errno -> the words a user reads
    errno.ENOSPC: "the device is full (no space left)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.ENAMETOOLONG: "the name is longer than the file system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EFBIG: "the file is larger than allowed (File too large)",
    errno.EIO: "Input/output error",
}


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def os_reason(error: BaseException, path: Path | None = None) -> str:
    """Why an operation failed, in words: from its errno, else the errno HDF5 or torch printed, else a
    device with no space left, else the error's first line."""
    code = getattr(error, "errno", None)
    if code is None:
        found = re.search(r"errno = (\d+)", str(error))
        code = int(found.group(1)) if found else None
    if code is None and path is not None and free_bytes(path) == 0:
        code = errno.ENOSPC
    if code in REASONS:
        return REASONS[code]
    text = getattr(error, "strerror", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    if code:  # HDF5's detail (time, file descriptor, offsets) says less than the errno does
        head = text.split(" (")[0]
        return head if head == os.strerror(code) else f"{head} ({os.strerror(code)})"
    return text


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return None


def path_problem(out: Path) -> str | None:
    """Why OUT could not be written, judged without creating anything; None when it can."""
    try:
        if out.is_dir():
            return f"{out} is a directory, not a file"
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the nearest existing ancestor: the folders below it get created
        if not folder.is_dir():
            return f"cannot create the folder {out.parent}: {folder} is a file"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot write in {folder} (permission denied)"
        for part in (*out.parts, out.name + ".ckpt", out.name + ".lock"):  # what the run will create
            if len(os.fsencode(part)) > os.pathconf(folder, "PC_NAME_MAX"):
                return f"{out}: the name {part[:40]!r}... is longer than the file system allows"
    except OSError as e:
        return f"{out}: {os_reason(e)}"
    return None


def _safe(completed: int) -> str:
    return (f"its first {completed} rounds were complete (attribute rounds_completed)" if completed
            else "no round was complete in it yet")


def last_checkpoint(out: Path) -> int | None:
    """The round the valid checkpoint of OUT starts from, or None."""
    try:
        return int(json.loads((checkpoint_dir(out) / "meta.json").read_text())["round"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_failure(path: Path, completed: int, error: BaseException) -> OutputError:
    """The line a user reads when the HDF5 file `path` fails mid-run."""
    reason = os_reason(error, path)
    start = last_checkpoint(path)
    if start is None:
        then = "there is no checkpoint to resume from (set run.checkpoint_every)"
    else:
        fix = "free space, then" if reason.startswith("the device is full") else "once fixed,"
        then = (f"{fix} rerun with --resume to continue from the checkpoint (round {start}); if the failed "
                "write left the file unreadable, --resume says so and --overwrite starts again")
    return OutputError(f"writing {path} failed: {reason}; {_safe(completed)}; {then}")


def checkpoint_failure(file: Path, out: Path, completed: int, error: BaseException) -> OutputError:
    """The line a user reads when writing the checkpoint `file` of OUT fails (the previous one stays valid)."""
    reason = os_reason(error, file)
    start = last_checkpoint(out)
    fix = "free space, then" if reason.startswith("the device is full") else "once fixed,"
    then = (f"the checkpoint of round {start} is intact: {fix} rerun with --resume to continue from it"
            if start is not None else "there is no earlier checkpoint: --overwrite starts again")
    return OutputError(f"writing the checkpoint {file} failed: {reason}; {out} is safe ({_safe(completed)}); {then}")


def damaged_checkpoint(file: Path) -> str | None:
    """Why a checkpoint file cannot be read back (missing, truncated, corrupt), or None when it is whole."""
    try:
        with zipfile.ZipFile(file) as z:  # torch.save writes a zip archive: check every member's CRC
            bad = z.testzip()
        return None if bad is None else f"its part {bad} is corrupt"
    except FileNotFoundError:
        return "it is missing"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"it is truncated or not a checkpoint ({str(e).strip() or type(e).__name__})"


def resume_problem(out: Path, ranks: int, completed: int) -> str | None:
    """Why --resume cannot continue OUT from its checkpoint, as one line; None when it can."""
    meta = checkpoint_dir(out) / "meta.json"
    if not meta.exists():
        return f"run.out: --resume but {out} has no checkpoint in {checkpoint_dir(out)}"
    try:
        info = json.loads(meta.read_text())
        start, written_by = int(info["round"]), int(info["ranks"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"run.out: --resume: the checkpoint {meta} is damaged ({e}); --overwrite starts again"
    if written_by != ranks:
        return f"run.out: the checkpoint of {out} was written by {written_by} ranks; resume with mpirun -n {written_by}"
    for r in range(written_by):
        file = checkpoint_dir(out) / f"rank{r}.round{start}.pt"
        why = damaged_checkpoint(file)
        if why:
            return (f"run.out: --resume: the checkpoint {file} is damaged: {why}; {out} is safe "
                    f"({_safe(completed)}) but cannot continue from it; --overwrite starts again")
    return None
