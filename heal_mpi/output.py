"""The run's HDF5 file: one file, every rank writing its own column block.

Layout (R rounds, N nodes):
    /rounds/<metric>      [R]      one value per round (float64; NaN until written)
    /nodes/<metric>       [R, N]   one value per node per round (float32 or int32)
    /overlay/<name>       [R, k]   global per-round rows (e.g. hub_ids)
    /overlay/cache        [S, N, c] view snapshots, rounds in /overlay/snapshot_rounds [S]
    attributes on /      config (resolved TOML), version, mpi_library, ranks, h5py_version,
                         torch_version, hdf5_driver, devices, rounds_completed, ...

With parallel h5py every rank opens the file with the `mpio` driver and every write is
collective. Without it, rank 0 gathers each round and writes alone (said once on stderr).
Datasets have their full size from the start and `rounds_completed` is bumped and flushed
after every round, so a killed run leaves a readable file whose first
`rounds_completed` rows are complete.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

import heal_mpi
from heal_mpi import schema
from heal_mpi.errors import OutputError
from heal_mpi.failures import os_reason, write_failure
from heal_mpi.info import mpi_library
from heal_mpi.runtime import World

# HEAL_MPI_HDF5=serial forces the rank-0 fallback even when h5py has MPI (for its tests).
PARALLEL = bool(h5py.get_config().mpi) and os.environ.get("HEAL_MPI_HDF5", "") != "serial"
# Per-node datasets are compressed from this many nodes on. Below, a round of them is under 2.3 MB,
# and parallel HDF5's filtered collective writes would cost more than the bytes: 2.8 -> 5.4 ms a
# round at 10,000 nodes, 2 ranks (`heal-mpi bench output`), 2 % -> 4 % of an overlay-only round.
PACK_FROM = 1 << 15


def git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Writer:
    """Writes one run's rows. Every method is collective over `world.comm`: every rank must call.

    Every dataset of the contract (heal_mpi/schema.py) is created when the file is, in sorted
    name order on every rank (HDF5's parallel metadata rule), filled with NaN or -1 until
    written; a protocol's own counts are created on first use, also in sorted order.

    Args:
        sizes: the schema's dimensions {"R", "N", "h", "S", "c", "K"}.
    """

    def __init__(self, path: str | Path, world: World, rounds: int, attrs: dict, resume: bool = False,
                 sizes: dict | None = None):
        self.world, self.rounds = world, rounds
        self.comm = world.comm.Dup()
        self.parallel = PARALLEL
        self.path = Path(path)
        self._last_record: tuple | None = None  # (round, seconds) of the previous record() call
        self._handles: dict[str, h5py.Dataset] = {}
        self._collective = None
        if PARALLEL:
            self._collective = h5py.h5p.create(h5py.h5p.DATASET_XFER)
            self._collective.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
        mode = "a" if resume else "w"
        try:
            if self.parallel:
                self.file = h5py.File(self.path, mode, driver="mpio", comm=self.comm)
            else:
                if world.is_root:
                    why = "HEAL_MPI_HDF5=serial" if h5py.get_config().mpi else "h5py has no MPI support"
                    sys.stderr.write(f"heal_mpi: {why}; rank 0 gathers and writes all output\n")
                self.file = h5py.File(self.path, mode) if world.is_root else None
        except (OSError, ValueError) as e:
            raise OutputError(f"cannot open {self.path} for writing: {os_reason(e, self.path)}") from e
        # rounds whose rows are all written and flushed: what a failed write leaves safe in the file
        self.completed = int(self.file.attrs.get("rounds_completed", 0)) if resume and self.file else 0
        if not resume:
            with self._failing_io():
                self._set_attrs({**attrs, "hdf5_driver": "mpio" if self.parallel else "rank0-gather",
                                 "rounds_completed": 0})
                sizes = {"R": rounds, "N": world.n_nodes, "h": 1, "S": 0, "c": 1, "K": 0, **(sizes or {})}
                for d in sorted(schema.DATASETS, key=lambda d: d.path):
                    self._dataset(d.path, schema.shape(d, sizes), d.dtype, per_node=schema.per_node(d))

    @contextmanager
    def _failing_io(self):
        """A failed write becomes one OutputError for the user (h5py raises OSError, ValueError or
        RuntimeError, depending on where in HDF5 the write failed)."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as e:
            raise write_failure(self.path, self.completed, e) from e

    # -- helpers ---------------------------------------------------------------------
    def _set_attrs(self, attrs: dict) -> None:
        if self.file is not None:
            for k, v in attrs.items():
                self.file.attrs[k] = v

    def _dataset(self, name: str, shape: tuple, dtype, per_node: str = "") -> h5py.Dataset | None:
        """The dataset `name`, created on first use; handles are cached (h5py path lookups are slow).

        A dataset with a row per round is stored a chunk a row. A `per_node` one, "rounds" [R, N, ...]
        or "table" [N, ...] (every rank writes its own nodes, collectively), is compressed from
        PACK_FROM nodes on: gzip after byte shuffling (parallel HDF5 filters only collective
        writes), a table 65,536 nodes a chunk. At 100,000 nodes a round of /nodes takes 0.45 MB
        instead of 6.8 MB.
        """
        if self.file is None:
            return None
        if name not in self._handles:
            if name not in self.file:
                fill = np.nan if np.dtype(dtype).kind == "f" else -1
                packed = bool(per_node) and 0 not in shape and self.world.n_nodes >= PACK_FROM
                chunks = None
                if per_node == "table" and packed:
                    chunks = (min(shape[0], 1 << 16),) + tuple(shape[1:])
                elif per_node != "table" and len(shape) > 1 and 0 not in shape:  # one chunk a row
                    chunks = (1,) + tuple(min(s, 1 << 20) for s in shape[1:])
                gzip = dict(compression="gzip", compression_opts=4, shuffle=True) if packed else {}
                self.file.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill, chunks=chunks, **gzip)
            self._handles[name] = self.file[name]
        return self._handles[name]

    def _write(self, ds: h5py.Dataset, index: int, value: np.ndarray, cols: tuple | None = None,
               collective: bool = False) -> None:
        """ds[index] = value (or ds[index, lo:hi] with cols = (lo, hi)) through the low-level API.

        One hyperslab and one H5Dwrite, without h5py's per-call selection machinery, which
        costs more than the write itself for the many one-value rows of a round.
        """
        lo, hi = cols or (0, ds.shape[1] if ds.ndim > 1 else 1)
        value = np.ascontiguousarray(value, dtype=ds.dtype).reshape((1, hi - lo) + ds.shape[2:])
        if ds.ndim == 1:
            value = value.reshape(1)
        fspace = ds.id.get_space()
        start = (index,) + ((lo,) + (0,) * (ds.ndim - 2) if ds.ndim > 1 else ())
        fspace.select_hyperslab(start, value.shape)
        ds.id.write(h5py.h5s.create_simple(value.shape), fspace, value,
                    dxpl=self._collective if collective else None)

    def _write_block(self, name: str, index: int, local: np.ndarray, total_shape: tuple) -> None:
        """Row `index` of `name`, this rank's slots [slot_lo, slot_hi) along axis 1."""
        local = np.ascontiguousarray(local)
        ds = self._dataset(name, total_shape, local.dtype, per_node="rounds") if self.parallel or self.world.is_root else None
        if self.parallel:
            self._write(ds, index, local, (self.world.slot_lo, self.world.slot_hi), collective=True)
            return
        # fallback: gather the column blocks to rank 0 in rank order
        counts = np.diff(self.world.bounds) * int(np.prod(local.shape[1:], dtype=np.int64))
        full = np.empty((self.world.n_nodes, *local.shape[1:]), dtype=local.dtype) if self.world.is_root else None
        self.comm.Gatherv(local, [full, counts] if self.world.is_root else None, root=0)
        if self.world.is_root:
            self._write(ds, index, full)

    def _write_global_row(self, name: str, index: int, value: np.ndarray, shape: tuple) -> None:
        """Row `index` of a dataset whose value is the same on every rank.

        Rank 0 writes it with independent I/O; the others only take part in the (collective)
        dataset creation. h5py skips empty selections, so they could not join a collective write.
        """
        value = np.asarray(value)
        ds = self._dataset(name, shape, value.dtype)
        if ds is not None and self.world.is_root:
            self._write(ds, index, value)

    # -- public ----------------------------------------------------------------------
    def record(self, rnd: int, rounds: dict, nodes: dict, rows: dict | None = None) -> None:
        """Write round `rnd`: scalars to /rounds, [n_local] arrays to /nodes, global rows to /overlay.

        Collective over `world.comm`: every rank must call, with the same keys. How long the
        previous call took (writes and flush) goes into the previous row's /rounds/seconds_record:
        a call cannot time itself before it writes.
        """
        with self._failing_io():
            self._record(rnd, rounds, nodes, rows)

    def _record(self, rnd: int, rounds: dict, nodes: dict, rows: dict | None) -> None:
        t0 = time.perf_counter()
        R, N = self.rounds, self.world.n_nodes
        if self._last_record is not None:
            self._write_global_row("rounds/seconds_record", *self._last_record, (R,))
        for name in sorted(nodes):
            self._write_block(f"nodes/{name}", rnd, nodes[name], (R, N))
        for name in sorted(rows or {}):
            row = np.asarray(rows[name])
            self._write_global_row(f"overlay/{name}", rnd, row, (R, *row.shape))
        for name in sorted(rounds):
            self._write_global_row(f"rounds/{name}", rnd, np.float64(rounds[name]), (R,))  # cast to its dtype
        self.mark_completed(rnd + 1)
        self._last_record = (rnd, np.float64(time.perf_counter() - t0))

    def node_table(self, name: str, local: np.ndarray) -> None:
        """Write a per-node table once (the partition): this rank's rows [slot_lo, slot_hi) of /name."""
        with self._failing_io():
            local = np.ascontiguousarray(local)
            lo, hi = self.world.slot_lo, self.world.slot_hi
            if self.parallel:
                ds = self._dataset(name, (self.world.n_nodes, *local.shape[1:]), local.dtype, per_node="table")
                with ds.collective:
                    ds[lo:hi] = local
                return
            parts = self.comm.gather(local, root=0)
            if self.world.is_root:
                self._dataset(name, (self.world.n_nodes, *local.shape[1:]), local.dtype, per_node="table")[...] = np.concatenate(parts)

    def snapshot(self, name: str, index: int, rnd: int, local: np.ndarray, n_snapshots: int) -> None:
        """Store view snapshot `index` (taken at round `rnd`) of every node: /overlay/<name> [S, N, c]."""
        with self._failing_io():
            self._write_block(f"overlay/{name}", index, local, (n_snapshots, self.world.n_nodes, *local.shape[1:]))
            self._write_global_row("overlay/snapshot_rounds", index, np.int64(rnd), (n_snapshots,))

    def mark_completed(self, rounds_completed: int) -> None:
        """Flush everything written so far, then publish how many rounds are complete."""
        if self.file is not None:
            with self._failing_io():
                self.file.flush()
                self.file.attrs["rounds_completed"] = rounds_completed
                self.file.flush()
        self.completed = rounds_completed

    def close(self) -> None:
        with self._failing_io():
            if self._last_record is not None:
                self._write_global_row("rounds/seconds_record", *self._last_record, (self.rounds,))
                self._last_record = None
            self._handles.clear()
            if self.file is not None:
                self.file.close()
                self.file = None
        self.comm.Free()


def run_attributes(world: World, config_toml: str, method: str = "none", overlay: str = "",
                   threads_per_rank=()) -> dict:
    """Root attributes describing the run and the software that produced it.

    `method` and `overlay` name the protocol and overlay (analysis reads them, not the
    config); `threads_per_rank` are the torch intra-op threads each rank actually used:
    results are identical across rank counts only at equal threads per rank.
    """
    import torch
    return {
        "config": config_toml,
        "method": method,
        "overlay": overlay,
        "threads_per_rank": np.asarray(threads_per_rank, dtype=np.int64),
        "version": heal_mpi.__version__,
        "git_revision": git_revision(),
        "mpi_library": mpi_library(),
        "ranks": world.size,
        "devices": str(world.device),
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "torch_version": str(torch.__version__),
        "hostname": os.uname().nodename,
    }
