"""The message channel: the one place where a simulated message is lost or altered.

Every simulated message, overlay request or model row, asks `delivered` whether it
arrives, with one convention: a draw keyed by (seed, "loss-<purpose>", round, src, dst),
so the outcome never depends on the rank count, and a node's message to itself never
travels, so it is never lost.

Attacks alter what a given sender sends through `alterations` (see `Alteration`): the
overlays (cache and backward replies) and the learning engine (model rows) ask which of
their senders forge a message of a purpose, and pass those payloads through `alter`.
None are installed unless an adversary is configured, and then the honest path pays
nothing.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from heal_mpi.rng import uniform


class Alteration(Protocol):
    """What an attacker does to the messages its nodes send."""

    def forges(self, purpose: str, senders: np.ndarray) -> np.ndarray:
        """bool [m]: which of these senders (global ids) send something else than the truth."""

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int, receivers: np.ndarray | None = None):
        """The payload (one row per sender) as really sent; rows of honest senders unchanged.
        `receivers` (global ids) is given where the forgery may differ per receiver."""


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

    def forging(self, purpose: str, senders: np.ndarray) -> np.ndarray:
        """bool [m]: which senders' messages of this purpose some alteration rewrites."""
        senders = np.asarray(senders, dtype=np.int64)
        out = np.zeros(len(senders), dtype=bool)
        for alteration in self.alterations:
            out |= alteration.forges(purpose, senders)
        return out

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int, receivers: np.ndarray | None = None):
        """What `senders` (global ids, one per payload row) really send: the payload, as altered by attacks."""
        for alteration in self.alterations:
            payload = alteration.alter(purpose, senders, payload, rnd, receivers)
        return payload
