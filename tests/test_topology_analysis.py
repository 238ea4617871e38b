"""analysis/topology.py on HDF5 files written here with h5py (the writer's layout)."""

import csv
import subprocess
import sys

import h5py
import networkx as nx
import numpy as np

from helpers import ROOT, analysis_module

topo = analysis_module("topology")


def write_run(path, caches, alive, rounds):
    """caches [S, N, c] taken at `rounds` [S]; alive [R, N]."""
    with h5py.File(path, "w") as f:
        f["overlay/cache"] = np.asarray(caches, dtype=np.int64)
        f["overlay/snapshot_rounds"] = np.asarray(rounds, dtype=np.int64)
        f["nodes/alive"] = np.asarray(alive, dtype=np.int8)


def star_cache(n, c):
    cache = np.full((n, c), -1, dtype=np.int64)
    cache[1:, 0] = 0
    cache[0, :c] = np.arange(1, c + 1)
    return cache


def test_metrics_match_networkx_on_a_random_graph():
    rng = np.random.default_rng(0)
    n, c = 120, 4
    cache = np.array([rng.choice(np.delete(np.arange(n), i), c, replace=False) for i in range(n)])
    cache[5, 1] = 5  # a self-link: counts for the in-degree, not for paths
    alive = np.ones(n, bool)
    alive[[3, 50]] = False
    m = topo.graph_metrics(cache, alive, sources=None)
    g = nx.Graph()
    g.add_nodes_from(np.flatnonzero(alive))
    g.add_edges_from((i, int(j)) for i in np.flatnonzero(alive) for j in cache[i] if alive[j] and j != i)
    lcc = g.subgraph(max(nx.connected_components(g), key=len))
    assert m["alive"] == 118 and m["lcc"] == len(lcc)
    assert m["diameter"] == nx.diameter(lcc)
    assert np.isclose(m["apl"], nx.average_shortest_path_length(lcc))
    assert np.isclose(m["clustering"], nx.average_clustering(g))
    indeg = np.bincount(cache[alive][np.isin(cache[alive], np.flatnonzero(alive))], minlength=n)
    assert m["in_degree_max"] == indeg[alive].max() and np.isclose(m["in_degree_mean"], indeg[alive].mean())


def test_star_then_server_crash(tmp_path):
    n = 6
    star = star_cache(n, 5)
    alive = np.ones((3, n), dtype=bool)
    alive[2, 0] = False
    path = tmp_path / "star.h5"
    write_run(path, [star, star], alive, [0, 2])
    rows = topo.analyse([path], sources=None, smoke=False)
    assert [r["round"] for r in rows] == [0, 2]
    first, second = rows
    assert first["diameter"] == 2 and first["lcc"] == n and first["clustering"] == 0
    assert np.isclose(first["apl"], (5 * 1 + 10 * 2) / 15)
    assert first["in_degree_max"] == 5 and first["hubs"] == 0  # 5 of 6 live < 99%
    assert second["alive"] == 5 and second["lcc"] == 1 and second["components"] == 5


def test_cli_writes_csv_and_plots(tmp_path):
    rng = np.random.default_rng(1)
    n, c = 60, 5
    caches = [np.array([rng.choice(np.delete(np.arange(n), i), c, replace=False) for i in range(n)])
              for _ in range(3)]
    for i, name in enumerate(("a.h5", "b.h5")):
        write_run(tmp_path / name, caches, np.ones((21, n), bool), [0, 10, 20])
    out = tmp_path / "fig"
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "topology.py"), str(tmp_path / "a.h5"),
                        str(tmp_path / "b.h5"), "--out", str(out), "--smoke"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with open(out / "topology.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["file"], x["round"]) for x in rows] == [("a.h5", "0"), ("a.h5", "20"), ("b.h5", "0"), ("b.h5", "20")]
    assert {"diameter", "apl", "clustering", "lcc", "in_degree_max", "hubs"} <= set(rows[0])
    for png in ("topology.png", "in_degree_a.png", "in_degree_b.png"):
        assert (out / png).stat().st_size > 1000
    with open(out / "in_degree.csv") as fh:
        hist = list(csv.DictReader(fh))
    assert sum(int(h["nodes"]) for h in hist if h["file"] == "a.h5" and h["round"] == "0") == n
