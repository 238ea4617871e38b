"""Checks across keys: contradictions a single value cannot show (the per-key checks ran in `load`).

Each kind checks its own keys (its spec's `check`, in the registry); what is left here is
what ties kinds together: a protocol's overlays, an attack's purposes, the fault lists
against the run's length, the adversary's size, the model against the data.
"""

from __future__ import annotations

from pathlib import Path

from heal_mpi.config.sections import Config
from heal_mpi.errors import ConfigError
from heal_mpi.registry import ATTACKS, FAULTS, NO_PROTOCOL, OVERLAYS, PROTOCOLS, protected_slots


def validate(cfg: Config, n_ranks: int = 1, check_files: bool = True, check_device: bool = True) -> Config:
    """Checks across keys. Returns cfg unchanged.

    `check_files` and `check_device` also check this machine: the dataset files, and a GPU
    when run.device = "cuda" (turn them off where the run will happen elsewhere).
    """
    n = cfg.nodes.count
    if n_ranks > n:
        raise ConfigError(f"nodes.count: {n} nodes cannot be split over {n_ranks} ranks")
    if check_device and cfg.run.device == "cuda":
        _check_cuda()
    kind = cfg.overlay_kind
    OVERLAYS.get(kind, "overlay.kind").check(cfg)
    if cfg.overlay.semantics == "sequential" and not OVERLAYS.get(kind, "overlay.kind").sequential:
        raise ConfigError(f"overlay.semantics: overlay.kind = {kind!r} has no cycle to run in turns (Elevator and "
                          "Newscast have)")
    if cfg.protocol.kind != NO_PROTOCOL:
        spec = PROTOCOLS.get(cfg.protocol.kind, "protocol.kind")
        if spec.overlays and OVERLAYS.get(kind, "overlay.kind").name not in spec.overlays:
            raise ConfigError(f"overlay.kind: protocol.kind = {cfg.protocol.kind!r} runs on "
                              f"{' or '.join(spec.overlays)}, not {kind!r}")
        servers = len(spec.protected(cfg))
        if servers >= n:
            raise ConfigError(f"nodes.count: {spec.label} needs a client beside its {servers} server(s), "
                              f"not {n} node(s)")
        spec.check(cfg)
    _validate_faults(cfg)
    _validate_adversary(cfg)
    _validate_time(cfg, check_files)
    if cfg.protocol.kind != NO_PROTOCOL:
        _validate_learning(cfg, check_files)
    return cfg


def _validate_time(cfg: Config, check_files: bool) -> None:
    tc = cfg.time
    for what in ("compute", "bandwidth", "latency"):
        if getattr(tc, f"{what}_dist") == "uniform" and getattr(tc, f"{what}_spread") >= 1:
            raise ConfigError(f"time.{what}_spread: {getattr(tc, f'{what}_spread')} must be < 1 for a uniform "
                              f"spread (a node's {what} would reach 0)")
    if not tc.enabled:
        needs = [f"time.deadline = {tc.deadline}"] * (tc.deadline > 0) + [f"time.quorum = {tc.quorum}"] * (tc.quorum < 1) \
            + [f"time.slice = {tc.slice}"] * (tc.slice > 0) + [f"time.online_fraction = {tc.online_fraction}"] * (
                tc.online_fraction < 1) + [f"time.availability_csv = {tc.availability_csv!r}"] * bool(tc.availability_csv)
        if needs:
            raise ConfigError(f"{needs[0]} needs the clock: set time.enabled = true")
    if tc.availability_csv and check_files:
        from heal_mpi.availability import read_intervals
        read_intervals(Path(tc.availability_csv), cfg.nodes.count)
    if tc.slice > 0 and cfg.protocol.kind != NO_PROTOCOL:
        spec = PROTOCOLS.get(cfg.protocol.kind, "protocol.kind")
        if not spec.asynchronous:
            able = ", ".join(s.name for s in PROTOCOLS.specs() if s.asynchronous)
            raise ConfigError(f"time.slice: {spec.label} runs in synchronous rounds only; asynchronous rounds are "
                              f"for {able}")
    if tc.devices_csv and check_files:
        from heal_mpi.clock import read_csv
        read_csv(Path(tc.devices_csv), cfg.nodes.count)


def _validate_faults(cfg: Config) -> None:
    rounds = cfg.run.rounds
    for spec in FAULTS.specs():
        for i, ev in enumerate(cfg.faults.events.get(spec.name, ())):
            key = f"faults.{spec.name}[{i}]"
            first = getattr(ev, spec.start)
            if first >= rounds:
                raise ConfigError(f"{key}.{spec.start}: {first} is past the last round {rounds - 1}")
            spec.check(key, ev, cfg)


def _validate_adversary(cfg: Config) -> None:
    adv, n = cfg.adversary, cfg.nodes.count
    if adv.byzantine and adv.byzantine_fraction:
        raise ConfigError("adversary.byzantine_fraction: set either adversary.byzantine or the fraction, not both")
    room = n - len(protected_slots(cfg)) - 1  # never a protected server, and one correct node at least
    key = "adversary.byzantine_fraction" if adv.byzantine_fraction else "adversary.byzantine"
    if byzantine_count(cfg) and byzantine_count(cfg) > room:
        raise ConfigError(f"{key}: {byzantine_count(cfg)} Byzantine nodes, but only {room} of nodes.count = {n} "
                          "can be (servers are protected, one node must stay correct)")
    overlay = OVERLAYS.get(cfg.overlay_kind, "overlay.kind")
    for key, name, layer in (("adversary.kind", adv.kind, "overlay"), ("adversary.models", adv.models, "model")):
        if name in ("none", "honest"):
            continue
        spec = ATTACKS.get(name, key)
        if spec.layer != layer:
            raise ConfigError(f"{key}: {name!r} is a {spec.layer} attack; it goes in "
                              f"{'adversary.kind' if spec.layer == 'overlay' else 'adversary.models'}")
        missing = [p for p in spec.alters if p not in overlay.purposes]
        if missing:
            raise ConfigError(f"{key}: {name!r} alters {', '.join(missing)}, which overlay.kind = "
                              f"{cfg.overlay_kind!r} does not send")
        spec.check(cfg)
    if adv.lift_round >= cfg.run.rounds:
        raise ConfigError(f"adversary.lift_round: {adv.lift_round} is past the last round {cfg.run.rounds - 1}")
    if adv.lift_round >= 0 and overlay.name != "elevator":
        raise ConfigError(f"adversary.lift_round: Lift redraws Elevator hubs, not {cfg.overlay_kind!r} ones")
    if adv.models != "honest" and cfg.protocol.kind == NO_PROTOCOL:
        raise ConfigError("adversary.models: poisoned models need a learning protocol (protocol.kind = none)")


def byzantine_count(cfg: Config) -> int:
    """How many Byzantine nodes the run has: adversary.byzantine, or the fraction of N, rounded half up."""
    adv = cfg.adversary
    return adv.byzantine or int(adv.byzantine_fraction * cfg.nodes.count + 0.5)


def _check_cuda() -> None:
    """run.device = "cuda" needs a GPU here; torch is imported only for this check."""
    from heal_mpi import info
    if not info.cuda_devices():
        raise ConfigError(f"run.device: 'cuda' but this machine has no CUDA device ({info.no_cuda_reason()}); "
                          "use 'auto' or 'cpu'")


def _validate_learning(cfg: Config, check_files: bool) -> None:
    image = cfg.data.dataset in ("fashion-mnist", "mnist", "cifar10")
    if cfg.model.name in ("lenet5", "cnn") and not image:
        raise ConfigError(f"model.name: {cfg.model.name!r} needs image data, not data.dataset = {cfg.data.dataset!r}")
    if cfg.model.name == "cnn" and cfg.data.dataset != "cifar10":
        raise ConfigError("model.name: 'cnn' is the CIFAR-10 model; use lenet5 for 28x28 images")
    if cfg.train.backend == "batched" and cfg.model.name not in ("logreg", "mlp"):
        raise ConfigError(f"train.backend: 'batched' trains logreg and mlp, not {cfg.model.name!r} "
                          "(use auto, loop or vmap)")
    if cfg.data.partition == "shards" and cfg.data.dataset == "synthetic" \
            and cfg.data.shards_per_node > cfg.data.synthetic_classes:
        raise ConfigError("data.shards_per_node: more than data.synthetic_classes")
    if cfg.train.local_epochs == 0 and cfg.train.local_steps == 0:
        raise ConfigError("train.local_epochs: 0 epochs and 0 local_steps means nodes never train")
    from heal_mpi.learning.datasets import train_size
    samples, n, part = train_size(cfg.data, read_files=check_files), cfg.nodes.count, cfg.data.partition
    cut = " (data.max_train)" if cfg.data.max_train and cfg.data.max_train <= samples else ""
    if cfg.data.samples_per_node and part == "shards":
        raise ConfigError("data.samples_per_node: nodes draw from an iid or dirichlet mix; shards split the data set")
    if part in ("iid", "dirichlet") and samples < n and not cfg.data.samples_per_node:
        raise ConfigError(f"nodes.count: {n} nodes but {cfg.data.dataset} has {samples} training samples{cut}: "
                          "every node needs one at least (or let each draw data.samples_per_node)")
    if part == "shards" and n * cfg.data.shards_per_node > samples:
        raise ConfigError(f"data.shards_per_node: {n} nodes x {cfg.data.shards_per_node} shards need "
                          f"{n * cfg.data.shards_per_node} training samples, {cfg.data.dataset} has {samples}{cut}")
    if check_files and image:
        from heal_mpi.learning.datasets import DatasetError, check_dataset_files
        try:
            check_dataset_files(cfg.data)
        except DatasetError as e:
            raise ConfigError(f"data.root: {e}") from None
