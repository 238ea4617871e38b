#!/usr/bin/env python3
"""Cycles to h hubs, and to h hubs again after each fault: the Elevator paper's convergence numbers.

    python analysis/recovery.py results/*.h5 --out DIR [--shares 0.99,0.5] [--smoke]

A *hub* is a live node whose in-degree (from /nodes/in_degree, a node listing itself counts)
is at least SHARE times the live count; at 0.99 that is `/rounds/hubs`, the simulator's own
count. h is the run's `overlay.hubs`. Per run:

- **to h**: the first round (counted from 1) with exactly h hubs;
- **after each crash or hub attack** at config round r (it strikes before round r + 1 runs):
  the cycles k until the first round with h hubs again, so k = 1 when the round of the fault
  already ends with h hubs; after a churn window [s, e): the cycles from round e + 1 on;
- **hubs after**: the fewest hubs in the 3 rounds from the fault on (how deep the dip is).

Values are means ± std over seeds; "never (n/N)" when n of the N seeds never got there.
Writes recovery.md (one row per method, scenario and share), recovery.csv (one row per run
and event) and recovery.png (hubs over rounds at the first share, one panel per scenario).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

DIP = 3  # rounds from the fault in which the fewest hubs are taken


def hub_counts(run: common.Run, share: float) -> np.ndarray:
    """Hubs per round [completed]: live nodes with in-degree >= share x live count."""
    with common.open_h5(run.path) as f:
        if "nodes/in_degree" in f and "nodes/alive" in f:
            deg = f["nodes/in_degree"][:run.completed].astype(np.float64)
            alive = f["nodes/alive"][:run.completed].astype(bool)
            n_alive = alive.sum(axis=1, keepdims=True)
            return (alive & (deg >= share * n_alive) & (n_alive > 0)).sum(axis=1).astype(np.float64)
    if np.isclose(share, 0.99) and "hubs" in run.series:
        return run.series["hubs"]
    raise common.AnalysisError(f"{run.path}: no /nodes/in_degree to count hubs at share {share}")


def first_at(hubs: np.ndarray, h: int, start: int) -> int | None:
    """Cycles from row `start` to the first row (>= start) with h hubs, counting row `start` as 1."""
    hit = np.flatnonzero(hubs[start:] == h)
    return int(hit[0]) + 1 if len(hit) else None


def fault_starts(events: list[common.Event]) -> list[tuple[str, int]]:
    """(label, first row after the fault) of every crash, hub attack and churn window."""
    out = []
    for e in events:
        if e.kind in ("crash", "hub_crash"):
            out.append((e.label, e.start))
        elif e.kind == "churn":
            out.append((f"end of {e.label}", e.end))
    return out


def run_rows(group: common.Group, share: float) -> list[dict]:
    h = int(group.config.get("overlay", {}).get("hubs", 10))
    rows = []
    for run in group.runs:
        hubs = hub_counts(run, share)
        base = {"method": group.method, "scenario": group.scenario, "share": share, "seed": run.seed,
                "h": h, "rounds": run.completed}
        rows.append({**base, "event": "start", "at_round": 0, "cycles_to_h": first_at(hubs, h, 0),
                     "hubs_after": None, "hubs_end": int(hubs[-1]) if len(hubs) else None})
        for label, start in fault_starts(group.events):
            if start < len(hubs):
                rows.append({**base, "event": label, "at_round": start, "cycles_to_h": first_at(hubs, h, start),
                             "hubs_after": int(hubs[start:start + DIP].min()), "hubs_end": int(hubs[-1])})
    return rows


def cycles_text(values: list) -> str:
    done = [v for v in values if v is not None]
    text = common.mean_std_text(done, digits=1, single_digits=0) if done else "never"
    missed = len(values) - len(done)
    return f"{text} (never in {missed}/{len(values)})" if missed and done else text


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys((r["method"], r["scenario"], r["share"]) for r in rows))
    hubless = {}  # overlays that never had a hub: one line under the table instead of rows of "never"
    for method in dict.fromkeys(r["method"] for r in rows):
        if all(r["cycles_to_h"] is None and not r["hubs_end"] and not r["hubs_after"] for r in rows if r["method"] == method):
            hubless[method] = list(dict.fromkeys(r["scenario"] for r in rows if r["method"] == method))
    lines = []
    for method, scenario, share in keys:
        if method in hubless:
            continue
        mine = [r for r in rows if (r["method"], r["scenario"], r["share"]) == (method, scenario, share)]
        start = [r for r in mine if r["event"] == "start"]
        faults = [r for r in mine if r["event"] != "start"]
        after, dip = "—", "—"
        if faults:
            after = "; ".join(f"{cycles_text([r['cycles_to_h'] for r in faults if r['event'] == e])}"
                              for e in dict.fromkeys(r["event"] for r in faults))
            dip = "; ".join(common.mean_std_text([r["hubs_after"] for r in faults if r["event"] == e], digits=1,
                                                 single_digits=0) for e in dict.fromkeys(r["event"] for r in faults))
        lines.append([method, scenario, f"{100 * share:g} %", len(start), cycles_text([r["cycles_to_h"] for r in start]),
                      dip, after, common.mean_std_text([r["hubs_end"] for r in start], digits=1, single_digits=0)])
    h = sorted({r["h"] for r in rows})
    text = common.markdown_table(
        ["overlay", "scenario", "hub: in-degree ≥", "seeds", f"cycles to h = {'/'.join(map(str, h))} hubs",
         "fewest hubs in the 3 rounds from the fault", "cycles to h hubs again after the fault", "hubs at the end"],
        lines)
    for method, scenarios in hubless.items():
        shares = sorted({r["share"] for r in rows if r["method"] == method}, reverse=True)
        text += (f"\n{method}: no hub in any round at any share ({', '.join(f'{100 * s:g} %' for s in shares)}) "
                 f"in {', '.join(scenarios)}.\n")
    return text


def plot(groups: list[common.Group], share: float, path: Path, smoke: bool) -> Path:
    """Top row: hubs over the whole run; bottom row: the 20 rounds around the first fault (the start when none)."""
    plt = common.pyplot()
    scenarios = common.by_scenario(groups)
    fig, axes = plt.subplots(2, len(scenarios), figsize=(3.6 * len(scenarios), 5.2), squeeze=False, sharey=True)
    color = common.colors(groups)
    for col, (scenario, members) in enumerate(scenarios.items()):
        starts = [start for _, start in fault_starts(members[0].events)]
        zoom = (max(starts[0] - 3, 0), starts[0] + 17) if starts else (0, 20)
        for i, (g, lw) in enumerate(zip(members, common.widths(members))):
            mean = common.nanmean(np.stack([hub_counts(r, share)[:g.n_rounds] for r in g.runs
                                            if r.completed == g.n_rounds] or [np.full(g.n_rounds, np.nan)]))
            x = np.arange(1, g.n_rounds + 1)
            axes[0, col].plot(x, mean, color=color[g.method], lw=lw, label=g.method,
                              **common.marks(i, g.n_rounds, len(members)))
            axes[1, col].plot(x, mean, color=color[g.method], lw=lw, marker=".", ms=4)
        for ax in axes[:, col]:
            common.mark_faults(ax, members[0].events, text=False)
            common.round_axis(ax, max(g.n_rounds for g in members))
        axes[1, col].set_xlim(*zoom)
        axes[0, col].set_title(scenario, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"hubs (in-degree ≥ {100 * share:g} % of live)", fontsize=8)
    common.legend_outside(axes[0, -1])
    fig.tight_layout()
    fig.savefig(path, dpi=40 if smoke else 70, bbox_inches="tight")
    plt.close(fig)
    return path


def write(groups: list[common.Group], out: Path, shares: list[float], smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    common.overlay_labels(groups)
    rows = [r for g in groups for share in shares for r in run_rows(g, share)]
    (out / "recovery.md").write_text(table(rows))
    return [out / "recovery.md", common.write_csv(out / "recovery.csv", rows), plot(groups, shares[0], out / "recovery.png", smoke)]


def main(argv=None) -> int:
    ap = common.parser(__doc__)
    ap.add_argument("--shares", default="0.99", help="comma-separated hub thresholds (share of the live count); "
                    "0.99 is /rounds/hubs (default 0.99)")
    args = ap.parse_args(argv)
    try:
        shares = [float(s) for s in args.shares.split(",")]
    except ValueError:
        raise common.AnalysisError(f"--shares: expected numbers like 0.99,0.5, got {args.shares!r}") from None
    if not shares or not all(0 < s <= 1 for s in shares):
        raise common.AnalysisError(f"--shares: every share must lie in (0, 1], got {args.shares!r}")
    common.print_paths(write(common.load_groups(args.files), args.out, shares, args.smoke))
    return 0


if __name__ == "__main__":
    common.run_main(main)
