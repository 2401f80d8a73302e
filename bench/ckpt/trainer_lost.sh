#!/usr/bin/env bash
# Training time lost per checkpoint inside the trainer (issue 5),
# asynchronous versus synchronous: configs/bench-small.ini, a checkpoint
# every 5 steps, 1 rank. The trainer measures the time each checkpoint
# blocked the training loop (snapshot copy, polls, and for synchronous
# saves the whole compress + write + fsync + commit) and logs it as
# time/ckpt_ms on the next step's metrics line.
# usage: bench/ckpt/trainer_lost.sh [BUILD_DIR] [STEPS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
steps="${2:-41}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "training time lost per checkpoint, configs/bench-small.ini (13 MB of parameters, 39 MB of state), every 5 steps; $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-6s %10s %14s %14s %14s\n' mode saves "median ms" "max ms" "step ms"
for async in true false; do
  rm -rf "$tmp/run"
  OMP_NUM_THREADS=2 "$build/baton" train "$root/configs/bench-small.ini" --run-dir "$tmp/run" \
    --resume never --quiet --set train.steps="$steps" --set checkpoint.every=5 \
    --set checkpoint.async="$async" --set checkpoint.keep_last=2 --set log.tensorboard=false >/dev/null
  /usr/bin/python3 - "$tmp/run/metrics.jsonl" "$async" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# time/ckpt_ms on step s+1 is the checkpoint taken at step s (s % 5 == 0)
lost = [r["time/ckpt_ms"] for r in rows if (r["step"] - 1) % 5 == 0 and r["step"] > 1]
steps = [r["time/step_ms"] for r in rows if (r["step"] - 1) % 5 != 0]
print("%-6s %10d %14.2f %14.2f %14.1f" % ("async" if sys.argv[2] == "true" else "sync",
      len(lost), statistics.median(lost), max(lost), statistics.median(steps)))
PY
done
