# libpath.sh: sourced (bash) by device_check.sh and rehearse.sh. Builds the
# library search path under which the prepared binaries run on a machine
# that has none of baton's non-CUDA libraries installed.
#
# Invariants:
#   1. The prepared closure (PREP/lib.tar.gz unpacked into LIBDIR) comes first, so every non-CUDA library
#      (Open MPI, HDF5, OpenBLAS, zstd, ...) is the copy built with the
#      binaries, never whatever the machine happens to have.
#   2. CUDA's libraries (libcudart, libcublasLt, libnccl, cuDNN) are NOT in
#      lib/: they come from the machine, the Python wheels first
#      (site-packages/nvidia/*/lib, where torch's own come from), then a
#      CUDA toolkit, then the carried libcudart in cuda-fallback/ (the one
#      that may be in no wheel); the driver (libcuda.so.1) from the
#      machine's own loader path, which stays after ours.
#   3. Nothing here exports anything: callers put the result on the one
#      command that needs it (a wrapper or `env`), so python3, nvidia-smi and
#      compute-sanitizer keep the machine's own libraries.

# Where a CUDA library may come from, one folder a line, most preferred
# first. $1: the python to ask for the wheels' folders (default python3).
dev_cuda_dirs() {
  local py=${1:-python3} d
  if command -v "$py" >/dev/null 2>&1; then
    # nvidia is a namespace package: its __path__ lists every site-packages
    # holding an nvidia/ folder (cu13/lib, nccl/lib, cudnn/lib, ...).
    "$py" - 2>/dev/null <<'PY' || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
for root in list(nvidia.__path__):
    for d in sorted(glob.glob(os.path.join(root, "*", "lib"))):
        print(d)
PY
  fi
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

# dev_find_soname NAME DIR...: the first DIR holding NAME, or nothing.
dev_find_soname() {
  local name=$1 d
  shift
  for d in "$@"; do
    if [ -e "$d/$name" ]; then echo "$d"; return 0; fi
  done
  return 1
}

# dev_libpath LIBDIR PREP [PYTHON]: prints the LD_LIBRARY_PATH for PREP's
# binaries: LIBDIR (the unpacked closure), then for each CUDA SONAME the binaries need (PREP/cuda-sonames)
# the folder that provides it, then the caller's LD_LIBRARY_PATH (the
# driver), then PREP/cuda-fallback. Reports on stderr where each SONAME was
# found; returns 1 if one was found nowhere.
dev_libpath() {
  local path=$1 prep=$2 py=${3:-python3} dirs=() so d rc=0
  mapfile -t dirs < <(dev_cuda_dirs "$py")
  dirs+=("$prep/cuda-fallback")
  while read -r so; do
    [ -n "$so" ] || continue
    if d=$(dev_find_soname "$so" "${dirs[@]}"); then
      echo "libpath: $so from $d" >&2
      case ":$path:" in *":$d:"*) ;; *) [ "$d" = "$prep/cuda-fallback" ] || path="$path:$d" ;; esac
    else
      echo "libpath: $so found in no wheel, toolkit or cuda-fallback/ (searched: ${dirs[*]})" >&2
      rc=1
    fi
  done <"$prep/cuda-sonames"
  [ -n "${LD_LIBRARY_PATH:-}" ] && path="$path:$LD_LIBRARY_PATH"
  echo "$path:$prep/cuda-fallback"
  return $rc
}
