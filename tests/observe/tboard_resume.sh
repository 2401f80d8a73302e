#!/usr/bin/env bash
# tboard_resume.sh BATON PYTHON: a real run killed after its checkpoint at
# step 5 and resumed keeps the points of step 5 in TensorBoard (issue 17:
# the resume's SessionLog START was written at the resume step, so
# TensorBoard purged that step's scalars, val/loss included), and drops the
# crashed run's points after it. Read with TensorBoard's own
# EventAccumulator, as TensorBoard shows the directory.
set -euo pipefail
baton="$1" py="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d /tmp/bt_tb_resume.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
args=("$here/../train/micro.ini" --run-dir "$work/run" --set train.steps=10
      --set checkpoint.every=5 --set data.val_every=5 --set log.tensorboard=true)
set +e
BATON_FAULT=train.step:8 "$baton" train "${args[@]}" >"$work/1.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || fail "the killed run exited 0"
"$baton" train "${args[@]}" >"$work/2.out" 2>&1 || { cat "$work/2.out"; fail "resume failed"; }
grep -q "resumed from .*ckpt-00000005" "$work/2.out" || { cat "$work/2.out"; fail "did not resume at 5"; }
"$py" - "$work/run" <<'PY'
import json, os, sys
from tensorboard.backend.event_processing import event_accumulator
run = sys.argv[1]
acc = event_accumulator.EventAccumulator(os.path.join(run, "tb"))
acc.Reload()
loss = [s.step for s in acc.Scalars("train/loss")]
val = [s.step for s in acc.Scalars("val/loss")]
assert loss == list(range(1, 11)), "train/loss steps %s" % loss
assert val == [5, 10], "val/loss steps %s (step 5 purged by the resume?)" % val
# The JSONL marks each start on its first line.
starts = [(r["step"], r["run/start_step"]) for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))
          if "run/start_step" in r]
assert starts == [(1, 0), (6, 5)], "run/start_step lines %s" % starts
print("tboard resume: train/loss 1..10, val/loss at", val, "starts", starts)
PY
echo "3 passed, 0 failed"
