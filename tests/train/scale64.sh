#!/usr/bin/env bash
# Issue 3: 64 ranks train a tiny model with ZeRO-1 for a few steps and every
# rank logs the same losses (each rank writes its own loss log).
source "$(dirname "$0")/lib.sh"
run_np 64 "$CFG" --run-dir "$WORK/run" --resume never --set dist.zero=true \
  --set train.batch_size=96 --set train.steps=4 --set dist.watchdog_seconds=300 \
  --loss-log "$WORK/loss.{rank}" >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "64-rank run failed"; }
n=$(ls "$WORK"/loss.* | wc -l)
[ "$n" = 64 ] || fail "expected 64 per-rank loss logs, got $n"
for r in $(seq 1 63); do
  cmp -s "$WORK/loss.0" "$WORK/loss.$r" || fail "rank $r logged different losses"
done
grep -q "64 ranks" "$WORK/out" || fail "start-up line does not report 64 ranks"
cat "$WORK/loss.0"
echo "2 passed, 0 failed"
