"""The built-in attacks as the simulator runs them (their specs: kinds.py; their kernels: byzantine.py, poison.py).

An attack is built as Class(cfg, world, byzantine_ids, spec) by heal_mpi.adversary.wiring and
answers two questions about the messages its Byzantine senders send: `alters(purpose)` and
`alter(purpose, senders, payload, rnd, receivers)` (rows of honest senders are never passed).
A model attack may also keep state before each training (`before_train`).
"""

from __future__ import annotations

import numpy as np

from heal_mpi.adversary.byzantine import fake_backward_replies, fake_cache_replies


class ElevatorAttack:
    """passive, active, noncoordinated, coordinated: forged cache replies and, unless
    adversary.backward_mode is "honest", forged backward replies (byzantine.md §1.4), one
    forgery per (sender, requester) when adversary.per_request."""

    def __init__(self, cfg, world, ids: np.ndarray, spec):
        adv = cfg.adversary
        self.kind, self.ids, self.backward_mode, self.per_request = spec.name, ids, adv.backward_mode, adv.per_request
        self.seed, self.c = cfg.run.seed, cfg.overlay.cache_size

    def alters(self, purpose: str) -> bool:
        return purpose == "cache-reply" or (purpose == "backward-reply" and self.backward_mode != "honest")

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int, receivers=None):
        requesters = None if not self.per_request or receivers is None else np.asarray(receivers, dtype=np.int64)
        if purpose == "cache-reply":
            return fake_cache_replies(self.kind, senders, payload, self.ids, self.c, self.seed, rnd,
                                      requesters=requesters)
        # backward: no honest payload is materialised, the forgeries only
        return fake_backward_replies(self.kind, senders, self.ids, self.seed, rnd, self.backward_mode,
                                     requesters=requesters)


class ModelPoisoner:
    """noise, zero, sign_flip: what a Byzantine node sends instead of its model (as a client, as a
    hub once it is one, as a Gossip or EL peer). sign_flip remembers, before each training, the
    models about to train, and reverses the update since (a node that never trained: its first
    model, so a hub reverses its aggregate's distance from it)."""

    def __init__(self, cfg, world, ids: np.ndarray, spec):
        self.kind, self.scale, self.seed = spec.name, cfg.adversary.poison_scale, cfg.run.seed
        lo, hi = world.slot_lo, world.slot_hi
        self.local_ids = ids[(ids >= lo) & (ids < hi)]
        self.lo = lo
        self._previous = None  # this rank's Byzantine rows before their last training (sign_flip)

    def alters(self, purpose: str) -> bool:
        return True  # the wiring asks only about purposes that carry models

    def alter(self, purpose: str, senders: np.ndarray, rows, rnd: int, receivers=None):
        import torch

        from heal_mpi.adversary.poison import poison_rows
        previous = None
        if self.kind == "sign_flip":  # before any training there is no update: the flip of nothing is the model
            at = np.searchsorted(self.local_ids, senders)
            previous = rows if self._previous is None else \
                self._previous[torch.as_tensor(at, device=rows.device)].to(rows.dtype)
        return poison_rows(self.kind, rows, previous, senders, self.seed, rnd, self.scale, purpose=f"poison-{purpose}")

    def before_train(self, pop, training: np.ndarray) -> None:
        if self.kind != "sign_flip":
            return
        import torch
        local = self.local_ids - self.lo
        if self._previous is None:
            self._previous = pop.rows[torch.as_tensor(local, device=pop.rows.device)].clone()
        now = np.flatnonzero(training[local])
        if len(now):
            at = torch.as_tensor(now, device=pop.rows.device)
            self._previous[at] = pop.rows[torch.as_tensor(local[now], device=pop.rows.device)]
