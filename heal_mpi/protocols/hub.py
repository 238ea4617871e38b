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
Under `[time]` with a deadline or a quorum, hubs drop the models done late in steps 3 and 4
(heal_mpi/clock.py); a client whose model was dropped still gets its hub's answer.
Which nodes are hubs and what hub lists they hold is the overlay's business.

Defences (protocol.aggregation, protocol.hub_merge, protocol.client_merge): a hub may
combine its clients' models by a robust rule instead of their mean (step 3), and the hubs'
averages likewise (step 4), and a client with s >= 3 hubs may take the coordinate-wise
median of the copies it gets back (step 5), the redundancy HEAL already pays for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.protocols.base import Aggregation, Protocol, check_aggregation, edges_of, pick_from_lists
from heal_mpi.registry import ProtocolSpec
from heal_mpi.steps import RULES, Assign, Mix, Reply, Rule, Train


@dataclass(frozen=True)
class GaiaOptions(Aggregation):
    hub_merge: str = opt("mean", "how a hub combines the averages of the hubs in its list (the inter-hub step); a "
                         "robust rule (trim_beta, clip_tau as for aggregation) keeps a minority of Byzantine hubs "
                         "out: a median of h hubs tolerates fewer than h/2", choices=RULES)
    hub_weights: str = opt("uniform", "the weight of each hub's average in the inter-hub mean: uniform (the HEAL "
                           "paper), or clients (the number of client models it averaged this round, so that every "
                           "client weighs the same, as in FedAvg)", choices=("uniform", "clients"))


@dataclass(frozen=True)
class HealOptions(GaiaOptions):
    fanout: int = opt(1, "s: the hubs of its hub list a client sends to", lo=1)
    client_merge: str = opt("mean", "how a client merges the copies its s hubs send back: mean, or the "
                            "coordinate-wise median (needs s >= 3)", choices=("mean", "median"))


class HubProtocol(Protocol):
    """HEAL on Elevator, FedAvg on a star, Gaia on a multi-star.

    FedAvg's options are only the aggregation (one server: no inter-hub step, s = 1), Gaia's add
    the inter-hub step's, HEAL's add s and the client's merge of its s copies.
    """

    def __init__(self, cfg, local):
        super().__init__(cfg, local)
        o = self.opts
        self.fanout = getattr(o, "fanout", 1)
        self.hub_weights = getattr(o, "hub_weights", "uniform")
        self.hub_rule = Rule(getattr(o, "hub_merge", "mean"), o.trim_beta, o.clip_tau)
        self.client_rule = Rule(getattr(o, "client_merge", "mean"))

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        hubs = overlay.is_hub()  # bool [n_local], live hubs
        clients = alive & ~hubs

        yield Train(clients)  # 1.
        targets = pick_from_lists(overlay.hub_lists(), clients, self.fanout, ctx, "hub-target",
                                  self.local)  # [n_local, s], -1 = none
        up = yield Mix("up", *edges_of(targets), rule=self.rule, deadline=True, keep=hubs)  # 2.-3.
        served = hubs & (up.counts > 0)  # hubs that take part in this round

        src, dst = edges_of(np.where(served[:, None], overlay.hub_lists(), -1))
        weight = up.counts[src].astype(np.float64) if self.hub_weights == "clients" else None
        between = yield Mix("hub-hub", src, dst, weight=weight, rows=up, rule=self.hub_rule, deadline=True,
                            keep=served)  # 4.
        ready = served & (between.counts > 0)

        back = yield Reply("down", to=up, rows=between, answering=ready)  # 5.
        yield Assign(between, np.flatnonzero(ready))  # hubs keep the global model
        yield Assign(back, np.flatnonzero(back.counts > 0), rule=self.client_rule)
        return {"hubs_active": int(ready.sum())}


# ----------------------------------------------------------------------------- specs and checks

def check_gaia(cfg) -> None:
    check_aggregation(cfg)
    o = cfg.protocol.options
    if o.hub_weights == "clients" and o.hub_merge != "mean":
        raise ConfigError(f"protocol.{cfg.protocol.name}.hub_weights: 'clients' weighs a mean; "
                          f"protocol.{cfg.protocol.name}.hub_merge = {o.hub_merge!r} ignores weights")


def check_heal(cfg) -> None:
    check_gaia(cfg)
    s = cfg.protocol.options.fanout
    if cfg.overlay_kind in ("star", "multistar") and s > 1:
        raise ConfigError(f"protocol.heal.fanout: s = {s}, but a {cfg.overlay_kind} client has one hub")
    if cfg.overlay_kind == "elevator" and s > cfg.overlay.hubs:
        raise ConfigError(f"protocol.heal.fanout: s = {s} must be <= overlay.hubs = {cfg.overlay.hubs}")
    if cfg.protocol.options.client_merge == "median" and s < 3:
        raise ConfigError(f"protocol.heal.client_merge: a median of s = {s} copies needs protocol.heal.fanout >= 3")


HUB = "heal_mpi.protocols.hub:HubProtocol"
HEAL = ProtocolSpec(
    "heal", HUB, "HEAL", "live non-hubs train, send to s hubs of their hub list; each hub averages what it got, "
    "hubs average their averages over their own hub lists, then return the result to their senders",
    "elevator", ("elevator", "star", "multistar"), HealOptions, check=check_heal)
FEDAVG = ProtocolSpec(
    "fedavg", HUB, "FedAvg", "the same code on a star: every client trains and sends to the server (node 0, never "
    "fails, does not train), which averages and answers", "star", ("star",), Aggregation,
    protected=lambda cfg: [0], check=check_aggregation)
GAIA = ProtocolSpec(
    "gaia", HUB, "Gaia", "the same on a multistar: k servers (nodes 0..k-1, never fail), each averaging its clients, "
    "then the servers average among themselves", "multistar", ("multistar",), GaiaOptions,
    protected=lambda cfg: list(range(cfg.overlay.options.servers)), check=check_gaia)
