#!/usr/bin/env bash
# Every #include "..." in the tree's C, C++ and CUDA sources is
# root-relative and names a file that exists, so the include roots of
# docs/design.md ("Layers") are the only way a header is found. A "../"
# include, or a bare name resolved from the including file's directory,
# would bypass them. Generated headers (build tree) are listed here.
# third_party/ (vendored code with its own include style, reached only
# through a SYSTEM include directory) is not checked.
#
# usage: check_includes.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: check_includes.sh SOURCE_DIR}
cd "$root"
generated='^(onnx\.pb-c\.h|kern\.inc)$'
bad=0 n=0
while IFS= read -r file; do
  while IFS=: read -r line inc; do
    n=$((n + 1))
    path=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/' <<<"$inc")
    if [[ $path =~ $generated ]]; then continue; fi
    if [[ $path == *..* ]]; then
      echo "$file:$line: relative include \"$path\" (use the root-relative path)"; bad=1
    elif [ ! -f "$path" ]; then
      echo "$file:$line: \"$path\" is not a path from the repository root"; bad=1
    fi
  done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$file" |
           sed -E 's/^([0-9]+):/\1:/')
done < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.cpp' '*.inc' ':!third_party' 2>/dev/null ||
         find . -path ./third_party -prune -o \( -name '*.[ch]' -o -name '*.cu' -o -name '*.cpp' \) -print)
if [ "$n" -lt 100 ]; then
  echo "only $n includes found: is $root the source tree?"; exit 1
fi
[ "$bad" = 0 ] && echo "ok: $n quoted includes, all root-relative"
exit "$bad"
