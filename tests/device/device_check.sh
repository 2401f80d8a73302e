#!/usr/bin/env bash
# device_check.sh: the whole GPU proof in one command, for the lent GPU
# machine (docs/gpu.md, "The device check"). It runs the binaries that
# tests/device/prepare.sh gathered into .device/ (built here, with their
# non-CUDA libraries) against the machine's CUDA, and prints one table.
#
# usage: tests/device/device_check.sh [--dry-run] [--only PART,...]
#                                     [--prepared DIR]
#   --dry-run   print every step (command, time limit, environment) and run
#               nothing; works on any machine
#   --only      run only these parts (a rerun after a failure)
#   --prepared  the prepared folder (default: .device in the repository)
#
# Parts, in order, each under its own `timeout` so that one hang cannot eat
# the call and a failure does not stop the rest (the limits sum to 480 s,
# the most one device call should take; the benchmark is last):
#   gpu           nvidia-smi: device, driver, memory; glibc; PREPARED; the
#                 cuDNN version the binaries load vs the one built against
#   ops           test_gpu_ops: every op vs the CPU backend, fp32, the
#                 bf16 GEMM mode (BATON_CUDA_GEMM=bf16, inside the test) and
#                 bf16 storage (train.precision = bf16) vs the CPU's bf16 mode
#   ops_contract  test_ops cuda: the op contract (fp64 refs, finite diffs)
#   cudnn         test_gpu_cudnn: cuDNN fused attention (bf16) vs the flash
#                 kernels, forward, backward, determinism, graph cache
#   speech        test_gpu_ops -o conv1d -o attention_masked_fwd -o ctc:
#                 the speech ops (cuDNN conv1d, masked flash attention, CTC)
#                 alone, so their errors and time are a row of their own
#   memcheck, racecheck, synccheck
#                 compute-sanitizer on test_gpu_ops --small
#   train_vs_cpu  tests/gpu/train_vs_cpu.sh: 50 steps CUDA vs CPU, and
#                 checkpoints crossing backends
#   infer         tests/export/gpu_infer.sh: `baton infer --backend cuda`
#                 vs CPU on freshly made fixtures
#   bench_torch, bench_baton
#                 bench/gpu/run.sh: GPT-2 124M, PyTorch then baton (fp32 and
#                 bf16 GEMMs), tokens/s, MFU vs 989 TFLOP/s, peak memory,
#                 step-time breakdown (bench_report.py)
#
# Outputs: on the device the tool brings back at most 8 files from $OUT, no
# deeper than two folders, so the part logs are not files of their own
# there: they are written to $WORK/logs/<part>.log and packed, after every
# part, into $OUT/logs.tar.gz; $OUT/summary.txt holds the table,
# $OUT/summary.json the same as JSON, $OUT/bench.json the benchmark figures.
# Off the device, OUT defaults to $WORK/out (WORK: /tmp/baton-device-check).
#
# Exit: 0 every part passed (or its tool is not supported there); 1 a part
# failed, timed out, or skipped itself on a machine that has a GPU; 2 usage,
# or the prepared folder is missing or unusable; 77 no GPU here (nvidia-smi
# absent or failing): nothing ran.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=libpath.sh
. "$here/libpath.sh"

dry=0 only="" prep=$root/.device
while [ $# -gt 0 ]; do
  case "$1" in
  --dry-run) dry=1 ;;
  --only) only=${2:-}; shift ;;
  --only=*) only=${1#--only=} ;;
  --prepared) prep=${2:-}; shift ;;
  --prepared=*) prep=${1#--prepared=} ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "device_check.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
  esac
  shift
done

WORK=${DEVICE_WORK:-/tmp/baton-device-check}
OUT=${OUT:-$WORK/out}
PY=${PYTHON:-python3}
# The prepared binaries the parts run (each gets a wrapper in $WORK/bin).
bins=(baton test_gpu_ops test_gpu_cudnn test_ops)
NVSMI=${NVIDIA_SMI:-nvidia-smi}
BENCH_BATCH=${BENCH_BATCH:-16}
BENCH_STEPS=${BENCH_STEPS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_MODES=${BENCH_MODES:-fp32 bf16}
BUDGET=480

parts=(gpu ops ops_contract cudnn speech memcheck racecheck synccheck train_vs_cpu infer bench_torch bench_baton)
# First estimates (nothing has run on a GPU yet), re-budgeted for cudnn and
# speech inside the same 480 s (docs/gpu.md, "What the check runs").
declare -A limit=([gpu]=10 [ops]=40 [ops_contract]=15 [cudnn]=45 [speech]=20
  [memcheck]=35 [racecheck]=40 [synccheck]=35 [train_vs_cpu]=50 [infer]=30
  [bench_torch]=100 [bench_baton]=60)
# Each command runs in `bash -c` with the variables below exported. $B/X is
# a wrapper that runs the prepared X with LD_LIBRARY_PATH=$LP (only there:
# python3, nvidia-smi and compute-sanitizer keep the machine's libraries).
declare -A cmd
cmd[gpu]='$NVSMI --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader && $NVSMI && ldd --version | head -1 && uname -r && cat $PREP/PREPARED && echo "LD_LIBRARY_PATH for the binaries: $LP" && cudnn_check && $B/baton version && $B/test_gpu_ops --probe'
cmd[ops]='$B/test_gpu_ops'
cmd[ops_contract]='$B/test_ops cuda'
cmd[cudnn]='$B/test_gpu_cudnn'
cmd[speech]='$B/test_gpu_ops -o conv1d -o attention_masked_fwd -o ctc'
for t in memcheck racecheck synccheck; do
  cmd[$t]='[ -n "$CS" ] || { echo "not supported: no compute-sanitizer in PATH, next to nvcc or under /usr/local/cuda"; exit 3; }; env LD_LIBRARY_PATH="$LP" "$CS" --tool '$t' --error-exitcode 99 $PREP/bin/test_gpu_ops --small'
done
cmd[train_vs_cpu]='bash $W/train_vs_cpu.sh $B/baton $B/test_gpu_ops $ROOT/tests/train/micro.ini'
cmd[infer]='$B/test_gpu_ops --probe && bash $ROOT/tests/export/fixture.sh $B/baton $ROOT $W/fx/gpt gpt && bash $ROOT/tests/export/fixture.sh $B/baton $ROOT $W/fx/mlp mlp && sh $ROOT/tests/export/gpu_infer.sh $B/test_gpu_ops $B/baton $PY $W/fx'
cmd[bench_torch]='cd $ROOT && SYSTEMS=pytorch BUILD=$B OUT=$W/bench PYTHON=$PY BATCH=$BENCH_BATCH STEPS=$BENCH_STEPS WARMUP=$BENCH_WARMUP sh bench/gpu/run.sh && { [ -s $W/bench/torch.json ] || { echo "SKIPPED: PyTorch wrote no torch.json (above)"; exit 77; }; }'
cmd[bench_baton]='cd $ROOT && SYSTEMS=baton MODES="$BENCH_MODES" BUILD=$B OUT=$W/bench PYTHON=$PY BATCH=$BENCH_BATCH STEPS=$BENCH_STEPS WARMUP=$BENCH_WARMUP sh bench/gpu/run.sh'

if [ -n "$only" ]; then
  for p in ${only//,/ }; do
    [ -n "${cmd[$p]:-}" ] || { echo "device_check.sh: --only: no part '$p' (parts: ${parts[*]})" >&2; exit 2; }
  done
fi
selected() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
total=0
for p in "${parts[@]}"; do total=$((total + limit[$p])); done

# compute-sanitizer: PATH, next to nvcc, or the toolkit's usual places.
find_cs() {
  local c n
  c=$(command -v compute-sanitizer 2>/dev/null) && { echo "$c"; return; }
  n=$(command -v nvcc 2>/dev/null) && [ -x "$(dirname "$n")/compute-sanitizer" ] && { echo "$(dirname "$n")/compute-sanitizer"; return; }
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -x "$c" ] && { echo "$c"; return; }
  done
  return 0
}

if [ "$dry" = 1 ]; then
  echo "device_check.sh --dry-run: nothing is run"
  echo "environment:"
  echo "  ROOT=$root"
  echo "  PREP=$prep $( [ -f "$prep/PREPARED" ] && echo "(prepared: $(head -1 "$prep/PREPARED"))" || echo "(NOT prepared yet: tests/device/prepare.sh .device)")"
  echo "  OUT=$OUT WORK=$WORK (logs in \$WORK/logs, packed into \$OUT/logs.tar.gz)"
  echo "  W=$WORK B=$WORK/bin (wrappers: ${bins[*]} -> \$PREP/bin with LD_LIBRARY_PATH=\$LP)"
  echo "  LP=\$WORK/lib (\$PREP/lib.tar.gz unpacked), then the CUDA folders libpath.sh finds for: $(tr '\n' ' ' 2>/dev/null <"$prep/cuda-sonames" || echo '(cuda-sonames: not prepared)')"
  echo "  PY=$PY NVSMI=$NVSMI CS=$(find_cs || true) PYTHONUNBUFFERED=1"
  echo "  BENCH_BATCH=$BENCH_BATCH BENCH_STEPS=$BENCH_STEPS BENCH_WARMUP=$BENCH_WARMUP BENCH_MODES=\"$BENCH_MODES\""
  echo "  train_vs_cpu.sh is run from a copy in \$W whose /usr/bin/python3 is replaced by \$PY when that python lacks numpy"
  echo "  cudnn_check (in part gpu): the cuDNN found for libcudnn.so.9, its cudnnGetVersion() vs PREPARED's 'cudnn built'"
  echo "  nvidia-smi samples per-process GPU memory during bench_torch and bench_baton (\$WORK/logs/<part>.mem)"
  echo "steps:"
  for p in "${parts[@]}"; do
    if selected "$p"; then s=""; else s=" (not selected: skipped)"; fi
    echo "  part $p limit ${limit[$p]}s$s: timeout -k 5 ${limit[$p]} bash -c '${cmd[$p]}'"
  done
  echo "  then: bench_report.py \$W/bench $BENCH_WARMUP \"$BENCH_MODES\" ... -> \$OUT/bench.json; table (part, status, seconds, limit, key figures) -> \$OUT/summary.txt, \$OUT/summary.json"
  echo "time limits: $total s in all (budget $BUDGET s)"
  [ "$total" -le "$BUDGET" ] || { echo "device_check.sh: the limits sum to $total s, over the $BUDGET s budget" >&2; exit 1; }
  exit 0
fi

# No GPU: say so at once, distinctly, and run nothing.
if ! command -v "$NVSMI" >/dev/null 2>&1; then
  echo "device_check.sh: NO GPU: '$NVSMI' not found; this check needs the lent GPU machine (docs/gpu.md, \"The device check\"). Nothing ran."
  exit 77
fi
if ! smi=$(timeout 20 "$NVSMI" -L 2>&1) || ! grep -q '^GPU ' <<<"$smi"; then
  echo "device_check.sh: NO GPU: '$NVSMI -L' failed or lists no GPU: ${smi:-no output}. Nothing ran."
  exit 77
fi

# The prepared folder (carried with the call).
for f in PREPARED cuda-sonames lib.tar.gz "${bins[@]/#/bin/}"; do
  [ -e "$prep/$f" ] || { echo "device_check.sh: $prep/$f missing: run tests/device/prepare.sh .device here and carry .device" >&2; exit 2; }
done
prep=$(cd "$prep" && pwd)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || true)
if [ -n "$commit" ] && ! grep -q "^commit $commit" "$prep/PREPARED"; then
  echo "device_check.sh: WARNING: the binaries were prepared from $(head -1 "$prep/PREPARED"), the tree is at $commit"
fi

chmod +x "$prep"/bin/* 2>/dev/null # in case the copy to the device lost the bits
rm -rf "$WORK/logs" "$WORK/bin" "$WORK/lib" "$WORK/bench" "$WORK/fx"
mkdir -p "$WORK/logs" "$WORK/bin" "$OUT"
tar -xzf "$prep/lib.tar.gz" -C "$WORK" || { echo "device_check.sh: cannot unpack $prep/lib.tar.gz" >&2; exit 2; }
LP=$(dev_libpath "$WORK/lib" "$prep" "$PY" 2>"$WORK/logs/libpath.log")
lp_rc=$?
cat "$WORK/logs/libpath.log"
[ "$lp_rc" = 0 ] || echo "device_check.sh: WARNING: a CUDA library is missing (above): the GPU parts will fail to start"
for x in "${bins[@]}"; do
  printf '#!/usr/bin/env bash\nLD_LIBRARY_PATH=%q exec %q "$@"\n' "$LP" "$prep/bin/$x" >"$WORK/bin/$x"
  chmod +x "$WORK/bin/$x"
done
# train_vs_cpu.sh reads its numbers with /usr/bin/python3 + numpy; the
# device's numpy is in the python3 that holds torch.
cp "$root/tests/gpu/train_vs_cpu.sh" "$WORK/train_vs_cpu.sh"
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  sed -i "s|^py=/usr/bin/python3|py=$(command -v "$PY")|" "$WORK/train_vs_cpu.sh"
fi
CS=$(find_cs)
# The folder libpath.sh took libcudnn.so.9 from (a wheel, a toolkit, or
# the carried stub in cuda-fallback/).
CUDNN_DIR=$(sed -n 's/^libpath: libcudnn\.so\.[0-9]* from //p' "$WORK/logs/libpath.log" | head -1)
[ -n "$CUDNN_DIR" ] || CUDNN_DIR=$prep/cuda-fallback
# cudnn_check: which cuDNN the binaries load and whether it is older than
# the headers they were built against (cuDNN 9 keeps its ABI within the
# major version, but the frontend refuses features the runtime lacks, and
# the stub alone means no engines: the cudnn part then skips, and fails).
cudnn_check() {
  local built run
  built=$(sed -n 's/^cudnn built //p' "$PREP/PREPARED")
  run=$("$PY" -c 'import ctypes, sys; v = ctypes.CDLL(sys.argv[1]).cudnnGetVersion(); print("%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100))' "$CUDNN_DIR/libcudnn.so.9" 2>&1 | tail -1)
  echo "cuDNN: built against ${built:-?}, runtime $run from $CUDNN_DIR"
  if [ "$CUDNN_DIR" = "$PREP/cuda-fallback" ]; then
    echo "cuDNN: WARNING: only the carried loader stub: no engine libraries, the cudnn part cannot pass"
  elif [ -n "$built" ] && [ "$(printf '%s\n%s\n' "$built" "$run" | sort -V | head -1)" != "$built" ]; then
    echo "cuDNN: WARNING: the runtime is older than the headers baton was built against"
  fi
  return 0
}
export -f cudnn_check
export ROOT=$root PREP=$prep W=$WORK B=$WORK/bin LP PY NVSMI CS CUDNN_DIR
export BENCH_BATCH BENCH_STEPS BENCH_WARMUP BENCH_MODES PYTHONUNBUFFERED=1

declare -A status secs key
pack() {
  # Not the checkpoints baton writes at its last step (1.5 GB at 124M).
  tar -czf "$OUT/logs.tar.gz" --exclude='ckpt-*' --exclude=latest -C "$WORK" logs \
    $( [ -d "$WORK/bench" ] && echo bench ) 2>/dev/null || true
}
# key_<part> LOG: the part's key figure, one line.
keyfig() {
  local p=$1 log=$2
  case "$p" in
  gpu) { head -1 "$log"; grep -m1 -o 'runtime [0-9.]*' "$log" | sed 's/runtime/cuDNN/'; } | paste -sd ';' - | sed 's/;/; /' ;;
  ops | ops_contract | speech)
    # The case nearest its limit (largest relerr / limit), fp32 and bf16
    # apart: "relerr E (limit L)" is what run_case prints.
    awk '/relerr/ { for (i = 1; i < NF; i++) if ($i == "relerr") {
             v = $(i + 1) + 0; l = $(i + 3); gsub(/[^0-9.e+-]/, "", l); l += 0;
             r = l > 0 ? v / l : 0; k = ($1 == "bf16") ? "bf16" : "fp32";
             if (!(k in w) || r > w[k]) { w[k] = r; e[k] = v; m[k] = l; n[k] = (k == "bf16") ? $2 : $1 } } }
         /^ran [0-9]+ of/ { ran = $2 "/" $4 " cases" }
         /passed, .* failed/ { pf = $0 }
         END { s = pf (ran ? " (" ran ")" : "");
               split("fp32 bf16", ks, " ");
               for (j = 1; j <= 2; j++) if ((k = ks[j]) in w)
                 s = s sprintf("; worst %s %s %.1e vs limit %.0e", k, n[k], e[k], m[k]);
               print s }' "$log" ;;
  cudnn)
    # "B=.. T=..: out E (tol L)  stats E (tol L)  dqkv E (tol L) ...": the
    # worst of each quantity over the shapes, against its limit.
    awk '/^B=.*: out / { for (i = 1; i < NF; i++) if ($i == "out" || $i == "stats" || $i == "dqkv")
             if ($(i + 2) == "(tol") { v = $(i + 1) + 0; t = $(i + 3); gsub(/[()]/, "", t);
               if (v >= w[$i]) w[$i] = v; tol[$i] = t; nshape[$i]++ } }
         /passed, .* failed/ { pf = $0 }
         END { s = pf; if (nshape["out"]) s = s sprintf(" (%d shapes)", nshape["out"]);
               split("out stats dqkv", q, " ");
               for (j = 1; j <= 3; j++) if (q[j] in w) s = s sprintf("; %s %.1e/%s", q[j], w[q[j]], tol[q[j]]);
               print s }' "$log" ;;
  memcheck | synccheck) grep -o 'ERROR SUMMARY: .*' "$log" | tail -1 ;;
  racecheck) grep -oE '(RACECHECK|ERROR) SUMMARY: .*' "$log" | tail -1 ;;
  train_vs_cpu) grep -oE 'worst relative loss difference GPU vs CPU [0-9.e+-]+|within [0-9.e+-]+ of (cpu|cuda)' "$log" | sed 's/worst relative loss difference GPU vs CPU/loss/' | paste -sd ' ' - ;;
  infer) grep -oE '(cpu vs gpu|mcpu vs mgpu) logits: rel err [0-9.e+-]+' "$log" | sed 's/ logits: rel err/:/' | paste -sd ' ' - ;;
    # run.sh's table rows: system, precision (1-3 words), tokens/s, MFU, ratio
  bench_torch) grep -E '^pytorch ' "$log" | tail -1 | awk '{ printf "%s tok/s, MFU %s", $(NF-2), $(NF-1) }' ;;
  bench_baton) grep -E '^baton-' "$log" | awk '{ printf "%s%s %s tok/s %s %s", (NR > 1 ? "; " : ""), $1, $(NF-2), $(NF-1), $NF }' ;;
  esac
}

t_all=$(date +%s)
for p in "${parts[@]}"; do
  log=$WORK/logs/$p.log
  if ! selected "$p"; then status[$p]="skipped"; secs[$p]=0; key[$p]="not selected (--only)"; continue; fi
  echo "== $p (limit ${limit[$p]} s) $(date -u +%H:%M:%S)"
  sampler=""
  case "$p" in bench_*)
    "$NVSMI" --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 250 >"$WORK/logs/$p.mem" 2>/dev/null &
    sampler=$!
    ;;
  esac
  t0=$(date +%s.%N)
  timeout -k 5 "${limit[$p]}" bash -c "${cmd[$p]}" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  secs[$p]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
  if [ $rc = 0 ]; then
    status[$p]=pass
  elif [ $rc = 124 ] || [ $rc = 137 ]; then
    status[$p]=timeout
  elif [ $rc = 77 ]; then
    status[$p]=skipped
  elif grep -qiE '^not supported:|Device not supported|not supported on this (device|platform)|CUDA_ERROR_NOT_SUPPORTED|Target application returned an error.*999|error 999' "$log" && [[ $p =~ check$ ]]; then
    status[$p]="not supported"
  else
    status[$p]=FAIL
  fi
  key[$p]=$(keyfig "$p" "$log" 2>/dev/null | head -1 | cut -c1-160)
  [ "${status[$p]}" = "skipped" ] && key[$p]=$(grep -m1 -o 'SKIPPED.*' "$log" | cut -c1-110)
  [ "${status[$p]}" = "not supported" ] && key[$p]=$(grep -m1 -oiE '(not supported.*|error 999.*)' "$log" | cut -c1-110)
  # No figure (a failure, an unexpected skip): the log's last words.
  [ -n "${key[$p]}" ] || key[$p]=$(grep -v '^[[:space:]]*$' "$log" | tail -1 | cut -c1-110)
  echo "   ${status[$p]} in ${secs[$p]} s (rc $rc): ${key[$p]}"
  pack
done

# The benchmark's own table (peak memory, step breakdown) and the summary.
bench_tab=""
if [ -d "$WORK/bench" ]; then
  bench_tab=$("$PY" "$here/bench_report.py" "$WORK/bench" "$BENCH_WARMUP" "$BENCH_MODES" \
    "$WORK/logs/bench_torch.mem" "$WORK/logs/bench_baton.mem" "$OUT/bench.json" 2>&1)
fi
for p in "${parts[@]}"; do
  case "${status[$p]}" in FAIL | timeout)
    echo "---- last lines of $p.log (${status[$p]})"
    tail -n 15 "$WORK/logs/$p.log"
    ;;
  esac
done
bad=0
{
  echo "baton device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - t_all )) s; $(head -1 "$prep/PREPARED")"
  printf '%-13s %-13s %5s %5s  %s\n' part status s limit "key figures"
  for p in "${parts[@]}"; do
    printf '%-13s %-13s %5s %5s  %s\n' "$p" "${status[$p]}" "${secs[$p]}" "${limit[$p]}" "${key[$p]}"
    case "${status[$p]}" in FAIL | timeout) bad=1 ;; skipped) [ "${key[$p]}" = "not selected (--only)" ] || bad=1 ;; esac
  done
  if [ -n "$bench_tab" ]; then echo; echo "GPT-2 124M, B=$BENCH_BATCH T=1024, median of $BENCH_STEPS steps after $BENCH_WARMUP (MFU vs 989 TFLOP/s dense bf16):"; echo "$bench_tab"; fi
} >"$OUT/summary.txt"
"$PY" - "$OUT/summary.json" <<PY 2>/dev/null || true
import json, sys
rows = """$(for p in "${parts[@]}"; do printf '%s\t%s\t%s\t%s\t%s\n' "$p" "${status[$p]}" "${secs[$p]}" "${limit[$p]}" "${key[$p]//\"/}"; done)"""
out = [dict(zip(("part", "status", "seconds", "limit", "key"), l.split("\t"))) for l in rows.splitlines() if l]
for r in out:
    r["seconds"] = int(r["seconds"])
    r["limit"] = int(r["limit"])
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
pack
echo
cat "$OUT/summary.txt"
exit $bad
