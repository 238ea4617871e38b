"""What the analysis scripts share, in one namespace (`import common`): the library in lib/.

    lib/runs.py    loading files and grouping them by experiment (seeds together)
    lib/labels.py  method and scenario labels, fault events, display order
    lib/stats.py   NaN-aware statistics over seeds and rounds
    lib/plots.py   matplotlib helpers: colours, fault marks, the round axis
    lib/cli.py     arguments, markdown and CSV tables, one line per failure

A run is one heal_mpi file, a group one experiment over seeds (runs.py says how files are
grouped); each group gets a method label ("FedAvg", "HEAL", "Gossip (elevator)") and a
scenario label built from its fault events ("fault-free", "crash 20% @10"). Rounds on plot
axes count from 1: round k is the row written after k rounds; a fault at (0-based) round r
is drawn at x = r.
"""

from lib.cli import files_out_main, markdown_table, parser, print_paths, run_main, write_csv  # noqa: F401
from lib.labels import (METHOD_ORDER, Event, adversary_events, by_scenario, fault_events, method_label,  # noqa: F401
                        method_rank, methods, order_notes, overlay_labels, overlay_name, pct, scenario_label,
                        scenario_rank, setup_text, slug)
from lib.plots import (binary_bytes, colors, legend_outside, mark_faults, marks, pyplot, round_axis, save,  # noqa: F401
                       widths)
from lib.runs import (DEFAULTS, IGNORED_KEYS, AnalysisError, Group, Run, experiment_key, first_line,  # noqa: F401
                      flatten, group_runs, load_groups, load_run, open_h5)
from lib.stats import last_valid, mean_std_text, nanmean, nanstd, size  # noqa: F401
