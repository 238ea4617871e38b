"""The Slurm scripts, submitted to a real one-node Slurm (jobs/slurm/local_cluster.sh), not a mock.

The cluster needs root (or passwordless sudo) and Debian's slurm packages, which `up` installs
with apt-get. Without them these tests are skipped with a printed reason; under CI=true they fail.
The dry-run and sweep-spec checks need no cluster.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np
import pytest

from conftest import ROOT, mpi_command, mpi_env, write_config

SLURM = ROOT / "jobs" / "slurm"
CLUSTER = SLURM / "local_cluster.sh"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))
SWEEP = [sys.executable, str(ROOT / "jobs" / "sweep.py")]
IN_CI = os.environ.get("CI") == "true"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}  # no user settings of the scripts
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
        "DEADLINE", "PREEMPTED"}

TINY = """
[run]
rounds = {rounds}
progress = "lines"
threads = 1
[nodes]
count = 6
[overlay]
cache_size = 4
[protocol]
kind = "fedavg"
[data]
synthetic_train = 300
synthetic_test = 100
"""

SPEC = """
base = "{base}"
seeds = [1, 2]
out_dir = "{out_dir}"
[methods.fedavg]
protocol = {{ kind = "fedavg" }}
[methods.gossip]
protocol = {{ kind = "gossip" }}
"""


def datasets(path) -> dict:
    """Every dataset of an output file except the wall-clock timings."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return {k: v for k, v in out.items() if "seconds_" not in k}


def attrs(path) -> dict:
    with h5py.File(path, "r") as f:
        return dict(f.attrs)


# ----------------------------------------------------------------------------- no cluster needed

@pytest.mark.parametrize("script", SCRIPTS + [SLURM / "common.sh", CLUSTER], ids=lambda p: p.name)
def test_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dry_run_prints_the_srun_command(tmp_path):
    env = {**CLEAN_ENV, "HEAL_DRY_RUN": "1", "HEAL_RESULTS": str(tmp_path), "HEAL_SUFFIX": "a"}
    r = subprocess.run(["bash", str(SLURM / "run.sbatch"), "jobs/configs/demo.toml", "--set", "nodes.count=8"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert shlex.split(r.stdout) == ["srun", "--mpi=pmix", str(ROOT / ".venv/bin/heal-mpi"), "run",
                                     "jobs/configs/demo.toml", "--out", str(tmp_path / "demo-a.h5"),
                                     "--set", "nodes.count=8"]
    tasks = write_config(tmp_path / "tasks.txt", "a.toml 1 out/a-seed1.h5\nb.toml 7 out/b-seed7.h5\n")
    r = subprocess.run(["bash", str(SLURM / "sweep.sbatch"), str(tasks)], capture_output=True, text=True,
                       env={**env, "SLURM_ARRAY_TASK_ID": "2"}, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert shlex.split(r.stdout)[3:] == ["run", "b.toml", "--out", "out/b-seed7.h5", "--set", "run.seed=7"]


def test_sweep_spec_expands_and_rejects_bad_keys(tmp_path):
    base = write_config(tmp_path / "base.toml", TINY.format(rounds=4))
    spec = SPEC.format(base=base, out_dir=tmp_path / "sw") + """
[common]
data = { synthetic_test = 120 }
[scenarios.fault_free]
[scenarios.crash]
faults = { crash = [{round = 2, fraction = 0.5}] }
"""
    r = subprocess.run(SWEEP + [str(write_config(tmp_path / "s.toml", spec))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "array size: 8" in r.stdout
    tasks = (tmp_path / "sw" / "tasks.txt").read_text().splitlines()
    assert len(tasks) == 8 and tasks[0].split()[1:] == ["1", str(tmp_path / "sw" / "fedavg_fault_free-seed1.h5")]
    from heal_mpi import config
    cfg = config.load(tmp_path / "sw" / "configs" / "gossip_crash.toml")
    assert cfg.protocol.kind == "gossip" and cfg.faults.events["crash"][0].fraction == 0.5 and cfg.nodes.count == 6
    assert cfg.data.synthetic_test == 120 and cfg.data.synthetic_train == 300  # [common] over the base

    for old, new, key in [('kind = "gossip"', 'kind = "gosip"', "methods.gossip + scenarios.fault_free: protocol.kind"),
                          ("round = 2", "round = 9", "scenarios.crash: faults.crash[0].round"),
                          ("seeds", "sedes", "sedes: unknown key")]:
        shutil.rmtree(tmp_path / "sw", ignore_errors=True)
        r = subprocess.run(SWEEP + [str(write_config(tmp_path / "s.toml", spec.replace(old, new)))],
                           capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and key in r.stderr, r.stderr
        assert not (tmp_path / "sw").exists(), "a bad spec wrote files"


SPECS = sorted([*ROOT.glob("jobs/configs/**/sweep*.toml"), *ROOT.glob("jobs/validation/*/sweep*.toml")])


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(ROOT / "jobs")))
def test_every_shipped_sweep_spec_expands(spec, monkeypatch):
    """Each preset and validation spec yields valid configs (its paths are relative to the repository root)."""
    sys.path.insert(0, str(ROOT / "jobs"))
    import sweep
    monkeypatch.chdir(ROOT)
    out_dir, seeds, configs = sweep.expand(sweep.read_toml(spec, "spec"), 1, "unused", here=False)
    assert configs and seeds


# ----------------------------------------------------------------------------- the cluster

def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"Slurm tests must run in CI: {reason}")
    warnings.warn(f"skipping the Slurm tests: {reason}", pytest.PytestWarning)  # shown in pytest's summary
    pytest.skip(reason)


class Cluster:
    def __init__(self, env: dict, tmp):
        self.env, self.tmp = env, tmp

    def sbatch(self, *args: str) -> str:
        """Submit from the repository root; returns the job id."""
        r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=self.env,
                           cwd=ROOT, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split(";")[0]

    def show(self, job: str) -> list[dict]:
        """`scontrol show job` as one dict per job (one per task of an array)."""
        r = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, env=self.env)
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in r.stdout.splitlines() if line.strip()]

    def wait(self, job: str, log_glob: str, timeout: float = 120) -> list[dict]:
        end = time.time() + timeout
        while time.time() < end:
            jobs = self.show(job)
            if jobs and all(j["JobState"] in DONE for j in jobs):
                return jobs
            time.sleep(1)
        subprocess.run(["scancel", job], env=self.env)
        pytest.fail(f"job {job} not done after {timeout} s: {self.show(job)}\n{self.logs(log_glob)}")

    def logs(self, pattern: str) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.tmp.glob(pattern)))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The local cluster, up for this module and down after it (unless it was up already)."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n", "-E"]
    if sudo and not (shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0):
        _unavailable("not root, and no passwordless sudo")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        _unavailable("no Slurm binaries, and no apt-get to install them")
    was_up = subprocess.run(sudo + ["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    r = subprocess.run(sudo + ["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        _unavailable(f"local_cluster.sh up failed: {r.stderr.strip()[-1500:]}")
    conf = re.search(r"SLURM_CONF=(\S+)", r.stderr).group(1)
    tmp = tmp_path_factory.mktemp("slurm")
    env = {k: v for k, v in mpi_env(SLURM_CONF=conf).items() if not k.startswith("HEAL_")}
    yield Cluster({**env, "HEAL_RESULTS": str(tmp / "results")}, tmp)
    if not was_up:
        subprocess.run(sudo + ["bash", str(CLUSTER), "down"], capture_output=True, timeout=120)


def test_sbatch_test_only(slurm, tmp_path):
    cfg = write_config(tmp_path / "tiny.toml", TINY.format(rounds=3))
    tasks = write_config(tmp_path / "tasks.txt", f"{cfg} 1 {tmp_path}/a.h5\n")
    for args in (["jobs/slurm/run.sbatch", str(cfg)], ["--array=1-1", "jobs/slurm/sweep.sbatch", str(tasks)]):
        r = subprocess.run(["sbatch", "--test-only", "--ntasks=2", *args], capture_output=True, text=True,
                           env=slurm.env, cwd=ROOT)
        assert r.returncode == 0 and "to start at" in r.stderr, r.stderr


def test_run_sbatch_on_two_tasks(slurm, tmp_path):
    cfg = write_config(tmp_path / "tiny.toml", TINY.format(rounds=3))
    job = slurm.sbatch("--ntasks=2", "-o", f"{slurm.tmp}/run-%j.out", "jobs/slurm/run.sbatch", str(cfg))
    [info] = slurm.wait(job, f"run-{job}.out")
    out = slurm.tmp / "results" / "tiny.h5"
    assert info["JobState"] == "COMPLETED" and out.exists(), slurm.logs(f"run-{job}.out")
    a = attrs(out)
    assert a["rounds_completed"] == 3 and a["ranks"] == 2  # srun --mpi=pmix made one MPI world of 2 ranks


def test_sweep_array_two_methods_two_seeds(slurm, tmp_path):
    base = write_config(tmp_path / "base.toml", TINY.format(rounds=2))
    spec = write_config(tmp_path / "spec.toml", SPEC.format(base=base, out_dir=slurm.tmp / "sweep"))
    r = subprocess.run(SWEEP + [str(spec)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    command = shlex.split(r.stdout.splitlines()[-1])
    assert command[:2] == ["sbatch", "--array=1-4"]
    job = slurm.sbatch("-o", f"{slurm.tmp}/sweep-%A_%a.out", *command[1:])
    jobs = slurm.wait(job, "sweep-*.out")
    assert [j["JobState"] for j in jobs] == ["COMPLETED"] * 4, slurm.logs("sweep-*.out")

    files = sorted((slurm.tmp / "sweep").glob("*.h5"))
    assert [f.name for f in files] == ["fedavg-seed1.h5", "fedavg-seed2.h5", "gossip-seed1.h5", "gossip-seed2.h5"]
    assert all(attrs(f)["rounds_completed"] == 2 for f in files)
    sys.path.insert(0, str(ROOT / "analysis"))
    import common as analysis  # analysis/ is a folder of scripts, not a package
    groups = analysis.load_groups(files)  # grouped by the stored config, seeds together
    assert sorted((g.method, [r.seed for r in g.runs]) for g in groups) == [("FedAvg", [1, 2]), ("Gossip", [1, 2])]


def test_usr1_checkpoints_requeues_and_resumes(slurm, tmp_path):
    """Slurm's warning before the time limit (--signal=USR1@120) sent now with `scancel --signal=USR1`."""
    rounds = 40
    cfg = write_config(tmp_path / "cut.toml", TINY.format(rounds=rounds))
    full = tmp_path / "full.h5"
    reference = subprocess.Popen(mpi_command(2, "run", str(cfg), "--out", str(full)), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, env=mpi_env(), cwd=ROOT)
    job = slurm.sbatch("--ntasks=2", "-o", f"{slurm.tmp}/cut-%j.out", "jobs/slurm/run.sbatch", str(cfg))
    log = slurm.tmp / f"cut-{job}.out"
    end = time.time() + 90
    while not (log.exists() and re.search(r"^round +2/", log.read_text(), re.M)):
        assert time.time() < end, f"the job never reached round 2: {slurm.show(job)}\n{slurm.logs(log.name)}"
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm.env, check=True)  # to every task of its steps

    [info] = slurm.wait(job, log.name)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", text
    assert "checkpoint saved" in text and "requeueing job" in text and "resuming" in text, text
    out = slurm.tmp / "results" / "cut.h5"
    assert attrs(out)["rounds_completed"] == rounds
    assert reference.wait(timeout=120) == 0, reference.stderr.read()
    a, b = datasets(full), datasets(out)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_local_sweep_reruns_what_a_failed_run_left(tmp_path):
    """An empty or cut output without a checkpoint is not a finished run: it runs again."""
    sys.path.insert(0, str(ROOT / "jobs"))
    import sweep
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert sweep.rounds_done(str(empty)) == 0 and sweep.rounds_done(str(tmp_path / "missing.h5")) == 0
