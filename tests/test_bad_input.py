"""Generated bad input: the config surface and the analysis readers answer with one line, never a traceback.

Bad values are derived from the config dataclasses themselves: for every field of every
section and of every fault event, a wrong type, a value out of its range, a non-finite
number, an empty string and an absurdly large one; event lists lose keys, get wrong types
and fall past the end of the run. The presets in jobs/configs/ are mutated byte by byte.
Analysis inputs are empty, truncated, foreign and partial HDF5 files. The hypothesis
profile is derandomized, so every run (and CI) checks the same few hundred cases.
"""

import dataclasses
import json
import math
import subprocess
import sys
import typing

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from heal_mpi import config as cfgmod
from heal_mpi.config import ConfigError
from heal_mpi.config.fields import choices, hints
from heal_mpi.registry import FAULTS

sys.path.insert(0, str(ROOT / "analysis"))
import common  # noqa: E402  (analysis/ is a folder of scripts, not a package)
import topology  # noqa: E402

settings.register_profile("bad-input", derandomize=True, deadline=None, database=None, max_examples=6,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PROFILE = settings.get_profile("bad-input")



def _fields(prefix: str, cls) -> list[tuple[str, object, dict]]:
    types = hints(cls)
    return [(f"{prefix}.{f.name}", types[f.name], f.metadata) for f in dataclasses.fields(cls)
            if not f.metadata.get("internal")]


# every key of every section, and every kind's own options in its table ([protocol.heal] fanout = ...)
FIELDS = [field for name, cls in cfgmod.SECTIONS.items() for field in _fields(name, cls)]
FIELDS += [field for name, cls in cfgmod.SECTIONS.items() if getattr(cls, "NAMESPACES", None)
           for spec in cls.NAMESPACES.specs() if spec.options for field in _fields(f"{name}.{spec.name}", spec.options)]
EVENT_TYPES = {spec.name: spec.event for spec in FAULTS.specs()}
EVENT_ROUNDS = 5  # the run length the event tests use: events at round >= 5 are past the end
VALID_EVENT = {"round": 1, "fraction": 0.1, "count": 1, "start": 1, "end": 3}
PRESETS = sorted(p for p in (ROOT / "jobs" / "configs").rglob("*.toml") if not p.name.startswith("sweep_"))


# ----------------------------------------------------------------------------- writing TOML

def toml_value(v) -> str:
    """Any generated value as TOML text (nan and inf included: TOML has them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # JSON escapes the C0 control characters as TOML does; TOML also forbids a raw DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def load_text(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return cfgmod.validate(cfgmod.load(path), check_files=False)


def check_rejection(run, must_name: str | None = None) -> str | None:
    """run() succeeds or raises ConfigError with a one-line message (starting with
    `must_name` when given, which also means it must fail); returns the message."""
    try:
        run()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg and msg == msg.strip(), repr(msg)
        assert must_name is None or msg.startswith(must_name), msg
        return msg
    assert must_name is None, f"accepted, but {must_name} is wrong"
    return None


# ----------------------------------------------------------------------------- bad values per field

def kind_of(tp) -> str:
    """The field's type as the generators name it: int, float, str, bool, or "int | str" for a union."""
    return "int | str" if typing.get_args(tp) else tp.__name__


NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
HUGE_INT = st.one_of(st.integers(min_value=2**63, max_value=10**40), st.integers(min_value=-10**40, max_value=-2**63 - 1))
TEXT = st.text(max_size=12)


def wrong_type(tp):
    """Values of another type than the field's, each of which must be rejected."""
    t = kind_of(tp)
    lists = st.lists(st.integers(-3, 3), max_size=3)
    tables = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2)
    other = {"int": st.one_of(TEXT, st.booleans(), st.floats(allow_nan=False, allow_infinity=False)),
             "float": st.one_of(TEXT, st.booleans()),
             "str": st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans()),
             "int | str": st.one_of(TEXT.filter(lambda s: s != "all"), st.booleans(),
                                    st.floats(allow_nan=False, allow_infinity=False)),
             "bool": st.one_of(TEXT, st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False))}[t]
    return st.one_of(other, lists, tables)


def out_of_range(tp, meta):
    """Values of the right type outside lo/hi/choices; None when the field has no bound."""
    t = kind_of(tp)
    options = []
    allowed = choices(meta)
    if allowed:  # a kind's name: also not a "module:SPEC" a plug-in could load
        options.append(TEXT.filter(lambda s: s not in allowed and ":" not in s))
    lo, hi = meta.get("lo"), meta.get("hi")
    if t == "int":
        if lo is not None:
            options.append(st.integers(min_value=-2**63 + 1, max_value=lo - (0 if meta.get("lo_open") else 1)))
        if hi is not None:
            options.append(st.integers(min_value=hi + 1, max_value=2**63 - 1))
    if t == "float":
        if lo is not None:
            options.append(st.floats(max_value=lo, exclude_max=not meta.get("lo_open"), allow_nan=False,
                                     allow_infinity=False, min_value=-1e300))
        if hi is not None:
            options.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False,
                                     max_value=1e300))
    if t == "int | str":
        options.append(st.integers(min_value=-10, max_value=0))
    return st.one_of(options) if options else None


def bad_cases(tp, meta):
    """(value, must fail) pairs for one field."""
    t = kind_of(tp)
    free_text = t == "str" and not choices(meta)
    large_float_ok = t == "float" and meta.get("hi") is None  # a finite 1e30 learning rate is in range
    cases = [wrong_type(tp).map(lambda v: (v, True)),
             NON_FINITE.map(lambda v: (v, True)),
             HUGE_INT.map(lambda v: (v, not large_float_ok)),
             st.just(("", not free_text))]
    bounded = out_of_range(tp, meta)
    if bounded is not None:
        cases.append(bounded.map(lambda v: (v, True)))
    return st.one_of(cases)


@pytest.mark.parametrize("key,tp,meta", FIELDS, ids=[k for k, _, _ in FIELDS])
@settings(PROFILE)
@given(data=st.data())
def test_every_field_rejects_bad_values_naming_the_key(tmp_path, key, tp, meta, data):
    value, must_fail = data.draw(bad_cases(tp, meta), label="value, must fail")
    table, name = key.rsplit(".", 1)
    text = f"[{table}]\n{name} = {toml_value(value)}\n"
    check_rejection(lambda: load_text(tmp_path, text), f"{key}:" if must_fail else None)


# ----------------------------------------------------------------------------- fault events

@st.composite
def bad_event(draw):
    """(event list name, one broken event, the key its message must start with)."""
    name = draw(st.sampled_from(sorted(EVENT_TYPES)))
    names = [f.name for f in dataclasses.fields(EVENT_TYPES[name])]
    event = {k: VALID_EVENT[k] for k in names}
    how = draw(st.sampled_from(["missing", "wrong type", "past the end", "not a table"]))
    key = f"faults.{name}[0]"
    if how == "missing":
        for k in draw(st.lists(st.sampled_from(names), min_size=1, unique=True)):
            del event[k]
    elif how == "wrong type":
        k = draw(st.sampled_from(names))
        event[k] = draw(st.one_of(st.lists(st.integers(0, 3), max_size=2), st.booleans(), NON_FINITE,
                                  TEXT.filter(lambda s: s != "all")))
    elif how == "past the end":
        k = "start" if "start" in names else "round"
        event[k] = draw(st.integers(min_value=EVENT_ROUNDS, max_value=10**6))
        if "end" in names:
            event["end"] = event[k] + 1
    else:
        event = draw(st.one_of(st.integers(), TEXT, st.lists(st.integers(), max_size=2)))
    return name, event, key


@settings(PROFILE, max_examples=150)
@given(case=bad_event())
def test_broken_fault_events_name_the_event(tmp_path, case):
    name, event, key = case
    text = f"[run]\nrounds = {EVENT_ROUNDS}\n[faults]\n{name} = [{toml_value(event)}]\n"
    check_rejection(lambda: load_text(tmp_path, text), key)


# ----------------------------------------------------------------------------- mutated presets

@st.composite
def mutated_preset(draw):
    """(preset, its bytes after a few flips, inserts and deletes)."""
    path = draw(st.sampled_from(PRESETS))
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = bytes([draw(st.integers(0, 255))])
        elif len(data) > 1:
            del data[i]
    return path, bytes(data)


@settings(PROFILE, max_examples=200)
@given(case=mutated_preset())
def test_mutated_presets_load_or_fail_in_one_line(tmp_path, case):
    preset, data = case
    path = tmp_path / preset.name
    path.write_bytes(data)
    msg = check_rejection(lambda: cfgmod.validate(cfgmod.load(path), check_files=False))
    if msg is not None:  # the file, or the dotted key it got wrong
        assert msg.startswith(str(path)) or msg.split(":")[0].split(".")[0].split("[")[0].strip('"'), msg


def test_presets_are_valid():
    """The mutation test starts from good files: the unmutated presets load."""
    assert PRESETS
    for path in PRESETS:
        cfgmod.validate(cfgmod.load(path), check_files=False)


# ----------------------------------------------------------------------------- the command line

def bad_cli_inputs(tmp_path):
    """(name, argv after `run`) of input classes the issue lists; all are bad input."""
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    nan = tmp_path / "nan.toml"
    nan.write_text("[train]\nlr = nan\n")
    good = tmp_path / "good.toml"
    good.write_text("[run]\nrounds = 2\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [("binary", [str(binary)]), ("directory", [str(tmp_path)]), ("nan", [str(nan)]),
             ("out under a file", [str(good), "--out", str(blocker / "sub" / "o.h5")]),
             ("a folder name too long", [str(good), "--out", str(tmp_path / ("d" * 300) / "o.h5")]),
             ("a file name too long", [str(good), "--out", str(tmp_path / ("f" * 252 + ".h5"))]),
             ("a folder that cannot be created", [str(good), "--out", "/sys/heal_mpi_test/o.h5"]),
             ("a value float32 cannot hold", [str(good), "--set", "train.lr=1e300"]),
             ("more nodes than samples", [str(good), "--set", "nodes.count=5000"]),
             ("a FedAvg server without clients", [str(good), "--set", "nodes.count=1"])]
    import torch
    if not torch.cuda.is_available():
        cases.append(("cuda without a GPU", [str(good), "--set", "run.device='cuda'"]))
    return cases


def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "results" / "o.h5"
    for name, argv in bad_cli_inputs(tmp_path):
        argv = argv if "--out" in argv else [*argv, "--out", str(out)]
        r = subprocess.run([sys.executable, "-m", "heal_mpi", "run", *argv], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("heal-mpi: error: "), (name, r.stderr)
        assert not out.exists() and not out.parent.exists(), name
        assert not (tmp_path / "a_file" / "sub").exists()


# ----------------------------------------------------------------------------- analysis inputs

ROUNDS = 4


def write_heal_file(path, completed: int = ROUNDS) -> None:
    """A file in the writer's layout (as analysis reads it), with `completed` valid rows."""
    cfg = cfgmod.load(None, [f"run.rounds={ROUNDS}", "overlay.snapshot_every=2"])
    with h5py.File(path, "w") as f:
        f.attrs.update(config=cfgmod.to_toml(cfg), method="fedavg", overlay="star", rounds_completed=completed)
        for metric in ("acc_mean", "acc_std", "alive", "hubs", "hubs_active", "messages", "bytes"):
            f[f"rounds/{metric}"] = np.linspace(0.2, 0.8, ROUNDS)
        f["nodes/alive"] = np.ones((ROUNDS, 8), np.int32)
        f["overlay/cache"] = np.tile((np.arange(8)[:, None] + [1, 2]) % 8, (2, 1, 1))
        f["overlay/snapshot_rounds"] = np.array([0, 2])


@st.composite
def foreign_file(draw, path):
    """An HDF5 file with some of the attributes and groups analysis looks for, some wrong."""
    with h5py.File(path, "w") as f:
        if draw(st.booleans()):
            f.attrs["config"] = draw(st.sampled_from(["", "not toml [", "[run]\nrounds = 'x'\n", "run = 3\n",
                                                      "[faults]\ncrash = [{round = 1}]\n", "[run]\nseed = [1]\n"]))
        if draw(st.booleans()):
            f.attrs["rounds_completed"] = draw(st.sampled_from([-3, 2, 10**6, "two", np.arange(3)]))
        where = draw(st.sampled_from(["none", "group", "dataset"]))
        if where == "group":
            f["rounds/acc_mean"] = draw(st.sampled_from([np.arange(3.0), np.zeros((2, 2)), np.array([b"x"])]))
        elif where == "dataset":
            f["rounds"] = np.arange(3)
        if draw(st.booleans()):
            f["overlay/cache"] = draw(st.sampled_from([np.zeros((1, 3, 2), np.int64), np.arange(3)]))
            f["overlay/snapshot_rounds"] = draw(st.sampled_from([np.array([0]), np.array([99]), np.arange(2.5)]))
    return path


def read_both(path) -> None:
    """What every analysis script does first: load_groups (report, accuracy, ...) or the topology reader."""
    for read in (lambda: common.load_groups([path]), lambda: list(topology.read_snapshots(path, smoke=True))):
        try:
            read()
        except common.AnalysisError as e:
            msg = str(e)
            assert "\n" not in msg and (msg.startswith(str(path)) or msg.startswith("no file has a completed round")), msg


@settings(PROFILE, max_examples=60)
@given(data=st.data())
def test_analysis_readers_on_damaged_files(tmp_path, data):
    path = tmp_path / "x.h5"
    kind = data.draw(st.sampled_from(["empty", "truncated", "foreign", "partial"]), label="kind")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        write_heal_file(path)
        whole = path.read_bytes()
        path.write_bytes(whole[:data.draw(st.integers(0, len(whole) - 1), label="cut at")])
    elif kind == "foreign":
        data.draw(foreign_file(path))
    else:
        write_heal_file(path, completed=data.draw(st.integers(0, ROUNDS), label="completed"))
    read_both(path)


SCRIPTS = ["accuracy", "final_table", "time_to_accuracy", "hubs", "traffic", "report", "topology", "byzantine",
           "attack_table", "recovery"]
BAD_FILES = ["empty", "not hdf5", "truncated", "foreign", "no complete round"]


def make_bad(kind: str, path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not hdf5":
        path.write_text("round,acc\n1,0.5\n")
    elif kind == "truncated":
        write_heal_file(path)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "foreign":
        with h5py.File(path, "w") as f:
            f["data"] = np.arange(10)
    else:
        write_heal_file(path, completed=0)


@pytest.mark.parametrize("script,kind", [(s, BAD_FILES[i % len(BAD_FILES)]) for i, s in enumerate(SCRIPTS)])
def test_analysis_script_exits_2_with_one_line(tmp_path, script, kind):
    """Each script as a user runs it, each kind of bad file at least once."""
    bad = tmp_path / "bad.h5"
    make_bad(kind, bad)
    if script == "topology" and kind == "no complete round":
        kind = "foreign"  # topology reads snapshots, not rounds: a file without them is its bad input
        make_bad(kind, bad)
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / f"{script}.py"), str(bad), "--out",
                        str(tmp_path / "out"), "--smoke"], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"{script}: error: "), r.stderr


def test_partial_file_is_analysed(tmp_path):
    """A run cut after 2 of 4 rounds is input, not an error: its complete rows are used."""
    path = tmp_path / "cut.h5"
    write_heal_file(path, completed=2)
    r = subprocess.run([sys.executable, str(ROOT / "analysis" / "final_table.py"), str(path), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "†" in (tmp_path / "out" / "final_accuracy.md").read_text()  # marked as cut short
