#!/usr/bin/env bash
# Speech training benchmark (issue 15 item 6): baton's CPU backend against
# the same model in PyTorch (bench/speech/torch_speech.py) on the synthetic
# corpus of launch/speech-corpus.sh, at 1 and 2 threads, side by side in one
# run. Both train on the SAME batches: speech_plan (built with baton)
# prints the batches `baton train` takes for the config, and the peer reads
# those utterances from the same HDF5. The figure is training frames/s:
# input feature frames (10 ms each, padding not counted) of the timed steps
# over their summed step time (forward + backward + AdamW; baton's from
# metrics.jsonl's time/step_ms, which also holds its HDF5 read), and the
# same frames per CPU-second of the process (baton: the difference of two
# runs' CPU time; torch: time.process_time per step), the figure to read
# on a loaded machine. The first WARMUP steps are not timed, nor baton's
# last (it writes the final checkpoint). Each figure is the median of
# REPEATS runs, run interleaved.
#
# usage: bench/speech/run.sh [BUILD_DIR] [REPEATS]
#   env CONFIG  the model (default configs/speech-small.ini)
#   env CORPUS  a directory with train.h5 (default: made in a temporary
#               directory by launch/speech-corpus.sh, 3000 utterances)
#   env STEPS   timed steps (default 20); OUT_JSON the JSON copy
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
repeats="${2:-3}"
config="${CONFIG:-$root/configs/speech-small.ini}"
steps="${STEPS:-20}" warmup=3
py=/usr/bin/python3
out_json="${OUT_JSON:-/tmp/baton-bench-speech.json}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for f in "$build/baton" "$build/bench/speech/speech_plan"; do
  [ -x "$f" ] || { echo "$0: $f not built (cmake --build $build)" >&2; exit 1; }
done
corpus="${CORPUS:-}"
if [ -z "$corpus" ]; then
  corpus="$tmp/corpus"
  BATON="$build/baton" "$root/launch/speech-corpus.sh" "$corpus" 3000 >/dev/null
fi
data="$corpus/train.h5"

# The config's model and batching keys (defaults as trainer/config.c's).
read -r layers width heads conv frames window seed shuffle < <("$py" - "$config" <<'PY'
import configparser, sys
c = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
c.read(sys.argv[1])
g = lambda s, k, d: c.get(s, k, fallback=d)
sh = g("data", "shuffle", "true").lower() in ("true", "1", "yes", "on")
print(g("model", "n_layer", "?"), g("model", "n_embd", "?"), g("model", "n_head", "?"),
      g("model", "conv_channels", "?"), g("data", "max_frames", "4000"),
      g("data", "sort_window", "1024"), g("train", "seed", "1337"), int(sh))
PY
)
plan="$tmp/plan"
"$build/bench/speech/speech_plan" "$data" "$frames" "$window" "$seed" "$shuffle" \
  $((warmup + steps + 1)) >"$plan"

# CPU seconds (user + system, all threads) of a command run to its end.
cpu_of() {
  "$py" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$@"
}

baton_train() { # threads steps run_dir -> CPU seconds of the whole run
  rm -rf "$3"
  OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$1 cpu_of "$build/baton" train "$config" \
    --run-dir "$3" --resume never --quiet --set train.threads="$1" \
    --set train.steps="$2" --set train.log_every=1 \
    --set data.path="$data" --set data.val_every=0 \
    --set checkpoint.every=0 --set log.tensorboard=false
}

# threads -> "frames/s frames/CPU-s". Wall: steps W+1 .. W+S of one run of
# W+S+1 steps. CPU: that run's CPU time minus a run of W+1 steps' (the
# same start-up, warm-up and final checkpoint), i.e. steps W+2 .. W+S+1.
baton_fps() {
  local th=$1 c1 c0
  c1=$(baton_train "$th" $((warmup + steps + 1)) "$tmp/run")
  c0=$(baton_train "$th" $((warmup + 1)) "$tmp/run0")
  "$py" - "$tmp/run/metrics.jsonl" "$plan" "$warmup" "$steps" "$c1" "$c0" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = {r["step"]: r["time/step_ms"] for r in rows if "time/step_ms" in r}
plan = [int(l.split()[0]) for l in open(sys.argv[2])]
w, s = int(sys.argv[3]), int(sys.argv[4])
timed = range(w + 1, w + s + 1)  # steps are 1-based
wall = sum(plan[i - 1] for i in timed) / (sum(rows[i] for i in timed) / 1e3)
cpu = sum(plan[i - 1] for i in range(w + 2, w + s + 2)) / (float(sys.argv[5]) - float(sys.argv[6]))
print(wall, cpu)
PY
}

# The peer in its best configuration (bench/cpu/run.sh says why
# OPENBLAS_NUM_THREADS=1): the same two figures over steps W+1 .. W+S.
torch_fps() {
  OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=1 "$py" "$root/bench/speech/torch_speech.py" \
    --threads "$1" --data "$data" --plan "$plan" --warmup $warmup --steps "$steps" \
    --layers "$layers" --width "$width" --heads "$heads" --conv "$conv" |
    "$py" -c 'import json,sys; j = json.load(sys.stdin); print(j["frames_per_s"], j["frames_per_cpu_s"])'
}

median() { "$py" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

read -r nf npad < <(awk -v w=$warmup -v s="$steps" 'NR > w && NR <= w + s { f += $1; p += $2 } END { print f, p }' "$plan")
echo "speech training throughput, $(basename "$config") ($layers layers, width $width, $heads heads, conv $conv; data.max_frames $frames)"
echo "$steps timed steps of $data: $nf frames ($((100 * (npad - nf) / npad))% padding); medians of $repeats runs"
echo "$(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "frames/s: wall clock; frames/CPU-s: per second of the process's CPU time (all threads),"
echo "which the neighbours on a shared machine do not change at 1 thread"
printf '%-8s %14s %14s %7s   %16s %16s %7s\n' threads "baton fr/s" "torch fr/s" ratio \
  "baton fr/CPU-s" "torch fr/CPU-s" ratio
json="["
best_b=0 best_t=0
for th in 1 2; do
  bw=() bc=() tw=() tc=()
  for r in $(seq "$repeats"); do   # interleaved so drift hits both alike
    read -r x y < <(baton_fps "$th"); bw+=("$x"); bc+=("$y")
    read -r x y < <(torch_fps "$th"); tw+=("$x"); tc+=("$y")
  done
  bm=$(median "${bw[@]}") tm=$(median "${tw[@]}")
  bcm=$(median "${bc[@]}") tcm=$(median "${tc[@]}")
  ratio=$("$py" -c "print('%.2f' % ($bm / $tm))")
  cratio=$("$py" -c "print('%.2f' % ($bcm / $tcm))")
  printf '%-8s %14.0f %14.0f %6sx   %16.0f %16.0f %6sx\n' "$th" "$bm" "$tm" "$ratio" \
    "$bcm" "$tcm" "$cratio"
  json+="{\"threads\":$th,\"baton_frames_per_s\":$bm,\"pytorch_frames_per_s\":$tm,\"ratio\":$ratio,"
  json+="\"baton_frames_per_cpu_s\":$bcm,\"pytorch_frames_per_cpu_s\":$tcm,\"cpu_ratio\":$cratio},"
  best_b=$("$py" -c "print(max($best_b, $bm))") best_t=$("$py" -c "print(max($best_t, $tm))")
done
best=$("$py" -c "print('%.2f' % ($best_b / $best_t))")
echo "best thread count of each (wall): baton $(printf %.0f "$best_b"), pytorch $(printf %.0f "$best_t") frames/s: ${best}x"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "${json%,}]" >"$out_json"
echo "JSON: $out_json"
