"""Elevator: the vectorized kernels, cycle invariants, convergence, and the paper's scenarios.

The fast tests run at N = 200 on one rank; the `slow` ones replay the Elevator paper's
scenarios at N = 1000, c = 20, h = 10 from the presets in jobs/configs.
"""

import numpy as np
import pytest
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.engine.channel import Channel
from heal_mpi.context import RoundContext
from heal_mpi.overlay import elevator_ops as ops
from heal_mpi.overlay.common import positions, sample_from_pool
from heal_mpi.overlay.elevator import Elevator
from helpers import ROOT, hub_ids, hubs, make_world, overlay_cfg, simulate, analysis_module

E = np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- kernels

def test_top_k_counts_then_smallest_id():
    replies = np.array([[5, 3, 3, 7, 7, 1, -1, 9, 9, 9], [-1] * 9 + [4]])
    assert ops.top_k(replies, 3, 10).tolist() == [[9, 3, 7], [4, -1, -1]]


def test_record_backward_is_a_ring_of_the_latest():
    back, back_t, head = np.full((2, 3), -1), np.zeros((2, 3), np.int64), np.zeros(2, np.int64)
    lost, _, _ = ops.record_backward(back, back_t, head, np.array([0, 0]), np.array([8, 9]), np.array([0.5, 0.1]),
                                     1, 10)
    assert lost == 0 and back[0].tolist() == [9, 8, -1] and head.tolist() == [2, 0]
    lost, rows, req = ops.record_backward(back, back_t, head, np.array([0, 1, 0]), np.array([6, 7, 5]),
                                          np.array([0.3, 0.4, 0.2]), 2, 10)
    assert rows.tolist() == [0, 0, 1] and req.tolist() == [5, 6, 7]
    assert lost == 1  # 9 (slot 0) was overwritten by 6
    assert back[0].tolist() == [6, 8, 5] and back_t[0].tolist() == [2, 1, 2] and back[1].tolist() == [7, -1, -1]


def test_backward_sets_union_current_and_live_history():
    back = np.array([[4, 2, 9, -1], [1, 1, 3, -1]])
    back_t = np.array([[1, 1, 1, 0], [2, 3, 3, 0]])
    alive = np.ones(10, bool)
    alive[9] = False
    since = np.zeros(10, np.int64)
    since[2] = 2  # slot 2 churned at round 2: its round-1 record is stale
    sizes, ids = ops.backward_sets(back, back_t, np.array([0, 1]), np.array([0, 0, 1]), np.array([7, 4, 8]),
                                   alive, since)
    assert sizes.tolist() == [2, 3] and ids.tolist() == [4, 7, 1, 3, 8]


def test_buffer_reads_a_shuffle_of_the_answers():
    n = 4000
    sizes = np.tile([[300, 10, 0]], (n, 1))
    src, pos = ops.read_backward_buffer(1, 0, np.arange(n), sizes, max_backward=100, depth=30)
    assert (src >= 0).all()
    from_small = (src == 1).sum(axis=1)
    assert from_small.max() <= 10 and not (src == 2).any()
    assert abs(from_small.mean() - 30 * 10 / 110) < 0.2  # answers weigh by their sample size
    for k in (0, 1):  # positions drawn from one answer are distinct and in range
        p = np.where(src == k, pos, -1)
        s = np.sort(p, axis=1)
        assert not ((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any() and p.max() < sizes[0, k]
    counts = np.bincount(pos[src == 0], minlength=300)
    assert counts.min() > 0.6 * counts.mean()  # every entry of the big set gets read


def test_buffer_runs_out_with_padding():
    src, pos = ops.read_backward_buffer(1, 0, np.arange(2), np.array([[2, 1], [0, 0]]), 100, 5)
    assert (src[0, :3] >= 0).all() and (src[0, 3:] == -1).all() and (src[1] == -1).all()


def test_random_part_skips_self_hubs_and_repeats():
    entries = np.array([[0, 5, 7, 5, 8, 9], [3, 3, 3, -1, -1, -1]])
    out = ops.pick_random_part(entries, np.array([0, 1]), np.array([[7], [9]]), 3)
    assert out.tolist() == [[5, 8, 9], [3, -1, -1]]


def test_positions_of_ids_are_a_binary_search_by_table():
    rng = np.random.default_rng(3)
    ids = np.unique(rng.integers(0, 1000, 300))
    queries = ids[rng.integers(0, len(ids), 5000)]
    assert np.array_equal(positions(ids, queries, 1000), np.searchsorted(ids, queries))
    assert positions(ids, ids[-1:], 1000)[0] == len(ids) - 1 and positions(ids, ids[:0], 1000).shape == (0,)


def test_sample_from_pool_distinct_uniform_and_excluding():
    pool = np.arange(0, 100, 2)
    rows = np.arange(5000)
    got = sample_from_pool(7, "t", (rows,), pool, 10, np.full(5000, 4))
    assert np.isin(got, pool).all() and not (got == 4).any()
    s = np.sort(got, axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any()
    counts = np.bincount(got.ravel() // 2, minlength=50)
    assert counts[2] == 0 and np.delete(counts, 2).min() > 0.8 * 5000 * 10 / 49


# ----------------------------------------------------------------------------- the cycle

def check_invariants(ctx, ov):
    cache, local = ov.cache, ov.world.local_slots
    live = ctx.alive[local]
    s = np.sort(np.where(cache >= 0, cache, -1 - np.arange(cache.shape[1])), axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any(), "duplicate id in a cache"
    assert not (ov.random_peers() == local[:, None]).any(), "a node among its own random peers"
    assert (cache[~live] == -1).all(), "a dead node kept links"
    assert ctx.alive[cache[cache >= 0]].all(), "a link to a dead node survived the cycle"
    assert ((cache >= 0).sum(axis=1)[live] >= ov.h).all(), "a live node lost its view"
    return hubs(ov)


def test_invariants_under_every_fault():
    cfg = overlay_cfg(200, 25, message_loss=0.1, crash=[{"round": 8, "fraction": 0.3}],
                      hub_crash=[{"round": 14, "count": "all"}], churn=[{"start": 5, "end": 20, "fraction": 0.05}])
    _, ov, trace = simulate(cfg, MPI.COMM_SELF, check_invariants)
    assert trace[-1] == 10


def test_hubs_converge_to_h_and_every_hub_list_agrees():
    cfg = overlay_cfg(200, 15)
    _, ov, trace = simulate(cfg, MPI.COMM_SELF, lambda ctx, ov: hubs(ov))
    assert trace[-1] == 10
    first = next(i for i, h in enumerate(trace) if h == 10)
    assert all(h == 10 for h in trace[first:])
    ids = np.sort(hub_ids(ov))
    assert (np.sort(ov.hub_lists(), axis=1) == ids).all()  # every node lists exactly the hubs
    assert ov.is_hub().sum() == 10 and (ov.in_degree[ids] == 200).all()  # a hub lists itself


def test_top_c_variant_converges_too():
    cfg = overlay_cfg(200, 15, overlay={"elevator": {"preferred": "top-c"}})
    _, ov, trace = simulate(cfg, MPI.COMM_SELF, lambda ctx, ov: hubs(ov))
    assert trace[-1] == 10


def test_messages_balance_and_follow_the_protocol():
    cfg = overlay_cfg(200, 12)
    _, ov, _ = simulate(cfg, MPI.COMM_SELF)
    assert ov.traffic.msgs_sent.sum() == ov.traffic.msgs_recv.sum() and ov.traffic.bytes_sent.sum() == ov.traffic.bytes_recv.sum()
    # every request sent brings a reply, every request received sends one: per node, sent == received
    assert (ov.traffic.msgs_sent == ov.traffic.msgs_recv).all()
    # converged: a non-hub sends c CACHE + h BACKWARD requests, plus a reply per request it gets
    hub = ov.is_hub()
    assert (ov.traffic.msgs_sent[~hub] >= ov.c + ov.h).all() and (ov.traffic.msgs_sent[hub] >= 199).all()
    lossy = overlay_cfg(200, 12, message_loss=0.2)
    _, ov, _ = simulate(lossy, MPI.COMM_SELF)
    assert ov.traffic.msgs_sent.sum() > ov.traffic.msgs_recv.sum() > 0.7 * ov.traffic.msgs_sent.sum()


def test_total_message_loss_keeps_the_old_links():
    cfg = overlay_cfg(100, 3, message_loss=1.0)
    world, ov, _ = simulate(cfg, MPI.COMM_SELF)
    fresh = Elevator(make_world(MPI.COMM_SELF, 100), Channel(1), 20, 10, seed=1)
    assert np.array_equal(ov.cache, fresh.cache) and ov.traffic.msgs_recv.sum() == 0


def test_newcomers_get_c_fresh_links_and_an_empty_backward_set():
    world = make_world(MPI.COMM_SELF, 100)
    ov = Elevator(world, Channel(2), 20, 10, seed=2)
    alive, inc = np.ones(100, bool), np.zeros(100, np.int64)
    for r in range(4):
        ov.step(RoundContext(r, 2, alive, inc, E, E))
    joined = np.array([7, 40])
    inc = inc.copy()
    inc[joined] += 1
    ov._prune(RoundContext(4, 2, alive, inc, joined, joined))
    assert ((ov.cache[joined] >= 0).sum(axis=1) == 20).all() and (ov.back[joined] == -1).all()
    others = np.delete(np.arange(100), joined)
    assert not np.isin(ov.cache[others], joined).any(), "links to the departed nodes survived"


def test_same_seed_same_overlay_and_resume_from_state():
    cfg = overlay_cfg(150, 10, churn=[{"start": 2, "end": 9, "fraction": 0.05}])
    _, a, _ = simulate(cfg, MPI.COMM_SELF)
    _, b, _ = simulate(cfg, MPI.COMM_SELF)
    assert np.array_equal(a.cache, b.cache) and np.array_equal(a.back, b.back)
    _, c, _ = simulate(overlay_cfg(150, 10, seed=9, churn=[{"start": 2, "end": 9, "fraction": 0.05}]), MPI.COMM_SELF)
    assert not np.array_equal(a.cache, c.cache)
    fresh = Elevator(make_world(MPI.COMM_SELF, 150), Channel(1), 20, 10, seed=1)
    fresh.load_state_dict(a.state_dict())
    alive, inc = a.alive, np.zeros(150, np.int64)
    for ov in (a, fresh):
        ov.step(RoundContext(10, 1, alive, inc, E, E))
    assert np.array_equal(a.cache, fresh.cache) and np.array_equal(a.back, fresh.back)


# ----------------------------------------------------------------------------- the paper (N = 1000)

def preset(name, rounds):
    return cfgmod.validate(cfgmod.load(ROOT / "jobs" / "configs" / f"{name}.toml", [f"run.rounds={rounds}"]))


def hub_trace(ctx, ov):
    """(round, hubs = live nodes in >= 99% of the live views, live count)."""
    return ctx.rnd, hubs(ov), ctx.n_alive


@pytest.mark.slow
def test_paper_fault_free_ten_hubs_diameter_two():
    topo = analysis_module("topology")
    found = {}

    def observe(ctx, ov):
        if ctx.rnd == 30:
            found.update(topo.graph_metrics(ov.snapshot(), ctx.alive, sources=None))
        return hub_trace(ctx, ov)
    _, _, seen = simulate(preset("elevator_fault_free", 31), MPI.COMM_SELF, observe)
    assert any(h == 10 for _, h, _ in seen[:10]), seen[:10]
    assert all(h == 10 for _, h, _ in seen[10:])
    assert found["diameter"] == 2 and found["apl"] < 2 and found["lcc"] == 1000
    assert 0.5 < found["clustering"] < 0.7  # the paper: about 0.6


@pytest.mark.slow
def test_paper_crash50_ten_hubs_over_the_500_survivors():
    _, _, seen = simulate(preset("elevator_crash50", 61), MPI.COMM_SELF, hub_trace)
    after = seen[50:61]
    assert all(n_alive == 500 for _, _, n_alive in after)
    assert any(h == 10 for _, h, _ in after), after  # each hub in >= 495 of the 500 live views
    assert seen[-1][1] == 10


@pytest.mark.slow
def test_paper_hub_attack_ten_new_hubs():
    old = {}

    def observe(ctx, ov):
        if ctx.rnd == 49:
            old["ids"] = set(hub_ids(ov).tolist())
        return hub_trace(ctx, ov) + (set(hub_ids(ov).tolist()),)
    _, _, seen = simulate(preset("elevator_hub_attack", 61), MPI.COMM_SELF, observe)
    assert seen[50][1] == 0  # the 10 hubs are gone
    new = [s for s in seen[50:61] if s[1] == 10]
    assert new and not (new[0][3] & old["ids"]), seen[50:61]


@pytest.mark.slow
def test_paper_churn_stays_connected_and_recovers():
    topo = analysis_module("topology")

    def observe(ctx, ov):
        lcc = None
        if 50 <= ctx.rnd < 150 and ctx.rnd % 5 == 0:
            lcc = topo.graph_metrics(ov.snapshot(), ctx.alive, sources=50)["lcc"]
            assert lcc == ctx.n_alive == 1000, (ctx.rnd, lcc)
        return hub_trace(ctx, ov)
    _, _, seen = simulate(preset("elevator_churn", 161), MPI.COMM_SELF, observe)
    assert any(h == 10 for _, h, _ in seen[150:161]), seen[150:161]
    assert seen[-1][1] == 10
