"""Local training of many node rows: batch plans and the backends `loop` and `vmap` (`batched`,
for linear models, is in `heal_mpi.learning.batched`).

A node's round of local work is a *plan*: a [steps, B] matrix of its sample positions,
consecutive batches of consecutive seeded epochs (each a permutation of the node's own
samples), the last batch of an epoch partial and padded with -1. `train.local_steps > 0`
takes that many batches (cycling epochs), else `local_epochs` whole epochs. The backends
run the same plan through the same loss (mean cross-entropy over the real samples of a
batch) and the same `Optimizer.step`, so they give the same rows up to float rounding.

Choosing (`resolve_backend`, the rule for `train.backend = "auto"`): `batched` for models of
Linear and ReLU layers (logreg, mlp), else `vmap` on CUDA and `loop` on CPU. For the linear
models `batched` won everywhere measured, one thread, Adam, samples/s:

    logreg 10,000 nodes x 10, batch 10:   loop 27.3k  batched 176k   plain b10 36.8k  plain b4096 835k
    mlp    10,000 nodes x 10, batch 10:   loop 14.1k  batched 25.1k  plain b10 18.3k  plain b4096 472k
    logreg 100 nodes x 600, batch 32:     loop 101k   batched 342k
    mlp    100 nodes x 600, batch 32:     loop 53.6k  batched 113k

(the mlp's tiny nodes are bound by the per-node optimizer step over 50,890 numbers, not by
the matmuls). For the convolutional models, measured with `heal-mpi bench backends` (LeNet-5,
batch 32, Adam, one epoch per node, samples/s) on the 2-core development VM (AMD EPYC, torch
2.13 CPU), shared with other jobs, so take the best of several runs:

    50 nodes x 600 samples, 1 thread:   loop 3660   vmap 2601   plain b32 2925   plain b3200 4860
    20 nodes x 320 samples, 1 thread:   loop 4392   vmap 3713   plain b32 4334   plain b3200 3759
    20 nodes x 320 samples, 2 threads:  loop 4955   vmap 5327   plain b32 5123   plain b3200 6209

The loop runs at plain-PyTorch speed (its flat optimizer is cheaper than torch.optim's),
wins with one thread per rank (the usual MPI setting) and ties with two. Its small kernels
suffer most from oversubscribed threads (2 threads on a core another job was using: loop
340, vmap 1387), so give each rank no more torch threads than its cores. On a GPU the vmap
backend trains all nodes of a step in one launch per layer, where the loop would launch
per node; it was not measured here (no GPU on the development machine).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from heal_mpi.learning.models import ParamLayout
from heal_mpi.learning.optim import Optimizer, State

# Nodes per vmap call: bounds activation memory (about nodes x B x activations per sample).
VMAP_CHUNK = 256


def resolve_backend(choice: str, device: torch.device, linear: bool = False) -> str:
    """`auto` -> batched for a `linear` model (Linear and ReLU layers only), else vmap on CUDA
    and loop elsewhere (see the module docstring for the numbers)."""
    if choice == "auto":
        return "batched" if linear else "vmap" if torch.device(device).type == "cuda" else "loop"
    if choice not in ("loop", "vmap", "batched"):
        raise ValueError(f"train.backend = {choice!r} is not auto, loop, vmap or batched")
    return choice


def node_plan(size: int, batch_size: int, local_epochs: int, local_steps: int,
              rng: np.random.Generator) -> np.ndarray:
    """int64 [steps, B]: positions 0..size-1 of each batch's samples, -1 padded at the end."""
    per_epoch = -(-size // batch_size)
    steps = local_steps if local_steps > 0 else local_epochs * per_epoch
    if steps == 0 or size == 0:
        return np.zeros((0, batch_size), dtype=np.int64)
    epochs = -(-steps // per_epoch)
    if epochs == 1 and size == per_epoch * batch_size:  # no padding: the cross-device common case, fast
        return rng.permutation(size).reshape(per_epoch, batch_size)[:steps]
    plan = np.full((epochs, per_epoch * batch_size), -1, dtype=np.int64)
    for e in range(epochs):
        plan[e, :size] = rng.permutation(size)
    return plan.reshape(epochs * per_epoch, batch_size)[:steps]  # [steps, B]


def node_loss(model: nn.Module, layout: ParamLayout, row: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of one node's row [P] on a batch x [B, ...], y [B], weights w [B].

    w is 1 for real samples and 0 for padding, so a padded batch has the same loss and
    gradient as the real, shorter one.
    """
    logits = functional_call(model, layout.views(row), (x,))      # [B, classes]
    losses = F.cross_entropy(logits, y, reduction="none")          # [B]
    return (losses * w).sum() / w.sum()


class LoopBackend:
    """One reusable module; per node its parameters are pointed at the node's row.

    The parameters' storage *is* `rows[i]` while node i trains (`p.data = view`), so there
    is no copy in or out; autograd gives per-parameter gradients that one `torch.cat`
    flattens into a preallocated [1, P] buffer for `Optimizer.step`. This is plain
    PyTorch training of one model with a flat optimizer. It does not call `node_loss`
    through torch.func row by row (style principle 10's literal reading) because that was
    about 1.5x slower per step (LeNet-5, batch 32, 1 thread: 17-19 ms vs 11-13 ms); the
    math is the same, and a test holds the two backends to the same rows.
    """

    def __init__(self, model: nn.Module, layout: ParamLayout, opt: Optimizer):
        self.model, self.layout, self.opt = model, layout, opt
        self.params = list(model.parameters())
        self.grad = torch.zeros(1, layout.n_params, device=self.params[0].device)  # [1, P]

    def train(self, rows: torch.Tensor, state: State, ids: np.ndarray, plans: list[np.ndarray],
              offsets: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train rows[ids] by their plans; float32 [len(ids)] summed per-sample losses."""
        loss_sums = torch.zeros(len(ids), device=rows.device)
        for k, (i, plan) in enumerate(zip(ids, plans)):
            row = rows[i:i + 1]                                    # [1, P] view
            node_state = {name: t[i:i + 1] for name, t in state.items()}
            self.layout.point_at(self.model, row[0])
            counts = (plan >= 0).sum(axis=1)                       # [steps] real samples
            pos = torch.from_numpy(plan + offsets[i]).to(rows.device)  # [steps, B]
            total = torch.zeros((), device=rows.device)
            for t, c in enumerate(counts.tolist()):
                idx = pos[t, :c]                                   # [c]
                loss = F.cross_entropy(self.model(x[idx]), y[idx])
                grads = torch.autograd.grad(loss, self.params)
                torch.cat([g.reshape(-1) for g in grads], out=self.grad[0])  # [P]
                self.opt.step(row, self.grad, node_state)
                total += loss.detach() * c
            loss_sums[k] = total
        return loss_sums


class VmapBackend:
    """All active nodes in one call: vmap(grad(node_loss)) over stacked rows and batches.

    Per step, the nodes whose plan has a batch at that step form the active set; only
    their rows and optimizer state are gathered, updated and scattered back, so idle
    nodes (finished their smaller epoch, or not training this round) stay bit-identical.
    """

    def __init__(self, model: nn.Module, layout: ParamLayout, opt: Optimizer):
        self.opt = opt

        def loss(row, x, y, w):
            return node_loss(model, layout, row, x, y, w)

        self.grad_fn = vmap(grad_and_value(loss))  # (rows [n,P], x [n,B,..], y [n,B], w [n,B])

    def chunk(self, batch: int, device: torch.device | str = "cpu") -> int:
        """Nodes per call at this batch size on this device."""
        return VMAP_CHUNK

    def train(self, rows: torch.Tensor, state: State, ids: np.ndarray, plans: list[np.ndarray],
              offsets: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train rows[ids] by their plans; float32 [len(ids)] summed per-sample losses."""
        loss_sums = torch.zeros(len(ids), device=rows.device)
        chunk = self.chunk(plans[0].shape[1], rows.device)
        for lo in range(0, len(ids), chunk):
            sl = slice(lo, lo + chunk)
            loss_sums[sl] = self._train_chunk(rows, state, ids[sl], plans[sl], offsets, x, y)
        return loss_sums

    def _train_chunk(self, rows, state, ids, plans, offsets, x, y) -> torch.Tensor:
        n, b, dev = len(ids), plans[0].shape[1], rows.device
        steps = np.array([len(p) for p in plans])
        node = np.repeat(np.arange(n), steps)                      # [sum T] whose batch
        step = np.arange(len(node)) - np.repeat(np.cumsum(steps) - steps, steps)  # [sum T] its step
        flat = np.concatenate(plans)                               # [sum T, B]
        stacked = np.full((steps.max(), n, b), -1, dtype=np.int64)  # [T, n, B]
        stacked[step, node] = np.where(flat >= 0, flat + offsets[ids][node, None], -1)
        pos_all = torch.from_numpy(stacked).to(dev)                # [T, n, B]
        loss_sums = torch.zeros(n, device=dev)
        for t in range(len(stacked)):
            live = np.flatnonzero(stacked[t, :, 0] >= 0)           # [n_t] nodes with a batch
            live_t = torch.from_numpy(live).to(dev)
            pos = pos_all[t] if len(live) == n else pos_all[t, live_t]  # [n_t, B]
            w = (pos >= 0).to(rows.dtype)                          # [n_t, B] 0 = padding
            pos = pos.clamp_min(0)
            xb = x[pos.reshape(-1)].view(len(live), b, *x.shape[1:])  # [n_t, B, ...]
            loss = self._step(rows, state, ids[live], xb, y[pos], w)  # [n_t]
            loss_sums[live_t] += loss * w.sum(1)
        return loss_sums

    def _step(self, rows, state, local: np.ndarray, xb, yb, w) -> torch.Tensor:
        """One optimizer step of rows[local] (sorted); the others stay untouched."""
        if local[-1] - local[0] + 1 == len(local):                 # contiguous: update views in place
            sl = slice(int(local[0]), int(local[-1]) + 1)
            p, st = rows[sl], {k: v[sl] for k, v in state.items()}
            grads, loss = self.grad_fn(p, xb, yb, w)               # [n_t, P], [n_t]
            self.opt.step(p, grads, st)
            return loss.detach()
        sel = torch.from_numpy(local).to(rows.device)
        p, st = rows[sel], {k: v[sel] for k, v in state.items()}   # gathered copies [n_t, ...]
        grads, loss = self.grad_fn(p, xb, yb, w)
        self.opt.step(p, grads, st)
        rows.index_copy_(0, sel, p)                                # scatter back
        for k, v in state.items():
            v.index_copy_(0, sel, st[k])
        return loss.detach()
