"""Each protocol's own options: a dataclass of `opt` fields that join the `[protocol]` section.

Plain stdlib, like the config (sweeps expand on any python3); a protocol's module names
its class here and its registry entry points to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from heal_mpi.options import opt


AGGREGATIONS = ("mean", "median", "trimmed_mean", "centered_clip")  # heal_mpi.aggregation.RULES (no torch here)


@dataclass(frozen=True)
class AggregationParams:
    aggregation: str = opt("mean", "how a hub (HEAL, FedAvg, Gaia) or a Gossip/EL node combines the models it "
                           "receives; robust rules ship every row to the receiver's rank", choices=AGGREGATIONS)
    trim_beta: float = opt(0.1, "trimmed_mean: the fraction dropped at each end (< 0.5)", lo=0.0, hi=0.5)
    clip_tau: float = opt(1.0, "centered_clip: the clipping radius (L2 norm of a row's distance)", lo=0.0,
                          lo_open=True)


@dataclass(frozen=True)
class HubParams:
    client_merge: str = opt("mean", "how a HEAL client merges the copies its s hubs send back: mean, or the "
                            "coordinate-wise median (needs s >= 3)", choices=("mean", "median"))
    hub_merge: str = opt("mean", "how a HEAL/Gaia hub combines the averages of the hubs in its list (the "
                         "inter-hub step); a robust rule (trim_beta, clip_tau as for aggregation) keeps a "
                         "minority of Byzantine hubs out: a median of h hubs tolerates fewer than h/2",
                         choices=AGGREGATIONS)
    hub_weights: str = opt("uniform", "the weight of each hub's average in the inter-hub mean: uniform (the "
                           "HEAL paper), or clients (the number of client models it averaged this round, "
                           "so that every client weighs the same, as in FedAvg)", choices=("uniform", "clients"))


@dataclass(frozen=True)
class GossipParams:
    merge: str = opt("uniform", "gossip merge weights: uniform, or by model age", choices=("uniform", "age"))
    gossip_update: str = opt("once", "once: a node merges every model it received and trains once; per_model: "
                             "Gossipy's MERGE_UPDATE, one merge with the own model and one training per model "
                             "received, in arrival order", choices=("once", "per_model"))


@dataclass(frozen=True)
class EpidemicParams:
    epidemic: str = opt("neighbours", "EL variant: oracle (random s-regular graph), local (s random "
                        "peers), neighbours (every overlay neighbour, as the HEAL evaluation ran it)",
                        choices=("oracle", "local", "neighbours"))
