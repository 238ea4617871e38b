"""Hub-based learning: HEAL, FedAvg and Gaia are one protocol with different hub lists.

One round (HEAL paper §4.4; FedAvg = one static hub, Gaia = k static hubs):
  1. every live non-hub trains on its own data;
  2. it sends its model to `s` hubs drawn from its hub list;
  3. every hub averages the client models it received (uniform, its own excluded);
  4. hubs average their averages over their own hub lists (uniform over hubs, or by the
     number of clients each averaged: protocol.hub_weights);
  5. every hub returns the result to the clients that sent to it; a client averages the
     copies it got back, or keeps its own model when none came (all its hubs dead).
A hub that received no client model does not join step 4. Hubs do not train.
Which nodes are hubs and what hub lists they hold is the overlay's business.

Defences (protocol.aggregation, protocol.hub_merge, protocol.client_merge): a hub may
combine its clients' models by a robust rule instead of their mean (step 3), and the hubs'
averages likewise (step 4), and a client with s >= 3 hubs may take the coordinate-wise
median of the copies it gets back (step 5), the redundancy HEAL already pays for.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.protocols.base import Protocol, edges_of, pick_from_lists
from heal_mpi.steps import Assign, Mix, Reply, Rule, Train


class HubProtocol(Protocol):
    """HEAL on Elevator, FedAvg on a star, Gaia on a multi-star."""

    def __init__(self, cfg, local):
        super().__init__(cfg, local)
        p = cfg.protocol
        self.hub_rule = Rule(p.hub_merge, p.trim_beta, p.clip_tau)

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        hubs = overlay.is_hub()  # bool [n_local], live hubs
        clients = alive & ~hubs

        yield Train(clients)  # 1.
        targets = pick_from_lists(overlay.hub_lists(), clients, self.cfg.protocol.fanout, ctx, "hub-target",
                                  self.local)  # [n_local, s], -1 = none
        up = yield Mix("up", *edges_of(targets), rule=self.rule)  # 2.-3.
        served = hubs & (up.counts > 0)  # hubs that take part in this round

        src, dst = edges_of(np.where(served[:, None], overlay.hub_lists(), -1))
        weight = up.counts[src].astype(np.float64) if self.cfg.protocol.hub_weights == "clients" else None
        between = yield Mix("hub-hub", src, dst, weight=weight, rows=up, rule=self.hub_rule)  # 4.
        ready = served & (between.counts > 0)

        back = yield Reply("down", to=up, rows=between, answering=ready)  # 5.
        yield Assign(between, np.flatnonzero(ready))  # hubs keep the global model
        yield Assign(back, np.flatnonzero(back.counts > 0), rule=Rule(self.cfg.protocol.client_merge))
        return {"hubs_active": int(ready.sum())}
