"""Loading heal_mpi files and grouping them: HDF5 files -> runs -> groups of seeds.

A *run* is one heal_mpi file: its stored config (root attribute `config`, TOML, read through
heal_mpi.config.legacy.upgrade so that files of every version look alike) and its valid
per-round rows, the first `rounds_completed` rows of every `/rounds/<metric>`. A *group* is
one experiment over seeds: the runs whose stored configs are equal once the keys that do not
change the experiment (`run.seed`, `run.out`, progress, threads, ...) are removed. File
names play no part.
"""

from __future__ import annotations

import json
import sys
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from heal_mpi import registry
from heal_mpi.config.legacy import upgrade
from lib.labels import fault_events, method_rank, scenario_label, scenario_rank

# Keys that do not change what a run computes: two seeds of one experiment may differ in them.
IGNORED_KEYS = {"run.seed", "run.out", "run.progress", "run.threads", "run.device",
                "run.checkpoint_every", "overlay.snapshot_every"}


class AnalysisError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


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
        """Whether any run measured this metric (every dataset is in every file; NaN where it does not apply)."""
        return any(metric in r.series and np.isfinite(r.series[metric]).any() for r in self.runs)

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
        raise AnalysisError(f"{path}: not an HDF5 file ({first_line(e)})") from None
    with f:
        try:
            yield f
        # h5py reports a damaged object as OSError, KeyError, ValueError or TypeError; a file
        # from elsewhere can hold any layout, so a group may be a dataset and the reverse
        except (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise AnalysisError(f"{path}: damaged or not a heal_mpi file ({first_line(e)})") from None


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_run(path: str | Path) -> Run:
    """Read one heal_mpi file; AnalysisError when it is missing, damaged or not a heal_mpi file."""
    path = Path(path)
    with open_h5(path) as f:
        if "config" not in f.attrs or not isinstance(f.get("rounds"), h5py.Group):
            raise AnalysisError(f"{path}: not a heal_mpi file (no 'config' attribute or /rounds group)")
        try:
            config = upgrade(tomllib.loads(_text(f.attrs["config"])))  # files written before the option tables too
        except tomllib.TOMLDecodeError as e:
            raise AnalysisError(f"{path}: its 'config' attribute is not valid TOML ({e})") from None
        completed = max(int(f.attrs.get("rounds_completed", 0)), 0)
        # files written before the attributes existed: the config says (overlay "auto": the default)
        method = _text(f.attrs.get("method", config.get("protocol", {}).get("kind", "?")))
        overlay = _text(f.attrs.get("overlay", config.get("overlay", {}).get("kind", "auto")))
        series = {name: _series(ds, completed)
                  for name, ds in f["rounds"].items() if isinstance(ds, h5py.Dataset) and ds.ndim == 1}
        run = config.get("run", {})
        scenario_label(config)  # a config whose [faults] cannot be labelled fails here, naming this file
        return Run(path=path, config=config, method=method, overlay=overlay, seed=int(run.get("seed", 0)),
                   rounds=int(run.get("rounds", completed)),
                   completed=min([completed, *(len(v) for v in series.values())]), series=series)


def _series(ds, completed: int) -> np.ndarray:
    """float64 [completed] of a /rounds dataset: an integer one's -1 (does not apply) becomes NaN."""
    values = np.asarray(ds[:completed], dtype=np.float64)
    if ds.dtype.kind in "iu":
        values[values == -1] = np.nan
    return values


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
    """Every option at its default, flattened, every kind's own options included (a file from a
    version without an option ran it at its default)."""
    import dataclasses

    from heal_mpi import config as config_mod
    flat = flatten(tomllib.loads(config_mod.to_toml(config_mod.Config())))
    for section, reg in (("protocol", registry.PROTOCOLS), ("overlay", registry.OVERLAYS), ("adversary", registry.ATTACKS)):
        for spec in reg.specs():
            for f in dataclasses.fields(spec.options) if spec.options else ():
                flat[f"{section}.{spec.name}.{f.name}"] = f.default
    return flat


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
        flats = [{k: v for k, v in flatten(g.config).items()  # the scenario label says faults, adversary, clock
                  if k not in IGNORED_KEYS and not k.startswith(("faults.", "adversary.", "time."))} for g in same]
        keys = sorted({k for f in flats for k in f if any(f.get(k) != o.get(k) for o in flats)})
        if keys:
            for g, f in zip(same, flats):
                g.method += " (" + ", ".join(f"{k}={f.get(k)}" for k in keys[:3]) + \
                    (", ..." if len(keys) > 3 else "") + ")"
    seen: dict[tuple, int] = {}
    for g in groups:  # left: same labels, fault lists differing only in order
        n = seen[(g.method, g.scenario)] = seen.get((g.method, g.scenario), 0) + 1
        if n > 1:
            g.scenario += f" #{n}"
