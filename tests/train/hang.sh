#!/usr/bin/env bash
# Issue 3: with 4 ranks, one rank stopped with SIGSTOP mid-run makes the
# job exit non-zero within the watchdog timeout plus a few seconds, and the
# message names the step.
source "$(dirname "$0")/lib.sh"
timeout=5
start=$(date +%s)
set +e
BATON_FAULT="train.stop:6@2" timeout 120 $MPIRUN -np 4 "$BATON" train "$CFG" \
  --run-dir "$WORK/run" --resume never --set train.steps=1000 \
  --set dist.watchdog_seconds=$timeout >"$WORK/out" 2>&1
rc=$?
set -e
took=$(( $(date +%s) - start ))
echo "exit code $rc after ${took}s"
[ "$rc" != 0 ] || fail "job exited 0"
[ "$rc" != 124 ] || { cat "$WORK/out"; fail "job hung until the test's own timeout"; }
[ "$took" -le $((timeout + 30)) ] || fail "took ${took}s (timeout ${timeout}s)"
grep -q "watchdog" "$WORK/out" || { cat "$WORK/out"; fail "no watchdog message"; }
grep -Eq "watchdog.*step 6" "$WORK/out" || { cat "$WORK/out"; fail "watchdog message does not name step 6"; }
grep -m1 watchdog "$WORK/out"
echo "4 passed, 0 failed"
