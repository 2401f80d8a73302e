#!/usr/bin/env bash
# rehearse.sh PREP SRC [--static]: proves, on this machine, that the prepared folder
# PREP (tests/device/prepare.sh) is self-contained: that its binaries find
# every non-CUDA library in its own closure, not in what this machine
# happens to have installed, and that they run with only the variables the
# device check sets.
#
# This machine has every library installed, so running the binaries alone
# would prove nothing. Instead:
#   1. static: the loader resolves the binaries' whole closure (ld.so
#      --list, cache off) with LD_LIBRARY_PATH as the device check builds
#      it; every library must come from the unpacked closure, except glibc
#      and the CUDA libraries the device supplies;
#   2. dynamic: `baton version`, a 3-step CPU training of SRC's
#      tests/train/micro.ini and `test_ops cpu` run under `env -i` with
#      only PATH and LD_LIBRARY_PATH, and LD_DEBUG=libs records every
#      library initialised, dlopen()ed ones included: same rule as 1.
# --static stops after 1 (the ctest's negative case needs no more).
# Exit 0 when both hold; 1 with the offending library named.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prep=${1:?usage: rehearse.sh PREP SRC}
src=${2:?usage: rehearse.sh PREP SRC}
static_only=${3:-}
prep=$(cd "$prep" && pwd)
. "$here/libpath.sh"
t=$(mktemp -d /tmp/baton-rehearse.XXXXXX)
trap 'rm -rf "$t"' EXIT
tar -xzf "$prep/lib.tar.gz" -C "$t"
lp=$(dev_libpath "$t/lib" "$prep" "${PYTHON:-python3}")
loader=/lib64/ld-linux-x86-64.so.2
glibc_re='^(ld-linux-x86-64|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnss_[a-z]+|libthread_db|libBrokenLocale)\.so'
cuda_re='^(libcuda|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl|libnvidia-[a-z-]+|libnvrtc|libnvJitLink)\.so'
bad=0
# judge PATH WHAT: a library outside the closure that is neither glibc nor
# a CUDA library is a leak.
judge() {
  local path=$1 what=$2 name
  name=$(basename "$path")
  case "$path" in "$t/lib/"*) return 0 ;; esac
  [[ $name =~ $glibc_re ]] && return 0
  [[ $name =~ $cuda_re ]] && return 0
  [[ $name == linux-vdso* ]] && return 0
  echo "LEAK: $what uses $path, not in the closure (add it to prepare.sh's copy)"
  bad=1
}

# 1. static resolution
for b in "$prep"/bin/*; do
  n=0
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then echo "MISSING: $(basename "$b") needs $name: found nowhere"; bad=1; continue; fi
    judge "$path" "$(basename "$b") (ld.so --list)"
    n=$((n + 1))
  done < <(env -i LD_LIBRARY_PATH="$lp" "$loader" --inhibit-cache --list "$b")
  echo "static: $(basename "$b"): $n libraries resolved"
done

if [ "$static_only" = --static ]; then
  [ "$bad" = 0 ] || exit 1
  echo "closure OK (static resolution only)"
  exit 0
fi

# 2. dynamic: what really gets loaded, under env -i
run() {
  env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$lp" OMP_NUM_THREADS=1 \
    LD_DEBUG=libs LD_DEBUG_OUTPUT="$t/ld" "$@"
}
run "$prep/bin/baton" version >"$t/version.txt"
grep -q '^baton ' "$t/version.txt" || { echo "FAIL: baton version printed:"; cat "$t/version.txt"; exit 1; }
run "$prep/bin/baton" train "$src/tests/train/micro.ini" --run-dir "$t/run" \
  --set train.steps=3 --set train.backend=cpu --resume never >"$t/train.txt" 2>&1 \
  || { echo "FAIL: baton train under env -i:"; cat "$t/train.txt"; exit 1; }
run "$prep/bin/test_ops" cpu >"$t/ops.txt" 2>&1 || { echo "FAIL: test_ops cpu under env -i:"; tail "$t/ops.txt"; exit 1; }
n=0
while read -r path; do
  judge "$path" "a run under env -i (LD_DEBUG)"
  n=$((n + 1))
done < <(cat "$t"/ld.* | sed -n 's/.*calling init: //p' | sort -u)
[ "$n" -gt 10 ] || { echo "FAIL: LD_DEBUG recorded only $n libraries: the check saw nothing"; exit 1; }
echo "dynamic: baton version, baton train (3 CPU steps), test_ops cpu ($(tail -1 "$t/ops.txt")): $n distinct libraries initialised"
[ "$bad" = 0 ] || exit 1
echo "closure OK: every non-CUDA library came from the prepared closure"
