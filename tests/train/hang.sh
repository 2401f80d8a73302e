#!/usr/bin/env bash
# Issue 3: with 4 ranks, one rank stopped with SIGSTOP mid-run makes the
# job exit non-zero within the watchdog timeout plus a few seconds, and the
# message names the step.
# Issue 17: the message also names the rank waited for and its host:
# rank 2 runs in a UTS namespace of its own named hangnode2 (unshare -u;
# where that is not allowed it keeps this host's name and the test says
# so), so the host in "waiting for rank 2 on host hangnode2 (last seen at
# step 5)" cannot come from the waiting rank's own name.
source "$(dirname "$0")/lib.sh"
timeout=5
args=(train "$CFG" --run-dir "$WORK/run" --resume never --set train.steps=1000
      --set dist.watchdog_seconds=$timeout)
host2=$(hostname)
apps=(-np 4 "$BATON" "${args[@]}")
if unshare -u true 2>/dev/null; then
  host2=hangnode2
  apps=(-np 2 "$BATON" "${args[@]}"
        : -np 1 unshare -u sh -c "hostname $host2 && exec \"\$0\" \"\$@\"" "$BATON" "${args[@]}"
        : -np 1 "$BATON" "${args[@]}")
else
  echo "NOTE: unshare -u not permitted: rank 2 keeps host name $host2"
fi
start=$(date +%s)
set +e
BATON_FAULT="train.stop:6@2" timeout 120 $MPIRUN "${apps[@]}" >"$WORK/out" 2>&1
rc=$?
set -e
took=$(( $(date +%s) - start ))
echo "exit code $rc after ${took}s"
[ "$rc" != 0 ] || fail "job exited 0"
[ "$rc" != 124 ] || { cat "$WORK/out"; fail "job hung until the test's own timeout"; }
[ "$took" -le $((timeout + 30)) ] || fail "took ${took}s (timeout ${timeout}s)"
grep -q "watchdog" "$WORK/out" || { cat "$WORK/out"; fail "no watchdog message"; }
grep -Eq "watchdog.*step 6" "$WORK/out" || { cat "$WORK/out"; fail "watchdog message does not name step 6"; }
want="waiting for rank 2 on host $host2 (last seen at step 5)"
grep -qF "$want" "$WORK/out" || { cat "$WORK/out"; fail "watchdog message does not say: $want"; }
grep -m1 watchdog "$WORK/out"
echo "5 passed, 0 failed"
