"""The analysis scripts' library: runs.py (load and group files), labels.py (methods, scenarios,
fault events), stats.py, plots.py, cli.py. The scripts use it through `common`."""
