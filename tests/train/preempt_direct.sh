#!/usr/bin/env bash
# Issue 17 item 4: SIGTERM or SIGINT sent to mpirun itself (what a
# scheduler does). Open MPI 4.1's mpirun then sends SIGTERM to the ranks
# and exits 1 whatever they return (it refuses to forward SIGTERM:
# ess_base_forward_signals=SIGTERM is an error), so the contract is
# (docs/operations.md "Exit codes"):
#   1./2. bare mpirun, SIGTERM / SIGINT to mpirun: every rank checkpoints
#      and exits 4, mpirun exits non-zero (1 with Open MPI 4.1), and
#      RUN/exit_status says "4 pre-empted: checkpoint at step N written
#      (ckpt-N)", naming the newest checkpoint, which verifies;
#   3. under baton-launch, SIGTERM to its mpirun (not to baton-launch):
#      baton-launch exits 4;
#   4. a job that does not end by itself (rank 0 SIGKILLed) leaves no
#      RUN/exit_status: the previous job's "4" was removed at its start.
# Measured with Open MPI 4.1.4: the ranks receive SIGTERM about T s after
# mpirun did and SIGKILL about T s later, T = odls_base_sigkill_timeout
# (default 1). The test sets T = 5 (baton-launch --stop-grace 5), as
# docs/operations.md advises, so a loaded machine cannot cut the
# checkpoint short.
source "$(dirname "$0")/lib.sh"
L="$HERE/../../launch/baton-launch"
pass=0
# No progress lines: mpirun stops reading the ranks' output once it got
# SIGTERM, and a rank blocked writing to a full pipe could not checkpoint.
args=(--set train.steps=100000 --set train.log_every=100000)
grace=(--mca odls_base_sigkill_timeout 5)

# wait_step RUN: until metrics.jsonl has its first line (60 s at most)
wait_step() {
  local i
  for i in $(seq 600); do
    [ -s "$1/metrics.jsonl" ] && return 0
    sleep 0.1
  done
  return 1
}
# check_preempted RUN: exit_status names the newest checkpoint, which verifies
check_preempted() {
  local run=$1 ck st
  ck="$(ls -d "$run"/ckpt-* 2>/dev/null | tail -1)"
  [ -n "$ck" ] || fail "$run: no checkpoint"
  st="$(cat "$run/exit_status" 2>/dev/null)" || fail "$run: no exit_status"
  local n=${ck##*/ckpt-}
  [ "$st" = "4 pre-empted: checkpoint at step $((10#$n)) written (ckpt-$n)" ] ||
    fail "$run: exit_status says '$st', newest checkpoint ckpt-$n"
  "$BATON" inspect "$ck" >/dev/null || fail "$ck does not verify"
}

for sig in TERM INT; do
  run="$WORK/$sig"
  $MPIRUN "${grace[@]}" -np 2 "$BATON" train "$CFG" --run-dir "$run" "${args[@]}" \
    >"$WORK/$sig.out" 2>&1 &
  mp=$!
  wait_step "$run" || { kill -KILL "$mp"; cat "$WORK/$sig.out"; fail "SIG$sig: the run did not start"; }
  kill -s "$sig" "$mp"
  set +e; wait "$mp"; rc=$?; set -e
  [ "$rc" != 0 ] || { cat "$WORK/$sig.out"; fail "SIG$sig to mpirun: exit 0"; }
  echo "SIG$sig to mpirun: mpirun exited $rc; RUN/exit_status: $(cat "$run/exit_status" 2>/dev/null)"
  check_preempted "$run"
  pass=$((pass + 1))
done

# 3. baton-launch; the signal goes to mpirun, its child, not to it.
run="$WORK/launch"
"$L" --hosts localhost --gpus-per-node 2 --stop-grace 5 --mpirun "${MPIRUN%% *}" \
  --mpirun-args "${MPIRUN#* }" -- "$BATON" train "$CFG" --run-dir "$run" "${args[@]}" \
  >"$WORK/launch.out" 2>&1 &
lp=$!
wait_step "$run" || { kill -KILL "$lp"; cat "$WORK/launch.out"; fail "baton-launch: the run did not start"; }
mp="$(pgrep -P "$lp" | head -1)"
[ -n "$mp" ] || fail "baton-launch: no mpirun child"
kill -TERM "$mp"
set +e; wait "$lp"; rc=$?; set -e
[ "$rc" = 4 ] || { cat "$WORK/launch.out"; fail "SIGTERM to baton-launch's mpirun: exit $rc, want 4"; }
check_preempted "$run"
pass=$((pass + 1))

# 4. the TERM run again, rank 0 SIGKILLed at its 3rd step: no exit_status.
set +e
BATON_FAULT=train.step:3@0 $MPIRUN -np 2 "$BATON" train "$CFG" --run-dir "$WORK/TERM" \
  "${args[@]}" >"$WORK/kill.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "SIGKILLed job exited 0"
[ ! -e "$WORK/TERM/exit_status" ] || fail "a killed job left the previous job's exit_status: $(cat "$WORK/TERM/exit_status")"
pass=$((pass + 1))
echo "$pass passed, 0 failed"
