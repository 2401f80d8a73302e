#!/usr/bin/env bash
# Issue 8 (progress): a NaN loss is reported at once with its step and the
# run stops with exit code 5 (nan_policy = stop) without touching the
# weights, or skips the update (nan_policy = skip) and finishes.
source "$(dirname "$0")/lib.sh"
set +e
BATON_FAULT="train.nan:4" "$BATON" train "$CFG" --run-dir "$WORK/a" >"$WORK/a.out" 2>&1
rc=$?
set -e
[ "$rc" = 5 ] || { cat "$WORK/a.out"; fail "exit $rc, want 5"; }
grep -q "step 4: loss is NaN; stopping" "$WORK/a.out" || { cat "$WORK/a.out"; fail "no NaN message naming step 4"; }
BATON_FAULT="train.nan:4" "$BATON" train "$CFG" --run-dir "$WORK/b" --set train.nan_policy=skip \
  >"$WORK/b.out" 2>&1 || { cat "$WORK/b.out"; fail "skip run failed"; }
grep -q "step 4: loss is NaN; skipping this update" "$WORK/b.out" || { cat "$WORK/b.out"; fail "no skip message"; }
echo "3 passed, 0 failed"
