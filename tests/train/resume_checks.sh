#!/usr/bin/env bash
# Issue 5: `baton train` resumes from the newest checkpoint that verifies: a
# corrupted newest one is reported and the one before it used; a config
# that changes the model's shape stops with a clear error naming the key;
# a safe change (more steps) is allowed and logged; --resume never starts
# over.
source "$(dirname "$0")/lib.sh"
run="$WORK/run"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=20 --set checkpoint.every=5 \
  >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "first run failed"; }
[ -d "$run/ckpt-00000020" ] && [ -d "$run/ckpt-00000015" ] || { ls "$run"; fail "missing checkpoints"; }
# flip one byte in the middle of a payload of the newest checkpoint
f=$(ls "$run"/ckpt-00000020/params.*.zst | head -1)
"$PY" - "$f" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x40
open(p, "wb").write(b)
PY
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=25 --set checkpoint.every=5 \
  >"$WORK/b.out" 2>&1 || { cat "$WORK/b.out"; fail "resume past a corrupt checkpoint failed"; }
grep -q "warning: .*ckpt-00000020" "$WORK/b.out" || { cat "$WORK/b.out"; fail "the corrupt checkpoint was not reported"; }
grep -q "resumed from .*ckpt-00000015 at step 15" "$WORK/b.out" || { cat "$WORK/b.out"; fail "did not fall back to step 15"; }
grep -q "resume: train.steps changed from 20 to 25" "$WORK/b.out" || { cat "$WORK/b.out"; fail "safe change not logged"; }
grep -m1 "warning: .*ckpt-00000020" "$WORK/b.out"
set +e
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=30 --set model.n_embd=32 >"$WORK/c.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "a shape change resumed"
grep -q "model.n_embd is 16 in the checkpoint but 32 now" "$WORK/c.out" || { cat "$WORK/c.out"; fail "shape change message"; }
grep -m1 "model.n_embd" "$WORK/c.out"
"$BATON" train "$CFG" --run-dir "$run" --set train.steps=3 --resume never >"$WORK/d.out" 2>&1 \
  || { cat "$WORK/d.out"; fail "--resume never failed"; }
grep -q "resumed" "$WORK/d.out" && fail "--resume never resumed"
echo "6 passed, 0 failed"
