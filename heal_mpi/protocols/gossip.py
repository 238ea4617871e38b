"""Gossip Learning (push, merge with the own model, then train): HEAL paper's GL baseline.

Each round every live node pushes its current model to one random peer of its view
(`overlay.gossip_peers()`: Newscast's cache, Elevator's random links). What a receiver does
(`protocol.gossip_update`):
- `once`: a node that received k >= 1 models merges them with its own, uniformly (weight
  1/(k+1) each) or weighted by model age, then trains once. A node that received nothing
  neither merges nor trains.
- `per_model`: Gossipy's MERGE_UPDATE as the HEAL evaluation ran it: for each model received,
  in arrival order, the node merges it with its own current model (1/2 each, or by age)
  and trains, so a node trains as often as it receives (about once per node and round on
  average, some twice, some never). The pushes all carry the senders' round-start models;
  arrival order is each sender's keyed send time within the round (Gossipy's sync mode
  draws it at random).

Model age = the number of local training rounds behind a model. Under age weighting a
merged model's age is max(own age, weighted mean of the merged ages); with equal ages the
age-weighted merge is the plain average. The ages travel with the models (the Mix's values).
Under a robust rule (protocol.aggregation, `once` only) the merge combines the own and the
received models by that rule, unweighted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.protocols.base import Aggregation, Protocol, check_aggregation, live_only, pick_from_lists
from heal_mpi.registry import ProtocolSpec
from heal_mpi.rng import uniform
from heal_mpi.steps import Assign, Mix, Train


@dataclass(frozen=True)
class GossipOptions(Aggregation):
    merge: str = opt("uniform", "merge weights: uniform, or by model age", choices=("uniform", "age"))
    gossip_update: str = opt("once", "once: a node merges every model it received and trains once; per_model: "
                             "Gossipy's MERGE_UPDATE (as the HEAL evaluation ran GL), one merge with the own model "
                             "and one training per model received, in arrival order", choices=("once", "per_model"))


class GossipProtocol(Protocol):
    """Options: GossipOptions (`[protocol.gossip]`)."""

    def __init__(self, cfg, local):
        super().__init__(cfg, local)
        self.age = np.zeros(len(local), dtype=np.int64)

    def on_join(self, local_idx: np.ndarray) -> None:
        self.age[local_idx] = 0

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        peers = live_only(overlay.gossip_peers(), ctx.alive)
        per_model = self.opts.gossip_update == "per_model"

        # push: one live peer of the view (asynchronous rounds: the nodes whose timer fired)
        target = pick_from_lists(peers, ctx.acts(self.local), 1, ctx, "gossip-peer", self.local)[:, 0]  # [n_local]
        src = np.flatnonzero(target >= 0)
        age_w = self.opts.merge == "age"
        weight = np.maximum(self.age, 1).astype(np.float64)
        dst = target[src]
        if self.rule.robust:  # the own model joins the merge as a self-edge (no message)
            own = np.flatnonzero(alive)
            src, dst = np.concatenate([src, own]), np.concatenate([dst, self.local[own]])
        sent_at = uniform(ctx.seed, "gossip-send-time", self.local[src], ctx.incarnation[self.local[src]], ctx.rnd) \
            if per_model else None
        # `once`: the receivers merge everything with their own model as the rows arrive, then train once
        merge = np.where(alive, weight if age_w else 1.0, np.nan) if not per_model and not self.rule.robust else None
        got = yield Mix("gossip", src, dst, weight=weight[src] if age_w else None,
                        values=self.age[src, None].astype(np.float64), rule=self.rule, order=sent_at, merge=merge)

        if not per_model:
            yield from self._merge_and_train(got, alive, weight if age_w else None, repeat=0, merged=merge is not None)
            return
        # Assign and Train are rank-local steps: each rank loops as often as its own nodes need
        for j in range(int(got.counts[alive].max(initial=0))):
            yield from self._merge_and_train(got.arrival(j), alive, weight if age_w else None, repeat=j)
            weight = np.maximum(self.age, 1).astype(np.float64)

    def _merge_and_train(self, got, alive, weight, repeat, merged=False):
        """The live nodes that received in `got` merge it with their own model (by age where
        `weight` is given; `merged`: the Mix merged them), train, and grow one round older."""
        recv = np.flatnonzero(alive & (got.messages > 0))
        if not merged:
            own_weight = None if self.rule.robust else np.ones(len(recv)) if weight is None else weight[recv]
            yield Assign(got, recv, own_weight=own_weight)
        if weight is not None:
            mean_in = got.values[recv, 0] / got.weights[recv]
            self.age[recv] = np.maximum(self.age[recv], np.rint(mean_in).astype(np.int64))
        yield Train(np.isin(np.arange(len(self.local)), recv), repeat=repeat)
        self.age[recv] += 1

    def state_dict(self) -> dict:
        return {"age": self.age.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.age = np.asarray(state["age"], dtype=np.int64).copy()


def check_gossip(cfg) -> None:
    check_aggregation(cfg)
    o = cfg.protocol.options
    if o.gossip_update == "per_model" and o.aggregation != "mean":
        raise ConfigError(f"protocol.gossip.aggregation: {o.aggregation!r} needs the models of a round together; "
                          "protocol.gossip.gossip_update = 'per_model' merges them one at a time")


SPEC = ProtocolSpec(
    "gossip", "heal_mpi.protocols.gossip:GossipProtocol", "Gossip",
    "every live node pushes to one random live peer of its view; a receiver averages the k models with its own "
    "(uniform, or `merge = \"age\"`), then trains once; with `gossip_update = \"per_model\"` (Gossipy's "
    "MERGE_UPDATE, as the HEAL evaluation ran GL) it merges each model with its own, 1/2 each, and trains, once "
    "per model, in arrival order", "newscast", options=GossipOptions, check=check_gossip, asynchronous=True)
