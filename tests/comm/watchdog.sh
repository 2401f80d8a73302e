#!/usr/bin/env bash
# watchdog.sh MODE NP MAX_SECONDS EXE MPIRUN_PREFIX...
#
# Runs EXE (comm_watchdog, test_comm_watchdog.c) MODE on NP ranks and passes
# only if the job
#   - exits with BT_EXIT_WATCHDOG (3: Open MPI's mpirun returns the code
#     given to MPI_Abort), not killed by our own 60 s safety timeout,
#   - within MAX_SECONDS,
#   - printed "watchdog: no progress for ... at step S" (S: 5 for stop and
#     fault, 9 for thread, 10 for exit; thread also names the missing
#     set_context),
#   - left no process of this run behind (the SIGSTOPped rank included).
set -u
mode=$1 np=$2 max=$3 exe=$4
shift 4
token="wd$$"
extra=()
step=5
case $mode in
  fault) extra=(-x BATON_FAULT=comm_stop:6@2) ;;
  thread) step=9 ;;
  exit) step=10 ;;
esac
log=$(mktemp)
t0=$(date +%s.%N)
timeout -s KILL 60 "$@" "${extra[@]}" -np "$np" "$exe" "$mode" "$token" \
  >"$log" 2>&1
rc=$?
t1=$(date +%s.%N)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
cat "$log"
echo "--- watchdog.sh $mode: exit status $rc after $elapsed s"
ok=1
if [ "$rc" -eq 0 ]; then echo "FAIL: job exited 0"; ok=0; fi
if [ "$rc" -eq 137 ]; then echo "FAIL: job hung (killed by the 60 s timeout)"; ok=0
elif [ "$rc" -ne 3 ]; then
  # Open MPI 4.1.4's mpirun sometimes segfaults in its own teardown
  # (PMIx_server_finalize from orte_finalize) after the job was aborted,
  # about 1 run in 15 here: the job still ended, with status 139. Accept
  # that one case, say so; any other status is a failure.
  if grep -q "orte_finalize" "$log"; then
    echo "NOTE: exit status $rc from mpirun's own teardown crash, not 3"
  else
    echo "FAIL: exit status $rc, want 3 (BT_EXIT_WATCHDOG)"; ok=0
  fi
fi
if awk -v e="$elapsed" -v m="$max" 'BEGIN { exit !(e > m) }'; then
  echo "FAIL: took $elapsed s > $max s"; ok=0
fi
if ! grep -q "watchdog: no progress for [0-9.]* s in .* at step $step; aborting the job" "$log"; then
  echo "FAIL: no watchdog message naming step $step"; ok=0
fi
if [ "$mode" = thread ] && ! grep -q "no bt_comm_set_context" "$log"; then
  echo "FAIL: the step watchdog thread did not fire"; ok=0
fi
sleep 0.5
left=$(pgrep -f -- "$exe $mode $token" || true)
if [ -n "$left" ]; then
  echo "FAIL: processes left behind: $left"
  ps -o pid,stat,cmd -p $left || true
  kill -KILL $left 2>/dev/null || true
  ok=0
fi
rm -f "$log"
[ "$ok" -eq 1 ] && echo "PASS" && exit 0
exit 1
