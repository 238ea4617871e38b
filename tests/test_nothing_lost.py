"""Nothing lost, nothing silent: a job owns its output; a full disk while a checkpoint is written and a
damaged checkpoint on --resume are named, with what is safe and what to do; after the full disk,
freeing space and --resume gives the file an uninterrupted run gives."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CHECKPOINTED as CONFIG
from conftest import ROOT, datasets, mpi_command, mpi_env, rank_pids, run_mpi, wait_for_round, write_config
from heal_mpi.lock import lock_path

def one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("heal-mpi: error")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ----------------------------------------------------------------------------- the lock

def test_a_second_job_on_a_running_jobs_output_is_refused_and_the_first_one_finishes(tmp_path):
    cfg = write_config(tmp_path / "c.toml", CONFIG.replace("rounds = 12", "rounds = 400"))
    out = tmp_path / "o.h5"
    first = subprocess.Popen(mpi_command(2, "run", str(cfg), "--out", str(out)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=mpi_env(), cwd=ROOT)
    wait_for_round(first, 2)
    second = run_mpi(2, "run", str(cfg), "--out", str(out), "--overwrite")
    assert second.returncode == 2
    line = one_error_line(second)
    assert f"run.out: {out} is being written by another job (host {socket.gethostname()}, process" in line
    assert "since 20" in line and "choose another --out" in line
    resumed = run_mpi(2, "run", str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 2 and "being written by another job" in resumed.stderr
    first.stdout.read()
    assert first.wait(timeout=120) == 0, first.stderr.read()
    with h5py.File(out, "r") as f:
        assert f.attrs["rounds_completed"] == 400  # the first job's results are whole
    assert not lock_path(out).exists()  # and its lock is gone


def fake_lock(out, **holder):
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": 1, "since": time.time(), **holder}))


@pytest.mark.parametrize("holder,age,taken", [
    ({"pid": 2**22 + 7}, 0, "its process 4194311 on this host is gone"),           # a job that died here
    ({"host": "elsewhere", "pid": 1}, 0, None),                                      # alive elsewhere, maybe
    ({"host": "elsewhere", "pid": 1}, 400, "it was last touched 4"),                 # silent for too long
    ({"host": "elsewhere", "pid": 1, "slurm_job": "77"}, 0, "an earlier run of this Slurm job 77"),  # a requeue
])
def test_a_lock_left_by_a_job_that_died_does_not_block_the_next_one(tmp_path, holder, age, taken):
    cfg = write_config(tmp_path / "c.toml", CONFIG.replace("rounds = 12", "rounds = 6"))
    out = tmp_path / "o.h5"
    fake_lock(out, **holder)
    os.utime(lock_path(out), (time.time() - age, time.time() - age))
    r = run_mpi(1, "run", str(cfg), "--out", str(out), SLURM_JOB_ID="77")
    if taken is None:
        assert r.returncode == 2 and "is being written by another job (host elsewhere, process 1" in r.stderr
        assert lock_path(out).exists() and not out.exists()
    else:
        assert r.returncode == 0, r.stderr
        assert "taking over the lock" in r.stderr and taken in r.stderr
        assert not lock_path(out).exists()


@pytest.mark.parametrize("how,status", [("an error on rank 1", 1), ("SIGTERM", 3)])
def test_the_lock_goes_however_the_job_ends(tmp_path, how, status):
    cfg = write_config(tmp_path / "c.toml", CONFIG)
    out = tmp_path / "o.h5"
    if how == "SIGTERM":
        proc = subprocess.Popen(mpi_command(2, "run", str(cfg), "--out", str(out)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=mpi_env(), cwd=ROOT)
        wait_for_round(proc, 3)
        for pid in rank_pids(proc.pid):
            subprocess.run(["kill", "-TERM", str(pid)])
        try:
            proc.communicate(timeout=120)  # a job whose ranks disagreed on stopping would hang here
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == status
    else:
        assert run_mpi(3, "run", str(cfg), "--out", str(out), HEAL_MPI_DEBUG_RAISE="1:2").returncode == status
    assert not lock_path(out).exists()


# ----------------------------------------------------------------------------- checkpoints

FULL_DISK = """
import errno, sys
import heal_mpi.checkpoint as checkpoint

real_open = open
def device_full_at_round(path, mode="r", *args, **kw):  # the checkpoint of round 8 hits a full device
    fh = real_open(path, mode, *args, **kw)
    if "round8.pt" not in str(path):
        return fh
    class Full:
        def __init__(self): self.n = 0
        def write(self, data):
            self.n += len(data)
            if self.n > 200:
                raise OSError(errno.ENOSPC, "No space left on device")
            return fh.write(data)
        def __getattr__(self, name): return getattr(fh, name)
        def __enter__(self): return self
        def __exit__(self, *exc): fh.close()
    return Full()
checkpoint.open = device_full_at_round
from heal_mpi.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_full_disk_during_a_checkpoint_names_the_file_then_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = write_config(tmp_path / "c.toml", CONFIG)
    full, cut = tmp_path / "full.h5", tmp_path / "cut.h5"
    assert run_mpi(2, "run", str(cfg), "--out", str(full)).returncode == 0
    script = write_config(tmp_path / "full_disk.py", FULL_DISK)
    r = subprocess.run(["mpirun", "--quiet", "-n", "2", sys.executable, str(script), "run", str(cfg), "--out", str(cut)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=mpi_env(PYTHONPATH=str(ROOT)))
    assert r.returncode == 1
    line = one_error_line(r)
    assert f"writing the checkpoint {cut}.ckpt/rank" in line and ".round8.pt failed: the device is full" in line, line
    assert "its first 8 rounds were complete" in line and "the checkpoint of round 4 is intact" in line, line
    assert "free space, then rerun with --resume" in line, line
    assert not list((tmp_path / "cut.h5.ckpt").glob("*.tmp")) and not lock_path(cut).exists()

    r = run_mpi(2, "run", str(cfg), "--out", str(cut), "--resume")  # space freed: the same run goes on
    assert r.returncode == 0, r.stderr
    a, b = datasets(full), datasets(cut)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """A finished run of 6 rounds and its checkpoint of round 4 (the last round leaves it in place)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = write_config(tmp / "c.toml", CONFIG.replace("rounds = 12", "rounds = 6"))
    out = tmp / "o.h5"
    assert run_mpi(2, "run", str(cfg), "--out", str(out)).returncode == 0
    return cfg, out


def damage(path, how: str, at: float, value: int) -> None:
    data = bytearray(path.read_bytes())
    i = max(0, min(int(at * len(data)), len(data) - 1))
    if how == "truncate":
        data = data[:i]
    elif how == "flip" and data:
        data[i] ^= 1 << (value % 8)
    else:
        data = data[:i] + bytes([value % 256]) * 64 + data[i:]
    path.write_bytes(bytes(data))


@settings(derandomize=True, deadline=None, database=None, max_examples=6,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["rank0.round4.pt", "rank1.round4.pt", "meta.json"]),
       how=st.sampled_from(["truncate", "flip", "insert"]), at=st.floats(0.0, 0.99), value=st.integers(0, 255))
def test_a_damaged_checkpoint_is_named_on_resume(checkpointed, tmp_path, which, how, at, value):
    import tempfile
    cfg, original = checkpointed
    here = tempfile.mkdtemp(dir=tmp_path)  # one folder per example: the fixture's tmp_path is shared
    out = Path(here) / "o.h5"
    subprocess.run(["cp", "-r", str(original), str(out)], check=True)
    subprocess.run(["cp", "-r", f"{original}.ckpt", f"{out}.ckpt"], check=True)
    damage(Path(f"{out}.ckpt") / which, how, at, value)
    r = run_mpi(2, "run", str(cfg), "--out", str(out), "--resume")
    if r.returncode == 0:  # a flip the checks cannot see (in JSON whitespace, say) changed nothing that matters
        assert which == "meta.json"
        return
    assert r.returncode == 2, r.stderr
    line = one_error_line(r)
    if which == "meta.json":
        assert f"{out}.ckpt/meta.json is damaged" in line or "was written by" in line or "is damaged" in line, line
    else:
        assert f"the checkpoint {out}.ckpt/{which} is damaged: " in line, line
        assert "its first 6 rounds were complete" in line and "--overwrite starts again" in line, line
