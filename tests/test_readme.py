"""The README stays true: its generated blocks are what the code defines, and every command it
gives exists (make targets, heal-mpi subcommands, analysis scripts, files it links)."""

import re

from conftest import ROOT

from heal_mpi.cli import build_parser
from heal_mpi.config import kinds_markdown, reference_markdown

README = (ROOT / "README.md").read_text()


def test_readme_generated_blocks_are_current():
    assert reference_markdown() in README, "README config reference is stale: run `make docs`"
    assert kinds_markdown() in README, "README tables of protocols, overlays and attacks are stale: run `make docs`"


def test_every_make_target_the_readme_names_exists_and_ci_runs_the_test_command():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)`", README)) | set(re.findall(r"^make ([a-z][\w-]*)", README, re.M))
    assert {"demo", "test"} <= named and named <= targets, named - targets
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_every_heal_mpi_command_the_readme_gives_parses():
    parser = build_parser()
    commands = re.findall(r"heal-mpi ((?:run|validate|info|config|bench)\b[^\n`#|]*)", README)
    assert len(commands) > 8
    for cmd in commands:
        cmd = re.sub(r"\[[^\]]*\]", "", cmd)  # optional parts: [--model lenet5], [--set ...]
        args = [a for a in cmd.split() if not a.isupper() and "..." not in a]
        if args[0] in ("run", "validate") and len(args) == 1:
            args.append("c.toml")
        parser.parse_args(args)


def test_every_script_and_file_the_readme_names_exists():
    for path in set(re.findall(r"(?:python |\()((?:analysis|jobs|examples|tests)/[\w./-]+\.(?:py|toml|md|sh))", README)):
        assert (ROOT / path).exists(), path
    for link in set(re.findall(r"\]\(((?:jobs|examples)/[\w./-]*)\)", README)):
        assert (ROOT / link).exists(), link
