#!/usr/bin/env python3
"""The same overlay experiments under each cycle semantics, side by side (overlay.semantics).

    python analysis/semantics.py FILES --out DIR [--shares 0.99,0.5]

Overlay runs are matched by overlay and scenario; each cycle semantics present is a column:
snapshot (the default), sequential (one node a turn: PeerSim's order), sequential with k turns
a cycle. A row is kept when two semantics or more have it. Rows, where the runs have them
(means ± std over seeds):

- runs with Byzantine nodes: the Byzantine hubs at the last round (mean ± std, each seed's) and
  the hubs;
- the others, at each hub share (a hub is a live node in at least SHARE of the live views, as
  in recovery.py): the cycles to h hubs from the start (fault-free runs), and to h hubs again
  after each crash, hub attack or churn window;

with the paper's number where it states one. Writes semantics.md and semantics.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common
from byzantine import paper_order, paper_value
from recovery import cycles_text, run_rows

# the Elevator paper and the HEAL paper on the same quantities (protocols.md §2.12, HEAL §4)
PAPER = {"start": "5 (\"typically 4 to 5\")", "hub attack": "\"typically within two\" (HEAL paper)"}


def order(config: dict) -> str:
    """"snapshot", "sequential, k = N (PeerSim)" (one node a turn) or "sequential, k = 100"."""
    notes = common.order_notes(config.get("overlay", {}))
    name = notes[0] if notes else "snapshot"
    return "sequential, k = N (PeerSim)" if name == "sequential" else name


def order_rank(name: str) -> tuple:
    """snapshot, then one node a turn, then fewer turns: the cheaper approximations last."""
    if name == "snapshot":
        return (0, 0)
    k = name.rsplit("= ", 1)[-1]
    return (1, -int(k)) if k.isdigit() else (1, -10**12)


def byzantine_cell(group: common.Group) -> str:
    """"3.67 ± 5.51 of 10.0 [0, 1, 10]": Byzantine hubs (mean ± std, then per seed) of the hubs."""
    last = {m: np.array([common.last_valid(r.series[m])[0] if m in r.series else np.nan for r in group.runs])
            for m in ("byzantine_hubs", "hubs")}
    seeds = ", ".join(f"{v:g}" for v in last["byzantine_hubs"])
    return (f"{common.mean_std_text(last['byzantine_hubs'], digits=2, single_digits=2)} of "
            f"{np.nanmean(last['hubs']):.1f} [{seeds}]")


def cells(group: common.Group, shares: list[float]) -> dict[str, str]:
    """{quantity: cell} for one group."""
    if any(np.nan_to_num(r.series.get("byzantine", np.zeros(1))).max() > 0 for r in group.runs):
        return {"Byzantine hubs of hubs, last round": byzantine_cell(group)}
    out = {}
    for share in shares:
        rows = run_rows(group, share)
        if not any(r["hubs_end"] or r["cycles_to_h"] for r in rows):
            return {}  # an overlay without hubs (Newscast): nothing to compare
        for event in dict.fromkeys(r["event"] for r in rows):
            if event == "start" and group.events:
                continue  # the same rounds as the fault-free run's: one row for it is enough
            what = "cycles to h hubs" + ("" if event == "start" else f" again after {event}")
            out[f"{what} ({100 * share:g} %)"] = cycles_text([r["cycles_to_h"] for r in rows if r["event"] == event])
    return out


def paper(group: common.Group, quantity: str) -> str:
    if quantity.startswith("Byzantine"):
        return paper_value(group.config)
    if "(99 %)" not in quantity:
        return ""
    if quantity.startswith("cycles to h hubs ("):
        return PAPER["start"]
    return PAPER["hub attack"] if "hub attack" in quantity else ""


def write(groups: list[common.Group], out: Path, shares: list[float]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    orders = sorted({order(g.config) for g in groups}, key=order_rank)
    table: dict[tuple, dict] = {}  # (overlay, scenario, quantity) -> {order: cell, "paper": text}
    for g in sorted(groups, key=lambda g: (paper_order(g)[0], common.scenario_rank(g.scenario), g.scenario)):
        if g.runs[0].method != "none":
            continue
        for quantity, cell in cells(g, shares).items():
            # the scenario's own label: the group's may carry a "#2" that tells apart semantics of one overlay
            key = (common.overlay_name(g.config.get("overlay", {}), with_order=False), common.scenario_label(g.config), quantity)
            row = table.setdefault(key, {"paper": paper(g, quantity)})
            row[order(g.config)] = cell
    header = ["overlay", "scenario", "quantity", *orders, "paper"]
    compared = {k: row for k, row in table.items() if len(orders) == 1 or sum(o in row for o in orders) > 1}
    lines = [[*key, *(row.get(o, "") for o in orders), row["paper"]] for key, row in compared.items()]
    text = common.markdown_table(header, lines)
    (out / "semantics.md").write_text(text)
    print(text)
    return [out / "semantics.md", common.write_csv(out / "semantics.csv", [dict(zip(header, line)) for line in lines])]


def main(argv=None) -> int:
    ap = common.parser(__doc__)
    ap.add_argument("--shares", default="0.99,0.5", help="comma-separated hub thresholds (default 0.99,0.5)")
    args = ap.parse_args(argv)
    shares = [float(s) for s in args.shares.split(",")]
    common.print_paths(write(common.load_groups(args.files), args.out, shares))
    return 0


if __name__ == "__main__":
    common.run_main(main)
