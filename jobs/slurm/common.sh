# Sourced by run.sbatch and sweep.sbatch: launch one heal-mpi run with srun, and requeue the
# job when the run stopped at a checkpoint (exit 3, after Slurm's USR1 before the time limit).
#
# Environment:
#   HEAL_MPI          heal-mpi executable (default: $REPO/.venv/bin/heal-mpi)
#   HEAL_SRUN_MPI     srun --mpi plugin (default pmix; Open MPI and recent MPICH speak it)
#   HEAL_SRUN_ARGS    extra srun options, e.g. "--cpu-bind=cores"
#   HEAL_MAX_REQUEUE  stop requeueing after this many restarts (default 20)
#   HEAL_DRY_RUN=1    print the srun command instead of running it
# REPO must be set by the sourcing script.

HEAL_MPI=${HEAL_MPI:-$REPO/.venv/bin/heal-mpi}
INTERRUPTED_EXIT=3  # heal_mpi.checkpoint.INTERRUPTED_EXIT: checkpoint saved, continue with --resume

# containers often forbid the syscall with which Open MPI's shared-memory transport copies a message
# once (heal_mpi/single_copy.py): there it must copy twice. A value set in the job's environment wins.
if [ -z "${OMPI_MCA_btl_vader_single_copy_mechanism:-}" ] && [ "$(python3 "$REPO/heal_mpi/single_copy.py")" = none ]; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl_sm_single_copy_mechanism=none
fi

# heal_run CONFIG OUT [heal-mpi run options...]: run (or resume) CONFIG into OUT under srun.
heal_run() {
    local config=$1 out=$2 restarts=${SLURM_RESTART_COUNT:-0} status=0
    shift 2
    local args=()
    if [ "$restarts" -gt 0 ] && [ -f "$out.ckpt/meta.json" ]; then
        # this job was requeued: continue its checkpoint (--overwrite would throw the finished rounds away)
        for a in "$@"; do [ "$a" = --overwrite ] || [ "$a" = --resume ] || args+=("$a"); done
        args+=(--resume)
        echo "heal_run: resuming $out from its checkpoint (restart $restarts)"
    else
        args=("$@")  # the first attempt runs as asked (pass --resume to continue an earlier job's output)
    fi
    local cmd=(srun --mpi="${HEAL_SRUN_MPI:-pmix}" ${HEAL_SRUN_ARGS:-} "$HEAL_MPI" run "$config" --out "$out" ${args[@]+"${args[@]}"})
    if [ "${HEAL_DRY_RUN:-0}" = 1 ]; then
        printf '%q ' "${cmd[@]}"; echo
        return 0
    fi

    # what this log belongs to, first: config, output, ranks, source revision
    echo "heal_run: job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ task $SLURM_ARRAY_TASK_ID} on $(hostname) at $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "heal_run: config $config -> $out, ${SLURM_NTASKS:-?} rank(s), ${SLURM_CPUS_PER_TASK:-1} CPU(s) each, revision $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    mkdir -p "$(dirname "$out")"
    "${cmd[@]}" || status=$?
    if [ $status -ne $INTERRUPTED_EXIT ]; then
        return $status
    fi
    if [ -z "${SLURM_JOB_ID:-}" ] || [ "$restarts" -ge "${HEAL_MAX_REQUEUE:-20}" ]; then
        echo "heal_run: stopped at a checkpoint; not requeued (restart $restarts); resubmit with --resume to continue" >&2
        return $status
    fi
    echo "heal_run: stopped at a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
}

# heal_split_out DEFAULT_OUT ARGS...: sets OUT (the --out in ARGS, else DEFAULT_OUT) and ARGS (the rest).
heal_split_out() {
    OUT=$1; shift
    ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --out) OUT=${2:?--out needs a path}; shift 2 ;;
            --out=*) OUT=${1#--out=}; shift ;;
            *) ARGS+=("$1"); shift ;;
        esac
    done
}
