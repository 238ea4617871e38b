"""The steps a protocol yields: *what* moves in a round. The engine (engine.py) does the *how*.

A protocol's `round` is a generator over NumPy arrays only (no torch, no MPI):

    loss = yield Train(nodes)                 # local training of these local rows
    got = yield Mix(purpose, src, dst, ...)   # rows along edges -> a Received at the receivers
    back = yield Reply(purpose, to=got, ...)  # each receiver answers along got's delivered edges
    yield Assign(got, nodes, own_weight)      # these nodes take their mean of a result
    heard = yield Exchange(purpose, src, dst, values)  # scalars only, each edge kept: who sent what
    held = yield Snapshot(nodes)              # keep these rows as they are now ...
    yield Train(nodes, start=held)            # ... and later train from them, adding the update

Mix, Reply and Exchange communicate: every rank must yield them in the same order (the
engine checks it at each one and at the end of the round: a rank that yields another step
fails with a message naming both ranks, it does not hang). Train, Assign and Snapshot stay
on the rank. Results handed back to the protocol expose only NumPy arrays (`counts`,
`weights`, `values`, `messages`); the rows stay inside the engine, on the rows' device.

Ids: `src` and `nodes` are *local rows* (0..n_local-1), `dst` are *global ids*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as _Typing

import numpy as np


class Received(_Typing):
    """What a protocol may read of a mix or reply result (per local node, dense [n_local]). Valid
    until the round ends: the engine reuses the memory of its rows."""

    counts: np.ndarray    # int64: edges that arrived (a node's edge to itself included)
    messages: np.ndarray  # int64: of those, simulated messages (the self-edge excluded)
    weights: np.ndarray   # float64: sum of the arrived edges' weights
    values: np.ndarray    # float64 [n_local, k]: weighted sums of the edges' `values`

    def arrival(self, j: int) -> "Received":
        """The j-th edge (0-based) to reach each node, alone: a result of its own, with
        counts 1 where counts > j. Only for a Mix with `order`, which keeps the rows one by one."""


RULES = ("mean", "median", "trimmed_mean", "centered_clip")  # heal_mpi.engine.aggregation implements them


@dataclass(frozen=True)
class Rule:
    """How a receiver combines what arrives: `mean` (weighted, reduced as partial sums where the
    rows live), or a robust rule of heal_mpi.aggregation (median, trimmed_mean, centered_clip),
    for which every row travels to the receiver's rank. A robust rule ignores the weights."""

    name: str = "mean"
    beta: float = 0.1      # trimmed_mean: fraction dropped at each end
    clip_tau: float = 1.0  # centered_clip: radius

    @property
    def robust(self) -> bool:
        return self.name != "mean"


MEAN = Rule()


class Held(_Typing):
    """Rows kept by a Snapshot step (they stay inside the engine)."""

    nodes: np.ndarray  # int64 [m], the local rows kept, sorted


@dataclass(frozen=True)
class Train:
    """Train the local rows where `nodes` (bool [n_local]). The engine sends back the train
    loss per local node, float64 [n_local], NaN where a node did not train. `repeat` counts
    a node's earlier trainings in this round: each repeat shuffles its batches anew.

    `start`: a Snapshot that holds every training node. Each node then trains from its held
    row instead of its current one, and its current row moves by the update that training made
    (current + trained - held): the gradient is taken at the held model (D-PSGD's combine-then-
    adapt order takes it at the model before mixing)."""

    nodes: np.ndarray
    repeat: int = 0
    start: Held | None = None


@dataclass(frozen=True)
class Snapshot:
    """Keep a copy of the local rows `nodes` (bool [n_local]) as they are now, for a later
    `Train(start=...)`. The engine sends back a Held. Costs one row per kept node."""

    nodes: np.ndarray


class Heard(_Typing):
    """What reached this rank's nodes in an Exchange: every delivered edge, one by one,
    sorted by (receiver, sender)."""

    receiver: np.ndarray  # int64 [E]: local row of the receiving node
    sender: np.ndarray    # int64 [E]: global id of the sending node
    values: np.ndarray    # float64 [E, k]: what the edge carried
    counts: np.ndarray    # int64 [n_local]: edges that arrived per local node


@dataclass(frozen=True)
class Exchange:
    """Scalars along edges, without model rows: every edge (src local row -> dst global id)
    carries `values` (float64 [E, k], k may be 0: the edge itself is the message, e.g. "I link
    to you"). The receivers get every edge that arrived, with its sender (a Heard), not a sum:
    enough to learn who links to them, or a neighbour's degree. Each edge between two distinct
    nodes is one simulated message of 16 + 8 k bytes (counted as control traffic), lost or
    delivered by the channel like any other."""

    purpose: str
    src: np.ndarray
    dst: np.ndarray
    values: np.ndarray | None = None


@dataclass(frozen=True)
class Mix:
    """x_dst <- sum over edges of weight * x_src: the one mixing primitive.

    Attributes:
        purpose: names the message kind (keys its loss draws; "up", "hub-hub", "gossip", ...).
        src: int64 [E], local row of each edge's sender.
        dst: int64 [E], global id of each edge's receiver.
        weight: float64 [E] edge weights, or None for 1.
        rows: None to send the senders' models, or an earlier result: each sender sends its
            mean in that result (every sender must have received in it).
        values: float64 [E, k] per-edge scalars summed (times the weight) at the receiver, or None.
        rule: how each receiver combines the rows (its result's mean is the rule's output).
        order: float64 [E] arrival keys, or None. When given, every row travels to its receiver's
            rank and the result keeps the rows one by one in key order (ties: by sender) for
            `result.arrival(j)`; its mean is still the weighted mean. Not with a robust rule.
        deadline: the receivers are aggregators: under `[time]` they stop waiting at its deadline or
            quorum and drop the rows done later. Their senders still count as reached (a Reply
            to this result answers them).
        keep: bool [n_local], the receivers that take the rows sent to them, or None for all.
            The rows sent to the others are dropped unsent (a model sent to a node that is no
            hub); their edges still arrive and count (counts, weights, messages, values, and a
            Reply answers along them), but the result holds no mean for those nodes.
        merge: float64 [n_local] own weights, or None. Each node that rows reach and whose
            merge is not NaN takes its merged mean within the Mix, exactly what
            `Assign(result, nodes, own_weight=merge[nodes])` right after would give it, but as
            each piece of receivers completes, so that the engine never holds every receiver's
            sum (Gossip's and EL's pushes). The result then holds no means to Assign.
    """

    purpose: str
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray | None = None
    rows: Received | None = None
    values: np.ndarray | None = None
    rule: Rule = MEAN
    order: np.ndarray | None = None
    deadline: bool = False
    keep: np.ndarray | None = None
    merge: np.ndarray | None = None


@dataclass(frozen=True)
class Reply:
    """Every receiver of `to` where `answering` sends its mean in `rows` back along each edge
    of `to` that reached it (HEAL step 5). Self-edges answer without a message."""

    purpose: str
    to: Received
    rows: Received
    answering: np.ndarray  # bool [n_local]


@dataclass(frozen=True)
class Assign:
    """Local rows `nodes` (int64 [k], each received in `result`) take a new model:
    (sum of what arrived + own_weight * own model) / (weights + own_weight);
    own_weight None means the plain mean of what arrived. A robust `rule` instead combines
    the rows that arrived in a Reply result one by one (a HEAL client's s copies)."""

    result: Received
    nodes: np.ndarray
    own_weight: np.ndarray | None = None
    rule: Rule = MEAN


Step = Train | Mix | Reply | Assign | Exchange | Snapshot
