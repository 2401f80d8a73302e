#!/usr/bin/env bash
# test_device.sh MODE SRC BUILD WORK [PYTHON]: the ctest cases of tests/device
# (label `device`), the rehearsal of the device check on a machine without
# a GPU. Each mode is a check that fails when what it guards breaks:
#   syntax    bash -n of every script the device call runs, sh -n of
#             bench/gpu/run.sh, py_compile of the Python ones
#   dry_run   --dry-run lists all twelve parts with their limits, the limits
#             sum to at most 480 s, and nothing is created or run
#   no_gpu    without nvidia-smi, and with an nvidia-smi that fails, the
#             check exits 77 within seconds with "NO GPU" and runs nothing
#   closure   prepare.sh gathers the closure into WORK/prep (a ctest
#             fixture for fake_gpu), rehearse.sh proves it self-contained
#             under env -i, and the same proof (its static half) FAILS once
#             one library is taken out of the closure
#   fake_gpu  the whole check against an nvidia-smi that reports a GPU the
#             CUDA runtime cannot use: every part runs under its limit and
#             ends in the table, the logs come back in logs.tar.gz, and
#             the exit is 1 (GPU parts skipping on a GPU machine is a
#             failure), all within seconds; cudnn and speech must skip,
#             not fail (their binaries and -o names are valid)
set -euo pipefail
mode=$1 src=$2 build=$3 work=$4 py=${5:-python3}
d=$src/tests/device
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$work"
parts="gpu ops ops_contract cudnn speech memcheck racecheck synccheck train_vs_cpu infer bench_torch bench_baton"
nparts=$(wc -w <<<"$parts")

case "$mode" in
syntax)
  for f in "$d"/*.sh "$src/tests/gpu/train_vs_cpu.sh" "$src/tests/export/gpu_infer.sh" "$src/tests/export/fixture.sh"; do
    bash -n "$f" || fail "bash -n $f"
  done
  sh -n "$src/bench/gpu/run.sh" || fail "sh -n bench/gpu/run.sh"
  "$py" -m py_compile "$d/bench_report.py" "$src/bench/gpu/torch_gpt2.py" || fail "py_compile"
  echo "syntax: $(ls "$d"/*.sh | wc -l) scripts in tests/device, run.sh, 2 Python files: ok"
  ;;
dry_run)
  w=$work/dry-work
  rm -rf "$w"
  out=$(DEVICE_WORK=$w OUT=$w/out "$d/device_check.sh" --dry-run) || fail "--dry-run exited $?"
  echo "$out"
  for p in $parts; do
    grep -qE "^  part $p limit [0-9]+s: timeout -k 5 [0-9]+ bash -c '.+'$" <<<"$out" || fail "part $p missing from the plan"
  done
  sum=$(sed -n 's/^  part [a-z_]* limit \([0-9]*\)s.*/\1/p' <<<"$out" | awk '{ s += $1 } END { print s + 0 }')
  [ "$sum" -le 480 ] || fail "the parts' limits sum to $sum s, over 480"
  grep -q "^time limits: $sum s in all" <<<"$out" || fail "the printed total is not the sum of the parts ($sum)"
  grep -q 'LP=' <<<"$out" && grep -q 'BENCH_STEPS=' <<<"$out" || fail "the environment is not printed"
  [ ! -e "$w" ] || fail "--dry-run created $w"
  # Before prepare.sh has run it still prints the plan, and says so.
  out=$(DEVICE_WORK=$w OUT=$w/out "$d/device_check.sh" --dry-run --prepared "$work/none" 2>&1) || fail "unprepared --dry-run exited $?"
  grep -q "NOT prepared" <<<"$out" || fail "unprepared --dry-run does not say so"
  [ "$(grep -c '^  part ' <<<"$out")" = $nparts ] || fail "unprepared --dry-run lists other parts"
  echo "dry_run: $nparts parts, $sum s of limits, nothing created: ok"
  ;;
no_gpu)
  w=$work/nogpu-work
  rm -rf "$w"
  mkdir -p "$work/smi"
  printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."\nexit 9\n' >"$work/smi/nvidia-smi"
  chmod +x "$work/smi/nvidia-smi"
  for smi in "$work/nonexistent/nvidia-smi" "$work/smi/nvidia-smi"; do
    t0=$(date +%s)
    rc=0
    out=$(NVIDIA_SMI=$smi DEVICE_WORK=$w OUT=$w/out timeout 30 "$d/device_check.sh" 2>&1) || rc=$?
    echo "$out"
    [ "$rc" = 77 ] || fail "exit $rc with NVIDIA_SMI=$smi, want 77"
    grep -q "NO GPU" <<<"$out" || fail "no 'NO GPU' message"
    [ $(($(date +%s) - t0)) -le 10 ] || fail "took over 10 s to say there is no GPU"
    [ ! -e "$w" ] || fail "ran something: $w exists"
  done
  echo "no_gpu: exit 77 and 'NO GPU' both without nvidia-smi and with a failing one: ok"
  ;;
closure)
  prep=$work/prep
  PREPARE_ALLOW_CPU=1 "$d/prepare.sh" "$prep" "$build" || fail "prepare.sh"
  sz=$(du -sb "$prep" | cut -f1)
  [ "$sz" -le $((60 * 1024 * 1024)) ] || fail "prepared folder is $sz bytes"
  PYTHON=$py "$d/rehearse.sh" "$prep" "$src" || fail "the closure is not self-contained"
  [ -x "$prep/bin/test_gpu_cudnn" ] || fail "test_gpu_cudnn not carried"
  grep -q '^cudnn built ' "$prep/PREPARED" || fail "PREPARED lacks the cuDNN version built against"
  # A build that needs cuDNN carries its loader stub, so the binaries start
  # on a device without cuDNN (docs/gpu.md, "cuDNN: the device's").
  if grep -qx 'libcudnn.so.9' "$prep/cuda-sonames"; then
    [ -f "$prep/cuda-fallback/libcudnn.so.9" ] || fail "libcudnn.so.9 is needed but its stub is not in cuda-fallback/"
  fi
  # The proof must be able to fail: take one carried library out.
  neg=$work/prep-neg
  rm -rf "$neg" "$work/neg-lib"
  cp -r "$prep" "$neg"
  mkdir -p "$work/neg-lib"
  tar -xzf "$neg/lib.tar.gz" -C "$work/neg-lib"
  victim=$(cd "$work/neg-lib/lib" && ls | grep -E '^lib(zstd|xxhash|cjson|inih)\.so' | head -1)
  [ -n "$victim" ] || fail "no zstd/xxhash/cJSON/inih in the closure"
  rm "$work/neg-lib/lib/$victim"
  tar -cf - -C "$work/neg-lib" lib | gzip -1 >"$neg/lib.tar.gz"
  rc=0
  out=$(PYTHON=$py "$d/rehearse.sh" "$neg" "$src" --static 2>&1) || rc=$?
  rm -rf "$neg" "$work/neg-lib"
  [ "$rc" != 0 ] && grep -q "LEAK:.*$victim" <<<"$out" || { echo "$out"; fail "removing $victim from the closure went unnoticed"; }
  echo "closure: self-contained ($((sz / 1048576)) MiB); removing $victim is caught: ok"
  ;;
fake_gpu)
  prep=$work/prep
  [ -f "$prep/PREPARED" ] || fail "$prep not prepared (the closure test sets it up)"
  w=$work/fake-work
  rm -rf "$w"
  mkdir -p "$work/fakesmi"
  cat >"$work/fakesmi/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
-L) echo "GPU 0: Rehearsal GPU (UUID: GPU-00000000)" ;;
*query-gpu*) echo "Rehearsal GPU, 0.0, 0 MiB, 0.0" ;;
*query-compute-apps*) ;;
*) echo "rehearsal nvidia-smi" ;;
esac
EOF
  chmod +x "$work/fakesmi/nvidia-smi"
  rc=0
  out=$(PATH=$work/fakesmi:$PATH NVIDIA_SMI=$work/fakesmi/nvidia-smi PYTHON=$py DEVICE_WORK=$w \
    OUT=$w/out timeout 120 "$d/device_check.sh" --prepared "$prep" 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 1 ] || fail "exit $rc, want 1 (GPU parts skip although nvidia-smi reports a GPU)"
  logs=$(tar -tzf "$w/out/logs.tar.gz") || fail "logs.tar.gz unreadable"
  for p in $parts; do
    grep -qE "^$p +(pass|FAIL|timeout|not supported|skipped) +[0-9]+ +[0-9]+ " "$w/out/summary.txt" || fail "no row for $p in summary.txt"
    grep -qx "logs/$p.log" <<<"$logs" || fail "logs.tar.gz lacks $p.log"
  done
  grep -qE '^gpu +skipped' "$w/out/summary.txt" || fail "the gpu part did not report the unusable device as a skip"
  # A wrong -o name exits 2 (FAIL) before looking for a device, a missing
  # binary 127: skipped proves both are right.
  for p in cudnn speech; do
    grep -qE "^$p +skipped +[0-9]+ +[0-9]+ +SKIPPED: no CUDA device" "$w/out/summary.txt" || fail "part $p did not skip for want of a device"
  done
  grep -q '^cuDNN: built against .*, runtime .* from ' "$w/logs/gpu.log" || fail "the gpu part does not report the cuDNN versions"
  "$py" -c 'import json, sys; r = json.load(open(sys.argv[1])); assert len(r) == int(sys.argv[2]), r; assert all(x["limit"] > 0 for x in r), r' "$w/out/summary.json" "$nparts" || fail "summary.json"
  [ "$(ls "$w/out" | wc -l)" -le 8 ] || fail "more than 8 files in OUT (the device brings back 8)"
  echo "fake_gpu: $nparts parts in the table, logs packed, exit 1: ok"
  ;;
*) fail "unknown mode $mode" ;;
esac
