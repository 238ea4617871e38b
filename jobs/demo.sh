#!/usr/bin/env bash
# `make demo`: HEAL, FedAvg, Gossip and Epidemic Learning on one small problem (jobs/configs/demo.toml)
# with all hubs crashing mid-run (FAULT below), 2 ranks each,
# then the analysis of all the runs: plots and tables in results/demo_report/.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=jobs/configs/demo.toml
REPORT=results/demo_report
# The scenario, for every run: every hub crashes at round 12 (HEAL re-elects hubs; FedAvg's
# server never fails, as in the paper).
FAULT=(--set 'faults.hub_crash=[{round = 12, count = "all"}]')

# One run per line: the output name (results/demo_<name>.h5), then its overrides of CONFIG.
# Values must not contain spaces: write faults.crash=[{round=5,fraction=0.5}].
RUNS=(
    "heal     --set protocol.kind=heal"
    "fedavg   --set protocol.kind=fedavg"
    "gossip   --set protocol.kind=gossip"
    "epidemic --set protocol.kind=epidemic"
)

FILES=()
for spec in "${RUNS[@]}"; do
    read -r -a words <<<"$spec"  # split on spaces only: no glob expansion of [...] values
    name=${words[0]} out=results/demo_${words[0]}.h5
    echo "== $name: $CONFIG ${words[*]:1}"
    bash jobs/laptop.sh 2 "$CONFIG" --out "$out" --overwrite "${FAULT[@]}" "${words[@]:1}"
    FILES+=("$out")
done

rm -rf "$REPORT"
ANALYSIS=(analysis/report.py "${FILES[@]}" --out "$REPORT" --targets 0.6 0.7)
echo "== analysis: python ${ANALYSIS[*]}"
.venv/bin/python "${ANALYSIS[@]}"
