"""Training throughput: the two backends against plain PyTorch on one model.

`bench_train` measures samples per second of one round of local training of n LeNet-5
nodes (random 28x28 images: speed does not depend on pixel values) with each backend,
next to plain PyTorch (`nn.Module` + `torch.optim.Adam`) training one LeNet-5 over the
same number of samples with batch 32 and with batch 3200 (the compute bound).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from heal_mpi.learning.models import build_model
from heal_mpi.learning.partition import LocalData
from heal_mpi.learning.population import Population


def _random_data(n_nodes: int, per_node: int, device: torch.device) -> LocalData:
    g = torch.Generator().manual_seed(0)
    n = n_nodes * per_node
    x = torch.randn(n, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    offsets = np.arange(n_nodes + 1, dtype=np.int64) * per_node
    empty = np.zeros(n_nodes + 1, dtype=np.int64)
    return LocalData(x, y, offsets, x[:0], y[:0], empty, x[:256], y[:256], (1, 28, 28), 10,
                     n_nodes, 0, n_nodes)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain(data: LocalData, batch: int, device: torch.device) -> float:
    """Samples/s of plain PyTorch on one LeNet-5 over all of data.x_train."""
    model = build_model(SimpleNamespace(name="lenet5", hidden=0), (1, 28, 28), 10).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.x_train, data.y_train
    _sync(device)
    t0 = time.perf_counter()
    for lo in range(0, len(y), batch):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[lo:lo + batch]), y[lo:lo + batch]).backward()
        opt.step()
    _sync(device)
    return len(y) / (time.perf_counter() - t0)


def _population(data: LocalData, backend: str, batch: int, device: torch.device) -> float:
    """Samples/s of one round (1 local epoch) of every node with `backend`."""
    cfg = SimpleNamespace
    pop = Population(cfg(name="lenet5", hidden=0),
                     cfg(optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=0.0, batch_size=batch,
                         local_epochs=1, local_steps=0, backend=backend, on_replace="keep"),
                     cfg(every=1, max_samples=0, nodes_fraction=1.0, on="global"),
                     data, 0, device)
    active, inc = np.ones(data.n_local, dtype=bool), np.zeros(data.n_local, dtype=np.int64)
    _sync(device)
    t0 = time.perf_counter()
    pop.train(active, 0, inc)
    _sync(device)
    return len(data.y_train) / (time.perf_counter() - t0)


def bench_train(n_nodes: int = 100, per_node: int = 96, batch: int = 32,
                device: torch.device | str = "cpu", backends=("loop", "vmap")) -> list[tuple[str, float]]:
    """[(label, samples/s)] for each backend and plain PyTorch at batch 32 and 3200.

    A short warm-up round (a few nodes, a few batches) runs first so one-time costs
    (allocator, vmap tracing of the model) are not counted.
    """
    device = torch.device(device)
    data = _random_data(n_nodes, per_node, device)
    warm = _random_data(4, batch * 2, device)
    results = []
    for backend in backends:
        _population(warm, backend, batch, device)
        results.append((f"{backend} backend, {n_nodes} nodes, batch {batch}",
                        _population(data, backend, batch, device)))
    for b in (batch, 3200):
        _plain(warm, b, device)
        results.append((f"plain PyTorch, 1 model, batch {b}", _plain(data, b, device)))
    return results


if __name__ == "__main__":
    import sys
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for label, sps in bench_train(n_nodes=n):
        print(f"{label:45s} {sps:10.0f} samples/s")
