#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 3: one job per run directory. Rank 0
# holds RUN_DIR/lock (a POSIX record lock) for the job's life:
#   1. a second job on the same directory stops at start-up (exit 1) with
#      a message naming the lock file and the holder's host and pid, and
#      writes nothing into the directory;
#   2. once the holder is SIGKILLed, the kernel has dropped its lock: the
#      next job takes it over and says whose lock it was;
#   3. under mpirun (2 ranks) the refusal is the same.
source "$(dirname "$0")/lib.sh"
run="$WORK/run"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=1000000 \
  --set checkpoint.every=1000000 >"$WORK/a.out" 2>&1 &
pidA=$!
# job A must not outlive the test, whatever ends it
trap 'kill -9 "$pidA" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do
  grep -q "pid $pidA since" "$run/lock" 2>/dev/null && break
  kill -0 "$pidA" 2>/dev/null || { cat "$WORK/a.out"; fail "job A died"; }
  sleep 0.1
done
grep -q "pid $pidA since" "$run/lock" || fail "job A never wrote its lock line"
before=$(cd "$run" && find . | sort | md5sum)

set +e
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=5 >"$WORK/b.out" 2>&1
rcB=$?
run_np 2 "$CFG" --run-dir "$run" --set train.steps=5 >"$WORK/c.out" 2>&1
rcC=$?
set -e
want="run directory $run is in use: '$run/lock' is held by another job (host $(hostname) pid $pidA since"
[ "$rcB" = 1 ] || { cat "$WORK/b.out"; fail "second job: exit $rcB, want 1"; }
grep -qF "$want" "$WORK/b.out" || { cat "$WORK/b.out"; fail "second job's message"; }
[ "$rcC" != 0 ] || { cat "$WORK/c.out"; fail "second job on 2 ranks started"; }
grep -qF "$want" "$WORK/c.out" || { cat "$WORK/c.out"; fail "2-rank job's message"; }
[ "$(grep -cF "is in use" "$WORK/c.out")" = 1 ] || { cat "$WORK/c.out"; fail "message not printed once"; }
kill -0 "$pidA" || fail "job A stopped while the others were refused"
# no file was added or removed by the refused jobs
after=$(cd "$run" && find . | sort | md5sum)
[ "$before" = "$after" ] || fail "a refused job changed the run directory"

kill -9 "$pidA"; wait "$pidA" 2>/dev/null || true
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=3 --resume never \
  >"$WORK/d.out" 2>&1 || { cat "$WORK/d.out"; fail "job after the kill"; }
grep -qF "took over the lock of a job that is no longer running (host $(hostname) pid $pidA since" "$WORK/d.out" ||
  { cat "$WORK/d.out"; fail "take-over not reported"; }
echo "ok: second job refused (1 and 2 ranks), dead holder's lock taken over"
