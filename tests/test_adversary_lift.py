"""Lift (byzantine.md §2.3, §4 B1-B11): the seed, the hub draw, and the cache rewrite."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from heal_mpi.adversary.javarandom import JavaRandom
from heal_mpi.adversary.lift import draw_hubs, lift_caches, lift_seed


def test_seed_is_sha256_of_the_sorted_ids():
    expect = int.from_bytes(hashlib.sha256(b"2,7,10,31").digest()[:8], "big")
    assert lift_seed([31, 2, 10, 7]) == expect
    assert lift_seed(np.array([7, -1, 31, 10, 2, -1])) == expect  # padding ignored, any order
    assert 0 <= expect < 2**64


def test_java_draw_is_the_spec_loop():
    alive = np.ones(50, bool)
    r, want = JavaRandom(lift_seed([4, 9, 1])), []
    while len(want) < 8:
        x = r.next_int(50)
        if x not in want:
            want.append(x)
    got = draw_hubs([9, 1, 4], 8, 50, alive)
    assert got.dtype == np.int64 and got.tolist() == want


def test_dead_ids_are_skipped_and_their_draw_consumed():
    alive = np.ones(50, bool)
    first = draw_hubs([1, 2, 3], 6, 50, alive)
    alive[first[2]] = False
    second = draw_hubs([1, 2, 3], 6, 50, alive)
    assert second[:5].tolist() == np.delete(first, 2).tolist()  # draw order kept around the skip
    assert first[2] not in second and len(set(second.tolist())) == 6


@pytest.mark.parametrize("prng", ["java_lcg", "pcg64"])
def test_draw_is_deterministic_distinct_and_stops_at_the_live_count(prng):
    alive = np.zeros(30, bool)
    alive[[3, 5, 8, 20]] = True
    a = draw_hubs([0, 1], 10, 30, alive, prng)
    assert sorted(a.tolist()) == [3, 5, 8, 20]  # fewer live ids than h: all of them
    alive[:] = True
    b, c = draw_hubs([0, 1], 10, 30, alive, prng), draw_hubs([1, 0], 10, 30, alive, prng)
    assert b.tolist() == c.tolist() and len(set(b.tolist())) == 10 and b.max() < 30


def test_generators_differ_and_unknown_prng_raises():
    alive = np.ones(10**6, bool)
    assert draw_hubs([5], 10, 10**6, alive).tolist() != draw_hubs([5], 10, 10**6, alive, "pcg64").tolist()
    with pytest.raises(ValueError, match="prng"):
        draw_hubs([5], 3, 10, np.ones(10, bool), "mt19937")


def _caches(n=40, c=8, h=3, seed=0):
    rng = np.random.default_rng(seed)
    cache = np.full((n, c), -1, dtype=np.int64)
    for v in range(n):
        ids = rng.choice(np.delete(np.arange(n), v), c, replace=False)
        cache[v] = ids
    cache[: n // 2, :h] = [1, 2, 3]  # half the nodes agree on the hubs, listed in some order
    cache[n // 2:, :h] = [3, 1, 5]
    cache[n // 2: n // 2 + 3, :h] = [2, 3, 1]  # same set as the first half, other order
    cache[::4, c - 2:] = -1  # some rows with room to top up
    return cache


def test_lift_rewrites_correct_rows_only_and_equal_lists_agree():
    n, c, h = 40, 8, 3
    cache, alive = _caches(n, c, h), np.ones(n, bool)
    correct = np.ones(n, bool)
    correct[[7, 30]] = False  # Byzantine rows keep their cache
    out = lift_caches(cache, h, n, alive, correct, seed=11, rnd=100, node_ids=np.arange(n))
    assert out[[7, 30]].tolist() == cache[[7, 30]].tolist()
    same = [v for v in range(n) if correct[v] and set(cache[v, :h]) == {1, 2, 3}]
    assert len(same) > 20 and all(out[v, :h].tolist() == draw_hubs([1, 2, 3], h, n, alive).tolist() for v in same)
    assert out[33, :h].tolist() == draw_hubs([1, 3, 5], h, n, alive).tolist()
    assert cache[7, 0] != -1  # input untouched
    assert cache.tolist() == _caches(n, c, h).tolist()


def test_keep_then_fill():
    n, c, h = 40, 8, 3
    cache, alive = _caches(n, c, h), np.ones(n, bool)
    alive[[38, 39]] = False
    out = lift_caches(cache, h, n, alive, np.ones(n, bool), seed=11, rnd=100, node_ids=np.arange(n))
    for v in range(n):
        old, new, rest = set(cache[v, :h].tolist()), out[v, :h].tolist(), out[v, h:].tolist()
        kept = [u for u in cache[v, h:].tolist() if u >= 0 and u not in old and u not in new]
        assert rest[:len(kept)] == kept  # the old non-hub entries, in order
        fill = rest[len(kept):]
        assert len(rest) == c - h and -1 not in rest  # topped up to c - h
        assert len(set(new + rest)) == c  # no repeats anywhere in the row
        assert not set(fill) & (old | {v}) and all(alive[u] for u in fill)


def test_fill_is_keyed_by_node_and_round_not_by_the_row_layout():
    n, c, h = 40, 8, 3
    cache, alive, ids = _caches(n, c, h), np.ones(n, bool), np.arange(n)
    full = lift_caches(cache, h, n, alive, np.ones(n, bool), 11, 100, ids)
    perm = np.random.default_rng(1).permutation(n)
    chunks = np.array_split(perm, 3)  # three "ranks" holding scattered rows
    parts = [lift_caches(cache[p], h, n, alive, np.ones(len(p), bool), 11, 100, ids[p]) for p in chunks]
    assert np.concatenate(parts).tolist() == full[np.concatenate(chunks)].tolist()
    other = lift_caches(cache, h, n, alive, np.ones(n, bool), 11, 101, ids)
    assert other[:, :h].tolist() == full[:, :h].tolist()  # the hubs depend on the hub list only
    assert other.tolist() != full.tolist()  # the top-up depends on the round


def test_too_few_live_ids_pad_with_minus_one():
    cache = np.array([[0, 1, 2, 3, -1, -1]])
    alive = np.zeros(6, bool)
    alive[[0, 2, 4]] = True
    out = lift_caches(cache, 2, 6, alive, np.array([True]), 3, 0, np.array([4]))
    assert sorted(out[0, :2].tolist()) in ([0, 2], [0, 4], [2, 4])
    assert out[0, 2] == 3  # the kept entry (dead, but Lift only rewrites, it does not prune)
    assert (out[0] >= 0).sum() <= 4 and 4 not in out[0, 2:]


def test_bad_h_raises():
    with pytest.raises(ValueError, match="h"):
        lift_caches(np.zeros((2, 3), np.int64), 4, 10, np.ones(10, bool), np.ones(2, bool), 0, 0, np.arange(2))


def test_a_hundred_thousand_rows_are_lifted_vectorised():
    """Speed is the benchmark's business; here, the size runs and every node gets h live hubs."""
    n, c, h = 100_000, 20, 10
    rng = np.random.default_rng(0)
    cache = np.empty((n, c), dtype=np.int64)
    cache[:, :h] = np.array([rng.choice(n, h, replace=False) for _ in range(4)])[rng.integers(0, 4, n)]
    cache[:, h:] = rng.integers(0, n, (n, c - h))
    cache[::3, 15:] = -1  # a third of the rows need a top-up of 5
    alive = np.ones(n, bool)
    out = lift_caches(cache, h, n, alive, np.ones(n, bool), 1, 100, np.arange(n))
    assert (out >= 0).all() and all(len(set(row[:h])) == h for row in out[::997])


def test_lift_imports_neither_mpi_nor_torch():
    code = ("import sys; import heal_mpi.adversary.lift\n"
            "print(','.join(m for m in ('mpi4py', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
