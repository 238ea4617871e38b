"""The fault schedule: counts, protection, hub choice, churn incarnations, determinism."""

import numpy as np

from heal_mpi import config as cfgmod
from heal_mpi.faults.schedule import FaultSchedule, pick_top_degree, share


def make_cfg(n=100, **faults):
    return cfgmod.from_dict({"nodes": {"count": n}, "run": {"rounds": 50, "seed": 3},
                             "protocol": {"kind": "none"}, "faults": faults})


def run(schedule, rounds, in_degree=None):
    alive, inc = schedule.initial_state()
    deg = np.zeros(schedule.n, np.int64) if in_degree is None else in_degree
    ctxs = []
    for rnd in range(rounds):
        ctx = schedule.start_round(rnd, alive, inc, deg)
        alive, inc = ctx.alive, ctx.incarnation
        ctxs.append(ctx)
    return ctxs


def test_crash_takes_half_of_the_live_nodes_once():
    sched = FaultSchedule(make_cfg(1000, crash=[{"round": 5, "fraction": 0.5}]), 1000)
    ctxs = run(sched, 8)
    assert [c.n_alive for c in ctxs] == [1000] * 5 + [500] * 3
    assert len(ctxs[5].crashed) == 500 and len(ctxs[5].joined) == 0
    assert not ctxs[5].alive[ctxs[5].crashed].any()
    assert (ctxs[7].incarnation == 0).all()


def test_several_crash_events_compound():
    sched = FaultSchedule(make_cfg(1000, crash=[{"round": 1, "fraction": 0.5}, {"round": 3, "fraction": 0.5}]), 1000)
    assert run(sched, 4)[-1].n_alive == 250


def test_protected_slots_never_fail():
    cfg = make_cfg(50, crash=[{"round": 1, "fraction": 1.0}], churn=[{"start": 0, "end": 3, "fraction": 1.0}],
                   hub_crash=[{"round": 2, "count": 5}])
    sched = FaultSchedule(cfg, 50, protected=[0, 1, 2])
    deg = np.arange(50)[::-1].copy()  # slots 0, 1, 2 have the highest in-degree
    ctxs = run(sched, 3, deg)
    assert ctxs[-1].alive[:3].all() and ctxs[-1].n_alive == 3
    assert (ctxs[-1].incarnation[:3] == 0).all()


def test_hub_attack_takes_highest_in_degree_ties_by_smallest_id():
    deg = np.array([5, 9, 9, 1, 9, 7, 0, 9])
    assert pick_top_degree(deg, np.ones(8, bool), 3).tolist() == [1, 2, 4]
    alive = np.ones(8, bool)
    alive[2] = False
    assert pick_top_degree(deg, alive, 3).tolist() == [1, 4, 7]


def test_hub_attack_all_means_overlay_hubs():
    cfg = make_cfg(100, hub_crash=[{"round": 2, "count": "all"}])
    cfg = cfg.replace("overlay", hubs=7)
    deg = np.zeros(100, np.int64)
    deg[[10, 20, 30, 40, 50, 60, 70, 80]] = 100 - np.arange(8)
    ctx = run(FaultSchedule(cfg, 100), 3, deg)[2]
    assert ctx.crashed.tolist() == [10, 20, 30, 40, 50, 60, 70] and ctx.n_alive == 93


def test_churn_replaces_slots_every_round_of_the_window():
    sched = FaultSchedule(make_cfg(200, churn=[{"start": 2, "end": 6, "fraction": 0.1}]), 200)
    ctxs = run(sched, 8)
    for rnd, ctx in enumerate(ctxs):
        expect = 20 if 2 <= rnd < 6 else 0
        assert len(ctx.joined) == expect and (ctx.crashed == ctx.joined).all()
        assert ctx.n_alive == 200  # the newcomer takes the slot
    assert ctxs[-1].incarnation.sum() == 80
    assert (ctxs[3].incarnation[ctxs[3].joined] >= 1).all()


def test_schedule_is_a_pure_function_of_the_seed():
    cfg = make_cfg(300, crash=[{"round": 1, "fraction": 0.3}], churn=[{"start": 0, "end": 4, "fraction": 0.2}])
    a, b = run(FaultSchedule(cfg, 300), 5), run(FaultSchedule(cfg, 300), 5)
    for x, y in zip(a, b):
        assert (x.alive == y.alive).all() and (x.incarnation == y.incarnation).all()
        assert (x.joined == y.joined).all() and (x.crashed == y.crashed).all()
    other = run(FaultSchedule(cfg.replace("run", seed=4), 300), 5)
    assert not all((x.alive == y.alive).all() for x, y in zip(a, other))


def test_start_round_leaves_its_inputs_untouched():
    sched = FaultSchedule(make_cfg(10, message_loss=0.25, crash=[{"round": 0, "fraction": 0.5}]), 10)
    alive, inc = sched.initial_state()
    ctx = sched.start_round(0, alive, inc, np.zeros(10, np.int64), do_eval=False)
    assert not ctx.do_eval
    assert alive.all() and ctx.n_alive == 5


def test_share_rounds_halves_up():
    assert share(0.5, 999) == 500 and share(0.1, 1000) == 100 and share(0.0, 10) == 0
