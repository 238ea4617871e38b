"""Run configuration: TOML sections as frozen dataclasses, overrides, validation.

Owns every option's name, type, default, allowed range and meaning (the `doc` in each
field's metadata; `heal-mpi config` prints them as the README's reference). The kinds of
protocol, overlay and fault event, the protocols' own options and the cross-key checks of
each kind come from the registries (heal_mpi/registry.py). Anything a
user can get wrong fails here, before any rank writes a byte, with one line naming the
dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heal_mpi.errors import ConfigError
from heal_mpi.fault_events import ChurnEvent, CrashEvent, HubCrashEvent  # noqa: F401 (the event types)
from heal_mpi.options import opt
from heal_mpi.registry import FAULT_EVENTS, NO_PROTOCOL, NO_PROTOCOL_OVERLAY, OVERLAYS, PROTOCOLS


# ----------------------------------------------------------------------------- sections

# Upper bound of the counts that size arrays and output rows (nodes, rounds, samples): far
# beyond what any machine holds, low enough that a typo fails here and not in an allocation.
COUNT_MAX = 10**9
# TOML integers are 64-bit and every integer ends up in NumPy or HDF5 as int64.
INT_MAX = 2**63 - 1

@dataclass(frozen=True)
class RunConfig:
    seed: int = opt(1, "global seed: every random draw is keyed by it", lo=0)
    rounds: int = opt(20, "number of rounds (one overlay cycle = one learning round)", lo=1, hi=COUNT_MAX)
    out: str = opt("results/run.h5", "HDF5 output path (the CLI's --out overrides it)")
    device: str = opt("auto", "auto = cuda:<local rank mod GPUs> when CUDA is available, else cpu",
                      choices=("auto", "cpu", "cuda"))
    threads: int = opt(0, "torch threads per rank; 0 = Slurm's cpus-per-task, else the host's cores divided by the ranks on it", lo=0)
    checkpoint_every: int = opt(0, "save a checkpoint every k rounds (SIGTERM/SIGUSR1 always save one); 0 = never",
                                lo=0)
    progress: str = opt("auto", "rank 0's progress: auto = a bar on a terminal outside mpirun, else one line per round",
                        choices=("auto", "bar", "lines", "none"))


@dataclass(frozen=True)
class NodesConfig:
    count: int = opt(20, "number of simulated nodes N (slots 0..N-1)", lo=1, hi=COUNT_MAX)


@dataclass(frozen=True)
class OverlayConfig:
    kind: str = opt("auto", "auto = the protocol's default: " + ", ".join(
        f"{name} {spec.default_overlay}" for name, spec in PROTOCOLS.items()), choices=("auto", *OVERLAYS))
    cache_size: int = opt(20, "c: out-view size of Elevator and Newscast, and links of a churn newcomer", lo=1)
    hubs: int = opt(10, "h: number of hubs Elevator elects (HEAL's h)", lo=1)
    preferred: str = opt("top-h", "Elevator variant: BACKWARD_REQUEST to the top-h or the top-c",
                         choices=("top-h", "top-c"))
    max_backward: int = opt(100, "most ids one BACKWARD_REQUEST returns", lo=1)
    servers: int = opt(5, "multistar (Gaia): number of servers, nodes 0..servers-1", lo=1)
    degree: int = opt(4, "regular: degree of the random regular graph", lo=1)
    snapshot_every: int = opt(0, "store every cache in /overlay/cache every k rounds; 0 = never", lo=0)


def _section(name: str, fields: list[tuple], parts) -> type:
    """A frozen section dataclass of `fields` plus the fields of every dataclass in `parts`
    (each kind's own options), in registry order, each name once."""
    seen = {f[0]: None for f in fields}
    for part in parts:
        for f in dataclasses.fields(part):
            if f.name in seen:
                if seen[f.name] is not None and seen[f.name] != (f.type, f.default, dict(f.metadata)):
                    raise TypeError(f"[{name}] option {f.name!r} is declared twice, differently")
                continue
            seen[f.name] = (f.type, f.default, dict(f.metadata))
            fields.append((f.name, f.type, field(default=f.default, metadata=f.metadata)))
    cls = dataclasses.make_dataclass(name, fields, frozen=True)
    cls.__module__ = __name__  # pickles and prints as heal_mpi.config.<name>
    return cls


ProtocolConfig = _section("ProtocolConfig", [
    ("kind", "str", opt("fedavg", "learning protocol; none = overlay only", choices=(*PROTOCOLS, NO_PROTOCOL))),
    ("fanout", "int", opt(1, "s: hubs a HEAL client sends to; peers an EL node sends to", lo=1)),
], [params for spec in PROTOCOLS.values() for params in spec.params])


@dataclass(frozen=True)
class DataConfig:
    dataset: str = opt("synthetic", "training data", choices=("synthetic", "fashion-mnist", "mnist", "cifar10"))
    root: str = opt("", "folder of the dataset files; empty = /usr/share/datasets/fashion-mnist for fashion-mnist")
    partition: str = opt("iid", "split over the nodes", choices=("iid", "dirichlet", "shards"))
    alpha: float = opt(0.5, "Dirichlet concentration (smaller = more label skew)", lo=0.0, lo_open=True)
    shards_per_node: int = opt(2, "classes per node for the shards partition", lo=1)
    local_test_fraction: float = opt(0.0, "fraction of each node's samples kept as its local test split",
                                     lo=0.0, hi=0.9)
    synthetic_features: int = opt(20, "synthetic: input features", lo=1, hi=COUNT_MAX)
    synthetic_classes: int = opt(4, "synthetic: classes", lo=2)
    synthetic_train: int = opt(4000, "synthetic: training samples", lo=1, hi=COUNT_MAX)
    synthetic_test: int = opt(1000, "synthetic: test samples", lo=1, hi=COUNT_MAX)
    synthetic_noise: float = opt(1.0, "synthetic: noise around the class centres (higher = harder)", lo=0.0)
    max_train: int = opt(0, "use only the first k training samples; 0 = all", lo=0)


@dataclass(frozen=True)
class ModelConfig:
    name: str = opt("logreg", "model", choices=("logreg", "mlp", "lenet5", "cnn"))
    hidden: int = opt(64, "mlp: hidden width", lo=1)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = opt("sgd", "local optimizer", choices=("sgd", "adam"))
    lr: float = opt(0.1, "learning rate", lo=0.0, lo_open=True)
    momentum: float = opt(0.0, "SGD momentum", lo=0.0, hi=1.0)
    weight_decay: float = opt(0.0, "L2 weight decay", lo=0.0)
    batch_size: int = opt(32, "mini-batch size", lo=1)
    local_epochs: int = opt(1, "passes over the node's data per round", lo=0)
    local_steps: int = opt(0, "mini-batches per round instead of epochs, when > 0", lo=0)
    backend: str = opt("auto", "training backend (see learning/population.py for the auto rule)",
                       choices=("auto", "loop", "vmap"))
    on_replace: str = opt("keep", "optimizer state when a protocol replaces a node's model",
                          choices=("keep", "reset"))


@dataclass(frozen=True)
class EvalConfig:
    every: int = opt(1, "evaluate every k rounds (and always at the last round)", lo=1)
    max_samples: int = opt(0, "evaluate on a fixed random subset of this many test samples; 0 = all", lo=0)
    nodes_fraction: float = opt(1.0, "fraction of nodes evaluated each time", lo=0.0, hi=1.0, lo_open=True)
    on: str = opt("global", "test on the global test set or on each node's local split",
                  choices=("global", "local"))


FaultsConfig = _section("FaultsConfig", [
    ("message_loss", "float", opt(0.0, "probability that any one simulated message is lost", lo=0.0, hi=1.0)),
    *[(name, f"list[{spec.event.__name__}]", opt([], spec.doc)) for name, spec in FAULT_EVENTS.items()],
], [])


@dataclass(frozen=True)
class AdversaryConfig:
    byzantine: int = opt(0, "number of Byzantine nodes, chosen once from the seed (never crash, never run Lift)",
                         lo=0)
    byzantine_fraction: float = opt(0.0, "Byzantine nodes as a fraction of nodes.count (instead of byzantine)",
                                    lo=0.0, hi=1.0)
    kind: str = opt("none", "what they answer in Elevator: none (honest), passive (empty caches), active and "
                    "noncoordinated (own cache, one entry swapped for itself), coordinated (Byzantine ids only)",
                    choices=("none", "passive", "active", "noncoordinated", "coordinated"))
    backward_mode: str = opt("honest", "their BACKWARD_REQUEST answer: honest (the calibrated default, see "
                             "README), paper_second_arg (the spec's reading of the thesis), or no reply",
                             choices=("paper_second_arg", "honest", "no_reply"))
    per_request: bool = opt(True, "forge one reply per (sender, requester), as the thesis' per-request shuffle; "
                            "false: one per sender and round")
    models: str = opt("honest", "what they send as models: honest, noise (Gaussian), zero, or sign_flip "
                      "(model before the last training minus poison_scale times the update)",
                      choices=("honest", "noise", "zero", "sign_flip"))
    poison_scale: float = opt(1.0, "noise: std of the Gaussian; sign_flip: lambda", lo=0.0)
    lift_round: int = opt(-1, "Lift: the round at whose start every correct node redraws its hubs; -1 = never",
                          lo=-1)
    lift_period: int = opt(0, "repeat Lift every k rounds after lift_round (our extension); 0 = once", lo=0)
    lift_prng: str = opt("java_lcg", "Lift's generator, seeded from the sorted hub ids",
                         choices=("java_lcg", "pcg64"))


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    adversary: AdversaryConfig = field(default_factory=AdversaryConfig)

    @property
    def overlay_kind(self) -> str:
        """The overlay actually run (resolves overlay.kind = auto)."""
        if self.overlay.kind != "auto":
            return self.overlay.kind
        if self.protocol.kind == NO_PROTOCOL:
            return NO_PROTOCOL_OVERLAY
        return PROTOCOLS[self.protocol.kind].default_overlay

    def replace(self, section: str, **changes) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # name -> section class
EVENT_TYPES = {name: spec.event for name, spec in FAULT_EVENTS.items()}


# ----------------------------------------------------------------------------- parsing

def _check_value(key: str, f: dataclasses.Field, value: Any) -> Any:
    """Type- and range-check one scalar; returns it converted (int -> float where declared)."""
    t = f.type if isinstance(f.type, str) else f.type.__name__
    meta = f.metadata
    if t == "int | str":
        if isinstance(value, str) and value == "all" or _is_int(value) and 1 <= value <= INT_MAX:
            return value
        raise ConfigError(f'{key}: expected a positive integer or "all", got {_short(value)}')
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_short(value)}")
    elif t == "int":
        if not _is_int(value):
            raise ConfigError(f"{key}: expected an integer, got {_short(value)}")
        if abs(value) > INT_MAX:
            raise ConfigError(f"{key}: {_short(value)} does not fit in 64 bits")
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        # nan passes every < and > test below, and inf reaches the run as a silent nan loss
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_short(value)}")
        value = number
    elif t == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_short(value)}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: {_short(value)} is not one of {', '.join(map(repr, meta['choices']))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        raise ConfigError(f"{key}: {_short(value)} must be {'>' if meta.get('lo_open') else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {_short(value)} must be <= {hi}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    """repr(value) on one line and at most 60 characters: error messages stay one readable line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _build(cls, table: dict, prefix: str, required: bool = False):
    """cls from one TOML table; `required`: every field must be given (fault events have no
    meaningful defaults: a crash without its fraction would silently crash nobody)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {_short(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in table.items():
        key = f"{prefix}.{_name(name)}"
        if name not in fields:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(fields)})")
        if name in EVENT_TYPES and cls is FaultsConfig:
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list of tables like [{{round = 10, ...}}]")
            values[name] = [_build(EVENT_TYPES[name], ev, f"{key}[{i}]", required=True) for i, ev in enumerate(value)]
        else:
            values[name] = _check_value(key, fields[name], value)
    missing = [name for name in fields if name not in values]
    if required and missing:
        raise ConfigError(f"{prefix}: missing {', '.join(missing)} (give every key: {', '.join(fields)})")
    return cls(**values)


def _name(name: str) -> str:
    """A TOML key as written in a message: bare when it can be, else quoted (one line either way)."""
    return name if name and all(ch.isalnum() or ch in "_-" for ch in name) and name.isascii() else json.dumps(name)


def from_dict(raw: dict) -> Config:
    """Build a Config from parsed TOML, checking every key, type and range."""
    sections = {}
    for name, table in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{_name(name)}: unknown section (known: {', '.join(SECTIONS)})")
        sections[name] = _build(SECTIONS[name], table, name)
    return Config(**sections)


def parse_override(text: str) -> tuple[str, str, Any]:
    """'section.key=value' -> (section, key, value); the value is read as TOML, else as a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text if text.isprintable() else json.dumps(text)}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML file (None = defaults only), apply --set overrides, check everything."""
    raw: dict = {}
    if path is not None:
        raw = read_toml(Path(path))
    for text in overrides:
        section, key, value = parse_override(text)
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"{_name(section)}: expected a table")
        raw[section][key] = value
    return from_dict(raw)


def read_toml(path: Path) -> dict:
    """The parsed file; ConfigError naming the path when it cannot be read as TOML text."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None


# ----------------------------------------------------------------------------- contradictions

def validate(cfg: Config, n_ranks: int = 1, check_files: bool = True, check_device: bool = True) -> Config:
    """Checks across keys (the per-key checks ran in `load`). Returns cfg unchanged.

    `check_files` and `check_device` also check this machine: the dataset files, and a GPU
    when run.device = "cuda" (turn them off where the run will happen elsewhere).
    """
    n, ov, rounds = cfg.nodes.count, cfg.overlay, cfg.run.rounds
    if n_ranks > n:
        raise ConfigError(f"nodes.count: {n} nodes cannot be split over {n_ranks} ranks")
    if check_device and cfg.run.device == "cuda":
        _check_cuda()
    kind = cfg.overlay_kind
    OVERLAYS[kind].check(cfg)
    spec = PROTOCOLS.get(cfg.protocol.kind)
    if spec is not None:
        if spec.overlays and kind not in spec.overlays:
            raise ConfigError(f"overlay.kind: protocol.kind = {cfg.protocol.kind!r} runs on {spec.overlays[0]}, "
                              f"not {kind!r}")
        spec.check(cfg)
    for name, fault in FAULT_EVENTS.items():
        for i, ev in enumerate(getattr(cfg.faults, name)):
            key = f"faults.{name}[{i}]"
            first = "round" if hasattr(ev, "round") else "start"
            if getattr(ev, first) >= rounds:
                raise ConfigError(f"{key}.{first}: {getattr(ev, first)} is past the last round {rounds - 1}")
            fault.check(key, ev, cfg)
    _validate_adversary(cfg)
    if cfg.protocol.kind != NO_PROTOCOL:
        _validate_learning(cfg, check_files)
    return cfg


def _validate_adversary(cfg: Config) -> None:
    adv, n = cfg.adversary, cfg.nodes.count
    if adv.byzantine and adv.byzantine_fraction:
        raise ConfigError("adversary.byzantine_fraction: set either adversary.byzantine or the fraction, not both")
    from heal_mpi.registry import protected_slots
    room = n - len(protected_slots(cfg)) - 1  # never a protected server, and one correct node at least
    key = "adversary.byzantine_fraction" if adv.byzantine_fraction else "adversary.byzantine"
    if byzantine_count(cfg) > room:
        raise ConfigError(f"{key}: {byzantine_count(cfg)} Byzantine nodes, but only {room} of nodes.count = {n} "
                          "can be (servers are protected, one node must stay correct)")
    if adv.kind != "none" and cfg.overlay_kind != "elevator":
        raise ConfigError(f"adversary.kind: {adv.kind!r} attacks Elevator, not overlay.kind = {cfg.overlay_kind!r}")
    if adv.lift_round >= cfg.run.rounds:
        raise ConfigError(f"adversary.lift_round: {adv.lift_round} is past the last round {cfg.run.rounds - 1}")
    if adv.lift_round >= 0 and cfg.overlay_kind != "elevator":
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
    if cfg.data.partition == "shards" and cfg.data.dataset == "synthetic" \
            and cfg.data.shards_per_node > cfg.data.synthetic_classes:
        raise ConfigError("data.shards_per_node: more than data.synthetic_classes")
    if cfg.train.local_epochs == 0 and cfg.train.local_steps == 0:
        raise ConfigError("train.local_epochs: 0 epochs and 0 local_steps means nodes never train")
    if check_files and image:
        from heal_mpi.learning.datasets import DatasetError, check_dataset_files
        try:
            check_dataset_files(cfg.data)
        except DatasetError as e:
            raise ConfigError(f"data.root: {e}") from None


# ----------------------------------------------------------------------------- writing

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if dataclasses.is_dataclass(v):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in dataclasses.asdict(v).items()) + "}"
    raise TypeError(v)


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (stored in every output file; loads back to cfg)."""
    out = []
    for section in dataclasses.fields(cfg):
        out.append(f"[{section.name}]")
        sec = getattr(cfg, section.name)
        for f in dataclasses.fields(sec):
            out.append(f"{f.name} = {_toml_value(getattr(sec, f.name))}")
        out.append("")
    return "\n".join(out)


def reference_markdown() -> str:
    """Every option with its default and meaning, as markdown (the README's config reference)."""
    lines = []
    for section in dataclasses.fields(Config):
        lines += [f"**[{section.name}]**", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(section.default_factory()):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            doc = f.metadata["doc"]
            if f.metadata.get("choices"):
                doc += " (" + " \\| ".join(f.metadata["choices"]) + ")"
            lines.append(f"| `{f.name}` | `{_toml_value(default)}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


README_START = "<!-- config-reference:start"
README_END = "<!-- config-reference:end -->"


def update_readme(path: str | Path) -> None:
    """Replace the README's config-reference block with `reference_markdown()`."""
    text = Path(path).read_text()
    head, rest = text.split(README_START, 1)
    marker_line, _ = rest.split("\n", 1)
    _, tail = rest.split(README_END, 1)
    Path(path).write_text(f"{head}{README_START}{marker_line}\n\n{reference_markdown()}\n{README_END}{tail}")
