"""The HDF5 file as a contract: every dataset and attribute a run's file holds, its shape, dtype and meaning.

Every file has every dataset below, whatever the protocol, overlay or adversary: a value that
does not apply is the fill, NaN for floats and -1 for integers (/rounds/hubs_active of a Gossip
run, /rounds/byzantine of a run without Byzantine nodes), and the analysis reads -1 in /rounds
as "does not apply". One quantity has one dtype everywhere: counts, bytes and ids are int64,
flags int8, per-node accuracies float32, per-round means and seconds float64. The writer
creates the datasets from this table, and the README's HDF5 section is generated from it
(`make docs`; tests/test_output.py checks a real file against it).

Shapes: R rounds, N nodes, h = overlay.hubs (the width of hub_ids), S view snapshots, c the
width of a view, K the classes of the data set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    path: str
    shape: str   # in the letters above, e.g. "R, N"
    dtype: str
    doc: str


F64, I64, I8, F32 = "float64", "int64", "int8", "float32"
HUB_WORDS = ("**overlay hubs** (`/rounds/hubs`, `/overlay/hub_ids`): live nodes in at least 99 % of the live "
             "views, by in-degree; **self-declared hubs** (`/nodes/is_hub`): nodes that list themselves among "
             "their own hubs; **aggregating hubs** (`/rounds/hubs_active`): nodes that averaged client models "
             "this round")

DATASETS = [
    Dataset("rounds/alive", "R", I64, "live nodes after the round's faults"),
    Dataset("rounds/acc_mean", "R", F64, "mean test accuracy over the evaluated live honest nodes (NaN when not "
            "evaluated)"),
    Dataset("rounds/acc_std", "R", F64, "their standard deviation"),
    Dataset("rounds/acc_sem", "R", F64, "the standard error of `acc_mean` as the mean of every live honest node, "
            "from evaluating a sample of them (`eval.nodes_fraction`; finite-population corrected, 0 when all "
            "are evaluated); not the error of the test subset (`eval.max_samples`)"),
    Dataset("rounds/loss_mean", "R", F64, "their mean test loss"),
    Dataset("rounds/train_loss_mean", "R", F64, "mean training loss of the honest nodes that trained (NaN when "
            "none did)"),
    Dataset("rounds/messages", "R", I64, "**simulated** messages, one per delivered or lost edge: model + overlay "
            "+ control"),
    Dataset("rounds/bytes", "R", I64, "their simulated bytes"),
    Dataset("rounds/model_messages", "R", I64, "messages carrying a model (4 bytes a parameter)"),
    Dataset("rounds/model_bytes", "R", I64, "their bytes"),
    Dataset("rounds/overlay_messages", "R", I64, "overlay requests and replies (16 bytes + 8 per id)"),
    Dataset("rounds/overlay_bytes", "R", I64, "their bytes"),
    Dataset("rounds/control_messages", "R", I64, "a protocol's scalar messages, an `Exchange` (16 bytes + 8 per "
            "value): D-PSGD's links and degrees"),
    Dataset("rounds/control_bytes", "R", I64, "their bytes"),
    Dataset("rounds/mpi_bytes", "R", I64, "bytes the simulator really moved between ranks"),
    Dataset("rounds/staged_bytes", "R", I64, "model bytes copied between device and host to cross ranks (0 on one "
            "rank)"),
    Dataset("rounds/hubs", "R", I64, "overlay hubs: live nodes with in-degree >= 99 % of the live count"),
    Dataset("rounds/max_in_degree", "R", I64, "the largest in-degree"),
    Dataset("rounds/hubs_active", "R", I64, "aggregating hubs: nodes that averaged client models this round "
            "(HEAL, FedAvg, Gaia; -1 otherwise)"),
    Dataset("rounds/backward_evicted", "R", I64, "Elevator: backward-set recordings pushed out of the rings "
            "(-1 otherwise)"),
    Dataset("rounds/byzantine", "R", I64, "live Byzantine nodes (-1 without an adversary)"),
    Dataset("rounds/byzantine_hubs", "R", I64, "Byzantine nodes among the overlay hubs (-1 without an adversary)"),
    Dataset("rounds/hubs_strict", "R", I64, "nodes in every other live view (-1 without an adversary)"),
    Dataset("rounds/byzantine_hubs_strict", "R", I64, "the Byzantine ones among them (-1 without an adversary)"),
    Dataset("rounds/byzantine_acc_mean", "R", F64, "the Byzantine nodes' mean accuracy (`acc_mean` leaves them "
            "out; NaN without an adversary)"),
    Dataset("rounds/evaluated_models", "R", I64, "distinct models evaluated"),
    Dataset("rounds/train_samples", "R", I64, "sample-gradients computed"),
    Dataset("rounds/sim_seconds", "R", F64, "the round's simulated duration: until its last live node is done "
            "(`[time]`; NaN without it)"),
    Dataset("rounds/sim_time", "R", F64, "simulated seconds since the run began, at the round's end (NaN without "
            "`[time]`)"),
    Dataset("rounds/late_dropped", "R", I64, "models an aggregator did not take in its round: done after its "
            "`time.deadline`, or beyond its `time.quorum`; dropped, or applied next round with `time.late = \"next\"` "
            "(-1 without `[time]`)"),
    Dataset("rounds/in_flight", "R", I64, "models sent and not yet arrived at the round's end (asynchronous rounds, "
            "`time.slice`; -1 without them)"),
    *[Dataset(f"rounds/seconds_{p}", "R", F64, f"rank 0's wall time in the {p} phase")
      for p in ("faults", "overlay", "train", "mix", "evaluate", "record")],
    Dataset("nodes/acc", "R, N", F32, "per-node test accuracy (NaN when not evaluated or dead)"),
    Dataset("nodes/loss", "R, N", F32, "per-node test loss (NaN when not evaluated or dead)"),
    Dataset("nodes/alive", "R, N", I8, "1 for a live node (not crashed, and online under a `[time]` availability "
            "schedule)"),
    Dataset("nodes/incarnation", "R, N", I64, "churn generation of each slot (0: the original node)"),
    Dataset("nodes/in_degree", "R, N", I64, "in-degree among the live views"),
    Dataset("nodes/is_hub", "R, N", I8, "1 for a self-declared hub: the node is in its own hub list"),
    Dataset("nodes/is_byzantine", "R, N", I8, "1 for a Byzantine node"),
    Dataset("nodes/msgs_sent", "R, N", I64, "simulated messages sent by each node"),
    Dataset("nodes/msgs_recv", "R, N", I64, "simulated messages received"),
    Dataset("nodes/bytes_sent", "R, N", I64, "simulated bytes sent"),
    Dataset("nodes/bytes_recv", "R, N", I64, "simulated bytes received"),
    Dataset("nodes/finish_time", "R, N", F32, "simulated seconds from the round's start until the node was done "
            "(NaN when dead or without `[time]`)"),
    Dataset("nodes/idle_time", "R, N", F32, "the round's simulated duration less the node's busy time (training, "
            "sending, receiving, the overlay; NaN when dead or without `[time]`; in asynchronous rounds a node's work "
            "counts in the slice it began in, so it may exceed the slice)"),
    Dataset("nodes/acted", "R, N", I8, "1 when the node's timer fired this round (asynchronous rounds, `time.slice`; "
            "-1 without them)"),
    Dataset("overlay/hub_ids", "R, h", I64, "the overlay hubs, by in-degree then id, -1 padded"),
    Dataset("overlay/cache", "S, N, c", I64, "every view every `overlay.snapshot_every` rounds (S = 0 without)"),
    Dataset("overlay/snapshot_rounds", "S", I64, "the round of each snapshot"),
    Dataset("partition/samples", "N", I64, "training samples of each node (0 for an overlay-only run)"),
    *[Dataset(f"devices/{name}", "N", F64, f"{doc} of each node (`[time]`; NaN without it)")
      for name, doc in (("compute", "sample-gradients per second"), ("uplink", "uplink bytes per second"),
                        ("downlink", "downlink bytes per second"), ("latency", "access-link latency in seconds"))],
    Dataset("partition/labels", "N, K", I64, "training samples of each node per class: the data skew (K = 0 for an "
            "overlay-only run)"),
]
BY_PATH = {d.path: d for d in DATASETS}
PROTOCOL_COUNTS = "rounds/<name>"  # what a protocol's round returns, by name (int64): e.g. a plug-in's counts

ATTRIBUTES = {
    "config": "the resolved config as TOML (`tomllib.loads` reads it back)",
    "method": "the protocol that ran (its registered name)",
    "overlay": "the overlay that ran",
    "rounds_completed": "rounds whose rows are complete (updated and flushed after every round)",
    "threads_per_rank": "torch intra-op threads each rank used (results match across rank counts only at equal "
                        "threads)",
    "ranks": "MPI ranks",
    "devices": "the torch device of rank 0",
    "hdf5_driver": "`mpio` (every rank writes its block) or `rank0-gather`",
    "version": "heal_mpi's version",
    "git_revision": "the source revision, when known",
    "mpi_library": "the MPI library",
    "h5py_version": "h5py's version",
    "hdf5_version": "HDF5's version",
    "torch_version": "torch's version",
    "hostname": "rank 0's host",
}


def fill(dtype: str):
    """The value of a row not written (or not applying): NaN, or -1."""
    return float("nan") if dtype.startswith("float") else -1


def shape(d: Dataset, sizes: dict) -> tuple[int, ...]:
    """The dataset's shape for these sizes {"R": .., "N": .., ...}."""
    return tuple(sizes[s.strip()] for s in d.shape.split(","))


def per_node(d: Dataset) -> str:
    """"rounds" for a dataset of one row of nodes per round or snapshot ([R, N, ...], [S, N, ...]),
    "table" for one of a row per node ([N, ...]), "" for the others."""
    dims = [s.strip() for s in d.shape.split(",")]
    return "table" if dims[0] == "N" else "rounds" if dims[1:2] == ["N"] else ""


def markdown() -> str:
    """The README's HDF5 layout table and attribute list."""
    lines = ["| path | shape | dtype | meaning |", "|---|---|---|---|"]
    lines += [f"| `/{d.path}` | [{d.shape}] | {d.dtype} | {d.doc} |" for d in DATASETS]
    lines.append(f"| `/{PROTOCOL_COUNTS}` | [R] | float64 | a protocol's own per-round sums (its round's return "
                 "value), e.g. a plug-in's |")
    lines += ["", "| attribute | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {doc} |" for name, doc in ATTRIBUTES.items()]
    lines += ["", "Hubs: " + HUB_WORDS + "."]
    return "\n".join(lines) + "\n"
