"""Poisoned models: what a Byzantine node sends instead of its model (issue 11 item 3; byzantine.md §5).

A Byzantine node trains honestly and lies only in the rows it sends, as a client and, once a
hub, in the aggregate it returns (the gossipy `MaliciousNode` pattern, §5.2). The engine
applies `poison_rows` to the rows that leave a Byzantine sender.

Kinds and decisions:
- `noise`: a Gaussian model, every coordinate N(0, scale^2), independent of the honest row.
  Each row comes from its own torch CPU generator seeded by
  `rng.hash_keys(seed, purpose, sender, rnd)` (as `learning.population.torch_generator`),
  drawn in the rows' dtype and then moved to their device: the same values on every rank
  and device, whatever rows the sender is batched with. `purpose` lets the caller give a
  client's and a hub's sends different noise in one round.
- `zero`: all zeros (the gossipy zero-model attack, §5.2).
- `sign_flip`: previous - scale * (rows - previous): the honest update reversed and scaled by
  λ = scale (gradient-ascent style, §5.3 `BackGradientAttack`); needs `previous`, the
  sender's model before its last training.
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.rng import hash_keys

POISON_KINDS = ("noise", "zero", "sign_flip")


def poison_rows(kind: str, rows: torch.Tensor, previous: torch.Tensor | None, senders, seed: int, rnd: int,
                scale: float = 1.0, purpose: str = "poison-noise") -> torch.Tensor:
    """The poisoned rows Byzantine `senders` send instead of `rows`.

    Args:
        kind: one of POISON_KINDS.
        rows: float [m, P], the honest rows (after training, or a hub's honest aggregate).
        previous: float [m, P], each sender's model before its last training (sign_flip only).
        senders: int64 [m], the global ids of the senders (key the noise).
        scale: the noise's standard deviation, or sign_flip's λ.
        purpose: keys the noise stream.
    Returns:
        A new tensor [m, P], dtype and device of `rows`; the inputs are not modified.
    """
    if kind not in POISON_KINDS:
        raise ValueError(f"unknown poison kind {kind!r}; expected one of {POISON_KINDS}")
    if kind == "zero":
        return torch.zeros_like(rows)
    if kind == "sign_flip":
        if previous is None or previous.shape != rows.shape:
            raise ValueError("sign_flip needs `previous` with the shape of `rows`")
        return previous - scale * (rows - previous)  # [m, P]
    senders = np.asarray(senders, dtype=np.int64).reshape(-1)
    m, p = rows.shape
    if len(senders) != m:
        raise ValueError(f"{len(senders)} senders for {m} rows")
    keys = hash_keys(seed, purpose, senders, rnd) if m else np.zeros(0, np.uint64)  # [m]
    out = torch.empty((m, p), dtype=rows.dtype)  # CPU: the draws must not depend on the device
    g = torch.Generator()
    for i, key in enumerate(keys):  # one stream per sender: rows stay independent of batching
        g.manual_seed(int(key) >> 1)
        out[i] = torch.randn(p, generator=g, dtype=rows.dtype)
    return (out * scale).to(rows.device)
