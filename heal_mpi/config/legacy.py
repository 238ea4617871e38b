"""Configs written before the kinds had their own option tables (files of heal_mpi 0.1 before December 2026).

Until then every protocol option sat flat in `[protocol]` (`fanout` meaning two things) and the
overlays' in `[overlay]`. `upgrade` moves each into the table of the kind the run chose
(`protocol.fanout` -> `protocol.heal.fanout`, `protocol.epidemic` -> `protocol.epidemic.variant`)
and drops the options of the kinds it did not run, which never changed its results. The
analysis reads every stored config through it, so old and new files group and label alike.
"""

from __future__ import annotations

import copy

OLD_PROTOCOL_KEYS = ("fanout", "aggregation", "trim_beta", "clip_tau", "client_merge", "hub_merge", "hub_weights",
                     "merge", "gossip_update", "epidemic")
RENAMED = {("epidemic", "epidemic"): "variant"}  # (protocol, old key) -> new key
OLD_OVERLAY_KEYS = {"preferred": "elevator", "max_backward": "elevator", "servers": "multistar", "degree": "regular"}
DEFAULT_OVERLAY = {"heal": "elevator", "fedavg": "star", "gaia": "multistar", "gossip": "newscast",
                   "epidemic": "newscast", "none": "elevator"}


def is_legacy(raw: dict) -> bool:
    protocol, overlay = raw.get("protocol", {}), raw.get("overlay", {})
    return any(k in protocol for k in OLD_PROTOCOL_KEYS if not isinstance(protocol.get(k), dict)) or \
        any(k in overlay for k in OLD_OVERLAY_KEYS)


def upgrade(raw: dict) -> dict:
    """A parsed config in today's layout (a copy; a config already in it comes back equal)."""
    if not is_legacy(raw):
        return raw
    from heal_mpi.registry import PROTOCOLS
    out = copy.deepcopy(raw)
    protocol = out.setdefault("protocol", {})
    kind = protocol.get("kind", "fedavg")
    old = {k: protocol.pop(k) for k in OLD_PROTOCOL_KEYS if k in protocol and not isinstance(protocol[k], dict)}
    if kind in PROTOCOLS and PROTOCOLS.get(kind, "protocol.kind").options is not None:
        import dataclasses
        names = {f.name for f in dataclasses.fields(PROTOCOLS.get(kind, "protocol.kind").options)}
        moved = {RENAMED.get((kind, k), k): v for k, v in old.items() if RENAMED.get((kind, k), k) in names}
        if moved:
            protocol[kind] = {**moved, **protocol.get(kind, {})}
    overlay = out.setdefault("overlay", {})
    ran = overlay.get("kind", "auto")
    ran = DEFAULT_OVERLAY.get(kind, "elevator") if ran == "auto" else ran
    for key, owner in OLD_OVERLAY_KEYS.items():
        if key in overlay:
            value = overlay.pop(key)
            if owner == ran:
                overlay.setdefault(owner, {})[key] = value
    return out
