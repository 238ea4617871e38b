"""The run's adversary: which nodes are Byzantine, what they send, and the Lift defence.

Wires the kernels of heal_mpi/adversary/ into the simulator through its seams, following
../shared/reference/byzantine.md:
- `Byzantine` is a channel alteration (channel.py): in Elevator it forges the cache and
  backward replies of the Byzantine nodes (§1.4), one forgery per (sender, requester); in
  the learning engine it replaces the models they send (noise, zero, sign_flip), as
  clients and, once they are hubs, as hubs. It also reports the Byzantine share of the
  hubs (§3.2) and marks the nodes in /nodes/is_byzantine.
- `Lift` (§2.3) is run by Elevator at the start of its cycle: every correct live node
  redraws its h hubs from a generator seeded by its sorted hub list.

Byzantine nodes are a keyed uniform subset, fixed for the run, never a protected slot;
they never crash (the fault schedule protects them) and never run Lift.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.adversary.byzantine import choose_byzantine, fake_backward_replies, fake_cache_replies
from heal_mpi.adversary.lift import lift_caches
from heal_mpi.config import Config, byzantine_count
from heal_mpi.context import RoundContext
from heal_mpi.metrics import RoundMetrics
from heal_mpi.overlay.common import hub_mask


def byzantine_ids(cfg: Config) -> np.ndarray:
    """int64 [B], sorted: the run's Byzantine nodes (the same on every rank)."""
    from heal_mpi.registry import protected_slots
    return choose_byzantine(cfg.run.seed, cfg.nodes.count, byzantine_count(cfg), protected_slots(cfg))


class Byzantine:
    """The Byzantine nodes' lies, as a channel alteration, and their metrics.

    Args:
        cfg: the run's Config (adversary section, seed, cache size).
        world: this rank's World (local ids for the metrics and the model snapshots).
    """

    def __init__(self, cfg: Config, world):
        adv = cfg.adversary
        self.ids = byzantine_ids(cfg)
        self.mask = np.zeros(cfg.nodes.count, dtype=bool)
        self.mask[self.ids] = True
        self.kind, self.backward_mode = adv.kind, adv.backward_mode
        self.models, self.scale, self.per_request = adv.models, adv.poison_scale, adv.per_request
        self.seed, self.c, self.world = cfg.run.seed, cfg.overlay.cache_size, world
        self._previous = None  # this rank's Byzantine rows before their last training (sign_flip)

    # ------------------------------------------------------------------ the alteration
    def forges(self, purpose: str, senders: np.ndarray) -> np.ndarray:
        if purpose == "elevator-cache-reply":
            lies = self.kind != "none"
        elif purpose == "elevator-backward-reply":
            lies = self.kind != "none" and self.backward_mode != "honest"
        elif purpose.startswith(("elevator-", "newscast-")):  # the overlay messages it does not forge
            lies = False
        else:  # every other purpose carries a model
            lies = self.models != "honest"
        return self.mask[senders] & lies

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int, receivers=None):
        forged = self.forges(purpose, senders)
        if not forged.any():
            return payload
        if purpose == "elevator-cache-reply":
            payload = payload.copy()
            payload[forged] = fake_cache_replies(self.kind, senders[forged], payload[forged], self.ids, self.c,
                                                 self.seed, rnd, requesters=self._requesters(receivers, forged))
            return payload
        if purpose == "elevator-backward-reply":  # no honest payload is materialised: the forgeries only
            return fake_backward_replies(self.kind, senders[forged], self.ids, self.seed, rnd, self.backward_mode,
                                         requesters=self._requesters(receivers, forged))
        return self._poison(purpose, senders, forged, payload, rnd)

    def _requesters(self, receivers, forged):
        if not self.per_request or receivers is None:
            return None
        return np.asarray(receivers, dtype=np.int64)[forged]

    def _poison(self, purpose, senders, forged, rows, rnd):
        import torch

        from heal_mpi.adversary.poison import poison_rows
        previous = None
        sel = torch.as_tensor(np.flatnonzero(forged), device=rows.device)
        if self.models == "sign_flip":
            if self._previous is None:  # sends before it ever trained (Gossip's first push): no update to reverse
                return rows
            at = np.searchsorted(self.local_ids, senders[forged])
            previous = self._previous[torch.as_tensor(at, device=rows.device)].to(rows.dtype)
        out = rows.clone()
        out[sel] = poison_rows(self.models, rows[sel], previous, senders[forged], self.seed, rnd, self.scale,
                               purpose=f"poison-{purpose}")
        return out

    @property
    def local_ids(self) -> np.ndarray:
        lo, hi = self.world.slot_lo, self.world.slot_hi
        return self.ids[(self.ids >= lo) & (self.ids < hi)]

    def remember(self, pop, training: np.ndarray) -> None:
        """Before a Train step: the local Byzantine models about to train. sign_flip reverses the
        update from these (a node that never trained: its first model, so a hub reverses its
        aggregate's distance from it)."""
        if self.models != "sign_flip":
            return
        import torch
        local = self.local_ids - self.world.slot_lo
        if self._previous is None:
            self._previous = pop.rows[torch.as_tensor(local, device=pop.rows.device)].clone()
        now = np.flatnonzero(training[local])
        if len(now):
            at = torch.as_tensor(now, device=pop.rows.device)
            self._previous[at] = pop.rows[torch.as_tensor(local[now], device=pop.rows.device)]

    # ------------------------------------------------------------------ metrics
    def contribute(self, metrics: RoundMetrics, overlay) -> None:
        """/rounds/byzantine (live ones), byzantine_hubs (among the 99 % hubs), hubs_strict and
        byzantine_hubs_strict (in every other live node's view, self-entries ignored: §3.2),
        /nodes/is_byzantine. Collective over `world.comm` (one small Allreduce): every rank must call."""
        alive = overlay.alive
        n_alive = int(alive.sum())
        hubs = hub_mask(overlay.in_degree, alive)
        metrics.set("byzantine", int((alive & self.mask).sum()))
        metrics.set("byzantine_hubs", int((hubs & self.mask).sum()))
        # strict: listed by every other live node. A candidate's in-degree counts its own entry
        # when it lists itself, so ask the owners which candidates do (one small Allreduce).
        cand = np.flatnonzero(alive & (overlay.in_degree >= n_alive - 1))
        lo, hi = self.world.slot_lo, self.world.slot_hi
        mine = cand[(cand >= lo) & (cand < hi)]
        lists_self = np.zeros(len(cand), dtype=np.int64)
        views = overlay.neighbours()
        lists_self[np.searchsorted(cand, mine)] = (views[mine - lo] == mine[:, None]).any(axis=1)
        lists_self = overlay.comm.allreduce_sum(lists_self)
        strict = cand[overlay.in_degree[cand] - lists_self >= n_alive - 1]
        metrics.set("hubs_strict", len(strict))
        metrics.set("byzantine_hubs_strict", int(self.mask[strict].sum()))
        metrics.add_node("is_byzantine", self.mask[lo:hi].astype(np.int8))


class Lift:
    """Lift (byzantine.md §2.3): at `round` (and every `period` rounds after, if > 0), every
    correct live node rewrites its first h cache entries with h live ids drawn from a
    generator seeded by its sorted hub list; the rest of its cache keeps its non-hub links,
    topped up at random (keep_then_fill)."""

    def __init__(self, cfg: Config, byzantine: np.ndarray):
        adv = cfg.adversary
        self.round, self.period, self.prng = adv.lift_round, adv.lift_period, adv.lift_prng
        self.byzantine = np.zeros(cfg.nodes.count, dtype=bool)
        self.byzantine[byzantine] = True
        self.h, self.seed = cfg.overlay.hubs, cfg.run.seed

    def due(self, rnd: int) -> bool:
        if self.round < 0 or rnd < self.round:
            return False
        return rnd == self.round or (self.period > 0 and (rnd - self.round) % self.period == 0)

    def apply(self, cache: np.ndarray, ctx: RoundContext, local_ids: np.ndarray) -> np.ndarray:
        """The local caches [n_local, c] after Lift (rows of Byzantine and dead nodes unchanged)."""
        correct = ctx.alive[local_ids] & ~self.byzantine[local_ids]
        return lift_caches(cache, self.h, len(ctx.alive), ctx.alive, correct, self.seed, ctx.rnd, local_ids,
                           prng=self.prng)
