#!/usr/bin/env bash
# Issue 4: HDF5 files written by h5py and NumPy (chunked, gzip + shuffle
# filtered) train unchanged: a GPT on a uint16 token file with 2 ranks, and
# an MLP on a classifier file; the loss falls in both.
source "$(dirname "$0")/lib.sh"
fx="$HERE/../data/make_fixture.py"
"$PY" "$fx" "$WORK/tok.h5" --kind tokens --dtype uint16 --tokens 60000 \
  --val-tokens 4000 --chunk 1000 --gzip 4 --shuffle --text "$HERE/../../docs/design.md" >/dev/null
# A learnable classifier file: labels are the argmax of a fixed linear map.
"$PY" - "$WORK/cls.h5" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(3)
W = rng.normal(size=(8, 3))
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["baton_format_version"] = np.int32(1)
    f.attrs["num_classes"] = np.int32(3)
    for split, n in (("train", 4000), ("val", 400)):
        x = rng.normal(size=(n, 8)).astype(np.float32)
        y = np.argmax(x @ W, axis=1).astype(np.int32)
        f.create_dataset(f"{split}/x", data=x, chunks=(256, 8),
                         compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset(f"{split}/y", data=y, chunks=(256,), compression="gzip")
PY
run_np 2 "$CFG" --run-dir "$WORK/gpt" --set data.path="$WORK/tok.h5" --set train.steps=40 \
  --set data.val_every=20 --set data.val_samples=32 --loss-log "$WORK/gpt.loss" \
  >"$WORK/gpt.out" 2>&1 || { cat "$WORK/gpt.out"; fail "GPT on the h5py token file failed"; }
grep -q "val " "$WORK/gpt.out" || { cat "$WORK/gpt.out"; fail "no validation loss logged"; }
"$BATON" train "$HERE/../../configs/tiny-mlp.ini" --run-dir "$WORK/mlp" \
  --set data.path="$WORK/cls.h5" --set model.n_features=8 --set model.n_classes=3 \
  --set train.steps=40 --loss-log "$WORK/mlp.loss" >"$WORK/mlp.out" 2>&1 \
  || { cat "$WORK/mlp.out"; fail "MLP on the h5py classifier file failed"; }
for m in gpt mlp; do
  first=$(head -1 "$WORK/$m.loss" | cut -d' ' -f2)
  last=$(tail -5 "$WORK/$m.loss" | awk '{s+=$2} END {printf "%.4f", s/NR}')
  echo "$m: loss $first -> $last"
  le "$last" "$("$PY" -c "print(0.8 * $first)")" || fail "$m loss did not fall by 20% ($first -> $last)"
done
echo "3 passed, 0 failed"
