"""The device files of the hub-placement runs (jobs/validation/time, case e): the lognormal devices
of case b, rearranged so that the hubs Elevator elects get the slowest links (slow_hubs.csv) or
the fastest (fast_hubs.csv), and FedAvg's server a data-centre link (fast_server.csv).

    .venv/bin/python jobs/validation/time/devices.py

Elevator's hubs come from an overlay-only run of the same overlay and seed (the overlay does not
depend on the models, so a HEAL run elects the same ones); the swap exchanges whole device rows,
so every file holds the same 100 devices as case b.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from heal_mpi import config as cfgmod  # noqa: E402
from heal_mpi.clock import CSV_COLUMNS, Devices  # noqa: E402

SWEEP = HERE / "sweep_devices.toml"
LOGNORMAL = ["time.enabled=true", "time.compute_dist='lognormal'", "time.compute_spread=1.0",
             "time.bandwidth_dist='lognormal'", "time.bandwidth_spread=1.0"]
SERVER_SPEEDUP = 100.0  # a data-centre server: 100 times the median device's links


def config(*overrides):
    """The sweep's base and [common], with these overrides."""
    spec = cfgmod.read_toml(SWEEP)
    common = [f"{section}.{key}={cfgmod.toml_value(value)}" for section, table in spec["common"].items()
              for key, value in table.items()]
    return cfgmod.validate(cfgmod.load(REPO / spec["base"], [*common, *overrides]))


def elected_hubs(cfg) -> np.ndarray:
    """The hubs of the last round of an overlay-only run of cfg's overlay and seed."""
    from mpi4py import MPI

    from heal_mpi.runtime import make_world
    from heal_mpi.simulation import Simulation
    overlay_only = config(*LOGNORMAL, "protocol.kind='none'", "overlay.kind='elevator'", "run.progress='none'")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "overlay.h5"
        Simulation.build(overlay_only, make_world(cfg.nodes.count, "cpu", MPI.COMM_SELF), out).run()
        with h5py.File(out, "r") as f:
            hubs = f["overlay/hub_ids"][-1]
    return np.sort(hubs[hubs >= 0])


def write(path: Path, d: Devices) -> None:
    rows = np.column_stack([np.arange(len(d.compute)), d.compute, d.uplink, d.downlink, d.latency])
    path.write_text(",".join(CSV_COLUMNS) + "\n" + "".join(f"{int(r[0])},{float(r[1])!r},{float(r[2])!r},{float(r[3])!r},{float(r[4])!r}\n"
                                                            for r in rows))


def placed(d: Devices, hubs: np.ndarray, targets: np.ndarray) -> Devices:
    """d with the hubs holding the devices of `targets` (as many nodes), and those nodes the hubs'."""
    a, b = np.setdiff1d(hubs, targets), np.setdiff1d(targets, hubs)
    cols = [c.copy() for c in (d.compute, d.uplink, d.downlink, d.latency)]
    for c in cols:
        c[a], c[b] = c[b].copy(), c[a].copy()
    return Devices(*cols)


def main() -> None:
    cfg = config(*LOGNORMAL)
    d = Devices.from_config(cfg.time, cfg.nodes.count, cfg.run.seed)
    hubs = elected_hubs(cfg)
    by_link = np.argsort(d.uplink, kind="stable")  # one draw scales uplink and downlink
    k = len(hubs)
    write(HERE / "slow_hubs.csv", placed(d, hubs, by_link[:k]))
    write(HERE / "fast_hubs.csv", placed(d, hubs, by_link[-k:]))
    server = Devices(d.compute.copy(), d.uplink.copy(), d.downlink.copy(), d.latency.copy())
    server.uplink[0] = SERVER_SPEEDUP * cfg.time.uplink
    server.downlink[0] = SERVER_SPEEDUP * cfg.time.downlink
    write(HERE / "fast_server.csv", server)
    up = np.median(d.uplink)
    print(f"hubs {hubs.tolist()}; their uplinks: {np.round(d.uplink[hubs] / up, 3).tolist()} of the median "
          f"{up:.4g} B/s (case b), {np.round(np.sort(d.uplink)[:k] / up, 3).tolist()} (slow_hubs.csv), "
          f"{np.round(np.sort(d.uplink)[-k:] / up, 2).tolist()} (fast_hubs.csv)")


if __name__ == "__main__":
    main()
