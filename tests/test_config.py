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
    ("[data]\ndataset = 'fashion-mnist'\n[model]\nname = 'lenet5'\n[train]\nbackend = 'batched'\n", [],
     "train.backend"),
    ("", ["--set", "run.rounds"], "--set run.rounds"),
    ("", ["--set", "nodes.count=-3"], "nodes.count"),
    ("", ["--set", "run.seed=abc"], "run.seed"),
    ("[data]\ndataset = 'mnist'\nroot = '/nonexistent/mnist'\n[model]\nname = 'lenet5'\n", [], "data.root"),
    ("[train]\nlr = nan\n", [], "train.lr"),
    ("[train]\nlr = inf\n", [], "train.lr"),
    ("[data]\nsynthetic_noise = -inf\n", [], "data.synthetic_noise"),
    ("[faults]\ncrash = [{round = 2, fraction = nan}]\n", [], "faults.crash[0].fraction"),
    ("[faults]\nmessage_loss = 1e999\n", [], "faults.message_loss"),
    ("[train]\nweight_decay = " + "9" * 400 + "\n", [], "train.weight_decay"),  # beyond float range
    ("[nodes]\ncount = 1000000000000000000000000000000\n", [], "nodes.count"),
    ("[nodes]\ncount = 2000000000\n", [], "nodes.count"),
    ("[run]\nseed = -9223372036854775809\n", [], "run.seed"),
    ("[faults]\nhub_crash = [{round = 2, count = 100000000000000000000000}]\n", [], "faults.hub_crash[0].count"),
    ("[faults]\ncrash = [{round = 2}]\n", [], "faults.crash[0]: missing fraction"),
    ("[faults]\nchurn = [{}]\n", [], "faults.churn[0]: missing start, end, fraction"),
    ("[run]\n\"a\\nb\" = 1\n", [], 'run."a\\nb": unknown key'),  # a newline in a key
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
    assert again.faults.events["crash"][0].fraction == 0.2 and again.overlay_kind == "multistar"


def test_set_overrides_types():
    cfg = cfgmod.load(None, ["run.rounds=7", "train.lr=1", "protocol.kind=heal", "run.out=x/y.h5"])
    assert cfg.run.rounds == 7 and isinstance(cfg.train.lr, float) and cfg.protocol.kind == "heal"
    assert cfg.run.out == "x/y.h5"


def test_reference_lists_every_key():
    import dataclasses
    text = cfgmod.reference_markdown()
    for name, section in cfgmod.SECTIONS.items():
        for f in dataclasses.fields(section):
            assert f.metadata.get("internal") or f"`{f.name}`" in text
        for spec in getattr(section, "NAMESPACES").specs() if hasattr(section, "NAMESPACES") else ():
            if spec.options:
                table = text.split(f"**[{name}.{spec.name}]**")[1].split("**[")[0]
                assert all(f"`{f.name}`" in table for f in dataclasses.fields(spec.options))


@pytest.mark.parametrize("content,says", [(b"\x89HDF\r\n\x1a\n\x00\xff", "not a text file"), (None, "is a directory")])
def test_unreadable_config_file_names_the_path(tmp_path, content, says):
    path = tmp_path / "c.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{path}: {says}"):
        cfgmod.load(path)


def test_cuda_without_a_gpu_names_the_key_and_the_machine():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = cfgmod.load(None, ["run.device='cuda'"])
    with pytest.raises(ConfigError, match=r"^run.device: 'cuda' but this machine has no CUDA device \(heal-mpi info"):
        cfgmod.validate(cfg)
    cfgmod.validate(cfg, check_device=False)  # a login node preparing jobs for GPU nodes


def test_every_message_is_one_line():
    """Keys and values come from the user: a newline in either must not split the message."""
    for text in ["a\nb", "a\nb.x=1", "run.a\nb=1", 'run.progress="line\\none"', 'run.rounds=["x\\ny"]']:
        with pytest.raises(ConfigError) as err:
            cfgmod.load(None, [text])
        assert "\n" not in str(err.value)


def test_summary_names_what_a_preset_applies():
    """`validate`'s one line: the faults, the adversary, the overlay's cycle order and the clock."""
    from heal_mpi.config.text import summary
    plain = summary(cfgmod.load(None, ["faults.crash=[{round = 3, fraction = 0.3}]"]))
    assert "faults: crash 30% @3" in plain and "adversary: none" in plain and "clock: none" in plain
    assert "overlay cycle" not in plain
    timed = summary(cfgmod.load(None, ["time.enabled=true", "time.compute_dist='lognormal'", "time.compute_spread=1.0",
                                       "time.slow_fraction=0.2", "time.slow_factor=4", "overlay.semantics='sequential'",
                                       "overlay.substeps=10"]))
    assert "compute 1000 samples/s (lognormal 1)" in timed and "20% of the nodes 4x slower" in timed
    assert "overlay cycle: sequential, 10 turns" in timed
