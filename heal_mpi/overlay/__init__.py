"""Overlays: who each node knows this round (views, hub lists), one cycle per round.

Every overlay subclasses `base.Overlay`; `build_overlay` picks one from the config. This
package imports nothing heavy itself, so its pure kernels (`common`, `elevator_ops`) load
without MPI or torch.
"""

from __future__ import annotations


def build_overlay(cfg, world, channel):
    """The overlay `cfg.overlay_kind` on this rank's nodes. Collective over `world.comm`: every rank must call."""
    ov, kind, seed = cfg.overlay, cfg.overlay_kind, cfg.run.seed
    if kind == "elevator":
        from heal_mpi.overlay.elevator import Elevator
        return Elevator(world, channel, ov.cache_size, ov.hubs, seed, preferred=ov.preferred,
                        max_backward=ov.max_backward)
    if kind == "newscast":
        from heal_mpi.overlay.newscast import Newscast
        return Newscast(world, channel, ov.cache_size, seed, hub_width=ov.hubs)
    from heal_mpi.overlay.static import StaticOverlay
    return StaticOverlay(world, channel, kind, servers=ov.servers, degree=ov.degree, seed=seed)
