"""SIGTERM mid-run, then --resume: the file equals an uninterrupted run's."""

import subprocess

import h5py
import numpy as np
import pytest

from conftest import CHECKPOINTED as CONFIG
from conftest import ROOT, datasets, mpi_command, mpi_env, rank_pids, run_mpi, write_config

CLOCK = "[time]\nenabled = true\ncompute_dist = \"lognormal\"\ncompute_spread = 1.0\n"
# Gossip: timers, messages in flight and who was online go on from the checkpoint
ASYNC = CLOCK + "slice = 0.03\njitter = 0.2\nonline_fraction = 0.7\nday = 0.2\n[overlay]\ncache_size = 4\n"


@pytest.mark.parametrize("clock", ["", CLOCK, ASYNC], ids=["", "with-clock", "asynchronous"])
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, clock):
    """With [time] on, the resumed run's clock goes on from the checkpoint (sim_time included); in
    asynchronous rounds the nodes' timers and the messages in flight too, and who was online."""
    config = CONFIG.replace('kind = "fedavg"', 'kind = "gossip"') if clock == ASYNC else CONFIG
    cfg = write_config(tmp_path / "c.toml", config + clock)
    full, cut = tmp_path / "full.h5", tmp_path / "cut.h5"
    assert run_mpi(2, "run", str(cfg), "--out", str(full)).returncode == 0

    proc = subprocess.Popen(mpi_command(2, "run", str(cfg), "--out", str(cut)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=mpi_env(), cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("round  6/"):
            for pid in rank_pids(proc.pid):
                subprocess.run(["kill", "-TERM", str(pid)])
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=60) == 3, "".join(lines)
    assert "checkpoint saved" in "".join(lines)
    with h5py.File(cut, "r") as f:
        stopped_at = int(f.attrs["rounds_completed"])
    assert 6 <= stopped_at < 12

    r = run_mpi(2, "run", str(cfg), "--out", str(cut), "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = datasets(full), datasets(cut)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    if clock == ASYNC:
        assert (a["rounds/in_flight"][[3, 7]] > 0).all()  # held across the checkpoints (after rounds 4 and 8)
        assert 0 < a["nodes/alive"].mean() < 0.9  # nodes offline and back

    # another rank count, uninterrupted: the same to float tolerance
    other = tmp_path / "three.h5"
    assert run_mpi(3, "run", str(cfg), "--out", str(other)).returncode == 0
    np.testing.assert_allclose(datasets(other)["nodes/acc"], b["nodes/acc"], atol=1e-6, equal_nan=True)


def test_resume_needs_same_ranks_and_config(tmp_path):
    cfg = write_config(tmp_path / "c.toml", CONFIG)
    out = tmp_path / "o.h5"
    assert run_mpi(2, "run", str(cfg), "--out", str(out)).returncode == 0
    r = run_mpi(1, "run", str(cfg), "--out", str(out), "--resume")
    assert r.returncode == 2 and "mpirun -n 2" in r.stderr
    r = run_mpi(2, "run", str(cfg), "--out", str(out), "--resume", "--set", "train.lr=0.5")
    assert r.returncode == 2 and "differs" in r.stderr
