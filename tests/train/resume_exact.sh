#!/usr/bin/env bash
# Issue 5: on the CPU backend with the same world size, a run to 2K steps
# and a run killed with SIGKILL after K steps then resumed to 2K give
# bitwise-identical parameters and identical logged losses.
# PRECISION = bf16 (default fp32) runs all of it in bf16: the checkpoint
# holds the fp32 master weights and the bf16 working copy is derived from
# them on load, so a bf16 resume is bit-exact too.
# usage: resume_exact.sh NRANKS [PRECISION]
source "$(dirname "$0")/lib.sh"
n=$1 K=10 prec=${2:-$PREC}
common=(--set train.steps=$((2 * K)) --set checkpoint.every=5 --set checkpoint.async=true
        --set dist.zero=$([ "$n" -gt 1 ] && echo true || echo false)
        --set train.precision="$prec")
run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --loss-log "$WORK/a.loss" \
  --dump-params "$WORK/a.f32" >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "reference run failed"; }
# Killed at the start of its (K+1)th step: SIGKILL on the last rank.
set +e
BATON_FAULT="train.step:$((K + 1))@$((n - 1))" run_np "$n" "$CFG" --run-dir "$WORK/b" \
  "${common[@]}" --loss-log "$WORK/b.loss" >"$WORK/b1.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "the killed run exited 0"
ls -d "$WORK"/b/ckpt-* >/dev/null 2>&1 || { cat "$WORK/b1.out"; fail "no checkpoint before the kill"; }
run_np "$n" "$CFG" --run-dir "$WORK/b" "${common[@]}" --loss-log "$WORK/b.loss" \
  --dump-params "$WORK/b.f32" >"$WORK/b2.out" 2>&1 || { cat "$WORK/b2.out"; fail "resumed run failed"; }
grep -q "resumed from .*ckpt-" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "second run did not resume"; }
grep -m1 "resumed from" "$WORK/b2.out"
grep -q "backend cpu ($prec)" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "the resumed run is not in $prec"; }
cmp "$WORK/a.f32" "$WORK/b.f32" || fail "final parameters differ"
diff <(last_losses "$WORK/a.loss") <(last_losses "$WORK/b.loss") || fail "logged losses differ"
echo "3 passed, 0 failed"
