#!/usr/bin/env python3
"""Final-accuracy table, methods x scenarios, as in the HEAL paper's table.

    python analysis/final_table.py results/*.h5 --out tables [--smoke]

A cell is the mean over seeds of each run's final accuracy: `/rounds/acc_mean` (mean over the
evaluated live nodes) at its last valid round, in %, ± the std over seeds when there are
several. A run cut short (rounds_completed < run.rounds) contributes its last completed
evaluated round; such cells are marked †. A second table gives what each cost: the total
simulated traffic of a run (models + overlay + control, summed over its rounds, mean over
seeds, binary units).

Writes final_accuracy.md and final_accuracy.csv (fractions, not %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common


def finals(group: common.Group) -> list[tuple[float, int]]:
    """(final accuracy, its round from 1) of every run of the group."""
    return [common.last_valid(r.series.get("acc_mean", np.full(r.completed, np.nan))) for r in group.runs]


def rows(groups: list[common.Group]) -> list[dict]:
    out = []
    for g in groups:
        f = finals(g)
        acc = np.array([a for a, _ in f])
        ok = acc[~np.isnan(acc)]
        out.append({"method": g.method, "scenario": g.scenario, "seeds": g.n_seeds,
                    "final_acc_mean": float(ok.mean()) if len(ok) else float("nan"),
                    "final_acc_std": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
                    "final_round_min": min(r for _, r in f), "final_round_max": max(r for _, r in f),
                    "total_bytes": total_bytes(g),
                    "partial": any(r.partial for r in g.runs),
                    "files": ";".join(str(r.path) for r in g.runs)})
    return out


def markdown(groups: list[common.Group], table: list[dict]) -> str:
    scenarios = list(common.by_scenario(groups))
    cell = {(r["method"], r["scenario"]): r for r in table}
    counts = {r["seeds"] for r in table}
    body = []
    for m in common.methods(groups):
        line = [m]
        for s in scenarios:
            r = cell.get((m, s))
            if r is None:
                line.append("")
                continue
            g = next(g for g in groups if g.method == m and g.scenario == s)
            text = common.mean_std_text([a for a, _ in finals(g)], scale=100)
            line.append(text + (" †" if r["partial"] else "") + (f" (n={r['seeds']})" if len(counts) > 1 else ""))
        body.append(line)
    traffic = [[m, *("" if (m, s) not in cell else common.size(total_bytes(
        next(g for g in groups if g.method == m and g.scenario == s))) for s in scenarios)] for m in common.methods(groups)]
    n = counts.pop() if len(counts) == 1 else None
    seeds = {None: "mean ± std over seeds (n = seeds per cell)", 1: "one seed per cell, so no ± std"}.get(
        n, f"mean ± std over {n} seeds")
    notes = f"Final test accuracy (%): mean over the evaluated live nodes at the last round; {seeds}."
    if any(r["partial"] for r in table):
        notes += "\n† includes runs cut short: their last completed round is used."
    return ("# Final accuracy\n\n" + common.markdown_table(["method", *scenarios], body) + "\n" + notes + "\n\n"
            "# Total simulated traffic\n\n" + common.markdown_table(["method", *scenarios], traffic) +
            "\nModels, overlay and control messages of a whole run, mean over seeds (1 MiB = 2^20 B); "
            "traffic.md splits them.\n")


def total_bytes(group: common.Group) -> float:
    """A run's simulated bytes over all its rounds, mean over the seeds."""
    return float(np.nanmean([np.nansum(r.series["bytes"]) for r in group.runs])) if group.has("bytes") \
        else float("nan")


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(groups)
    md = out / "final_accuracy.md"
    md.write_text(markdown(groups, table))
    return [md, common.write_csv(out / "final_accuracy.csv", table)]


def main(argv=None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    paths = write(common.load_groups(args.files), args.out, args.smoke)
    print(paths[0].read_text())
    common.print_paths(paths)
    return 0


if __name__ == "__main__":
    common.run_main(main)
