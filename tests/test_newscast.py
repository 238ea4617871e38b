"""Newscast: cache invariants, faults, traffic, and the paper's baseline at N = 1000."""

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay.newscast import Newscast
from helpers import hubs, make_world, overlay_cfg, simulate, analysis_module

E = np.zeros(0, np.int64)


def check(ctx, ov):
    ids, st, local = ov.ids, ov.stamps, ov.world.local_slots
    live = ctx.alive[local]
    assert not (ids == local[:, None]).any(), "a node in its own cache"
    s = np.sort(np.where(ids >= 0, ids, -1 - np.arange(ids.shape[1])), axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any(), "duplicate id"
    assert ctx.alive[ids[ids >= 0]].all() and (ids[~live] == -1).all()
    assert (np.diff(np.where(ids >= 0, st, -1), axis=1) <= 0).all(), "not freshest first"
    assert st.max() <= ctx.rnd
    assert ((ids >= 0).sum(axis=1)[live] >= 1).all(), "a live node lost its whole view"
    if ctx.rnd < 5:  # before any fault the merge always fills the cache
        assert ((ids >= 0).sum(axis=1)[live] == ov.c).all()
    return hubs(ov)


def test_invariants_under_faults():
    cfg = overlay_cfg(150, 20, kind="newscast", message_loss=0.1, crash=[{"round": 5, "fraction": 0.3}],
                      churn=[{"start": 8, "end": 15, "fraction": 0.1}])
    _, ov, trace = simulate(cfg, MPI.COMM_SELF, check)
    assert max(trace) == 0


def test_no_hubs_and_in_degree_centred_on_c():
    _, ov, _ = simulate(overlay_cfg(300, 20, kind="newscast"), MPI.COMM_SELF)
    assert ov.hub_lists().shape == (300, 0) and not ov.is_hub().any()
    assert ov.in_degree.mean() == 20 and ov.in_degree.max() < 4 * 20
    assert ov.random_peers() is ov.neighbours()


def test_every_exchange_is_a_request_and_a_reply():
    _, ov, _ = simulate(overlay_cfg(120, 6, kind="newscast"), MPI.COMM_SELF)
    assert (ov.traffic.msgs_sent == ov.traffic.msgs_recv).all() and ov.traffic.msgs_sent.sum() == 2 * 120
    assert ov.traffic.bytes_sent.sum() == ov.traffic.bytes_recv.sum() == 2 * 120 * (16 + 16 * 20)


def test_exchange_partners_learn_each_other_freshly():
    world = make_world(MPI.COMM_SELF, 60)
    ov = Newscast(world, Channel(3), 5, seed=3)
    alive, inc = np.ones(60, bool), np.zeros(60, np.int64)
    before = ov.ids.copy()
    ov.step(RoundContext(4, 3, alive, inc, E, E))
    # someone initiated to node b: b now holds a fresh (stamp 4) descriptor of one of its initiators
    fresh = (ov.stamps == 4).sum(axis=1)
    assert (fresh >= 1).all() and not np.array_equal(before, ov.ids)


def test_state_round_trip():
    _, a, _ = simulate(overlay_cfg(80, 5, kind="newscast"), MPI.COMM_SELF)
    b = Newscast(make_world(MPI.COMM_SELF, 80), Channel(1), 20, seed=1)
    b.load_state_dict(a.state_dict())
    alive, inc = np.ones(80, bool), np.zeros(80, np.int64)
    for ov in (a, b):
        ov.step(RoundContext(5, 1, alive, inc, E, E))
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.stamps, b.stamps)


@pytest.mark.slow
def test_paper_newscast_baseline(capsys):
    topo = analysis_module("topology")
    _, ov, _ = simulate(overlay_cfg(1000, 30, kind="newscast"), MPI.COMM_SELF)
    m = topo.graph_metrics(ov.snapshot(), ov.alive, sources=None)
    with capsys.disabled():
        print(f"\nNewscast N=1000 c=20 after 30 cycles: diameter {m['diameter']:.0f}, APL {m['apl']:.3f}, "
              f"clustering {m['clustering']:.3f} (paper: diameter 4, APL just under 2.6)")
    assert m["hubs"] == 0 and m["lcc"] == 1000
    assert ov.in_degree.mean() == 20 and abs(np.median(ov.in_degree) - 20) <= 3
    assert 3 <= m["diameter"] <= 5 and 2.2 < m["apl"] < 2.8
