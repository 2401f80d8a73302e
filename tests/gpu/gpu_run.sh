#!/bin/sh
# gpu_run.sh: wrapper for the GPU test that runs under another program.
#
#   gpu_run.sh sanitize TEST_GPU_OPS
#       runs TEST_GPU_OPS --small under compute-sanitizer memcheck,
#       racecheck (shared-memory hazards in our tiled kernels) and synccheck
#       (barrier misuse)
#
# It first asks TEST_GPU_OPS --probe whether a CUDA device is usable; if
# not, that prints "SKIPPED: no CUDA device (...)" and we exit 77 (ctest:
# skipped). Exit 0 only if every run passed.
set -u
mode=${1:-}
probe=${2:-}
if [ -z "$mode" ] || [ -z "$probe" ]; then
  echo "usage: gpu_run.sh sanitize TEST_GPU_OPS" >&2
  exit 2
fi

"$probe" --probe
rc=$?
if [ $rc -ne 0 ]; then
  exit $rc # 77 = skipped (the probe printed why), anything else = failure
fi

case "$mode" in
sanitize)
  cs=$(command -v compute-sanitizer 2>/dev/null)
  for c in /usr/local/cuda/bin/compute-sanitizer \
           /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$cs" ] && [ -x "$c" ] && cs=$c
  done
  if [ -z "$cs" ]; then
    echo "SKIPPED: no compute-sanitizer (not in PATH nor under /usr/local/cuda); a CUDA device exists, so install the CUDA toolkit's sanitizer to run this test"
    exit 77
  fi
  fail=0
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool"
    # --error-exitcode: a reported hazard fails the run even if every
    # numeric check of the test passed.
    if ! "$cs" --tool "$tool" --error-exitcode 99 "$probe" --small; then
      echo "FAIL: compute-sanitizer $tool"
      fail=1
    fi
  done
  exit $fail
  ;;
*)
  echo "gpu_run.sh: unknown mode '$mode'" >&2
  exit 2
  ;;
esac
