#!/usr/bin/env bash
# fixture.sh BATON SRC OUT gpt|mlp: trains a tiny model and exports it in
# every format, for the export tests (a ctest fixture: tests that need it
# run after it). Everything lands in OUT, which is recreated.
set -euo pipefail
baton=$1 src=$2 out=$3 kind=$4
rm -rf "$out"
mkdir -p "$out"
if [ "$kind" = gpt ]; then
  "$baton" train "$src/configs/tiny.ini" --run-dir "$out/run" \
    --set train.steps=20 --set checkpoint.every=20 --set data.val_every=0 >"$out/train.log" 2>&1 \
    || { cat "$out/train.log"; exit 1; }
  "$baton" export "$out/run" --format safetensors -o "$out/fp32"
  "$baton" export "$out/run" --format safetensors -o "$out/bf16" --dtype bf16
  "$baton" export "$out/run" --format safetensors -o "$out/fp16" --dtype fp16
  "$baton" export "$out/run" --format onnx --with-past -o "$out/onnx"
else
  "$baton" train "$src/configs/tiny-mlp.ini" --run-dir "$out/run" \
    --set train.steps=30 --set checkpoint.every=30 >"$out/train.log" 2>&1 \
    || { cat "$out/train.log"; exit 1; }
  "$baton" export "$out/run" --format safetensors -o "$out/fp32"
  "$baton" export "$out/run" --format onnx -o "$out/onnx"
  # 40 deterministic rows of 16 features in [-3, 3)
  awk 'BEGIN { s = 12345; for (r = 0; r < 40; r++) { line = "";
        for (c = 0; c < 16; c++) { s = (s * 1103515245 + 12345) % 2147483648;
          line = line (c ? "," : "") sprintf("%.6f", s / 2147483648 * 6 - 3) }
        print line } }' > "$out/rows.csv"
fi
echo "fixture $kind ready in $out"
