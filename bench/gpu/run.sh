#!/bin/sh
# bench/gpu/run.sh: GPT-2 124M training throughput on one GPU, baton next to
# PyTorch (bench/gpu/torch_gpt2.py), same model, micro-batch and context.
#
# Usage (from the repository root, on a GPU machine, after building):
#   bench/gpu/run.sh                       # defaults below
#   BATCH=8 STEPS=40 bench/gpu/run.sh
#   MODES=bf16 bench/gpu/run.sh            # only baton's bf16-GEMM mode
#
# Environment:
#   BUILD   build directory holding `baton`         (default: build)
#   BATCH   micro-batch (sequences per step)         (default: 16)
#   STEPS   timed optimizer steps per system         (default: 30)
#   WARMUP  untimed steps first                      (default: 5)
#   OUT     results directory                        (default: bench/gpu/out)
#   PYTHON  interpreter with torch                   (default: python3)
#   MODES   baton GEMM modes to run (BATON_CUDA_GEMM) (default: "fp32 bf16")
#   SYSTEMS which systems to run                     (default: "pytorch baton")
#           SYSTEMS=pytorch then SYSTEMS=baton with the same OUT gives the
#           same table in two calls, each under its own time limit (the
#           device check does this, so a torch.compile that hangs cannot
#           cost baton's numbers); the table reads OUT/torch.json if there.
#
# Output: a table (system, precision, tokens/s, MFU, ratio to PyTorch) and
# OUT/results.json with both systems' numbers. MFU uses FLOPs/token =
# 6 N + 6 L C T over 989e12 (H100 SXM dense bf16) for both systems, so the
# columns are comparable; baton runs once per GEMM mode: fp32 (everything
# fp32) and bf16 (bf16 GEMM operands, the rest fp32; docs/gpu.md), so its
# MFU against a bf16 peak is expected to be low.
#
# Exit: 0 when both ran, 77 when there is no GPU (nothing measured), 1 on a
# failure of either system.
set -eu

BUILD=${BUILD:-build}
BATCH=${BATCH:-16}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
OUT=${OUT:-bench/gpu/out}
PYTHON=${PYTHON:-python3}
MODES=${MODES:-fp32 bf16}
SYSTEMS=${SYSTEMS:-pytorch baton}
case " $SYSTEMS " in *" baton "*) run_baton=1 ;; *) run_baton=0; MODES="" ;; esac
CONFIG=configs/gpt2-124m.ini
here=$(dirname "$0")

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIPPED: no CUDA device (nvidia-smi not found or lists no GPU)"
  exit 77
fi
if [ "$run_baton" = 1 ] && [ ! -x "$BUILD/baton" ]; then
  echo "bench/gpu/run.sh: $BUILD/baton not found: build first (cmake -S . -B $BUILD && cmake --build $BUILD)" >&2
  exit 1
fi
if [ "$run_baton" = 1 ] && ! "$BUILD/baton" version | grep -q "cuda"; then
  echo "bench/gpu/run.sh: $BUILD/baton was built without the CUDA backend" >&2
  exit 1
fi
if [ ! -f "$CONFIG" ]; then
  echo "bench/gpu/run.sh: $CONFIG not found (run from the repository root)" >&2
  exit 1
fi
mkdir -p "$OUT"
nvidia-smi -L | head -1

# ---- PyTorch ---------------------------------------------------------------
case " $SYSTEMS " in *" pytorch "*)
  echo "== PyTorch GPT-2 124M (bf16 autocast, torch.compile, fused AdamW, SDPA)"
  rm -f "$OUT/torch.json"
  torch_rc=0
  "$PYTHON" "$here/torch_gpt2.py" --batch-size "$BATCH" --steps "$STEPS" \
    --warmup "$WARMUP" --json "$OUT/torch.json" || torch_rc=$?
  if [ "$torch_rc" -ne 0 ] && [ "$torch_rc" -ne 77 ]; then
    echo "bench/gpu/run.sh: the PyTorch run failed (exit $torch_rc)" >&2
    exit 1
  fi
  ;;
esac

# ---- baton -----------------------------------------------------------------
# One optimizer step = one micro-batch of BATCH sequences (grad_accum = 1),
# as the PyTorch run; no checkpoints during the timed steps.
total=$((STEPS + WARMUP))
runs=""
for mode in $MODES; do
  echo "== baton GPT-2 124M (backend cuda, BATON_CUDA_GEMM=$mode)"
  run_dir="$OUT/baton-run-$mode"
  rm -rf "$run_dir"
  BATON_CUDA_GEMM=$mode "$BUILD/baton" train "$CONFIG" \
    --set train.backend=cuda \
    --set train.steps="$total" \
    --set train.batch_size="$BATCH" \
    --set train.grad_accum=1 \
    --set train.log_every=1 \
    --set checkpoint.every=0 \
    --run-dir "$run_dir" --resume never
  runs="$runs $mode=$run_dir/metrics.jsonl"
done

# ---- table -------------------------------------------------------------------
# baton's per-step numbers come from RUN/metrics.jsonl ("perf/tokens_per_s"
# per step); the median over the steps after the warm-up is reported.
# $runs is a list of words on purpose (unquoted).
"$PYTHON" - "$OUT/torch.json" "$OUT/results.json" "$WARMUP" "$BATCH" $runs <<'EOF'
import json, os, statistics, sys
torch_json, out_json, warmup, batch = sys.argv[1:5]
runs = [a.split("=", 1) for a in sys.argv[5:]]
warmup, batch = int(warmup), int(batch)
L, C, T, V = 12, 768, 1024, 50304
N = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C  # 124,475,904
flops_per_token = 6 * N + 6 * L * C * T
peak = 989e12
res = {}
if os.path.exists(torch_json):
    with open(torch_json) as f:
        res["pytorch"] = json.load(f)
for mode, metrics in runs:
    rates = []
    with open(metrics) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("step", 0) > warmup and "perf/tokens_per_s" in r:
                rates.append(r["perf/tokens_per_s"])
    if not rates:
        sys.exit("no timed baton steps in " + metrics)
    tok = statistics.median(rates)
    res["baton-" + mode] = {
        "system": "baton", "gemm": mode,
        "precision": "fp32" if mode == "fp32" else "fp32, %s GEMM" % mode,
        "B": batch, "T": T, "timed_steps": len(rates), "tokens_per_s": tok,
        "flops_per_token": flops_per_token, "peak_flops": peak,
        "mfu": tok * flops_per_token / peak}
print("%-12s %-18s %11s %7s %8s" % ("system", "precision", "tokens/s", "MFU",
                                     "vs torch"))
ref = res.get("pytorch", {}).get("tokens_per_s")
if "pytorch" not in res:
    print("%-12s %-18s %11s" % ("pytorch", "-", "skipped"))
for k, r in res.items():
    ratio = "%.2fx" % (r["tokens_per_s"] / ref) if ref else "-"
    print("%-12s %-18s %11.0f %6.1f%% %8s" % (k, r["precision"],
          r["tokens_per_s"], 100 * r["mfu"], ratio))
with open(out_json, "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
print("results: " + out_json)
EOF
