"""D-PSGD checked against mathematics, not against itself: the mixing matrix W of every round's live
graph is symmetric and doubly stochastic; with training off the disagreement between the nodes'
models contracts at least as fast as the second-largest eigenvalue of W predicts and the average
is kept; both orders against their formulas; the same results on 1, 2 and 3 ranks."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from heal_mpi import config as cfgmod
from heal_mpi.simulation import Simulation
from helpers import FakePop, gather_rows, make_world

BASE = ["run.threads=1", "run.progress='none'", "protocol.kind='dpsgd'", "data.synthetic_train=640",
        "data.synthetic_test=100", "train.local_steps=2", "train.batch_size=16", "eval.every=1000"]


class Still(FakePop):
    """Training off: the rows stay as they are (the test reads the mixing alone)."""

    def train(self, active, rnd, incarnation, repeat=0):
        return np.full(len(self.rows), np.nan)


class Pulled(FakePop):
    """Training pulls a row halfway to 10, so the update depends on the row it starts from."""

    def train(self, active, rnd, incarnation, repeat=0):
        sel = torch.as_tensor(np.asarray(active, dtype=bool))
        self.rows[sel] += 0.5 * (10 - self.rows[sel])
        return np.where(active, 0.5, np.nan)


def dpsgd(comm, n, *overrides, rounds=1):
    cfg = cfgmod.validate(cfgmod.load(None, [*BASE, f"nodes.count={n}", f"run.rounds={rounds}", *overrides]),
                          check_files=False)
    world = make_world(comm, n)
    return world, Simulation.build(cfg, world, out=None)


def mixing_matrices(comm, n, rounds, *overrides):
    """W of every round: each node starts the round at its unit vector e_i (P = N), training off, so
    after the round node i holds row i of W. Returns [(alive [N], W [N, N])]."""
    world, sim = dpsgd(comm, n, *overrides, rounds=rounds)
    eye = torch.eye(n)
    out = []
    for rnd in range(rounds):
        sim.engine.pop = Still(eye, world)
        sim.step(rnd)
        out.append((sim.alive.copy(), gather_rows(world, sim.engine.pop.rows.double().numpy())))
    return out


def neighbours(overlay, world, alive) -> set:
    """The undirected live links {(i, j)} of this round's views (every rank's, gathered)."""
    views = gather_rows(world, overlay.neighbours())
    return {(min(i, j), max(i, j)) for i, row in enumerate(views) for j in row
            if j >= 0 and j != i and alive[i] and alive[j]}


@pytest.mark.parametrize("overlay", ["ring", "regular", "newscast"])
def test_w_is_symmetric_and_doubly_stochastic_on_every_rounds_live_graph(overlay, comm):
    faults = ["faults.crash=[{round = 2, fraction = 0.25}]", "faults.churn=[{start = 4, end = 6, fraction = 0.2}]"]
    for alive, w in mixing_matrices(comm, 16, 7, f"overlay.kind='{overlay}'", "overlay.regular.degree=3",
                                    "overlay.cache_size=4", *faults):
        live = np.flatnonzero(alive)
        sub = w[np.ix_(live, live)]
        np.testing.assert_allclose(sub, sub.T, atol=1e-7)
        np.testing.assert_allclose(sub.sum(axis=0), 1, atol=1e-6)
        np.testing.assert_allclose(sub.sum(axis=1), 1, atol=1e-6)
        assert (sub >= 0).all() and np.allclose(w[~alive], np.eye(16)[~alive])  # the dead keep their rows
    assert not alive.all()


def test_w_has_the_metropolis_hastings_weights_of_the_links():
    world, sim = dpsgd(MPI.COMM_SELF, 12, "overlay.kind='newscast'", "overlay.cache_size=3")
    sim.engine.pop = Still(torch.eye(12), world)
    sim.step(0)
    w = sim.engine.pop.rows.double().numpy()
    links = neighbours(sim.overlay, world, sim.alive)
    degree = np.bincount(np.array(sorted(links)).ravel(), minlength=12)
    expect = np.zeros((12, 12))
    for i, j in links:
        expect[i, j] = expect[j, i] = 1 / (max(degree[i], degree[j]) + 1)
    np.fill_diagonal(expect, 1 - expect.sum(axis=1))
    np.testing.assert_allclose(w, expect, atol=1e-7)
    assert degree.max() > degree.min()  # directed Newscast views: unequal undirected degrees


@pytest.mark.parametrize("overlay,n", [("ring", 12), ("regular", 16)])
def test_disagreement_contracts_as_fast_as_lambda_2_predicts_and_the_average_is_kept(overlay, n, comm):
    rounds = 25
    (_, w), = mixing_matrices(comm, n, 1, f"overlay.kind='{overlay}'", "overlay.regular.degree=3")
    lam = np.sort(np.abs(np.linalg.eigvalsh(w)))[-2]  # W is symmetric: real eigenvalues; the largest is 1
    assert 0 < lam < 1
    world, sim = dpsgd(comm, n, f"overlay.kind='{overlay}'", "overlay.regular.degree=3", rounds=rounds)
    x0 = np.random.default_rng(1).standard_normal((n, 5))
    sim.engine.pop = Still(torch.as_tensor(x0, dtype=torch.float32), world)
    start = x0.astype(np.float32).astype(np.float64)
    d0 = np.linalg.norm(start - start.mean(axis=0))
    for t in range(1, rounds + 1):
        sim.step(t - 1)
        x = gather_rows(world, sim.engine.pop.rows.double().numpy())
        assert np.linalg.norm(x - x.mean(axis=0)) <= lam ** t * d0 * (1 + 1e-4) + 1e-5
        np.testing.assert_allclose(x.mean(axis=0), start.mean(axis=0), atol=1e-6)  # float32 rows: to rounding


@pytest.mark.parametrize("order", ["atc", "cta"])
def test_both_orders_follow_their_formula(order, comm):
    n = 10
    (_, w), = mixing_matrices(comm, n, 1, "overlay.kind='ring'")
    world, sim = dpsgd(comm, n, "overlay.kind='ring'", f"protocol.dpsgd.order='{order}'")
    x = np.random.default_rng(2).standard_normal((n, 5))
    sim.engine.pop = Pulled(torch.as_tensor(x, dtype=torch.float32), world)
    sim.step(0)
    x = x.astype(np.float32).astype(np.float64)
    trained = x + 0.5 * (10 - x)
    expect = w @ trained if order == "atc" else w @ x + (trained - x)  # cta: the update taken at x
    np.testing.assert_allclose(gather_rows(world, sim.engine.pop.rows.double().numpy()), expect, atol=1e-5)


def test_a_ring_round_sends_two_models_and_four_control_messages_per_node():
    from heal_mpi.metrics import RoundMetrics
    world, sim = dpsgd(MPI.COMM_SELF, 9, "overlay.kind='ring'")
    sim.step(0)
    metrics = RoundMetrics()
    sim.engine.contribute(metrics)
    rounds = metrics.reduce(sim.comm).rounds
    assert rounds["model_messages"] == 2 * 9 and rounds["control_messages"] == 4 * 9
    assert rounds["control_bytes"] == 2 * 9 * 16 + 2 * 9 * 24  # link messages carry nothing, degrees one value


@pytest.mark.mpi
@pytest.mark.parametrize("setting", [["overlay.kind='newscast'", "overlay.cache_size=4",
                                      "faults.crash=[{round = 1, fraction = 0.2}]", "faults.message_loss=0.1"],
                                     ["overlay.kind='ring'", "protocol.dpsgd.order='cta'",
                                      "faults.churn=[{start = 1, end = 3, fraction = 0.15}]"]])
def test_the_same_models_on_any_rank_count(setting):
    """The whole world, and one rank alone on COMM_SELF: the same real models after 4 rounds."""
    comm = MPI.COMM_WORLD
    models = []
    for c in (comm, MPI.COMM_SELF):
        world, sim = dpsgd(c, 14, *setting, rounds=4)
        for rnd in range(4):
            sim.step(rnd)
        models.append(gather_rows(world, sim.engine.pop.rows.numpy()))
    np.testing.assert_allclose(models[0], models[1], atol=1e-6)
