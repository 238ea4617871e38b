"""Asynchronous rounds (`time.slice`): every node acts on its own timer.

A round is a fixed slice of T simulated seconds, [t0, t0 + T]. A node's timer fires every
period: its training (the samples of one local training over its compute) plus sending and
receiving one model (its size over the node's uplink and over its downlink, and twice its
latency), times U(1 - jitter, 1 + jitter) drawn per node and round. A node acts in a round
when its timer fires in the slice; it acts at most once a round, so choose T no longer than the fastest node's period for nodes to act in
proportion to their speed (a node faster than T acts every round). Every node's timer starts
at 0: with equal devices and T = one period, every node acts at the start of every round, as
in synchronous rounds.

The timers are global arrays, drawn and advanced identically on every rank.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.rng import uniform


class Timers:
    """Each node's next firing time (absolute simulated seconds) and period.

    Args:
        period: float64 [N], seconds between two firings before jitter.
        slice_seconds: T.
        jitter: the spread of the factor on each period.
        seed: keys the jitter draws.
    """

    def __init__(self, period: np.ndarray, slice_seconds: float, jitter: float, seed: int):
        self.period, self.slice, self.jitter, self.seed = period, slice_seconds, jitter, seed
        self.next_fire = np.zeros(len(period))

    def fire(self, t0: float, alive: np.ndarray, rnd: int) -> tuple[np.ndarray, np.ndarray]:
        """The round starting at t0: (acting bool [N], offset float64 [N]: when in the slice each
        acting node's timer fired, 0 for the others). Advances the timers of the acting nodes; a
        node that was dead or behind starts its next period now, never owing rounds."""
        acting = alive & (self.next_fire < t0 + self.slice)
        start = np.maximum(self.next_fire, t0)
        offset = np.where(acting, start - t0, 0.0)
        factor = np.ones(len(acting))
        if self.jitter > 0:
            ids = np.flatnonzero(acting)
            factor[ids] = 1.0 + self.jitter * (2.0 * uniform(self.seed, "time-jitter", ids, rnd) - 1.0)
        self.next_fire = np.where(acting, start + self.period * factor, self.next_fire)
        return acting, offset

    def state_dict(self) -> dict:
        return {"next_fire": self.next_fire.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.next_fire = np.asarray(state["next_fire"], dtype=np.float64).copy()


def samples_per_training(sizes: np.ndarray, batch_size: int, local_epochs: int, local_steps: int) -> np.ndarray:
    """float64: the sample-gradients of one local training of nodes with these sample counts
    (what heal_mpi.learning.backends.node_plan's batches hold)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if local_steps <= 0:
        return (local_epochs * sizes).astype(np.float64)
    per_epoch = np.maximum(-(-sizes // batch_size), 1)
    full, rest = np.divmod(local_steps, per_epoch)
    return np.where(sizes > 0, full * sizes + np.minimum(rest * batch_size, sizes), 0).astype(np.float64)
