#!/usr/bin/env bash
# tests/export/fuzz.sh SECONDS [BUILD_DIR]
#
# Builds the safetensors reader's libFuzzer target with clang
# (-fsanitize=fuzzer,address,undefined) in BUILD_DIR (default
# build-fuzz-export/, separate from the normal build) and fuzzes it for
# SECONDS, starting from the seed corpus tests/export/corpus. New inputs go
# to BUILD_DIR/corpus (the seed directory is never written). Exits non-zero
# on a crash; the reproducer is BUILD_DIR/crash-*, replayable with
#   build/tests/export/export_fuzz_replay BUILD_DIR/crash-...
# (and worth adding to tests/export/corpus once fixed).
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$root/build-fuzz-export}
mkdir -p "$out/corpus"
cc=${CC_FUZZ:-clang}
# shellcheck disable=SC2046
$cc -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
  -I"$root" \
  $(pkg-config --cflags libxxhash libcjson) \
  "$root/tests/export/fuzz_safetensors.c" "$root/checkpoints/safetensors.c" \
  "$root/base/util.c" \
  $(pkg-config --libs libxxhash libcjson) -lm \
  -o "$out/fuzz_safetensors"
cd "$out"
# The reader allocates O(header) memory at most; a 100 MB header cap and
# -max_len keep a run's memory small. A JSON-ish dictionary helps libFuzzer
# reach the deeper checks.
cat > "$out/st.dict" <<'DICT'
"{"
"}"
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"__metadata__\""
"["
"]"
","
":"
DICT
exec ./fuzz_safetensors -max_total_time="$secs" -rss_limit_mb=2048 \
  -malloc_limit_mb=2048 -max_len=8192 -dict="$out/st.dict" \
  -print_final_stats=1 "$out/corpus" "$root/tests/export/corpus"
