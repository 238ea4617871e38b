"""analysis/recovery.py and topology.py --summary on small heal_mpi-shaped files written here with h5py."""

import csv
import subprocess
import sys

import h5py
import numpy as np

from conftest import ROOT
from heal_mpi import config as config_mod

sys.path.insert(0, str(ROOT / "analysis"))
import recovery  # noqa: E402  (analysis/ is a folder of scripts, not a package)
import topology  # noqa: E402

N, H, R, C = 20, 2, 10, 3


def config_text(seed: int, faults: dict, overlay: dict | None = None) -> str:
    raw = {"run": {"rounds": R, "seed": seed, "out": f"x{seed}.h5"}, "nodes": {"count": N},
           "protocol": {"kind": "none"}, "overlay": {"kind": "elevator", "hubs": H, "cache_size": C, **(overlay or {})},
           "faults": faults}
    return config_mod.to_toml(config_mod.from_dict(raw))


def write_file(path, seed, faults, in_degree, alive, caches=None, snapshot_rounds=None, overlay=None):
    """A file with the writer's layout: config, rounds_completed, /rounds/hubs, /nodes/*, /overlay/*."""
    in_degree, alive = np.asarray(in_degree), np.asarray(alive, bool)
    n_alive = alive.sum(axis=1, keepdims=True)
    with h5py.File(path, "w") as f:
        f.attrs["config"] = config_text(seed, faults, overlay)
        f.attrs["method"], f.attrs["overlay"] = "none", "elevator"
        f.attrs["rounds_completed"] = R
        f["rounds/hubs"] = (alive & (in_degree >= 0.99 * n_alive)).sum(axis=1).astype(np.float64)
        f["rounds/alive"] = n_alive[:, 0].astype(np.float64)
        f["nodes/in_degree"] = in_degree.astype(np.int64)
        f["nodes/alive"] = alive.astype(np.int8)
        if caches is not None:
            f["overlay/cache"] = np.asarray(caches, dtype=np.int64)
            f["overlay/snapshot_rounds"] = np.asarray(snapshot_rounds, dtype=np.int64)


def hub_attack_degrees():
    """Hubs 0 and 1 from round 4 (row 3); both killed at config round 5; nodes 2 and 3 reach
    12 of 18 live at row 6 and all 18 at row 7."""
    deg = np.full((R, N), 3)
    alive = np.ones((R, N), bool)
    deg[3:5, [0, 1]] = N
    alive[5:, [0, 1]] = False
    deg[5:, [0, 1]] = 0
    deg[6, [2, 3]] = 12
    deg[7:, [2, 3]] = N - 2
    return deg, alive


def test_cycles_to_h_and_after_the_hub_attack(tmp_path):
    deg, alive = hub_attack_degrees()
    faults = {"hub_crash": [{"round": 5, "count": "all"}]}
    files = [tmp_path / f"s{s}.h5" for s in (1, 2)]
    for s, path in zip((1, 2), files):
        write_file(path, s, faults, deg, alive)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "recovery.py"), *map(str, files), "--out", str(out),
                        "--shares", "0.99,0.5", "--smoke"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "recovery.csv")))
    by = {(float(x["share"]), x["event"], int(x["seed"])): x for x in rows}
    assert len(rows) == 2 * 2 * 2  # shares x seeds x (start, hub attack)
    for s in (1, 2):
        assert by[(0.99, "start", s)]["cycles_to_h"] == "4"          # row 3 = round 4
        attack = by[(0.99, "hub attack all @5", s)]
        assert attack["cycles_to_h"] == "3" and attack["hubs_after"] == "0"  # rows 5, 6, 7
        assert by[(0.5, "hub attack all @5", s)]["cycles_to_h"] == "2"     # 12 >= 0.5 x 18 at row 6
    table = (out / "recovery.md").read_text()
    assert "| Elevator | hub attack all @5 | 99 % | 2 | 4.0 ± 0.0 | 0.0 ± 0.0 | 3.0 ± 0.0 | 2.0 ± 0.0 |" in table
    assert "| Elevator | hub attack all @5 | 50 % | 2 | 4.0 ± 0.0 | 0.0 ± 0.0 | 2.0 ± 0.0 | 2.0 ± 0.0 |" in table
    assert (out / "recovery.png").stat().st_size > 0


def test_overlay_without_hubs_is_one_line(tmp_path):
    deg, alive = np.full((R, N), 3), np.ones((R, N), bool)
    write_file(tmp_path / "a.h5", 1, {"crash": [{"round": 5, "fraction": 0.5}]}, deg, alive)
    rows = recovery.run_rows(recovery.common.load_groups([tmp_path / "a.h5"])[0], 0.99)
    text = recovery.table([{**r, "method": "Newscast"} for r in rows])
    assert "| Newscast |" not in text
    assert "Newscast: no hub in any round at any share (99 %) in crash 50% @5." in text


def test_share_099_is_the_simulators_hub_count(tmp_path):
    deg, alive = hub_attack_degrees()
    write_file(tmp_path / "a.h5", 1, {}, deg, alive)
    run = recovery.common.load_run(tmp_path / "a.h5")
    assert np.array_equal(recovery.hub_counts(run, 0.99), run.series["hubs"])


def test_never_and_churn_window_end():
    hubs = np.array([0, 0, 2, 2, 1, 1, 1, 2, 2, 2], float)
    assert recovery.first_at(hubs, 2, 0) == 3 and recovery.first_at(hubs, 2, 4) == 4
    assert recovery.first_at(hubs, 3, 0) is None
    events = [recovery.common.Event("churn", 2, 6, "churn 10% [2,6)")]
    assert recovery.fault_starts(events) == [("end of churn 10% [2,6)", 6)]
    assert recovery.cycles_text([3, None]) == "3 (never in 1/2)" and recovery.cycles_text([None]) == "never"


def test_topology_summary_phases_and_hub_in_degree(tmp_path):
    star = np.full((N, C), -1)
    star[:, 0], star[:, 1] = 0, 1           # every node lists the hubs 0 and 1 (they list themselves)
    star[:, 2] = 2 + (np.arange(N) + 5) % (N - 2)  # a random-ish link that is never a hub
    deg, alive = hub_attack_degrees()
    alive[:] = True
    write_file(tmp_path / "a.h5", 1, {"crash": [{"round": 4, "fraction": 0.5}]}, deg, alive,
               caches=[star, star, star], snapshot_rounds=[0, 4, 8])
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "topology.py"), str(tmp_path / "a.h5"), "--out", str(out),
                        "--summary", "--no-per-file-plots"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {x["phase"]: x for x in csv.DictReader(open(out / "topology_summary.csv"))}
    assert set(rows) == {"before", "fault", "end"}
    assert rows["before"]["rounds"] == "0-0" and rows["fault"]["rounds"] == "4-4" and rows["end"]["rounds"] == "8-8"
    assert float(rows["end"]["hubs"]) == 2 and float(rows["end"]["hub_in_degree_mean"]) == N
    assert float(rows["end"]["diameter"]) == 2
    assert "| Elevator | crash 50% @4 | end | 8-8 | 1 | 20 | 2.0 | 20.0 |" in (out / "topology_summary.md").read_text()
    churn = [recovery.common.Event("churn", 2, 6, "c")]
    assert [topology.phases(churn, r, [0, 1, 3, 8]) for r in (0, 1, 3, 8)] == [[], ["before"], ["churn"], ["end"]]


def test_semantics_table_puts_each_cycle_order_in_a_column(tmp_path):
    """The same hub attack run in snapshot and in sequential semantics: one row per quantity, a
    column per semantics; the sequential run recovers a cycle sooner."""
    deg, alive = hub_attack_degrees()
    fast = deg.copy()
    fast[6, [2, 3]] = N - 2  # every live view lists the new hubs one cycle after the attack
    faults = {"hub_crash": [{"round": 5, "count": "all"}]}
    files = []
    for name, degrees, overlay in (("snap", deg, None), ("seq", fast, {"semantics": "sequential"}),
                                   ("seq5", fast, {"semantics": "sequential", "substeps": 5})):
        for s in (1, 2):
            files.append(tmp_path / f"{name}{s}.h5")
            write_file(files[-1], s, faults, degrees, alive, overlay=overlay)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "semantics.py"), *map(str, files), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    table = (out / "semantics.md").read_text()
    assert "| overlay | scenario | quantity | snapshot | sequential, k = N (PeerSim) | sequential, k = 5 | paper |" in table
    assert ("| Elevator | hub attack all @5 | cycles to h hubs again after hub attack all @5 (99 %) | 3.0 ± 0.0 | "
            "2.0 ± 0.0 | 2.0 ± 0.0 | \"typically within two\" (HEAL paper) |") in table, table
    assert "| Elevator | hub attack all @5 | cycles to h hubs again after hub attack all @5 (50 %) | 2.0 ± 0.0 |" in table
