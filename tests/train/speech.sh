#!/usr/bin/env bash
# Issue 15: training the speech model (model.type = speech) on the audio
# loader, on a toy corpus made here (speech_corpus.py: 40 + 12 utterances
# of tone "characters", `baton prepare audio`). Modes:
#   learns N           N ranks train 40 steps: the mean loss of the last 10
#                      steps is below 0.8x that of the first 5; the
#                      progress line shows the padding waste and
#                      metrics.jsonl has data/pad_fraction in (0, 1)
#   resume_exact N     SIGKILL after K steps, resume to 2K: parameters and
#                      logged losses bitwise equal to an unkilled run
#   resume_world N M   a checkpoint of N ranks continued on M ranks (with
#                      N/M micro-steps: the same batches per step) matches
#                      the N -> N continuation (1e-5): same parameters,
#                      losses and final loader state
#   errors             data.path not HDF5 / not audio, model.vocab_size
#                      against the file's, bf16: clear errors, exit != 0
#   val N              N ranks train 60 steps validating data.val_path every
#                      20: every validation covers all 12 utterances once,
#                      CER falls, and the last val/loss, val/cer, val/wer
#                      equal speech_val_check.py's recomputation in
#                      PyTorch from the dumped parameters; `baton eval`
#                      on the run (1 and 2 ranks) prints the same numbers
#   equiv N            N ranks (accum 1) vs 1 rank with accum N: the same
#                      plan batches per step, so the same parameters (1e-5)
# usage: speech.sh MODE ARGS...
source "$(dirname "$0")/lib.sh"
CFG="$HERE/speech_micro.ini"
mode=$1
"$PY" "$HERE/speech_corpus.py" "$WORK/c" 40 12 7
"$BATON" prepare audio -o "$WORK/train.h5" "$WORK/c/train.tsv" >/dev/null
DATA=(--set data.path="$WORK/train.h5")

# a fresh run's parameters before any update (the comparisons must not
# pass because nothing moved)
moved() {
  "$BATON" train "$CFG" "${DATA[@]}" --run-dir "$WORK/init" --resume never \
    --set train.steps=1 --set optim.lr=0 --dump-params "$WORK/init.f32" >/dev/null 2>&1
  local d; d=$(relerr "$1" "$WORK/init.f32")
  le 1e-3 "$d" || fail "parameters barely changed ($d): the comparison proves nothing"
}

case "$mode" in
learns)
  n=$2
  run_np "$n" "$CFG" "${DATA[@]}" --run-dir "$WORK/r" --set train.steps=40 \
    --loss-log "$WORK/l" >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "$n-rank run failed"; }
  grep -q "speech model" "$WORK/out" || fail "not a speech run"
  grep -q "| pad [0-9.]*% |" "$WORK/out" || { cat "$WORK/out"; fail "no padding waste on the progress line"; }
  "$PY" - "$WORK/l" "$WORK/r/metrics.jsonl" <<'PY' || fail "the loss did not fall (or metrics lack data/pad_fraction)"
import json, sys
l = [float(x.split()[1]) for x in open(sys.argv[1])]
assert len(l) == 40, len(l)
a, b = sum(l[:5]) / 5, sum(l[-10:]) / 10
print("loss: first 5 steps %.4f, last 10 steps %.4f" % (a, b))
pads = [r["data/pad_fraction"] for r in map(json.loads, open(sys.argv[2]))
        if "data/pad_fraction" in r]
assert pads and all(0 < p < 1 for p in pads), pads
print("pad fraction in metrics.jsonl: %.4f" % pads[-1])
sys.exit(0 if b < 0.8 * a else 1)
PY
  echo "3 passed, 0 failed";;
resume_exact)
  n=$2 K=8
  common=("${DATA[@]}" --set train.steps=$((2 * K)) --set checkpoint.every=4
          --set dist.zero=$([ "$n" -gt 1 ] && echo true || echo false))
  run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --loss-log "$WORK/a.loss" \
    --dump-params "$WORK/a.f32" >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "reference run failed"; }
  set +e
  BATON_FAULT="train.step:$((K + 3))@$((n - 1))" run_np "$n" "$CFG" --run-dir "$WORK/b" \
    "${common[@]}" --loss-log "$WORK/b.loss" >"$WORK/b1.out" 2>&1
  rc=$?
  set -e
  [ "$rc" != 0 ] || fail "the killed run exited 0"
  run_np "$n" "$CFG" --run-dir "$WORK/b" "${common[@]}" --loss-log "$WORK/b.loss" \
    --dump-params "$WORK/b.f32" >"$WORK/b2.out" 2>&1 || { cat "$WORK/b2.out"; fail "resumed run failed"; }
  grep -q "resumed from .*ckpt-0*$K" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "did not resume from step $K"; }
  grep -m1 "resumed from" "$WORK/b2.out"
  cmp "$WORK/a.f32" "$WORK/b.f32" || fail "final parameters differ"
  diff <(last_losses "$WORK/a.loss") <(last_losses "$WORK/b.loss") || fail "logged losses differ"
  moved "$WORK/a.f32"
  echo "4 passed, 0 failed";;
resume_world)
  n=$2 m=$3 K=6 lim=1e-5
  common=("${DATA[@]}" --set dist.zero=true --set dist.watchdog_seconds=300)
  run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --set train.steps=$K \
    >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "first $n-rank run failed"; }
  cp -r "$WORK/a" "$WORK/b"
  run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --set train.steps=$((2 * K)) \
    --loss-log "$WORK/a.loss" --dump-params "$WORK/a.f32" >"$WORK/a2.out" 2>&1 || { cat "$WORK/a2.out"; fail "$n-rank resume failed"; }
  # A step takes world * accum plan batches: M ranks with N/M micro-steps
  # take the same batches per step as N ranks with one (N a multiple of M).
  run_np "$m" "$CFG" --run-dir "$WORK/b" "${common[@]}" --set train.steps=$((2 * K)) \
    --set train.grad_accum=$((n / m)) \
    --loss-log "$WORK/b.loss" --dump-params "$WORK/b.f32" >"$WORK/b2.out" 2>&1 || { cat "$WORK/b2.out"; fail "$m-rank resume failed"; }
  grep -q "saved by $n ranks" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "did not resume the $n-rank checkpoint"; }
  "$PY" - "$WORK/a" "$WORK/b" <<'PY' || fail "the data streams differ"
import glob, json, sys
def state(d):
    c = sorted(glob.glob(d + "/ckpt-*"))[-1]
    m = json.load(open(c + "/manifest.json"))
    return m["meta"]["loader"]
a, b = state(sys.argv[1]), state(sys.argv[2])
print("loader state after the continuations: %s and %s" % (a, b))
sys.exit(0 if a == b else 1)
PY
  e=$(relerr "$WORK/b.f32" "$WORK/a.f32")
  echo "$n -> $m ranks: parameters differ from the $n -> $n continuation by $e (limit $lim)"
  le "$e" "$lim" || fail "relative difference $e > $lim"
  "$PY" - "$WORK/a.loss" "$WORK/b.loss" "$lim" <<'PY' || fail "losses of the continued runs differ"
import sys
a = [float(l.split()[1]) for l in open(sys.argv[1])]
b = [float(l.split()[1]) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print("losses of the %d continued steps agree within %.2e" % (len(a), worst))
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
  moved "$WORK/a.f32"
  echo "4 passed, 0 failed";;
val)
  n=$2
  "$BATON" prepare audio -o "$WORK/val.h5" --vocab "$WORK/train.h5" "$WORK/c/val.tsv" >/dev/null
  run_np "$n" "$CFG" "${DATA[@]}" --run-dir "$WORK/r" --set train.steps=60 \
    --set data.val_path="$WORK/val.h5" --set data.val_every=20 \
    --dump-params "$WORK/p.f32" >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "$n-rank run failed"; }
  grep "validation at" "$WORK/out"
  [ "$(grep -c "validation at step .* over 12 utterances" "$WORK/out")" = 3 ] || fail "not 3 validations over the 12 utterances"
  grep -q "| CER [0-9.]*% WER [0-9.]*% |" "$WORK/out" || fail "no CER/WER on the progress line"
  "$PY" - "$WORK/r/metrics.jsonl" <<'PY' || fail "CER did not fall"
import json, sys
c = [r["val/cer"] for r in map(json.loads, open(sys.argv[1])) if "val/cer" in r]
print("val/cer over the run:", c)
sys.exit(0 if len(c) == 3 and c[-1] < c[0] else 1)
PY
  sed -n 's/^\(n_layer\|n_head\|n_embd\|conv_channels\) = \([0-9]*\)$/"\1": \2,/p' "$CFG" \
    | { echo "{"; cat; echo '"n_mel": 80}'; } >"$WORK/cfg.json"
  "$PY" "$HERE/speech_val_check.py" "$WORK/cfg.json" "$WORK/p.f32" "$WORK/val.h5" \
    "$WORK/r/metrics.jsonl" || fail "validation differs from the recomputation"
  # `baton eval` on the run dir (its data.val_path), 1 and 2 ranks: the
  # numbers of the last validation
  "$BATON" eval "$WORK/r" --json >"$WORK/e1.json" || fail "baton eval failed"
  $MPIRUN -np 2 "$BATON" eval "$WORK/r" --json >"$WORK/e2.json" || fail "baton eval on 2 ranks failed"
  "$PY" - "$WORK/r/metrics.jsonl" "$WORK/e1.json" "$WORK/e2.json" <<'PY' || fail "baton eval differs from validation"
import json, sys
v = [r for r in map(json.loads, open(sys.argv[1])) if "val/cer" in r][-1]
for f in sys.argv[2:]:
    e = json.load(open(f))
    print("baton eval (%d ranks): %d utterances, loss %.9f cer %.6f wer %.6f"
          % (e["world"], e["utterances"], e["loss"], e["cer"], e["wer"]))
    assert e["utterances"] == 12 and e["cer"] == v["val/cer"] and e["wer"] == v["val/wer"], e
    assert abs(e["loss"] - v["val/loss"]) <= 1e-12 * abs(v["val/loss"]), (e["loss"], v["val/loss"])
PY
  "$BATON" eval "$WORK/r" --data "$WORK/train.h5" | grep -q "on $WORK/train.h5: 40 utterances, loss" || fail "eval --data"
  ! "$BATON" eval "$WORK/r" --max-samples 3 2>"$WORK/e.err" || fail "--max-samples accepted"
  grep -q "every utterance" "$WORK/e.err" || { cat "$WORK/e.err"; fail "no clear --max-samples error"; }
  echo "7 passed, 0 failed";;
equiv)
  n=$2 lim=1e-5
  common=("${DATA[@]}" --resume never --set train.steps=20)
  run_np 1 "$CFG" --run-dir "$WORK/one" "${common[@]}" --set train.grad_accum="$n" \
    --loss-log "$WORK/one.loss" --dump-params "$WORK/one.f32" >"$WORK/one.out" 2>&1 || { cat "$WORK/one.out"; fail "1-rank run failed"; }
  run_np "$n" "$CFG" --run-dir "$WORK/many" "${common[@]}" --set train.grad_accum=1 \
    --loss-log "$WORK/many.loss" --dump-params "$WORK/many.f32" >"$WORK/many.out" 2>&1 || { cat "$WORK/many.out"; fail "$n-rank run failed"; }
  e=$(relerr "$WORK/many.f32" "$WORK/one.f32")
  echo "$n ranks vs 1 rank x $n micro-steps: relative difference $e (limit $lim)"
  le "$e" "$lim" || fail "relative difference $e > $lim"
  "$PY" - "$WORK/one.loss" "$WORK/many.loss" "$lim" <<'PY' || fail "losses differ"
import sys
a = [float(l.split()[1]) for l in open(sys.argv[1])]
b = [float(l.split()[1]) for l in open(sys.argv[2])]
assert len(a) == len(b) == 20, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print("losses of the 20 steps agree within %.2e" % worst)
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
  moved "$WORK/one.f32"
  echo "3 passed, 0 failed";;
errors)
  expect_err() { # expect_err MESSAGE ARGS...: the run fails with MESSAGE
    local want=$1; shift
    if "$BATON" train "$CFG" --run-dir "$WORK/e" --resume never "$@" >"$WORK/e.out" 2>&1; then
      fail "run with $* succeeded"; fi
    grep -qF -- "$want" "$WORK/e.out" || { cat "$WORK/e.out"; fail "no '$want' for $*"; }
    echo "ok: $want"
  }
  cp "$WORK/c/train.tsv" "$WORK/manifest.h5"
  expect_err "data.path = $WORK/manifest.h5: not an HDF5 file" --set data.path="$WORK/manifest.h5"
  # an HDF5 file that is not audio: the token layout of `prepare text`
  cut -f2 "$WORK/c/train.tsv" >"$WORK/text.txt"
  "$BATON" prepare text -o "$WORK/tok.h5" "$WORK/text.txt" >/dev/null 2>&1 || fail "prepare text failed"
  expect_err "not a file of \`baton prepare audio\`" --set data.path="$WORK/tok.h5"
  expect_err "model.vocab_size = 9 but $WORK/train.h5 has 5 characters" "${DATA[@]}" --set model.vocab_size=9
  expect_err "train.precision = bf16" "${DATA[@]}" --set train.precision=bf16
  expect_err "more than data.max_frames = 20" "${DATA[@]}" --set data.max_frames=20
  echo "5 passed, 0 failed";;
*) fail "unknown mode $mode";;
esac
