#!/usr/bin/env python3
"""Accuracy vs round, and vs the simulated traffic: one figure each per scenario, one line per method.

    python analysis/accuracy.py results/*.h5 --out figures [--smoke]

Each line is the test accuracy averaged over the evaluated live nodes (`/rounds/acc_mean`),
then over the seeds of its group. The light band is ± the std over nodes (`/rounds/acc_std`,
averaged over seeds); with several seeds a darker band is ± the std over seeds. Crashes and
hub attacks are dashed vertical lines, churn windows grey spans, named in the legend. Rounds
without evaluation (`eval.every` > 1) are skipped. The second figure puts the same accuracy
against the cumulative simulated bytes (`/rounds/bytes`: models, overlay and control), the
usual figure for communication cost, on a log axis. When the runs have a clock (`[time]`), a
third puts it against the simulated seconds since the start (`/rounds/sim_time`, mean over seeds).

Writes accuracy_<scenario>.png, accuracy_vs_bytes_<scenario>.png and (with a clock)
accuracy_vs_time_<scenario>.png per scenario, and accuracy_curves.csv (every plotted point, with
the cumulative bytes and simulated seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common


def curve(group: common.Group) -> dict:
    """Per-round arrays [R] of the group: round (from 1), mean, node std, seed std, seeds, cumulative
    bytes and simulated seconds (NaN without a clock)."""
    acc, std = group.stack("acc_mean"), group.stack("acc_std")  # [S, R]
    seeds = (~np.isnan(acc)).sum(axis=0)                         # [R]
    keep = seeds > 0
    spent = common.nanmean(np.nancumsum(group.stack("bytes"), axis=1)) if group.has("bytes") else \
        np.full(group.n_rounds, np.nan)  # [R] cumulative simulated bytes, mean over seeds
    return {"round": np.arange(1, group.n_rounds + 1)[keep], "mean": common.nanmean(acc)[keep],
            "node_std": np.nan_to_num(common.nanmean(std)[keep]),
            "seed_std": np.nan_to_num(common.nanstd(acc)[keep]), "seeds": seeds[keep], "bytes": spent[keep],
            "time": common.nanmean(group.stack("sim_time"))[keep]}


def plot_scenario(scenario: str, groups: list[common.Group], color: dict, path: Path, smoke: bool,
                  against: str = "round") -> Path:
    """Accuracy against the round, the cumulative simulated bytes (`against` = "bytes") or the simulated
    seconds (`against` = "time")."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    several = any(g.n_seeds > 1 for g in groups)
    for i, (g, lw) in enumerate(zip(groups, common.widths(groups))):
        c = curve(g)
        x, y = c[against], c["mean"]
        seeds = f"{g.n_seeds} seeds" if g.n_seeds > 1 else f"seed {g.runs[0].seed}"
        ax.plot(x, y, color=color[g.method], lw=lw, **common.marks(i, len(x), len(groups)),
                label=f"{g.method} ({seeds}): final {100 * y[-1]:.1f}%")
        ax.fill_between(x, y - c["node_std"], y + c["node_std"], color=color[g.method], alpha=0.12, lw=0)
        if g.n_seeds > 1:
            ax.fill_between(x, y - c["seed_std"], y + c["seed_std"], color=color[g.method], alpha=0.35, lw=0)
    if against == "round":
        common.mark_faults(ax, groups[0].events)
        common.round_axis(ax, max(g.n_rounds for g in groups))
    elif against == "time":
        ax.set_xlabel("simulated seconds since the start ([time]; mean over seeds)")
        ax.grid(True, alpha=0.3)
    else:
        spent = [curve(g)["bytes"] for g in groups]
        lo, hi = min(np.nanmin(b) for b in spent), max(np.nanmax(b) for b in spent)
        if lo > 0 and hi > 30 * lo:  # methods whose traffic differs by orders of magnitude
            ax.set_xscale("log")
        common.binary_bytes(ax, "x")
        ax.set_xlabel("cumulative simulated traffic (models, overlay and control messages)")
        ax.grid(True, alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, 0.0), min(hi, 1.0))
    ax.set_ylabel("test accuracy (mean over nodes)")
    ax.set_title(f"Accuracy vs {dict(round='round', bytes='traffic', time='simulated time')[against]}: {scenario}\n"
                 f"{common.setup_text(groups[0].config)}", fontsize=10)
    common.legend_outside(ax)
    rule = "; a fault @r strikes right after round r" if groups[0].events and against == "round" else ""
    bands = "light band: ± std over nodes" + ("; dark band: ± std over seeds" if several else "")
    fig.text(0.01, -0.01, f"line: mean accuracy of the evaluated live nodes{', mean over seeds' if several else ''}; "
             f"{bands}.\nRound k = after k rounds{rule}.", fontsize=7.5, color="0.3", ha="left", va="top")
    return common.save(fig, path, smoke)


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    """Figures and the curves CSV into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    color = common.colors(groups)
    paths, rows = [], []
    clock = any(g.has("sim_time") for g in groups)  # the curves get a sim_time column only then
    for scenario, members in common.by_scenario(groups).items():
        members = [g for g in members if np.isfinite(g.stack("acc_mean")).any()]  # a run cut before its first evaluation has none
        if not members:
            continue
        paths.append(plot_scenario(scenario, members, color, out / f"accuracy_{common.slug(scenario)}.png", smoke))
        if all(g.has("bytes") for g in members):
            paths.append(plot_scenario(scenario, members, color, out / f"accuracy_vs_bytes_{common.slug(scenario)}.png",
                                       smoke, against="bytes"))
        if all(g.has("sim_time") for g in members):
            paths.append(plot_scenario(scenario, members, color, out / f"accuracy_vs_time_{common.slug(scenario)}.png",
                                       smoke, against="time"))
        for g in members:
            c = curve(g)
            rows += [{"method": g.method, "scenario": scenario, "round": int(r), "seeds": int(s),
                      "acc_mean": f"{m:.6g}", "acc_std_nodes": f"{n:.6g}", "acc_std_seeds": f"{d:.6g}",
                      "cumulative_bytes": f"{b:.6g}", **({"sim_time": f"{t:.6g}"} if clock else {})}
                     for r, m, n, d, s, b, t in zip(c["round"], c["mean"], c["node_std"], c["seed_std"], c["seeds"],
                                                    c["bytes"], c["time"])]
    paths.append(common.write_csv(out / "accuracy_curves.csv", rows))
    return paths


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
