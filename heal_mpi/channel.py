"""The message channel: the one place where a simulated message is lost or altered.

Every simulated message, overlay request or model row, asks `delivered` whether it
arrives, with one convention: a draw keyed by (seed, "loss-<purpose>", round, src, dst),
so the outcome never depends on the rank count, and a node's message to itself never
travels, so it is never lost.

Attacks alter what a given sender sends through `alterations`: functions
`(purpose, senders, payload, rnd) -> payload` that the overlays (cache replies) and the
learning engine (model rows) apply to what leaves a sender. None are installed unless a
fault installs one, and then the honest path pays nothing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from heal_mpi.rng import uniform

Alteration = Callable[[str, np.ndarray, object, int], object]


class Channel:
    """Loss and alteration of simulated messages.

    Args:
        seed: the run's seed (keys every loss draw).
        message_loss: probability that one simulated message between two distinct nodes is lost.
    """

    def __init__(self, seed: int, message_loss: float = 0.0):
        self.seed, self.message_loss = seed, message_loss
        self.alterations: list[Alteration] = []

    def delivered(self, purpose: str, src: np.ndarray, dst: np.ndarray, rnd: int) -> np.ndarray:
        """bool [E]: which messages src -> dst of this purpose arrive this round."""
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        if self.message_loss <= 0.0:
            return np.ones(len(dst), dtype=bool)
        return (uniform(self.seed, f"loss-{purpose}", rnd, src, dst) >= self.message_loss) | (src == dst)

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int):
        """What `senders` (global ids, one per payload row) really send: the payload, as altered by attacks."""
        for alteration in self.alterations:
            payload = alteration(purpose, senders, payload, rnd)
        return payload
