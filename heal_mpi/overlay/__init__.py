"""Overlays: who each node knows this round (views, hub lists), one cycle per round.

Every overlay is a subclass of `Overlay`; `build_overlay` picks one from the config.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.context import RoundContext


class Overlay:
    """A rank's share of the overlay: the views of its own nodes only.

    Attributes (refreshed by `step`):
        in_degree: int64 [N], global in-degree of every slot among live nodes' views
            (the same on every rank; the hub attack and the metrics read it).
        msgs_sent, msgs_recv: int64 [n_local], simulated overlay messages of this round.
        bytes_sent, bytes_recv: int64 [n_local], their simulated bytes.
    """

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
        """This round's (round scalars, per-node [n_local] arrays, global rows) for the HDF5 file."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


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
