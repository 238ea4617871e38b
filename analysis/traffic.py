#!/usr/bin/env python3
"""Messages and bytes per round per method: one figure per scenario, plus a table of means.

    python analysis/traffic.py results/*.h5 --out figures [--smoke]

Panels: simulated messages per round (`/rounds/messages`: one per overlay or model message),
simulated bytes per round (`/rounds/bytes`) and the bytes the simulator really moved
between MPI ranks (`/rounds/mpi_bytes`; 0 for a single-rank run). Values are means over
seeds. A panel switches to a log scale when its methods differ by more than 30x.

Writes traffic_<scenario>.png per scenario, traffic.md and traffic.csv (per-round means
over all valid rounds and seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

PANELS = (("messages", "messages per round (simulated)"), ("bytes", "bytes per round (simulated)"),
          ("mpi_bytes", "MPI bytes per round (real)"))


def human(n: float) -> str:
    """1234567 -> "1.23 MB" (decimal units); NaN -> "—"."""
    if np.isnan(n):
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.4g}"


def scale_panel(ax, metric: str, peaks: list[float]) -> None:
    """Log scale when the methods differ by more than 30x; byte units; a note when all are zero."""
    from matplotlib.ticker import EngFormatter, MaxNLocator
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
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    elif ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_scenario(scenario: str, groups: list[common.Group], color: dict, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 8), sharex=True)
    n_rounds = max(g.n_rounds for g in groups)
    for ax, (metric, ylabel) in zip(axes, PANELS):
        peaks = []
        for g, lw in zip(groups, common.widths(groups)):
            y = common.nanmean(g.stack(metric))  # [R]
            ax.plot(np.arange(1, g.n_rounds + 1), y, color=color[g.method], lw=lw, label=g.method)
            peaks.append(np.nanmax(y) if np.isfinite(y).any() else 0.0)
        scale_panel(ax, metric, peaks)
        common.mark_faults(ax, groups[0].events, text=ax is axes[0])
        common.round_axis(ax, n_rounds)
        ax.set_ylabel(ylabel, fontsize=9)
        if ax is not axes[-1]:
            ax.set_xlabel("")
    axes[0].set_title(f"Traffic per round: {scenario}")
    axes[0].legend(loc="lower left", fontsize=8, framealpha=0.85)
    fig.text(0.01, 0.0, "Means over seeds. Simulated = the messages and bytes the modelled nodes send; "
             "MPI = what the simulator moved between ranks.", fontsize=7.5, color="0.3", ha="left", va="top")
    fig.tight_layout()
    return common.save(fig, path, smoke)


SPLIT = ("model_messages", "overlay_messages", "model_bytes", "overlay_bytes")  # absent in older files


def rows(groups: list[common.Group]) -> list[dict]:
    out = []
    for g in groups:
        mean = {m: float(common.nanmean(g.stack(m).ravel())) if g.has(m) else float("nan")
                for m in (*(p for p, _ in PANELS), *SPLIT)}
        per_msg = mean["bytes"] / mean["messages"] if mean["messages"] > 0 else float("nan")
        out.append({"method": g.method, "scenario": g.scenario, "seeds": g.n_seeds, "rounds": g.n_rounds,
                    "messages_per_round": mean["messages"], "bytes_per_round": mean["bytes"],
                    "mpi_bytes_per_round": mean["mpi_bytes"], "bytes_per_message": per_msg,
                    **{f"{m}_per_round": mean[m] for m in SPLIT}})
    return out


def split(total: str, model: float, overlay: float, fmt) -> str:
    """"120 (80 model + 40 overlay)", or the total alone when the file has no split."""
    return total if np.isnan(model) or np.isnan(overlay) else f"{total} ({fmt(model)} model + {fmt(overlay)} overlay)"


def markdown(table: list[dict]) -> str:
    header = ["method", "scenario", "messages / round", "bytes / round", "bytes / message", "MPI bytes / round"]
    count = "{:.4g}".format
    body = [[r["method"], r["scenario"],
             split(count(r["messages_per_round"]), r["model_messages_per_round"], r["overlay_messages_per_round"], count),
             split(human(r["bytes_per_round"]), r["model_bytes_per_round"], r["overlay_bytes_per_round"], human),
             human(r["bytes_per_message"]), human(r["mpi_bytes_per_round"])] for r in table]
    return ("# Traffic per round\n\n" + common.markdown_table(header, body) +
            "\nMeans over all completed rounds and seeds. Messages and bytes are simulated (what the modelled "
            "nodes send: models, and overlay requests and replies); MPI bytes are what the simulator moved "
            "between ranks (0 on one rank).\n")


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
