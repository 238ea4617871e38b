"""Static topologies: shapes, hub lists, in-degree among live nodes, the random regular graph."""

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay.static import StaticOverlay, random_regular_edges
from helpers import hub_ids, hubs, make_world

E = np.zeros(0, np.int64)


def build(kind, n=12, **kw):
    return StaticOverlay(make_world(MPI.COMM_SELF, n), Channel(0), kind, **kw)


def undirected(view):
    n = len(view)
    pairs = {(i, int(j)) for i in range(n) for j in view[i] if j >= 0}
    return pairs, all((j, i) in pairs for i, j in pairs)


def test_star():
    ov = build("star", 6)
    view = ov.neighbours()
    assert view[0].tolist() == [1, 2, 3, 4, 5] and (view[1:, 0] == 0).all() and (view[1:, 1:] == -1).all()
    assert (ov.hub_lists() == 0).all() and ov.is_hub().tolist() == [True] + [False] * 5
    assert ov.in_degree.tolist() == [6, 1, 1, 1, 1, 1]  # the server lists itself as hub
    assert (ov.random_peers()[1:] == -1).all() and ov.random_peers()[0].tolist() == [1, 2, 3, 4, 5]
    assert hubs(ov) == 1 and hub_ids(ov).tolist() == [0]


def test_multistar_round_robin():
    ov = build("multistar", 11, servers=3)
    hubs = ov.hub_lists()
    assert hubs[:3].tolist() == [[0, 1, 2]] * 3
    assert hubs[3:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1] and (hubs[3:, 1:] == -1).all()
    assert ov.is_hub().tolist() == [True] * 3 + [False] * 8
    view = ov.neighbours()
    assert sorted(view[1][view[1] >= 0].tolist()) == [0, 2, 4, 7, 10]  # other servers + its clients
    assert ov.in_degree[:3].tolist() == [3 + 3, 3 + 3, 3 + 2] and (ov.in_degree[3:] == 1).all()


def test_ring_and_complete():
    ring = build("ring", 7).neighbours()
    assert ring[0].tolist() == [1, 6] and ring[3].tolist() == [2, 4]
    comp = build("complete", 5)
    assert comp.neighbours()[2].tolist() == [0, 1, 3, 4] and (comp.in_degree == 4).all()
    assert comp.hub_lists().shape == (5, 0) and not comp.is_hub().any()


@pytest.mark.parametrize("n,d", [(10, 3), (50, 4), (101, 6), (400, 10)])
def test_random_regular_is_simple_and_regular(n, d):
    e = random_regular_edges(n, d, seed=5)
    assert (e[:, 0] < e[:, 1]).all() and len(np.unique(e[:, 0] * n + e[:, 1])) == len(e)
    assert (np.bincount(e.ravel(), minlength=n) == d).all()
    assert np.array_equal(e, random_regular_edges(n, d, seed=5))
    assert not np.array_equal(e, random_regular_edges(n, d, seed=6))


def test_regular_view_is_symmetric():
    ov = build("regular", 30, degree=4, seed=2)
    view = ov.neighbours()
    assert view.shape == (30, 4) and (view >= 0).all()
    assert undirected(view)[1] and (ov.in_degree == 4).all()


def test_in_degree_counts_live_viewers_only():
    ov = build("star", 6)
    alive = np.array([True, True, False, True, False, True])
    ov.step(RoundContext(0, 1, alive, np.zeros(6, np.int64), E, E))
    assert ov.in_degree.tolist() == [4, 1, 1, 1, 1, 1]
    assert ov.is_hub()[0] and hubs(ov) == 1
    ring = build("ring", 5)
    ring.step(RoundContext(0, 1, np.array([True, False, True, True, True]), np.zeros(5, np.int64), E, E))
    assert ring.in_degree.tolist() == [1, 2, 1, 2, 2]


def test_state_round_trip():
    a, b = build("ring", 8), build("ring", 8)
    a.step(RoundContext(0, 1, np.arange(8) % 2 == 0, np.zeros(8, np.int64), E, E))
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.in_degree, b.in_degree) and np.array_equal(a.alive, b.alive)
