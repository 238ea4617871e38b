"""The built-in overlays' specs (heal_mpi.registry.OVERLAYS): their own options, checks and message purposes.

Light (no mpi4py, no torch): the config loads these specs; the implementations they name
(`target`) are imported only when a run builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

from heal_mpi.errors import ConfigError
from heal_mpi.options import opt
from heal_mpi.registry import OverlaySpec


@dataclass(frozen=True)
class ElevatorOptions:
    preferred: str = opt("top-h", "BACKWARD_REQUEST to the top-h (the authors' final version) or the top-c",
                         choices=("top-h", "top-c"))
    max_backward: int = opt(100, "most ids one BACKWARD_REQUEST returns", lo=1)


@dataclass(frozen=True)
class MultistarOptions:
    servers: int = opt(5, "number of servers, nodes 0..servers-1 (Gaia's k)", lo=1)


@dataclass(frozen=True)
class RegularOptions:
    degree: int = opt(4, "degree of the random regular graph", lo=1)


def check_cache(cfg) -> None:
    c, n = cfg.overlay.cache_size, cfg.nodes.count
    if c >= n:
        raise ConfigError(f"overlay.cache_size: c = {c} must be < nodes.count = {n}")


def check_elevator(cfg) -> None:
    check_cache(cfg)
    if cfg.overlay.hubs >= cfg.overlay.cache_size:
        raise ConfigError(f"overlay.hubs: h = {cfg.overlay.hubs} must be < overlay.cache_size = "
                          f"{cfg.overlay.cache_size}")


def check_multistar(cfg) -> None:
    servers = cfg.overlay.options.servers
    if servers >= cfg.nodes.count:
        raise ConfigError(f"overlay.multistar.servers: {servers} servers need more than nodes.count = "
                          f"{cfg.nodes.count}")


def check_ring(cfg) -> None:
    if cfg.nodes.count < 3:
        raise ConfigError(f"overlay.kind: a ring needs nodes.count >= 3, not {cfg.nodes.count}")


def check_regular(cfg) -> None:
    d, n = cfg.overlay.options.degree, cfg.nodes.count
    if d >= n or (d * n) % 2:
        raise ConfigError(f"overlay.regular.degree: no {d}-regular graph on {n} nodes")


STATIC = "heal_mpi.overlay.static:StaticOverlay"
ELEVATOR = OverlaySpec("elevator", "heal_mpi.overlay.elevator:Elevator",
                       "a cache of c ids: the h hubs first, then c−h random links (Elevator, top-h by default, "
                       "`[overlay.elevator] preferred = \"top-c\"` for the paper-era variant)",
                       ElevatorOptions, check_elevator,
                       purposes=("cache-request", "cache-reply", "backward-request", "backward-reply"), hubs=True,
                       sequential=True)
NEWSCAST = OverlaySpec("newscast", "heal_mpi.overlay.newscast:Newscast",
                       "a cache of c (id, timestamp) entries, refreshed by one push-pull exchange per cycle",
                       check=check_cache, purposes=("newscast-request", "newscast-reply"), sequential=True)
STAR = OverlaySpec("star", STATIC, "static: node 0 is the server, every other node's one hub", hubs=True)
MULTISTAR = OverlaySpec("multistar", STATIC, "static: servers 0..k−1, clients assigned round-robin",
                        MultistarOptions, check_multistar, hubs=True)
RING = OverlaySpec("ring", STATIC, "static: i sees i−1 and i+1", check=check_ring)
REGULAR = OverlaySpec("regular", STATIC, "static: a seeded random d-regular graph", RegularOptions, check_regular)
COMPLETE = OverlaySpec("complete", STATIC, "static: everyone sees everyone else (small N)")
