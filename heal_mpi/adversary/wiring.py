"""The run's adversary: which nodes are Byzantine, the attacks they run, and the Lift defence.

Wires the attacks (heal_mpi.registry.ATTACKS; built-in ones in attacks.py, their kernels in
byzantine.py and poison.py) into the simulator through its seams, following
../shared/reference/byzantine.md:
- `Byzantine` is a channel alteration (heal_mpi/engine/channel.py). For each purpose it asks
  the registry whether the run's overlay sends it (then the overlay attack, adversary.kind,
  may forge it) or not (then it carries a model, and the model attack, adversary.models,
  replaces it). It also reports the Byzantine share of the hubs (§3.2) and marks the nodes
  in /nodes/is_byzantine.
- `Lift` (§2.3) is attached to Elevator as a hook at the start of its cycle: every correct
  live node redraws its h hubs from a generator seeded by its sorted hub list.

Byzantine nodes are a keyed uniform subset, fixed for the run, never a protected slot;
they never crash (the fault schedule protects them) and never run Lift.
"""

from __future__ import annotations

import numpy as np

from heal_mpi.adversary.byzantine import choose_byzantine
from heal_mpi.adversary.lift import lift_caches
from heal_mpi.config import Config, byzantine_count
from heal_mpi.context import RoundContext
from heal_mpi.metrics import RoundMetrics
from heal_mpi.overlay.common import hub_mask
from heal_mpi.registry import ATTACKS, OVERLAYS, load, protected_slots

HONEST = {"overlay": "none", "model": "honest"}  # adversary.kind and adversary.models when nobody lies


def byzantine_ids(cfg: Config) -> np.ndarray:
    """int64 [B], sorted: the run's Byzantine nodes (the same on every rank)."""
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
        self.world = world
        self.overlay_purposes = set(OVERLAYS.get(cfg.overlay_kind, "overlay.kind").purposes)
        self.overlay_attack = self._attack(cfg, adv.kind, HONEST["overlay"], "adversary.kind")
        self.model_attack = self._attack(cfg, adv.models, HONEST["model"], "adversary.models")

    def _attack(self, cfg, name: str, honest: str, key: str):
        if name == honest:
            return None
        spec = ATTACKS.get(name, key)
        return load(spec.target)(cfg, self.world, self.ids, spec)

    def attack_for(self, purpose: str):
        """The attack that may forge messages of this purpose (None: nobody lies in them)."""
        attack = self.overlay_attack if purpose in self.overlay_purposes else self.model_attack
        return attack if attack is not None and attack.alters(purpose) else None

    # ------------------------------------------------------------------ the alteration
    def forges(self, purpose: str, senders: np.ndarray) -> np.ndarray:
        if self.attack_for(purpose) is None:
            return np.zeros(len(senders), dtype=bool)
        return self.mask[senders]

    def alter(self, purpose: str, senders: np.ndarray, payload, rnd: int, receivers=None):
        """The payload as sent: the rows of the forging senders replaced (overlay backward replies:
        `payload` None, the forgeries alone, as no honest payload is materialised)."""
        attack = self.attack_for(purpose)
        forged = self.forges(purpose, senders)
        if attack is None or not forged.any():
            return payload
        which = None if receivers is None else np.asarray(receivers)[forged]
        if payload is None:
            return attack.alter(purpose, senders[forged], None, rnd, which)
        at = _index(payload, forged)
        out = payload.copy() if isinstance(payload, np.ndarray) else payload.clone()
        out[at] = attack.alter(purpose, senders[forged], payload[at], rnd, which)
        return out

    def before_train(self, pop, training: np.ndarray) -> None:
        """An engine hook before every Train step (sign_flip remembers the models about to train)."""
        if self.model_attack is not None and hasattr(self.model_attack, "before_train"):
            self.model_attack.before_train(pop, training)

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
        lists_self = overlay.comm.allreduce_sum(lists_self, "byzantine-strict-hubs")
        strict = cand[overlay.in_degree[cand] - lists_self >= n_alive - 1]
        metrics.set("hubs_strict", len(strict))
        metrics.set("byzantine_hubs_strict", int(self.mask[strict].sum()))
        metrics.add_node("is_byzantine", self.mask[lo:hi].astype(np.int8))


def _index(payload, mask: np.ndarray):
    """`mask` as an index of `payload` (a NumPy array or a torch tensor)."""
    if isinstance(payload, np.ndarray):
        return mask
    import torch
    return torch.as_tensor(np.flatnonzero(mask), device=payload.device)


class Lift:
    """Lift (byzantine.md §2.3): at `round` (and every `period` rounds after, if > 0), every
    correct live node rewrites its first h cache entries with h live ids drawn from a
    generator seeded by its sorted hub list; the rest of its cache keeps its non-hub links,
    topped up at random (keep_then_fill). Attached to Elevator's `before_cycle` hooks."""

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

    def __call__(self, overlay, ctx: RoundContext) -> None:
        """The hook: before any node's step of a due cycle (§2.3), rewrite the local caches."""
        if self.due(ctx.rnd):
            overlay.cache = self.apply(overlay.cache, ctx, overlay.world.local_slots)


def attach(cfg: Config, world, channel, overlay, engine=None) -> Byzantine | None:
    """Wire the configured adversary into a run being built: the Byzantine nodes' alteration on the
    channel, their memory before training, and Lift on the overlay. Returns the Byzantine wiring
    (for the metrics), or None when the run has no Byzantine node."""
    byzantine = None
    if byzantine_count(cfg):
        byzantine = Byzantine(cfg, world)
        channel.alterations.append(byzantine)  # they lie through the channel, like any attack
        if engine is not None:
            engine.before_train.append(byzantine.before_train)
    if cfg.adversary.lift_round >= 0:
        overlay.before_cycle.append(Lift(cfg, byzantine_ids(cfg)))
    return byzantine
