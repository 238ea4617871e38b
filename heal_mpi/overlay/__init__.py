"""Overlays: who each node knows this round (views, hub lists), one cycle per round.

Every overlay is a subclass of `Overlay`; `build_overlay` picks one from the config.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.context import RoundContext
from heal_mpi.overlay.common import HEADER_BYTES, ID_BYTES, hub_metrics


class Overlay:
    """A rank's share of the overlay: the views of its own nodes only.

    Subclasses set `world`, `alive` (bool [N]), `in_degree`, `hub_width`, STATE (the array
    attributes a checkpoint saves) and ITEM_BYTES (simulated bytes per id or entry carried).

    Attributes (refreshed by `step`):
        in_degree: int64 [N], global in-degree of every slot among live nodes' views
            (the same on every rank; the hub attack and the metrics read it).
        msgs_sent, msgs_recv: int64 [n_local], simulated overlay messages of this round.
        bytes_sent, bytes_recv: int64 [n_local], their simulated bytes.
    """

    STATE: tuple = ()
    ITEM_BYTES = ID_BYTES

    def step(self, ctx: RoundContext) -> None:
        """One cycle for the local live nodes. Collective over `world.comm`: every rank must call."""
        raise NotImplementedError

    def neighbours(self) -> np.ndarray:
        """int64 [n_local, k]: each local node's view (out-links), -1 padded."""
        raise NotImplementedError

    def hub_lists(self) -> np.ndarray:
        """int64 [n_local, h]: each local node's hub list, -1 padded."""
        raise NotImplementedError

    def random_peers(self) -> np.ndarray:
        """int64 [n_local, k]: the non-hub part of each view, -1 padded."""
        raise NotImplementedError

    def is_hub(self) -> np.ndarray:
        """bool [n_local]: the node is in its own hub list."""
        raise NotImplementedError

    def metrics(self) -> tuple[dict, dict, dict]:
        """This round's (round scalars, per-node [n_local] arrays, global rows) for the HDF5 file.

        Round scalars: `hubs` (live nodes with in-degree >= 99% of the live count) and
        `max_in_degree`. Per node: `in_degree`, `is_hub`. Rows: `hub_ids` int64
        [hub_width], the hubs by in-degree, -1 padded.
        """
        hubs, top, ids = hub_metrics(self.in_degree, self.alive, self.hub_width)
        local = slice(self.world.slot_lo, self.world.slot_hi)
        return ({"hubs": hubs, "max_in_degree": top},
                {"in_degree": self.in_degree[local].copy(), "is_hub": self.is_hub()},
                {"hub_ids": ids})

    def state_dict(self) -> dict:
        """Copies of the attributes named in STATE (what a resume needs)."""
        return {name: getattr(self, name).copy() for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for name in self.STATE:
            setattr(self, name, np.array(state[name], dtype=bool if name == "alive" else np.int64))

    def _zero_counters(self) -> None:
        n = self.world.n_local
        self.msgs_sent, self.msgs_recv = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.bytes_sent, self.bytes_recv = np.zeros(n, np.int64), np.zeros(n, np.int64)

    def _count(self, nodes: np.ndarray, sent: bool, n_items=0) -> None:
        """One simulated message per entry of `nodes` (global ids of local nodes), carrying
        `n_items` items (scalar or per entry): HEADER_BYTES + ITEM_BYTES per item."""
        local = np.asarray(nodes, dtype=np.int64) - self.world.slot_lo
        size = HEADER_BYTES + self.ITEM_BYTES * np.broadcast_to(np.asarray(n_items, dtype=np.int64), local.shape)
        msgs, nbytes = (self.msgs_sent, self.bytes_sent) if sent else (self.msgs_recv, self.bytes_recv)
        msgs += np.bincount(local, minlength=len(msgs))
        nbytes += np.bincount(local, weights=size, minlength=len(msgs)).astype(np.int64)


def build_overlay(cfg, world) -> Overlay:
    """The overlay `cfg.overlay_kind` on this rank's nodes. Collective over `world.comm`: every rank must call."""
    ov, kind, seed = cfg.overlay, cfg.overlay_kind, cfg.run.seed
    if kind == "elevator":
        from heal_mpi.overlay.elevator import Elevator
        return Elevator(world, ov.cache_size, ov.hubs, seed, preferred=ov.preferred, max_backward=ov.max_backward)
    if kind == "newscast":
        from heal_mpi.overlay.newscast import Newscast
        return Newscast(world, ov.cache_size, seed, hub_width=ov.hubs)
    from heal_mpi.overlay.static import StaticOverlay
    return StaticOverlay(world, kind, servers=ov.servers, degree=ov.degree, seed=seed)
