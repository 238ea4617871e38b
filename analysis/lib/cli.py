"""What every analysis script shares: arguments, tables (markdown, CSV), and one line per failure."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from lib.runs import AnalysisError, first_line, load_groups


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        w.writeheader()
        w.writerows(rows)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, metavar="FILE", help="heal_mpi HDF5 files (any seeds, methods, scenarios)")
    ap.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the PNGs and tables (created)")
    ap.add_argument("--smoke", action="store_true", help="fast output for tests: low-resolution PNGs")
    return ap


def files_out_main(write, doc: str, argv=None) -> int:
    """main() of a script whose only arguments are FILES, --out and --smoke: write, print the paths."""
    args = parser(doc).parse_args(argv)
    print_paths(write(load_groups(args.files), args.out, args.smoke))
    return 0


def run_main(main) -> None:
    """sys.exit(main()): bad input is one line and exit code 2, a failure to write the outputs
    one line and exit code 1 (HEAL_MPI_DEBUG=1 shows its traceback instead)."""
    name = Path(sys.argv[0]).stem
    try:
        sys.exit(main())
    except AnalysisError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if os.environ.get("HEAL_MPI_DEBUG", "") not in ("", "0"):
            raise
        print(f"{name}: error: cannot write {e.filename or 'the output'}: {e.strerror or first_line(e)}",
              file=sys.stderr)
        sys.exit(1)


def print_paths(paths: list[Path]) -> None:
    for p in paths:
        print(p)
