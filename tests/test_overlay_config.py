"""Validation of the [overlay] and [faults] keys: each bad value names its dotted key, and the
shipped overlay presets are valid."""

import subprocess
import sys
from pathlib import Path

import pytest

from heal_mpi import config as cfgmod
from heal_mpi.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NONE = "[protocol]\nkind = 'none'\n"
FAULTS = NONE + "[nodes]\ncount = 100\n"  # run.rounds stays at its default, 20

BAD = [
    # (toml text, the key the message must start with)
    (NONE + "[nodes]\ncount = 20\n[overlay]\ncache_size = 20\n", "overlay.cache_size"),           # c >= N
    (NONE + "[nodes]\ncount = 20\n[overlay]\nkind = 'newscast'\ncache_size = 25\n", "overlay.cache_size"),
    (NONE + "[nodes]\ncount = 50\n[overlay]\ncache_size = 10\nhubs = 10\n", "overlay.hubs"),      # h >= c
    (NONE + "[overlay]\nhubs = 0\n", "overlay.hubs"),
    (NONE + "[overlay]\ncache_size = 0\n", "overlay.cache_size"),
    (NONE + "[overlay]\npreferred = 'top-k'\n", "overlay.preferred"),
    (NONE + "[overlay]\nmax_backward = 0\n", "overlay.max_backward"),
    (NONE + "[overlay]\nsnapshot_every = -1\n", "overlay.snapshot_every"),
    (NONE + "[overlay]\nkind = 'hypercube'\n", "overlay.kind"),
    (NONE + "[overlay]\nsemantics = 'peersim'\n", "overlay.semantics"),
    (NONE + "[overlay]\nkind = 'ring'\nsemantics = 'sequential'\n", "overlay.semantics"),       # no cycle to order
    (NONE + "[overlay]\nsemantics = 'sequential'\nsubsteps = -1\n", "overlay.substeps"),
    (NONE + "[overlay]\nkind = 'ring'\n[nodes]\ncount = 2\n", "overlay.kind"),
    (NONE + "[overlay]\nkind = 'regular'\ndegree = 3\n[nodes]\ncount = 21\n", "overlay.degree"),  # odd N*d
    (NONE + "[overlay]\nkind = 'multistar'\nservers = 20\n[nodes]\ncount = 20\n", "overlay.servers"),
    (FAULTS + "[faults]\nmessage_loss = 1.5\n", "faults.message_loss"),
    (FAULTS + "[faults]\ncrash = [{round = 1, fraction = -0.5}]\n", "faults.crash[0].fraction"),
    (FAULTS + "[faults]\ncrash = [{round = 1, fraction = 0.1}, {round = 99, fraction = 0.1}]\n",
     "faults.crash[1].round"),                                                                        # past the end
    (FAULTS + "[faults]\nhub_crash = [{round = 20, count = 2}]\n", "faults.hub_crash[0].round"),
    (FAULTS + "[faults]\nhub_crash = [{round = 2, count = 0}]\n", "faults.hub_crash[0].count"),
    (FAULTS + "[faults]\nhub_crash = [{round = 2, count = 100}]\n", "faults.hub_crash[0].count"),    # >= N
    (FAULTS + "[faults]\nchurn = [{start = 2, end = 8, fraction = 1.1}]\n", "faults.churn[0].fraction"),
    (FAULTS + "[faults]\nchurn = [{start = 20, end = 30, fraction = 0.1}]\n", "faults.churn[0].start"),
    (FAULTS + "[faults]\nchurn = [{start = 5, end = 21, fraction = 0.1}]\n", "faults.churn[0].end"),
    (FAULTS + "[faults]\nchurn = [{start = 5, end = 5, fraction = 0.1}]\n", "faults.churn[0].end"),
    (FAULTS + "[faults]\nchurn = [{begin = 5, end = 8, fraction = 0.1}]\n", "faults.churn[0].begin"),
    (FAULTS + "[faults]\ncrash = {round = 5, fraction = 0.1}\n", "faults.crash"),
]


@pytest.mark.parametrize("text,key", BAD)
def test_bad_overlay_or_fault_key_is_named(tmp_path, text, key):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(cfgmod.load(path))
    assert str(err.value).startswith(key), str(err.value)


def test_churn_window_may_end_with_the_run():
    cfg = cfgmod.load(None, ["protocol.kind='none'", "nodes.count=100",
                             "faults.churn=[{start = 5, end = 20, fraction = 0.1}]"])
    cfgmod.validate(cfg)


def test_validate_cli_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(FAULTS + "[faults]\nchurn = [{start = 5, end = 21, fraction = 0.1}]\n")
    r = subprocess.run([sys.executable, "-m", "heal_mpi", "validate", str(path)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "faults.churn[0].end: 21" in r.stderr, r.stderr


PRESETS = sorted((ROOT / "jobs" / "configs").glob("elevator_*.toml")) + [ROOT / "jobs/configs/newscast_fault_free.toml"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_overlay_presets_are_valid_paper_scenarios(path):
    cfg = cfgmod.validate(cfgmod.load(path))
    assert cfg.protocol.kind == "none" and cfg.nodes.count == 1000 and cfg.run.rounds == 200
    assert cfg.overlay.cache_size == 20 and cfg.overlay.snapshot_every == 10
    assert cfg.overlay_kind == ("newscast" if path.stem.startswith("newscast") else "elevator")
    if cfg.overlay_kind == "elevator":
        assert cfg.overlay.hubs == 10
