#!/usr/bin/env bash
# Run one simulation on this machine: jobs/laptop.sh NRANKS CONFIG [heal-mpi run options...]
#   e.g. jobs/laptop.sh 2 jobs/configs/demo.toml --out results/demo.h5 --overwrite
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 NRANKS CONFIG [--out PATH] [--overwrite] [--set section.key=value ...]" >&2
    exit 2
fi
NRANKS=$1; CONFIG=$2; shift 2
HERE=$(cd "$(dirname "$0")/.." && pwd)
HEAL_MPI=${HEAL_MPI:-$HERE/.venv/bin/heal-mpi}
# Open MPI refuses root (containers) and more ranks than cores unless told so.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe
# Containers often forbid the syscall with which the shared-memory transport copies a message
# once (heal_mpi/single_copy.py): there it must copy twice. A value you set wins.
if [ -z "${OMPI_MCA_btl_vader_single_copy_mechanism:-}" ] && [ "$(python3 "$HERE/heal_mpi/single_copy.py")" = none ]; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl_sm_single_copy_mechanism=none
fi
# Open MPI binds rank 0 of every mpirun to core 0: two runs started side by side would share it.
export OMPI_MCA_hwloc_base_binding_policy=${OMPI_MCA_hwloc_base_binding_policy:-none}
# A failing run prints one line and calls MPI_Abort; --quiet drops Open MPI's banner about the abort.
QUIET=(); if mpirun --version 2>/dev/null | grep -q "Open MPI"; then QUIET=(--quiet); fi
exec mpirun "${QUIET[@]}" -n "$NRANKS" "$HEAL_MPI" run "$CONFIG" "$@"
