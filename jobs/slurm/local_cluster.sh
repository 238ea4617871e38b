#!/usr/bin/env bash
# A real one-node Slurm on this machine, to try and test the sbatch scripts: up | down | status
#   sudo jobs/slurm/local_cluster.sh up     # then: export SLURM_CONF=/tmp/heal_mpi-slurm/slurm.conf
#
# `up` (as root, idempotent) installs what is missing of Debian's slurmctld slurmd slurm-client
# munge, writes a slurm.conf for this host into $HEAL_SLURM_DIR (never /etc/slurm), starts
# munged, slurmctld and slurmd, and waits until the node is idle. `down` cancels the jobs and
# stops what `up` started. Clients find the cluster through SLURM_CONF.
set -euo pipefail
DIR=${HEAL_SLURM_DIR:-/tmp/heal_mpi-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "local_cluster: $*" >&2; }
die() { say "$*"; exit 1; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # keep the packages from starting their services with /etc/slurm/slurm.conf: this script starts them
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; ours=1; fi
    local ok=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
        || ok=1
    if [ $ours -eq 1 ]; then rm -f $policy; fi
    [ $ok -eq 0 ] || die "apt-get could not install ${missing[*]}"
}

start_munge() {
    munge_ok && return  # a system munged (systemd, a real cluster) is fine as it is
    [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/munged.ours"
    for _ in $(seq 50); do munge_ok && return; sleep 0.1; done
    die "munged did not come up (see /var/log/munge/munged.log)"
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # RealMemory above what slurmd finds drains the node: leave a margin of 1 GiB (or a quarter)
    mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024); print (m > 4096 ? m - 1024 : int(m * 3 / 4))}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool"
    cat > "$CONF.tmp" <<EOF
# Written by jobs/slurm/local_cluster.sh for $NODE: one node, one partition.
ClusterName=heal
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${HEAL_SLURMCTLD_PORT:-6817}
SlurmdPort=${HEAL_SLURMD_PORT:-6818}
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120)
AuthInfo=cred_expire=${HEAL_SLURM_CRED_EXPIRE:-10}
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem_mb / cpus))
MpiDefault=none
ReturnToService=2
# finished jobs stay in \`scontrol show job\` for 10 minutes (there is no accounting database)
MinJobAge=600
SchedulerParameters=sched_interval=2
KillWait=10
MailProg=/bin/true
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    # srun lists its MPI plugins only once it has a config to read
    if srun --mpi=list 2>&1 | grep -q pmix; then sed -i 's/^MpiDefault=none/MpiDefault=pmix/' "$CONF"; fi
}

wait_idle() {
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        case $state in
            idle|mix|alloc) return ;;
            down*|drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $NODE is '${state:-unknown}' after 60 s (see $DIR/slurmctld.log and $DIR/slurmd.log)"
}

up() {
    [ "$(id -u)" -eq 0 ] || die "needs root (it installs packages and starts daemons as root)"
    install_missing
    mkdir -p "$DIR"
    start_munge
    if ! running "$DIR/slurmctld.pid"; then
        write_conf
        slurmctld -c -f "$CONF"  # -c: start with no jobs left from an earlier `up`
    fi
    running "$DIR/slurmd.pid" || slurmd -f "$CONF"
    wait_idle
    say "up: node $NODE idle; export SLURM_CONF=$CONF"
}

down() {
    if running "$DIR/slurmctld.pid"; then
        scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
        for _ in $(seq 50); do running "$pidfile" || break; sleep 0.2; done
        running "$pidfile" && kill "$(cat "$pidfile")"
        rm -f "$pidfile"
    done
    if [ -f "$DIR/munged.ours" ]; then
        munged --stop >/dev/null 2>&1 || true
        rm -f "$DIR/munged.ours"
    fi
    say "down"
}

status() {
    local ok=0
    for d in slurmctld slurmd; do
        if running "$DIR/$d.pid"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
    done
    munge_ok && echo "munged: running" || { echo "munged: stopped"; ok=1; }
    [ $ok -eq 0 ] && sinfo
    return $ok
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (state, logs and slurm.conf in \$HEAL_SLURM_DIR, default $DIR)" >&2; exit 2 ;;
esac
