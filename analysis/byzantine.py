#!/usr/bin/env python3
"""Byzantine hub capture and Lift: hubs and Byzantine hubs over rounds, and the end-of-run table.

    python analysis/byzantine.py results/byzantine_laptop/*.h5 --out figures/byzantine [--smoke]

One figure per experiment (byzantine_<method>-<scenario>.png): the hubs (`/rounds/hubs`, live nodes
in >= 99 % of the live views) and the Byzantine ones among them (`/rounds/byzantine_hubs`),
mean over seeds with a 95 % interval (mean +- 1.96 standard errors), Lift's round marked.
The table (byzantine.md, byzantine.csv) gives, at the last round, the hubs and Byzantine
hubs under both hub definitions of byzantine.md §3.2 (99 % of the live views; strict: in
every other live node's view), the Byzantine share of the hubs with both denominators
(/h and /hubs), for one Byzantine node the share of runs in which it is a hub, and the
number the LIFT paper reports for the same scenario (N = 1000, c = 20, h = 10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

# byzantine.md §1.5: (kind, Byzantine count or fraction, Lift) -> what the thesis reports
PAPER = {
    ("passive", 1, False): "Byzantine a hub in 2/100 runs; 10 hubs",
    ("active", 1, False): "Byzantine a hub in 7/100 runs; 10 hubs",
    ("noncoordinated", 0.05, False): "0.95 of 10 hubs Byzantine",
    ("coordinated", 0.01, False): "1.34 of 10 hubs Byzantine (13.4 %)",
    ("coordinated", 0.02, False): "the threshold (figure only)",
    ("coordinated", 0.05, False): "all 10 hubs Byzantine",
    ("coordinated", 0.05, True): "9.58 hubs, 0.34 Byzantine",
    ("coordinated", 0.10, True): "7.82 hubs, 3.19 Byzantine",
    ("coordinated", 0.15, True): "6.71 hubs, 4.21 Byzantine",
}


def paper_value(config: dict) -> str:
    adv = config.get("adversary", {})
    size = int(adv.get("byzantine", 0)) or round(float(adv.get("byzantine_fraction", 0.0)), 4)
    return PAPER.get((adv.get("kind", "none"), size, int(adv.get("lift_round", -1)) >= 0), "")


def interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, half-width of the 95 % interval) over seeds (axis 0), NaN ignored."""
    mean = common.nanmean(values)
    n = np.maximum(np.sum(~np.isnan(values), axis=0), 1)
    return mean, 1.96 * common.nanstd(values) / np.sqrt(n)


def plot(group: common.Group, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(1, group.n_rounds + 1)
    for metric, label, color in (("hubs", "hubs", "0.2"), ("byzantine_hubs", "Byzantine hubs", "crimson")):
        if not group.has(metric):
            continue
        mean, half = interval(group.stack(metric))
        ax.plot(x, mean, color=color, lw=1.6, label=label)
        ax.fill_between(x, np.maximum(mean - half, 0), mean + half, color=color, alpha=0.2, lw=0)
    common.mark_faults(ax, group.events)
    common.round_axis(ax, group.n_rounds)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("nodes")
    ax.set_title(f"{group.method}: {group.scenario} ({group.n_seeds} seed{'s' if group.n_seeds > 1 else ''})", fontsize=10)
    common.legend_outside(ax)
    fig.tight_layout()
    return common.save(fig, path, smoke)


def end_row(group: common.Group) -> dict:
    """The table's row: values at each run's last valid round, mean over seeds."""
    h = int(group.config.get("overlay", {}).get("hubs", 10))
    last = {m: np.array([common.last_valid(r.series[m])[0] if m in r.series else np.nan for r in group.runs])
            for m in ("hubs", "byzantine_hubs", "hubs_strict", "byzantine_hubs_strict", "byzantine")}
    hubs, byz = last["hubs"], last["byzantine_hubs"]
    single = np.nanmax(last["byzantine"]) == 1
    return {
        "scenario": f"{group.method}: {group.scenario}" if group.method != "overlay only" else group.scenario,
        "seeds": group.n_seeds, "rounds": group.n_rounds,
        "hubs": f"{np.nanmean(hubs):.2f}", "byzantine_hubs": f"{np.nanmean(byz):.2f}",
        "byzantine_share_of_h": f"{np.nanmean(byz) / h:.3f}",
        "byzantine_share_of_hubs": f"{np.nanmean(byz / np.maximum(hubs, 1)):.3f}",
        "hubs_strict": f"{np.nanmean(last['hubs_strict']):.2f}",
        "byzantine_hubs_strict": f"{np.nanmean(last['byzantine_hubs_strict']):.2f}",
        "runs_byzantine_is_hub": f"{int(np.sum(byz > 0))}/{len(byz)}" if single else "",
        "paper": paper_value(group.config),
    }


def paper_order(group: common.Group) -> tuple:
    """The thesis' order of scenarios (byzantine.md §1.5), then the others by label."""
    keys = [k for k, v in PAPER.items() if v == paper_value(group.config)]
    return (list(PAPER).index(keys[0]) if keys else len(PAPER), group.method, group.scenario)


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    groups = sorted(groups, key=paper_order)
    paths = [plot(g, out / f"byzantine_{common.slug(g.method + ' ' + g.scenario)}.png", smoke) for g in groups]
    rows = [end_row(g) for g in groups]
    paths.append(common.write_csv(out / "byzantine.csv", rows))
    header = ["scenario", "seeds", "rounds", "hubs", "Byzantine hubs", "Byzantine / h", "Byzantine / hubs",
              "strict hubs", "strict Byzantine", "runs with the Byzantine a hub", "LIFT paper (1000 cycles, 100 runs)"]
    table = common.markdown_table(header, [list(r.values()) for r in rows])
    (out / "byzantine.md").write_text(table + "\n")
    print(table)
    return paths + [out / "byzantine.md"]


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
