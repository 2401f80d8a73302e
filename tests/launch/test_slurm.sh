#!/usr/bin/env bash
# test_slurm.sh: runs launch/slurm/baton-8x8.sbatch as a plain bash script
# with fake `srun`, `scontrol` and `baton` on PATH, checking: srun gets
# --mpi=pmix and the baton command; exit 0 ends the job; exit 4 requeues;
# SIGUSR1 to the batch shell (Slurm's --signal=B:USR1@300) reaches baton and
# leads to a requeue; a config error ends the job without requeue.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
S="$repo/launch/slurm/baton-8x8.sbatch"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp="$(mktemp -d /tmp/bt_slurm.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
cat >"$tmp/bin/srun" <<'X'
#!/bin/bash
# fake srun: records its arguments, drops its options, runs the command
# (exec, so signals sent to "srun" reach the task as the real srun forwards them)
echo "$*" >>"$FAKE_DIR/srun.args"
while [ $# -gt 0 ] && [[ "$1" == --* ]]; do shift; done
exec "$@"
X
cat >"$tmp/bin/scontrol" <<'X'
#!/bin/bash
echo "$*" >>"$FAKE_DIR/scontrol.args"
X
cat >"$tmp/bin/baton" <<'X'
#!/bin/bash
# fake baton: "train CONFIG --run-dir DIR ..." behaving by $FAKE_MODE
echo "$*" >>"$FAKE_DIR/baton.args"
env | grep -E '^(NCCL_|OMP_NUM_THREADS=)' | sort >"$FAKE_DIR/baton.env"
case "$FAKE_MODE" in
  done) exit 0 ;;
  preempted) exit 4 ;;
  config) echo "unknown key" >&2; exit 2 ;;
  wait)
    trap 'echo "baton: got stop signal" >&2; exit 4' USR1 TERM
    touch "$FAKE_DIR/ready"
    for _ in $(seq 300); do sleep 0.1; done
    exit 1 ;;
esac
X
chmod +x "$tmp/bin/"*

run() { # run MODE [signal]: runs the script; sets rc and out
  local mode="$1" sig="${2:-}"
  rm -f "$tmp"/*.args "$tmp/ready"
  (
    cd "$tmp" || exit 99
    export PATH="$tmp/bin:$PATH" FAKE_DIR="$tmp" FAKE_MODE="$mode"
    export SLURM_JOB_ID=4242 SLURM_JOB_NAME=baton SLURM_JOB_NUM_NODES=8 SLURM_SUBMIT_DIR="$repo"
    export SLURM_CPUS_PER_TASK=6
    export BATON_CONFIG=cfg.ini BATON="$tmp/bin/baton" BATON_RUN_DIR="$tmp/run"
    bash "$S" --set train.steps=100 >"$tmp/out" 2>&1 &
    local pid=$!
    if [ -n "$sig" ]; then
      for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
      kill -s "$sig" "$pid"
    fi
    wait "$pid"
  )
  rc=$?
  out="$(cat "$tmp/out")"
}

# The script keeps site settings of these; start from none (ctest's
# OMP_NUM_THREADS=1 included).
unset OMP_NUM_THREADS NCCL_SOCKET_IFNAME NCCL_IB_HCA NCCL_IB_TIMEOUT NCCL_IB_RETRY_CNT NCCL_DEBUG
run done
[ "$rc" -eq 0 ] && ok || bad "done: exit $rc: $out"
grep -q -- "--mpi=pmix" "$tmp/srun.args" && ok || bad "srun --mpi=pmix: $(cat "$tmp/srun.args")"
grep -q -- "train cfg.ini --run-dir $tmp/run --set train.steps=100" "$tmp/baton.args" && ok || bad "baton args: $(cat "$tmp/baton.args")"
[ ! -e "$tmp/scontrol.args" ] && ok || bad "no requeue after completion"
# Placement (issue 16 item 5): CPUs and one GPU per task, socket-filling
# distribution, cores pinned; srun gets --cpus-per-task from the allocation.
for w in --cpus-per-task=6 --cpu-bind=cores --distribution=block:block --gpus-per-task=1; do
  grep -q -- "$w" "$tmp/srun.args" && ok || bad "srun $w: $(cat "$tmp/srun.args")"
done
for v in NCCL_SOCKET_IFNAME=^docker0,lo NCCL_IB_TIMEOUT=20 NCCL_IB_RETRY_CNT=7 NCCL_DEBUG=WARN OMP_NUM_THREADS=6; do
  grep -qx -- "$v" "$tmp/baton.env" && ok || bad "task env $v: $(cat "$tmp/baton.env")"
done
(export NCCL_SOCKET_IFNAME=ib0 NCCL_IB_HCA=mlx5_0; run done; grep -qx NCCL_SOCKET_IFNAME=ib0 "$tmp/baton.env" &&
  grep -qx NCCL_IB_HCA=mlx5_0 "$tmp/baton.env") && ok || bad "site NCCL settings kept: $(cat "$tmp/baton.env")"
grep -q '^#SBATCH --gpus-per-task=1' "$S" && ok || bad "gpus-per-task directive"
grep -q '^#SBATCH --cpus-per-task=' "$S" && ok || bad "cpus-per-task directive"
grep -q '^#SBATCH --exclusive' "$S" && ok || bad "exclusive directive"

run preempted
[ "$rc" -eq 0 ] && ok || bad "preempted: exit $rc: $out"
grep -qx "requeue 4242" "$tmp/scontrol.args" 2>/dev/null && ok || bad "requeue after exit 4: $out"

run wait USR1
[ "$rc" -eq 0 ] && ok || bad "signal: exit $rc: $out"
[[ "$out" == *"got SIGUSR1"* ]] && ok || bad "batch shell saw USR1: $out"
[[ "$out" == *"baton: got stop signal"* ]] && ok || bad "signal reached baton: $out"
grep -qx "requeue 4242" "$tmp/scontrol.args" 2>/dev/null && ok || bad "requeue after signal: $out"
grep -q "stopped on request" "$tmp/run/supervisor.log" && ok || bad "supervisor log: $(cat "$tmp/run/supervisor.log")"

run config
[ "$rc" -eq 2 ] && ok || bad "config: exit $rc: $out"
[ ! -e "$tmp/scontrol.args" ] && ok || bad "no requeue after a config error"

# The requeue limit.
(export SLURM_RESTART_COUNT=50; run preempted; [ "$rc" -eq 4 ] && [ ! -e "$tmp/scontrol.args" ]) && ok || bad "requeue limit"

bash -n "$S" && ok || bad "syntax"
grep -q '^#SBATCH --signal=B:USR1@300' "$S" && ok || bad "signal directive"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
