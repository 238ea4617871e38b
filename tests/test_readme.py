"""The README stays true: its config reference is the one the code defines."""

from conftest import ROOT

from heal_mpi.config import reference_markdown


def test_readme_config_reference_is_current():
    text = (ROOT / "README.md").read_text()
    assert reference_markdown() in text, "README config reference is stale: run `make docs`"


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
