"""What every learning protocol shares: the contract and the peer picks.

A protocol says *what* moves, as steps over NumPy edge arrays (heal_mpi/steps.py); the
engine does the rest (training, loss, traffic, MPI). Its `round` is a generator:

    def round(self, ctx, overlay):
        loss = yield Train(mask)
        got = yield Mix("purpose", src_rows, dst_ids)
        yield Assign(got, nodes, own_weight)
        return {"some_count": 3}          # optional: per-round sums for /rounds

It must yield the same *communicating* steps (Mix, Reply, Exchange) on every rank, in the same
order: never branch on rank-local data around one. Train, Assign and Snapshot stay on the
rank, so a rank may run them as often as its own nodes need. A rank that yields another
communicating step, or finishes early, ends the job with a message naming both ranks.

A protocol is registered by its spec (heal_mpi.registry.ProtocolSpec), which may live in the
protocol's own module: protocols import NumPy and heal_mpi's light modules only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import numpy as np

from heal_mpi.context import RoundContext
from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.rng import uniform
from heal_mpi.steps import RULES, Rule


@dataclass(frozen=True)
class Aggregation:
    """The options of every protocol whose receivers can combine models by a robust rule."""

    aggregation: str = opt("mean", "how a receiver (a hub, a Gossip or EL node) combines the models it receives; "
                           "robust rules ship every row to the receiver's rank", choices=RULES)
    trim_beta: float = opt(0.1, "trimmed_mean: the fraction dropped at each end (< 0.5)", lo=0.0, hi=0.5)
    clip_tau: float = opt(1.0, "centered_clip: the clipping radius (L2 norm of a row's distance)", lo=0.0,
                          lo_open=True)


def check_aggregation(cfg) -> None:
    beta = cfg.protocol.options.trim_beta
    if beta >= 0.5:
        raise ConfigError(f"protocol.{cfg.protocol.name}.trim_beta: {beta} must be < 0.5 (nothing would be left)")


class Protocol:
    """Base of all protocols.

    Args:
        cfg: the run's Config.
        local: int64 [n_local], the global ids of this rank's nodes (row i is node local[i]).
    """

    def __init__(self, cfg, local: np.ndarray):
        self.cfg, self.local = cfg, local
        self.opts = cfg.protocol.options  # this protocol's [protocol.<name>] options (None: it has none)
        o = self.opts
        self.rule = Rule(o.aggregation, o.trim_beta, o.clip_tau) if isinstance(o, Aggregation) else Rule()

    def round(self, ctx: RoundContext, overlay) -> Generator:
        """One learning round, as a generator of steps."""
        raise NotImplementedError

    def on_join(self, local_idx: np.ndarray) -> None:
        """Churn newcomers took these local rows (their models are already fresh)."""

    def state_dict(self) -> dict:
        """Protocol state beyond the models, for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def live_only(view: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """The view [n, k] with dead peers replaced by -1."""
    return np.where((view >= 0) & alive[np.maximum(view, 0)], view, -1)


def edges_of(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(src local rows [E], dst ids [E]) of every valid (>= 0) entry of targets [n_local, k], row by row."""
    src, col = np.nonzero(targets >= 0)
    return src, targets[src, col]


def pick_from_lists(lists: np.ndarray, mask: np.ndarray, s: int, ctx: RoundContext, purpose: str,
                    local: np.ndarray) -> np.ndarray:
    """For each local node where `mask`, s distinct entries of its list, uniformly at random.

    Args:
        lists: int64 [n_local, k], -1 padded (hub lists, views).
        mask: bool [n_local], the nodes that pick.
        local: int64 [n_local], their global ids (the random key).
    Returns:
        int64 [n_local, s], -1 where a node picks nothing or its list is shorter than s.
    """
    n, k = lists.shape
    if k == 0:
        return np.full((n, s), -1, dtype=np.int64)
    keys = uniform(ctx.seed, purpose, local[:, None], ctx.incarnation[local][:, None], ctx.rnd,
                   np.arange(k)[None, :])  # [n_local, k]
    keys[lists < 0] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :s]  # [n_local, s]
    picked = np.take_along_axis(lists, order, axis=1)
    picked[~mask] = -1
    return picked
