"""A write that fails mid-run: one line naming the file, the cause, the safe rounds and how to go on."""

import errno
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from conftest import ROOT, mpi_env, write_config
from heal_mpi import output
from heal_mpi.errors import OutputError
from heal_mpi.failures import checkpoint_dir
from heal_mpi.failures import os_reason as failure_reason
from heal_mpi.output import Writer
from heal_mpi.runtime import failure_line, make_world


def write_rounds(out, fail_from: int, monkeypatch) -> OutputError:
    """Record rounds into a Writer until the flush after round `fail_from` hits a full disk."""
    writer = Writer(out, make_world(4, "cpu", MPI.COMM_SELF), rounds=5, attrs={"config": "x"})
    real_flush = h5py.File.flush
    for rnd in range(5):
        if rnd == fail_from:
            def full(self):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(h5py.File, "flush", full)
        try:
            writer.record(rnd, {"acc_mean": 0.5}, {"acc": np.zeros(4, np.float32)})
        except OutputError as e:
            monkeypatch.setattr(h5py.File, "flush", real_flush)
            writer.file.close()
            return e
    pytest.fail("the write did not fail")


def test_full_disk_names_file_rounds_and_no_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    msg = str(write_rounds(out, 2, monkeypatch))
    assert "\n" not in msg
    assert msg.startswith(f"writing {out} failed: the device is full"), msg
    assert "its first 2 rounds were complete (attribute rounds_completed)" in msg
    assert "no checkpoint" in msg
    with h5py.File(out, "r") as f:
        assert f.attrs["rounds_completed"] == 2


def test_full_disk_with_a_checkpoint_says_resume(tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    checkpoint_dir(out).mkdir()
    (checkpoint_dir(out) / "meta.json").write_text(json.dumps({"round": 1, "ranks": 1}))
    msg = str(write_rounds(out, 3, monkeypatch))
    assert "its first 3 rounds" in msg and "free space, then rerun with --resume" in msg and "(round 1)" in msg
    assert failure_line(OutputError(msg), rank=1, size=2) == f"heal-mpi: error: {msg}"


def test_failure_reason_finds_the_errno_h5py_hides(tmp_path):
    path = tmp_path / "o.h5"
    hdf5 = ValueError("Unable to create dataset (file write failed: errno = 28, error message = 'No space')")
    assert failure_reason(hdf5, path).startswith("the device is full")
    assert failure_reason(OSError(errno.EIO, "Input/output error"), path) == "Input/output error"
    assert failure_reason(ValueError("Unable to create dataset (bad)"), path) == "Unable to create dataset (bad)"


def test_other_failures_are_one_line_with_the_debug_hint():
    line = failure_line(RuntimeError("boom\nsecond line"), rank=2, size=3)
    assert line == "heal-mpi: error on rank 2: RuntimeError: boom (HEAL_MPI_DEBUG=1 prints the traceback)"


LIMITED = """
import resource, sys
from mpi4py import MPI  # MPI's own shared-memory files exist before the cap below
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # writes past 100 kB fail (EFBIG)
from heal_mpi.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_real_failed_write_ends_every_rank_with_one_line(tmp_path):
    """Two ranks, the rank-0 writer, a file-size cap: the write fails for real inside HDF5."""
    cfg = write_config(tmp_path / "c.toml", "[run]\nrounds = 40\nprogress = 'none'\nthreads = 1\ncheckpoint_every = 5\n"
                       "[nodes]\ncount = 50\n[data]\nsynthetic_train = 880\nsynthetic_test = 200\n"
                       "[train]\nlocal_steps = 1\nbatch_size = 16\n")
    script = write_config(tmp_path / "limited.py", LIMITED)
    out = tmp_path / "o.h5"
    r = subprocess.run(["mpirun", "--quiet", "-n", "2", sys.executable, str(script), "run", str(cfg), "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=mpi_env(HEAL_MPI_HDF5="serial", PYTHONPATH=str(ROOT)))
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 1 and len(errors) == 1, r.stderr
    assert errors[0].startswith(f"heal-mpi: error: writing {out} failed: ") and "File too large" in errors[0]
    assert "rounds were complete" in errors[0] and "rerun with --resume" in errors[0], errors[0]
    assert "Traceback" not in r.stderr


def test_a_file_holds_exactly_the_documented_datasets_and_attributes(tmp_path, monkeypatch):
    """The contract (heal_mpi/schema.py, the README's HDF5 section) and a real file agree: every dataset
    with its dtype, for a protocol without hubs too (filled), and every attribute."""
    from heal_mpi import config as cfgmod
    from heal_mpi import schema
    from heal_mpi.simulation import Simulation
    readme = (ROOT / "README.md").read_text()
    for kind in ("gossip", "heal"):
        monkeypatch.setattr(output, "PACK_FROM", 10 if kind == "heal" else output.PACK_FROM)  # HEAL's compressed
        cfg = cfgmod.validate(cfgmod.load(None, [f"protocol.kind='{kind}'", "nodes.count=10", "overlay.cache_size=4",
                                                 "overlay.hubs=2", "run.rounds=3", "run.progress='none'"]),
                              check_files=False)
        out = tmp_path / f"{kind}.h5"
        assert Simulation.build(cfg, make_world(10, "cpu", MPI.COMM_SELF), out).run() == 0
        with h5py.File(out, "r") as f:
            found = {}
            f.visititems(lambda name, obj: found.__setitem__(name, str(obj.dtype))
                         if isinstance(obj, h5py.Dataset) else None)
            assert set(found) == set(schema.BY_PATH)  # no dataset undocumented, none missing
            assert {k: v for k, v in found.items() if k in schema.BY_PATH} == \
                {d.path: d.dtype for d in schema.DATASETS}, kind
            assert set(f.attrs) == set(schema.ATTRIBUTES)
            packed = {name for name in found if f[name].compression == "gzip" and f[name].shuffle}
            every_node = {d.path for d in schema.DATASETS  # no snapshots here: [0, N, 1]
                          if d.shape.startswith(("R, N", "S, N", "N")) and f[d.path].size}
            assert packed == (every_node if kind == "heal" else set()), packed  # 10 nodes: not worth it
            assert f["nodes/acc"].chunks == (1, 10)
            if kind == "gossip":  # does not apply: the fill
                assert (f["rounds/hubs_active"][:] == -1).all() and (f["rounds/byzantine"][:] == -1).all()
            assert f["partition/labels"][()].sum() == cfg.data.synthetic_train
    for d in schema.DATASETS:
        assert f"`/{d.path}`" in readme
    for name in schema.ATTRIBUTES:
        assert f"| `{name}` |" in readme


@pytest.mark.mpi
def test_compressed_per_node_datasets_written_by_every_rank_read_back_the_same(monkeypatch):
    """Parallel HDF5 filters collective writes: the ranks' column blocks of one compressed row (and
    of a node table's chunk) come back exactly as the uncompressed file has them."""
    import tempfile
    from heal_mpi import config as cfgmod
    from heal_mpi.simulation import Simulation
    comm = MPI.COMM_WORLD
    tmp = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None)
    cfg = cfgmod.validate(cfgmod.load(None, ["protocol.kind='gossip'", "nodes.count=13", "overlay.cache_size=4",
                                             "run.rounds=3", "run.progress='none'", "run.threads=1"]), check_files=False)
    for name, pack_from in (("plain", output.PACK_FROM), ("packed", 1)):
        monkeypatch.setattr(output, "PACK_FROM", pack_from)
        assert Simulation.build(cfg, make_world(13, "cpu", comm), f"{tmp}/{name}.h5").run() == 0
        comm.Barrier()
    with h5py.File(f"{tmp}/plain.h5", "r") as a, h5py.File(f"{tmp}/packed.h5", "r") as b:
        assert b["nodes/acc"].compression == "gzip" and b["partition/labels"].compression == "gzip"
        assert a["nodes/acc"].compression is None
        for group in ("nodes", "partition"):
            for k in a[group]:
                np.testing.assert_array_equal(a[group][k][()], b[group][k][()], err_msg=k)
