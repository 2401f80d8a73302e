#!/usr/bin/env bash
# Issue 3: N ranks, each with 1/N of the global batch, reach the same
# parameters after 20 steps as 1 rank with the whole batch (relative
# difference <= 1e-5), with or without ZeRO-1 and gradient accumulation.
# usage: equivalence.sh N ZERO ACCUM
source "$(dirname "$0")/lib.sh"
n=$1 zero=$2 accum=$3
common=(--resume never --set dist.zero="$zero")
run_np 1 "$CFG" --run-dir "$WORK/one" "${common[@]}" --set train.grad_accum=1 \
  --dump-params "$WORK/one.f32" >"$WORK/one.out" 2>&1 || { cat "$WORK/one.out"; fail "1-rank run failed"; }
run_np "$n" "$CFG" --run-dir "$WORK/many" "${common[@]}" --set train.grad_accum="$accum" \
  --dump-params "$WORK/many.f32" >"$WORK/many.out" 2>&1 || { cat "$WORK/many.out"; fail "$n-rank run failed"; }
grep -q "ZeRO-1 $([ "$zero" = true ] && echo on || echo off)" "$WORK/many.out" || { cat "$WORK/many.out"; fail "ZeRO setting not reported as expected"; }
e=$(relerr "$WORK/many.f32" "$WORK/one.f32")
echo "N=$n zero=$zero accum=$accum: relative difference $e (limit 1e-5)"
le "$e" 1e-5 || fail "relative difference $e > 1e-5"
# and training actually moved the parameters
"$BATON" train "$CFG" --run-dir "$WORK/zero" --resume never --set train.steps=1 --set optim.lr=0 \
  --dump-params "$WORK/init.f32" >/dev/null 2>&1
d=$(relerr "$WORK/one.f32" "$WORK/init.f32")
le 1e-3 "$d" || fail "parameters barely changed ($d): the comparison proves nothing"
echo "2 passed, 0 failed"
