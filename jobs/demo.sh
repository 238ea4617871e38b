#!/usr/bin/env bash
# `make demo`: a small FedAvg run on 2 ranks, then a look at what it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=results/demo.h5
bash jobs/laptop.sh 2 jobs/configs/demo.toml --out "$OUT" --overwrite
.venv/bin/python - "$OUT" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    acc = f["rounds/acc_mean"][:]
    print(f"{sys.argv[1]}: {f.attrs['rounds_completed']} rounds, driver {f.attrs['hdf5_driver']}, "
          f"mean accuracy {acc[0]:.3f} (round 1) -> {acc[-1]:.3f} (round {len(acc)})")
PY
