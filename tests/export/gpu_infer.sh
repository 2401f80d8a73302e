#!/bin/sh
# gpu_infer.sh PROBE BATON PYTHON FIXTURE: `baton infer --backend cuda`
# (full forward on the GPU) against the CPU backend on the fp32 export of
# the GPT and MLP fixtures. Exit 77 (ctest: skipped, with the reason the
# probe printed) when no CUDA device is usable. The CUDA GEMMs are IEEE
# fp32 (no TF32), so the limit is 1e-4 relative, as for ONNX Runtime.
set -eu
probe=$1 baton=$2 py=$3 fx=$4
"$probe" --probe || exit $?
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
prompt='12+34=46
7+8='
"$baton" infer "$fx/gpt/fp32" --prompt "$prompt" --max-new-tokens 0 --logits-out "$t/cpu.bin" >/dev/null
"$baton" infer "$fx/gpt/fp32" --prompt "$prompt" --max-new-tokens 0 --logits-out "$t/gpu.bin" --backend cuda >/dev/null
"$baton" infer "$fx/mlp/fp32" --input "$fx/mlp/rows.csv" --logits-out "$t/mcpu.bin" >"$t/mcpu.txt"
"$baton" infer "$fx/mlp/fp32" --input "$fx/mlp/rows.csv" --logits-out "$t/mgpu.bin" --backend cuda >"$t/mgpu.txt"
cmp -s "$t/mcpu.txt" "$t/mgpu.txt" || { echo "FAIL: MLP classes differ between CPU and CUDA"; exit 1; }
"$py" - "$t" <<'PY'
import sys, numpy as np
t = sys.argv[1]
bad = 0
for a, b in (("cpu", "gpu"), ("mcpu", "mgpu")):
    x = np.fromfile(f"{t}/{a}.bin", "<f4"); y = np.fromfile(f"{t}/{b}.bin", "<f4")
    e = float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30)) if x.shape == y.shape else float("inf")
    print(("ok:   " if e < 1e-4 else "FAIL: ") + f"{a} vs {b} logits: rel err {e:.2e}")
    bad += e >= 1e-4
sys.exit(1 if bad else 0)
PY
