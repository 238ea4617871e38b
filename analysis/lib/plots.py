"""Figures: matplotlib on the Agg backend, one colour per method, fault marks, the round axis, saving."""

from __future__ import annotations

from pathlib import Path

from lib.labels import methods

WHOLE_RUN = ("message_loss", "byzantine")  # events that last the whole run: named in titles, not drawn


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def colors(groups: list) -> dict[str, str]:
    """One colour per method label, the same in every figure of one invocation."""
    palette = [f"C{i}" for i in range(10)]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods(groups))}


def widths(groups: list) -> list[float]:
    """Line widths, widest first, so a method hidden under a later identical line still shows."""
    return [1.5 + 1.5 * (len(groups) - 1 - i) / max(len(groups) - 1, 1) for i in range(len(groups))]


def mark_faults(ax, events: list, text: bool = True) -> None:
    """Vertical lines at crash and hub-attack rounds, shaded churn windows, each labelled."""
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for i, e in enumerate(events):
        if e.kind in WHOLE_RUN:
            continue  # message loss and Byzantine nodes last the whole run: they are in the title
        if e.end is not None:  # a window (churn, a plug-in's): shaded
            ax.axvspan(e.start, e.end, color="0.5", alpha=0.15, lw=0)
        else:  # one round (crash, hub attack, Lift, a plug-in's): a dashed line
            color = {"hub_crash": "crimson", "lift": "seagreen"}.get(e.kind, "0.3")
            ax.axvline(e.start, color=color, ls="--", lw=1.2)
        if text:
            ax.text(e.start, 0.98 - 0.09 * (i % 3), " " + e.label, transform=trans, fontsize=8, va="top",
                    ha="left", color="0.2", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))


def round_axis(ax, n_rounds: int) -> None:
    ax.set_xlim(0, max(n_rounds, 1) + 0.5)
    ax.set_xlabel("round")
    ax.grid(True, alpha=0.3)
    if n_rounds <= 20:
        ax.set_xticks(range(0, n_rounds + 1, 1 if n_rounds <= 10 else 2))


def save(fig, path: Path, smoke: bool) -> Path:
    fig.savefig(path, dpi=60 if smoke else 130, bbox_inches="tight")
    pyplot().close(fig)
    return path
