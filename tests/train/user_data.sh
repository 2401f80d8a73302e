#!/usr/bin/env bash
# Issue 14 (item 4): files written by users' own h5py scripts train as they
# are: no baton attributes, numpy's default int64 tokens and float64
# features. model.vocab_size, n_features and n_classes left at 0 come from
# the file (a note says so); a config value the file contradicts stops the
# run naming the key and both values.
source "$(dirname "$0")/lib.sh"
pass=0
# expect EXIT_CODE "text" CMD...: the exit code, and the text (a whole
# message) somewhere in the output.
expect() {
  local code=$1 msg=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "exit $rc (want $code) for: $* -> $out"
  grep -qF -- "$msg" <<<"$out" || fail "no '$msg' in: $out"
  pass=$((pass + 1))
}
"$PY" - "$WORK" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(5)
with h5py.File(f"{d}/tok.h5", "w") as f:  # no attributes; int64 tokens
    f["train/tokens"] = np.arange(40000) % 300
    f["val/tokens"] = np.arange(4000) * 7 % 300
W = rng.normal(size=(8, 3))
with h5py.File(f"{d}/cls.h5", "w") as f:  # no attributes; float64, int64
    for split, n in (("train", 3000), ("val", 300)):
        x = rng.normal(size=(n, 8))
        f[f"{split}/x"] = x
        f[f"{split}/y"] = np.argmax(x @ W, axis=1)
PY
mlp="$HERE/../../configs/tiny-mlp.ini"
# GPT on 2 ranks: the vocabulary from the data (largest id + 1), used by
# training and validation and recorded in the checkpoint's config.
expect 0 "note: $WORK/tok.h5 has no vocab_size attribute and model.vocab_size is 0: using 300, the largest token id + 1 (set model.vocab_size if the tokenizer's vocabulary is larger)" \
  run_np 2 "$CFG" --run-dir "$WORK/gpt" --set data.path="$WORK/tok.h5" \
  --set model.vocab_size=0 --set train.steps=4 --set data.val_every=2
grep -q "^data check: $WORK/tok.h5: 44000 tokens, .* read by 2 ranks in " <<<"$out" \
  || fail "no data check line: $out"
grep -q "val " <<<"$out" || fail "no validation loss: $out"
"$BATON" inspect "$WORK/gpt" | grep -q "model.vocab_size = 300" \
  || fail "the checkpoint's config lacks model.vocab_size = 300"
pass=$((pass + 1))
# MLP: width and classes from the file; the loss falls.
expect 0 "note: $WORK/cls.h5 has no num_classes attribute and model.n_classes is 0: using 3, the largest label + 1 (set model.n_classes if the number of classes is larger)" \
  "$BATON" train "$mlp" --run-dir "$WORK/mlp" --set data.path="$WORK/cls.h5" \
  --set model.n_features=0 --set model.n_classes=0 --set train.steps=40 \
  --loss-log "$WORK/mlp.loss"
first=$(head -1 "$WORK/mlp.loss" | cut -d' ' -f2)
last=$(tail -5 "$WORK/mlp.loss" | awk '{s+=$2} END {printf "%.4f", s/NR}')
le "$last" "$("$PY" -c "print(0.8 * $first)")" || fail "MLP loss did not fall by 20% ($first -> $last)"
pass=$((pass + 1))
# A config value the file contradicts: the key and both values.
expect 1 "error: $WORK/cls.h5:/train/x: feature width 8 does not match model.n_features = 5; set model.n_features = 8, or leave it unset (0) to take it from the file" \
  "$BATON" train "$mlp" --run-dir "$WORK/mlp2" --set data.path="$WORK/cls.h5" \
  --set model.n_features=5 --set model.n_classes=0
expect 1 "error: $WORK/tok.h5:/train/tokens: token id 256 at index 256 is >= vocab size 256" \
  "$BATON" train "$CFG" --run-dir "$WORK/gpt2" --set data.path="$WORK/tok.h5" \
  --set model.vocab_size=256
echo "$pass passed, 0 failed"
