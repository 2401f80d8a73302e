#!/usr/bin/env bash
# checkpoint.keep_best and train.early_stop (issue 14 item 5).
#  A: an uninterrupted run (val every 2 steps, early_stop 2, keep_last 1,
#     constant lr): it stops where metrics.jsonl's val/loss sequence says
#     (the 2nd validation in a row without a new minimum), exit 0, with
#     the message; the final checkpoint is written and latest names it;
#     RUN/best names the step of the lowest val/loss, and that checkpoint
#     survived keep_last = 1 retention. val/perplexity = exp(val/loss).
#  B: the same run stopped at step 8 and resumed with train.steps = 40
#     stops at the same step with the same best: the best-so-far and the
#     count of validations without improvement came back from the meta.
#  C: both keys without data.val_every are refused, naming the key.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
SET=(--set data.val_every=2 --set data.val_samples=64 --set
     checkpoint.keep_best=true --set checkpoint.keep_last=1 --set
     optim.lr=0.05 --set optim.schedule=constant --set train.early_stop=2)
# expect_stop RUN: prints "stop best" from RUN/metrics.jsonl's val/loss
expect_stop() {
  "$PY" - "$1/metrics.jsonl" <<'PY'
import json, math, sys
best, bestStep, bad = math.inf, None, 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    v = o.get("val/loss")
    if v is None:
        continue
    p = o["val/perplexity"]
    assert abs(p - math.exp(v)) <= 1e-9 * p, (o["step"], v, p)
    if v < best:
        best, bestStep, bad = v, o["step"], 0
    else:
        bad += 1
        if bad == 2:
            print(o["step"], bestStep)
            sys.exit(0)
print("none", bestStep)
PY
}
set +e; run_np 1 "$CFG" --run-dir a --set train.steps=40 "${SET[@]}" >a.out 2>&1; rc=$?; set -e
[ "$rc" = 0 ] || { cat a.out; fail "A: exit $rc"; }
read -r stop best < <(expect_stop a)
[ "$stop" != none ] || fail "A: the lr/val choice never plateaus; pick another (no early stop to test)"
grep -q "early stopping at step $stop: 2 validations without a lower loss" a.out || { cat a.out; fail "A: no early-stop message at step $stop"; }
grep -q "training stopped early (train.early_stop) at step $stop of 40" a.out || fail "A: no final message"
last=$(grep -o '"step": *[0-9]*' a/metrics.jsonl | tail -1 | grep -o '[0-9]*$')
[ "$last" = "$stop" ] || fail "A: last logged step $last, expected $stop"
[ "$(cat a/latest)" = "$(printf 'ckpt-%08d' "$stop")" ] || fail "A: latest $(cat a/latest)"
[ "$(cat a/best)" = "$(printf 'ckpt-%08d' "$best")" ] || fail "A: best $(cat a/best), expected step $best"
[ -f "a/$(cat a/best)/manifest.json" ] || fail "A: the best checkpoint was deleted"
n=$(ls -d a/ckpt-* | wc -l)
[ "$n" = 2 ] || { ls a; fail "A: $n checkpoints kept, expected latest + best"; }
[ "$best" != "$stop" ] || fail "A: best = stop cannot show retention keeping it"
"$BATON" inspect "a/$(cat a/best)" >/dev/null || fail "A: best does not verify"
echo "A: stopped at $stop (exit 0), best ckpt-$best kept beside latest"

run_np 1 "$CFG" --run-dir b --set train.steps=8 "${SET[@]}" >b1.out 2>&1 || { cat b1.out; fail "B: first part"; }
[ "$stop" -gt 8 ] || fail "B: the stop ($stop) must come after the break at step 8"
set +e; run_np 1 "$CFG" --run-dir b --set train.steps=40 "${SET[@]}" >b2.out 2>&1; rc=$?; set -e
[ "$rc" = 0 ] || { cat b2.out; fail "B: resume exit $rc"; }
grep -q "early stopping at step $stop:" b2.out || { cat b2.out; fail "B: resumed run did not stop at $stop"; }
[ "$(cat b/best)" = "$(cat a/best)" ] || fail "B: best $(cat b/best) vs A's $(cat a/best)"
[ -f "b/$(cat b/best)/manifest.json" ] || fail "B: best deleted after the resume"
# rerunning the stopped run trains nothing; a larger early_stop continues
run_np 1 "$CFG" --run-dir b --set train.steps=40 "${SET[@]}" >b3.out 2>&1 || { cat b3.out; fail "B: rerun"; }
grep -q "the run stopped early at step $stop" b3.out || { cat b3.out; fail "B: rerun did not say it stopped early"; }
[ "$(cat b/latest)" = "$(printf 'ckpt-%08d' "$stop")" ] || fail "B: rerun trained on: latest $(cat b/latest)"
run_np 1 "$CFG" --run-dir b --set train.steps=$((stop + 2)) "${SET[@]}" --set train.early_stop=100 >b4.out 2>&1 || { cat b4.out; fail "B: continue"; }
[ "$(cat b/latest)" = "$(printf 'ckpt-%08d' $((stop + 2)))" ] || fail "B: early_stop=100 did not continue: latest $(cat b/latest)"
echo "B: resumed at 8, stopped at $stop, best $(cat b/best); a rerun stays stopped, a larger early_stop continues"

for k in train.early_stop=3 checkpoint.keep_best=true; do
  set +e; "$BATON" train "$CFG" --run-dir c --set "$k" >c.out 2>&1; rc=$?; set -e
  [ "$rc" = 2 ] && grep -q "${k%%=*} needs validation: set data.val_every" c.out \
    || { cat c.out; fail "C: $k without val_every: exit $rc"; }
done
echo "C: keys without data.val_every refused"
