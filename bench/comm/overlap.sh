#!/usr/bin/env bash
# Gradient communication overlap (issue 3), on configs/bench-small.ini with
# 2 and 4 CPU ranks (MPI), overlap on and off.
#
#   comm (off)   median per-step gradient reduction time with overlap off:
#                every bucket is reduced after backward, so all of it is
#                exposed; this is the time spent in gradient communication.
#   exposed (on) median per-step time waiting for buckets after backward
#                with overlap on (trainer metric time/comm_exposed_ms).
#   hidden       1 - exposed(on) / comm(off): the fraction of gradient
#                communication hidden behind backward.
#
# bucket_mb = 1 so the 13 MB of gradients form 13 buckets (with the default
# 25 MB there is a single bucket and nothing to overlap).
# usage: bench/comm/overlap.sh [BUILD_DIR] [STEPS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
steps="${2:-30}"
py=/usr/bin/python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mpirun=(mpirun --oversubscribe --allow-run-as-root --mca btl self,vader
        --mca btl_vader_single_copy_mechanism none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)

measure() { # ranks overlap -> "comm_exposed_ms step_ms"
  rm -rf "$tmp/run"
  "${mpirun[@]}" -np "$1" "$build/baton" train "$root/configs/bench-small.ini" \
    --run-dir "$tmp/run" --resume never --quiet --set train.threads=1 \
    --set train.steps="$steps" --set dist.overlap="$2" --set dist.bucket_mb=1 \
    --set checkpoint.every=0 --set log.tensorboard=false >/dev/null
  "$py" - "$tmp/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][3:-1]  # skip warm-up and the final save
print(statistics.median(r["time/comm_exposed_ms"] for r in rows),
      statistics.median(r["time/step_ms"] for r in rows))
PY
}

echo "gradient communication, configs/bench-small.ini, MPI on $(nproc) cores, 1 thread per rank"
echo "medians over $((steps - 4)) steps; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-6s %12s %12s %14s %14s %8s\n' ranks "comm off ms" "step off ms" "exposed on ms" "step on ms" hidden
for n in 2 4; do
  read -r off_c off_s < <(measure "$n" false)
  read -r on_c on_s < <(measure "$n" true)
  hid=$("$py" -c "print('%.0f%%' % (100 * max(0.0, 1 - $on_c / $off_c)) if $off_c > 0 else 'n/a')")
  printf '%-6s %12.1f %12.1f %14.1f %14.1f %8s\n' "$n" "$off_c" "$off_s" "$on_c" "$on_s" "$hid"
done
