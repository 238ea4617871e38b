"""Epidemic Learning: train, send to some peers, average the own model with what arrived.

Variants (protocol.epidemic):
  oracle      every round a fresh random s-out/s-in regular digraph over the live nodes:
              the live nodes in a keyed random order, each sending to the next s (every node
              sends s models and receives s: the balanced load of EL-Oracle);
  local       each live node sends to s live nodes drawn uniformly, itself excluded (EL-Local);
  neighbours  each live node sends to every live node of its overlay view: the "EL" the HEAL
              evaluation ran (Gossipy's all-to-all), n*c messages per round.
Receivers average their own half-step model and the k received ones with weight 1/(k+1)
each (plain averaging; Gossipy's weight-shrink quirk is not reproduced, see README).
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.context import RoundContext
from heal_mpi.protocols.base import Protocol, RoundTraffic
from heal_mpi.rng import uniform


def oracle_targets(ctx: RoundContext, s: int, local: np.ndarray) -> np.ndarray:
    """int64 [n_local, s]: targets in this round's random regular digraph (-1 for dead nodes)."""
    live = np.flatnonzero(ctx.alive)
    order = live[np.argsort(uniform(ctx.seed, "el-oracle", live, ctx.rnd), kind="stable")]
    pos = np.full(len(ctx.alive), -1, dtype=np.int64)
    pos[order] = np.arange(len(order))
    s = min(s, len(order) - 1)
    p = pos[local]  # [n_local]
    out = order[(p[:, None] + np.arange(1, s + 1)[None, :]) % len(order)]  # [n_local, s]
    out[p < 0] = -1
    return out


def local_targets(ctx: RoundContext, s: int, local: np.ndarray) -> np.ndarray:
    """int64 [n_local, s]: s distinct live targets per live node, uniform, self excluded."""
    live = np.flatnonzero(ctx.alive)
    s = min(s, len(live) - 1)
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
    def targets(self, ctx: RoundContext, overlay) -> np.ndarray:
        local = self.world.local_slots
        variant, s = self.cfg.protocol.epidemic, self.cfg.protocol.fanout
        if variant == "oracle":
            return oracle_targets(ctx, s, local)
        if variant == "local":
            return local_targets(ctx, s, local)
        view = overlay.neighbours()
        view = np.where((view >= 0) & ctx.alive[np.maximum(view, 0)], view, -1)
        view[~ctx.alive[local]] = -1
        return view

    def round(self, ctx: RoundContext, overlay) -> RoundTraffic:
        world, pop = self.world, self.pop
        local = world.local_slots
        alive = ctx.alive[local]
        traffic = RoundTraffic.zeros(world.n_local, self.model_bytes)

        # 1. train (half-step models)
        traffic.train_loss = pop.train(alive, ctx.rnd, ctx.incarnation[local])

        # 2. send to the variant's targets
        targets = self.targets(ctx, overlay)  # [n_local, k]
        src, col = np.nonzero(targets >= 0)
        dst = targets[src, col]
        traffic.send(src)
        ok = self.delivered(ctx, local[src], dst, "epidemic")
        got = self.comm.mix(pop.rows, src[ok], dst[ok])

        # 3. average the own model with everything received, weight 1/(k+1) each
        recv = np.nonzero(alive & (got.counts > 0))[0]
        traffic.recv(recv, got.counts[recv])
        k = torch.as_tensor(got.counts[recv], dtype=torch.float64, device=pop.rows.device)[:, None]
        merged = (got.sums[self.on_device(recv)] + pop.rows[self.on_device(recv)].double()) / (k + 1)
        pop.replace(recv, merged.to(torch.float32))
        return traffic
