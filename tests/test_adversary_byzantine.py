"""Byzantine overlay nodes (byzantine.md §1.3-§1.4): the choice of attackers and their replies."""

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from heal_mpi.adversary.byzantine import KINDS, choose_byzantine, fake_backward_replies, fake_cache_replies

C = 6
SENDERS = np.array([10, 11, 12, 13])
CACHES = np.array([
    [1, 2, 3, 4, 5, 6],          # full
    [1, -1, 2, 3, -1, -1],       # sparse, not compacted
    [-1] * 6,                    # empty
    [12, 13, 7, 8, -1, -1],      # sender 12's id listed in sender 13's cache
])
BYZ = np.array([13, 10, 11, 12, 40, 41, 42, 43, 44])  # B = 9 > C, any order


# ----------------------------------------------------------------------------- choice

def test_choice_is_a_sorted_keyed_subset_avoiding_protected_slots():
    a = choose_byzantine(5, 1000, 50, protected=(0, 1, 2))
    assert a.dtype == np.int64 and len(a) == 50 and len(set(a.tolist())) == 50
    assert a.tolist() == sorted(a.tolist()) and not {0, 1, 2} & set(a.tolist())
    assert a.tolist() == choose_byzantine(5, 1000, 50, protected=(0, 1, 2)).tolist()
    assert a.tolist() != choose_byzantine(6, 1000, 50, protected=(0, 1, 2)).tolist()
    assert set(choose_byzantine(5, 1000, 10).tolist()) <= set(choose_byzantine(5, 1000, 11).tolist())
    assert choose_byzantine(5, 4, 2, protected=(0, 1)).tolist() == [2, 3]
    assert len(choose_byzantine(5, 10, 0)) == 0


def test_choice_is_uniform():
    hits = np.bincount(np.concatenate([choose_byzantine(s, 20, 5) for s in range(4000)]), minlength=20)
    assert abs(hits / 4000 - 0.25).max() < 0.04  # each slot chosen with probability 5/20


def test_choice_too_large_raises():
    with pytest.raises(ValueError, match="Byzantine"):
        choose_byzantine(0, 10, 9, protected=(0, 1))


# ----------------------------------------------------------------------------- cache replies

def test_passive_replies_are_empty():
    out = fake_cache_replies("passive", SENDERS, CACHES, BYZ, C, 1, 3)
    assert out.shape == (4, C) and (out == -1).all()


@pytest.mark.parametrize("kind", ["active", "noncoordinated"])
def test_active_removes_one_entry_and_appends_self(kind):
    out = fake_cache_replies(kind, SENDERS, CACHES, BYZ, C, 1, 3)
    assert out.shape == (4, C) and out.dtype == np.int64
    for s, real, got in zip(SENDERS, CACHES, out):
        real, got = [x for x in real if x >= 0], got.tolist()
        n = max(len(real), 1)
        assert got[n - 1] == s and all(x == -1 for x in got[n:])  # compact, self last
        removed = Counter(real) - Counter(got[:n - 1])
        assert sum(removed.values()) == (1 if real else 0)
        assert got[:n - 1] == [x for x in real if x not in removed or removed.pop(x) is None]  # order kept
    assert out[0, C - 1] == 10  # full cache: self takes the freed place at the end
    assert out[2].tolist() == [12, -1, -1, -1, -1, -1]  # empty cache: just self


def test_active_duplicate_self_is_literal_unless_dedup():
    cache = np.array([[7, 1, 2, 3, 4, 5]])  # sender 7 already listed (it is a hub)
    for rnd in range(50):
        got = fake_cache_replies("active", np.array([7]), cache, BYZ, C, 1, rnd)[0].tolist()
        if got.count(7) == 2:
            break
    else:
        raise AssertionError("self never kept next to the appended self")
    d = fake_cache_replies("active", np.array([7]), cache, BYZ, C, 1, rnd, dedup=True)[0].tolist()
    assert d.count(7) == 1 and d[-1] == -1


def test_active_removal_is_uniform_over_valid_entries():
    removed = Counter()
    for rnd in range(3000):
        got = fake_cache_replies("active", SENDERS[:2], CACHES[:2], BYZ, C, 9, rnd)
        removed.update((Counter([1, 2, 3]) - Counter(got[1].tolist())).elements())
    assert set(removed) == {1, 2, 3} and all(abs(v / 3000 - 1 / 3) < 0.04 for v in removed.values())


def test_coordinated_replies_are_shuffled_byzantine_ids():
    out = fake_cache_replies("coordinated", SENDERS, CACHES, BYZ, C, 1, 3)
    assert out.shape == (4, C)
    for row in out:
        assert len(set(row.tolist())) == C and set(row.tolist()) <= set(BYZ.tolist())
    assert len({tuple(r) for r in out.tolist()}) > 1  # each sender its own shuffle
    small = fake_cache_replies("coordinated", SENDERS, CACHES, BYZ[:3], C, 1, 3)  # B = 3 <= c: all of them
    assert all(sorted(r[:3]) == [10, 11, 13] and r[3:] == [-1] * 3 for r in small.tolist())
    empty = fake_cache_replies("coordinated", SENDERS, CACHES, np.zeros(0, np.int64), C, 1, 3)
    assert (empty == -1).all()


def test_coordinated_order_is_uniform():
    first = Counter(int(fake_cache_replies("coordinated", SENDERS[:1], CACHES[:1], BYZ[:3], C, 2, r)[0, 0])
                    for r in range(3000))
    assert set(first) == {10, 11, 13} and all(abs(v / 3000 - 1 / 3) < 0.04 for v in first.values())


def test_reply_does_not_depend_on_byz_id_order():
    a = fake_cache_replies("coordinated", SENDERS, CACHES, BYZ, C, 1, 3)
    b = fake_cache_replies("coordinated", SENDERS, CACHES, BYZ[::-1], C, 1, 3)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per_requester", [False, True])
def test_replies_are_keyed_and_independent_of_batching(kind, per_requester):
    req = np.array([0, 5, 6, 7]) if per_requester else None
    full = fake_cache_replies(kind, SENDERS, CACHES, BYZ, C, 1, 3, requesters=req)
    assert full.tolist() == fake_cache_replies(kind, SENDERS, CACHES, BYZ, C, 1, 3, requesters=req).tolist()
    parts = [fake_cache_replies(kind, SENDERS[s], CACHES[s], BYZ, C, 1, 3,
                                requesters=None if req is None else req[s]) for s in (slice(0, 1), slice(1, 4))]
    assert np.concatenate(parts).tolist() == full.tolist()
    back = fake_backward_replies(kind, SENDERS, BYZ, 1, 3, requesters=req)
    parts = [fake_backward_replies(kind, SENDERS[s], BYZ, 1, 3, requesters=None if req is None else req[s])
             for s in (slice(0, 1), slice(1, 4))]
    assert np.concatenate(parts).tolist() == back.tolist()


def test_requesters_get_their_own_draws():
    s, caches = np.full(40, 10), np.tile(CACHES[:1], (40, 1))
    shared = fake_cache_replies("coordinated", s, caches, BYZ, C, 1, 3)
    assert len({tuple(r) for r in shared.tolist()}) == 1  # one reply per sender and round
    per = fake_cache_replies("coordinated", s, caches, BYZ, C, 1, 3, requesters=np.arange(40))
    assert len({tuple(r) for r in per.tolist()}) > 30
    act = fake_cache_replies("active", s, caches, BYZ, C, 1, 3, requesters=np.arange(40))
    assert len({tuple(r) for r in act.tolist()}) > 1
    assert fake_cache_replies("coordinated", s[:1], caches[:1], BYZ, C, 1, 4).tolist() != shared[:1].tolist()


def test_narrow_caches_are_padded_to_c_and_wide_ones_refused():
    out = fake_cache_replies("active", SENDERS[:1], CACHES[:1, :3], BYZ, C, 1, 3)
    assert out.shape == (1, C) and out[0, 2] == 10 and (out[0, 3:] == -1).all()
    with pytest.raises(ValueError, match="width"):
        fake_cache_replies("active", SENDERS[:1], CACHES[:1], BYZ, C - 1, 1, 3)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        fake_cache_replies("sneaky", SENDERS, CACHES, BYZ, C, 1, 3)
    with pytest.raises(ValueError, match="kind"):
        fake_backward_replies("sneaky", SENDERS, BYZ, 1, 3)


# ----------------------------------------------------------------------------- backward replies

def test_backward_replies_per_kind_and_mode():
    assert (fake_backward_replies("passive", SENDERS, BYZ, 1, 3) == -1).all()
    for kind in ("active", "noncoordinated"):
        assert fake_backward_replies(kind, SENDERS, BYZ, 1, 3).tolist() == [[10], [11], [12], [13]]
    coord = fake_backward_replies("coordinated", SENDERS, BYZ, 1, 3)
    assert coord.shape == (4, 1) and set(coord[:, 0].tolist()) <= set(BYZ.tolist())
    picks = Counter(int(fake_backward_replies("coordinated", SENDERS[:1], BYZ[:3], 1, r)[0, 0]) for r in range(3000))
    assert set(picks) == {10, 11, 13} and all(abs(v / 3000 - 1 / 3) < 0.04 for v in picks.values())
    for kind in KINDS:
        assert fake_backward_replies(kind, SENDERS, BYZ, 1, 3, mode="honest") is None
        out = fake_backward_replies(kind, SENDERS, BYZ, 1, 3, mode="no_reply")
        assert out.shape == (4, 1) and (out == -1).all()
    with pytest.raises(ValueError, match="mode"):
        fake_backward_replies("active", SENDERS, BYZ, 1, 3, mode="loud")


def test_empty_batches():
    e = np.zeros(0, np.int64)
    for kind in KINDS:
        assert fake_cache_replies(kind, e, np.zeros((0, C), np.int64), BYZ, C, 1, 3).shape == (0, C)
        assert fake_backward_replies(kind, e, BYZ, 1, 3).shape == (0, 1)


def test_byzantine_imports_neither_mpi_nor_torch():
    code = ("import sys; import heal_mpi.adversary.byzantine, heal_mpi.adversary.lift\n"
            "print(','.join(m for m in ('mpi4py', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
