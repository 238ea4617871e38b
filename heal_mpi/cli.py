"""Command line: `heal-mpi run | validate | info | config` (also `python -m heal_mpi`).

Exit codes: 0 success, 2 bad input (config, arguments, an output path that exists or cannot
be created), 1 a failure during the run (which also ends every other rank). Either way the
user reads one line on stderr; HEAL_MPI_DEBUG=1 adds the traceback of a failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heal_mpi import config as config_mod
from heal_mpi.errors import ConfigError, DatasetError, InputError
from heal_mpi.failures import os_reason, path_problem, resume_problem


def _load(args, n_ranks: int = 1) -> config_mod.Config:
    overrides = list(args.set or [])
    if getattr(args, "out", None):
        overrides.append(f"run.out={config_mod.toml_value(args.out)}")
    cfg = config_mod.load(args.config, overrides)
    config_mod.validate(cfg, n_ranks=n_ranks)
    problem = path_problem(Path(cfg.run.out))
    if problem:
        raise ConfigError(f"run.out: {problem}")
    return cfg


def cmd_validate(args) -> int:
    cfg = _load(args, n_ranks=args.ranks)
    print(f"{args.config}: ok ({config_mod.summary(cfg)})")
    return 0


def cmd_run(args) -> int:
    from mpi4py import MPI

    from heal_mpi.lock import OutputLock

    comm = MPI.COMM_WORLD
    cfg = _load(args, n_ranks=comm.Get_size())
    out = Path(cfg.run.out)
    lock = OutputLock(out)
    # Rank 0 claims the output (its folder, the lock, the checks that read it) and tells every
    # rank whether it could, so that all exit 2 together, before anything is written.
    problem = _claim_output(out, cfg, args, lock) if comm.Get_rank() == 0 else None
    problem, lock.token = comm.bcast((problem, lock.token), root=0)
    if problem:
        raise ConfigError(problem)

    from heal_mpi.runtime import abort_on_exception, make_world
    from heal_mpi.simulation import Simulation

    try:
        # A corrupt dataset file is found while loading, on every rank, before the output exists.
        with abort_on_exception(comm, bad_input=(DatasetError,), cleanup=[lock.release]):
            world = make_world(cfg.nodes.count, cfg.run.device, comm)
            status = Simulation.build(cfg, world, out, resume=args.resume).run()
    finally:
        lock.release()
    if comm.Get_rank() == 0 and status == 0:
        print(f"wrote {out}")
    return status


def _claim_output(out: Path, cfg, args, lock) -> str | None:
    """Create OUT's folder, take its lock, and check what --resume or --overwrite need; the problem
    as one line (exit 2), or None with the lock held."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except ConfigError as e:
        return str(e)
    except OSError as e:
        return f"run.out: cannot create {lock.path if out.parent.is_dir() else out.parent} ({os_reason(e)})"
    try:
        if args.resume:
            _check_resumable(out, cfg)
        elif out.exists() and not args.overwrite:
            raise ConfigError(f"run.out: {out} exists; pass --overwrite to replace it, or --resume")
    except ConfigError as e:
        lock.release()
        return str(e)
    return None


def _check_resumable(out: Path, cfg) -> None:
    """--resume continues OUT: it must exist, be a readable heal_mpi file of the same config, and
    have a whole checkpoint written by as many ranks as this run has."""
    import h5py
    from mpi4py import MPI
    if not out.exists():
        raise ConfigError(f"run.out: --resume but {out} does not exist")
    try:
        with h5py.File(out, "r") as f:
            stored, completed = f.attrs["config"], int(f.attrs.get("rounds_completed", 0))
    except (OSError, KeyError) as e:
        raise ConfigError(f"run.out: --resume but {out} is not a readable heal_mpi file "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); --overwrite starts again") from None
    problem = resume_problem(out, MPI.COMM_WORLD.Get_size(), completed)
    if problem:
        raise ConfigError(problem)
    if stored != config_mod.to_toml(cfg):
        raise ConfigError(f"run.out: --resume with a config that differs from the one stored in {out}")


def cmd_info(args) -> int:
    from heal_mpi import info
    print(info.describe(model=args.model))
    return 0


def cmd_bench(args) -> int:
    from heal_mpi import bench
    bench.run(args.sections, quick=args.quick)
    return 0


def cmd_config(args) -> int:
    print(config_mod.reference_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heal-mpi", description="MPI simulator of decentralized learning")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("config", help="TOML config file")
        p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override one config value (repeatable)")
        return p

    run = with_config(sub.add_parser("run", help="run a simulation (under mpirun for several ranks)"))
    run.add_argument("--out", help="HDF5 output path (overrides run.out)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    run.add_argument("--resume", action="store_true", help="continue OUT from its last checkpoint")
    run.set_defaults(func=cmd_run)

    val = with_config(sub.add_parser("validate", help="check a config and exit"))
    val.add_argument("--ranks", type=int, default=1, help="rank count to check against (default 1)")
    val.add_argument("--out", help=argparse.SUPPRESS)
    val.set_defaults(func=cmd_validate)

    info = sub.add_parser("info", help="versions, MPI library, parallel HDF5, devices")
    info.add_argument("--model", help="also print this model's parameter count (e.g. lenet5)")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="measure speed against plain PyTorch and one rank (one table)")
    bench.add_argument("sections", nargs="+", choices=["all", "limit", "backends", "round", "eval", "scaling", "overlay", "nodes",
                                                        "transport", "output", "clock", "memory", "gpu"])
    bench.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    bench.set_defaults(func=cmd_bench)

    sub.add_parser("config", help="print every config option as a markdown table").set_defaults(func=cmd_config)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        split = [a for a in extra if "=" in a and "." in a.split("=", 1)[0]]
        hint = (f"; did the shell split a --set value? {' '.join(split)} looks like one: quote the whole value, "
                "e.g. --set 'faults.crash=[{round = 10, fraction = 0.3}]'") if split else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    try:
        return args.func(args)
    except InputError as e:
        if _is_root():
            prefix = "data.root: " if isinstance(e, DatasetError) else ""
            print(f"heal-mpi: error: {prefix}{e}", file=sys.stderr)
        return 2


def _is_root() -> bool:
    if "mpi4py.MPI" not in sys.modules:
        return True
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank() == 0
