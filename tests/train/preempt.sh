#!/usr/bin/env bash
# Issue 5: SIGTERM delivered to one rank makes every rank checkpoint at the
# next step boundary and exit with code 4; the same command run again
# continues from there, and the result equals an uninterrupted run.
source "$(dirname "$0")/lib.sh"
args=(--set train.steps=16 --set checkpoint.async=true)
run_np 2 "$CFG" --run-dir "$WORK/a" "${args[@]}" --dump-params "$WORK/a.f32" \
  >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "reference run failed"; }
set +e
BATON_FAULT="train.sigterm:7@1" run_np 2 "$CFG" --run-dir "$WORK/b" "${args[@]}" \
  >"$WORK/b1.out" 2>&1
rc=$?
set -e
[ "$rc" = 4 ] || { cat "$WORK/b1.out"; fail "pre-empted run exited $rc, want 4"; }
[ -d "$WORK/b/ckpt-00000007" ] || { ls "$WORK/b"; fail "no checkpoint at step 7"; }
grep -q "pre-emption signal received: checkpoint at step 7" "$WORK/b1.out" || fail "no pre-emption message"
run_np 2 "$CFG" --run-dir "$WORK/b" "${args[@]}" --dump-params "$WORK/b.f32" \
  >"$WORK/b2.out" 2>&1 || { cat "$WORK/b2.out"; fail "rerun failed"; }
grep -q "resumed from .*ckpt-00000007 at step 7" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "rerun did not resume at step 7"; }
cmp "$WORK/a.f32" "$WORK/b.f32" || fail "parameters differ from the uninterrupted run"
echo "4 passed, 0 failed"
