#!/usr/bin/env bash
# demo.sh: baton's whole story on one machine, in a few minutes of wall time
# (`make demo` runs it after building).
#
#   1. prepare a byte-level HDF5 dataset from text (this repository's own
#      docs and C sources);
#   2. train a small GPT on 2 ranks with mpirun under the supervisor; the
#      first attempt has rank 1 killed with SIGKILL mid-run (fault
#      injection), the supervisor restarts the job and it resumes from the
#      newest checkpoint;
#   3. export the trained model (safetensors + Hugging Face config, ONNX);
#   4. generate text with `baton infer`;
#   5. show where the metrics, TensorBoard logs and checkpoints are.
#
# usage: launch/demo.sh [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
baton="$build/baton"
run="$root/runs/demo"
cd "$root"
rm -rf "$run"
mkdir -p "$run"
t0=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. prepare: text -> $run/data.h5"
"$baton" prepare text -o "$run/data.h5" --chunk 4096 --val-fraction 0.05 \
  README.md docs/*.md trainer/*.c kernels/cpu/*.c data/*.c checkpoints/*.c

step "2. train: 2 ranks under the supervisor; rank 1 is killed at its 800th step"
# The job runs through launch/demo-attempt.sh, which injects the kill on the
# first attempt only (BATON_FAULT=train.step:800@1: SIGKILL on rank 1).
"$root/launch/baton-supervise" --backoff 1 --run-dir "$run" -- \
  bash "$root/launch/demo-attempt.sh" "$run" \
  mpirun -np 2 --oversubscribe --allow-run-as-root \
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    "$baton" train configs/tiny.ini --run-dir "$run" \
    --set data.path="$run/data.h5" --set model.context=128 --set train.steps=2000 \
    --set checkpoint.every=250 --set data.val_every=250 --set train.log_every=200 \
    --set optim.warmup_steps=50 --set train.threads=1

step "3. inspect and export the final checkpoint"
"$baton" inspect "$run/$(cat "$run/latest")" | tail -4
if "$baton" export "$run" --format safetensors -o "$run/export" &&
   "$baton" export "$run" --format onnx -o "$run/export"; then
  ls -l "$run/export"
  step "4. infer: generate from a prompt"
  "$baton" infer "$run/export" --prompt "static int " --max-new-tokens 110 \
    --temperature 0.8 --top-k 40 --seed 1
  echo
else
  echo "(export is not available in this build)"
fi

step "5. where things are"
cat <<TXT
run directory     $run
checkpoints       $(ls -d "$run"/ckpt-* | tr '\n' ' ')
latest            $(cat "$run/latest")
metrics (JSONL)   $run/metrics.jsonl
TensorBoard       tensorboard --logdir $run/tb
supervisor log    $run/supervisor.log
export            $run/export
demo took $(( $(date +%s) - t0 )) s
TXT
