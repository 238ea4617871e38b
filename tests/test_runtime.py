"""Ownership and random streams: nothing may depend on the rank count."""

import numpy as np
import pytest

from heal_mpi.rng import hash_keys, stream, streams, uniform
from heal_mpi.runtime import block_bounds


@pytest.mark.parametrize("n,p", [(10, 1), (10, 3), (7, 7), (100, 6)])
def test_block_bounds_cover_contiguously(n, p):
    b = block_bounds(n, p)
    sizes = np.diff(b)
    assert b[0] == 0 and b[-1] == n and sizes.min() >= 1 and sizes.max() - sizes.min() <= 1


def test_uniform_is_keyed_not_sequential():
    nodes = np.arange(1000)
    a = uniform(5, "x", nodes, 0, 3)
    # the draw of node 700 is the same whether computed alone or among all nodes
    assert uniform(5, "x", np.array([700]), 0, 3)[0] == a[700]
    assert 0.0 <= a.min() and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.05
    assert not np.array_equal(a, uniform(5, "y", nodes, 0, 3))
    assert not np.array_equal(a, uniform(5, "x", nodes, 1, 3))
    assert not np.array_equal(a, uniform(6, "x", nodes, 0, 3))


def test_stream_depends_only_on_key():
    assert stream(1, "init", 3, 0, 0).integers(1 << 30) == stream(1, "init", 3, 0, 0).integers(1 << 30)
    assert hash_keys(1, "a", 1, 2)[0] != hash_keys(1, "a", 2, 1)[0]


def test_streams_draw_what_stream_draws_node_by_node():
    """The batch plans' fast path re-keys one generator per node: the same draws as a fresh
    `stream` for each, whatever was drawn from the one before."""
    nodes, inc = np.array([0, 7, 7, 123456, 2**40]), np.array([0, 0, 3, 1, 2])
    for node, i, rng in zip(nodes, inc, streams(9, "batch", nodes, inc, 4)):
        ref = stream(9, "batch", int(node), int(i), 4)
        assert np.array_equal(rng.permutation(37), ref.permutation(37))
        assert rng.random() == ref.random() and rng.integers(1 << 40) == ref.integers(1 << 40)
        rng.random(5)  # left part-way through a Philox block: the next node must not notice


def test_default_threads_never_oversubscribe():
    import os

    from heal_mpi.simulation import default_threads
    cores = os.cpu_count()
    assert default_threads(1, env={}) == cores
    assert default_threads(cores + 5, env={}) == 1  # more ranks than cores: one thread each
    assert default_threads(1, env={"SLURM_CPUS_PER_TASK": "3"}) == 3
    # a Slurm task without --cpus-per-task has one CPU: array tasks sharing a node do not oversubscribe it
    assert default_threads(1, env={"SLURM_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3"}) == 1
