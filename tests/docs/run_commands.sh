#!/usr/bin/env bash
# Runs every command shown in README.md and docs/*.md: each line that starts
# with "$ " inside a fenced code block, in order, from a scratch copy of the
# repository root with the build directory on the PATH. Fails on the first
# command that fails, naming the file and line.
#
# mpirun gets the flags this machine needs (root, oversubscription, shared
# memory transport) from OMPI_MCA_* variables, so the docs show the plain
# command users type.
# `python3` is PYTHON (the second argument: the project's Python
# environment, with tokenizers, transformers and torch) when given, as for
# a user who activated that environment (docs/guide.md's fine-tune).
# usage: run_commands.sh BUILD_DIR [PYTHON]
set -euo pipefail
build="$(cd "$1" && pwd)"
if [ -n "${2:-}" ]; then
  pybin="$(mktemp -d /tmp/baton-docs-py.XXXXXX)"
  # a wrapper, not a link: a virtual environment's python finds its
  # packages through the path it was started by
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$2" >"$pybin/python3"
  chmod +x "$pybin/python3"
  export PATH="$pybin:$PATH"
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d /tmp/baton-docs.XXXXXX)"
trap 'rm -rf "$work" ${pybin:+"$pybin"}' EXIT
# A scratch copy so that runs/ and exports land outside the source tree.
(cd "$root" && tar cf - --exclude=./build* --exclude=./runs --exclude=./.git .) | (cd "$work" && tar xf -)
ln -s "$build" "$work/build"   # so that "build/baton" works as in the README
export PATH="$build:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$work"
n=0
# guide.md first: the other documents refer to its runs (runs/guide).
for f in README.md docs/guide.md $(ls docs/*.md | grep -v '^docs/guide.md$'); do
  awk '/^```/ {inb = !inb; next} inb && /^\$ / {print FNR "\t" substr($0, 3)}' "$f" >"$work/.cmds"
  while IFS=$'\t' read -r line cmd; do
    n=$((n + 1))
    echo "+ [$f:$line] $cmd"
    if ! bash -c "$cmd" >"$work/.out" 2>&1 </dev/null; then
      tail -n 30 "$work/.out"
      echo "FAIL: $f:$line: $cmd"
      exit 1
    fi
    tail -n 3 "$work/.out" | sed 's/^/    /'
  done <"$work/.cmds"
done
[ "$n" -gt 0 ] || { echo "FAIL: no commands found"; exit 1; }
echo "$n passed, 0 failed"
