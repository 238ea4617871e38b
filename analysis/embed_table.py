#!/usr/bin/env python3
"""Put a generated table into a markdown file, between two markers, so no table is typed.

    python analysis/embed_table.py README.md lift jobs/validation/lift/lift/byzantine.md

Replaces what lies between `<!-- NAME:start -->` and `<!-- NAME:end -->` in TARGET with the
contents of TABLE. Exit 2 with one line when a file or a marker is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common


def embed(target: Path, name: str, table: Path) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    for path in (target, table):
        if not path.is_file():
            raise common.AnalysisError(f"{path}: no such file")
    text = target.read_text()
    if start not in text or end not in text.split(start, 1)[1]:
        raise common.AnalysisError(f"{target}: no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    target.write_text(f"{head}{start}\n{table.read_text().strip()}\n{end}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    ap.add_argument("target", type=Path)
    ap.add_argument("name")
    ap.add_argument("table", type=Path)
    args = ap.parse_args(argv)
    embed(args.target, args.name, args.table)
    print(f"{args.target}: {args.name} table from {args.table}")
    return 0


if __name__ == "__main__":
    common.run_main(main)
