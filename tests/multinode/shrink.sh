#!/usr/bin/env bash
# shrink.sh: shrink on node loss (issue 16 item 4; docs/operations.md,
# "Shrinking onto the surviving nodes"). 3 nodes x 2 ranks train under
# `baton-supervise --shrink` with a global batch of 12 (6 and 4 ranks
# divide it) on a 120-sample token file (an epoch is 10 steps). After the
# first checkpoint node 2's switch port goes down for good. Must hold:
#   - the watchdog fires, the supervisor ends the job after its grace, finds
#     node2 unreachable, logs "shrink: dropping node2 ..." and restarts on
#     node0 and node1 only: 4 ranks, from the checkpoint of 6;
#   - the run completes in exactly 2 attempts;
#   - the data stream (BATON_DUMP_SAMPLES, trainer/train.c) is the
#     uninterrupted 6-rank run's, step by step, and every complete epoch
#     saw every sample exactly once (check_samples.py);
#   - the second attempt never launched on node2 (the agent's log).
# The times from the partition to detection, to the end of the job and to
# the shrunk restart are printed ("timing: ...", docs/operations.md).
# Environment: BATON, MPIRUN (local mpirun with its flags), PY.
set -euo pipefail
: "${BATON:?}" "${MPIRUN:?}" "${PY:?}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
source "$here/lib.sh"
mn_require
nodes=3 victim=2 g=2 wd=5 grace=10 batch=12 steps=600 nsample=120
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

# 120 windows of context + 1 = 17 tokens.
"$PY" "$root/tests/data/make_fixture.py" "$w/tok.h5" --kind tokens \
  --tokens $((nsample * 17)) --val-tokens 340 >/dev/null || fail "cannot write the token file"
train=(train "$root/tests/train/micro.ini" --resume auto --set data.path="$w/tok.h5"
       --set train.batch_size=$batch --set train.steps=$steps
       --set checkpoint.every=20 --set dist.watchdog_seconds=$wd)
mkdir -p "$w/ref.samples" "$w/run.samples"
BATON_DUMP_SAMPLES="$w/ref.samples" $MPIRUN -np $((nodes * g)) "$BATON" "${train[@]}" \
  --run-dir "$w/ref" >"$w/ref.out" 2>&1 || { cat "$w/ref.out"; fail "the uninterrupted single-host run failed"; }

mn_setup "$nodes" "$w"
mn_hostfile "$w/hosts" "$g"
export BATON_DUMP_SAMPLES="$w/run.samples"
mn_head "$root/launch/baton-supervise" --shrink --backoff 2 --max-restarts 3 \
  --abort-grace "$grace" --run-dir "$w/run" -- \
  "$root/launch/baton-launch" --hostfile "$w/hosts" --net tcp --iface "$MN_IF" --bind-to none \
  --mpirun "${MPIRUN%% *}" --mpirun-args "$(mn_mpi_args)" -- \
  "$BATON" "${train[@]}" --run-dir "$w/run" >"$w/sup.out" 2>&1 &
sup=$!
unset BATON_DUMP_SAMPLES

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
mn_partition "$victim"
echo "unplugged node$victim for good at checkpoint $(cat "$w/run/latest")"
wait_for 'watchdog: no progress' $((wd + 10))
t_detect=$(now)
wait_for 'attempt 1: FAILED' $((wd + 30 + 5))
t_abort=$(now)
: >"$w/agent.log" # from here on: where the second attempt launches
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
grep -Eq "shrink: dropping node$victim \(no answer on TCP port 22 .*\); restarting on 2 of 3 hosts, 4 of 6 slots: node0,node1\$" \
  "$w/run/supervisor.log" || fail "no shrink message naming node$victim in the supervisor's log"
ok "the supervisor dropped node$victim, naming it"
a2="$(sed -n '/attempt 2: starting/,$p' "$w/sup.out")"
grep -q "4 ranks (mpi)" <<<"$a2" || fail "the second attempt did not run on 4 ranks"
grep -q "saved by 6 ranks" <<<"$a2" || fail "the second attempt did not resume the 6-rank checkpoint"
! grep -q "^node$victim " "$w/agent.log" || fail "the second attempt launched on node$victim"
grep -q "^node1 " "$w/agent.log" || fail "the second attempt never launched on node1"
ok "the second attempt ran 4 ranks on node0 and node1 from the 6-rank checkpoint"
grep -q "training complete: $steps steps" <<<"$a2" || fail "the second attempt did not complete $steps steps"
ok "the run completed all $steps steps"
"$PY" "$here/check_samples.py" "$w/run.samples" "$w/ref.samples" $batch $steps $nsample ||
  fail "the data stream is not the uninterrupted run's"
ls "$w/run.samples" | grep -q '\.w4\.' || fail "no samples from the 4-rank attempt: the check proved nothing"
ok "every step took the uninterrupted run's samples; every sample once per epoch"
echo "timing: link down -> watchdog $(since "$t_fault" "$t_detect") s," \
     "-> job ended $(since "$t_fault" "$t_abort") s, -> restarted on 2 nodes $(since "$t_fault" "$t_restart") s," \
     "-> completed $(since "$t_fault" "$t_done") s"
echo "$pass passed, 0 failed"
