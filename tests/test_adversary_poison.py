"""Poisoned models: noise, zero and sign_flip rows, keyed per (seed, sender, round)."""

import numpy as np
import pytest
import torch

from heal_mpi.adversary.poison import POISON_KINDS, poison_rows

ROWS = torch.arange(12, dtype=torch.float32).reshape(3, 4)
PREV = torch.ones(3, 4)
SENDERS = np.array([4, 9, 2])


def test_zero():
    out = poison_rows("zero", ROWS, None, SENDERS, 1, 5)
    assert out.shape == ROWS.shape and out.dtype == ROWS.dtype and (out == 0).all()


def test_sign_flip_reverses_and_scales_the_update():
    out = poison_rows("sign_flip", ROWS, PREV, SENDERS, 1, 5, scale=2.0)
    assert torch.equal(out, PREV - 2.0 * (ROWS - PREV))
    assert torch.equal(poison_rows("sign_flip", ROWS, PREV, SENDERS, 1, 5), 2 * PREV - ROWS)  # λ = 1
    assert torch.equal(ROWS, torch.arange(12, dtype=torch.float32).reshape(3, 4))  # inputs untouched
    with pytest.raises(ValueError, match="previous"):
        poison_rows("sign_flip", ROWS, None, SENDERS, 1, 5)


def test_noise_is_gaussian_with_the_given_scale():
    rows = torch.zeros(4, 50_000)
    out = poison_rows("noise", rows, None, np.arange(4), 7, 3, scale=3.0)
    assert abs(out.mean().item()) < 0.05 and abs(out.std().item() - 3.0) < 0.05
    assert not torch.equal(out[0], out[1])  # senders draw independently


def test_noise_is_keyed_and_independent_of_batching_and_row_values():
    full = poison_rows("noise", ROWS, None, SENDERS, 7, 3)
    assert torch.equal(full, poison_rows("noise", ROWS + 100, None, SENDERS, 7, 3))
    parts = [poison_rows("noise", ROWS[s], None, SENDERS[s], 7, 3) for s in (slice(0, 1), slice(1, 3))]
    assert torch.equal(torch.cat(parts), full)
    assert not torch.equal(full, poison_rows("noise", ROWS, None, SENDERS, 7, 4))  # new round, new noise
    assert not torch.equal(full, poison_rows("noise", ROWS, None, SENDERS, 8, 3))  # new seed
    assert not torch.equal(full, poison_rows("noise", ROWS, None, SENDERS, 7, 3, purpose="hub-noise"))


def test_noise_keeps_dtype_and_handles_empty_batches():
    out = poison_rows("noise", ROWS.double(), None, SENDERS, 7, 3)
    assert out.dtype == torch.float64 and out.shape == (3, 4)
    assert poison_rows("noise", torch.zeros(0, 4), None, np.zeros(0, np.int64), 7, 3).shape == (0, 4)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="kind"):
        poison_rows("scramble", ROWS, PREV, SENDERS, 1, 5)
    with pytest.raises(ValueError, match="senders"):
        poison_rows("noise", ROWS, None, SENDERS[:2], 1, 5)
    assert set(POISON_KINDS) == {"noise", "zero", "sign_flip"}
