"""Extension without forking: a package that is not heal_mpi (examples/heal_mpi_example) adds a
protocol, an attack, an overlay and a fault kind, installed as a real package would be; a config
selects them by name; `heal-mpi config` lists them; runs on 2 ranks use them; the analysis labels
the fault by its own name. And a rank that runs other steps than the others ends the job in
seconds with one line, on 2 and 3 ranks."""

import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_mpi, write_config

EXAMPLE = ROOT / "examples" / "heal_mpi_example"
PLUGINS = ROOT / "tests" / "plugins"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """The example installed (pip --target: its package and its entry points), as PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(target), str(EXAMPLE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(target)


def heal_mpi(*args, pythonpath: str, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heal_mpi", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**__import__("os").environ, "PYTHONPATH": pythonpath})


SMALL = """
[run]
rounds = 5
threads = 1
progress = "none"
[nodes]
count = 12
[data]
synthetic_train = 600
synthetic_test = 200
[train]
local_steps = 2
batch_size = 16
"""


def test_heal_mpi_config_lists_the_plug_ins(installed):
    r = heal_mpi("config", pythonpath=installed)
    assert r.returncode == 0, r.stderr
    for text in ("**[protocol.pfedavg]**", "| `alpha` |", "**[adversary.reverse]**", "| `factor` |",
                 "| `isolate` | `[]` | isolate one node", "pfedavg", "reshuffle"):
        assert text in r.stdout, text
    assert "pfedavg" not in heal_mpi("config", pythonpath="").stdout  # not installed: not there


def test_a_run_on_two_ranks_uses_the_plug_in_protocol_attack_and_fault(installed, tmp_path):
    cfg = write_config(tmp_path / "p.toml", SMALL + """
[protocol]
kind = "pfedavg"
[protocol.pfedavg]
alpha = 0.25
[adversary]
byzantine = 2
models = "reverse"
[adversary.reverse]
factor = 20.0
[faults]
isolate = [{round = 2, node = 5}]
""")
    assert heal_mpi("validate", str(cfg), pythonpath=installed).returncode == 0
    out = tmp_path / "p.h5"
    r = run_mpi(2, "run", str(cfg), "--out", str(out), PYTHONPATH=installed)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["method"] == "pfedavg" and f.attrs["ranks"] == 2
        alive = f["nodes/alive"][:]
        assert alive[:2, 5].all() and not alive[2:, 5].any()  # isolated at round 2, for good
        assert f["nodes/is_byzantine"][-1].sum() == 2
        assert f["rounds/acc_mean"][-1] < 0.5  # two clients sending -20 times their model wreck the mean
    report = subprocess.run([sys.executable, str(ROOT / "analysis" / "final_table.py"), str(out), "--out",
                             str(tmp_path / "rep")], capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": installed})
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "rep" / "final_accuracy.md").read_text()
    assert "isolate node 5 @2" in table and "pFedAvg" in table


def test_a_plug_in_overlay_runs_with_poisoned_models(installed, tmp_path):
    """Its messages are its own purpose ("toy-hello"): a model attack leaves them alone."""
    cfg = write_config(tmp_path / "o.toml", SMALL + """
[overlay]
kind = "reshuffle"
cache_size = 3
[protocol]
kind = "gossip"
[adversary]
byzantine = 2
models = "noise"
""")
    out = tmp_path / "o.h5"
    r = run_mpi(2, "run", str(cfg), "--out", str(out), PYTHONPATH=installed)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["overlay"] == "reshuffle" and (f["rounds/overlay_messages"][:] == 12 * 3).all()


def test_a_spec_named_by_module_needs_no_installation(tmp_path):
    cfg = write_config(tmp_path / "m.toml", SMALL + """
[protocol]
kind = "heal_mpi_example.kinds:PFEDAVG"
[protocol.pfedavg]
alpha = 0.0
""")
    out = tmp_path / "m.h5"
    r = heal_mpi("run", str(cfg), "--out", str(out), pythonpath=str(EXAMPLE))  # the source folder, no entry points
    assert r.returncode == 0, r.stderr
    fedavg = tmp_path / "f.h5"
    plain = write_config(tmp_path / "f.toml", SMALL + '[protocol]\nkind = "fedavg"\n')
    r = heal_mpi("run", str(plain), "--out", str(fedavg), pythonpath="")
    assert r.returncode == 0, r.stderr
    unknown = heal_mpi("validate", str(cfg), pythonpath="")  # without the plug-in its table is unknown
    assert unknown.returncode == 2 and "protocol.kind: cannot load the plug-in 'heal_mpi_example.kinds:PFEDAVG'" \
        in unknown.stderr
    with h5py.File(out, "r") as a, h5py.File(fedavg, "r") as b:  # alpha = 0 is FedAvg
        np.testing.assert_allclose(a["nodes/acc"][:], b["nodes/acc"][:], atol=1e-6)
    bad = heal_mpi("validate", str(cfg), "--set", "protocol.pfedavg.alpha=1.0", pythonpath=str(EXAMPLE))
    assert bad.returncode == 2 and "protocol.pfedavg.alpha: 1.0 would ignore the server" in bad.stderr


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("spec,says", [("EXTRA", r"is in collective step 2 of round 2 \('mix-extra'\)"),
                                       ("EARLY", r"has finished the round's steps")])
def test_a_rank_out_of_step_ends_the_job_in_seconds_with_one_line(tmp_path, ranks, spec, says):
    import re
    cfg = write_config(tmp_path / "s.toml", SMALL + f'[protocol]\nkind = "out_of_step:{spec}"\n'
                                                    '[overlay]\nkind = "ring"\n')
    t0 = time.perf_counter()
    r = run_mpi(ranks, "run", str(cfg), "--out", str(tmp_path / "s.h5"), timeout=60, PYTHONPATH=str(PLUGINS))
    assert r.returncode == 1 and time.perf_counter() - t0 < 45
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("heal-mpi: error")]
    assert len(lines) == 1, r.stderr
    assert re.search(says, lines[0]) and re.search(r"rank \d .* but rank \d ", lines[0]), lines[0]
