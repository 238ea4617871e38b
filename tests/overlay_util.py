"""Helpers of the overlay tests: a World on any communicator, a fault+overlay loop, gathers.

Not a test module; imported by test_elevator, test_newscast, test_overlay_mpi.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.adversaries import Byzantine
from heal_mpi.channel import Channel
from heal_mpi.faults import FaultSchedule
from heal_mpi.metrics import RoundMetrics
from heal_mpi.overlay.common import hub_metrics
from heal_mpi.registry import build_overlay
from heal_mpi.runtime import World, block_bounds

ROOT = Path(__file__).resolve().parents[1]


def make_world(comm, n):
    return World(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), local_rank=0, local_size=1,
                 device=torch.device("cpu"), bounds=block_bounds(n, comm.Get_size()))


def overlay_cfg(n, rounds, kind="elevator", seed=1, overlay=None, adversary=None, **faults):
    """An overlay-only config (protocol.kind = none)."""
    return cfgmod.from_dict({"nodes": {"count": n}, "run": {"rounds": rounds, "seed": seed},
                             "protocol": {"kind": "none"}, "overlay": {"kind": kind, **(overlay or {})},
                             "faults": faults, "adversary": adversary or {}})


def simulate(cfg, comm=MPI.COMM_WORLD, observe=None):
    """Run cfg.run.rounds overlay cycles with the fault schedule; observe(ctx, overlay) after each."""
    world = make_world(comm, cfg.nodes.count)
    channel = Channel(cfg.run.seed, cfg.faults.message_loss)
    byzantine = []
    if cfgmod.byzantine_count(cfg):  # as Simulation.build wires them
        adversary = Byzantine(cfg, world)
        channel.alterations.append(adversary)
        byzantine = adversary.ids.tolist()
    ov = build_overlay(cfg, world, channel)
    faults = FaultSchedule(cfg, cfg.nodes.count, byzantine)
    alive, inc = faults.initial_state()
    seen = []
    for rnd in range(cfg.run.rounds):
        ctx = faults.start_round(rnd, alive, inc, ov.in_degree)
        alive, inc = ctx.alive, ctx.incarnation
        ov.step(ctx)
        if observe is not None:
            seen.append(observe(ctx, ov))
    return world, ov, seen


def hubs(ov):
    """Live nodes in at least 99% of the live views (the /rounds/hubs metric)."""
    return hub_metrics(ov.in_degree, ov.alive, ov.hub_width)[0]


def hub_ids(ov):
    """The /overlay/hub_ids row: hubs by in-degree, -1 padded."""
    return hub_metrics(ov.in_degree, ov.alive, ov.hub_width)[2]


def reduced_metrics(ov):
    """The overlay's contribution to /rounds, reduced over its communicator (collective)."""
    metrics = RoundMetrics()
    ov.contribute(metrics)
    return metrics.reduce(ov.world.comm).rounds


def gather_rows(world, rows):
    """The [N, k] array whose local block is `rows`, on every rank."""
    parts = world.comm.allgather(np.ascontiguousarray(rows))
    return np.concatenate(parts)


def topology_module():
    """analysis/topology.py as a module (analysis/ is a folder of scripts, not a package)."""
    if str(ROOT / "analysis") not in sys.path:
        sys.path.insert(0, str(ROOT / "analysis"))  # for its `import common`, as when run as a script
    spec = importlib.util.spec_from_file_location("topology", ROOT / "analysis" / "topology.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
