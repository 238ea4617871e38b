"""The `batched` backend: a rank's nodes of a small linear model train as one computation.

When models are tiny (logistic regression: 7,850 numbers; the MLP: 50,890) and nodes hold a few
samples each, one Python step per node costs more than the step's arithmetic: 100,000
logistic-regression nodes of 10 samples ran at 16k sample-gradients a second, where plain
PyTorch does 62k at batch 10 and 3.6 million at batch 1,024. Here a step of n nodes is a chain of
batched matmuls over the node dimension (`torch.baddbmm`, [n, B, in] x [n, in, out]), and the
backward pass, written out, puts each node's gradient in its row of one [n, P] tensor.

It runs the models that are a `nn.Sequential` of Flatten, Linear and ReLU (logreg, mlp); the
convolutional models train with `loop` (CPU) or `vmap` (GPU). The plans, the active sets, the
gathers and the optimizer are the vmap backend's, so the three agree up to float rounding.
Measured with `heal-mpi bench backends` (see the module docstring of `backends`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from heal_mpi.learning.backends import VmapBackend
from heal_mpi.learning.models import ParamLayout
from heal_mpi.learning.optim import Optimizer

# Float32 numbers of activations a chunk of nodes may hold (64 MiB): nodes x B x (input + widths).
CHUNK_NUMBERS = 16 * 2**20
# and of gradients (nodes x P), the larger part of an MLP's chunk. On a CPU 4 MiB, so that the
# gradients stay in the cache through the optimizer's pass over them: 10,000 MLP nodes on 2 ranks
# trained in 0.66-0.77 s a round at 32 MiB (164 nodes a chunk), 0.52-0.56 s at 4 MiB (20 nodes),
# with Adam 1.07-1.12 s and 0.94-1.06 s, and without the chunk's 50 MiB above the held memory
# (651 nodes had 132 MB of gradients: once the peak of a 10,000-node Gossip round). On a GPU
# 32 MiB: fewer, larger calls.
GRAD_NUMBERS = 1 * 2**20
GPU_GRAD_NUMBERS = 8 * 2**20


def linear_layers(model: nn.Module) -> list[tuple[str, bool]] | None:
    """[(Linear's name, followed by ReLU)] when the model is Flatten / Linear (with bias) / ReLU
    only, else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[tuple[str, bool]] = []
    for name, mod in model.named_children():
        if isinstance(mod, nn.Linear) and mod.bias is not None:
            layers.append((name, False))
        elif isinstance(mod, nn.ReLU) and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        elif not isinstance(mod, nn.Flatten):
            return None
    return layers or None


class BatchedBackend(VmapBackend):
    """VmapBackend's steps, with the gradient of n nodes' linear models from batched matmuls."""

    def __init__(self, model: nn.Module, layout: ParamLayout, opt: Optimizer):
        self.opt, self.layout = opt, layout
        self.layers = linear_layers(model)
        if self.layers is None:
            raise ValueError("train.backend = 'batched' runs models made of Linear and ReLU layers "
                             "(logreg, mlp); use loop or vmap for convolutional models")
        shapes = [layout.shapes[layout.names.index(name + ".weight")] for name, _ in self.layers]
        # A sample's activations and their gradients, forward and back, about.
        self.per_sample = 3 * (shapes[0][1] + sum(out for out, _ in shapes))
        self.grad_fn = self._grads

    def chunk(self, batch: int, device: torch.device | str = "cpu") -> int:
        grads = GRAD_NUMBERS if torch.device(device).type == "cpu" else GPU_GRAD_NUMBERS
        return max(1, min(CHUNK_NUMBERS // (batch * self.per_sample), grads // self.layout.n_params))

    def _grads(self, rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
        """([n, P] gradients, [n] losses) of n nodes' rows on their batches x [n, B, ...], y, w [n, B].

        The backward pass is written out (three lines a layer), each gradient written straight
        into its slice of [n, P]: autograd gave the weight gradients transposed and scattered
        each into its own zeroed [n, P], copies that took half of an MLP step.
        """
        n, b = y.shape
        params = self.layout.views(rows)
        grads = torch.empty_like(rows)                                    # [n, P]
        gviews = self.layout.views(grads)
        inputs, h = [], x.reshape(n, b, -1)                               # [n, B, in]
        for name, relu in self.layers:
            inputs.append(h)
            h = torch.baddbmm(params[name + ".bias"].unsqueeze(1), h,
                              params[name + ".weight"].transpose(1, 2))   # [n, B, out]
            if relu:
                h = h.clamp_min_(0)
        logp = F.log_softmax(h, dim=2)                                    # [n, B, C]
        scale = w / w.sum(1, keepdim=True)                                # [n, B] 1/real samples, 0 = padding
        loss = -(logp.gather(2, y.unsqueeze(2)).squeeze(2) * scale).sum(1)  # [n] each node's mean
        d = logp.exp_()                                                   # dloss/dlogits = softmax - onehot
        d.scatter_add_(2, y.unsqueeze(2), torch.full_like(d[..., :1], -1.0)).mul_(scale.unsqueeze(2))
        for k in range(len(self.layers) - 1, -1, -1):
            name, h_in = self.layers[k][0], inputs[k]
            torch.bmm(d.transpose(1, 2), h_in, out=gviews[name + ".weight"])  # [n, out, in]
            torch.sum(d, dim=1, out=gviews[name + ".bias"])              # [n, out]
            if k:
                d = torch.bmm(d, params[name + ".weight"])                # [n, B, in]
                d.mul_(h_in > 0)                                          # the ReLU that made h_in
        return grads, loss
