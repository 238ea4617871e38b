#!/usr/bin/env python3
"""Stragglers under a clock (`[time]`): who the round waits for, per method and scenario.

    python analysis/stragglers.py results/*.h5 --out tables [--smoke]

Only runs with a clock. Per group (means over rounds and seeds): the simulated seconds of a
round; how many times longer the round lasts than the median live node's own work (its busy
time: the round less `/nodes/idle_time`; 1 when no one waits for anyone); the models aggregators dropped per round
(`/rounds/late_dropped`, `time.deadline` and `time.quorum`); the idle share of the aggregators
and of the other live nodes (`/nodes/idle_time` over the round's duration); and the aggregators
of the last round (`/nodes/is_hub`: FedAvg's server, Gaia's servers, HEAL's hubs; none for
Gossip and EL) with their uplinks as multiples of the median node's (`/devices/uplink`), for
the first seed.

Writes stragglers.md and stragglers.csv (nothing when no run has a clock).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

SHOWN_HUBS = 5


def run_facts(run: common.Run) -> dict:
    """One run's per-round means and its last round's aggregators. Asynchronous rounds (fixed slices)
    wait for no one: no waiting and no idle share (a node's work counts in the slice it began in)."""
    r = run.completed
    sliced = float(run.config.get("time", {}).get("slice", 0)) > 0
    with common.open_h5(run.path) as f:
        alive = f["nodes/alive"][:r] == 1
        hub = (f["nodes/is_hub"][:r] == 1) & alive
        idle = f["nodes/idle_time"][:r].astype(np.float64)
        uplink = f["devices/uplink"][()]
    seconds = run.series["sim_seconds"][:r]
    busy = seconds[:, None] - idle
    median_busy = np.array([np.median(busy[k][alive[k]]) if alive[k].any() else np.nan for k in range(r)])
    share = idle / seconds[:, None]
    last = np.flatnonzero(hub[-1]) if r else np.zeros(0, np.int64)
    if sliced:
        share[:] = median_busy[:] = np.nan
    return {"seconds": float(np.nanmean(seconds)),
            "wait": float(np.nanmean(seconds / median_busy)),
            "dropped": float(np.mean(run.series["late_dropped"][:r])) if "late_dropped" in run.series else np.nan,
            "hub_idle": float(np.nanmean(np.where(hub, share, np.nan))) if hub.any() else np.nan,
            "other_idle": float(np.nanmean(np.where(alive & ~hub, share, np.nan))),
            "hubs": [(int(i), float(uplink[i] / np.median(uplink))) for i in last]}


def mean_of(values: list[float]) -> float:
    """Mean of the finite values; NaN when none (Gossip has no aggregators)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values[np.isfinite(values)].mean()) if np.isfinite(values).any() else float("nan")


def rows(groups: list[common.Group]) -> list[dict]:
    out = []
    for g in groups:
        facts = [run_facts(r) for r in g.runs]
        mean = {k: mean_of([f[k] for f in facts]) for k in ("seconds", "wait", "dropped", "hub_idle", "other_idle")}
        hubs = facts[0]["hubs"]
        out.append({"method": g.method, "scenario": g.scenario, "seeds": g.n_seeds, **mean,
                    "hubs": ";".join(f"{i}:{up:.3g}" for i, up in hubs)})
    return out


def hubs_cell(text: str) -> str:
    if not text:
        return "—"
    hubs = text.split(";")
    shown = ", ".join(f"{i} ({float(up):.2g}×)" for i, up in (h.split(":") for h in hubs[:SHOWN_HUBS]))
    return shown + (f" +{len(hubs) - SHOWN_HUBS} more" if len(hubs) > SHOWN_HUBS else "")


def percent(x: float) -> str:
    return "—" if np.isnan(x) else f"{100 * x:.0f} %"


def markdown(table: list[dict]) -> str:
    header = ["method", "scenario", "s / round", "round / median work", "dropped / round", "aggregators idle",
              "others idle", "aggregators (uplink × median)"]
    body = [[r["method"], r["scenario"], f"{r['seconds']:.3g}", "—" if np.isnan(r["wait"]) else f"{r['wait']:.2f}",
             "—" if np.isnan(r["dropped"]) else f"{r['dropped']:.1f}", percent(r["hub_idle"]),
             percent(r["other_idle"]), hubs_cell(r["hubs"])] for r in table]
    return ("# Stragglers\n\n" + common.markdown_table(header, body) +
            "\nSimulated seconds per round; how many times longer a round lasts than the median live node's own "
            "work (training, sending, receiving: the round less its idle time); models dropped by a deadline or "
            "quorum; the share of a round the aggregators (hubs, servers) and the other live nodes sit idle; the "
            "last round's aggregators with their uplinks as multiples of the median node's (first seed). Means "
            "over rounds and seeds. Asynchronous rounds wait for no one: — for waiting and idle shares.\n")


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    timed = [g for g in groups if g.has("sim_seconds")]
    if not timed:
        return []
    out.mkdir(parents=True, exist_ok=True)
    table = rows(timed)
    md = out / "stragglers.md"
    md.write_text(markdown(table))
    return [md, common.write_csv(out / "stragglers.csv", table)]


def main(argv=None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    paths = write(common.load_groups(args.files), args.out, args.smoke)
    if not paths:
        raise common.AnalysisError("no run has a clock ([time]): no straggler table")
    print(paths[0].read_text())
    common.print_paths(paths)
    return 0


if __name__ == "__main__":
    common.run_main(main)
