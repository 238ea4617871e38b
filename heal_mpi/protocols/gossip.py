"""Gossip Learning (push, merge with the own model, then train): HEAL paper's GL baseline.

Each round every live node pushes its current model to one random peer of its view
(`overlay.gossip_peers()`: Newscast's cache, Elevator's random links). A node that received k >= 1 models merges
them with its own, uniformly (weight 1/(k+1) each) or weighted by model age, then trains
once (Gossipy's MERGE_UPDATE). A node that received nothing neither merges nor trains.

Model age = the number of local training rounds behind a model. Under age weighting a
merged model's age is max(own age, weighted mean of the merged ages); with equal ages the
age-weighted merge is the plain average. The ages travel with the models (the Mix's values).
Under a robust rule (protocol.aggregation) the merge combines the own and the received
models by that rule, unweighted.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.protocols.base import Protocol, live_only, pick_from_lists
from heal_mpi.steps import Assign, Mix, Train


class GossipProtocol(Protocol):
    """Options: protocols.params.GossipParams (`protocol.merge`)."""

    def __init__(self, cfg, local):
        super().__init__(cfg, local)
        self.age = np.zeros(len(local), dtype=np.int64)

    def on_join(self, local_idx: np.ndarray) -> None:
        self.age[local_idx] = 0

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        peers = live_only(overlay.gossip_peers(), ctx.alive)

        # push: one live peer of the view
        target = pick_from_lists(peers, alive, 1, ctx, "gossip-peer", self.local)[:, 0]  # [n_local]
        src = np.flatnonzero(target >= 0)
        age_w = self.cfg.protocol.merge == "age"
        weight = np.maximum(self.age, 1).astype(np.float64)
        dst = target[src]
        if self.rule.robust:  # the own model joins the merge as a self-edge (no message)
            own = np.flatnonzero(alive)
            src, dst = np.concatenate([src, own]), np.concatenate([dst, self.local[own]])
        got = yield Mix("gossip", src, dst, weight=weight[src] if age_w else None,
                        values=self.age[src, None].astype(np.float64), rule=self.rule)

        # merge with the own model, then train once
        recv = np.flatnonzero(alive & (got.messages > 0))
        yield Assign(got, recv, own_weight=None if self.rule.robust else weight[recv] if age_w else np.ones(len(recv)))
        if age_w:
            mean_in = got.values[recv, 0] / got.weights[recv]
            self.age[recv] = np.maximum(self.age[recv], np.rint(mean_in).astype(np.int64))
        yield Train(np.isin(np.arange(len(self.local)), recv))
        self.age[recv] += 1

    def state_dict(self) -> dict:
        return {"age": self.age.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.age = np.asarray(state["age"], dtype=np.int64).copy()
