#!/usr/bin/env bash
# Issue 12: train.precision is recorded in the checkpoint (the config text
# in manifest.json) and is safe to change on resume, allowed and logged:
# the checkpoint holds the fp32 master weights and AdamW moments in either
# precision, and the bf16 working copy is derived from the master on load
# (docs/design.md, "Precision"). fp32 -> bf16 -> fp32 round trip; each
# resumed run says which precision it trains in.
source "$(dirname "$0")/lib.sh"
run="$WORK/run"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=5 --set train.precision=fp32 >"$WORK/a.out" 2>&1 ||
  { cat "$WORK/a.out"; fail "fp32 run failed"; }
grep -q 'train.precision = fp32' "$run/ckpt-00000005/manifest.json" ||
  fail "precision fp32 not recorded in ckpt-00000005/manifest.json"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=10 --set train.precision=bf16 \
  >"$WORK/b.out" 2>&1 || { cat "$WORK/b.out"; fail "bf16 resume failed"; }
grep -q "resumed from .*ckpt-00000005 at step 5" "$WORK/b.out" || { cat "$WORK/b.out"; fail "did not resume"; }
grep -q "resume: train.precision changed from fp32 to bf16" "$WORK/b.out" || { cat "$WORK/b.out"; fail "switch not logged"; }
grep -q "backend cpu (bf16)" "$WORK/b.out" || { cat "$WORK/b.out"; fail "not training in bf16"; }
grep -q 'train.precision = bf16' "$run/ckpt-00000010/manifest.json" ||
  fail "precision bf16 not recorded in ckpt-00000010/manifest.json"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=15 --set train.precision=fp32 >"$WORK/c.out" 2>&1 ||
  { cat "$WORK/c.out"; fail "fp32 resume of the bf16 checkpoint failed"; }
grep -q "resume: train.precision changed from bf16 to fp32" "$WORK/c.out" || { cat "$WORK/c.out"; fail "switch back not logged"; }
grep -q "backend cpu (fp32)" "$WORK/c.out" || { cat "$WORK/c.out"; fail "not training in fp32"; }
echo "3 passed, 0 failed"
