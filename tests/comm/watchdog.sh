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
#   - named the rank it waited for and that rank's host (issue 17): stop,
#     fault and exit freeze rank 2, which runs in a UTS namespace of its
#     own (unshare -u) named wdnode2, so "waiting for rank 2 on host
#     wdnode2 (last seen at step S-1)" cannot come from the local host
#     name; where unshare is not allowed (an unprivileged container) rank 2
#     keeps this host's name and the test says so. thread: rank 1 is not
#     in a collective, and says that it is itself stuck,
#   - left no process of this run behind (the SIGSTOPped rank included).
set -u
mode=$1 np=$2 max=$3 exe=$4
shift 4
token="wd$$"

step=5
case $mode in
  # exported, not -x: -x would reach the first app context only (MPMD
  # below), and mpirun passes its environment to the ranks it starts here
  fault) export BATON_FAULT=comm_stop:6@2 ;;
  thread) step=9 ;;
  exit) step=10 ;;
esac
log=$(mktemp)
host2=$(hostname)
apps=(-np "$np" "$exe" "$mode" "$token")
if [ "$mode" != thread ]; then
  if unshare -u true 2>/dev/null; then
    host2=wdnode2
    # MPMD: ranks 0-1, rank 2 renamed, ranks 3..np-1.
    apps=(-np 2 "$exe" "$mode" "$token"
          : -np 1 unshare -u sh -c "hostname $host2 && exec \"\$0\" \"\$@\"" "$exe" "$mode" "$token"
          : -np $((np - 3)) "$exe" "$mode" "$token")
  else
    echo "NOTE: unshare -u not permitted: rank 2 keeps host name $host2"
  fi
fi
t0=$(date +%s.%N)
timeout -s KILL 60 "$@" "${apps[@]}" >"$log" 2>&1
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
if ! grep -q "watchdog: no progress for [0-9.]* s in .* at step $step;.* aborting the job" "$log"; then
  echo "FAIL: no watchdog message naming step $step"; ok=0
fi
if [ "$mode" = thread ] && ! grep -q "no bt_comm_set_context" "$log"; then
  echo "FAIL: the step watchdog thread did not fire"; ok=0
fi
if [ "$mode" = thread ]; then
  who="at step 9; rank 1 is not waiting in a collective: it is itself stuck"
else
  who="at step $step; waiting for rank 2 on host $host2 (last seen at step $((step - 1)))"
fi
if ! grep -q "watchdog: .*$who" "$log"; then
  echo "FAIL: the watchdog message does not say: $who"; ok=0
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
