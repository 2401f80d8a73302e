#!/usr/bin/env bash
# Generation benchmark: `baton infer` (KV cache, CPU) against the same
# exported model in ONNX Runtime, twice: model.onnx with a full recompute
# per token (it has no cache inputs), and model_with_past.onnx (export
# --with-past) in our own loop feeding the cache back; and PyTorch (transformers
# GPT2LMHeadModel.generate, use_cache=True, greedy), all at 1 thread, same
# prompt, same number of new tokens, greedy. The model is
# configs/bench-small.ini (4 layers, width 256, 4 heads, context 128,
# vocab 256), trained 2 steps just to have a checkpoint.
#
# tokens/s = N new tokens / wall time of (prompt + N tokens), model load
# excluded. Each figure is the median of REPEATS runs; the runs of the
# three are interleaved so machine drift hits them alike. The last column
# says whether the greedy tokens agree with baton's.
#
# usage: bench/infer/run.sh [BUILD_DIR] [REPEATS] [N]   (JSON: $OUT_JSON)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
repeats="${2:-5}"
n="${3:-100}"
py="${BATON_PYTHON:-$build/pyenv/bin/python3}"
out_json="${OUT_JSON:-/tmp/baton-bench-infer.json}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
prompt="The quick brown fox 12+34="

"$build/baton" train "$root/configs/bench-small.ini" --run-dir "$tmp/run" \
  --set train.steps=2 --set checkpoint.every=2 >/dev/null 2>&1
"$build/baton" export "$tmp/run" --format safetensors -o "$tmp/m" 2>/dev/null
"$build/baton" export "$tmp/run" --format onnx --with-past -o "$tmp/m" 2>/dev/null

baton_run() { # -> "tokens_per_s ids"
  "$build/baton" infer "$tmp/m" --prompt "$prompt" --max-new-tokens "$n" \
    --threads 1 --ids 2>"$tmp/err" >"$tmp/ids"
  "$py" - "$tmp/err" "$n" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"prompt \d+ tokens in ([0-9.]+) s; generated \d+ tokens in ([0-9.]+) s", t)
print(int(sys.argv[2]) / (float(m.group(1)) + float(m.group(2))))
PY
}
peer_run() { "$py" "$root/bench/infer/peers.py" "$1" "$tmp/m" "$prompt" "$n" >"$tmp/$1.json"
  "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' "$tmp/$1.json"; }
median() { "$py" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

b=() o=() k=() t=()
for r in $(seq "$repeats"); do
  b+=("$(baton_run)"); o+=("$(peer_run ort)"); k+=("$(peer_run ortkv)"); t+=("$(peer_run torch)")
done
bm=$(median "${b[@]}") om=$(median "${o[@]}") km=$(median "${k[@]}") tm=$(median "${t[@]}")
same() { "$py" -c 'import json,sys; a=open(sys.argv[1]).read().split(); b=json.load(open(sys.argv[2]))["ids"]; print("yes" if list(map(int,a))==b else "NO")' "$tmp/ids" "$tmp/$1.json"; }
so=$(same ort) sk=$(same ortkv) st=$(same torch)

echo "Generation throughput, configs/bench-small.ini (4 layers, width 256, 4 heads, T=128, vocab 256)"
echo "prompt ${#prompt} tokens + $n new tokens, greedy, 1 thread; medians of $repeats runs; $(nproc --all) cores (load avg $(cut -d" " -f1 /proc/loadavg)); $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-44s %12s %14s %12s\n' engine "tokens/s" "baton / this" "same tokens"
printf '%-44s %12.0f %14s %12s\n' "baton infer (KV cache, CPU)" "$bm" "1.00x" "-"
printf '%-44s %12.0f %13.2fx %12s\n' "ONNX Runtime 1.17 (full recompute/token)" "$om" "$("$py" -c "print($bm/$om)")" "$so"
printf '%-44s %12.0f %13.2fx %12s\n' "ONNX Runtime 1.17 (with past, own loop)" "$km" "$("$py" -c "print($bm/$km)")" "$sk"
printf '%-44s %12.0f %13.2fx %12s\n' "PyTorch + transformers generate (KV cache)" "$tm" "$("$py" -c "print($bm/$tm)")" "$st"
echo "[{\"engine\":\"baton\",\"tokens_per_s\":$bm},{\"engine\":\"onnxruntime\",\"tokens_per_s\":$om,\"same_tokens\":\"$so\"},{\"engine\":\"onnxruntime_with_past\",\"tokens_per_s\":$km,\"same_tokens\":\"$sk\"},{\"engine\":\"pytorch\",\"tokens_per_s\":$tm,\"same_tokens\":\"$st\"}]" >"$out_json"
echo "JSON: $out_json"
