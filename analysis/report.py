#!/usr/bin/env python3
"""Every analysis at once: accuracy (against rounds and against bytes), final table with the total
traffic, rounds and bytes to target, hubs, traffic, the data partition (and, when any run has
Byzantine nodes or Lift, the Byzantine hubs and the attack table).

    python analysis/report.py results/*.h5 --out results/report [--targets 0.5 0.8] [--smoke]

Loads and groups the files once (by stored config, so any mix of seeds, methods and
scenarios), runs accuracy.py, final_table.py, time_to_accuracy.py, hubs.py, traffic.py and partition.py
(byzantine.py and attack_table.py for runs with an [adversary]) into DIR, prints the
final-accuracy table, then the paths of every PNG and table written. Runs with a clock (`[time]`)
add accuracy against simulated seconds and stragglers.py's table.
"""

from __future__ import annotations

import accuracy
import attack_table
import byzantine
import common
import final_table
import hubs
import partition
import stragglers
import time_to_accuracy
import traffic


def main(argv=None) -> int:
    ap = common.parser(__doc__)
    time_to_accuracy.add_targets(ap)
    args = ap.parse_args(argv)
    groups = common.load_groups(args.files)
    paths = []
    for module in (accuracy, hubs, traffic, final_table, partition):
        paths += module.write(groups, args.out, args.smoke)
    paths += time_to_accuracy.write(groups, args.out, args.smoke, args.targets)
    paths += stragglers.write(groups, args.out, args.smoke)  # runs with a clock
    attacked = [g for g in groups if any(e.kind in ("byzantine", "lift") for e in g.events)]
    if attacked:
        paths += byzantine.write(attacked, args.out, args.smoke)
        paths += attack_table.write(attacked, args.out, args.smoke)
    seeds = sum(g.n_seeds for g in groups)
    print(f"{seeds} file(s) in {len(groups)} group(s): "
          + "; ".join(f"{g.method} / {g.scenario} x{g.n_seeds}" for g in groups))
    print()
    print((args.out / "final_accuracy.md").read_text())
    print("plots:")
    for p in paths:
        if p.suffix == ".png":
            print(f"  {p}")
    print("tables:")
    for p in paths:
        if p.suffix in (".md", ".csv"):
            print(f"  {p}")
    return 0


if __name__ == "__main__":
    common.run_main(main)
