"""Model architectures and the flat-row layout of their parameters.

A node's model is one float32 row `[P]`; `ParamLayout` maps it to named parameter views
(for `torch.func.functional_call`) and `init_row` draws a fresh row from a keyed
generator with PyTorch's default initialization rules. Models hold no buffers and no
BatchNorm, so a row is the whole model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

MODELS = ("logreg", "mlp", "lenet5", "cnn")


class LeNet5(nn.Module):
    """LeCun et al. 1998 with ReLU and max-pooling, padded for 28x28 input (61,706 params)."""

    def __init__(self, in_ch: int, side: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # [6, side/2, side/2]
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),               # [16, s, s], s = (side/2-4)/2
        )
        s = (side // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * s * s, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_gn(cin: int, cout: int) -> list[nn.Module]:
    # GroupNorm, not BatchNorm: no running statistics, so a row is the whole model and
    # vmap over nodes needs no buffers.
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]


class CifarCNN(nn.Module):
    """Small CIFAR-10 CNN: 3 x (conv3x3 + GroupNorm + ReLU + maxpool), FC 128, FC classes."""

    def __init__(self, in_ch: int, side: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(
            *_conv_gn(in_ch, 32), nn.MaxPool2d(2),   # [32, side/2, side/2]
            *_conv_gn(32, 64), nn.MaxPool2d(2),      # [64, side/4, side/4]
            *_conv_gn(64, 64), nn.MaxPool2d(2),      # [64, side/8, side/8]
            nn.Flatten(), nn.Linear(64 * (side // 8) ** 2, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(model_cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model named by model.name for samples of `input_shape`.

    Raises:
        ValueError: naming model.name when the model does not fit the data (an image model
        on feature vectors, or cnn on images that are not 3-channel).
    """
    name, numel = model_cfg.name, math.prod(input_shape)
    if name == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(numel, num_classes))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(numel, model_cfg.hidden), nn.ReLU(),
                             nn.Linear(model_cfg.hidden, num_classes))
    if name not in ("lenet5", "cnn"):
        raise ValueError(f"model.name = {name!r} is not one of {', '.join(MODELS)}")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"model.name = {name!r} needs square images [C, H, W], but the data "
                         f"samples have shape {tuple(input_shape)} (use logreg or mlp)")
    c, side = input_shape[0], input_shape[1]
    if name == "lenet5":
        if side < 16:
            raise ValueError(f"model.name = 'lenet5' needs images of side >= 16, got {side}")
        return LeNet5(c, side, num_classes)
    if c != 3 or side % 8:
        raise ValueError(f"model.name = 'cnn' is the CIFAR-10 model: it needs 3-channel images "
                         f"with a side divisible by 8, got {tuple(input_shape)}")
    return CifarCNN(c, side, num_classes)


def param_count(model: nn.Module) -> int:
    """Number of scalar parameters (the row length P)."""
    return sum(p.numel() for p in model.parameters())


# The input each model is meant for, for `describe_model` (`heal-mpi info --model NAME`).
TYPICAL_INPUT = {"logreg": ((1, 28, 28), "Fashion-MNIST"), "mlp": ((1, 28, 28), "Fashion-MNIST"),
                 "lenet5": ((1, 28, 28), "Fashion-MNIST"), "cnn": ((3, 32, 32), "CIFAR-10")}


def describe_model(name: str, hidden: int = 64, num_classes: int = 10) -> str:
    """One line: the parameter count of model `name` on its typical dataset, and the row size."""
    if name not in TYPICAL_INPUT:
        raise ValueError(f"model.name = {name!r} is not one of {', '.join(MODELS)}")
    shape, dataset = TYPICAL_INPUT[name]
    model = build_model(SimpleNamespace(name=name, hidden=hidden), shape, num_classes)
    n = param_count(model)
    extra = f", hidden {hidden}" if name == "mlp" else ""
    return (f"model {name:9s} {n:,} parameters ({n * 4 / 2**20:.2f} MiB float32 row) "
            f"on {dataset} {'x'.join(map(str, shape))}, {num_classes} classes{extra}")


@dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter lives in a flat row: row[offsets[k]:offsets[k+1]].

    Attributes:
        names: parameter names in `model.named_parameters()` order.
        shapes: their shapes.
        offsets: int list [len(names) + 1].
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, model: nn.Module) -> "ParamLayout":
        named = list(model.named_parameters())
        sizes = [p.numel() for _, p in named]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named), tuple(offsets))

    @property
    def n_params(self) -> int:
        return self.offsets[-1]

    def views(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views into `rows` [..., P] (shared storage): each [..., *shape]."""
        lead = rows.shape[:-1]
        return {n: rows[..., a:b].view(*lead, *s)
                for n, s, a, b in zip(self.names, self.shapes, self.offsets, self.offsets[1:])}

    def point_at(self, model: nn.Module, row: torch.Tensor) -> None:
        """Make model's parameters views of row [P]: no copy, and a plain module call runs the
        row's model (functional_call re-binds the parameters on every call, about 5 % of a
        LeNet-5 forward pass of 256 images)."""
        for p, v in zip(model.parameters(), self.views(row).values()):
            p.data = v


def init_row(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
    """A fresh float32 row [P] on CPU, drawn from `generator` only (no global RNG).

    Same distributions as PyTorch's defaults: Linear and Conv weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5)), GroupNorm 1 and 0.
    Drawn on CPU so a run's initial models do not depend on the device.
    """
    layout = ParamLayout.of(model)
    row = torch.empty(layout.n_params, dtype=torch.float32)
    views = layout.views(row)
    for mod_name, mod in model.named_modules():
        prefix = mod_name + "." if mod_name else ""
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            bound = 1.0 / math.sqrt(mod.weight[0].numel())  # fan_in = in * kernel area
            views[prefix + "weight"].uniform_(-bound, bound, generator=generator)
            if mod.bias is not None:
                views[prefix + "bias"].uniform_(-bound, bound, generator=generator)
        elif isinstance(mod, nn.GroupNorm):
            views[prefix + "weight"].fill_(1.0)
            views[prefix + "bias"].fill_(0.0)
        elif any(True for _ in mod.parameters(recurse=False)):
            raise TypeError(f"init_row: no init rule for {type(mod).__name__}")
    return row
