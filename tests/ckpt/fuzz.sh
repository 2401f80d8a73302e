#!/usr/bin/env bash
# tests/ckpt/fuzz.sh SECONDS [BUILD_DIR]
#
# Builds the checkpoint reader's libFuzzer target with clang
# (-fsanitize=fuzzer,address,undefined) in BUILD_DIR (default build-fuzz/,
# separate from the normal build) and fuzzes it for SECONDS, starting from
# the seed corpus tests/ckpt/fuzz/corpus. New inputs go to
# BUILD_DIR/corpus (the seed directory is never written). Exits non-zero on
# a crash; the reproducer is BUILD_DIR/crash-*, replayable with
#   build/tests/ckpt/ckpt_fuzz_replay BUILD_DIR/crash-...
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$root/build-fuzz}
mkdir -p "$out/corpus"
cc=${CC_FUZZ:-clang}
# shellcheck disable=SC2046
$cc -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
  -I"$root" \
  $(pkg-config --cflags libzstd libxxhash libcjson) \
  "$root/tests/ckpt/fuzz/fuzz_ckpt.c" "$root/checkpoints/codec.c" \
  "$root/checkpoints/reader.c" "$root/base/util.c" "$root/base/cli.c" \
  $(pkg-config --libs libzstd libxxhash libcjson) -lm \
  -o "$out/fuzz_ckpt"
cd "$out"
# -rss_limit_mb / -malloc_limit_mb: the reader must never allocate what a
# hostile manifest asks for; 2 GiB is far above what a valid input needs.
exec ./fuzz_ckpt -max_total_time="$secs" -rss_limit_mb=2048 \
  -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  "$out/corpus" "$root/tests/ckpt/fuzz/corpus"
