"""Protocols that break the one rule, for the fail-fast tests: the rank that owns node 0 runs another
communicating step than the others ("extra"), or skips the last one ("early"). Selected in a config
as protocol.kind = "out_of_step:EXTRA" (this folder on PYTHONPATH)."""

from __future__ import annotations

import numpy as np

from heal_mpi.protocols.base import Protocol
from heal_mpi.registry import ProtocolSpec
from heal_mpi.steps import Mix, Train


class OutOfStep(Protocol):
    skip_last = False

    def round(self, ctx, overlay):
        alive = ctx.alive[self.local]
        yield Train(alive)
        own = np.flatnonzero(alive)
        yield Mix("first", own, self.local[own])
        if self.local[0] == 0 and ctx.rnd == 2:  # rank-local data around a yield: the mistake
            if self.skip_last:
                return
            yield Mix("extra", own, self.local[own])
        yield Mix("last", own, self.local[own])


class FinishesEarly(OutOfStep):
    skip_last = True


EXTRA = ProtocolSpec("out-of-step-extra", "out_of_step:OutOfStep", "extra", "test only", "ring")
EARLY = ProtocolSpec("out-of-step-early", "out_of_step:FinishesEarly", "early", "test only", "ring")
