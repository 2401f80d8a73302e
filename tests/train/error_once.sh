#!/usr/bin/env bash
# Issue 17 item 5: under mpirun a bad-input error is printed once, by the
# rank that found it (with its rank and host), the other ranks exit
# quietly, and the job exits with the documented code
# (docs/operations.md "Exit codes"), without MPI_Abort's banner or Open
# MPI's "N more processes have sent help message". 4 ranks each:
#   1. a config error every rank finds (--set of an unknown key): printed
#      once, by rank 0; exit 2;
#   2. a data error one rank finds (BATON_FAULT=train.data_eio:1@2: rank
#      2's dataset open fails with EIO): printed once, by rank 2; no
#      secondary "start-up agreement" error from the others; exit 1;
#   3. a run directory rank 0 cannot create: printed once, by rank 0, as
#      "cannot create"/"cannot write", not "in use"; exit 1;
#   4. (1 rank) a start-up that failed after taking RUN/lock leaves the
#      lock file empty, and the next job does not report taking over a
#      dead job's lock.
# mpirun's own one-block notice that a process exited non-zero is not ours
# (mpirun -q suppresses it) and is not counted.
source "$(dirname "$0")/lib.sh"
pass=0
check() { # NAME OUT RC WANT_RC PATTERN RANK
  local name=$1 out=$2 rc=$3 want=$4 pat=$5 rank=$6 n
  [ "$rc" = "$want" ] || { cat "$out"; fail "$name: exit $rc, want $want"; }
  n=$(grep -c -- "$pat" "$out" || true)
  [ "$n" = 1 ] || { cat "$out"; fail "$name: '$pat' printed $n times, want 1"; }
  grep -- "$pat" "$out" | grep -q "^\[rank $rank@$(hostname)\] error: " ||
    { cat "$out"; fail "$name: the message is not rank $rank's with its host"; }
  n=$(grep -c "error: " "$out" || true)
  [ "$n" = 1 ] || { cat "$out"; fail "$name: $n error lines, want 1"; }
  ! grep -q "MPI_ABORT was invoked" "$out" || { cat "$out"; fail "$name: MPI_Abort banner"; }
  ! grep -q "more processes have sent help message" "$out" ||
    { cat "$out"; fail "$name: Open MPI's repeated-help noise"; }
  ! grep -q "start-up agreement" "$out" || { cat "$out"; fail "$name: secondary agreement error"; }
  pass=$((pass + 1))
}
set +e
$MPIRUN -np 4 "$BATON" train "$CFG" --run-dir "$WORK/r1" \
  --set train.bogus=1 >"$WORK/1.out" 2>&1
check "config error on every rank" "$WORK/1.out" $? 2 "unknown key 'train.bogus'" 0

BATON_FAULT=train.data_eio:1@2 $MPIRUN -np 4 "$BATON" train "$CFG" \
  --run-dir "$WORK/r2" --set train.steps=3 >"$WORK/2.out" 2>&1
check "data error on rank 2 only" "$WORK/2.out" $? 1 "Input/output error" 2

touch "$WORK/file"
$MPIRUN -np 4 "$BATON" train "$CFG" --run-dir "$WORK/file/run" \
  --set train.steps=3 >"$WORK/3.out" 2>&1
check "run directory rank 0 cannot create" "$WORK/3.out" $? 1 "$WORK/file/run" 0
grep -q "in use" "$WORK/3.out" && { cat "$WORK/3.out"; fail "an uncreatable run directory reported as in use"; }

# 4. (item 5) a start-up that failed after rank 0 took RUN/lock leaves no
#    holder behind: the lock file is empty, and the next job on the
#    directory neither is refused nor claims it took over a dead job's lock.
BATON_FAULT=train.data_eio:1 "$BATON" train "$CFG" --run-dir "$WORK/r4" \
  --set train.steps=2 >"$WORK/4a.out" 2>&1
rc=$?
[ "$rc" = 1 ] || { cat "$WORK/4a.out"; fail "failed start-up: exit $rc, want 1"; }
[ ! -s "$WORK/r4/lock" ] || { cat "$WORK/r4/lock"; fail "a failed start-up left its holder line in RUN/lock"; }
"$BATON" train "$CFG" --run-dir "$WORK/r4" --set train.steps=2 >"$WORK/4b.out" 2>&1
rc=$?
[ "$rc" = 0 ] || { cat "$WORK/4b.out"; fail "the job after a failed start-up: exit $rc"; }
! grep -q "took over the lock" "$WORK/4b.out" || { cat "$WORK/4b.out"; fail "a cleanly released lock reported as a dead job's"; }
pass=$((pass + 1))
set -e
echo "$pass passed, 0 failed"
