"""The specs heal_mpi finds through this package's entry points (pyproject.toml), or by name in a
config ("heal_mpi_example.kinds:PFEDAVG"). Light: heal_mpi loads them to check and document a config."""

from __future__ import annotations

from dataclasses import dataclass

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.registry import AttackSpec, FaultSpec, OverlaySpec, ProtocolSpec


@dataclass(frozen=True)
class PersonalOptions:
    alpha: float = opt(0.5, "the share of its own model a client keeps when the server's average comes back",
                       lo=0.0, hi=1.0)


def check_alpha(cfg) -> None:
    if cfg.protocol.options.alpha >= 1.0:
        raise ConfigError("protocol.pfedavg.alpha: 1.0 would ignore the server; use a value below 1")


PFEDAVG = ProtocolSpec("pfedavg", "heal_mpi_example.protocols:PersonalFedAvg", "pFedAvg",
                       "FedAvg on a star, but a client keeps a share alpha of its own model: "
                       "(1 - alpha) * server average + alpha * own", "star", ("star",), PersonalOptions,
                       protected=lambda cfg: [0], check=check_alpha)


@dataclass(frozen=True)
class ReverseOptions:
    factor: float = opt(10.0, "how far a Byzantine node's model is pushed the other way", lo=0.0, lo_open=True)


REVERSE = AttackSpec("reverse", "heal_mpi_example.attacks:Reverse", "sends its model times -factor", "model",
                     options=ReverseOptions)

RESHUFFLE = OverlaySpec("reshuffle", "heal_mpi_example.overlay:Reshuffle",
                        "toy: every cycle each node draws c fresh random live peers and says hello to each",
                        purposes=("toy-hello",))


@dataclass(frozen=True)
class IsolateEvent:
    round: int = opt(0, "round at whose start the node is cut off for good", lo=0)
    node: int = opt(0, "the node", lo=0)


def check_isolate(key: str, ev: IsolateEvent, cfg) -> None:
    if ev.node >= cfg.nodes.count:
        raise ConfigError(f"{key}.node: {ev.node} is not one of the nodes.count = {cfg.nodes.count} nodes")


ISOLATE = FaultSpec("isolate", IsolateEvent, "heal_mpi_example.faults:apply_isolate",
                    "isolate one node: [{round, node}]", label=lambda e: f"isolate node {e['node']} @{e['round']}",
                    check=check_isolate)
