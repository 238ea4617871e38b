#!/usr/bin/env python3
"""Rounds, simulated bytes and (with a clock) simulated seconds to reach target accuracies, per method and scenario.

    python analysis/time_to_accuracy.py results/*.h5 --out tables [--targets 0.8 0.9] [--smoke]

For each run, the first round k (counted from 1: after k rounds) at which `/rounds/acc_mean`
(mean over the evaluated live nodes) is at least the target; then the mean ± std over the
seeds that reached it. "—" (NaN in the CSV) when no seed reached it, "(k/n seeds)" when only
some did. Beside each, the simulated traffic spent until then (`/rounds/bytes` summed up to that
round: models, overlay and control), mean over the seeds that reached it, in binary units; and,
when any run has a clock (`[time]`), the simulated seconds until then (`/rounds/sim_time` at
that round), mean ± std over the seeds that reached it.

Writes time_to_accuracy.md and time_to_accuracy.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

DEFAULT_TARGETS = (0.5, 0.8, 0.9)


def first_round(values: np.ndarray, target: float) -> float:
    """First round (from 1) with values >= target, or NaN if never."""
    hit = np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= target)
    return float(hit[0] + 1) if len(hit) else float("nan")


def rows(groups: list[common.Group], targets) -> list[dict]:
    out = []
    for g in groups:
        for t in targets:
            per_seed = [first_round(r.series.get("acc_mean", np.zeros(0)), t) for r in g.runs]
            ok = [v for v in per_seed if not np.isnan(v)]
            spent = [float(np.nansum(r.series["bytes"][:int(k)])) for r, k in zip(g.runs, per_seed)
                     if not np.isnan(k) and "bytes" in r.series]
            seconds = [float(r.series["sim_time"][int(k) - 1]) for r, k in zip(g.runs, per_seed)
                       if not np.isnan(k) and "sim_time" in r.series]
            out.append({"method": g.method, "scenario": g.scenario, "target": t, "seeds": g.n_seeds,
                        "reached": len(ok), "rounds_mean": float(np.mean(ok)) if ok else float("nan"),
                        "rounds_std": float(np.std(ok, ddof=1)) if len(ok) > 1 else float("nan"),
                        "rounds_per_seed": ";".join("" if np.isnan(v) else str(int(v)) for v in per_seed),
                        "bytes_mean": float(np.mean(spent)) if spent else float("nan"),
                        "seconds_per_seed": ";".join(f"{v:.6g}" for v in seconds)})
    return out


def cell(r: dict) -> str:
    text = common.mean_std_text([float(v) if v else float("nan") for v in r["rounds_per_seed"].split(";")],
                                single_digits=0)
    if 0 < r["reached"] < r["seeds"]:
        text += f" ({r['reached']}/{r['seeds']} seeds)"
    return text


def seconds_cell(r: dict) -> str:
    return common.mean_std_text([float(v) for v in r["seconds_per_seed"].split(";") if v], single_digits=1)


def markdown(table: list[dict], targets) -> str:
    clock = any(np.isfinite(float(v)) for r in table for v in r["seconds_per_seed"].split(";") if v)
    header = ["method", "scenario", *(f"rounds to {100 * t:g}%" for t in targets),
              *(f"traffic to {100 * t:g}%" for t in targets),
              *(f"simulated s to {100 * t:g}%" for t in targets if clock)]
    body = []
    for key in dict.fromkeys((r["method"], r["scenario"]) for r in table):
        mine = [r for r in table if (r["method"], r["scenario"]) == key]
        body.append([*key, *map(cell, mine), *(common.size(r["bytes_mean"]) for r in mine),
                     *(map(seconds_cell, mine) if clock else ())])
    return ("# Rounds and traffic to target accuracy\n\n" + common.markdown_table(header, body) +
            "\nFirst round (after k rounds) at which the mean test accuracy over the evaluated live nodes "
            "reaches the target; mean ± std over the seeds that reached it; — = never reached. Traffic: the "
            "simulated bytes sent until then (binary units)." +
            (" Simulated s: the simulated seconds from the start to the end of that round ([time])." if clock else "")
            + "\n")


def write(groups: list[common.Group], out: Path, smoke: bool = False, targets=DEFAULT_TARGETS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(groups, targets)
    md = out / "time_to_accuracy.md"
    md.write_text(markdown(table, targets))
    return [md, common.write_csv(out / "time_to_accuracy.csv", table)]


def add_targets(ap) -> None:
    ap.add_argument("--targets", type=float, nargs="+", default=list(DEFAULT_TARGETS), metavar="ACC",
                    help=f"target accuracies as fractions (default: {' '.join(map(str, DEFAULT_TARGETS))})")


def main(argv=None) -> int:
    ap = common.parser(__doc__)
    add_targets(ap)
    args = ap.parse_args(argv)
    if any(not 0 < t <= 1 for t in args.targets):
        raise common.AnalysisError(f"--targets must be fractions in (0, 1], got {args.targets}")
    paths = write(common.load_groups(args.files), args.out, args.smoke, args.targets)
    print(paths[0].read_text())
    common.print_paths(paths)
    return 0


if __name__ == "__main__":
    common.run_main(main)
