#!/usr/bin/env bash
# The pipeline on a real, single-node SLURM cluster: installs Slurm from Debian packages (munge,
# slurmctld, slurmd, slurmdbd with MariaDB for sacct), starts the daemons directly (no systemd),
# runs tests/data/config_tiny.yaml through `snakemake --profile profiles/slurm` in a temporary working
# directory and checks that every job went through sbatch and finished COMPLETED, that the tables
# exist and that each training job got one of the node's two GPUs (CUDA_VISIBLE_DEVICES set by SLURM).
#
#   bash ci/slurm/run_test.sh          # as root on Debian 12; about 3 minutes once packages are in
#
# State (munge key, database, spool, logs) lives under $LOSSBENCH_SLURM_STATE (default
# /var/lib/lossbench-slurm-ci) and is recreated on every run; the configuration goes to /etc/slurm
# (refusing to replace files it did not write) and is removed on exit. The daemons listen on
# non-default ports and talk over 127.0.0.1 only; those started here are stopped by PID on exit.
# Environment: PYTHON (default .venv/bin/python, with the package's `test` extra installed),
# KEEP_WORKDIR=1 keeps the temporary working directory, SNAKEMAKE_TIMEOUT (seconds, default 1200).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/ci/slurm
STATE=${LOSSBENCH_SLURM_STATE:-/var/lib/lossbench-slurm-ci}
PY=${PYTHON:-$REPO/.venv/bin/python}
SNAKEMAKE_TIMEOUT=${SNAKEMAKE_TIMEOUT:-1200}
CLUSTER=lossbench_ci
PARTITION=ci
ACCOUNT=lossbench_ci
NODE=lossbench-ci-node # deliberately not the host name: slurmd is started with -N
NGPUS=2
CTLD_PORT=${LOSSBENCH_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${LOSSBENCH_SLURMD_PORT:-16818}
DBD_PORT=${LOSSBENCH_SLURMDBD_PORT:-16819}
DB_PORT=${LOSSBENCH_MARIADB_PORT:-16306}
PACKAGES=(munge slurmctld slurmd slurmdbd slurm-client mariadb-server)
CONF_DIR=/etc/slurm
CONF_FILES=(slurm.conf gres.conf slurmdbd.conf cgroup.conf)
CONF_MARKER="lossbench's CI"   # in the first line of every template
WROTE_CONF=()
# Marks the daemons this script starts, so that a later run can stop what a killed run left behind.
export LOSSBENCH_SLURM_CI_STATE=$STATE

STARTED=()   # "name:pid" of every daemon this run started, stopped in reverse order on exit
RUN_PID=""   # the snakemake running now, if any
WORK=""
POLICY_RC_CREATED=0
T_START=$SECONDS

log() { echo "[slurm-ci $(date -u +%H:%M:%S)] $*"; }

dump_logs() {
    local file
    echo "----- SLURM CI diagnostics -----" >&2
    for file in "$STATE"/log/*.log; do
        [[ -f $file ]] || continue
        echo "=== $file (last 40 lines)" >&2
        tail -n 40 "$file" >&2 || true
    done
    if [[ -n $WORK && -f $WORK/snakemake.log ]]; then
        echo "=== $WORK/snakemake.log (last 60 lines)" >&2
        tail -n 60 "$WORK/snakemake.log" >&2 || true
        # SLURM logs of jobs that did not finish well
        grep -rlE "Error|Traceback|CANCELLED|error:" "$WORK/.snakemake/slurm_logs" 2>/dev/null | head -n 3 | while read -r file; do
            echo "=== $file (last 40 lines)" >&2
            tail -n 40 "$file" >&2 || true
        done
    fi
    echo "--------------------------------" >&2
}

fail() {
    echo "SLURM CI FAILED: $*" >&2
    dump_logs
    exit 1
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND once a second until it succeeds, or fail.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what not ready after ${seconds}s"
        sleep 1
    done
}

# Slurm client commands retry for a long time against a dead daemon: bound every call.
sl() { timeout 30 "$@"; }

stop_pid() { # stop_pid NAME PID: SIGTERM, up to 30 s, then SIGKILL
    local name=$1 pid=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    log "$name ($pid) ignored SIGTERM for 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# Job processes (slurmstepd and what it runs) of this cluster that outlived their slurmd: a killed run.
sweep_job_processes() {
    local pid pids=()
    for pid in $(pgrep -x slurmstepd); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "LOSSBENCH_SLURM_CI_STATE=$STATE" && pids+=("$pid")
    done
    ((${#pids[@]})) || return 0
    descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
    for pid in "${pids[@]}"; do pids+=($(descendants "$pid")); done
    log "stopping ${#pids[@]} leftover job processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 3
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

cleanup() {
    local status=$? i entry
    set +e
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
    # A snakemake still running (time-out, Ctrl-C) is stopped first: it cancels its own SLURM jobs.
    if [[ -n $RUN_PID ]] && kill -0 "$RUN_PID" 2>/dev/null; then
        local child
        for child in $(pgrep -P "$RUN_PID"); do stop_pid snakemake "$child"; done # timeout's child
        stop_pid timeout "$RUN_PID"
    fi
    if ((${#STARTED[@]})); then
        # Jobs first, while slurmctld and slurmd are still there to end them.
        if [[ -n ${SLURM_CONF:-} ]] && sl squeue -h -o %i 2>/dev/null | grep -q .; then
            sl scancel --full --account="$ACCOUNT" >/dev/null 2>&1
            for ((i = 0; i < 60; i++)); do
                sl squeue -h -o %i 2>/dev/null | grep -q . || break
                sleep 1
            done
        fi
        for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
            entry=${STARTED[i]}
            stop_pid "${entry%%:*}" "${entry##*:}"
        done
        sweep_job_processes
        rm -f "$STATE/run/started.pids"
        log "stopped the daemons this run started: ${STARTED[*]}"
    fi
    if ((${#WROTE_CONF[@]})); then rm -f "${WROTE_CONF[@]}"; fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $status -eq 0 && ${KEEP_WORKDIR:-0} != 1 ]]; then rm -rf "$WORK"; else log "working directory kept: $WORK"; fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_daemon() { # start_daemon NAME COMMAND...: run COMMAND in the background (in the foreground mode of the daemon)
    local name=$1
    shift
    # In a session of its own: a signal to this script's process group (a CI time-out) reaches the script,
    # whose exit trap then cancels the jobs before it stops the daemons, rather than the daemons first.
    setsid "$@" >>"$STATE/log/$name.stdout.log" 2>&1 </dev/null &
    local pid=$!
    STARTED+=("$name:$pid")
    echo "$name $pid" >>"$STATE/run/started.pids"
    log "started $name (pid $pid)"
}

# ---------------------------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || fail "must run as root (installs packages, starts daemons)"
[[ -x $PY ]] || fail "no Python at $PY: run 'make test' first or set PYTHON"
"$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    fail "snakemake-executor-plugin-slurm is not installed for $PY: pip install -e '.[test]'"

# 1. Packages ----------------------------------------------------------------------------------------
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    # The packages' maintainer scripts must not start system-wide daemons: this script runs its own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_get=(timeout 900 apt-get -q -o DPkg::Lock::Timeout=600)
    "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >/tmp/lossbench-slurm-apt.log 2>&1 ||
        { "${apt_get[@]}" update >>/tmp/lossbench-slurm-apt.log 2>&1 &&
            "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >>/tmp/lossbench-slurm-apt.log 2>&1; } ||
        { tail -n 30 /tmp/lossbench-slurm-apt.log >&2; fail "apt-get install ${missing[*]} failed"; }
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d && POLICY_RC_CREATED=0; fi
fi
log "Slurm $(slurmctld -V | awk '{print $2}'), $(mariadbd --version | awk '{print $3}') (packages after $((SECONDS - T_START)) s)"

# 2. Fresh state; daemons left over by an earlier, killed run of this script are stopped first --------
if [[ -f $STATE/run/started.pids ]]; then
    while read -r name pid; do
        if [[ -r /proc/$pid/environ ]] && tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "LOSSBENCH_SLURM_CI_STATE=$STATE"; then
            log "stopping $name ($pid) left over by an earlier run"
            stop_pid "$name" "$pid"
        fi
    done <"$STATE/run/started.pids"
fi
sweep_job_processes
rm -rf "$STATE"
install -d -m 0755 "$STATE" "$STATE/log" "$STATE/run" "$STATE/slurmctld" "$STATE/slurmd" "$STATE/dev"
install -d -m 0700 "$STATE/munge" "$STATE/mysql"

HOST=$(hostname -s)
# At least 4 CPUs, even on a 2-core machine (SlurmdParameters=config_overrides): the jobs are short and
# spend much of their time starting Python and waiting on Slurm, so 4 at a time finish sooner.
CPUS=$(nproc)
((CPUS >= 4)) || CPUS=4
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.75}' /proc/meminfo)
DEF_MEM_PER_CPU=$((MEM_MB / CPUS / 4))
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
render() { # render TEMPLATE OUTPUT
    sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$HOST|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@NODE@|$NODE|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
        -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" -e "s|@NGPUS@|$NGPUS|g" -e "s|@LAST_GPU@|$((NGPUS - 1))|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1" >"$2"
}
# The configuration goes where every Slurm command looks by default: inside a job the executor plugin
# runs srun with all SLURM_* variables removed, SLURM_CONF included. Files there that this script did
# not write are never touched; the ones it writes are removed on exit.
for name in "${CONF_FILES[@]}"; do
    if [[ -e $CONF_DIR/$name ]] && ! grep -q "$CONF_MARKER" "$CONF_DIR/$name"; then
        fail "$CONF_DIR/$name exists and was not written by this script: not overwriting a real cluster's configuration"
    fi
done
install -d -m 0755 "$CONF_DIR"
for name in "${CONF_FILES[@]}"; do
    WROTE_CONF+=("$CONF_DIR/$name")
    render "$HERE/$name.in" "$CONF_DIR/$name"
done
chmod 600 "$CONF_DIR/slurmdbd.conf"
export SLURM_CONF=$CONF_DIR/slurm.conf
# GPU gres needs device files; character devices with the NVIDIA major number do (no driver needed).
for ((i = 0; i < NGPUS; i++)); do mknod -m 0666 "$STATE/dev/nvidia$i" c 195 "$i"; done

# 3. Daemons -----------------------------------------------------------------------------------------
# munge on its default socket: Slurm 22.05's clients authenticate to slurmdbd through it whatever
# AuthInfo says. A munged already serving it (a system one) is used as it is and left running.
MUNGE_SOCKET=/run/munge/munge.socket.2
munge_ok() { timeout 10 bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'" >/dev/null 2>&1; }
if munge_ok; then
    log "using the munged already serving $MUNGE_SOCKET"
else
    install -d -m 0755 /run/munge
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
    chmod 0400 "$STATE/munge/munge.key"
    start_daemon munged munged --foreground --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_for 20 munged munge_ok
fi

MYSQL_SOCKET=$STATE/run/mysqld.sock
timeout 120 mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
start_daemon mariadbd mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$MYSQL_SOCKET" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$STATE/run/mariadbd.pid" \
    --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=128M --innodb-log-file-size=32M \
    --innodb-lock-wait-timeout=900
wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -u root ping
timeout 30 mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root -e "
    CREATE DATABASE slurm_acct_db;
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "could not create the accounting database"

start_daemon slurmdbd slurmdbd -D
wait_for 60 slurmdbd sl sacctmgr -n list cluster
sl sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster failed"
sl sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="lossbench CI" Organization=lossbench >/dev/null ||
    fail "sacctmgr add account failed"
sl sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null ||
    fail "sacctmgr add user failed"

start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
wait_for 60 slurmctld bash -c "timeout 10 scontrol ping | grep -q UP"
start_daemon slurmd slurmd -D -N "$NODE" -f "$SLURM_CONF"
wait_for 90 "node $NODE (idle)" bash -c "timeout 10 sinfo -h -n '$NODE' -o %T | grep -qx idle"
sl scontrol show node "$NODE" | grep -q "Gres=gpu:$NGPUS" || fail "node $NODE does not offer gpu:$NGPUS"
wait_for 30 "the cluster's association in slurmdbd" bash -c "timeout 10 sacctmgr -n -P list assoc cluster=$CLUSTER account=$ACCOUNT format=user | grep -qx '$(id -un)'"
log "cluster up after $((SECONDS - T_START)) s: node $NODE, $CPUS CPUs, ${MEM_MB} MB, gpu:$NGPUS"

# A one-line job first: sbatch, gres and sacct work before the pipeline is tried.
smoke=$(sl sbatch --parsable --wait -A "$ACCOUNT" -p "$PARTITION" --gpus=1 -t 2 --mem=100 -o "$STATE/log/smoke-%j.out" \
    --wrap 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"') || fail "the smoke-test job failed"
grep -q "CUDA_VISIBLE_DEVICES=[0-9]" "$STATE/log/smoke-$smoke.out" || fail "the smoke-test job got no GPU: $(cat "$STATE/log/smoke-$smoke.out")"
wait_for 30 "sacct record of job $smoke" bash -c "timeout 10 sacct -n -X -j $smoke -o State | grep -q COMPLETED"
log "smoke-test job $smoke COMPLETED with $(cat "$STATE/log/smoke-$smoke.out")"

# 4. The pipeline ------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/lossbench-slurm-ci.XXXXXX)
mkdir -p "$WORK/profile"
"$PY" - "$REPO/profiles/slurm/config.yaml" "$HERE/profile_overrides.yaml" "$WORK/profile/config.yaml" <<'EOF'
import sys
import yaml

def merge(base, override):
    for key, value in override.items():
        base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base

with open(sys.argv[1]) as profile, open(sys.argv[2]) as overrides:
    merged = merge(yaml.safe_load(profile), yaml.safe_load(overrides))
with open(sys.argv[3], "w") as out:
    yaml.safe_dump(merged, out, sort_keys=False)
EOF
log "profile: profiles/slurm with ci/slurm/profile_overrides.yaml merged in -> $WORK/profile/config.yaml"

# device=auto: the tiny configuration says cpu, which would skip the device check whose log line shows
# CUDA_VISIBLE_DEVICES (a GPU-less CI machine then falls back to the CPU, saying so).
SNAKEMAKE=("$PY" -m snakemake --snakefile "$REPO/Snakefile" --configfile "$REPO/tests/data/config_tiny.yaml"
    --config device=auto --profile "$WORK/profile")
run_pipeline() { # run_pipeline LOGFILE [ARGS...]: in the background, waited for, so that traps run at once
    local logfile=$1
    shift
    (cd "$WORK" && PYTHONUNBUFFERED=1 exec timeout "$SNAKEMAKE_TIMEOUT" "${SNAKEMAKE[@]}" "$@") >"$logfile" 2>&1 &
    RUN_PID=$!
    wait "$RUN_PID"
}

T_PIPELINE=$SECONDS
if [[ ${LOSSBENCH_SLURM_CI_ONLY_PREEMPTION:-0} != 1 ]]; then # (a quicker check of the preemption part alone)
SACCT_START=$(date +%Y-%m-%dT%H:%M:%S)
log "snakemake --profile profiles/slurm on tests/data/config_tiny.yaml in $WORK"
run_pipeline "$WORK/snakemake.log" || fail "snakemake exited with status $? (log: $WORK/snakemake.log)"
log "pipeline finished in $((SECONDS - T_PIPELINE)) s"

# 5. Checks ------------------------------------------------------------------------------------------
for table in table_6_1 table_6_3 table_6_4; do
    for suffix in .csv .md .tex _vs_paper.csv; do
        [[ -s $WORK/results/demo/tables/$table$suffix ]] || fail "missing table results/demo/tables/$table$suffix"
    done
done

# Every job snakemake submitted is a SLURM job that sacct reports COMPLETED; the rules without an
# action (all) run inside snakemake itself.
grep -oE "submitted with SLURM jobid [0-9]+" "$WORK/snakemake.log" | awk '{print $NF}' | sort -n >"$WORK/submitted.ids"
expected=$(awk '/^Job stats:/ {stats = 1; next} stats && $1 == "total" {print total; exit} stats && $2 ~ /^[0-9]+$/ && $1 != "all" {total += $2}' "$WORK/snakemake.log")
submitted=$(wc -l <"$WORK/submitted.ids")
[[ -n $expected && $submitted -eq $expected ]] || fail "snakemake planned $expected jobs but submitted $submitted through sbatch"
wait_for 60 "sacct records of all $submitted jobs" bash -c \
    "[[ \$(timeout 20 sacct -n -X -P -S '$SACCT_START' -o JobID,State | grep -c '|COMPLETED\$') -ge $submitted ]]"
sl sacct -n -X -P -S "$SACCT_START" -o JobID,Account,Partition,State,ExitCode,AllocTRES%80,Comment%120 >"$WORK/sacct.txt"
if ! "$PY" - "$WORK/submitted.ids" "$WORK/sacct.txt" <<'EOF'
import collections
import sys

submitted = open(sys.argv[1]).read().split()
rows = {line.split("|")[0]: line.rstrip("\n").split("|") for line in open(sys.argv[2]) if line.strip()}
problems = [f"job {job} not in sacct" for job in submitted if job not in rows]
problems += [f"job {job} ({rows[job][6]}) is {rows[job][3]}" for job in submitted if job in rows and rows[job][3] != "COMPLETED"]
rules = collections.Counter(rows[job][6].split("_wildcards_")[0].removeprefix("rule_") for job in submitted if job in rows)
train = [rows[job] for job in submitted if job in rows and rows[job][6].startswith("rule_train_")]
problems += [f"training job {row[0]} got no GPU: AllocTRES {row[5]}" for row in train if "gres/gpu=1" not in row[5]]
if not train:
    problems.append("no training job in sacct")
print(f"sacct: {len(submitted)} jobs, states {dict(collections.Counter(rows[j][3] for j in submitted if j in rows))}, "
      f"by rule {dict(sorted(rules.items()))}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
EOF
then
    fail "sacct does not show every pipeline job COMPLETED (see $WORK/sacct.txt)"
fi

# Each training job saw the GPU SLURM gave it: lossbench logs CUDA_VISIBLE_DEVICES when it falls back
# to the CPU (no CUDA driver on CI) and the device when it trains on a GPU.
trained=0
while IFS= read -r -d '' train_log; do
    trained=$((trained + 1))
    grep -qE "CUDA_VISIBLE_DEVICES=[0-9]|on cuda" "$train_log" ||
        fail "training log ${train_log#"$WORK"/} shows no GPU from SLURM: $(grep -m1 -E 'CUDA|training ' "$train_log")"
done < <(find "$WORK/results/demo/logs/train" -name '*.log' -print0)
((trained > 0)) || fail "no training logs under results/demo/logs/train"
log "all $trained training jobs saw CUDA_VISIBLE_DEVICES from SLURM: $(grep -rhoE 'CUDA_VISIBLE_DEVICES=[0-9,]+' "$WORK/results/demo/logs/train" | sort | uniq -c | tr -s ' ' | paste -sd,)"

fi
T_PREEMPT=$SECONDS

# 6. Preemption: scancel a running training job (SLURM sends SIGTERM), then run the same command again ---
# A longer training of one model (denoise, l1) on the data made above, checkpointing every few steps.
PRE=$WORK/preempt
mkdir -p "$PRE/results/demo/data"
if [[ -d $WORK/results/demo/data/denoise ]]; then cp -a "$WORK/results/demo/data/denoise" "$PRE/results/demo/data/"; fi
"$PY" - "$REPO/tests/data/config_tiny.yaml" "$PRE/config.yaml" <<'EOF'
import sys
import yaml

with open(sys.argv[1]) as handle:
    config = yaml.safe_load(handle)
config["device"] = "auto"
config["losses"] = {"l1": config["losses"]["l1"]}
config["tasks"] = {"denoise": config["tasks"]["denoise"]}
config["tasks"]["denoise"]["crops_per_image"] = 64              # 128 samples: 32 steps per epoch
config["tasks"]["denoise"]["training"] = {"epochs": 30, "batch_size": 4}
config["figures"] = {name: spec for name, spec in config["figures"].items() if spec["task"] == "denoise"}
config["trainer"] = {**config.get("trainer", {}), "checkpoint_every": 50}
with open(sys.argv[2], "w") as handle:
    yaml.safe_dump(config, handle, sort_keys=False)
EOF
PRE_TARGET=results/demo/models/denoise/l1/seed0/model.pt
PRE_LOG=$PRE/results/demo/logs/train/denoise/l1/seed0.log
preempt_run() { # preempt_run LOGFILE: the same command both times, in the background (RUN_PID)
    (cd "$PRE" && PYTHONUNBUFFERED=1 exec timeout "$SNAKEMAKE_TIMEOUT" "$PY" -m snakemake --snakefile "$REPO/Snakefile" \
        --configfile "$PRE/config.yaml" --profile "$WORK/profile" "$PRE_TARGET" --rerun-triggers mtime) >"$1" 2>&1 &
    RUN_PID=$!
}
train_job() { sl squeue -h -t R -o '%i %k' | awk '$2 == "rule_train_wildcards_denoise_l1_0" {print $1}'; }
checkpoints() { find "$PRE/results/demo/checkpoints" -name 'step_*.pt' 2>/dev/null | sort; }

log "preemption: training denoise/l1 for 30 epochs through SLURM, to be cancelled once it has started"
preempt_run "$PRE/snakemake.1.log"
first_run=$RUN_PID
deadline=$((SECONDS + 600))
until [[ -n $(train_job) ]] && grep -q "training denoise/l1" "$PRE_LOG" 2>/dev/null; do # (600 s: it may make its data first)
    kill -0 "$first_run" 2>/dev/null || fail "the first preemption run ended before its training job started (log: $PRE/snakemake.1.log)"
    ((SECONDS < deadline)) || fail "the training job to cancel did not start within 600 s"
    sleep 0.5
done
job=$(train_job)
sleep 2 # let it take a few steps
scancel "$job" || fail "scancel $job failed"
log "scancel $job (training denoise/l1) after $(grep -c '' "$PRE_LOG") log lines"
wait_for 60 "sacct state CANCELLED of job $job" bash -c "timeout 10 sacct -n -X -j $job -o State | grep -q CANCELLED"
# snakemake-executor-plugin-slurm 2.8.0 compares sacct's state with "CANCELLED" exactly and so never
# recognises "CANCELLED by <uid>": it would wait for ever. Give it a minute, then stop it like a user would.
for ((i = 0; i < 60; i++)); do kill -0 "$first_run" 2>/dev/null || break; sleep 1; done
if kill -0 "$first_run" 2>/dev/null; then
    log "snakemake did not notice the cancellation (sacct says '$(sl sacct -n -X -P -j "$job" -o State)'): stopping it"
    for child in $(pgrep -P "$first_run"); do stop_pid snakemake "$child"; done
    stop_pid timeout "$first_run"
    # SIGKILL leaves snakemake's lock behind, as after a crash; the user's remedy is --unlock.
    (cd "$PRE" && timeout 300 "$PY" -m snakemake --snakefile "$REPO/Snakefile" --configfile "$PRE/config.yaml" \
        --unlock) >"$PRE/snakemake.unlock.log" 2>&1 || fail "snakemake --unlock failed (see $PRE/snakemake.unlock.log)"
fi
wait "$first_run" && fail "snakemake reported success for a cancelled job"
cp "$PRE_LOG" "$PRE/train.1.log"
grep -q "SIGTERM received: checkpoint" "$PRE/train.1.log" ||
    fail "the cancelled training job did not log a checkpoint on SIGTERM: $(tail -n 3 "$PRE/train.1.log")"
[[ -n $(checkpoints) ]] || fail "no checkpoint under $PRE/results/demo/checkpoints after scancel"
[[ ! -e $PRE/$PRE_TARGET ]] || fail "the cancelled job wrote $PRE_TARGET"
log "cancelled job $job: $(grep -o 'SIGTERM received: checkpoint .* written at step [0-9]*' "$PRE/train.1.log" | sed "s|$PRE/||")"

preempt_run "$PRE/snakemake.2.log"
wait "$RUN_PID" || fail "the re-run after preemption failed (log: $PRE/snakemake.2.log)"
grep -q "resuming .* step [1-9]" "$PRE_LOG" || fail "the re-run did not resume from the checkpoint: $(grep -m 2 -E 'resuming|training ' "$PRE_LOG")"
[[ -s $PRE/$PRE_TARGET ]] || fail "the re-run did not write $PRE_TARGET"
rerun_job=$(grep -oE "submitted with SLURM jobid [0-9]+" "$PRE/snakemake.2.log" | awk '{print $NF}' | tail -n 1)
wait_for 30 "sacct state COMPLETED of job $rerun_job" bash -c "timeout 10 sacct -n -X -j $rerun_job -o State | grep -q COMPLETED"
log "re-run job $rerun_job COMPLETED: $(grep -o 'resuming .*' "$PRE_LOG" | sed "s|$PRE/||") ($((SECONDS - T_PREEMPT)) s)"

log "PASSED in $((SECONDS - T_START)) s (pipeline $((T_PREEMPT - T_PIPELINE)) s, preemption $((SECONDS - T_PREEMPT)) s)"
