"""heal-mpi info and config work from a plain shell."""

import subprocess
import sys


def test_info_prints_versions_and_model_size():
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "info", "--model", "lenet5"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("heal_mpi", "torch", "MPI library", "parallel HDF5", "single copy", "61,706"):
        assert word in r.stdout, r.stdout


def test_bench_quick_prints_its_table():
    """A smoke run at tiny sizes: the sections run and print rows (no timing is asserted)."""
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "bench", "limit", "backends", "eval", "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for row in ("| limit | plain PyTorch, batch 32", "| backends | loop", "| backends | vmap", "| backends | batched, logreg",
                "| eval |"):
        assert row in r.stdout, r.stdout


def test_bench_overlay_quick_compares_the_cycle_semantics():
    """The overlay section times snapshot and sequential cycles on 1 and 2 ranks, sequential as a
    multiple of snapshot (no timing is asserted)."""
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "bench", "overlay", "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for ranks in (1, 2):
        for order in ("snapshot", "sequential in 200 turns", "sequential in 10 turns"):
            assert f"| overlay | Elevator N=200, {order}, {ranks} rank(s): one cycle" in r.stdout, r.stdout
    assert r.stdout.count("x |") >= 6, r.stdout  # every row has its ratio to the snapshot cycle


def test_bench_nodes_quick_reports_every_world():
    """The nodes section runs HEAL, FedAvg and Gossip on 1 and 2 ranks and reports each rank's peak
    memory against its floor (no timing or size is asserted)."""
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "bench", "nodes", "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for protocol in ("heal", "fedavg", "gossip"):
        for ranks in (1, 2):
            what = f"| nodes | {protocol}, 60 mlp nodes x 10, sgd, {ranks} rank(s):"
            assert f"{what} seconds per round (train " in r.stdout, r.stdout
            assert f"{what} peak RSS of the largest rank, against the floor |" in r.stdout, r.stdout
    peaks = [line for line in r.stdout.splitlines() if "peak RSS" in line]
    assert all(float(line.split("|")[3].split()[0].replace(",", "")) > 100 for line in peaks), peaks  # MiB


def test_bench_transport_quick_times_one_copy_against_two_where_one_works():
    from heal_mpi import single_copy
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "bench", "transport", "--quick"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    if single_copy.works():
        assert "| transport | 2 ranks send each other 60 MiB of rows in 30 MiB pieces, each message copied once" in r.stdout
        assert "each copied twice (single_copy_mechanism none), against once |" in r.stdout, r.stdout
    else:
        assert "| transport | skipped: cross-memory attach is forbidden here" in r.stdout, r.stdout


def test_bench_nodes_runs_adam_beside_sgd_at_ten_thousand_nodes_and_logreg_at_a_hundred_thousand():
    from heal_mpi.bench.nodes import worlds
    assert worlds((1000, 10000, 100000)) == [(1000, "mlp", "sgd"), (10000, "mlp", "sgd"), (10000, "mlp", "adam"),
                                             (100000, "logreg", "sgd")]
