#!/usr/bin/env bash
# faults.sh kill|partition|partition-retries: a node-level fault in the middle of a supervised
# multi-node run (lib.sh nodes, launch/baton-launch under
# launch/baton-supervise, run from the head node), after its first
# checkpoint:
#   kill       2 nodes x 2 ranks; every process of node 1 is SIGKILLed (the
#              node dies). mpirun ends, the supervisor restarts.
#   partition  3 nodes x 2 ranks; node 2's switch port goes down. The
#              watchdog (dist.watchdog_seconds = 5) must fire, naming the
#              step; the job must be gone within watchdog + 30 s (mpirun
#              alone would wait ~16 minutes for node 2's daemon: the
#              supervisor's --abort-grace ends it); the link comes back
#              while the supervisor backs off, and the restart completes.
#              The supervisor must name node 2 as unreachable. Node 2's
#              orphans from the first attempt must be gone at the end,
#              without help from the test.
#   partition-retries  the same with net.ipv4.tcp_retries2 = 5 on every node
#              (docs/operations.md's host setting) and --abort-grace 60:
#              mpirun must then end by itself within watchdog + 30 s.
# Both: the run finishes with parameters bitwise identical to an
# uninterrupted run, in exactly 2 attempts. The times from the fault to
# detection, to the end of the job and to the restart are printed
# ("timing: ..."), the figures docs/operations.md quotes.
# Environment: BATON, MPIRUN (local mpirun with its flags), PY.
set -euo pipefail
: "${BATON:?}" "${MPIRUN:?}" "${PY:?}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
source "$here/lib.sh"
mn_require
mode="$1"
case "$mode" in
  kill) nodes=2 victim=1 ;;
  partition) nodes=3 victim=2 grace=10 ;;
  partition-retries) nodes=3 victim=2 grace=60 ;;
  *) echo "usage: faults.sh kill|partition|partition-retries" >&2; exit 2 ;;
esac
g=2 np=$((nodes * 2)) wd=5 grace="${grace:-10}"
w="$(mktemp -d /tmp/bt_mn.XXXXXX)"
if [ "${BATON_MN_KEEP:-0}" = 1 ]; then echo "work dir: $w"; else trap 'rm -rf "$w"' EXIT; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() {
  echo "FAIL: $*" >&2
  [ ! -s "$w/sup.out" ] || { echo "--- supervisor output (last 60 lines)"; tail -n 60 "$w/sup.out"; } >&2
  exit 1
}
now() { date +%s.%N; }
since() { "$PY" -c "print('%.1f' % ($2 - $1))"; }
# Enough steps that the run is still going when the fault comes (a step
# takes milliseconds here); the first checkpoint marks "mid-run".
train=(train "$root/tests/train/micro.ini" --resume auto --set train.steps=600
       --set checkpoint.every=20 --set dist.watchdog_seconds=$wd)

$MPIRUN -np "$np" "$BATON" "${train[@]}" --run-dir "$w/ref" --dump-params "$w/ref.f32" \
  >"$w/ref.out" 2>&1 || { cat "$w/ref.out"; fail "the uninterrupted single-host run failed"; }

mn_setup "$nodes" "$w"
mn_hostfile "$w/hosts" "$g"
[ "$mode" != partition-retries ] || mn_sysctl net.ipv4.tcp_retries2 5
mn_head "$root/launch/baton-supervise" --backoff 2 --max-restarts 3 --abort-grace "$grace" \
  --run-dir "$w/run" -- \
  "$root/launch/baton-launch" --hostfile "$w/hosts" --net tcp --iface "$MN_IF" --bind-to none \
  --mpirun "${MPIRUN%% *}" --mpirun-args "$(mn_mpi_args)" -- \
  "$BATON" "${train[@]}" --run-dir "$w/run" --dump-params "$w/run.f32" >"$w/sup.out" 2>&1 &
sup=$!

# wait_for PATTERN SECONDS: until the supervisor's output matches.
wait_for() {
  local end=$((SECONDS + $2))
  until grep -Eq "$1" "$w/sup.out"; do
    [ "$SECONDS" -lt "$end" ] || fail "no '$1' within $2 s"
    kill -0 "$sup" 2>/dev/null || grep -Eq "$1" "$w/sup.out" || fail "supervisor ended before '$1'"
    sleep 0.05
  done
}
end=$((SECONDS + 60))
until [ -e "$w/run/latest" ]; do
  [ "$SECONDS" -lt "$end" ] || fail "no checkpoint within 60 s"
  kill -0 "$sup" 2>/dev/null || fail "the run ended before its first checkpoint"
  sleep 0.02
done
t_fault=$(now)
if [ "$mode" = kill ]; then
  mn_kill_node "$victim"
  echo "killed every process of node$victim at checkpoint $(cat "$w/run/latest")"
else
  mn_partition "$victim"
  echo "unplugged node$victim at checkpoint $(cat "$w/run/latest")"
  orphans="$(mn_pids "$victim" | paste -sd' ')"
  # Note when the first attempt's processes on the victim end: ranks
  # first (watchdog), then orted (its link to mpirun, once back).
  (
    r="" a=""
    while [ -z "$a" ]; do
      left=0 lr=0
      for p in $orphans; do
        [ -e "/proc/$p" ] || continue
        left=1
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" != baton ] || lr=1
      done
      [ -n "$r" ] || [ "$lr" -eq 1 ] || { r=$(now); echo "ranks $r" >>"$w/orphans"; }
      [ "$left" -eq 1 ] || { a=$(now); echo "all $a" >>"$w/orphans"; }
      sleep 0.1
    done
  ) &
  wait_for 'watchdog: no progress' $((wd + 10))
  t_detect=$(now)
fi
wait_for 'attempt 1: FAILED' $((wd + 30 + 5))
t_abort=$(now)
[ "$mode" = kill ] || mn_heal "$victim"
wait_for 'attempt 2: starting' 30
t_restart=$(now)
wait_for 'attempt 2: (completed|FAILED)' 120
t_done=$(now)
set +e
wait "$sup"
rc=$?
set -e

[ "$rc" -eq 0 ] || fail "the supervisor exited $rc"
ok "the supervised run completed"
n=$(grep -c 'attempt [0-9]*: starting' "$w/sup.out")
[ "$n" -eq 2 ] || fail "$n attempts, expected 2"
ok "exactly one restart"
cmp -s "$w/ref.f32" "$w/run.f32" || fail "final parameters differ from the uninterrupted run"
ok "final parameters bitwise identical to the uninterrupted run"
if [ "$mode" = kill ]; then
  echo "timing: node killed -> job ended $(since "$t_fault" "$t_abort") s," \
       "-> restarted $(since "$t_fault" "$t_restart") s, -> completed $(since "$t_fault" "$t_done") s"
else
  grep -Em1 'watchdog: no progress .* at step [0-9]+' "$w/sup.out" ||
    fail "the watchdog message does not name the step"
  ok "the watchdog message names the step"
  took=$(since "$t_fault" "$t_abort")
  echo "timing: link down -> watchdog $(since "$t_fault" "$t_detect") s, -> job ended $took s" \
       "(bound: watchdog $wd + 30), -> restarted $(since "$t_fault" "$t_restart") s," \
       "-> completed $(since "$t_fault" "$t_done") s"
  "$PY" -c "import sys; sys.exit(0 if $took <= $wd + 30 else 1)" ||
    fail "the job took $took s to end after the partition (bound $wd + 30 s)"
  ok "the job ended within watchdog + 30 s"
  if [ "$mode" = partition-retries ]; then
    grep -q "after the supervisor ended it" "$w/run/supervisor.log" &&
      fail "the supervisor had to end the job: tcp_retries2 = 5 did not"
    ok "mpirun ended by itself (tcp_retries2 = 5)"
    echo "$pass passed, 0 failed"
    exit 0
  fi
  grep -q "unreachable (no answer on TCP port 22 in 3 s): node$victim\$" "$w/run/supervisor.log" ||
    fail "the supervisor did not name node$victim as unreachable"
  ok "the supervisor named node$victim as unreachable"
  # The first attempt's processes on the victim (its ranks, its orted) must
  # go away by themselves: the watchdog's abort, then the daemon's lost
  # link to mpirun once the link is back.
  end=$((SECONDS + 30))
  until grep -q '^all ' "$w/orphans" 2>/dev/null; do
    if [ "$SECONDS" -ge "$end" ]; then
      ps -o pid,etimes,args -p "${orphans// /,}" >&2 || true
      fail "processes of the first attempt are still alive on node$victim"
    fi
    sleep 0.2
  done
  echo "timing: link down -> node$victim's ranks gone $(since "$t_fault" "$(awk '$1 == "ranks" { print $2 }' "$w/orphans")") s," \
       "-> all its processes gone $(since "$t_fault" "$(awk '$1 == "all" { print $2 }' "$w/orphans")") s (link back at $(since "$t_fault" "$t_abort") s)"
  ok "no orphans left on node$victim"
fi
echo "$pass passed, 0 failed"
