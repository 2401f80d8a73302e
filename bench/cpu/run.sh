#!/usr/bin/env bash
# CPU training benchmark (issue 2): baton's CPU backend against the same
# model in PyTorch (bench/cpu/torch_gpt.py) on configs/bench-small.ini,
# at 1 and 2 threads, side by side in one run. Each figure is the median
# of REPEATS runs, each run's figure the median step time over its timed
# steps (the first WARMUP steps are not timed).
#
# usage: bench/cpu/run.sh [BUILD_DIR] [REPEATS]     (JSON copy: $OUT_JSON)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
repeats="${2:-3}"
steps=20 warmup=3
py=/usr/bin/python3
out_json="${OUT_JSON:-/tmp/baton-bench-cpu.json}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

baton_tps() { # threads -> tokens/s (median step time of the timed steps)
  local th=$1 run="$tmp/run"
  rm -rf "$run"
  OMP_NUM_THREADS=$th OPENBLAS_NUM_THREADS=$th "$build/baton" train \
    "$root/configs/bench-small.ini" --run-dir "$run" --resume never --quiet \
    --set train.threads="$th" --set train.steps=$((steps + warmup)) \
    --set checkpoint.every=0 --set log.tensorboard=false >/dev/null
  "$py" - "$run/metrics.jsonl" "$warmup" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r.get("step", 0) > int(sys.argv[2]) and "time/step_ms" in r]
# the last step also writes the final checkpoint: leave it out
rows = rows[:-1]
ms = statistics.median(r["time/step_ms"] for r in rows)
print(8 * 128 / (ms / 1e3))
PY
}

# The peer in its best configuration: Debian's torch 1.13 calls OpenBLAS,
# whose own thread pool competes with torch's OpenMP threads; with
# OPENBLAS_NUM_THREADS=1 torch at 2 threads runs about 1.7x faster than
# with the default (measured 5312 vs 3152 tok/s on this machine).
torch_tps() {
  OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=1 "$py" "$root/bench/cpu/torch_gpt.py" --threads "$1" \
    --steps $steps --warmup $warmup | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'
}

median() { "$py" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "CPU training throughput, configs/bench-small.ini (4 layers, width 256, 4 heads, T=128, batch 8)"
echo "medians of $repeats runs x $steps timed steps; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-8s %16s %16s %8s\n' threads "baton tok/s" "pytorch tok/s" ratio
json="["
for th in 1 2; do
  b=() t=()
  for r in $(seq "$repeats"); do   # interleaved so drift hits both alike
    b+=("$(baton_tps "$th")")
    t+=("$(torch_tps "$th")")
  done
  bm=$(median "${b[@]}") tm=$(median "${t[@]}")
  ratio=$("$py" -c "print('%.2f' % ($bm / $tm))")
  printf '%-8s %16.0f %16.0f %7sx\n' "$th" "$bm" "$tm" "$ratio"
  json+="{\"threads\":$th,\"baton_tokens_per_s\":$bm,\"pytorch_tokens_per_s\":$tm,\"ratio\":$ratio},"
done
echo "${json%,}]" >"$out_json"
echo "JSON: $out_json"
