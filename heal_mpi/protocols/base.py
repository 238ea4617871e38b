"""What every learning protocol shares: its handles, message loss, traffic accounting, peer picks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from heal_mpi.context import RoundContext
from heal_mpi.rng import uniform

ID_BYTES = 8  # a simulated message carrying no model still costs its header (one id)


@dataclass
class RoundTraffic:
    """Simulated messages of one round, per local node (one message per edge).

    Attributes:
        msgs_sent, msgs_recv: int64 [n_local].
        bytes_sent, bytes_recv: int64 [n_local]; a model message costs `model_bytes`.
        train_loss: float64 [n_local], NaN for nodes that did not train.
        hubs_active: nodes that aggregated this round (on this rank).
        train_seconds, train_samples: this rank's local training time and sample-gradients.
    """

    model_bytes: int
    msgs_sent: np.ndarray
    msgs_recv: np.ndarray
    bytes_sent: np.ndarray
    bytes_recv: np.ndarray
    train_loss: np.ndarray
    hubs_active: int = 0
    train_seconds: float = 0.0
    train_samples: int = 0

    @classmethod
    def zeros(cls, n_local: int, model_bytes: int) -> "RoundTraffic":
        z = lambda: np.zeros(n_local, dtype=np.int64)  # noqa: E731
        return cls(model_bytes, z(), z(), z(), z(), np.full(n_local, np.nan))

    def _add(self, msgs, nbytes, idx, counts, model):
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), np.shape(idx))
        np.add.at(msgs, idx, counts)
        np.add.at(nbytes, idx, counts * (self.model_bytes if model else ID_BYTES))

    def send(self, idx: np.ndarray, counts=1, model: bool = True) -> None:
        """Local nodes `idx` sent `counts` messages each."""
        self._add(self.msgs_sent, self.bytes_sent, idx, counts, model)

    def recv(self, idx: np.ndarray, counts=1, model: bool = True) -> None:
        """Local nodes `idx` received `counts` messages each."""
        self._add(self.msgs_recv, self.bytes_recv, idx, counts, model)


@dataclass
class Protocol:
    """Base of all protocols: they say *what* moves (edges), `comm.mix` says *how*.

    Attributes:
        cfg: the run's Config; world: the World; comm: a Comm; pop: the rank's Population.
    """

    cfg: object
    world: object
    comm: object
    pop: object
    model_bytes: int = field(init=False)

    def __post_init__(self):
        self.model_bytes = int(self.pop.n_params) * 4  # float32 parameters

    def round(self, ctx: RoundContext, overlay) -> RoundTraffic:
        """One learning round. Collective over `world.comm`: every rank must call."""
        raise NotImplementedError

    def on_device(self, index: np.ndarray) -> torch.Tensor:
        """A NumPy index (mask or positions) as a tensor on the rows' device, for indexing rows."""
        return torch.as_tensor(index, device=self.pop.rows.device)

    def on_join(self, local_idx: np.ndarray) -> None:
        """Churn newcomers took these local slots (their models are already fresh)."""

    def state_dict(self) -> dict:
        """Protocol state beyond the models, for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def delivered(self, ctx: RoundContext, src: np.ndarray, dst: np.ndarray, purpose: str) -> np.ndarray:
        """bool mask: which simulated messages src -> dst survive `faults.message_loss`."""
        if ctx.message_loss == 0.0:
            return np.ones(len(dst), dtype=bool)
        return uniform(ctx.seed, f"loss-{purpose}", src, dst, ctx.rnd) >= ctx.message_loss


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
