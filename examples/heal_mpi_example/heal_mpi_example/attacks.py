"""The reversing attack (spec: kinds.REVERSE): a Byzantine node sends its model times -factor."""

from __future__ import annotations


class Reverse:
    """Built by heal_mpi as Reverse(cfg, world, byzantine_ids, spec) when adversary.models = "reverse"."""

    def __init__(self, cfg, world, ids, spec):
        self.factor = cfg.adversary.options[spec.name].factor  # [adversary.reverse] factor

    def alters(self, purpose: str) -> bool:
        return True  # heal_mpi asks a model attack only about purposes that carry models

    def alter(self, purpose, senders, rows, rnd, receivers=None):
        return -self.factor * rows
