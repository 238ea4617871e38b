"""Each protocol's own options: a dataclass of `opt` fields that join the `[protocol]` section.

Plain stdlib, like the config (sweeps expand on any python3); a protocol's module names
its class here and its registry entry points to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from heal_mpi.options import opt


@dataclass(frozen=True)
class GossipParams:
    merge: str = opt("uniform", "gossip merge weights: uniform, or by model age", choices=("uniform", "age"))


@dataclass(frozen=True)
class EpidemicParams:
    epidemic: str = opt("neighbours", "EL variant: oracle (random s-regular graph), local (s random "
                        "peers), neighbours (every overlay neighbour, as the HEAL evaluation ran it)",
                        choices=("oracle", "local", "neighbours"))
