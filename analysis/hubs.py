#!/usr/bin/env python3
"""Hubs and live nodes over rounds: one figure per scenario, one line per method.

    python analysis/hubs.py results/*.h5 --out figures [--smoke]

Top panel: hubs. Solid lines are the overlay's hubs (`/rounds/hubs`: live nodes present in
at least 99% of the live views, as Elevator elects them), dashed lines the aggregating hubs
(`/rounds/hubs_active`: nodes that averaged client models this round; HEAL, FedAvg, Gaia).
Bottom panel: live nodes (`/rounds/alive`). Values are means over seeds; fault events marked.

Writes hubs_<scenario>.png per scenario and hubs.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

SERIES = (("hubs", "overlay hubs", dict(ls="-")), ("hubs_active", "aggregating hubs", dict(ls=":", marker="o", mfc="none")))


def plot_scenario(scenario: str, groups: list[common.Group], color: dict, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    for g, lw in zip(groups, common.widths(groups)):
        x = np.arange(1, g.n_rounds + 1)
        for metric, _, style in SERIES:
            if g.has(metric):
                top.plot(x, common.nanmean(g.stack(metric)), color=color[g.method], lw=lw, ms=5,
                         markevery=max(1, g.n_rounds // 15), **style)
        bottom.plot(x, common.nanmean(g.stack("alive")), color=color[g.method], lw=lw,
                    label=f"{g.method} ({g.n_seeds} seed{'s' if g.n_seeds > 1 else ''})")
    n_rounds = max(g.n_rounds for g in groups)
    for ax in (top, bottom):
        common.mark_faults(ax, groups[0].events, text=ax is top)
        common.round_axis(ax, n_rounds)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_xlabel("")
    top.set_ylabel("hubs (nodes)")
    top.set_title(f"Hubs and live nodes: {scenario}")
    top.legend(handles=[Line2D([], [], color="0.2", label=lab, **style) for _, lab, style in SERIES],
               loc="center right", fontsize=8, framealpha=0.85)
    bottom.set_ylabel("live nodes")
    bottom.legend(loc="lower left", fontsize=8, framealpha=0.85)
    fig.text(0.01, 0.0, "Means over seeds. Overlay hubs: live nodes in ≥ 99% of the live views. Aggregating hubs: "
             "nodes that averaged client models.", fontsize=7.5, color="0.3", ha="left", va="top")
    fig.tight_layout()
    return common.save(fig, path, smoke)


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    color = common.colors(groups)
    paths, rows = [], []
    for scenario, members in common.by_scenario(groups).items():
        paths.append(plot_scenario(scenario, members, color, out / f"hubs_{common.slug(scenario)}.png", smoke))
        for g in members:
            cols = {m: common.nanmean(g.stack(m)) for m in ("hubs", "hubs_active", "alive")}
            rows += [{"method": g.method, "scenario": scenario, "round": i + 1, "seeds": g.n_seeds,
                      **{m: f"{v[i]:.6g}" for m, v in cols.items()}} for i in range(g.n_rounds)]
    paths.append(common.write_csv(out / "hubs.csv", rows))
    return paths


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
