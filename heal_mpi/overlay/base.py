"""The overlay contract: every method the rest of the simulator calls, and what overlays share.

An overlay holds the views of its rank's own nodes only. Its checkpointed state is a
declared set of typed arrays (`STATE`: name -> dtype). The base class owns what every
overlay does the same way: its traffic counters, pruning links to departed nodes, the
global in-degree reduction, the hub metrics, and its contribution to the round's metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from heal_mpi.engine.channel import Channel
from heal_mpi.comm import Comm
from heal_mpi.context import RoundContext
from heal_mpi.metrics import RoundMetrics, Traffic
from heal_mpi.overlay.common import HEADER_BYTES, ID_BYTES, hub_metrics
from heal_mpi.rng import uniform

if TYPE_CHECKING:
    from heal_mpi.runtime import World


class Overlay(ABC):
    """A rank's share of the overlay. Collective over `world.comm` where a method says so.

    Args:
        world: the World; channel: where simulated messages are lost or altered;
        hub_width: width of the `hub_ids` metric row;
        comm: the run's Comm, shared with the engine so that every rank's collective steps are
            checked against each other's (a fresh one when None: an overlay on its own).

    Attributes (refreshed by `step`):
        alive: bool [N], liveness of the last cycle.
        in_degree: int64 [N], global in-degree of every slot among live nodes' views
            (the same on every rank; the hub attack and the metrics read it).
        traffic: this cycle's simulated overlay messages per local node.
        before_cycle: hooks (overlay, ctx) an overlay may run at the start of its cycle, before any
            node acts (Elevator runs them: Lift, attached at build time by heal_mpi.adversary.wiring).
    """

    STATE: dict = {}  # name -> dtype of each array attribute a resume needs
    ITEM_BYTES = ID_BYTES  # simulated bytes per id or entry a message carries

    def __init__(self, world: World, channel: Channel, hub_width: int, comm: Comm | None = None):
        self.world, self.channel, self.hub_width = world, channel, hub_width
        self.comm = comm if comm is not None else Comm(world)
        self.before_cycle: list = []
        self.semantics, self.n_substeps = "snapshot", 0  # the cycle's order (set_order)
        self.alive = np.ones(world.n_nodes, dtype=bool)
        self.traffic = Traffic(world.n_local)

    # ------------------------------------------------------------------ what an overlay is
    @abstractmethod
    def step(self, ctx: RoundContext) -> None:
        """One cycle for the local live nodes. Collective over `world.comm`: every rank must call."""

    @abstractmethod
    def neighbours(self) -> np.ndarray:
        """int64 [n_local, k]: each local node's view (out-links), -1 padded."""

    @abstractmethod
    def hub_lists(self) -> np.ndarray:
        """int64 [n_local, h]: each local node's hub list, -1 padded ([n_local, 0]: no hubs)."""

    @abstractmethod
    def random_peers(self) -> np.ndarray:
        """int64 [n_local, k]: the non-hub part of each view, -1 padded."""

    @abstractmethod
    def snapshot(self) -> np.ndarray:
        """int64 [n_local, k]: a copy of the views for /overlay/cache."""

    def gossip_peers(self) -> np.ndarray:
        """int64 [n_local, k]: the peers a gossip node pushes to (by default its whole view)."""
        return self.neighbours()

    def is_hub(self) -> np.ndarray:
        """bool [n_local]: the node is alive and in its own hub list."""
        local = self.world.local_slots
        return (self.hub_lists() == local[:, None]).any(axis=1) & self.alive[self.world.slot_lo:self.world.slot_hi]

    # ------------------------------------------------------------------ shared work
    def set_order(self, semantics: str, substeps: int = 0) -> None:
        """How the nodes of a cycle take turns: "snapshot" (all at once, on the views of the cycle's
        start) or "sequential" (in `substeps` groups, 0 = one node each, over a fresh keyed permutation
        of the nodes: each group sees what the groups before it changed, PeerSim's cycle order when
        every group is one node)."""
        self.semantics, self.n_substeps = semantics, substeps

    def substeps(self, ctx: RoundContext) -> list[np.ndarray]:
        """The local live rows that act in each sub-step of this cycle, in turn. Every rank gets the same
        number of sub-steps (each one is collective), some of them empty."""
        lo, hi, n = self.world.slot_lo, self.world.slot_hi, self.world.n_nodes
        rows = np.flatnonzero(ctx.alive[lo:hi])
        if self.semantics == "snapshot":
            return [rows]
        k = n if self.n_substeps <= 0 else min(self.n_substeps, n)
        place = np.empty(n, dtype=np.int64)  # each node's turn in this cycle's permutation, the same on every rank
        place[np.argsort(uniform(ctx.seed, "cycle-order", ctx.rnd, np.arange(n)), kind="stable")] = np.arange(n)
        group = place[rows + lo] * k // n
        order = np.argsort(group, kind="stable")
        cuts = np.searchsorted(group[order], np.arange(k + 1))
        return [rows[order[cuts[g]:cuts[g + 1]]] for g in range(k)]

    def new_cycle(self, ctx: RoundContext) -> None:
        """Start a cycle: this round's liveness, fresh traffic counters."""
        self.alive = ctx.alive
        self.traffic = Traffic(self.world.n_local)

    def contribute(self, metrics: RoundMetrics) -> None:
        """hubs (live nodes with in-degree >= 99% of the live count), max_in_degree, per node
        in_degree and is_hub, the `hub_ids` row, and this cycle's traffic."""
        hubs, top, ids = hub_metrics(self.in_degree, self.alive, self.hub_width)
        metrics.set("hubs", hubs)
        metrics.set("max_in_degree", top)
        metrics.add_node("in_degree", self.in_degree[self.world.slot_lo:self.world.slot_hi].copy())
        metrics.add_node("is_hub", self.is_hub())
        metrics.add_row("hub_ids", ids)
        self.traffic.contribute(metrics, "overlay")

    def count_in_degree(self, views: np.ndarray, extra=()) -> tuple[np.ndarray, np.ndarray]:
        """(in-degree int64 [N], extras summed over ranks) from the local live nodes' views [n, k].

        Collective over `world.comm`: every rank must call. One Allreduce of N + len(extra) int64.
        """
        n = self.world.n_nodes
        ids = views[views >= 0]
        total = self.comm.allreduce_sum(np.concatenate([np.bincount(ids, minlength=n).astype(np.int64),
                                                        np.asarray(extra, dtype=np.int64)]), "overlay-in-degree")
        return total[:n], total[n:]

    def prune_departed(self, ids: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """ids [n_local, k] with links to dead or departed nodes (churned slots) set to -1,
        and the dead local nodes' rows emptied."""
        gone = ~ctx.alive
        gone[ctx.crashed] = True  # a churned slot's old links pointed to the node that left
        ids = np.where((ids >= 0) & gone[np.maximum(ids, 0)], -1, ids)
        ids[~ctx.alive[self.world.slot_lo:self.world.slot_hi]] = -1
        return ids

    def lost(self, ctx: RoundContext, what: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """bool: which messages a -> b of kind `what` the channel loses this round."""
        return ~self.channel.delivered(what, a, b, ctx.rnd)

    def count(self, nodes: np.ndarray, sent: bool, n_items=0) -> None:
        """One simulated message per entry of `nodes` (global ids of local nodes), carrying
        `n_items` items (scalar or per entry): HEADER_BYTES + ITEM_BYTES per item."""
        local = np.asarray(nodes, dtype=np.int64) - self.world.slot_lo
        size = HEADER_BYTES + self.ITEM_BYTES * np.broadcast_to(np.asarray(n_items, dtype=np.int64), local.shape)
        (self.traffic.send if sent else self.traffic.recv)(local, size)

    def state_dict(self) -> dict:
        """Copies of the arrays named in STATE (what a resume needs)."""
        return {name: getattr(self, name).copy() for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for name, dtype in self.STATE.items():
            setattr(self, name, np.array(state[name], dtype=dtype))
