#!/usr/bin/env bash
# prepare.sh OUTDIR [BUILD]: gathers into OUTDIR (an ignored folder, normally
# .device/) everything the lent GPU machine lacks to run the device check:
# the binaries built here and the closure of their non-CUDA shared libraries.
# The device machine has CUDA, PyTorch and CMake but no Open MPI, HDF5,
# OpenBLAS, zstd, xxhash, cJSON, inih or protobuf-c, and no network
# (docs/gpu.md, "The device check", says why we carry binaries rather than
# Debian packages).
#
# OUTDIR afterwards (it is recreated):
#   bin/            baton, test_gpu_ops, test_gpu_cudnn, test_ops, as built
#                   in BUILD
#   lib.tar.gz      lib/: every shared library `ldd` resolves for them,
#                   under its SONAME, except glibc and CUDA's own libraries;
#                   compressed because Debian's OpenBLAS alone is 36 MB (one
#                   kernel set per CPU type), 64 MB for lib/ against 23 MB
#                   gzipped; gzip and tar are on every Debian/Ubuntu image
#   cuda-sonames    the CUDA SONAMEs the binaries and lib/ need (readelf -d);
#                   the device supplies them (libpath.sh)
#   cuda-fallback/  libcudart.so.N and cuDNN's loader stub libcudnn.so.9
#                   from this machine's toolkit, used only if no wheel or
#                   toolkit on the device provides them (small; the large
#                   cuBLASLt, NCCL and cuDNN's engine libraries, 0.5 GB for
#                   cuDNN alone, must come from the device). With the stub
#                   alone the binaries still load and the cuDNN part reports
#                   cuDNN unavailable instead of every part failing to start
#   PREPARED        commit, build type, CUDA architectures, sizes: the device
#                   check prints it and warns when the commit differs
# Unpack with `tar -xzf OUTDIR/lib.tar.gz -C DIR` (device_check.sh does).
#
# Invariants: OUTDIR stays under 60 MiB (the device call carries 64 MiB in
# all, the working tree included); nothing outside OUTDIR is written.
# Exit: 0 prepared; 1 something missing or too large; 2 usage.
# PREPARE_ALLOW_CPU=1 accepts a build without the CUDA backend (the
# rehearsal in a CPU-only build uses it); otherwise that is an error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-}
build=${2:-$root/build}
if [ -z "$out" ] || [ "$out" = "-h" ] || [ "$out" = "--help" ]; then
  echo "usage: tests/device/prepare.sh OUTDIR [BUILD]   (e.g. .device build)" >&2
  exit 2
fi
die() { echo "prepare.sh: $*" >&2; exit 1; }
[ -d "$build" ] || die "build folder '$build' not found: build first (docs/gpu.md)"
build=$(cd "$build" && pwd)

# The binaries the check runs, found by name: test directories move
# (tests/unit -> tests/kernels), target names stay.
find_bin() {
  local f
  f=$(find "$build" -path "$build/layers" -prune -o -type f -name "$1" -perm -u+x -print | head -1)
  [ -n "$f" ] || die "no '$1' under $build (build all targets first)"
  echo "$f"
}
bins=("$build/baton" "$(find_bin test_gpu_ops)" "$(find_bin test_gpu_cudnn)" "$(find_bin test_ops)")
[ -x "${bins[0]}" ] || die "$build/baton not found: build first"
if ! "${bins[0]}" version | grep -q 'backends:.*cuda'; then
  [ "${PREPARE_ALLOW_CPU:-0}" = 1 ] || die "${bins[0]} has no CUDA backend (was the CUDA toolkit found at configure time?)"
  echo "prepare.sh: note: ${bins[0]} has no CUDA backend (PREPARE_ALLOW_CPU=1)" >&2
fi

# glibc: the device's own (the binaries need GLIBC <= this machine's 2.36;
# the device's Ubuntu 24.04 has 2.39). CUDA: from the device (libpath.sh).
glibc_re='^(ld-linux-x86-64|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnss_[a-z]+|libthread_db|libBrokenLocale)\.so'
cuda_re='^(libcuda|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl|libnvidia-[a-z-]+|libnvrtc|libnvJitLink)\.so'

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/cuda-fallback"
out=$(cd "$out" && pwd)
for b in "${bins[@]}"; do cp "$b" "$out/bin/"; done

# ldd lists the whole closure, resolved as the loader will (RUNPATH
# included); "not found" anywhere is an error here, not on the device.
declare -A seen=()
cudart="" cudnn=""
while read -r name arrow path _; do
  [ "$arrow" = "=>" ] || continue
  [ "$path" != "not" ] || die "ldd: $name not found on this machine"
  if [[ $name =~ $glibc_re ]]; then continue; fi
  if [[ $name =~ $cuda_re ]]; then
    [[ $name == libcudart.so.* ]] && cudart=$path
    [[ $name == libcudnn.so.* ]] && cudnn=$path
    continue
  fi
  [ -n "${seen[$name]:-}" ] && continue
  seen[$name]=1
  cp -L "$path" "$out/lib/$name"
done < <(for b in "${bins[@]}"; do ldd "$b"; done)

# The CUDA SONAMEs the device must provide: every NEEDED entry, of the
# binaries and of the carried libraries, that names a CUDA library.
for f in "$out"/bin/* "$out"/lib/*; do
  readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
done | grep -E "$cuda_re" | sort -u >"$out/cuda-sonames" || true
for f in "$cudart" "$cudnn"; do
  [ -n "$f" ] && cp -L "$f" "$out/cuda-fallback/$(basename "$f")"
done
# The cuDNN the build compiled against (the device's may be older: the
# check prints both).
cudnn_h=$(sed -n 's/^CUDNN_INC:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
cudnn_built=$(awk '/define CUDNN_(MAJOR|MINOR|PATCHLEVEL) / { v = v (v == "" ? "" : ".") $3 } END { print v }' \
  "${cudnn_h:-/nonexistent}/cudnn_version.h" 2>/dev/null || true)

nlib=${#seen[@]}
# The newest glibc symbol version anything carried needs: the device's
# glibc must be at least this (device_check.sh prints both).
glibc_need=$(objdump -T "$out"/bin/* "$out"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -v '^?? ' | head -1 || true)
# The architectures nvcc was really given (the cache entry can hold the
# compiler's detected default instead of the list CMakeLists.txt sets).
archs=$(grep -ho 'code=\[[^]]*\]' "$build"/CMakeFiles/baton_kernels.dir/flags.make 2>/dev/null | tr -d '[]' | sed 's/code=//' | tr '\n' ' ' || true)
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
sz_bin=$(du -sb "$out/bin" | cut -f1)
sz_lib=$(du -sb "$out/lib" | cut -f1)
tar -czf "$out/lib.tar.gz" -C "$out" lib
rm -rf "$out/lib"
sz_tgz=$(stat -c %s "$out/lib.tar.gz")
sz_all=$(du -sb "$out" | cut -f1)
{
  echo "commit $commit${dirty:+ (tracked files modified)}"
  echo "prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(ldd --version | head -1)"
  echo "build $build (${btype:-?}), CUDA architectures ${archs:-none}"
  echo "binaries ${bins[*]}"
  echo "glibc needed ${glibc_need:-unknown} (this machine: $(ldd --version | head -1 | awk '{ print $NF }'))"
  echo "cuda-sonames $(tr '\n' ' ' <"$out/cuda-sonames")"
  echo "cudnn built ${cudnn_built:-none}"
  echo "size bin $sz_bin lib $sz_lib (lib.tar.gz $sz_tgz) carried $sz_all bytes ($nlib libraries)"
} >"$out/PREPARED"
cat "$out/PREPARED"
[ "$sz_all" -le $((60 * 1024 * 1024)) ] || die "$out is $sz_all bytes, over the 60 MiB the device call can carry"
echo "prepared $out: carry it with the device call (docs/gpu.md, \"The device check\")"
