"""Epidemic Learning: train, send to some peers, average the own model with what arrived.

Variants (protocol.epidemic.variant):
  oracle      every round a fresh random s-out/s-in regular digraph over the live nodes:
              the live nodes in a keyed random order, each sending to the next s (every node
              sends s models and receives s: the balanced load of EL-Oracle);
  local       each live node sends to s live nodes drawn uniformly, itself excluded (EL-Local);
  neighbours  each live node sends to every live node of its overlay view: the "EL" the HEAL
              evaluation ran (Gossipy's all-to-all), n*c messages per round.
Receivers average their own half-step model and the k received ones with weight 1/(k+1)
each (plain averaging; Gossipy's weight-shrink quirk is not reproduced, see README), or
combine them, their own included, by a robust rule (protocol.aggregation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.context import RoundContext
from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.protocols.base import Aggregation, Protocol, check_aggregation, edges_of, live_only
from heal_mpi.registry import ProtocolSpec
from heal_mpi.rng import uniform
from heal_mpi.steps import Assign, Mix, Train


@dataclass(frozen=True)
class EpidemicOptions(Aggregation):
    variant: str = opt("neighbours", "oracle (random s-regular graph), local (s random peers), neighbours (every "
                       "overlay neighbour, as the HEAL evaluation ran it)", choices=("oracle", "local", "neighbours"))
    fanout: int = opt(1, "s: the peers a node sends to (oracle, local)", lo=1)


def oracle_targets(ctx: RoundContext, s: int, local: np.ndarray) -> np.ndarray:
    """int64 [n_local, s]: targets in this round's random regular digraph (-1 for dead nodes)."""
    live = np.flatnonzero(ctx.alive)
    order = live[np.argsort(uniform(ctx.seed, "el-oracle", live, ctx.rnd), kind="stable")]
    pos = np.full(len(ctx.alive), -1, dtype=np.int64)
    pos[order] = np.arange(len(order))
    s = max(0, min(s, len(order) - 1))  # no live node, or one: nobody to send to
    p = pos[local]  # [n_local]
    out = order[(p[:, None] + np.arange(1, s + 1)[None, :]) % len(order)]  # [n_local, s]
    out[p < 0] = -1
    return out


def local_targets(ctx: RoundContext, s: int, local: np.ndarray) -> np.ndarray:
    """int64 [n_local, s]: s distinct live targets per live node, uniform, self excluded."""
    live = np.flatnonzero(ctx.alive)
    s = max(0, min(s, len(live) - 1))
    if s == 0:  # no live node, or one: nobody to send to
        return np.full((len(local), 0), -1, dtype=np.int64)
    draws = 4 * s + 4  # enough candidates that fewer than s distinct ones is vanishingly rare
    u = uniform(ctx.seed, "el-local", local[:, None], ctx.incarnation[local][:, None], ctx.rnd,
                np.arange(draws)[None, :])  # [n_local, draws]
    cand = live[(u * len(live)).astype(np.int64)]
    cand[cand == local[:, None]] = -1
    out = np.full((len(local), s), -1, dtype=np.int64)
    for i, row in enumerate(cand):  # per-node dedup, first occurrences in draw order
        _, first = np.unique(row, return_index=True)
        keep = row[np.sort(first)]
        keep = keep[keep >= 0][:s]
        out[i, :len(keep)] = keep
    out[~ctx.alive[local]] = -1
    return out


class EpidemicProtocol(Protocol):
    """Options: EpidemicOptions (`[protocol.epidemic]`)."""

    def targets(self, ctx: RoundContext, overlay) -> np.ndarray:
        variant, s = self.opts.variant, self.opts.fanout
        if variant == "oracle":
            return oracle_targets(ctx, s, self.local)
        if variant == "local":
            return local_targets(ctx, s, self.local)
        view = live_only(overlay.neighbours(), ctx.alive)
        view[view == self.local[:, None]] = -1  # an Elevator hub lists itself: no edge to itself
        view[~ctx.alive[self.local]] = -1
        return view

    def round(self, ctx: RoundContext, overlay):
        alive, acting = ctx.alive[self.local], ctx.acts(self.local)  # acting: asynchronous rounds' timers
        yield Train(acting)  # 1. half-step models
        targets = self.targets(ctx, overlay)
        targets[~acting] = -1
        src, dst = edges_of(targets)
        if not self.rule.robust:
            # 2. send to the targets; 3. each receiver merges as the rows arrive, 1/(k+1) each
            yield Mix("epidemic", src, dst, merge=np.where(alive, 1.0, np.nan))
            return
        own = np.flatnonzero(alive)  # the own model joins the robust merge as a self-edge (no message)
        got = yield Mix("epidemic", np.concatenate([src, own]), np.concatenate([dst, self.local[own]]), rule=self.rule)
        yield Assign(got, np.flatnonzero(alive & (got.messages > 0)))


def check_epidemic(cfg) -> None:
    check_aggregation(cfg)
    o, n = cfg.protocol.options, cfg.nodes.count
    if o.variant != "neighbours" and o.fanout >= n:
        raise ConfigError(f"protocol.epidemic.fanout: s = {o.fanout} must be < nodes.count = {n}")


SPEC = ProtocolSpec(
    "epidemic", "heal_mpi.protocols.epidemic:EpidemicProtocol", "Epidemic",
    "every live node trains, sends to its targets, and averages its own model with what arrived: `neighbours` "
    "(every overlay neighbour, the \"EL\" of the HEAL evaluation), `oracle` (a fresh random s-out/s-in regular "
    "digraph), `local` (s uniform random live nodes)", "newscast", options=EpidemicOptions, check=check_epidemic,
    asynchronous=True)
