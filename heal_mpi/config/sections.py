"""The config's sections: one frozen dataclass per TOML table, every field an `opt` with its doc.

Three sections name kinds from the registries (heal_mpi/registry.py) and hold the chosen
kind's own options, from a sub-table named after it: `[protocol.<kind>]`, `[overlay.<kind>]`
and `[adversary.<attack>]` (their `options`). `[faults]` holds one list per registered fault
kind (`events`). So the choices and sections follow what is registered, plug-ins included.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from heal_mpi.config.fields import COUNT_MAX
from heal_mpi.options import opt
from heal_mpi.registry import ATTACKS, NO_PROTOCOL, NO_PROTOCOL_OVERLAY, OVERLAYS, PROTOCOLS


def _internal(**kw):
    """A field the config fills itself (the chosen kinds' options, the fault lists): not a TOML key."""
    return field(metadata={"internal": True}, **(kw or {"default": None}))


@dataclass(frozen=True)
class RunConfig:
    seed: int = opt(1, "global seed: every random draw is keyed by it", lo=0)
    rounds: int = opt(20, "number of rounds (one overlay cycle = one learning round)", lo=1, hi=COUNT_MAX)
    out: str = opt("results/run.h5", "HDF5 output path (the CLI's --out overrides it)")
    device: str = opt("auto", "auto = cuda:<local rank mod GPUs> when CUDA is available, else cpu",
                      choices=("auto", "cpu", "cuda"))
    threads: int = opt(0, "torch threads per rank; 0 = Slurm's cpus-per-task (1 in a Slurm job without it), else "
                       "the host's cores divided by the ranks on it", lo=0)
    checkpoint_every: int = opt(0, "save a checkpoint every k rounds (SIGTERM/SIGUSR1 always save one); 0 = never",
                                lo=0)
    progress: str = opt("auto", "rank 0's progress: auto = a bar on a terminal outside mpirun, else one line per round",
                        choices=("auto", "bar", "lines", "none"))


@dataclass(frozen=True)
class NodesConfig:
    count: int = opt(20, "number of simulated nodes N (slots 0..N-1)", lo=1, hi=COUNT_MAX)


@dataclass(frozen=True)
class ProtocolConfig:
    NAMESPACES = PROTOCOLS  # [protocol.<kind>]: each protocol's own options

    kind: str = opt("fedavg", "the learning protocol; none = the overlay alone", kinds=PROTOCOLS, also=(NO_PROTOCOL,))
    options: Any = _internal()  # the chosen protocol's options ([protocol.<kind>]); None: it has none

    @property
    def name(self) -> str:
        """The chosen protocol's registered name (its namespace), also for a plug-in's "module:SPEC"."""
        return NO_PROTOCOL if self.kind == NO_PROTOCOL else PROTOCOLS.get(self.kind, "protocol.kind").name


@dataclass(frozen=True)
class OverlayConfig:
    NAMESPACES = OVERLAYS  # [overlay.<kind>]: each overlay's own options

    kind: str = opt("auto", "auto = the protocol's default (see the table of protocols)", kinds=OVERLAYS,
                    also=("auto",))
    cache_size: int = opt(20, "c: out-view size of Elevator and Newscast, and links of a churn newcomer", lo=1)
    hubs: int = opt(10, "h: number of hubs Elevator elects (HEAL's h)", lo=1)
    snapshot_every: int = opt(0, "store every cache in /overlay/cache every k rounds; 0 = never", lo=0)
    semantics: str = opt("snapshot", "a cycle's order: snapshot (every node acts on the views of the cycle's "
                         "start, the default) or sequential (the nodes take turns over a keyed permutation, each "
                         "seeing what the turns before changed: PeerSim's order; Elevator and Newscast)",
                         choices=("snapshot", "sequential"))
    substeps: int = opt(0, "sequential: the turns of a cycle, groups of nodes that act together; 0 = one node a "
                        "turn (PeerSim's order exactly; one collective step each, so slow at large N)", lo=0)
    options: Any = _internal()  # the overlay's options ([overlay.<kind>]); None: it has none


@dataclass(frozen=True)
class DataConfig:
    dataset: str = opt("synthetic", "training data", choices=("synthetic", "fashion-mnist", "mnist", "cifar10"))
    root: str = opt("", "folder of the dataset files; empty = /usr/share/datasets/fashion-mnist for fashion-mnist")
    partition: str = opt("iid", "split over the nodes", choices=("iid", "dirichlet", "shards"))
    alpha: float = opt(0.5, "Dirichlet concentration (smaller = more label skew)", lo=0.0, lo_open=True)
    shards_per_node: int = opt(2, "classes per node for the shards partition", lo=1)
    samples_per_node: int = opt(0, "cross-device data: each node draws this many training samples with replacement "
                                "(iid: uniformly; dirichlet: from its own class mix ~ Dir(alpha)), so nodes may "
                                "outnumber samples; 0 = split the data set over the nodes (partition)", lo=0)
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
    backend: str = opt("auto", "training backend: auto = batched for logreg and mlp, else vmap on "
                       "CUDA and loop on CPU (learning/backends.py)", choices=("auto", "loop", "vmap", "batched"))
    on_replace: str = opt("keep", "optimizer state when a protocol replaces a node's model",
                          choices=("keep", "reset"))


@dataclass(frozen=True)
class EvalConfig:
    every: int = opt(1, "evaluate every k rounds (and always at the last round)", lo=1)
    max_samples: int = opt(0, "evaluate on a fixed random subset of this many test samples; 0 = all", lo=0)
    nodes_fraction: float = opt(1.0, "fraction of nodes evaluated each time", lo=0.0, hi=1.0, lo_open=True)
    on: str = opt("global", "test on the global test set or on each node's local split",
                  choices=("global", "local"))


@dataclass(frozen=True)
class FaultsConfig:
    message_loss: float = opt(0.0, "probability that any one simulated message is lost", lo=0.0, hi=1.0)
    events: dict = _internal(default_factory=dict)  # fault kind -> tuple of its events, for every registered kind

    def __post_init__(self):
        from heal_mpi.registry import FAULTS
        given = dict(self.events)
        object.__setattr__(self, "events", {name: tuple(given.get(name, ())) for name in FAULTS.names()})


@dataclass(frozen=True)
class AdversaryConfig:
    NAMESPACES = ATTACKS  # [adversary.<attack>]: a plug-in attack's own options

    byzantine: int = opt(0, "number of Byzantine nodes, chosen once from the seed (never crash, never run Lift)",
                         lo=0)
    byzantine_fraction: float = opt(0.0, "Byzantine nodes as a fraction of nodes.count (instead of byzantine)",
                                    lo=0.0, hi=1.0)
    kind: str = opt("none", "the overlay attack, what they answer in Elevator (see the table of attacks); none: "
                    "honest", kinds=ATTACKS, also=("none",))
    backward_mode: str = opt("honest", "their BACKWARD_REQUEST answer: honest (the calibrated default, see "
                             "README), paper_second_arg (the spec's reading of the thesis), or no reply",
                             choices=("paper_second_arg", "honest", "no_reply"))
    per_request: bool = opt(True, "forge one reply per (sender, requester), as the thesis' per-request shuffle; "
                            "false: one per sender and round")
    models: str = opt("honest", "the model attack, what they send as models (see the table of attacks); honest: "
                      "their real models", kinds=ATTACKS, also=("honest",))
    poison_scale: float = opt(1.0, "noise: std of the Gaussian; sign_flip: lambda", lo=0.0)
    lift_round: int = opt(-1, "Lift: the round at whose start every correct node redraws its hubs; -1 = never",
                          lo=-1)
    lift_period: int = opt(0, "repeat Lift every k rounds after lift_round (our extension); 0 = once", lo=0)
    lift_prng: str = opt("java_lcg", "Lift's generator, seeded from the sorted hub ids",
                         choices=("java_lcg", "pcg64"))
    options: dict = _internal(default_factory=dict)  # attack name -> its options ([adversary.<attack>])

    @property
    def attacks(self) -> tuple[str, ...]:
        """The attacks this run configures (none, one or both of kind and models)."""
        return tuple(a for a, honest in ((self.kind, "none"), (self.models, "honest")) if a != honest)


DISTRIBUTIONS = ("constant", "uniform", "lognormal")


@dataclass(frozen=True)
class TimeConfig:
    enabled: bool = opt(False, "simulated time: each node's device and link, and each round's timeline in simulated "
                        "seconds (/rounds/sim_seconds); off: no clock, results exactly as without it")
    compute: float = opt(1000.0, "sample-gradients per second of a node (the median under lognormal)", lo=0.0,
                         lo_open=True)
    compute_dist: str = opt("constant", "how compute varies over the nodes: constant, uniform (compute × U(1 − s, "
                            "1 + s)) or lognormal (compute × exp(s Z)), s = compute_spread", choices=DISTRIBUTIONS)
    compute_spread: float = opt(0.0, "s of compute_dist: the half-width of uniform, σ of lognormal", lo=0.0)
    uplink: float = opt(1.0e6, "bytes per second a node sends", lo=0.0, lo_open=True)
    downlink: float = opt(4.0e6, "bytes per second a node receives", lo=0.0, lo_open=True)
    bandwidth_dist: str = opt("constant", "how uplink and downlink vary (one draw scales both)",
                              choices=DISTRIBUTIONS)
    bandwidth_spread: float = opt(0.0, "s of bandwidth_dist", lo=0.0)
    latency: float = opt(0.02, "seconds of a node's access link; a message takes the sum of both ends'", lo=0.0)
    latency_dist: str = opt("constant", "how latency varies", choices=DISTRIBUTIONS)
    latency_spread: float = opt(0.0, "s of latency_dist", lo=0.0)
    slow_fraction: float = opt(0.0, "this fraction of the nodes (drawn from the seed) is slow_factor times slower in "
                               "compute and bandwidth", lo=0.0, hi=1.0)
    slow_factor: float = opt(1.0, "how many times slower the slow nodes are", lo=1.0)
    devices_csv: str = opt("", "a CSV file with one row per node (columns node, compute, uplink, downlink, "
                           "latency) instead of the draws; empty = draw")
    deadline: float = opt(0.0, "seconds an aggregator (FedAvg's server, Gaia's servers, HEAL's hubs in both of their "
                          "steps) waits for models, from when it is ready for the step; a model done later is dropped "
                          "(/rounds/late_dropped) and its sender still gets the answer; 0 = wait for all", lo=0.0)
    quorum: float = opt(1.0, "fraction q of the models sent to it (lost ones included) an aggregator waits for: it "
                        "takes the first ceil(q × sent) to arrive and drops the rest (FedScale's over-commitment); "
                        "1 = all", lo=0.0, hi=1.0, lo_open=True)
    late: str = opt("drop", "what an aggregator does with a model done after its deadline or beyond its quorum: drop "
                    "it, or apply it in the next round's same step, its weight times time.staleness",
                    choices=("drop", "next"))
    staleness: float = opt(0.5, "the weight of a late model applied in the next round (time.late = 'next'), relative "
                           "to a fresh one", lo=0.0, hi=1.0, lo_open=True)
    online_fraction: float = opt(1.0, "diurnal availability: each node is online this fraction of every simulated "
                                 "day, from a phase drawn per node; offline it is not live (it neither trains nor "
                                 "answers, and the overlays drop it), back online it keeps its model; servers and "
                                 "Byzantine nodes stay online; 1 = always online", lo=0.0, hi=1.0, lo_open=True)
    day: float = opt(86400.0, "seconds of a simulated day (online_fraction)", lo=0.0, lo_open=True)
    availability_csv: str = opt("", "a CSV file of online intervals (columns node, start, end: online in [start, "
                                "end) simulated seconds) instead of online_fraction; a node without a row is always "
                                "online; empty = none")
    slice: float = opt(0.0, "asynchronous rounds (Gossip, Epidemic): a round is this many simulated seconds, a node "
                       "acts in the rounds in which its own timer fires (every period: its training plus sending and "
                       "receiving one model, times 1 ± jitter), and a message whose transfer ends after its round "
                       "arrives in a later one; 0 = synchronous rounds", lo=0.0)
    jitter: float = opt(0.0, "each period of a node's timer is multiplied by U(1 − jitter, 1 + jitter)", lo=0.0,
                        hi=1.0)


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
    time: TimeConfig = field(default_factory=TimeConfig)

    def __post_init__(self):
        """The chosen kinds' options: kept when they are the kind's, else its defaults (a new Config,
        or `replace` that changed a kind)."""
        def fit(current, spec):
            want = spec.options if spec is not None else None
            return current if want is not None and type(current) is want else (want() if want else None)

        proto = None if self.protocol.kind == NO_PROTOCOL else PROTOCOLS.get(self.protocol.kind, "protocol.kind")
        object.__setattr__(self, "protocol", dataclasses.replace(self.protocol, options=fit(self.protocol.options,
                                                                                              proto)))
        over = OVERLAYS.get(self.overlay_kind, "overlay.kind")
        object.__setattr__(self, "overlay", dataclasses.replace(self.overlay, options=fit(self.overlay.options, over)))
        adv = self.adversary
        attacks = {a: fit(adv.options.get(ATTACKS.get(a, "adversary.kind").name), ATTACKS.get(a, "adversary.kind"))
                   for a in adv.attacks}
        object.__setattr__(self, "adversary", dataclasses.replace(adv, options={
            ATTACKS.get(a, "adversary.kind").name: o for a, o in attacks.items() if o is not None}))

    @property
    def overlay_kind(self) -> str:
        """The overlay actually run (resolves overlay.kind = auto)."""
        if self.overlay.kind != "auto":
            return self.overlay.kind
        if self.protocol.kind == NO_PROTOCOL:
            return NO_PROTOCOL_OVERLAY
        return PROTOCOLS.get(self.protocol.kind, "protocol.kind").default_overlay

    def replace(self, section: str, **changes) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def chosen_options(cfg: Config, section: str) -> dict:
    """{kind name: its options} of the kinds a section chose (its sub-tables)."""
    if section == "protocol":
        return {} if cfg.protocol.kind == NO_PROTOCOL else {cfg.protocol.name: cfg.protocol.options}
    if section == "overlay":
        return {OVERLAYS.get(cfg.overlay_kind, "overlay.kind").name: cfg.overlay.options}
    return dict(cfg.adversary.options) if section == "adversary" else {}


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # name -> section class
