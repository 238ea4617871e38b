#!/usr/bin/env python3
"""Topology of the overlay snapshots in heal_mpi HDF5 files: the Elevator paper's metrics.

    python analysis/topology.py results/*.h5 --out figures/topology [--smoke] [--sources K] [--summary]

Reads `/overlay/cache` [S, N, c], `/overlay/snapshot_rounds` [S] and `/nodes/alive` [R, N]
(row = the snapshot's round). For every snapshot, on the live nodes only, computes:

- the **undirected** diameter and average shortest-path length (APL) of the largest
  connected component (the papers' "diameter 2" needs the undirected view: a hub's own
  out-cache has only c entries; protocols.md §2.16 A8);
- the average clustering coefficient of the undirected graph (networkx's definition:
  nodes of degree < 2 count as 0);
- the size of the largest connected component;
- the directed in-degree distribution (a node listing itself counts, as in the overlay's
  in-degree, so a hub of N live nodes has in-degree N), and the number of hubs (live nodes
  whose in-degree is at least 99% of the live count).

Writes `topology.csv` (one row per file and snapshot), `in_degree.csv` (histograms) and
PNG plots. Path lengths are exact up to `--sources` BFS sources (default: all live nodes
up to 5000, else a uniform sample of 5000, in which case diameter is a lower bound and APL
an estimate). Graph algorithms come from scipy.sparse.csgraph.

`--summary` also groups the files by experiment (the seeds of one config, as the other
analysis scripts do) and writes `topology_summary.md` / `.csv`: per overlay, scenario and
phase, the metrics averaged over seeds (and over the snapshots of the phase). Phases: *before*
(the last snapshot before the first fault), *fault* (the first snapshot at or after a crash
or hub attack: the state one cycle after it), *churn* (every snapshot inside a churn window)
and *end* (the last snapshot). `topology_summary.png` plots the metrics over rounds, one
panel column per scenario, one line per overlay (means over seeds).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from heal_mpi.overlay.common import HUB_SHARE  # the simulator's hub rule

import common

BATCH = 256  # BFS sources per shortest_path call: bounds the [batch, L] distance block


def live_graph(cache: np.ndarray, alive: np.ndarray):
    """(undirected 0/1 adjacency csr [L, L] without self-loops, live ids [L], in-degree [N])."""
    n, c = cache.shape
    ids = np.flatnonzero(alive)
    index = np.full(n, -1, dtype=np.int64)
    index[ids] = np.arange(len(ids))
    src = np.repeat(np.arange(n), c)
    dst = cache.ravel().astype(np.int64)
    ok = (dst >= 0) & alive[src] & alive[np.maximum(dst, 0)]
    src, dst = src[ok], dst[ok]
    in_degree = np.bincount(dst, minlength=n)
    loop = src == dst
    a, b = index[src[~loop]], index[dst[~loop]]
    m = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids))).tocsr()
    m = ((m + m.T) > 0).astype(np.int8).tocsr()
    return m, ids, in_degree


def path_stats(adj, members: np.ndarray, sources: int | None, seed: int = 0) -> tuple[float, float, bool]:
    """(diameter, APL, exact) over the component `members`, BFS from all or a sample of them."""
    if len(members) < 2:
        return 0.0, 0.0, True
    sub = adj[members][:, members]
    pick = np.arange(len(members))
    exact = sources is None or sources >= len(members)
    if not exact:
        pick = np.sort(np.random.default_rng(seed).choice(len(members), sources, replace=False))
    diameter, total, pairs = 0.0, 0.0, 0
    for a in range(0, len(pick), BATCH):
        d = csgraph.shortest_path(sub, unweighted=True, directed=False, indices=pick[a:a + BATCH])
        d = d[np.isfinite(d) & (d > 0)]
        diameter = max(diameter, float(d.max()) if len(d) else 0.0)
        total, pairs = total + float(d.sum()), pairs + len(d)
    return diameter, total / max(pairs, 1), exact


def average_clustering(adj) -> float:
    """Mean local clustering coefficient (networkx.average_clustering on the undirected graph)."""
    if adj.shape[0] == 0:
        return 0.0
    a = adj.astype(np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    tri = np.asarray((a @ a).multiply(a).sum(axis=1)).ravel() / 2.0  # triangles through each node
    pairs = deg * (deg - 1) / 2.0
    local = np.divide(tri, pairs, out=np.zeros_like(tri, dtype=float), where=pairs > 0)
    return float(local.mean())


def graph_metrics(cache: np.ndarray, alive: np.ndarray, sources: int | None = 5000) -> dict:
    """Every metric of one snapshot (see the module docstring)."""
    adj, ids, in_degree = live_graph(cache, alive)
    n_live = len(ids)
    n_comp, label = csgraph.connected_components(adj, directed=False)
    sizes = np.bincount(label) if n_live else np.zeros(1, np.int64)
    members = np.flatnonzero(label == sizes.argmax()) if n_live else np.zeros(0, np.int64)
    limit = None if sources is None or n_live <= sources else sources
    diameter, apl, exact = path_stats(adj, members, limit)
    live_deg = in_degree[ids]
    is_hub = live_deg >= HUB_SHARE * n_live if n_live else np.zeros(0, bool)
    return {
        "alive": n_live, "edges_undirected": int(adj.nnz // 2), "components": int(n_comp),
        "lcc": int(sizes.max()) if n_live else 0, "lcc_fraction": float(sizes.max() / n_live) if n_live else 0.0,
        "diameter": diameter, "apl": apl, "paths_exact": exact,
        "clustering": average_clustering(adj),
        "in_degree_mean": float(live_deg.mean()) if n_live else 0.0,
        "in_degree_max": int(live_deg.max()) if n_live else 0,
        "hubs": int(is_hub.sum()),
        "hub_in_degree_mean": float(live_deg[is_hub].mean()) if is_hub.any() else float("nan"),
        "nonhub_in_degree_mean": float(live_deg[~is_hub].mean()) if (~is_hub).any() else float("nan"),
        "_in_degree": live_deg,
    }


def read_snapshots(path: Path, smoke: bool):
    """Yield (round, cache [N, c], alive [N]) of every snapshot of one file."""
    with common.open_h5(path) as f:
        if "overlay/cache" not in f or "overlay/snapshot_rounds" not in f:
            raise common.AnalysisError(f"{path}: no view snapshots (/overlay/cache); run with overlay.snapshot_every > 0")
        rounds = f["overlay/snapshot_rounds"][()]
        cache = f["overlay/cache"]
        alive = f["nodes/alive"] if "nodes/alive" in f else None
        picks = range(len(rounds)) if not smoke else sorted({0, len(rounds) - 1})
        for s in picks:
            rnd = int(rounds[s])
            rows = cache[s]
            live = alive[rnd].astype(bool) if alive is not None else (rows >= 0).any(axis=1)
            yield rnd, rows, live


def analyse(files: list[Path], sources: int | None, smoke: bool) -> list[dict]:
    out = []
    for path in files:
        for rnd, cache, alive in read_snapshots(path, smoke):
            m = graph_metrics(cache, alive, 200 if smoke else sources)
            out.append({"file": path.name, "round": rnd, **m, "_path": str(path)})
            print(f"{path.name} round {rnd}: alive {m['alive']} lcc {m['lcc']} diameter {m['diameter']:.0f} "
                  f"apl {m['apl']:.3f} clustering {m['clustering']:.3f} hubs {m['hubs']}", flush=True)
    return out


def write_csv(rows: list[dict], out: Path) -> None:
    fields = [k for k in rows[0] if not k.startswith("_")]
    with open(out / "topology.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out / "in_degree.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "round", "in_degree", "nodes"])
        for r in rows:
            values, counts = np.unique(r["_in_degree"], return_counts=True)
            w.writerows([r["file"], r["round"], int(v), int(k)] for v, k in zip(values, counts))


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted({r["file"] for r in rows})
    panels = [("diameter", "undirected diameter"), ("apl", "average path length"),
              ("clustering", "clustering coefficient"), ("lcc_fraction", "largest component / live nodes"),
              ("hubs", "hubs (in-degree >= 99% of live)"), ("alive", "live nodes")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for ax, (key, label) in zip(axes.ravel(), panels):
        for name in files:
            mine = [r for r in rows if r["file"] == name]
            ax.plot([r["round"] for r in mine], [r[key] for r in mine], marker="o", ms=3, label=name)
        ax.set_title(label)
        ax.set_xlabel("round")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    common.legend_outside(axes[0, -1])
    fig.suptitle("Overlay topology per snapshot (live nodes, undirected view)")
    fig.tight_layout()
    fig.savefig(out / "topology.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    for name in files:
        mine = [r for r in rows if r["file"] == name]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in [mine[0], mine[len(mine) // 2], mine[-1]] if len(mine) > 2 else mine:
            values, counts = np.unique(r["_in_degree"], return_counts=True)
            ax.plot(values, counts, marker=".", ls="-", label=f"round {r['round']}")
        ax.set_yscale("log")
        ax.set_xscale("symlog")
        ax.set_title(f"In-degree distribution: {name}")
        ax.set_xlabel("in-degree")
        ax.set_ylabel("nodes")
        common.legend_outside(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"in_degree_{Path(name).stem}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)


SUMMARY = [("alive", "live", 0), ("hubs", "hubs", 1), ("hub_in_degree_mean", "hub in-degree", 1),
           ("nonhub_in_degree_mean", "other in-degree", 1), ("diameter", "diameter", 2), ("apl", "APL", 3),
           ("clustering", "clustering", 3), ("lcc_fraction", "largest component", 3)]


def phases(events: list, rnd: int, rounds: list[int]) -> list[str]:
    """The summary phases of the snapshot taken at config round `rnd`, of the snapshots `rounds`
    (see the docstring): before (the last one before the first fault), churn, end (the last one)."""
    faults = [e for e in events if e.kind in ("crash", "hub_crash", "churn")]
    out = []
    if faults:
        first = min(e.start for e in faults)
        if rnd == max((r for r in rounds if r < first), default=None):
            out.append("before")
    out += ["churn" for e in faults if e.kind == "churn" and e.start <= rnd < e.end]
    if rnd == max(rounds):
        out.append("end")
    return out


def summarise(rows: list[dict], files: list[Path]) -> tuple[list[dict], list]:
    """(one row per overlay x scenario x phase, the groups): means and stds over seeds and snapshots."""
    groups = common.load_groups(files)
    common.overlay_labels(groups)
    group_of = {str(r.path): g for g in groups for r in g.runs}
    table = []
    for g in groups:
        mine = [r for r in rows if group_of.get(r["_path"]) is g]
        if not mine:
            continue
        rounds = sorted({r["round"] for r in mine})
        tagged = [(p, r) for r in mine for p in phases(g.events, r["round"], rounds)]
        for e in g.events:  # the first snapshot at or after each crash and hub attack
            if e.kind in ("crash", "hub_crash"):
                after = sorted({r["round"] for r in mine if r["round"] >= e.start})
                tagged += [("fault", r) for r in mine if after and r["round"] == after[0]]
        for phase in ("before", "fault", "churn", "end"):
            picked = [r for p, r in tagged if p == phase]
            if not picked:
                continue
            out = {"overlay": g.method, "scenario": g.scenario, "phase": phase, "seeds": g.n_seeds,
                   "snapshots": len(picked), "rounds": f"{min(r['round'] for r in picked)}-{max(r['round'] for r in picked)}"}
            for key, _, _ in SUMMARY:
                v = np.array([r[key] for r in picked], dtype=np.float64)
                out[key] = common.nanmean(v) if len(v) else float("nan")
                out[f"{key}_std"] = common.nanstd(v) if len(v) > 1 else float("nan")
            table.append(out)
    return table, groups


def write_summary(table: list[dict], groups: list, rows: list[dict], out: Path) -> None:
    common.write_csv(out / "topology_summary.csv", table)

    def fmt(v, digits):
        return "—" if np.isnan(v) else f"{v:.{digits}f}"

    lines = [[t["overlay"], t["scenario"], t["phase"], t["rounds"], t["snapshots"]]
             + [fmt(t[key], d) for key, _, d in SUMMARY] for t in table]
    (out / "topology_summary.md").write_text(common.markdown_table(
        ["overlay", "scenario", "phase", "snapshot rounds", "snapshots"] + [label for _, label, _ in SUMMARY], lines))

    plt = common.pyplot()
    panels = [("hubs", "hubs"), ("diameter", "diameter"), ("apl", "APL"), ("clustering", "clustering"),
              ("lcc_fraction", "largest component / live")]
    scenarios = common.by_scenario(groups)
    fig, axes = plt.subplots(len(panels), len(scenarios), figsize=(3.6 * len(scenarios), 1.9 * len(panels)),
                             squeeze=False, sharex=True, sharey="row")
    color = common.colors(groups)
    for col, (scenario, members) in enumerate(scenarios.items()):
        for i, g in enumerate(members):
            paths = {str(r.path) for r in g.runs}
            mine = [r for r in rows if r["_path"] in paths]
            rounds = sorted({r["round"] for r in mine})
            for row, (key, label) in enumerate(panels):
                y = [common.nanmean(np.array([r[key] for r in mine if r["round"] == x], dtype=np.float64))
                     for x in rounds]
                axes[row, col].plot(np.array(rounds) + 1, y, color=color[g.method], lw=1.4, label=g.method,
                                    **common.marks(i, len(rounds), len(members)))
        for row, (key, label) in enumerate(panels):
            ax = axes[row, col]
            common.mark_faults(ax, members[0].events, text=False)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
        axes[0, col].set_title(scenario, fontsize=9)
        axes[-1, col].set_xlabel("round")
    common.legend_outside(axes[0, -1])
    fig.tight_layout()
    fig.savefig(out / "topology_summary.png", dpi=70, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="heal_mpi HDF5 outputs with /overlay/cache snapshots")
    ap.add_argument("--out", type=Path, required=True, help="folder for the CSV files and PNG plots")
    ap.add_argument("--sources", type=int, default=5000,
                    help="BFS sources for path lengths; exact when the live count is at most this")
    ap.add_argument("--smoke", action="store_true", help="first and last snapshot only, 200 BFS sources")
    ap.add_argument("--summary", action="store_true",
                    help="also group by experiment: topology_summary.md/.csv/.png (per overlay, scenario and phase)")
    ap.add_argument("--no-per-file-plots", dest="per_file", action="store_false",
                    help="skip topology.png and the per-file in-degree plots")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = analyse(args.files, args.sources, args.smoke)
    if not rows:
        print("no snapshots found")
        return 1
    write_csv(rows, args.out)
    if args.per_file:
        plot(rows, args.out)
    if args.summary:
        write_summary(*summarise(rows, args.files), rows, args.out)
    print(f"wrote {args.out / 'topology.csv'} and plots to {args.out}")
    return 0


if __name__ == "__main__":
    common.run_main(main)
