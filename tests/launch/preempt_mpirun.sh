#!/usr/bin/env bash
# preempt_mpirun.sh BATON CONFIG MPIRUN: pre-emption exit code through
# mpirun, baton-launch and baton-supervise (issue 17 item 4).
#
# Open MPI's mpirun that receives SIGTERM itself exits 1 whatever its ranks
# returned; a scheduler (Slurm's scancel, a pre-emption) signals exactly
# that process. The job must still exit 4 (BT_EXIT_PREEMPTED) when every
# rank checkpointed:
#   1. SIGTERM to baton-launch -> 4 (forwarded to mpirun as SIGUSR1), a
#      checkpoint, and a rerun resumes bit-exact with an uninterrupted run;
#   2. the same under baton-supervise -> the supervisor exits 4, no restart;
#   3. mpirun that exits 1 while rank 0 recorded 4 in BATON_EXIT_FILE (what
#      a directly signalled mpirun does) -> baton-launch and the supervisor
#      exit 4 (a fake mpirun: the real one's timing is not deterministic).
set -u
BATON="$1" CFG="$2" MPIRUN="${3:-mpirun}"
here="$(cd "$(dirname "$0")" && pwd)"
L="$here/../../launch/baton-launch" S="$here/../../launch/baton-supervise"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
margs="--oversubscribe --allow-run-as-root --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
tmp="$(mktemp -d /tmp/bt_preempt.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# Long enough that the signal lands mid-run (a micro step takes ~1 ms).
steps=6000
args=(--set train.steps=$steps --set train.log_every=1)

# wait_step RUN: until the run's metrics show step >= 20 (30 s at most).
wait_step() {
  local i
  for i in $(seq 300); do
    if [ -s "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge 20 ]; then return 0; fi
    sleep 0.1
  done
  return 1
}
# exec: a backgrounded function is a subshell; $! must be baton-launch.
launch() { exec "$L" --hosts localhost --gpus-per-node 2 --mpirun "$MPIRUN" --mpirun-args "$margs" "$@"; }

# Reference: uninterrupted.
(launch -- "$BATON" train "$CFG" --run-dir "$tmp/ref" "${args[@]}" --dump-params "$tmp/ref.f32") \
  >"$tmp/ref.out" 2>&1 || { cat "$tmp/ref.out"; bad "reference run failed"; }

# 1. SIGTERM to baton-launch (what a scheduler signals: the batch script's
#    processes; mpirun itself runs in its own session): exit 4, a
#    checkpoint, and the rerun resumes and ends bit-exact.
(launch -- "$BATON" train "$CFG" --run-dir "$tmp/a" "${args[@]}") >"$tmp/a1.out" 2>&1 &
lp=$!
if wait_step "$tmp/a"; then
  kill -TERM "$lp"
  wait "$lp"; rc=$?
  [ "$rc" -eq 4 ] && ok || { cat "$tmp/a1.out"; bad "SIGTERM to baton-launch: exit $rc, want 4"; }
  ck="$(ls -d "$tmp"/a/ckpt-* 2>/dev/null | tail -1)"
  [ -n "$ck" ] && ok || bad "no checkpoint after the pre-emption"
  [ "${ck##*/}" != "ckpt-0000$steps" ] && ok || bad "the run finished before the signal; nothing tested"
  (launch -- "$BATON" train "$CFG" --run-dir "$tmp/a" "${args[@]}" --dump-params "$tmp/a.f32") \
    >"$tmp/a2.out" 2>&1 || { cat "$tmp/a2.out"; bad "rerun failed"; }
  grep -q "resumed from .*${ck##*/}" "$tmp/a2.out" && ok || { cat "$tmp/a2.out"; bad "rerun did not resume from ${ck##*/}"; }
  cmp -s "$tmp/ref.f32" "$tmp/a.f32" && ok || bad "resumed parameters differ from the uninterrupted run"
else
  kill "$lp" 2>/dev/null; wait "$lp"; bad "case 1: the run did not start"; cat "$tmp/a1.out"
fi

# 2. baton-supervise -- baton-launch ...; SIGTERM to baton-launch: the
#    supervisor exits 4 after one attempt, no restart.
"$S" --backoff 0 -- "$L" --hosts localhost --gpus-per-node 2 --mpirun "$MPIRUN" --mpirun-args "$margs" \
  -- "$BATON" train "$CFG" --run-dir "$tmp/c" "${args[@]}" >"$tmp/c.out" 2>&1 &
sp=$!
if wait_step "$tmp/c" && bl="$(pgrep -P "$sp" -f baton-launch | head -1)" && [ -n "$bl" ]; then
  kill -TERM "$bl"
  wait "$sp"; rc=$?
  [ "$rc" -eq 4 ] && ok || { cat "$tmp/c.out"; bad "SIGTERM to baton-launch under baton-supervise: exit $rc, want 4"; }
  n="$(grep -c "attempt [0-9]*: starting" "$tmp/c.out")"
  [ "$n" -eq 1 ] && ok || { cat "$tmp/c.out"; bad "supervisor started $n attempts, want 1 (no restart)"; }
  grep -q "pre-empted (exit 4)" "$tmp/c.out" && ok || bad "supervisor log does not say pre-empted"
  ls -d "$tmp"/c/ckpt-* >/dev/null 2>&1 && ok || bad "case 2: no checkpoint"
else
  kill "$sp" 2>/dev/null; wait "$sp"; bad "case 2: the run did not start (or no baton-launch found)"; cat "$tmp/c.out"
fi

# 3. mpirun signalled directly exits 1 whatever its ranks returned; rank 0's
#    code in BATON_EXIT_FILE decides. A fake mpirun whose "rank 0" writes 4
#    there and which itself exits 1: baton-launch exits 4, and so does the
#    supervisor (no restart); with "1" there, 1 stays 1.
fake="$tmp/fake-mpirun"
cat >"$fake" <<'EOF2'
#!/bin/sh
printf '%s\n' "$FAKE_RANK0_CODE" >"$BATON_EXIT_FILE"
exit 1
EOF2
chmod +x "$fake"
FAKE_RANK0_CODE=4 "$L" --hosts localhost --gpus-per-node 2 --mpirun "$fake" -- true >/dev/null 2>&1
rc=$?; [ "$rc" -eq 4 ] && ok || bad "baton-launch: mpirun 1 with rank 0's 4: exit $rc, want 4"
FAKE_RANK0_CODE=1 "$L" --hosts localhost --gpus-per-node 2 --mpirun "$fake" -- true >/dev/null 2>&1
rc=$?; [ "$rc" -eq 1 ] && ok || bad "baton-launch: mpirun 1 with rank 0's 1: exit $rc, want 1"
FAKE_RANK0_CODE=4 "$S" --backoff 0 --max-restarts 1 --log "$tmp/s3.log" -- "$fake" >"$tmp/s3.out" 2>&1
rc=$?; [ "$rc" -eq 4 ] && ok || { cat "$tmp/s3.out"; bad "supervisor: mpirun 1 with rank 0's 4: exit $rc, want 4"; }
[ "$(grep -c "attempt [0-9]*: starting" "$tmp/s3.out")" -eq 1 ] && ok || bad "supervisor restarted a pre-empted job"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
