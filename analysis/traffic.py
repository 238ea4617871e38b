#!/usr/bin/env python3
"""Messages and bytes per method: one figure per scenario, and the totals as researchers compare them.

    python analysis/traffic.py results/*.h5 --out figures [--smoke]

Panels: simulated messages per round (`/rounds/messages`: one per model, overlay or control
message), simulated bytes per round (`/rounds/bytes`) and the bytes the simulator really
moved between MPI ranks (`/rounds/mpi_bytes`; 0 for a single-rank run). Values are means over
seeds. A panel switches to a log scale when its methods differ by more than 30x. Bytes are
in binary units (KiB = 1024 B) here as everywhere.

The table gives, per method and scenario, the total simulated traffic of a run (summed over
its rounds, mean over seeds), models and overlay (and control) apart, the bytes of one model
message, and the per-round means.

Writes traffic_<scenario>.png per scenario, traffic.md and traffic.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

PANELS = (("messages", "messages per round (simulated)"), ("bytes", "bytes per round (simulated)"),
          ("mpi_bytes", "MPI bytes per round (real)"))


def scale_panel(ax, metric: str, peaks: list[float]) -> None:
    """Log scale when the methods differ by more than 30x; byte units; a note when all are zero."""
    from matplotlib.ticker import MaxNLocator
    positive = [p for p in peaks if p > 0]
    if len(positive) > 1 and max(positive) > 30 * min(positive):
        ax.set_yscale("log", nonpositive="mask")
    elif positive:
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no traffic" + (" between ranks: single-rank runs" if metric == "mpi_bytes" else ""),
                transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylim(0, 1)
        ax.set_yticks([0])
    if "bytes" in metric:
        common.binary_bytes(ax)
    elif ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_scenario(scenario: str, groups: list[common.Group], color: dict, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 8), sharex=True)
    n_rounds = max(g.n_rounds for g in groups)
    for ax, (metric, ylabel) in zip(axes, PANELS):
        peaks = []
        for i, (g, lw) in enumerate(zip(groups, common.widths(groups))):
            y = common.nanmean(g.stack(metric))  # [R]
            ax.plot(np.arange(1, g.n_rounds + 1), y, color=color[g.method], lw=lw, label=g.method,
                    **common.marks(i, g.n_rounds, len(groups)))
            peaks.append(np.nanmax(y) if np.isfinite(y).any() else 0.0)
        scale_panel(ax, metric, peaks)
        common.mark_faults(ax, groups[0].events, text=ax is axes[0])
        common.round_axis(ax, n_rounds)
        ax.set_ylabel(ylabel, fontsize=9)
        if ax is not axes[-1]:
            ax.set_xlabel("")
    axes[0].set_title(f"Traffic per round: {scenario}\n{common.setup_text(groups[0].config)}", fontsize=10)
    common.legend_outside(axes[0])
    fig.text(0.01, 0.0, "Means over seeds. Simulated = the messages and bytes the modelled nodes send; "
             "MPI = what the simulator moved between ranks.", fontsize=7.5, color="0.3", ha="left", va="top")
    fig.tight_layout()
    return common.save(fig, path, smoke)


KINDS = ("model", "overlay", "control")  # the parts of /rounds/messages and /rounds/bytes (control: newer files)


def total(g: common.Group, metric: str) -> float:
    """A run's metric summed over its rounds, mean over the seeds; NaN when the files lack it."""
    if not g.has(metric):
        return float("nan")
    return float(np.nanmean([np.nansum(r.series[metric]) for r in g.runs if metric in r.series]))


def rows(groups: list[common.Group]) -> list[dict]:
    out = []
    for g in groups:
        row = {"method": g.method, "scenario": g.scenario, "seeds": g.n_seeds, "rounds": g.n_rounds}
        for what in ("messages", "bytes", *(f"{k}_{m}" for k in KINDS for m in ("messages", "bytes")), "mpi_bytes"):
            row[f"total_{what}"] = total(g, what)
            row[f"{what}_per_round"] = float(common.nanmean(g.stack(what).ravel())) if g.has(what) else float("nan")
        msgs = row["total_model_messages"]
        row["bytes_per_model_message"] = row["total_model_bytes"] / msgs if msgs > 0 else float("nan")
        out.append(row)
    return out


def parts(row: dict, what: str, fmt) -> str:
    """"1.2 GiB (1.1 GiB models + 98 MiB overlay)": a total and its parts (those the files hold, nonzero)."""
    given = [(k, row[f"total_{k}_{what}"]) for k in KINDS if np.isfinite(row[f"total_{k}_{what}"])]
    shown = [f"{fmt(v)} {k if k != 'model' else 'models'}" for k, v in given if v > 0]
    return fmt(row[f"total_{what}"]) + (f" ({' + '.join(shown)})" if len(shown) > 1 else "")


def markdown(table: list[dict]) -> str:
    count = "{:,.0f}".format
    header = ["method", "scenario", "total messages", "total traffic", "bytes per model message",
              "traffic per round", "MPI bytes per round"]
    body = [[r["method"], r["scenario"], parts(r, "messages", count), parts(r, "bytes", common.size),
             common.size(r["bytes_per_model_message"]), common.size(r["bytes_per_round"]),
             common.size(r["mpi_bytes_per_round"])] for r in table]
    return ("# Traffic\n\n" + common.markdown_table(header, body) +
            "\nTotals: summed over a run's completed rounds, mean over seeds. Simulated messages and bytes "
            "(what the modelled nodes send): models, overlay requests and replies, and a protocol's control "
            "messages (D-PSGD's degrees). MPI bytes are what the simulator moved between ranks (0 on one rank). "
            "Binary units: 1 KiB = 1024 B.\n")


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    color = common.colors(groups)
    paths = [plot_scenario(s, members, color, out / f"traffic_{common.slug(s)}.png", smoke)
             for s, members in common.by_scenario(groups).items()]
    table = rows(groups)
    md = out / "traffic.md"
    md.write_text(markdown(table))
    return paths + [md, common.write_csv(out / "traffic.csv", table)]


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
