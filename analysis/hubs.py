#!/usr/bin/env python3
"""Hubs and live nodes over rounds: one figure per scenario, one line per method.

    python analysis/hubs.py results/*.h5 --out figures [--smoke]

Top panel, the three meanings of "hub" (README, HDF5 layout): solid lines the overlay hubs
(`/rounds/hubs`: live nodes present in at least 99 % of the live views, as Elevator elects
them), dotted lines the self-declared hubs (`/nodes/is_hub`: nodes in their own hub list,
counted per round), dashed lines the aggregating hubs (`/rounds/hubs_active`: nodes that
averaged client models this round; HEAL, FedAvg, Gaia). They agree once Elevator has
converged; while it recovers they do not: a node may list itself before every other node
lists it (self-declared, not yet an overlay hub), and a HEAL client sends to the hubs of its
own list, so a round can have more aggregating hubs than h (two clients' lists disagree) or
none (every listed hub is dead). Bottom panel: live nodes (`/rounds/alive`). Values are
means over seeds; fault events marked and named in the legend.

Writes hubs_<scenario>.png per scenario and hubs.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

SERIES = (("hubs", "overlay hubs (in ≥ 99 % of the live views)", dict(ls="-")),
          ("self_hubs", "self-declared hubs (in their own hub list)", dict(ls=":")),
          ("hubs_active", "aggregating hubs (averaged clients this round)", dict(ls="--")))


def self_hubs(group: common.Group) -> np.ndarray:
    """[seeds, R]: per run, the nodes in their own hub list per round (`/nodes/is_hub`, live ones)."""
    out = np.full((group.n_seeds, group.n_rounds), np.nan)
    for i, r in enumerate(group.runs):
        with common.open_h5(r.path) as f:
            if "nodes/is_hub" in f and "nodes/alive" in f:
                hub = f["nodes/is_hub"][:r.completed].astype(np.int64)
                out[i, :r.completed] = ((hub == 1) & (f["nodes/alive"][:r.completed] == 1)).sum(axis=1)
    return out


def plot_scenario(scenario: str, groups: list[common.Group], color: dict, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    for i, (g, lw) in enumerate(zip(groups, common.widths(groups))):
        x = np.arange(1, g.n_rounds + 1)
        for metric, _, style in SERIES:
            values = self_hubs(g) if metric == "self_hubs" else g.stack(metric) if g.has(metric) else None
            if values is not None and np.isfinite(values).any():
                top.plot(x, common.nanmean(values), color=color[g.method], lw=lw,
                         **common.marks(i, g.n_rounds, len(groups)), **style)
        bottom.plot(x, common.nanmean(g.stack("alive")), color=color[g.method], lw=lw,
                    **common.marks(i, g.n_rounds, len(groups)),
                    label=f"{g.method} ({g.n_seeds} seed{'s' if g.n_seeds > 1 else ''})")
    n_rounds = max(g.n_rounds for g in groups)
    for ax in (top, bottom):
        common.mark_faults(ax, groups[0].events, text=ax is top)
        common.round_axis(ax, n_rounds)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_xlabel("")
    top.set_ylabel("hubs (nodes)")
    top.set_title(f"Hubs and live nodes: {scenario}\n{common.setup_text(groups[0].config)}", fontsize=10)
    faults = [h for h in top.get_legend_handles_labels()[0]]
    common.legend_outside(top, handles=[Line2D([], [], color="0.2", label=lab, **style) for _, lab, style in SERIES]
                          + faults)
    bottom.set_ylabel("live nodes")
    common.legend_outside(bottom)
    fig.text(0.01, 0.0, "Means over seeds. Identical lines overlap: each method has its own marker.",
             fontsize=7.5, color="0.3", ha="left", va="top")
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
            cols["self_hubs"] = common.nanmean(self_hubs(g))
            rows += [{"method": g.method, "scenario": scenario, "round": i + 1, "seeds": g.n_seeds,
                      **{m: f"{v[i]:.6g}" for m, v in cols.items()}} for i in range(g.n_rounds)]
    paths.append(common.write_csv(out / "hubs.csv", rows))
    return paths


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
