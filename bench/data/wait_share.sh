#!/usr/bin/env bash
# Share of training step time spent waiting for data (issue 4, target < 1%):
# configs/bench-small.ini trained from an HDF5 token file made by
# `baton prepare text` (about 64 MB of this repository's text, repeated),
# with 1 and 2 ranks. Reports the per-step data wait (trainer metric
# time/data_ms: time the training thread blocked in bt_loader_next): median,
# mean and worst step after the first, and the mean wait as a share of the
# median step time.
# usage: bench/data/wait_share.sh [BUILD_DIR] [STEPS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
steps="${2:-40}"
py=/usr/bin/python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for i in $(seq 200); do cat "$root"/docs/*.md "$root"/trainer/*.c; done >"$tmp/corpus.txt"
"$build/baton" prepare text -o "$tmp/data.h5" --chunk 65536 --val-fraction 0.01 "$tmp/corpus.txt" >/dev/null
mb=$(du -m "$tmp/data.h5" | cut -f1)
echo "data wait share, configs/bench-small.ini from a ${mb} MB HDF5 token file; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-6s %12s %12s %12s %12s %10s\n' ranks "wait median" "wait mean" "wait max" "step ms" "mean share"
for n in 1 2; do
  rm -rf "$tmp/run"
  mpirun -np "$n" --oversubscribe --allow-run-as-root --mca btl self,vader \
    --mca btl_vader_single_copy_mechanism none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    "$build/baton" train "$root/configs/bench-small.ini" --run-dir "$tmp/run" --resume never --quiet \
    --set data.path="$tmp/data.h5" --set train.steps="$steps" --set train.threads=1 \
    --set checkpoint.every=0 --set log.tensorboard=false >/dev/null
  "$py" - "$tmp/run/metrics.jsonl" "$n" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:-1]  # first step warms up, last saves
w = [r["time/data_ms"] for r in rows]
s = statistics.median(r["time/step_ms"] for r in rows)
m = statistics.mean(w)
print("%-6s %12.3f %12.3f %12.3f %12.1f %9.3f%%" % (sys.argv[2], statistics.median(w), m, max(w), s, 100 * m / s))
PY
done
