#!/usr/bin/env python3
"""The "HEAL under attack" table: honest accuracy, Byzantine hubs and traffic, per attack and defence.

    python analysis/attack_table.py results/heal_under_attack/*.h5 --out figures/heal_under_attack [--smoke]

One row per experiment (seeds averaged): the protocol, the attack ([adversary]: how many
Byzantine nodes, what they answer in Elevator, what models they send, Lift), the defence
(protocol.<kind>.aggregation at the hubs or in the merges, protocol.heal.hub_merge between
hubs, protocol.heal.client_merge at HEAL clients),
then at the last round: the mean test accuracy of the honest nodes (`/rounds/acc_mean`
leaves the Byzantine nodes out), the Byzantine share of the hubs (`byzantine_hubs / hubs`,
the 99 % hubs of the overlay), and the simulated bytes per round (`/rounds/bytes`, mean over rounds).
Writes attack_table.md and attack_table.csv, and accuracy_<row>.png curves with Lift marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common
from heal_mpi import registry


def defence(config: dict) -> str:
    kind = config.get("protocol", {}).get("kind")
    p = config.get("protocol", {}).get(kind, {})  # [protocol.<kind>]
    parts = []
    if p.get("aggregation", "mean") != "mean":
        where = "at the hubs" if kind in ("heal", "fedavg", "gaia") else "in the merge"
        parts.append(f"{p['aggregation']} {where}")
    if p.get("hub_merge", "mean") != "mean":
        parts.append(f"{p['hub_merge']} across hubs")
    if p.get("client_merge", "mean") != "mean":
        parts.append(f"{p['client_merge']} of s = {p.get('fanout', 1)} copies")
    lift = int(config.get("adversary", {}).get("lift_round", -1))
    if lift >= 0:
        parts.append(f"Lift @{lift}")
    return ", ".join(parts) or "none"


def attack(config: dict) -> str:
    events = [e.label for e in common.adversary_events(config) if e.kind == "byzantine"]
    return events[0] if events else "none"


def row(group: common.Group) -> dict:
    final = [common.last_valid(r.series.get("acc_mean", np.array([np.nan])))[0] for r in group.runs]
    share = []
    for r in group.runs:
        if "byzantine_hubs" in r.series and "hubs" in r.series:
            hubs, byz = r.series["hubs"][-1], r.series["byzantine_hubs"][-1]
            share.append(byz / hubs if hubs else np.nan)
    traffic = [np.nanmean(r.series["bytes"]) for r in group.runs if "bytes" in r.series]
    run = group.runs[0]
    return {
        "protocol": registry.method_label(run.method, run.overlay),
        "attack": attack(group.config),
        "defence": defence(group.config),
        "seeds": group.n_seeds,
        "honest_accuracy": common.mean_std_text(final, scale=100, digits=1),
        "byzantine_share_of_hubs": f"{np.nanmean(share):.2f}" if share and not np.all(np.isnan(share)) else "—",
        "bytes_per_round": f"{np.mean(traffic) / 2**20:.1f} MiB" if traffic else "—",
    }


def plot(group: common.Group, label: str, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    acc = group.stack("acc_mean")
    x = np.arange(1, group.n_rounds + 1)
    ok = ~np.all(np.isnan(acc), axis=0)
    ax.plot(x[ok], 100 * common.nanmean(acc)[ok], marker="o", ms=3, label="honest nodes")
    if group.has("byzantine_acc_mean"):
        b = group.stack("byzantine_acc_mean")
        ax.plot(x[ok], 100 * common.nanmean(b)[ok], ls=":", label="Byzantine nodes")
    common.mark_faults(ax, group.events)
    common.round_axis(ax, group.n_rounds)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(label, fontsize=9)
    common.legend_outside(ax)
    fig.tight_layout()
    return common.save(fig, path, smoke)


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [row(g) for g in groups]
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    order = sorted(range(len(rows)), key=lambda i: (  # per protocol: no attack, then each attack undefended first
        protocols.index(rows[i]["protocol"]), rows[i]["attack"] != "none", rows[i]["attack"],
        rows[i]["defence"] != "none", rows[i]["defence"]))
    groups, rows = [groups[i] for i in order], [rows[i] for i in order]
    paths = [plot(g, f"{r['protocol']} · {r['attack']} · defence: {r['defence']}",
                  out / f"accuracy_{common.slug(r['protocol'] + '-' + r['attack'] + '-' + r['defence'])}.png", smoke)
             for g, r in zip(groups, rows)]
    paths.append(common.write_csv(out / "attack_table.csv", rows))
    header = ["protocol", "attack", "defence", "seeds", "honest accuracy (%)", "Byzantine share of hubs",
              "simulated traffic per round"]
    table = common.markdown_table(header, [list(r.values()) for r in rows])
    (out / "attack_table.md").write_text(table + "\n")
    print(table)
    return paths + [out / "attack_table.md"]


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
