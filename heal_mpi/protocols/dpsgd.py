"""D-PSGD (Lian et al., NeurIPS 2017): local steps, then Metropolis–Hastings averaging with the
neighbours on the undirected graph of live overlay links.

One round, for every live node i (decentralizepy's DPSGDNode with Sharing._averaging):
  1. it tells every live node of its view that it links to it (an Exchange, no values), so that
     each node knows its undirected neighbourhood N(i) = out(i) ∪ in(i) and its degree d_i;
  2. it sends d_i to each neighbour (an Exchange), so that it knows d_j of every neighbour j;
  3. it trains and mixes, in the order `protocol.dpsgd.order` says:
     - atc, adapt then combine (decentralizepy's, the default): the local steps first, then
       x_i <- W_ii y_i + sum_j W_ij y_j over the trained models y;
     - cta, combine then adapt (Lian et al.'s Algorithm 1): the round-start models are mixed,
       and the update of local steps taken at the round-start model x_i is added:
       x_i <- W_ii x_i + sum_j W_ij x_j + (y_i - x_i) (a Snapshot, then Train from it);
  with W_ij = 1 / (max(d_i, d_j) + 1) for j in N(i) and W_ii = 1 - sum_j W_ij: W is symmetric
  and doubly stochastic, so the average model is kept, whenever every message arrives.
Lost messages: an edge whose link or degree message is lost is left out by the side that
missed it, and a lost model leaves its weight with the receiver (W_ii absorbs it): every row of
W still sums to 1, its columns no longer exactly. Dead nodes neither send nor receive.
Traffic per round: 2 control messages per undirected edge and direction (16 and 24 bytes),
and one model per direction of every edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heal_mpi.options import opt
from heal_mpi.protocols.base import Protocol, edges_of, live_only
from heal_mpi.registry import ProtocolSpec
from heal_mpi.steps import Assign, Exchange, Mix, Snapshot, Train


@dataclass(frozen=True)
class DPSGDOptions:
    order: str = opt("atc", "atc: adapt then combine, train then average (decentralizepy's); cta: combine then "
                     "adapt, average the round-start models and add the update computed at them (Lian et al.)",
                     choices=("atc", "cta"))


class DPSGD(Protocol):
    """Options: DPSGDOptions (`[protocol.dpsgd]`)."""

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        view = live_only(overlay.neighbours(), ctx.alive)
        view[(view == self.local[:, None]) | ~alive[:, None]] = -1  # no self-links (a hub lists itself)
        out_row, out_id = edges_of(view)

        linked = yield Exchange("dpsgd-link", out_row, out_id)  # 1. who links to me
        n = len(ctx.alive)
        pair = np.unique(np.concatenate([out_row * n + out_id, linked.receiver * n + linked.sender]))
        row, nbr = pair // n, pair % n  # each undirected link of a local node, once
        degree = np.bincount(row, minlength=len(self.local))

        heard = yield Exchange("dpsgd-degree", row, nbr, values=degree[row])  # 2. my neighbours' degrees
        weight = 1.0 / (np.maximum(degree[heard.receiver], heard.values[:, 0]) + 1.0)

        cta = self.opts.order == "cta"  # 3.
        if cta:
            held = yield Snapshot(alive)
        else:
            yield Train(alive)
        mixed = yield Mix("dpsgd", heard.receiver, heard.sender, weight=weight)
        nodes = np.flatnonzero(alive & (mixed.counts > 0))
        yield Assign(mixed, nodes, own_weight=1.0 - mixed.weights[nodes])  # W_ii = 1 - sum_j W_ij
        if cta:
            yield Train(alive, start=held)


SPEC = ProtocolSpec(
    "dpsgd", "heal_mpi.protocols.dpsgd:DPSGD", "D-PSGD",
    "every live node trains, then averages with its neighbours on the undirected graph of live links, "
    "Metropolis–Hastings weights 1/(max(d_i, d_j)+1) (degrees exchanged first); `order = \"cta\"`: average "
    "the round-start models and add the update computed at them (Lian et al.)",
    "newscast", ("newscast", "elevator", "ring", "regular", "complete"), DPSGDOptions)
