"""Gossip Learning (push, merge with the own model, then train): HEAL paper's GL baseline.

Each round every live node pushes its current model to one random peer of its view
(Newscast's cache, or Elevator's random links). A node that received k >= 1 models merges
them with its own, uniformly (weight 1/(k+1) each) or weighted by model age, then trains
once (Gossipy's MERGE_UPDATE). A node that received nothing neither merges nor trains.

Model age = the number of local training rounds behind a model. Under age weighting a
merged model's age is max(own age, weighted mean of the merged ages); with equal ages the
age-weighted merge is the plain average.
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.context import RoundContext
from heal_mpi.protocols.base import Protocol, RoundTraffic, pick_from_lists


class GossipProtocol(Protocol):
    def __post_init__(self):
        super().__post_init__()
        self.age = np.zeros(self.world.n_local, dtype=np.int64)

    def on_join(self, local_idx: np.ndarray) -> None:
        self.age[local_idx] = 0

    def views(self, overlay) -> np.ndarray:
        return overlay.random_peers() if self.cfg.overlay_kind == "elevator" else overlay.neighbours()

    def round(self, ctx: RoundContext, overlay) -> RoundTraffic:
        world, pop = self.world, self.pop
        local = world.local_slots
        alive = ctx.alive[local]
        traffic = RoundTraffic.zeros(world.n_local, self.model_bytes)
        view = self.views(overlay)
        views = np.where((view >= 0) & ctx.alive[np.maximum(view, 0)], view, -1)  # live peers only

        # push: one live peer of the view
        target = pick_from_lists(views, alive, 1, ctx, "gossip-peer", local)[:, 0]  # [n_local]
        src = np.nonzero(target >= 0)[0]
        traffic.send(src)
        ok = self.delivered(ctx, local[src], target[src], "gossip")
        src, dst = src[ok], target[src][ok]
        age_w = self.cfg.protocol.merge == "age"
        weight = np.maximum(self.age[src], 1).astype(np.float64) if age_w else None
        got = self.comm.mix(pop.rows, src, dst, weight)
        ages = self.comm.mix(torch.as_tensor(self.age, dtype=torch.float32)[:, None], src, dst, weight)

        # merge with the own model, then train once
        recv = np.nonzero(alive & (got.counts > 0))[0]
        traffic.recv(recv, got.counts[recv])
        own_w = np.maximum(self.age[recv], 1).astype(np.float64) if age_w else np.ones(len(recv))
        own_w_t = torch.as_tensor(own_w, device=pop.rows.device)[:, None]
        merged = (got.sums[self.on_device(recv)] + pop.rows[self.on_device(recv)].double() * own_w_t) / (
            torch.as_tensor(got.weights[recv], device=pop.rows.device)[:, None] + own_w_t)
        pop.replace(recv, merged.to(torch.float32))
        if age_w:
            mean_in = ages.sums[recv, 0].cpu().numpy() / got.weights[recv]
            self.age[recv] = np.maximum(self.age[recv], np.rint(mean_in).astype(np.int64))
        active = np.zeros(world.n_local, dtype=bool)
        active[recv] = True
        traffic.train_loss = pop.train(active, ctx.rnd, ctx.incarnation[local])
        self.age[recv] += 1
        return traffic

    def state_dict(self) -> dict:
        return {"age": self.age.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.age = np.asarray(state["age"], dtype=np.int64).copy()
