"""End-to-end runs under mpirun: rank-count independence, HDF5 output, kills, failures."""

import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import ROOT, mpi_command, mpi_env, run_mpi


def run_ok(n, cfg, out, *extra):
    r = run_mpi(n, "run", str(cfg), "--out", str(out), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_same_results_on_1_2_3_ranks(small_fedavg, tmp_path):
    accs = []
    for n in (1, 2, 3):
        out = tmp_path / f"r{n}.h5"
        run_ok(n, small_fedavg, out)
        with h5py.File(out, "r") as f:
            assert f.attrs["ranks"] == n and f.attrs["rounds_completed"] == 5
            accs.append(f["nodes/acc"][:])
    assert accs[0].shape == (5, 11) and not np.isnan(accs[0][:, 1:]).any()
    for other in accs[1:]:
        np.testing.assert_allclose(other, accs[0], atol=1e-6, equal_nan=True)


def test_output_layout_and_mpio_driver(small_fedavg, tmp_path):
    out = tmp_path / "o.h5"
    r = run_ok(2, small_fedavg, out)
    assert "round 5/5" in r.stdout
    with h5py.File(out, "r") as f:
        assert f.attrs["hdf5_driver"] == ("mpio" if h5py.get_config().mpi else "rank0-gather")
        for key in ("config", "version", "mpi_library", "h5py_version", "torch_version"):
            assert key in f.attrs
        assert f.attrs["method"] == "fedavg" and f.attrs["overlay"] == "star"
        assert f.attrs["threads_per_rank"].tolist() == [1, 1]  # small_fedavg pins run.threads
        for name in ("acc_mean", "loss_mean", "alive", "messages", "mpi_bytes", "staged_bytes"):
            assert f[f"rounds/{name}"].shape == (5,)
        assert (f["rounds/staged_bytes"][:] > 0).all()  # 2 ranks: the hub's partials cross
        assert f["nodes/alive"].shape == (5, 11) and f["nodes/alive"][:].all()
        # FedAvg, fault free: 2(n-1) simulated model messages per round (paper formula)
        assert (f["rounds/messages"][:] == 2 * (11 - 1)).all()
        assert f["rounds/acc_mean"][-1] > f["rounds/acc_mean"][0]


def test_existing_output_needs_overwrite(small_fedavg, tmp_path):
    out = tmp_path / "o.h5"
    out.write_text("keep me")
    r = run_mpi(1, "run", str(small_fedavg), "--out", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr and out.read_text() == "keep me"


def test_sigkill_leaves_readable_file(tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text("[run]\nrounds = 400\nprogress = 'lines'\n[nodes]\ncount = 8\n"
                   "[data]\nsynthetic_train = 400\n[train]\nlocal_steps = 20\n")
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(mpi_command(2, "run", str(cfg), "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=mpi_env(), cwd=ROOT, start_new_session=True)
    seen = 0
    for line in proc.stdout:
        if line.startswith("round "):
            seen += 1
            if seen == 4:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    with h5py.File(out, "r") as f:
        done = int(f.attrs["rounds_completed"])
        alive = f["rounds/alive"][:]
    assert 3 <= done < 400
    assert (alive[:done] >= 0).all()
    assert (alive[done + 1:] == -1).all()  # integer fill; the round in flight may or may not have its row


def test_exception_on_one_rank_ends_the_job(small_fedavg, tmp_path):
    """One line from the failing rank, exit 1; HEAL_MPI_DEBUG=1 adds the traceback."""
    t0 = time.time()
    r = run_mpi(3, "run", str(small_fedavg), "--out", str(tmp_path / "x.h5"), timeout=60,
                HEAL_MPI_DEBUG_RAISE="1:2")
    assert r.returncode == 1
    assert time.time() - t0 < 30
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heal-mpi: error on rank 1: RuntimeError"), r.stderr
    assert "injected failure on rank 1 at round 2" in lines[0]
    r = run_mpi(3, "run", str(small_fedavg), "--out", str(tmp_path / "x.h5"), "--overwrite", timeout=60,
                HEAL_MPI_DEBUG_RAISE="1:2", HEAL_MPI_DEBUG="1")
    assert r.returncode == 1 and "Traceback" in r.stderr and "injected failure on rank 1 at round 2" in r.stderr


def test_corrupt_dataset_exits_2_without_output(tmp_path):
    """Files exist (so validation passes) but one is not IDX: every rank stops with exit 2, no file."""
    root = tmp_path / "mnist"
    root.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / stem).write_bytes(b"\x00\x00\x00\x00 definitely not an IDX file")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[data]\ndataset = 'mnist'\nroot = '{root}'\n[model]\nname = 'lenet5'\n")
    out = tmp_path / "o.h5"
    r = run_mpi(2, "run", str(cfg), "--out", str(out), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("heal-mpi: error")]
    assert len(lines) == 1 and "not an IDX" in lines[0] and str(root) in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_rank0_fallback_writes_the_same_file(small_fedavg, tmp_path):
    """Without parallel h5py, rank 0 gathers each row and writes alone: same data, other driver."""
    mpio, serial = tmp_path / "mpio.h5", tmp_path / "serial.h5"
    run_ok(3, small_fedavg, mpio, "--set", "overlay.snapshot_every=2")
    r = run_mpi(3, "run", str(small_fedavg), "--out", str(serial), "--set", "overlay.snapshot_every=2",
                HEAL_MPI_HDF5="serial")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("rank 0 gathers and writes all output") == 1  # said once
    with h5py.File(mpio, "r") as a, h5py.File(serial, "r") as b:
        assert b.attrs["hdf5_driver"] == "rank0-gather" and b.attrs["rounds_completed"] == 5
        for name in ("nodes/acc", "nodes/msgs_sent", "overlay/cache", "rounds/messages"):
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


def test_a_sample_of_evaluated_nodes_reports_its_sampling_error(small_fedavg, tmp_path):
    """eval.nodes_fraction < 1: /rounds/acc_sem is the standard error of acc_mean over the live nodes
    (finite-population corrected), recomputed here from /nodes/acc, and the progress line shows it;
    evaluating every node gives 0."""
    out = tmp_path / "s.h5"
    gossip = ("--set", "protocol.kind='gossip'", "--set", "overlay.cache_size=4")  # every node its own model
    r = run_ok(3, small_fedavg, out, *gossip, "--set", "eval.nodes_fraction=0.5")
    with h5py.File(out, "r") as f:
        acc, sem, alive = f["nodes/acc"][:].astype(np.float64), f["rounds/acc_sem"][:], f["nodes/alive"][:]
    for rnd in range(len(sem)):
        drawn = acc[rnd][~np.isnan(acc[rnd])]
        n, pop = len(drawn), int(alive[rnd].sum())
        assert 1 < n < pop
        expect = np.std(drawn.astype(np.float32).astype(np.float64), ddof=1) / np.sqrt(n) * np.sqrt(1 - n / pop)
        assert sem[rnd] == pytest.approx(expect, rel=1e-5) and sem[rnd] > 0
    assert f"± {sem[-1]:.4f}" in r.stdout
    full = tmp_path / "full.h5"
    run_ok(2, small_fedavg, full, *gossip)
    with h5py.File(full, "r") as f:
        assert (f["rounds/acc_sem"][:] == 0).all() and (f["rounds/acc_std"][:] > 0).all()


def test_the_progress_line_shows_a_sampling_error_only_where_it_is_not_zero():
    """± only when the standard error prints as more than 0.0000: a sample of identical models (HEAL
    after a round) gives 0 up to float noise, which would read as a measured error."""
    import io
    from types import SimpleNamespace
    from heal_mpi.progress import Progress
    out = io.StringIO()
    cfg = SimpleNamespace(run=SimpleNamespace(rounds=3, progress="lines"))
    p = Progress(cfg, SimpleNamespace(is_root=True), stream=out)
    for rnd, sem in enumerate((0.0128, 2.4e-10, 0.0)):
        p.update(rnd, {"acc_mean": 0.5, "acc_sem": sem, "alive": 10})
    lines = out.getvalue().splitlines()
    assert "acc 0.5000 ± 0.0128 " in lines[0] and "±" not in lines[1] and "±" not in lines[2], lines
