"""The engine: Mix and Reply against dense computations at any rank count, the channel's
loss and alteration, traffic counting, staging, and the protocols' rules on a fake overlay."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import P, FakePop, context, random_rows, run_protocol, script_engine
from heal_mpi.engine.channel import Channel
from heal_mpi.rng import uniform
from heal_mpi.steps import Assign, Exchange, Mix, Reply, Rule, Snapshot, Train


def setup(comm, n, body, loss=0.0, seed=42):
    return script_engine(comm, n, body, loss, seed)


def all_sums(result):
    return result.sums_of(np.arange(len(result.nodes))).numpy()


def all_wide(sums):
    """summing.Held of these float64 sums, local row i's sum being sums[i]."""
    from heal_mpi.engine.summing import Held
    return Held(sums, sums[:0].float(), np.arange(100), np.arange(len(sums)))


def random_edges(n, e, seed=1):
    g = np.random.default_rng(seed)
    return g.integers(0, n, e), g.integers(0, n, e), g.random(e)


def check_mix_matches_dense(comm):
    n = 13
    src, dst, wt = random_edges(n, 60)

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        seen.append((yield Mix("test", src[mine] - world.slot_lo, dst[mine], weight=wt[mine],
                               values=np.stack([wt[mine], 2 * wt[mine]], axis=1))))

    world, full, proto, engine = setup(comm, n, body)
    engine.round(context(n), None)
    got = proto.seen[0]
    expect = np.zeros((n, P))
    np.add.at(expect, dst, full.double().numpy()[src] * wt[:, None])
    local = slice(world.slot_lo, world.slot_hi)
    np.testing.assert_allclose(all_sums(got), expect[local][got.nodes], rtol=1e-12, atol=1e-12)
    assert (got.nodes == np.flatnonzero(np.bincount(dst, minlength=n)[local])).all()  # compact: receivers only
    np.testing.assert_allclose(got.weights, np.bincount(dst, wt, n)[local], rtol=1e-12)
    np.testing.assert_allclose(got.values[:, 1], 2 * np.bincount(dst, wt * wt, n)[local], rtol=1e-12)
    assert (got.counts == np.bincount(dst, minlength=n)[local]).all()
    assert (got.messages == np.bincount(dst[src != dst], minlength=n)[local]).all()  # self-edges are no messages
    assert comm.allreduce(engine.traffic.msgs_sent.sum()) == (src != dst).sum()
    if comm.Get_size() == 1:
        assert engine.staged_bytes == 0  # one rank: the rows never leave the device


def check_reply_answers_along_the_delivered_edges(comm):
    n = 11
    src, dst, _ = random_edges(n, 40, seed=5)

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        up = yield Mix("up", src[mine] - world.slot_lo, dst[mine])
        back = yield Reply("down", to=up, rows=up, answering=up.counts > 0)
        seen.extend([up, back])

    world, full, proto, engine = setup(comm, n, body)
    engine.round(context(n), None)
    up, back = proto.seen
    x = full.double().numpy()
    mean_in = np.zeros((n, P))
    np.add.at(mean_in, dst, x[src])
    mean_in /= np.maximum(np.bincount(dst, minlength=n), 1)[:, None]
    expect = np.zeros((n, P))
    np.add.at(expect, src, mean_in[dst])  # every sender gets its receiver's mean back, once per edge
    local = slice(world.slot_lo, world.slot_hi)
    np.testing.assert_allclose(all_sums(back), expect[local][back.nodes], rtol=1e-5, atol=1e-5)
    assert (back.counts == np.bincount(src, minlength=n)[local]).all()


class NodeZeroLies:
    def forges(self, purpose, senders):
        return senders == 0

    def alter(self, purpose, senders, rows, rnd, receivers=None):
        return torch.where(torch.as_tensor(senders == 0)[:, None], -100 * torch.ones_like(rows), rows)


def check_channel_loses_and_alters(comm):
    n = 12
    src, dst, _ = random_edges(n, 80, seed=9)
    channel = Channel(7, 0.3)
    ok = channel.delivered("lossy", src, dst, 0)
    assert ok[src == dst].all() and 0.5 < ok[src != dst].mean() < 0.9  # self never lost

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        seen.append((yield Mix("lossy", src[mine] - world.slot_lo, dst[mine])))

    world, full, proto, engine = setup(comm, n, body, loss=0.3)
    engine.channel.alterations.append(NodeZeroLies())
    engine.round(context(n), None)
    got = proto.seen[0]
    x = full.double().numpy()
    rows = x[src]
    rows[(src == 0) & (dst != 0)] = -100  # a node's edge to itself is no message: never forged
    expect = np.zeros((n, P))
    np.add.at(expect, dst[ok], rows[ok])
    local = slice(world.slot_lo, world.slot_hi)
    np.testing.assert_allclose(all_sums(got), expect[local][got.nodes], rtol=1e-6, atol=1e-5)
    # every attempt is a sent message, only the delivered ones are received
    assert comm.allreduce(engine.traffic.msgs_sent.sum()) == (src != dst).sum()
    assert comm.allreduce(engine.traffic.msgs_recv.sum()) == (ok & (src != dst)).sum()


def check_robust_mix_is_the_median_of_what_arrived(comm):
    """Every row travels to its receiver's rank; each receiver takes the coordinate-wise median."""
    n = 10
    src, dst, _ = random_edges(n, 50, seed=3)

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        seen.append((yield Mix("robust", src[mine] - world.slot_lo, dst[mine], rule=Rule("median"))))

    world, full, proto, engine = setup(comm, n, body)
    engine.round(context(n), None)
    got = proto.seen[0]
    x = full.double()
    local = slice(world.slot_lo, world.slot_hi)
    for k, node in enumerate(got.nodes):
        d = node + world.slot_lo
        rows = x[src[dst == d]]
        median = rows.sort(dim=0).values
        m = len(rows)
        want = median[m // 2] if m % 2 else (median[m // 2 - 1] + median[m // 2]) / 2
        np.testing.assert_allclose(got.means()[k].double().numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    assert (got.counts == np.bincount(dst, minlength=n)[local]).all()
    assert comm.allreduce(engine.traffic.msgs_sent.sum()) == (src != dst).sum()


def check_exchange_hands_every_edge_to_its_receiver_with_its_sender(comm):
    """Scalars only: each receiver gets every delivered edge (sender, values), not a sum; lost edges are
    missing; every edge between two nodes is one control message of 16 + 8 k bytes."""
    n = 11
    src, dst, w = random_edges(n, 50, seed=4)

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        seen.append((yield Exchange("hello", src[mine] - world.slot_lo, dst[mine],
                                    values=np.stack([w[mine], src[mine]], axis=1))))

    world, _, proto, engine = setup(comm, n, body, loss=0.2)
    engine.round(context(n), None)
    heard = proto.seen[0]
    ok = engine.channel.delivered("hello", src, dst, 0)
    local = (dst >= world.slot_lo) & (dst < world.slot_hi) & ok
    expect = sorted(zip(dst[local] - world.slot_lo, src[local], w[local]))
    assert sorted(zip(heard.receiver, heard.sender, heard.values[:, 0])) == expect
    assert (heard.values[:, 1] == heard.sender).all()
    assert (heard.counts == np.bincount(dst[local] - world.slot_lo, minlength=world.n_local)).all()
    real = src != dst
    assert comm.allreduce(engine.control.msgs_sent.sum()) == real.sum()
    assert comm.allreduce(engine.control.msgs_recv.sum()) == (real & ok).sum()
    assert comm.allreduce(int(engine.control.bytes_sent.sum())) == real.sum() * (16 + 8 * 2)
    assert engine.traffic.msgs_sent.sum() == 0  # no model moved


def check_a_mix_drops_the_rows_of_receivers_that_keep_none(comm):
    """Mix.keep: rows sent to a node that does not keep them are never summed nor shipped, by the
    mean, a robust rule and a keyed Mix alike; their edges still arrive and count."""
    n = 13
    src, dst, wt = random_edges(n, 60, seed=8)
    keeps = np.arange(n) % 3 != 0

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        keep = keeps[world.slot_lo:world.slot_hi]
        for kind in ({}, {"rule": Rule("median")}, {"order": wt[mine]}):
            seen.append((yield Mix("keep", src[mine] - world.slot_lo, dst[mine], weight=wt[mine], keep=keep, **kind)))
        before = engine.staged_bytes
        seen.append((yield Mix("none", src[mine] - world.slot_lo, dst[mine], keep=np.zeros(world.n_local, bool))))
        seen.append(engine.staged_bytes - before)

    world, full, proto, engine = setup(comm, n, body)
    engine.round(context(n), None)
    *results, dropped, staged = proto.seen
    local = slice(world.slot_lo, world.slot_hi)
    x = full.double().numpy()
    for got in results:
        assert (got.nodes == np.flatnonzero(np.bincount(dst, minlength=n)[local] * keeps[local])).all()
        assert (got.counts == np.bincount(dst, minlength=n)[local]).all()  # the dropped edges still arrive
        np.testing.assert_allclose(got.weights, np.bincount(dst, wt, n)[local], rtol=1e-12)
    for k, node in enumerate(results[0].nodes):
        d = node + world.slot_lo
        np.testing.assert_allclose(results[0].means()[k].double().numpy(),
                                   (wt[dst == d] @ x[src[dst == d]]) / wt[dst == d].sum(), rtol=1e-5)
        np.testing.assert_allclose(results[1].means()[k].double().numpy(),
                                   np.median(x[src[dst == d]], axis=0), rtol=1e-5, atol=1e-6)
    assert len(dropped.nodes) == 0 and (dropped.counts == np.bincount(dst, minlength=n)[local]).all()
    assert staged == 0  # no row left its rank
    assert comm.allreduce(engine.traffic.msgs_recv.sum()) == 4 * (src != dst).sum()
    with pytest.raises(ValueError, match="a node takes a mean of a result it received nothing in"):
        engine._assign(Assign(dropped, np.flatnonzero(dropped.counts > 0)[:1]))


def check_a_mix_sent_in_pieces_sums_as_one_route(comm):
    """A Mix whose rows would fill memory travels in pieces of receivers (routes.Pieces), one
    after the other: the same sums bit for bit as one route, the same counts and staged bytes."""
    from unittest import mock
    import heal_mpi.engine.routes as routes
    n = 17
    src, dst, wt = random_edges(n, 50, seed=11)
    wt[::3] = 1.0
    keeps = np.arange(n) % 5 != 2

    def run(piece_bytes):
        def body(ctx, seen):
            mine = (src >= world.slot_lo) & (src < world.slot_hi)
            before = engine.staged_bytes
            seen.append((yield Mix("bulk", src[mine] - world.slot_lo, dst[mine], weight=wt[mine],
                                   keep=keeps[world.slot_lo:world.slot_hi])))
            seen.append(engine.staged_bytes - before)

        with mock.patch.object(routes, "PIECE_BYTES", piece_bytes):
            world, _, proto, engine = setup(comm, n, body)
            engine.round(context(n), None)
            return proto.seen + [routes.Pieces(keeps, world.bounds, 8 * P).count]

    (whole, staged, one), (cut, staged_cut, many) = run(1 << 30), run(8 * P * 2)  # a piece per 2 receivers
    assert one == 1 and many > 2
    assert (cut.nodes == whole.nodes).all() and (cut.counts == whole.counts).all() and staged_cut == staged
    assert torch.equal(cut.sums_of(np.arange(len(cut.nodes))), whole.sums_of(np.arange(len(whole.nodes))))
    np.testing.assert_array_equal(cut.weights, whole.weights)


def check_a_receiver_of_one_row_keeps_it_as_float32(comm):
    """A receiver that a single float32 row reaches holds that row, not a float64 sum (summing.Held,
    half the bytes): its sum reads as 0 + w * row, bit for bit what a float64 sum gave (a -0.0 in
    the row reads +0.0), from a copy that the Assign writing the sender's row leaves alone."""
    n = 10
    src = np.r_[np.arange(n), [0, 3, 7]]
    dst = np.r_[(np.arange(n) + 3) % n, [4, 1, 1]]      # 4 and 1 get more than one row; the rest one
    wt = np.r_[np.linspace(0.5, 2.0, n), [1.0, 0.25, 3.0]]

    def body(ctx, seen):
        mine = (src >= world.slot_lo) & (src < world.slot_hi)
        if world.slot_lo <= 3 < world.slot_hi:
            engine.pop.rows[3 - world.slot_lo, 0] = -0.0
        got = yield Mix("one", src[mine] - world.slot_lo, dst[mine], weight=wt[mine])
        seen.append((got, got.sums_of(np.arange(len(got.nodes))).clone()))
        yield Assign(got, got.nodes)
        seen.append(got.sums_of(np.arange(len(got.nodes))))
        w = torch.as_tensor(got.weights[got.nodes])[:, None]
        bits = engine.pop.rows[torch.as_tensor(got.nodes)].view(torch.int32)  # bit for bit: -0.0 is not +0.0
        seen.append(torch.equal(bits, (seen[0][1] / w).float().view(torch.int32)))

    from unittest import mock
    import heal_mpi.engine.summing as summing
    world, full, proto, engine = setup(comm, n, body)
    full[3, 0] = -0.0
    with mock.patch.object(summing, "PASS_BYTES", 8 * P * 2):  # the Assign in chunks of two rows: lone ones apart
        engine.round(context(n), None)
    (got, before), after, assigned = proto.seen
    assert assigned                                      # each mean: the float64 sum over the weight, rounded once
    local = np.arange(world.slot_lo, world.slot_hi)
    lone = np.bincount(dst, minlength=n)[local][got.nodes] == 1
    assert len(got.held.lone) == lone.sum() > 0 and len(got.held.wide) == (~lone).sum()
    assert got.held.lone.dtype == torch.float32 and torch.equal(after, before)
    x = full.double()
    for k, node in enumerate(got.nodes + world.slot_lo):
        e = np.flatnonzero(dst == node)
        expect = torch.zeros(P, dtype=torch.float64)
        for j in e:                                      # from a float64 zero
            expect += wt[j] * x[src[j]]
        if len(e) == 1:
            assert torch.equal(before[k], expect), node
        else:                                            # partials of several ranks: added in rank order
            torch.testing.assert_close(before[k], expect, rtol=1e-12, atol=1e-12)
    k = np.flatnonzero(got.nodes + world.slot_lo == 6)   # the receiver of node 3's row, -0.0 in it
    if len(k):
        assert before[k[0], 0] == 0 and not torch.signbit(before[k[0], 0])


def check_a_merging_mix_writes_what_an_assign_after_it_writes(comm):
    """Mix(merge=own weights): the receivers take their means piece by piece within the Mix, the
    rows bit for bit those of `Assign(result, receivers, own_weight)` after a plain Mix, although
    many receivers send to receivers of later pieces (their new rows wait aside) and the channel
    loses some edges and forges node 0's; NaN and keep=False receivers keep their rows; the result
    counts as before and holds no sums to Assign."""
    from unittest import mock
    import heal_mpi.engine.summing as summing
    import heal_mpi.engine.routes as routes
    n = 19
    src, dst, wt = random_edges(n, 70, seed=5)
    own = np.where(np.arange(n) % 4 == 0, 1.0, np.linspace(0.5, 3.0, n))
    own[[2, 11]] = np.nan
    keeps = np.arange(n) != 7

    def run(merged):
        def body(ctx, seen):
            mine, lo, hi = (src >= world.slot_lo) & (src < world.slot_hi), world.slot_lo, world.slot_hi
            got = yield Mix("push", src[mine] - lo, dst[mine], weight=wt[mine], keep=keeps[lo:hi],
                            merge=own[lo:hi] if merged else None)
            if not merged:
                nodes = got.nodes[~np.isnan(own[lo:hi][got.nodes])]
                yield Assign(got, nodes, own_weight=own[lo:hi][nodes])
            seen.append(got)

        with mock.patch.object(routes, "PIECE_BYTES", 8 * P * 2), \
                mock.patch.object(summing, "PASS_BYTES", 4 * P * 2):  # a piece per 2 receivers, rows 2 by 2
            world, full, proto, engine = setup(comm, n, body, loss=0.2)
            engine.channel.alterations.append(NodeZeroLies())
            engine.round(context(n), None)
            count = routes.Pieces(keeps, world.bounds, 8 * P).count
        local = slice(world.slot_lo, world.slot_hi)
        return proto.seen[0], engine.pop.rows.clone(), count, full[local], local

    (plain, assigned, *_), (got, merged, pieces, before, local) = run(False), run(True)
    assert pieces > 2
    assert torch.equal(merged.view(torch.int32), assigned.view(torch.int32))
    assert (got.nodes == plain.nodes).all() and (got.counts == plain.counts).all()
    np.testing.assert_array_equal(got.weights, plain.weights)
    taken = np.isin(np.arange(len(before)), got.nodes) & ~np.isnan(own[local])
    assert comm.allreduce(int(taken.sum())) > 5
    assert not (merged[torch.as_tensor(taken)] == before[torch.as_tensor(taken)]).all(1).any()
    assert torch.equal(merged[torch.as_tensor(~taken)], before[torch.as_tensor(~taken)])
    with pytest.raises(ValueError, match="holds no sums to Assign"):
        got.sums_of(np.arange(len(got.nodes)))


CHECKS = [check_mix_matches_dense, check_a_mix_drops_the_rows_of_receivers_that_keep_none, check_reply_answers_along_the_delivered_edges, check_channel_loses_and_alters,
          check_robust_mix_is_the_median_of_what_arrived, check_exchange_hands_every_edge_to_its_receiver_with_its_sender,
          check_a_mix_sent_in_pieces_sums_as_one_route, check_a_receiver_of_one_row_keeps_it_as_float32,
          check_a_merging_mix_writes_what_an_assign_after_it_writes]


@pytest.mark.parametrize("check", CHECKS)
def test_single_rank(check):
    check(MPI.COMM_SELF)


@pytest.mark.mpi
@pytest.mark.parametrize("check", CHECKS)
def test_across_ranks(check):
    check(MPI.COMM_WORLD)


def test_training_from_a_snapshot_adds_the_update_made_at_the_held_rows():
    """Train(start=held): the gradient is taken at the held row, and the current row moves by that update."""
    class Pulled(FakePop):  # training pulls a row halfway to 10: the update depends on where it starts
        def train(self, active, rnd, incarnation, repeat=0):
            sel = torch.as_tensor(np.asarray(active, dtype=bool))
            self.rows[sel] += 0.5 * (10 - self.rows[sel])
            return np.where(active, 0.5, np.nan)

    def body(ctx, seen):
        nodes = np.array([True, True, False, True])
        held = yield Snapshot(nodes)
        engine.pop.rows[:] += 100  # e.g. a mix changed the current rows meanwhile
        yield Train(nodes, start=held)

    world, full, proto, engine = setup(MPI.COMM_SELF, 4, body)
    engine.pop = Pulled(full, world)
    engine.round(context(4), None)
    x = full.double().numpy()
    expect = x + 100 + 0.5 * (10 - x)  # current + (trained from held - held)
    expect[2] = x[2] + 100  # not in the snapshot, not trained
    np.testing.assert_allclose(engine.pop.rows.double().numpy(), expect, rtol=1e-5)


def test_training_from_a_snapshot_needs_every_trainer_held():
    def body(ctx, seen):
        held = yield Snapshot(np.array([True, False, False]))
        yield Train(np.array([True, True, False]), start=held)

    _, _, _, engine = setup(MPI.COMM_SELF, 3, body)
    with pytest.raises(ValueError, match="not in the Snapshot it starts from"):
        engine.round(context(3), None)


def test_a_protocol_that_is_not_a_step_fails_clearly():
    def body(ctx, seen):
        yield "train please"

    _, _, _, engine = setup(MPI.COMM_SELF, 4, body)
    with pytest.raises(TypeError, match="not a step"):
        engine.round(context(4), None)


def test_assign_needs_a_received_row():
    def body(ctx, seen):
        got = yield Mix("m", np.array([0]), np.array([1]))
        yield Assign(got, np.array([2]))

    _, _, _, engine = setup(MPI.COMM_SELF, 4, body)
    with pytest.raises(ValueError, match="received nothing"):
        engine.round(context(4), None)


def test_a_merging_mix_whose_rows_travel_one_by_one_merges_after_it():
    """A Mix with `order` keeps its rows one by one (no pieces of sums): its `merge` is the Assign
    after it, the same rows; a merge that is not one weight per local row fails naming its shape."""
    src, dst = np.array([0, 1, 2, 3]), np.array([4, 4, 4, 5])
    w, key = np.array([1., 2., 3., 4.]), np.array([.5, .1, .9, .3])
    own = np.array([1., 1., 1., 1., 2.5, np.nan])

    def run(merged):
        def body(ctx, seen):
            got = yield Mix("m", src, dst, weight=w, order=key, merge=own if merged else None)
            if not merged:
                yield Assign(got, np.array([4]), own_weight=own[[4]])

        _, full, _, engine = setup(MPI.COMM_SELF, 6, body)
        engine.round(context(6), None)
        return full, engine.pop.rows

    full, merged = run(True)
    assert torch.equal(merged, run(False)[1])
    assert not torch.equal(merged[4], full[4]) and torch.equal(merged[5], full[5])  # node 5's merge is NaN

    def wrong(ctx, seen):
        yield Mix("m", src, dst, merge=own[:5])

    _, _, _, engine = setup(MPI.COMM_SELF, 6, wrong)
    with pytest.raises(ValueError, match=r"Mix 'm': merge has shape \(5,\), not \(6,\)"):
        engine.round(context(6), None)


def test_assign_reads_the_held_sums_in_place_and_leaves_them_as_they_were():
    """An Assign with an own weight reads a run of held sums without copying them (sums_of with
    read_only) and never writes them: the result stays valid for the rest of the round."""
    n = 9
    src, dst = np.r_[np.arange(n), np.arange(n)], np.r_[(np.arange(n) + 1) % n, (np.arange(n) + 2) % n]  # two rows each

    def body(ctx, seen):
        got = yield Mix("ring", src, dst)
        before = got.sums_of(np.arange(n)).clone()
        assert got.sums_of(np.arange(2, 6), read_only=True).data_ptr() == got.held.wide[2].data_ptr()
        assert torch.equal(got.sums_of(np.array([5, 2]), read_only=True), before[[5, 2]])  # no run: a copy
        yield Assign(got, np.arange(n), own_weight=np.r_[np.ones(n - 2), 0.5, 2.0])
        seen.append(torch.equal(got.sums_of(np.arange(n)), before))

    world, full, proto, engine = setup(MPI.COMM_SELF, n, body)
    engine.round(context(n), None)
    assert proto.seen == [True]
    x = full.double()
    own = torch.tensor(np.r_[np.ones(n - 2), 0.5, 2.0])[:, None]
    expect = ((x[np.roll(np.arange(n), 1)] + x[np.roll(np.arange(n), 2)] + own * x) / (2 + own)).float()
    assert torch.equal(engine.pop.rows, expect)


# -- the protocols' rules, on a fake overlay, on one rank and across ranks ------------------------

def no_hubs(n):
    return np.zeros((n, 0), np.int64)


def test_heal_round_gives_every_client_the_mean_of_the_hub_averages(comm):
    n = 8  # hubs 0 and 1; clients 2..7 list both, fanout 1
    hubs = np.tile([0, 1], (n, 1))
    x, after, rounds = run_protocol("heal", hubs, hubs, comm, fanout=1)
    trained = x + 1  # FakePop.train adds 1 to the clients
    got = after[2:]
    assert np.allclose(got, got[0], atol=1e-6)  # every client holds the one global model
    active = rounds["hubs_active"]
    assert active in (1, 2)
    assert sum(np.allclose(after[h], got[0], atol=1e-6) for h in (0, 1)) >= active  # aggregating hubs keep it
    # the global model is a mean of two hub means of trained clients: inside their convex hull
    lo, hi = trained[2:].min(axis=0), trained[2:].max(axis=0)
    assert ((got[0] >= lo - 1e-6) & (got[0] <= hi + 1e-6)).all()
    assert rounds["model_messages"] == 2 * 6 + active  # up + down, and each active hub to the other hub


def test_fedavg_on_one_hub_is_the_plain_mean_of_the_trained_clients(comm):
    n = 6
    hubs = np.zeros((n, 1), np.int64)
    x, after, rounds = run_protocol("heal", hubs, hubs, comm, fanout=1)
    expect = (x[1:] + 1).mean(axis=0)
    assert np.allclose(after, expect, atol=1e-6)  # clients and the hub
    assert rounds["hubs_active"] == 1 and rounds["model_messages"] == 2 * 5


def test_epidemic_averages_own_and_received_models_equally(comm):
    n = 5
    views = np.array([[1], [2], [3], [4], [0]])  # a ring: i sends to i+1
    x, after, _ = run_protocol("epidemic", no_hubs(n), views, comm)
    half = x + 1
    expect = (half + np.roll(half, 1, axis=0)) / 2
    assert np.allclose(after, expect, atol=1e-6)


def test_gossip_merges_then_trains_only_the_receivers(comm):
    n = 4
    views = np.array([[1], [0], [1], [0]])  # 0 -> 1, 1 -> 0, 2 -> 1, 3 -> 0
    x, after, _ = run_protocol("gossip", no_hubs(n), views, comm)
    expect = x.copy()
    expect[1] = (x[1] + x[0] + x[2]) / 3 + 1
    expect[0] = (x[0] + x[1] + x[3]) / 3 + 1
    assert np.allclose(after, expect, atol=1e-6)  # 2 and 3 received nothing: untouched, untrained


def test_gossip_per_model_merges_and_trains_once_per_model_in_arrival_order(comm):
    n = 4
    views = np.array([[1], [0], [1], [0]])  # 0 -> 1, 1 -> 0, 2 -> 1, 3 -> 0
    x, after, rounds = run_protocol("gossip", no_hubs(n), views, comm, gossip_update="per_model")
    sent_at = uniform(3, "gossip-send-time", np.arange(n), 0, 0)  # context(): seed 3, round 0
    assert sent_at[2] < sent_at[0]  # node 1 hears 2 before 0: not the senders' id order
    expect = x.copy()
    for node, senders in ((1, [0, 2]), (0, [1, 3])):
        for s in sorted(senders, key=lambda s: sent_at[s]):
            expect[node] = (expect[node] + x[s]) / 2 + 1  # pairwise merge with the round-start model, then train
    assert np.allclose(after, expect, atol=1e-5)
    assert rounds["train_samples"] == 4  # one training per model received (FakePop counts trainings)


def test_a_kept_mix_hands_out_its_rows_one_by_one_in_key_order():
    def body(ctx, seen):
        got = yield Mix("m", np.array([0, 1, 2, 3]), np.array([4, 4, 4, 5]), weight=np.array([1., 2., 3., 4.]),
                        order=np.array([0.5, 0.1, 0.9, 0.3]))
        seen.append(all_sums(got))
        seen += [got.arrival(j) for j in range(3)]

    _, full, proto, engine = setup(MPI.COMM_SELF, 6, body)
    engine.round(context(6), None)
    x = full.double().numpy()
    sums, first, second, third = proto.seen
    assert np.allclose(sums, [x[0] + 2 * x[1] + 3 * x[2], 4 * x[3]], atol=1e-5)  # the mean is still there
    assert list(first.nodes) == [4, 5] and list(second.nodes) == [4] and list(third.nodes) == [4]
    assert np.allclose(all_sums(first), [2 * x[1], 4 * x[3]], atol=1e-5)  # 1 (key 0.1) reached 4 first
    assert np.allclose(all_sums(second), [x[0]], atol=1e-5) and np.allclose(all_sums(third), [3 * x[2]], atol=1e-5)
    assert list(first.weights[[4, 5]]) == [2.0, 4.0] and first.counts[4] == 1


def test_dead_nodes_neither_send_nor_receive(comm):
    n = 5
    views = np.array([[1], [2], [3], [4], [0]])
    alive = np.array([True, True, False, True, True])
    x, after, rounds = run_protocol("epidemic", no_hubs(n), views, comm, alive=alive)
    assert np.allclose(after[2], x[2]) and rounds["model_messages"] == 3  # 2 is dead: 1->2 and 2->3 do not happen


def test_a_median_hub_ignores_a_minority_of_wild_clients(comm):
    n = 8
    hubs = np.zeros((n, 1), np.int64)
    full = random_rows(n)
    full[[2, 5]] = 1e6  # two of seven clients send garbage
    x, after, _ = run_protocol("heal", hubs, hubs, comm, full=full, aggregation="median")
    trained = x[1:] + 1
    assert np.allclose(after[0], np.median(trained, axis=0), atol=1e-5)
    assert np.abs(after).max() < 10  # the garbage did not reach anyone


@pytest.mark.parametrize("hub_merge", ["mean", "median"])
def test_a_median_across_hubs_keeps_one_poisoned_hub_out(hub_merge, comm):
    n = 9  # hubs 0, 1, 2 list each other; client i sends to hub i % 3; client 5 (of hub 2) sends garbage
    hubs = np.full((n, 3), -1, np.int64)
    hubs[:3] = [0, 1, 2]
    hubs[3:, 0] = np.arange(3, n) % 3
    full = random_rows(n)
    full[5] = 1e6
    x, after, _ = run_protocol("heal", hubs, hubs, comm, full=full, hub_merge=hub_merge)
    trained = x + 1
    hub_avg = np.stack([trained[[3 + k, 6 + k]].mean(axis=0) for k in range(3)])  # hub 2's is garbage
    combine = np.median if hub_merge == "median" else np.mean
    assert np.allclose(after[3:], combine(hub_avg, axis=0), atol=1e-4)
    assert (np.abs(after).max() < 10) == (hub_merge == "median")


@pytest.mark.parametrize("hub_weights", ["uniform", "clients"])
def test_hub_weights_decide_how_much_a_client_of_a_busy_hub_counts(hub_weights, comm):
    n = 6  # hubs 0 and 1 list each other; clients 2, 3, 4 send to hub 0, client 5 to hub 1
    hubs = np.full((n, 2), -1, np.int64)
    hubs[:2] = [0, 1]
    hubs[2:, 0] = [0, 0, 0, 1]
    x, after, _ = run_protocol("heal", hubs, hubs, comm, hub_weights=hub_weights)
    trained = x[2:] + 1
    expect = trained.mean(axis=0) if hub_weights == "clients" else (trained[:3].mean(axis=0) + trained[3]) / 2
    assert np.allclose(after[2:], expect, atol=1e-5)


def test_a_heal_client_takes_the_median_of_its_three_copies(comm):
    n = 9  # hubs 0, 1, 2; every client sends to all three, each hub averages what it got: equal copies
    hubs = np.tile([0, 1, 2], (n, 1))
    x, after, _ = run_protocol("heal", hubs, hubs, comm, fanout=3, client_merge="median")
    assert np.allclose(after[3:], (x[3:] + 1).mean(axis=0), atol=1e-5)


def test_epidemic_median_merge_includes_the_own_model(comm):
    n = 5
    views = np.array([[1, 2], [2, 3], [3, 4], [4, 0], [0, 1]])
    x, after, _ = run_protocol("epidemic", no_hubs(n), views, comm, aggregation="median")
    half = x + 1
    for i in range(n):
        senders = [j for j in range(n) if i in views[j]] + [i]
        assert np.allclose(after[i], np.median(half[senders], axis=0), atol=1e-5)


def test_own_partials_added_by_chunks_equal_one_whole_partial(monkeypatch):
    """A rank adds its own edges into its receivers' sums a few groups at a time (engine.summing.
    add_by_chunks): bit for bit what one whole [groups, P] partial added in one go gives, forged
    rows included, and groups of one edge, added straight in, whatever the chunk. OwnEdges forms
    that whole partial early when it fits one chunk, else adds by chunks: the same sums, and a
    group that no edge reaches (a receiver that keeps no rows) is never touched."""
    import heal_mpi.engine.summing as summing
    from heal_mpi.engine.routes import WIDE
    g = np.random.default_rng(3)
    table, forged = torch.randn(20, 7, dtype=torch.float32), torch.randn(4, 7, dtype=torch.float32)
    e = 300
    index, group = g.integers(0, 20, e), g.integers(0, 11, e)
    group[:8] = 11 + np.arange(8)                     # eight groups of one edge, some forged
    group[8:10] = 19                                  # and one of two: a partial first
    w = np.where(g.random(e) < 0.3, 1.0, g.random(e))
    lying = g.random(e) < 0.2
    at = g.permutation(24)[:20]                       # where each group's receiver sits in sums
    start = torch.randn(24, 7, dtype=torch.float64)   # what earlier ranks' blocks added
    start[at[[12, 11]]] = 0.0                         # receivers nothing reached before; group 11 is
    index[0], lying[0], table[0, 0] = 0, False, -0.0  # edge 0 alone, whose row holds -0.0: 0 + (-0.0) is +0.0
    sources = summing.Sources(table, index, forged, lying, np.where(lying, g.integers(0, 4, e), -1))
    whole = start.clone()
    whole.index_add_(0, torch.as_tensor(at), sources.reduce(group, w, 20))
    assert whole[at[11], 0] == 0 and not torch.signbit(whole[at[11], 0])
    for rows_per_chunk in (1, 3, 11, 50):
        monkeypatch.setattr(summing, "CHUNK_BYTES", 8 * 7 * rows_per_chunk)
        monkeypatch.setattr(summing, "PASS_BYTES", 8 * 7 * rows_per_chunk)
        chunked = start.clone()
        summing.add_by_chunks(chunked, at, sources, group, w)
        assert torch.equal(chunked, whole) and not torch.signbit(chunked[at[11], 0]), rows_per_chunk
        carry = np.full(21, WIDE)                         # group 20: no edge, its place out of range
        own = summing.OwnEdges(sources, group, w, carry, slice(0, 21), 0)
        assert (own.part is None) == (rows_per_chunk < 20)
        early = start.clone()
        own.add(all_wide(early), np.r_[at, 99])
        assert torch.equal(early, whole), rows_per_chunk
        pieces = start.clone()                            # in two pieces of receivers, counted from 5
        for mine in (slice(5, 13), slice(13, 26)):
            summing.OwnEdges(sources, group + 5, w, np.r_[carry, carry[:5]], mine, 5).add(all_wide(pieces), np.r_[at, 99])
        assert torch.equal(pieces, whole), rows_per_chunk


@pytest.mark.parametrize("forgery", [torch.float32, torch.float64])
def test_lone_rows_cross_as_float32_and_sum_as_their_float64_partials(monkeypatch, forgery):
    """What a rank sends another (engine.summing.partials): the float64 partial sum of each
    destination that several edges reach, the float32 row itself of one that a single edge
    reaches, weighted on arrival (add_partials), and nothing for one that drops rows (Mix.keep).
    Added into the receiver's sums, bit for bit what whole float64 partials of the kept
    destinations give, with weights of 1 and others, forged rows, a chunk of any size and
    blocks cut by owner; a forgery that is not float32 sends every row as a partial."""
    import heal_mpi.engine.summing as summing
    from heal_mpi.engine.routes import NARROW, NO_ROW, WIDE, Header
    g = np.random.default_rng(5)
    table, forged = torch.randn(30, 7, dtype=torch.float32), torch.randn(4, 7, dtype=forgery)
    e, n_out = 60, 40                                   # 40 destinations for 60 edges: many lone ones
    index, group = g.integers(0, 30, e), g.integers(0, n_out, e)
    w = np.where(g.random(e) < 0.5, 1.0, g.random(e))
    lying = g.random(e) < 0.2
    sources = summing.Sources(table, index, forged, lying, np.where(lying, g.integers(0, 4, e), -1))
    count = np.bincount(group, minlength=n_out)
    lone = (count == 1) & sources.narrow
    dropped = g.random(n_out) < 0.25
    carry = np.where(dropped, NO_ROW, np.where(lone, NARROW, WIDE))
    assert lone.any() == (forgery == torch.float32) and (count > 1).any()
    assert (dropped & lone).any() == (forgery == torch.float32) and (dropped & (count > 1)).any()
    head = Header(weight=np.bincount(group, w, n_out), carry=carry)
    at = g.permutation(50)[:n_out]                      # where each destination sits in the sums
    start = torch.randn(50, 7, dtype=torch.float64)     # what earlier ranks' blocks added
    kept = ~dropped[group]
    whole = start.clone().index_add_(0, torch.as_tensor(at), sources.subset(np.flatnonzero(kept)).reduce(
        group[kept], w[kept], n_out))
    for rows_per_chunk in (1, 3, 50):
        monkeypatch.setattr(summing, "CHUNK_BYTES", 8 * 7 * rows_per_chunk)
        monkeypatch.setattr(summing, "PASS_BYTES", 8 * 7 * rows_per_chunk)
        cuts = [0, 13, 13, n_out]                        # three ranks' blocks, one of them empty
        blocks = summing.partials(sources, group, w, carry, [slice(a, b) for a, b in zip(cuts, cuts[1:])])
        assert all(p.dtype == torch.float64 and r.dtype == torch.float32 for p, r in blocks)
        assert sum(len(r) for _, r in blocks) == (carry == NARROW).sum()
        assert sum(len(p) for p, _ in blocks) == (carry == WIDE).sum()
        split = start.clone()
        for (part, rows), a, b in zip(blocks, cuts, cuts[1:]):
            summing.add_partials(all_wide(split), at[a:b], head.take(slice(a, b)), part, rows)
        assert torch.equal(split, whole), rows_per_chunk
        pieces = start.clone()                           # the same destinations in two pieces of each block
        for to in ([slice(0, 6), slice(13, 13), slice(13, 30)], [slice(6, 13), slice(13, 13), slice(30, n_out)]):
            for (part, rows), s in zip(summing.partials(sources, group, w, carry, to), to):
                summing.add_partials(all_wide(pieces), at[s], head.take(s), part, rows)
        assert torch.equal(pieces, whole), rows_per_chunk
    # a receiver that only this lone row reaches keeps the float32 row: its sum reads the same
    alone = np.zeros(50, bool)
    alone[at[carry == NARROW]] = True
    held = summing.SumBuffers().take("m", np.arange(50), np.where(alone, NARROW, WIDE), 50, 7, "cpu")
    weights = np.zeros(50)
    weights[at] = head["weight"]
    for (part, rows), a, b in zip(blocks, cuts, cuts[1:]):
        summing.add_partials(held, at[a:b], head.take(slice(a, b)), part, rows)
    zero = torch.zeros(50, 7, dtype=torch.float64)
    from_zero = zero.index_add_(0, torch.as_tensor(at), sources.subset(np.flatnonzero(kept)).reduce(group[kept], w[kept], n_out))
    assert len(held.lone) == alone.sum() and alone.any() == (forgery == torch.float32)
    assert torch.equal(held.sums_of(np.arange(50), weights), from_zero)


def test_pieces_cut_every_ranks_keeping_nodes_into_equal_runs():
    """routes.Pieces: each rank's nodes that keep rows cut into `count` runs of equal size (to one
    node), in node order, the count from the largest rank's kept rows and PIECE_BYTES."""
    from heal_mpi.engine.routes import PIECE_BYTES, Pieces
    keeps = np.random.default_rng(2).random(100) < 0.7
    bounds = np.array([0, 34, 67, 100])
    pieces = Pieces(keeps, bounds, PIECE_BYTES // 7)
    most = max(keeps[a:b].sum() for a, b in zip(bounds, bounds[1:]))
    assert pieces.count == -(-most // 7) > 1
    for a, b in zip(bounds, bounds[1:]):
        of = pieces.of[a:b][keeps[a:b]]
        assert (np.diff(pieces.of[a:b]) >= 0).all() and set(of) == set(range(pieces.count))
        sizes = np.bincount(of, minlength=pieces.count)
        assert sizes.max() - sizes.min() <= 1
        assert (pieces.cuts(np.arange(a, b)) == np.searchsorted(pieces.of[a:b], np.arange(pieces.count + 1))).all()
    assert Pieces(keeps, bounds, PIECE_BYTES // most).count == 1


def test_sum_buffers_are_reused_across_rounds_never_within_one():
    """The receivers' sums keep their memory from round to round (no page faults), but two
    Mixes of a round never share it, and a buffer far larger than needed is given back. A
    receiver of one float32 row and nothing else keeps the row (lone), the others a float64 sum."""
    from heal_mpi.engine.routes import NARROW, NO_ROW, WIDE
    from heal_mpi.engine.summing import CHUNK_BYTES, SumBuffers
    pool = SumBuffers()

    def take(n, carry, at=None):  # one message to each of the first n of 100 rows, or to `at`
        return pool.take("gossip", np.arange(n) if at is None else at, np.broadcast_to(carry, (n,)), 100, 7, "cpu")

    first = take(100, WIDE).wide
    first.fill_(3.0)
    second = take(100, WIDE).wide  # a second Mix of the same purpose this round
    assert second.data_ptr() != first.data_ptr() and (first == 3.0).all() and not second.any()
    pool.new_round()
    again = take(90, WIDE)
    assert again.wide.data_ptr() == first.data_ptr() and again.wide.shape == (90, 7) and not again.wide.any()
    assert again.place[89] == 89 and again.lone.shape == (0, 7) and (again.nodes == np.arange(90)).all()
    pool.new_round()
    carry = np.where(np.arange(100) % 3 == 0, NARROW, WIDE)
    carry[:3] = NO_ROW                                         # rows 0-2 receive no row: no receivers
    at = np.r_[np.arange(100), [4, 5, 5]]                      # 4 gets a second row, 5 two more
    split = take(103, np.r_[carry, [NARROW, WIDE, NARROW]], at)
    lone = (np.arange(100) % 3 == 0) & (np.arange(100) > 2)
    assert split.lone.shape == (lone.sum(), 7) and split.lone.dtype == torch.float32
    assert (split.place[lone] == -1 - np.arange(lone.sum())).all() and (split.nodes == np.arange(3, 100)).all()
    assert (split.place[split.nodes[~lone[3:]]] == np.arange(97 - lone.sum())).all()
    assert split.wide.data_ptr() == first.data_ptr()
    pool.new_round()
    small = take(1, WIDE).wide
    assert small.data_ptr() == first.data_ptr()  # within a chunk of slack: kept
    pool.new_round()
    big = (CHUNK_BYTES >> 3) // 7 + 200
    pool.take("gossip", np.arange(big), np.full(big, WIDE), big, 7, "cpu")
    pool.new_round()
    pool.take("gossip", np.arange(1), np.full(1, WIDE), big, 7, "cpu")
    assert pool.held[("gossip", 0, "wide")].numel() == 7  # far too large for one row: given back, reallocated small


def test_sums_by_piece_share_the_memory_of_the_largest_piece():
    """SumBuffers.by_piece: one Held per piece, of that piece's receivers only, each wide or lone
    one numbered within its piece, all in one memory, zeroed as each piece is taken."""
    from heal_mpi.engine.routes import NARROW, WIDE
    from heal_mpi.engine.summing import SumBuffers
    local = np.r_[np.arange(10), [2, 7]]                       # 2 and 7 get two rows: wide
    carry = np.where(np.arange(12) % 2 == 0, NARROW, WIDE)
    piece = np.r_[np.repeat([0, 1, 2], [4, 4, 2]), [0, 1]]     # rows 0-3, 4-7, 8-9
    helds = SumBuffers().by_piece("push", local, carry, piece, 3, 10, 5, "cpu")
    first = next(helds)
    assert (first.nodes == np.arange(4)).all() and len(first.wide) == 3 and len(first.lone) == 1
    assert sorted(first.place[[1, 2, 3]]) == [0, 1, 2] and first.place[0] == -1
    first.wide.fill_(7.0)
    second = next(helds)
    assert (second.nodes == np.arange(4, 8)).all() and second.wide.data_ptr() == first.wide.data_ptr()
    assert not second.wide.any() and len(second.wide) == len(second.lone) == 2   # 4 and 6 got one NARROW row
    assert list(second.place[4:8]) == [-1, 0, -2, 1]
    third = next(helds)
    assert (third.nodes == [8, 9]).all() and len(third.wide) == 1 and third.place[9] == 0 and third.place[8] == -1


def test_scratch_memory_is_kept_under_its_name():
    """summing.scratch: a name's buffer serves every later call that fits (no allocation a pass),
    another name has its own, and a far larger one than needed is given back."""
    from heal_mpi.engine.summing import CHUNK_BYTES, scratch
    a = scratch("test-a", (3, 5), torch.float64, "cpu")
    assert a.shape == (3, 5) and scratch("test-a", (2, 7), torch.float64, "cpu").data_ptr() == a.data_ptr()
    assert scratch("test-b", (3, 5), torch.float64, "cpu").data_ptr() != a.data_ptr()
    assert scratch("test-a", (3, 5), torch.float32, "cpu").data_ptr() != a.data_ptr()  # per dtype
    big = scratch("test-a", (CHUNK_BYTES >> 2,), torch.float64, "cpu")
    assert scratch("test-a", (10,), torch.float64, "cpu").data_ptr() != big.data_ptr()


def test_a_block_carrying_float32_rows_sends_them_as_lone_ones_and_widens_them_exactly():
    """Robust and keyed Mixes ship every row as it is (routes.Block.carrying): float32 rows as the
    block's `lone` payload, widened to float64 on arrival bit for bit; a float64 row (a forgery
    of another dtype) in `rows`."""
    from heal_mpi.engine.routes import NARROW, WIDE, Block, Header
    narrow = torch.randn(5, 7, dtype=torch.float32)
    blk = Block.carrying(Header(carry=np.full(5, NARROW)), narrow)
    assert blk.rows.shape == (0, 7) and blk.rows.dtype == torch.float64 and blk.lone is narrow
    assert blk.widened().dtype == torch.float64 and torch.equal(blk.widened(), narrow.double())
    wide = narrow.double() / 3
    blk = Block.carrying(Header(carry=np.full(5, WIDE)), wide)
    assert blk.lone.shape == (0, 7) and blk.lone.dtype == torch.float32 and blk.widened() is wide
