"""Optimizers on stacked per-node tensors: an (init, step) pair per optimizer.

`init(n, P, device)` returns the state of n nodes (tensors [n, P] plus a step counter [n]);
`step(params, grads, state)` applies one update to n rows. Both training backends call the
same `step`, which is why they agree. `step` updates `params` and `state` in place and
uses `grads` as scratch: allocating a fresh [n, P] per step for a pure version would cost
more than the update itself for small models. Otherwise it is stateless: everything it
reads is in its arguments. A caller that must leave some rows untouched (idle or dead
nodes) passes only the active rows (a gather) and scatters them back.

Semantics follow `torch.optim.SGD` (dampening 0, no Nesterov) and `torch.optim.Adam`
(L2 weight decay added to the gradient, bias correction by each node's own step count).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Optimizer:
    """Hyper-parameters of one optimizer; `init` and `step` act on stacked rows.

    Attributes:
        kind: "sgd" or "adam".
        lr: learning rate.
        momentum: SGD momentum (0 disables the buffer).
        weight_decay: L2 coefficient added to the gradient (both kinds).
        betas, eps: Adam's.
    """

    kind: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    @classmethod
    def from_config(cls, train_cfg) -> "Optimizer":
        if train_cfg.optimizer not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer = {train_cfg.optimizer!r} is not sgd or adam")
        return cls(train_cfg.optimizer, float(train_cfg.lr), float(train_cfg.momentum),
                   float(train_cfg.weight_decay))

    def init(self, n: int, p: int, device: torch.device | str = "cpu") -> State:
        """Fresh state of n nodes: 'step' int64 [n] and, by kind, [n, P] float32 buffers."""
        state = {"step": torch.zeros(n, dtype=torch.int64, device=device)}
        names = ("exp_avg", "exp_avg_sq") if self.kind == "adam" else (
            ("momentum_buffer",) if self.momentum else ())
        for name in names:
            state[name] = torch.zeros(n, p, dtype=torch.float32, device=device)
        return state

    @torch.no_grad()
    def step(self, params: torch.Tensor, grads: torch.Tensor, state: State) -> None:
        """One update of every row of params [n, P] with grads [n, P] (consumed as scratch)."""
        if self.weight_decay:
            grads.add_(params, alpha=self.weight_decay)          # [n, P] g + wd * x
        state["step"].add_(1)
        if self.kind == "sgd":
            if self.momentum:
                buf = state["momentum_buffer"]
                buf.mul_(self.momentum).add_(grads)              # [n, P]; zero init == torch's clone on step 1
                grads = buf
            params.add_(grads, alpha=-self.lr)
            return
        b1, b2 = self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grads, 1.0 - b1)                                 # [n, P] b1 m + (1 - b1) g
        v.mul_(b2).addcmul_(grads, grads, value=1.0 - b2)        # [n, P] b2 v + (1 - b2) g^2
        t = state["step"].to(torch.float64)                      # [n] per-node step count
        bc1 = 1.0 - torch.pow(b1, t)                             # [n]
        bc2_sqrt = torch.sqrt(1.0 - torch.pow(b2, t))            # [n]
        step_size = (self.lr / bc1).to(params.dtype).unsqueeze(1)  # [n, 1]
        denom = torch.sqrt(v, out=grads)                         # [n, P] reuse the scratch
        denom.div_(bc2_sqrt.to(params.dtype).unsqueeze(1)).add_(self.eps).div_(step_size)
        params.addcdiv_(m, denom, value=-1.0)                    # [n, P] x - lr/bc1 * m / denom
