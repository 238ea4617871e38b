"""Figures: matplotlib on the Agg backend, one colour and one marker per method, fault marks, the round
axis, legends outside the data, binary byte units, saving.

Readability rules every figure follows: the legend sits to the right of the axes, never on
the data; a fault's label is in the legend beside its line or band, never written across a
curve; each method has its own marker, placed at staggered rounds, so identical lines
(three live-node curves that coincide) still show as several.
"""

from __future__ import annotations

import math
from pathlib import Path

from lib.labels import methods

WHOLE_RUN = ("message_loss", "byzantine")  # events that last the whole run: named in titles, not drawn
MARKERS = "osD^v<>Ph*X"


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


def marks(i: int, n_points: int, n_lines: int) -> dict:
    """Line style keywords of the i-th of n_lines: its marker, at every k-th point, starting at an offset
    of its own, so that coinciding lines show their markers side by side."""
    every = max(1, n_points // 12)
    step = max(1, every // max(n_lines, 1))
    return {"marker": MARKERS[i % len(MARKERS)], "ms": 4.5, "markevery": ((i * step) % every, every)}


def legend_outside(ax, **kw):
    """The legend to the right of the axes (bbox_inches="tight" makes room)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0, **kw)


def mark_faults(ax, events: list, text: bool = True) -> None:
    """Dashed lines at crash, hub-attack and Lift rounds, shaded windows (churn); labelled in the
    legend when `text` (one panel of a figure carries them), never on the data."""
    for e in events:
        if e.kind in WHOLE_RUN:
            continue  # message loss and Byzantine nodes last the whole run: they are in the title
        label = f"{'defence' if e.kind == 'lift' else 'fault'}: {e.label}" if text else None
        if e.end is not None:  # a window (churn, a plug-in's): shaded
            ax.axvspan(e.start, e.end, color="0.5", alpha=0.15, lw=0, label=label)
        else:  # one round (crash, hub attack, Lift, a plug-in's): a dashed line
            color = {"hub_crash": "crimson", "lift": "seagreen"}.get(e.kind, "0.3")
            ax.axvline(e.start, color=color, ls="--", lw=1.2, label=label)


def round_axis(ax, n_rounds: int) -> None:
    ax.set_xlim(0, max(n_rounds, 1) + 0.5)
    ax.set_xlabel("round")
    ax.grid(True, alpha=0.3)
    if n_rounds <= 20:
        ax.set_xticks(range(0, n_rounds + 1, 1 if n_rounds <= 10 else 2))


def binary_bytes(ax, axis: str = "y") -> None:
    """Ticks at round binary sizes (64 MiB, 256 MiB, 1 GiB on a log axis; 0, 200 MiB, 400 MiB on a
    linear one), labelled in binary units as every table writes them. Call once the data is drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, MultipleLocator, NullFormatter

    from lib.stats import size
    which = ax.yaxis if axis == "y" else ax.xaxis
    if (ax.get_yscale() if axis == "y" else ax.get_xscale()) == "log":
        which.set_major_locator(LogLocator(base=4.0))
    else:
        lo, hi = which.get_view_interval()
        unit = 1024.0 ** min(3, int(math.log(max(abs(hi), 1.0), 1024)))  # the unit the top tick is written in
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo / unit, hi / unit)
        which.set_major_locator(MultipleLocator((ticks[1] - ticks[0]) * unit))
    which.set_major_formatter(FuncFormatter(lambda v, _: size(v).replace(".0 ", " ")))
    which.set_minor_formatter(NullFormatter())  # a log axis would label its minor ticks in decimal


def save(fig, path: Path, smoke: bool) -> Path:
    fig.savefig(path, dpi=60 if smoke else 130, bbox_inches="tight")
    pyplot().close(fig)
    return path
