"""Config parsing, overrides and validation: every bad input exits 2 naming the key."""

import subprocess
import sys
import tomllib

import pytest

from heal_mpi import config as cfgmod
from heal_mpi.config import ConfigError

BAD = [
    # (toml text, extra argv, the key the one-line message must start with)
    ("[bogus]\nx = 1\n", [], "bogus"),
    ("[run]\nroundz = 3\n", [], "run.roundz"),
    ("[run]\nrounds = 'ten'\n", [], "run.rounds"),
    ("[run]\nrounds = -4\n", [], "run.rounds"),
    ("[nodes]\ncount = 0\n", [], "nodes.count"),
    ("[nodes]\ncount = 2.5\n", [], "nodes.count"),
    ("[protocol]\nkind = 'telepathy'\n", [], "protocol.kind"),
    ("[train]\nlr = 0\n", [], "train.lr"),
    ("[eval]\nnodes_fraction = 1.5\n", [], "eval.nodes_fraction"),
    ("[faults]\nmessage_loss = -0.1\n", [], "faults.message_loss"),
    ("[faults]\ncrash = [{round = 50, fraction = 0.5}]\n[run]\nrounds = 10\n", [], "faults.crash[0].round"),
    ("[faults]\ncrash = [{round = 2, fraction = 2.0}]\n", [], "faults.crash[0].fraction"),
    ("[faults]\nchurn = [{start = 5, end = 3, fraction = 0.1}]\n", [], "faults.churn[0].end"),
    ("[faults]\nhub_crash = [{round = 2, count = 'some'}]\n", [], "faults.hub_crash[0].count"),
    ("[protocol]\nkind = 'heal'\n[overlay]\nhubs = 20\ncache_size = 10\n[nodes]\ncount = 50\n", [], "overlay.hubs"),
    ("[protocol]\nkind = 'heal'\n[nodes]\ncount = 10\n", [], "overlay.cache_size"),
    ("[protocol]\nkind = 'fedavg'\n[overlay]\nkind = 'ring'\n", [], "overlay.kind"),
    ("[model]\nname = 'lenet5'\n", [], "model.name"),
    ("", ["--set", "run.rounds"], "--set run.rounds"),
    ("", ["--set", "nodes.count=-3"], "nodes.count"),
    ("", ["--set", "run.seed=abc"], "run.seed"),
    ("[data]\ndataset = 'mnist'\nroot = '/nonexistent/mnist'\n[model]\nname = 'lenet5'\n", [], "data.root"),
]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "heal_mpi", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("text,argv,key", BAD)
def test_bad_config_is_rejected_in_process(tmp_path, text, argv, key):
    path = tmp_path / "c.toml"
    path.write_text(text)
    overrides = argv[1::2]
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(cfgmod.load(path, overrides))
    assert str(err.value).startswith(key), str(err.value)


def test_validate_cli_exit_2_one_line_no_output(tmp_path):
    """The CLI path: exit code 2, a single line naming the key, no file created."""
    for i, (text, argv, key) in enumerate(BAD[:12]):
        path = tmp_path / f"c{i}.toml"
        path.write_text(text)
        out = tmp_path / f"out{i}.h5"
        r = run_cli("validate", str(path), *argv)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0], r.stderr
        r = run_cli("run", str(path), "--out", str(out), *argv)
        assert r.returncode == 2 and not out.exists(), r.stderr


def test_more_ranks_than_nodes():
    cfg = cfgmod.load(None, ["nodes.count=2"])
    with pytest.raises(ConfigError, match="^nodes.count"):
        cfgmod.validate(cfg, n_ranks=3)


def test_defaults_round_trip_through_toml():
    cfg = cfgmod.load(None, ["faults.crash=[{round = 3, fraction = 0.2}]", "protocol.kind=gaia",
                             "faults.hub_crash=[{round = 1, count = 'all'}]"])
    again = cfgmod.from_dict(tomllib.loads(cfgmod.to_toml(cfg)))
    assert again == cfg
    assert again.faults.crash[0].fraction == 0.2 and again.overlay_kind == "multistar"


def test_set_overrides_types():
    cfg = cfgmod.load(None, ["run.rounds=7", "train.lr=1", "protocol.kind=heal", "run.out=x/y.h5"])
    assert cfg.run.rounds == 7 and isinstance(cfg.train.lr, float) and cfg.protocol.kind == "heal"
    assert cfg.run.out == "x/y.h5"


def test_reference_lists_every_key():
    text = cfgmod.reference_markdown()
    for section in cfgmod.SECTIONS.values():
        for name in section.__dataclass_fields__:
            assert f"`{name}`" in text
