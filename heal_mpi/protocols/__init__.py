"""Learning protocols on top of the overlay; `build_protocol` picks one from the config."""

from __future__ import annotations

from heal_mpi.protocols.base import Protocol


def build_protocol(cfg, local):
    kind = cfg.protocol.kind
    if kind in ("fedavg", "gaia", "heal"):
        from heal_mpi.protocols.hub import HubProtocol
        return HubProtocol(cfg, local)
    if kind == "gossip":
        from heal_mpi.protocols.gossip import GossipProtocol
        return GossipProtocol(cfg, local)
    if kind == "epidemic":
        from heal_mpi.protocols.epidemic import EpidemicProtocol
        return EpidemicProtocol(cfg, local)
    raise ValueError(f"protocol.kind: unknown protocol {kind!r}")


def protected_slots(cfg) -> list[int]:
    """Slots that never fail: the FedAvg and Gaia servers (the HEAL evaluation's convention)."""
    if cfg.protocol.kind == "fedavg":
        return [0]
    if cfg.protocol.kind == "gaia":
        return list(range(cfg.overlay.servers))
    return []


__all__ = ["Protocol", "build_protocol", "protected_slots"]
