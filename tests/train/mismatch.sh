#!/usr/bin/env bash
# Issue 3: one rank given a different config is detected at start-up, and
# the message names the rank and the first differing key.
source "$(dirname "$0")/lib.sh"
set +e
$MPIRUN -np 3 "$BATON" train "$CFG" --run-dir "$WORK/run" --resume never : \
  -np 1 "$BATON" train "$CFG" --run-dir "$WORK/run" --resume never --set optim.lr=0.5 \
  >"$WORK/out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "mismatched job exited 0"
grep -q "rank 3 on .* has a different config from rank 0: first differing key optim.lr" "$WORK/out" \
  || { cat "$WORK/out"; fail "message does not name rank 3 and optim.lr"; }
grep -m1 "differing key" "$WORK/out"
echo "2 passed, 0 failed"
