"""Evaluation helpers: which nodes are evaluated, distinct rows, accuracy and loss of a row.

After FedAvg or HEAL many nodes hold bit-identical rows; `distinct_groups` finds them by
hashing the rows' bytes, so each distinct model is evaluated once.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heal_mpi.learning.models import ParamLayout
from heal_mpi.rng import stream

# Test samples per forward pass: 256 keeps LeNet-5's activations in cache (1,024 ran at 0.65x
# of plain inference's best batch, 256 at 0.9x; `heal-mpi bench eval`) and bounds memory.
EVAL_CHUNK = 256
# Test samples per float32 loss sum: fixed, so a loss does not depend on EVAL_CHUNK.
LOSS_CHUNK = 1024
# Rows hashed per host copy.
HASH_CHUNK = 256


def eval_nodes(seed: int, rnd: int, n_nodes: int, fraction: float, slot_lo: int, slot_hi: int) -> np.ndarray:
    """bool [slot_hi - slot_lo]: the local nodes evaluated in round `rnd`.

    round(fraction * n_nodes) nodes (at least one) drawn from a stream keyed by the round
    over all n_nodes, so every rank agrees on the chosen set whatever the rank count.
    """
    if fraction >= 1.0:
        return np.ones(slot_hi - slot_lo, dtype=bool)
    k = max(1, int(round(fraction * n_nodes)))
    chosen = np.zeros(n_nodes, dtype=bool)
    chosen[stream(seed, "eval-nodes", rnd=rnd).permutation(n_nodes)[:k]] = True
    return chosen[slot_lo:slot_hi]


def eval_subset(seed: int, n_test: int, max_samples: int) -> np.ndarray | None:
    """Sorted int64 indices of a fixed seeded subset of the test set, or None for all of it."""
    if max_samples <= 0 or max_samples >= n_test:
        return None
    return np.sort(stream(seed, "eval-subset").permutation(n_test)[:max_samples])


def distinct_groups(rows: torch.Tensor, ids: np.ndarray) -> list[np.ndarray]:
    """Group ids (indices into rows [n, P]) whose rows are bit-identical.

    Returns one int64 array per distinct row, in order of first appearance. Hashing the
    bytes (blake2b, 128 bits) is exact in practice and, unlike a float fingerprint such as
    rows @ r, cannot split identical rows through reduction-order rounding.
    """
    groups: dict[bytes, list[int]] = {}
    for lo in range(0, len(ids), HASH_CHUNK):  # bounded host copies of device rows
        chunk = ids[lo:lo + HASH_CHUNK]
        host = rows[torch.from_numpy(chunk).to(rows.device)].cpu().numpy()  # [k, P]
        for k, i in enumerate(chunk):
            digest = hashlib.blake2b(host[k].tobytes(), digest_size=16).digest()
            groups.setdefault(digest, []).append(int(i))
    return [np.asarray(g, dtype=np.int64) for g in groups.values()]


@torch.no_grad()
def evaluate_row(model: nn.Module, layout: ParamLayout, row: torch.Tensor, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of row [P] on x [m, ...], y [m]; NaN pair when m = 0."""
    if len(y) == 0:
        return float("nan"), float("nan")
    layout.point_at(model, row)
    correct = torch.zeros((), dtype=torch.float64, device=row.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=row.device)
    for lo in range(0, len(y), LOSS_CHUNK):
        yb = y[lo:lo + LOSS_CHUNK]
        logits = torch.cat([model(x[a:a + EVAL_CHUNK])
                            for a in range(lo, lo + len(yb), EVAL_CHUNK)])  # [chunk, classes]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    # One host sync per row, not per chunk.
    return (correct / len(y)).item(), (loss_sum / len(y)).item()
