"""Shared loading and plotting for the analysis scripts: HDF5 files -> runs -> groups of seeds.

A *run* is one heal_mpi file: its stored config (root attribute `config`, TOML) and its
valid per-round rows, the first `rounds_completed` rows of every `/rounds/<metric>`.
A *group* is one experiment over seeds: the runs whose stored configs are equal once the
keys that do not change the experiment (`run.seed`, `run.out`, progress, threads, ...) are
removed. File names play no part. Each group has a *method* label (the protocol, plus the
overlay when it is not the protocol's default) and a *scenario* label derived from
`[faults]` ("fault-free", "crash 20% @10", "hub attack all @10", "churn 10% [50,150)").

Rounds on plot axes count from 1: round k is the row written after k rounds. A fault
configured at round r (0-based: it strikes at the start of the loop's round r) therefore
falls between round r and r + 1, and is drawn at x = r; a churn window [s, e) spans x = s..e.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tomllib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from heal_mpi import registry

# Keys that do not change what a run computes: two seeds of one experiment may differ in them.
IGNORED_KEYS = {"run.seed", "run.out", "run.progress", "run.threads", "run.device",
                "run.checkpoint_every", "overlay.snapshot_every"}
METHOD_ORDER = list(registry.PROTOCOLS)  # display order: the registry's


class AnalysisError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


@dataclass(frozen=True)
class Event:
    """One fault event for plots: kind is crash, hub_crash, churn, message_loss, byzantine or lift."""

    kind: str
    start: int            # config round (0-based); for churn the window's start
    end: int | None       # churn: the window's end (exclusive); else None
    label: str


@dataclass(frozen=True)
class Run:
    """One file. `series[m]` is /rounds/<m> cut to its valid rows: float64 [completed]."""

    path: Path
    config: dict
    method: str           # the protocol (root attribute `method`)
    overlay: str          # the overlay it ran on (root attribute `overlay`)
    seed: int
    rounds: int           # run.rounds, as configured
    completed: int        # rounds_completed: how many rows are valid
    series: dict

    @property
    def partial(self) -> bool:
        return self.completed < self.rounds


@dataclass
class Group:
    """The runs (seeds) of one experiment, with its labels and fault events."""

    key: str
    config: dict
    method: str
    scenario: str
    events: list
    runs: list = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def n_rounds(self) -> int:
        return max(r.completed for r in self.runs)

    def has(self, metric: str) -> bool:
        return any(metric in r.series for r in self.runs)

    def stack(self, metric: str) -> np.ndarray:
        """float64 [seeds, n_rounds]: /rounds/<metric> of every run, NaN past its valid rows."""
        out = np.full((self.n_seeds, self.n_rounds), np.nan)
        for i, r in enumerate(self.runs):
            v = r.series.get(metric)
            if v is not None:
                out[i, :len(v)] = v
        return out


# -- loading ---------------------------------------------------------------------------------

@contextmanager
def open_h5(path: str | Path):
    """The HDF5 file at `path`, open for reading. A missing, non-HDF5, truncated or damaged
    file raises AnalysisError naming it, also when the damage shows only while reading."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r", locking=False)  # a run may still be writing it
    except (OSError, TypeError, ValueError) as e:
        raise AnalysisError(f"{path}: not an HDF5 file ({_first_line(e)})") from None
    with f:
        try:
            yield f
        # h5py reports a damaged object as OSError, KeyError, ValueError or TypeError; a file
        # from elsewhere can hold any layout, so a group may be a dataset and the reverse
        except (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise AnalysisError(f"{path}: damaged or not a heal_mpi file ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_run(path: str | Path) -> Run:
    """Read one heal_mpi file; AnalysisError when it is missing, damaged or not a heal_mpi file."""
    path = Path(path)
    with open_h5(path) as f:
        if "config" not in f.attrs or not isinstance(f.get("rounds"), h5py.Group):
            raise AnalysisError(f"{path}: not a heal_mpi file (no 'config' attribute or /rounds group)")
        try:
            config = tomllib.loads(_text(f.attrs["config"]))
        except tomllib.TOMLDecodeError as e:
            raise AnalysisError(f"{path}: its 'config' attribute is not valid TOML ({e})") from None
        completed = max(int(f.attrs.get("rounds_completed", 0)), 0)
        # files written before the attributes existed: the config says (overlay "auto": the default)
        method = _text(f.attrs.get("method", config.get("protocol", {}).get("kind", "?")))
        overlay = _text(f.attrs.get("overlay", config.get("overlay", {}).get("kind", "auto")))
        series = {name: np.asarray(ds[:completed], dtype=np.float64)
                  for name, ds in f["rounds"].items() if isinstance(ds, h5py.Dataset) and ds.ndim == 1}
        run = config.get("run", {})
        scenario_label(config)  # a config whose [faults] cannot be labelled fails here, naming this file
        return Run(path=path, config=config, method=method, overlay=overlay, seed=int(run.get("seed", 0)),
                   rounds=int(run.get("rounds", completed)),
                   completed=min([completed, *(len(v) for v in series.values())]), series=series)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_groups(paths) -> list[Group]:
    """Load every file and group them by experiment; runs without a complete round are skipped."""
    loaded = [load_run(p) for p in paths]
    runs = [r for r in loaded if r.completed > 0]
    empty = [str(r.path) for r in loaded if r.completed == 0]
    if not runs:
        raise AnalysisError(f"no file has a completed round ({', '.join(empty)})")
    for path in empty:
        print(f"warning: {path}: no completed round, skipped", file=sys.stderr)
    return group_runs(runs)


def flatten(config: dict, prefix: str = "") -> dict:
    """{"section.key": value} for every key of the (nested) config."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _defaults() -> dict:
    """Every option at its default, flattened (a file from a version without an option ran it at its default)."""
    from heal_mpi import config as config_mod
    return flatten(tomllib.loads(config_mod.to_toml(config_mod.Config())))


DEFAULTS = _defaults()


def experiment_key(config: dict) -> str:
    """Canonical text of the config without IGNORED_KEYS and options at their default: equal for
    the seeds of one experiment, also across versions that added options."""
    flat = {k: v for k, v in flatten(config).items() if k not in IGNORED_KEYS and DEFAULTS.get(k, k) != v}
    return json.dumps(flat, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs by experiment_key; groups sorted by scenario then method, runs by seed."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = experiment_key(run.config)
        if key not in groups:
            groups[key] = Group(key=key, config=run.config, method=registry.method_label(run.method, run.overlay),
                                scenario=scenario_label(run.config), events=fault_events(run.config))
        groups[key].runs.append(run)
    out = list(groups.values())
    for g in out:
        g.runs.sort(key=lambda r: (r.seed, str(r.path)))
    _disambiguate(out)
    return sorted(out, key=lambda g: (scenario_rank(g.scenario), method_rank(g), g.method))


def _disambiguate(groups: list[Group]) -> None:
    """Label apart the groups of one method and scenario that differ elsewhere: "FedAvg (train.lr=0.1)".

    Only methods with such a clash get the suffix, on all their groups, so a row of the final
    table stays one configuration across scenarios.
    """
    by_method: dict[str, list[Group]] = {}
    for g in groups:
        by_method.setdefault(g.method, []).append(g)
    for same in by_method.values():
        if len({g.scenario for g in same}) == len(same):
            continue  # one group per scenario: one table row, one colour
        flats = [{k: v for k, v in flatten(g.config).items()  # the scenario label already says faults and adversary
                  if k not in IGNORED_KEYS and not k.startswith(("faults.", "adversary."))} for g in same]
        keys = sorted({k for f in flats for k in f if any(f.get(k) != o.get(k) for o in flats)})
        if keys:
            for g, f in zip(same, flats):
                g.method += " (" + ", ".join(f"{k}={f.get(k)}" for k in keys[:3]) + (", ..." if len(keys) > 3 else "") + ")"
    seen: dict[tuple, int] = {}
    for g in groups:  # left: same labels, fault lists differing only in order
        n = seen[(g.method, g.scenario)] = seen.get((g.method, g.scenario), 0) + 1
        if n > 1:
            g.scenario += f" #{n}"


# -- labels ----------------------------------------------------------------------------------

def method_label(config: dict) -> str:
    """"FedAvg", "HEAL", "Gossip (elevator)" for a config dict (the registry's labels)."""
    return registry.method_label(str(config.get("protocol", {}).get("kind", "?")),
                                 str(config.get("overlay", {}).get("kind", "auto")))


def method_rank(group: Group) -> int:
    kind = group.runs[0].method if group.runs else ""
    return METHOD_ORDER.index(kind) if kind in METHOD_ORDER else len(METHOD_ORDER)


def pct(fraction: float) -> str:
    return f"{100 * float(fraction):.4g}%"


def fault_events(config: dict) -> list[Event]:
    """The [faults] events, in the order crash, hub attack, churn, message loss."""
    faults = config.get("faults", {})
    events = [Event("crash", int(e["round"]), None, f"crash {pct(e['fraction'])} @{e['round']}")
              for e in faults.get("crash", [])]
    events += [Event("hub_crash", int(e["round"]), None, f"hub attack {e.get('count', 'all')} @{e['round']}")
               for e in faults.get("hub_crash", [])]
    events += [Event("churn", int(e["start"]), int(e["end"]), f"churn {pct(e['fraction'])} [{e['start']},{e['end']})")
               for e in faults.get("churn", [])]
    if float(faults.get("message_loss", 0.0)) > 0:
        events.append(Event("message_loss", 0, None, f"message loss {pct(faults['message_loss'])}"))
    return events + adversary_events(config)


def adversary_events(config: dict) -> list[Event]:
    """The [adversary] as events: the Byzantine nodes (the whole run) and Lift (a round)."""
    adv = config.get("adversary", {})
    count, fraction = int(adv.get("byzantine", 0)), float(adv.get("byzantine_fraction", 0.0))
    events = []
    if count or fraction:
        what = [w for w in (adv.get("kind", "none"), adv.get("models", "honest")) if w not in ("none", "honest")]
        who = f"{count} Byzantine" if count else f"{pct(fraction)} Byzantine"
        events.append(Event("byzantine", 0, None, who + (f" ({', '.join(what)})" if what else "")))
    lift = int(adv.get("lift_round", -1))
    if lift >= 0:
        period = int(adv.get("lift_period", 0))
        events.append(Event("lift", lift, None, f"Lift @{lift}" + (f" every {period}" if period else "")))
    return events


def scenario_label(config: dict) -> str:
    events = fault_events(config)
    return ", ".join(e.label for e in events) if events else "fault-free"


def scenario_rank(scenario: str) -> tuple:
    return (scenario != "fault-free", scenario)


def by_scenario(groups: list[Group]) -> dict[str, list[Group]]:
    """{scenario: its groups}, fault-free first, methods in METHOD_ORDER (groups arrive sorted)."""
    out: dict[str, list[Group]] = {}
    for g in groups:
        out.setdefault(g.scenario, []).append(g)
    return out


def methods(groups: list[Group]) -> list[str]:
    """Method labels in display order (HEAL, FedAvg, Gaia, Gossip, Epidemic, then others)."""
    ordered = sorted(groups, key=lambda g: (method_rank(g), g.method))
    return list(dict.fromkeys(g.method for g in ordered))


def slug(text: str) -> str:
    """A file-name-safe form of a label: "crash 20% @10" -> "crash-20pct-at10"."""
    text = text.lower().replace("%", "pct").replace("@", "at")
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-") or "x"


# -- statistics ------------------------------------------------------------------------------

def nanmean(a: np.ndarray, axis=0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmean(a, axis=axis)


def nanstd(a: np.ndarray, axis=0) -> np.ndarray:
    """Sample std (ddof=1) over the non-NaN entries; NaN where fewer than 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(a, axis=axis, ddof=1)


def last_valid(values: np.ndarray) -> tuple[float, int]:
    """(last non-NaN value, its round counted from 1), or (NaN, 0) when there is none."""
    ok = np.flatnonzero(~np.isnan(values))
    return (float(values[ok[-1]]), int(ok[-1]) + 1) if len(ok) else (float("nan"), 0)


def mean_std_text(values, scale: float = 1.0, digits: int = 1, single_digits: int | None = None) -> str:
    """"81.2 ± 0.4" over the non-NaN values (one value: `single_digits` decimals), "—" when there is none."""
    v = np.asarray([x for x in values if not np.isnan(x)], dtype=np.float64) * scale
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits if single_digits is None else single_digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


# -- output ----------------------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        w.writeheader()
        w.writerows(rows)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def colors(groups: list[Group]) -> dict[str, str]:
    """One colour per method label, the same in every figure of one invocation."""
    palette = [f"C{i}" for i in range(10)]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods(groups))}


def widths(groups: list) -> list[float]:
    """Line widths, widest first, so a method hidden under a later identical line still shows."""
    return [1.5 + 1.5 * (len(groups) - 1 - i) / max(len(groups) - 1, 1) for i in range(len(groups))]


def mark_faults(ax, events: list[Event], text: bool = True) -> None:
    """Vertical lines at crash and hub-attack rounds, shaded churn windows, each labelled."""
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for i, e in enumerate(events):
        if e.kind == "churn":
            ax.axvspan(e.start, e.end, color="0.5", alpha=0.15, lw=0)
        elif e.kind in ("crash", "hub_crash", "lift"):
            color = {"hub_crash": "crimson", "lift": "seagreen"}.get(e.kind, "0.3")
            ax.axvline(e.start, color=color, ls="--", lw=1.2)
        else:
            continue  # message loss and Byzantine nodes last the whole run: they are in the title
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


# -- command line ----------------------------------------------------------------------------

def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, metavar="FILE", help="heal_mpi HDF5 files (any seeds, methods, scenarios)")
    ap.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the PNGs and tables (created)")
    ap.add_argument("--smoke", action="store_true", help="fast output for tests: low-resolution PNGs")
    return ap


def files_out_main(write, doc: str, argv=None) -> int:
    """main() of a script whose only arguments are FILES, --out and --smoke: write, print the paths."""
    args = parser(doc).parse_args(argv)
    print_paths(write(load_groups(args.files), args.out, args.smoke))
    return 0


def run_main(main) -> None:
    """sys.exit(main()): bad input is one line and exit code 2, a failure to write the outputs
    one line and exit code 1 (HEAL_MPI_DEBUG=1 shows its traceback instead)."""
    name = Path(sys.argv[0]).stem
    try:
        sys.exit(main())
    except AnalysisError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if os.environ.get("HEAL_MPI_DEBUG", "") not in ("", "0"):
            raise
        print(f"{name}: error: cannot write {e.filename or 'the output'}: {e.strerror or _first_line(e)}",
              file=sys.stderr)
        sys.exit(1)


def print_paths(paths: list[Path]) -> None:
    for p in paths:
        print(p)


def overlay_labels(groups: list[Group]) -> None:
    """Overlay-only runs (protocol "none") labelled by their overlay: "Elevator", "Elevator (top-c)",
    "Newscast", instead of "overlay only (overlay.kind=...)". Other groups keep their labels.
    When every group is overlay-only, the list is re-sorted: scenario, then label."""
    for g in groups:
        if g.runs and g.runs[0].method == "none":
            ov = g.config.get("overlay", {})
            kind = str(ov.get("kind", "elevator"))
            kind = "elevator" if kind == "auto" else kind
            label = kind.capitalize()
            if kind == "elevator" and ov.get("preferred", "top-h") != "top-h":
                label += f" ({ov['preferred']})"
            g.method = label
    if groups and all(g.runs and g.runs[0].method == "none" for g in groups):
        groups.sort(key=lambda g: (scenario_rank(g.scenario), g.method))
