"""A rank's node models: rows of one flat tensor, per-node optimizer state, train and evaluate.

This is what the protocols call. Row i is node slot_lo + i. Every random choice (initial
model, batch order, evaluated nodes, test subset) comes from a stream keyed by node,
incarnation and round, so a node's training is the same whichever rank owns it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from heal_mpi.learning.backends import LoopBackend, VmapBackend, node_plan, resolve_backend
from heal_mpi.learning.batched import BatchedBackend, linear_layers
from heal_mpi.learning.evaluation import distinct_groups, eval_nodes, eval_subset, evaluate_row
from heal_mpi.learning.models import ParamLayout, build_model, init_row
from heal_mpi.learning.optim import Optimizer
from heal_mpi.learning.partition import LocalData
from heal_mpi.rng import hash_keys, streams


def torch_generator(seed: int, purpose: str, node: int = 0, incarnation: int = 0, rnd: int = 0,
                    device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator keyed like `rng.stream`."""
    g = torch.Generator(device=device)
    g.manual_seed(int(hash_keys(seed, purpose, node, incarnation, rnd)[0]) >> 1)
    return g


class Population:
    """A rank's node models as rows of one flat tensor + per-node optimizer state.

    Attributes:
        rows: float32 [n_local, P] on `device`; row i is node slot_lo + i.
        opt_state: per-node optimizer state, 'step' int64 [n_local] and [n_local, P] buffers.
        n_params: P.
        backend: "loop", "vmap" or "batched", resolved from train.backend; `auto` is batched
            for logreg and mlp, else vmap on CUDA and loop on CPU (the measurements behind that
            rule are in `heal_mpi.learning.backends`).
        model: the architecture (its own parameter values are scratch, never a node's model).

    All nodes start at incarnation 0 (the common initial model) on construction.
    """

    def __init__(self, model_cfg, train_cfg, eval_cfg, data: LocalData, seed: int, device):
        if train_cfg.on_replace not in ("keep", "reset"):
            raise ValueError(f"train.on_replace = {train_cfg.on_replace!r} is not keep or reset")
        if eval_cfg.on not in ("global", "local"):
            raise ValueError(f"eval.on = {eval_cfg.on!r} is not global or local")
        self.train_cfg, self.eval_cfg, self.data, self.seed = train_cfg, eval_cfg, data, seed
        self.device = torch.device(device)
        self.model = build_model(model_cfg, data.input_shape, data.num_classes).to(self.device)
        self.layout = ParamLayout.of(self.model)
        self.n_params = self.layout.n_params
        self.n_local = data.n_local
        self.opt = Optimizer.from_config(train_cfg)
        self.backend = resolve_backend(train_cfg.backend, self.device, linear_layers(self.model) is not None)
        impl = {"loop": LoopBackend, "vmap": VmapBackend, "batched": BatchedBackend}[self.backend]
        self._trainer = impl(self.model, self.layout, self.opt)
        self.rows = torch.zeros(self.n_local, self.n_params, dtype=torch.float32, device=self.device)
        self.opt_state = self.opt.init(self.n_local, self.n_params, self.device)
        self._common_init: torch.Tensor | None = None
        subset = eval_subset(seed, len(data.y_test), eval_cfg.max_samples)
        sel = slice(None) if subset is None else torch.from_numpy(subset).to(self.device)
        self._x_eval, self._y_eval = data.x_test[sel], data.y_test[sel]  # fixed test subset
        self.init_nodes(np.arange(self.n_local), np.zeros(self.n_local, dtype=np.int64))
        self.train_seconds, self.train_samples = 0.0, 0  # accumulated by train(); the round loop resets them
        self.last_seen = np.zeros(self.n_local)  # sample-gradients of each node in the last train() call

    # ------------------------------------------------------------------------- model state

    def _slots(self, local_idx: np.ndarray) -> np.ndarray:
        return self.data.slot_lo + np.asarray(local_idx, dtype=np.int64)

    def init_nodes(self, local_idx: np.ndarray, incarnation: np.ndarray) -> None:
        """Fresh model + fresh optimizer state for those local rows.

        Incarnation 0 uses ONE common init for all nodes (key (seed, 'init', 0, 0)), like
        FedAvg's broadcast initial model; incarnation k > 0 (a churn newcomer) gets its own,
        keyed by (seed, 'init', node, k).
        """
        local_idx = np.asarray(local_idx, dtype=np.int64)
        incarnation = np.broadcast_to(np.asarray(incarnation, dtype=np.int64), local_idx.shape)
        if len(local_idx) == 0:
            return
        sel = torch.from_numpy(local_idx).to(self.device)
        common = incarnation == 0
        if common.any():  # one row for all of them: copied from a view, never stacked [k, P]
            if self._common_init is None:
                self._common_init = init_row(self.model, torch_generator(self.seed, "init", 0, 0)).to(self.device)
            self.rows.index_copy_(0, sel[torch.from_numpy(common)], self._common_init.expand(int(common.sum()), -1))
        for i, node, inc in zip(local_idx[~common], self._slots(local_idx[~common]), incarnation[~common]):
            row = init_row(self.model, torch_generator(self.seed, "init", int(node), int(inc)))
            self.rows[int(i)] = row.to(self.device)
        self._reset_state(sel)

    def _reset_state(self, sel: torch.Tensor) -> None:
        for t in self.opt_state.values():
            t.index_fill_(0, sel, 0)

    def replace(self, local_idx: np.ndarray, new_rows: torch.Tensor) -> None:
        """A protocol overwrote these nodes' models: set rows [k, P]; optimizer state is kept
        or reset per train.on_replace."""
        local_idx = np.asarray(local_idx, dtype=np.int64)
        if len(local_idx) == 0:
            return
        if new_rows.shape != (len(local_idx), self.n_params):
            raise ValueError(f"replace: new_rows has shape {tuple(new_rows.shape)}, "
                             f"expected ({len(local_idx)}, {self.n_params})")
        sel = torch.from_numpy(local_idx).to(self.device)
        self.rows.index_copy_(0, sel, new_rows.to(self.device, torch.float32))
        if self.train_cfg.on_replace == "reset":
            self._reset_state(sel)

    def state_dict(self) -> dict:
        """Rows and optimizer state as CPU tensors (for checkpoints)."""
        return {"rows": self.rows.cpu().clone(), "optimizer": self.opt.kind,
                "opt_state": {k: v.cpu().clone() for k, v in self.opt_state.items()}}

    def load_state_dict(self, d: dict) -> None:
        """Restore what `state_dict` returned (shapes and optimizer kind must match)."""
        if tuple(d["rows"].shape) != tuple(self.rows.shape) or d["optimizer"] != self.opt.kind:
            raise ValueError(f"checkpoint holds {d['optimizer']} rows {tuple(d['rows'].shape)}, "
                             f"this run has {self.opt.kind} rows {tuple(self.rows.shape)}")
        if set(d["opt_state"]) != set(self.opt_state):
            raise ValueError(f"checkpoint optimizer state {sorted(d['opt_state'])} does not "
                             f"match this run's {sorted(self.opt_state)}")
        self.rows.copy_(d["rows"])
        for k, v in self.opt_state.items():
            v.copy_(d["opt_state"][k])

    # ------------------------------------------------------------------------- train

    def train(self, active: np.ndarray, rnd: int, incarnation: np.ndarray, repeat: int = 0) -> np.ndarray:
        """Local training of the rows where active[i] (bool [n_local]).

        Each runs train.local_epochs passes (or train.local_steps mini-batches when > 0) of
        train.batch_size over its own train samples, batch order keyed by
        (seed, 'batch', node, incarnation, rnd); a node's `repeat`-th extra training in the
        same round by (seed, 'batch<repeat>', ...).

        Returns:
            float64 [n_local]: mean train loss per sample seen, NaN where not active (or no step).
        """
        active = np.asarray(active, dtype=bool)
        incarnation = np.broadcast_to(np.asarray(incarnation, dtype=np.int64), active.shape)
        out = np.full(self.n_local, np.nan)
        cfg, sizes = self.train_cfg, self.data.train_sizes
        ids = np.flatnonzero(active)
        purpose = f"batch{repeat}" if repeat else "batch"
        keyed = streams(self.seed, purpose, self.data.slot_lo + ids, incarnation[ids], rnd)
        plans = [node_plan(int(sizes[i]), cfg.batch_size, cfg.local_epochs, cfg.local_steps, rng)
                 for i, rng in zip(ids, keyed)]
        keep = np.array([len(p) > 0 for p in plans], dtype=bool)
        ids, plans = ids[keep], [p for p, k in zip(plans, keep) if k]
        self.last_seen = np.zeros(self.n_local)
        if len(ids) == 0:
            return out
        t0 = time.perf_counter()
        loss_sums = self._trainer.train(self.rows, self.opt_state, ids, plans,
                                        self.data.train_offsets, self.data.x_train, self.data.y_train)
        real = (np.concatenate(plans) >= 0).sum(axis=1)              # [sum of steps] samples a batch
        seen = np.add.reduceat(real, np.cumsum([0] + [len(p) for p in plans[:-1]])).astype(np.float64)
        self.train_seconds += time.perf_counter() - t0  # the loss copy above synchronizes a GPU
        self.train_samples += int(seen.sum())
        self.last_seen[ids] = seen  # what the simulated clock charges each node (heal_mpi/clock.py)
        out[ids] = loss_sums.double().cpu().numpy() / seen
        return out

    # ------------------------------------------------------------------------- evaluate

    def evaluate(self, rnd: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Per-node accuracy and loss, float64 [n_local], and the number of rows evaluated.

        NaN for nodes not drawn this round (eval.nodes_fraction) and where mask is False
        (dead nodes). With eval.on = "global", identical rows are evaluated once on the
        (fixed, eval.max_samples) test subset; with "local", each node on its own held-out
        split (its first eval.max_samples samples when > 0), NaN when that split is empty.
        """
        d = self.data
        chosen = eval_nodes(self.seed, rnd, d.n_nodes, self.eval_cfg.nodes_fraction, d.slot_lo, d.slot_hi)
        if mask is not None:
            chosen &= np.asarray(mask, dtype=bool)
        acc, loss = np.full(self.n_local, np.nan), np.full(self.n_local, np.nan)
        ids = np.flatnonzero(chosen)
        if self.eval_cfg.on == "global":
            groups = distinct_groups(self.rows, ids)
            for g in groups:
                acc[g], loss[g] = evaluate_row(self.model, self.layout, self.rows[g[0]],
                                               self._x_eval, self._y_eval)
            return acc, loss, len(groups)
        cap = self.eval_cfg.max_samples
        for i in ids:
            lo, hi = int(d.local_test_offsets[i]), int(d.local_test_offsets[i + 1])
            if cap > 0:
                hi = min(hi, lo + cap)
            acc[i], loss[i] = evaluate_row(self.model, self.layout, self.rows[i],
                                           d.x_local_test[lo:hi], d.y_local_test[lo:hi])
        return acc, loss, len(ids)
