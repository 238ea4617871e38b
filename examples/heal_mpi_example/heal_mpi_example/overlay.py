"""A toy overlay (spec: kinds.RESHUFFLE): every cycle, each live node draws c fresh random live peers
and sends each a "toy-hello" message (its id) through heal_mpi's channel, where it may be lost or,
if an attack declared that it alters "toy-hello", altered."""

from __future__ import annotations

import numpy as np

from heal_mpi.overlay.base import Overlay
from heal_mpi.overlay.common import sample_from_pool


class Reshuffle(Overlay):
    STATE = {"view": np.int64, "in_degree": np.int64, "alive": bool}

    def __init__(self, world, channel, cache_size: int, seed: int, hub_width: int, comm=None):
        super().__init__(world, channel, hub_width, comm)
        self.c, self.seed = cache_size, seed
        self.view = np.full((world.n_local, cache_size), -1, dtype=np.int64)
        self.in_degree = np.zeros(world.n_nodes, dtype=np.int64)

    @classmethod
    def from_config(cls, cfg, world, channel, comm=None):
        return cls(world, channel, cfg.overlay.cache_size, cfg.run.seed, cfg.overlay.hubs, comm)

    def step(self, ctx) -> None:
        self.new_cycle(ctx)
        local = self.world.local_slots
        live = ctx.alive[local]
        self.view = sample_from_pool(ctx.seed, "toy-view", (ctx.rnd, local), np.flatnonzero(ctx.alive), self.c, local)
        self.view[~live] = -1
        rows, col = np.nonzero(self.view >= 0)
        sender, target = local[rows], self.view[rows, col]
        hello = sender[:, None].copy()  # the payload: the sender's id
        if self.channel.alterations:
            lies = self.channel.forging("toy-hello", sender)
            hello[lies] = self.channel.alter("toy-hello", sender[lies], hello[lies], ctx.rnd, receivers=target[lies])
        arrived = ~self.lost(ctx, "toy-hello", sender, target)
        self.count(sender, sent=True, n_items=1)
        self.view[rows[~arrived], col[~arrived]] = -1  # a peer that never heard of us is no link
        self.in_degree, _ = self.count_in_degree(self.view[live])

    def neighbours(self):
        return self.view

    def hub_lists(self):
        return np.zeros((self.world.n_local, 0), dtype=np.int64)

    def random_peers(self):
        return self.view

    def snapshot(self):
        return self.view.copy()
