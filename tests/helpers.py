"""What the tests share: worlds on any communicator, configs, the engine's fakes, the overlay loop.

Not a test module. The overlay tests drive the real Simulation (faults, overlay, adversary
wiring) one round at a time, without an output file, so no test re-implements the round loop.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.config import DataConfig
from heal_mpi.context import RoundContext
from heal_mpi.engine.channel import Channel
from heal_mpi.engine.core import Engine
from heal_mpi.metrics import RoundMetrics
from heal_mpi.overlay.common import hub_metrics
from heal_mpi.registry import build_protocol
from heal_mpi.runtime import World, block_bounds

ROOT = Path(__file__).resolve().parents[1]
P = 5  # parameters of a fake model


# ----------------------------------------------------------------------------- worlds and configs

def make_world(comm, n: int) -> World:
    """A CPU World of n nodes on `comm` (any communicator: COMM_SELF, COMM_WORLD)."""
    return World(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), local_rank=0, local_size=1,
                 device=torch.device("cpu"), bounds=block_bounds(n, comm.Get_size()))


def config(*overrides: str, base: list[str] = ()) -> cfgmod.Config:
    """A validated Config from --set style overrides (no dataset files needed)."""
    return cfgmod.validate(cfgmod.load(None, [*base, *overrides]), check_files=False)


def data_cfg(features: int = 8, classes: int = 3, train: int = 300, test: int = 100, **kw) -> DataConfig:
    """The real [data] section with a small synthetic task."""
    return DataConfig(**{"synthetic_features": features, "synthetic_classes": classes, "synthetic_train": train,
                         "synthetic_test": test, **kw})


def context(n: int, rnd: int = 0, alive=None) -> RoundContext:
    """A round's facts: seed 3, everyone alive unless `alive` says otherwise, no churn."""
    alive = np.ones(n, dtype=bool) if alive is None else alive
    e = np.zeros(0, np.int64)
    return RoundContext(rnd, 3, alive, np.zeros(n, np.int64), e, e)


def gather_rows(world, rows) -> np.ndarray:
    """The [N, ...] array whose local block is `rows`, on every rank."""
    return np.concatenate(world.comm.allgather(np.ascontiguousarray(rows)))


# ----------------------------------------------------------------------------- the engine's fakes

class FakePop:
    """The Population's engine-facing surface: rows, train (adds 1 to a trained row), replace."""

    def __init__(self, full: torch.Tensor, world):
        self.rows = full[world.slot_lo:world.slot_hi].clone()
        self.n_params = full.shape[1]
        self.train_seconds, self.train_samples = 0.0, 0

    def train(self, active, rnd, incarnation, repeat=0):
        active = np.asarray(active, dtype=bool)
        self.rows[torch.as_tensor(active)] += 1
        self.train_samples += int(active.sum())
        return np.where(active, 0.5, np.nan)

    def replace(self, idx, rows):
        self.rows[torch.as_tensor(idx)] = rows.to(torch.float32)

    def init_nodes(self, idx, incarnation):
        pass

    def evaluate(self, rnd, mask=None):
        nan = np.full(len(self.rows), np.nan)
        return nan, nan, 0


class Script:
    """A protocol whose round is the given generator function; keeps what the steps returned."""

    def __init__(self, body):
        self.body, self.seen = body, []

    def round(self, ctx, overlay):
        return self.body(ctx, self.seen)

    def on_join(self, idx):
        pass


class FakeOverlay:
    """Given global hub lists and views [N, k]; each rank sees its own rows (as a real overlay)."""

    def __init__(self, hub_lists, views, world):
        lo, hi = world.slot_lo, world.slot_hi
        self._hubs, self._views, self.local = hub_lists[lo:hi], views[lo:hi], world.local_slots

    def hub_lists(self):
        return self._hubs

    def neighbours(self):
        return self._views

    def gossip_peers(self):
        return self._views

    def is_hub(self):
        return (self._hubs == self.local[:, None]).any(axis=1)


def random_rows(n: int, seed: int = 0) -> torch.Tensor:
    """float32 [n, P], the same on every rank."""
    return torch.as_tensor(np.random.default_rng(seed).standard_normal((n, P)), dtype=torch.float32)


def script_engine(comm, n: int, body, loss: float = 0.0, seed: int = 42):
    """(world, the full rows, the Script, an Engine running it) on n fake nodes spread over `comm`."""
    world = make_world(comm, n)
    full = random_rows(n, seed)
    proto = Script(body)
    engine = Engine(world, FakePop(full, world), proto, Channel(7, loss))
    return world, full, proto, engine


def run_protocol(kind: str, hub_lists, views, comm=MPI.COMM_SELF, alive=None, full=None, **options):
    """One round of a registered protocol on fake nodes (FakePop: training adds 1) and a FakeOverlay.

    Returns (rows before [N, P], rows after [N, P], the reduced /rounds metrics), the same on every rank.
    """
    n = len(views)
    cfg = cfgmod.from_dict({"nodes": {"count": n}, "protocol": {"kind": kind, kind: options}})
    world = make_world(comm, n)
    full = random_rows(n) if full is None else full
    engine = Engine(world, FakePop(full, world), build_protocol(cfg, world.local_slots), Channel(1))
    engine.round(context(n, alive=alive), FakeOverlay(hub_lists, views, world))
    metrics = RoundMetrics()
    engine.contribute(metrics)
    rounds = metrics.reduce(engine.comm).rounds
    return full.double().numpy(), gather_rows(world, engine.pop.rows.double().numpy()), rounds


# ----------------------------------------------------------------------------- the overlay loop

def overlay_cfg(n, rounds, kind="elevator", seed=1, overlay=None, adversary=None, **faults) -> cfgmod.Config:
    """An overlay-only config (protocol.kind = none)."""
    return cfgmod.from_dict({"nodes": {"count": n}, "run": {"rounds": rounds, "seed": seed},
                             "protocol": {"kind": "none"}, "overlay": {"kind": kind, **(overlay or {})},
                             "faults": faults, "adversary": adversary or {}})


def simulate(cfg, comm=MPI.COMM_WORLD, observe=None):
    """Run cfg.run.rounds rounds of the real Simulation without an output file; observe(ctx, overlay)
    after each. Returns (world, overlay, what observe returned per round)."""
    from heal_mpi.simulation import Simulation
    world = make_world(comm, cfg.nodes.count)
    sim = Simulation.build(cfg, world, out=None)
    seen = []
    if observe is not None:
        sim.after_round.append(lambda ctx, record: seen.append(observe(ctx, sim.overlay)))
    for rnd in range(cfg.run.rounds):
        sim.step(rnd)
    return world, sim.overlay, seen


def hubs(ov) -> int:
    """Live nodes in at least 99% of the live views (the /rounds/hubs metric)."""
    return hub_metrics(ov.in_degree, ov.alive, ov.hub_width)[0]


def hub_ids(ov) -> np.ndarray:
    """The /overlay/hub_ids row: hubs by in-degree, -1 padded."""
    return hub_metrics(ov.in_degree, ov.alive, ov.hub_width)[2]


def reduced_metrics(ov) -> dict:
    """The overlay's contribution to /rounds, reduced over its communicator (collective)."""
    metrics = RoundMetrics()
    ov.contribute(metrics)
    return metrics.reduce(ov.comm).rounds


def analysis_module(name: str):
    """analysis/<name>.py as a module (analysis/ is a folder of scripts, not a package)."""
    if str(ROOT / "analysis") not in sys.path:
        sys.path.insert(0, str(ROOT / "analysis"))  # for its `import common`, as when run as a script
    spec = importlib.util.spec_from_file_location(name, ROOT / "analysis" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
