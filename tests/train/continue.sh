#!/usr/bin/env bash
# Issue 14, item 2: continuing a checkpoint deliberately (docs/guide.md,
# "Continue a run: a longer schedule or new data").
#  a. train.steps raised on resume stretches the decay (the default): the
#     log says so with both rates, and steps 11..20 run at exactly the
#     rates of a run configured for 20 steps from the start;
#  b. optim.decay_steps = 10 keeps the old schedule: the log says so and
#     steps 11..20 run at the final rate lr * min_lr_ratio;
#  c. a new data.path on resume is refused, and the message names
#     train.init_from;
#  d. train.init_from = the checkpoint in a new run directory trains on
#     the new data from exactly the checkpoint's weights, from step 1.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
lrs() { # lrs RUN FROM TO: train/lr of steps FROM..TO in RUN/metrics.jsonl
  "$PY" - "$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, sys
lo, hi = int(sys.argv[2]), int(sys.argv[3])
d = {}
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "train/lr" in o: d[o["step"]] = o["train/lr"]
print(" ".join(repr(d[s]) for s in range(lo, hi + 1)))
PY
}
opts=(--set checkpoint.every=10 --set optim.warmup_steps=2)
"$BATON" train "$CFG" --run-dir a "${opts[@]}" --set train.steps=10 >a0.out 2>&1 || { cat a0.out; fail "first run"; }
cp -r a b
"$BATON" train "$CFG" --run-dir full "${opts[@]}" --set train.steps=20 >full.out 2>&1 || { cat full.out; fail "20-step run"; }

# a. stretch
"$BATON" train "$CFG" --run-dir a "${opts[@]}" --set train.steps=20 --dump-params a.bin >a1.out 2>&1 || { cat a1.out; fail "resume to 20 steps"; }
grep -q "resume: train.steps 10 -> 20 stretches the cosine decay to end at step 20 instead of 10: the learning rate at step 11 is 0.0055 (0.001 on the old schedule); to keep the old schedule instead, set optim.decay_steps = 10" a1.out \
  || { cat a1.out; fail "a: the stretch is not logged"; }
[ "$(lrs a 11 20)" = "$(lrs full 11 20)" ] || fail "a: rates after resume $(lrs a 11 20) != a 20-step run's $(lrs full 11 20)"
echo "a: stretched; steps 11-20 at the 20-step run's rates"

# b. keep
"$BATON" train "$CFG" --run-dir b "${opts[@]}" --set train.steps=20 --set optim.decay_steps=10 >b1.out 2>&1 || { cat b1.out; fail "resume with decay_steps"; }
grep -q "resume: train.steps 10 -> 20; the cosine schedule keeps its course (decay ends at step 10): learning rate 0.001 at step 11, the final rate after the decay's end" b1.out \
  || { cat b1.out; fail "b: keeping the schedule is not logged"; }
want=$("$PY" -c "print(' '.join([repr(1e-2 * 0.1)] * 10))")
[ "$(lrs b 11 20)" = "$want" ] || fail "b: rates after resume $(lrs b 11 20), want the final rate 0.001"
echo "b: kept; steps 11-20 at the final rate"

# c. new data on resume: refused, pointing at train.init_from
"$PY" "$HERE/../data/make_fixture.py" new.h5 --kind tokens --tokens 20000 --val-tokens 2000 >/dev/null
set +e
"$BATON" train "$CFG" --run-dir a "${opts[@]}" --set train.steps=30 --set data.path=new.h5 >c.out 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || { cat c.out; fail "c: resumed on new data"; }
grep -q "data.path is synthetic:arith in the checkpoint but new.h5 now; .*start a new run directory with train.init_from = a/ckpt-00000020 (fresh optimizer state, step 0)" c.out \
  || { cat c.out; fail "c: refusal message"; }
echo "c: $(grep -m1 -o 'data.path is.*' c.out)"

# d. the opt-in: a new run directory from the checkpoint's weights
"$BATON" train "$CFG" --run-dir d --set train.init_from=a/ckpt-00000020 --set data.path=new.h5 \
  --set train.steps=1 --set optim.lr=0 --dump-params d.bin --loss-log d.loss >d.out 2>&1 || { cat d.out; fail "d: init_from the checkpoint"; }
grep -q "initialised .* parameters from a/ckpt-00000020 (baton checkpoint)" d.out || { cat d.out; fail "d: init log"; }
grep -q "resumed" d.out && fail "d: a new run directory resumed"
[ "$(cut -d' ' -f1 d.loss)" = 1 ] || fail "d: did not start at step 1"
cmp -s a.bin d.bin || fail "d: parameters differ from the checkpoint's"
echo "d: init_from the checkpoint on new data: parameters equal, step 1"
echo "4 passed, 0 failed"
