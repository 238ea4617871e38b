"""Expand a sweep spec (methods x scenarios x seeds) into configs and a Slurm array task list.

    .venv/bin/python jobs/sweep.py SPEC.toml [--ranks N]     # writes files, prints the sbatch command
    .venv/bin/python jobs/sweep.py SPEC.toml --local         # runs every task here, one after another

A spec (relative paths are relative to the current directory, the repository root):

    base = "jobs/configs/demo.toml"      # optional base config
    seeds = [1, 2, 3]                     # default: the base's run.seed
    out_dir = "results/sweep1"            # default: results/<spec stem>
    [common]                              # optional; overrides of the base for every task
    run = { rounds = 60 }
    [methods.fedavg]                      # overrides of the base: same sections and keys as a config
    protocol = { kind = "fedavg" }
    [scenarios.crash20]                   # optional; overrides applied after the method's
    faults = { crash = [{round = 3, fraction = 0.2}] }

Writes out_dir/configs/<method>_<scenario>.toml (the resolved config), and out_dir/tasks.txt
with one line "CONFIG SEED OUT" per config x seed; task i writes out_dir/<config>-seed<S>.h5
and gets its seed by `--set run.seed=S`. Every config is checked with heal_mpi.config before
anything is written; a bad spec exits 2 with one line naming the key.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # heal_mpi.config needs NumPy only (not mpi4py, not torch)

from heal_mpi import config as config_mod  # noqa: E402
from heal_mpi.config import ConfigError  # noqa: E402

SPEC_KEYS = ("base", "seeds", "out_dir", "common", "methods", "scenarios")
NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")  # method and scenario names become file names


def read_toml(path: Path, what: str) -> dict:
    try:
        return config_mod.read_toml(path)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None


def merge(raw: dict, overrides, where: str) -> dict:
    """raw with each section's keys replaced by the override's (lists such as faults.crash as a whole)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: expected a table of config sections")
    out = copy.deepcopy(raw)
    for section, table in overrides.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}.{section}: expected a table like {section} = {{key = value}}")
        out.setdefault(section, {}).update(copy.deepcopy(table))
    return out


def named_tables(spec: dict, key: str, required: bool) -> dict:
    tables = spec.get(key, {})
    if not isinstance(tables, dict) or (required and not tables):
        raise ConfigError(f"{key}: expected at least one [{key}.<name>] table" if required
                          else f"{key}: expected [{key}.<name>] tables")
    for name in tables:
        if not NAME.match(name):
            raise ConfigError(f"{key}.{name}: names may use only letters, digits and _ . + -")
    return tables


def expand(spec: dict, ranks: int, default_out: str, here: bool = False) -> tuple[Path, list[int], dict[str, str]]:
    """(out_dir, seeds, {config name: resolved TOML}); raises ConfigError naming the key.

    `here`: the tasks will run on this machine, so its GPUs are checked too (a login node
    preparing a Slurm array usually has none, while the compute nodes do).
    """
    for key in spec:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(SPEC_KEYS)})")
    if not isinstance(spec.get("base", ""), str):
        raise ConfigError(f"base: expected a path, got {spec['base']!r}")
    base = read_toml(Path(spec["base"]), "base") if "base" in spec else {}
    base = merge(base, spec.get("common", {}), "common")
    methods = named_tables(spec, "methods", required=True)
    scenarios = named_tables(spec, "scenarios", required=False) or {"": {}}
    seeds = spec["seeds"] if "seeds" in spec else [base.get("run", {}).get("seed", 1)]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise ConfigError(f"seeds: expected a list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {seeds} repeats a seed")
    out_dir = Path(spec.get("out_dir", default_out))
    if not isinstance(spec.get("out_dir", ""), str) or re.search(r"\s", str(out_dir)):
        raise ConfigError(f"out_dir: expected a path without spaces, got {spec.get('out_dir')!r}")

    configs = {}
    for method, m_over in methods.items():
        for scenario, s_over in scenarios.items():
            name = f"{method}_{scenario}" if scenario else method
            where = f"methods.{method}" + (f" + scenarios.{scenario}" if scenario else "")
            raw = merge(merge(base, m_over, f"methods.{method}"), s_over, f"scenarios.{scenario}")
            try:  # the file holds the first task's seed and output; each task sets its own
                cfgs = [config_mod.from_dict(merge(raw, {"run": {"seed": s, "out": output(out_dir, name, s)}}, where))
                        for s in seeds]
                config_mod.validate(cfgs[0], n_ranks=ranks, check_device=here)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            configs[name] = config_mod.to_toml(cfgs[0])
    return out_dir, seeds, configs


def output(out_dir: Path, name: str, seed: int) -> str:
    return str(out_dir / f"{name}-seed{seed}.h5")


def write(out_dir: Path, seeds: list[int], configs: dict[str, str], spec_path: Path) -> list[tuple[str, int, str]]:
    """Write the configs and tasks.txt; returns the tasks (config path, seed, output path)."""
    (out_dir / "configs").mkdir(parents=True, exist_ok=True)
    tasks = []
    for name, text in configs.items():
        path = out_dir / "configs" / f"{name}.toml"
        path.write_text(f"# {name} of the sweep {spec_path}; run.seed and run.out are set per task (tasks.txt)\n{text}")
        tasks += [(str(path), seed, output(out_dir, name, seed)) for seed in seeds]
    (out_dir / "tasks.txt").write_text("".join(f"{c} {s} {o}\n" for c, s, o in tasks))
    return tasks


def rounds_done(out: str) -> int:
    """Rounds complete in an output file; 0 when it is missing or unreadable (a run that failed early)."""
    import h5py
    try:
        with h5py.File(out, "r") as f:
            return int(f.attrs.get("rounds_completed", 0))
    except (OSError, ValueError):
        return 0


def run_local(tasks: list[tuple[str, int, str]], ranks: int) -> int:
    """Every task in turn with jobs/laptop.sh; finished outputs are skipped, cut ones resumed from
    their checkpoint, and the others (no checkpoint, or a file a failed run left) run again."""
    failed = []
    for i, (config, seed, out) in enumerate(tasks, 1):
        extra = []
        if Path(out).exists():
            if rounds_done(out) == config_mod.load(config).run.rounds:
                print(f"[{i}/{len(tasks)}] {out} is complete; skipped", flush=True)
                continue
            extra = ["--resume"] if Path(out + ".ckpt/meta.json").exists() else ["--overwrite"]
        print(f"[{i}/{len(tasks)}] {config} seed {seed} -> {out}", flush=True)
        cmd = ["bash", str(REPO / "jobs/laptop.sh"), str(ranks), config, "--set", f"run.seed={seed}", "--out", out]
        if subprocess.run(cmd + extra).returncode != 0:
            failed.append(out)
    if failed:
        print(f"sweep: {len(failed)} of {len(tasks)} tasks failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="sweep spec TOML")
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks per task (default 1)")
    parser.add_argument("--local", action="store_true", help="run the tasks here with jobs/laptop.sh instead")
    args = parser.parse_args(argv)
    if args.ranks < 1:
        parser.error("--ranks must be >= 1")
    spec_path = Path(args.spec)
    try:
        out_dir, seeds, configs = expand(read_toml(spec_path, "spec"), args.ranks, f"results/{spec_path.stem}",
                                      here=args.local)
    except ConfigError as e:
        print(f"sweep: {spec_path}: {e}", file=sys.stderr)
        return 2
    try:
        tasks = write(out_dir, seeds, configs, spec_path)
    except OSError as e:  # e.g. out_dir under a regular file, or not writable
        print(f"sweep: {spec_path}: out_dir: cannot write {e.filename or out_dir} ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"sweep: {len(configs)} configs x {len(seeds)} seeds = {len(tasks)} tasks in {out_dir / 'tasks.txt'}")
    if args.local:
        return run_local(tasks, args.ranks)
    sbatch = os.path.relpath(REPO / "jobs/slurm/sweep.sbatch")
    print(f"array size: {len(tasks)}")
    print(f"sbatch --array=1-{len(tasks)} --ntasks={args.ranks} {sbatch} {out_dir / 'tasks.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
