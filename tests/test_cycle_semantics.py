"""Sequential cycle semantics (overlay.semantics = "sequential") against a plain reference.

`reference_cycle` is one Elevator cycle in PeerSim's order, written for reading: a loop over
the nodes in the cycle's permutation, each node asking its cache members for their caches,
its preferred nodes for their backward sets, and installing its new cache before the next
node moves. Only the lazy shuffle of the backward answers (`read_backward_buffer`, tested
on its own in test_elevator.py) is shared with the engine. The engine's sequential mode
with one node a turn must produce the same caches, cycle after cycle, on any rank count.
"""

from collections import Counter

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi.engine.channel import Channel
from heal_mpi.overlay.elevator import Elevator
from heal_mpi.overlay.elevator_ops import read_backward_buffer
from heal_mpi.rng import uniform
from helpers import gather_rows, make_world, overlay_cfg, reduced_metrics, simulate
from test_elevator import check_invariants


class Reference:
    """Every node's cache and backward ring, as plain Python lists (no churn: every slot keeps its node)."""

    def __init__(self, cache: np.ndarray, h: int, max_backward: int, cap: int, depth: int):
        self.cache = [[int(x) for x in row] for row in cache]
        self.n, self.c, self.h = len(cache), cache.shape[1], h
        self.max_backward, self.cap, self.depth = max_backward, cap, depth
        self.ring = [[] for _ in range(self.n)]  # (requester, round), oldest first, at most cap

    def record(self, target: int, requester: int, rnd: int) -> None:
        self.ring[target] = (self.ring[target] + [(requester, rnd)])[-self.cap:]

    def cycle(self, seed: int, rnd: int, alive: np.ndarray) -> None:
        for v in range(self.n):  # prune: links to dead nodes go, dead nodes forget
            self.cache[v] = [x if x >= 0 and alive[x] and alive[v] else -1 for x in self.cache[v]]
        asked_me = [set() for _ in range(self.n)]  # this cycle's requesters: every one stays in the set
        order = np.argsort(uniform(seed, "cycle-order", rnd, np.arange(self.n)), kind="stable")
        for v in (int(x) for x in order if alive[x]):
            self.turn(seed, rnd, alive, v, asked_me)

    def turn(self, seed: int, rnd: int, alive: np.ndarray, v: int, asked_me: list) -> None:
        # CACHE_REQUEST to every cache member, answered with the member's cache as it is now
        two_hop = []
        for t in self.cache[v]:
            if t < 0:
                continue
            if t != v:  # a node reads its own cache without a message
                self.record(t, v, rnd)
                asked_me[t].add(v)
            two_hop += [x for x in self.cache[t] if x >= 0]
        counts = Counter(two_hop)
        preferred = sorted(counts, key=lambda x: (-counts[x], x))[:self.h]

        # BACKWARD_REQUEST to each preferred node: its live backward set, sampled by the lazy shuffle
        sets = [sorted({r for r, _ in self.ring[p] if alive[r]} | asked_me[p]) for p in preferred]
        sizes = np.zeros((1, self.h), dtype=np.int64)
        sizes[0, :len(sets)] = [len(s) for s in sets]
        src, pos = read_backward_buffer(seed, rnd, np.array([v]), sizes, self.max_backward, self.depth)
        randoms = []
        for p, i in zip(src[0], pos[0]):
            x = sets[p][i] if p >= 0 else -1
            if x >= 0 and x != v and x not in preferred and x not in randoms and len(randoms) < self.c - self.h:
                randoms.append(x)

        # top up from the frequency map, uniformly over its distinct ids
        spare = [x for x in counts if x != v and x not in preferred and x not in randoms]
        spare.sort(key=lambda x: uniform(seed, "elevator-topup", rnd, v, x)[0])
        randoms += spare[:self.c - self.h - len(randoms)]

        new = preferred + [-1] * (self.h - len(preferred)) + randoms + [-1] * (self.c - self.h - len(randoms))
        if any(x >= 0 for x in new):  # every answer lost: keep the old links
            self.cache[v] = new


def caches_each_cycle(cfg, comm):
    """The whole [N, c] cache table after every cycle, on every rank."""
    _, ov, seen = simulate(cfg, comm, lambda ctx, ov: (gather_rows(ov.world, ov.cache), ctx.alive.copy()))
    return ov, seen


def check_against_reference(n, cycles, comm, **faults):
    overlay = {"cache_size": 10, "hubs": 4, "semantics": "sequential", "elevator": {"max_backward": 20}}
    cfg = overlay_cfg(n, cycles, seed=5, overlay=overlay, **faults)
    ov, seen = caches_each_cycle(cfg, comm)
    differs = None
    if comm.Get_rank() == 0:  # the reference is one process's work; every rank learns the verdict
        start = Elevator(make_world(MPI.COMM_SELF, n), Channel(5), ov.c, ov.h, seed=5, max_backward=ov.max_backward)
        ref = Reference(start.cache, ov.h, ov.max_backward, ov.cap, ov.depth)
        for rnd, (cache, alive) in enumerate(seen):
            ref.cycle(5, rnd, alive)
            if not np.array_equal(np.array(ref.cache), cache):
                differs = rnd
                break
    differs = comm.bcast(differs)
    assert differs is None, f"cycle {differs}: the caches differ from the reference"


def test_sequential_elevator_is_peersims_order():
    """20 cycles at N = 200, one node a turn: the same caches as the plain reference."""
    check_against_reference(200, 20, MPI.COMM_SELF)


def test_sequential_elevator_after_a_crash_is_peersims_order():
    check_against_reference(90, 8, MPI.COMM_SELF, crash=[{"round": 3, "fraction": 0.3}])


@pytest.mark.mpi
def test_sequential_elevator_is_peersims_order_on_every_rank_count():
    check_against_reference(200, 20, MPI.COMM_WORLD)


def test_one_turn_is_snapshot():
    """A sequential cycle of one group is every node at once: the snapshot cycle, exactly."""
    faults = dict(message_loss=0.05, crash=[{"round": 4, "fraction": 0.2}], churn=[{"start": 2, "end": 9,
                                                                                      "fraction": 0.05}])
    snap = overlay_cfg(120, 10, overlay={"cache_size": 8, "hubs": 3}, **faults)
    one = overlay_cfg(120, 10, overlay={"cache_size": 8, "hubs": 3, "semantics": "sequential", "substeps": 1},
                      **faults)
    (_, a), (_, b) = caches_each_cycle(snap, MPI.COMM_SELF), caches_each_cycle(one, MPI.COMM_SELF)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))


def test_turns_spread_information_within_a_cycle():
    """Sequential Elevator elects its hubs in fewer cycles than snapshot from the same start."""
    def cycles_to_hubs(semantics):
        cfg = overlay_cfg(300, 12, overlay={"cache_size": 10, "hubs": 4, "semantics": semantics})
        _, _, seen = simulate(cfg, MPI.COMM_SELF, lambda ctx, ov: reduced_metrics(ov)["hubs"])
        return next(r for r, h in enumerate(seen) if h == 4)
    assert cycles_to_hubs("sequential") < cycles_to_hubs("snapshot")


def test_sequential_newscast_keeps_its_invariants():
    """Newscast in turns: no duplicate, no self, no dead link; and the turns change the result."""
    faults = dict(message_loss=0.05, crash=[{"round": 4, "fraction": 0.2}], churn=[{"start": 2, "end": 9,
                                                                                      "fraction": 0.05}])

    def caches(semantics):
        cfg = overlay_cfg(80, 10, kind="newscast", overlay={"cache_size": 6, "semantics": semantics}, **faults)
        world, ov, seen = simulate(cfg, MPI.COMM_SELF, lambda ctx, ov: ctx.alive.copy())
        return ov.ids, seen[-1]
    ids, alive = caches("sequential")
    s = np.sort(np.where(ids >= 0, ids, -1 - np.arange(ids.shape[1])), axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any() and not (ids == np.arange(80)[:, None]).any()
    assert alive[ids[ids >= 0]].all() and (ids[alive] >= 0).sum(axis=1).min() > 0
    assert not np.array_equal(ids, caches("snapshot")[0])


@pytest.mark.parametrize("substeps", [0, 10])
def test_sequential_elevator_keeps_its_invariants_under_every_fault(substeps):
    cfg = overlay_cfg(120, 16, overlay={"cache_size": 10, "hubs": 4, "semantics": "sequential",
                                        "substeps": substeps},
                      message_loss=0.1, crash=[{"round": 5, "fraction": 0.3}],
                      hub_crash=[{"round": 9, "count": "all"}], churn=[{"start": 3, "end": 12, "fraction": 0.05}])
    _, _, trace = simulate(cfg, MPI.COMM_SELF, check_invariants)
    assert trace[-1] == 4
