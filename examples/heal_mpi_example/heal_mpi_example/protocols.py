"""Personalised FedAvg: FedAvg whose clients keep a share of their own model (spec: kinds.PFEDAVG)."""

from __future__ import annotations

import numpy as np

from heal_mpi.protocols.base import Protocol, edges_of
from heal_mpi.steps import Assign, Mix, Reply, Train


class PersonalFedAvg(Protocol):
    """One round: clients train and send to the server (their one hub), the server averages and
    answers, and each client takes (1 - alpha) * average + alpha * its own model."""

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        server = overlay.is_hub()
        clients = alive & ~server
        yield Train(clients)
        up = yield Mix("up", *edges_of(np.where(clients[:, None], overlay.hub_lists(), -1)))
        ready = server & (up.counts > 0)
        yield Assign(up, np.flatnonzero(ready))  # the server keeps the plain average
        back = yield Reply("down", to=up, rows=up, answering=ready)
        got = np.flatnonzero(back.counts > 0)
        a = self.opts.alpha  # own weight w with (avg + w * own) / (1 + w) = (1 - a) avg + a own
        yield Assign(back, got, own_weight=np.full(len(got), a / (1.0 - a)))
