#!/usr/bin/env bash
# tests/data/fuzz/fuzz_data.sh SECONDS [BUILD_DIR]
#
# Like tests/ckpt/fuzz.sh, for fuzz_data.c (tokenizer.json, vocab.json +
# merges.txt, CSV and .npy feature files): builds it with clang
# -fsanitize=fuzzer,address,undefined in BUILD_DIR (default
# build-fuzz-data/) and fuzzes for SECONDS from the seed corpus
# tests/data/fuzz/corpus (never written; new inputs go to BUILD_DIR/corpus).
# Exits non-zero on a crash; replay the reproducer with
#   build/tests/data/data_fuzz_replay BUILD_DIR/crash-...
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${2:-$root/build-fuzz-data}
mkdir -p "$out/corpus"
cc=${CC_FUZZ:-clang}
h5inc=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
h5lib=$(pkg-config --libs hdf5 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5")
# -D_GNU_SOURCE: as CMake builds data/ (strndup, pread, recursive mutex).
# shellcheck disable=SC2046,SC2086
$cc -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
  -I"$root" $h5inc \
  $(pkg-config --cflags libzstd libxxhash libcjson libutf8proc) \
  "$root/tests/data/fuzz/fuzz_data.c" "$root/data/tokenizer.c" \
  "$root/data/features.c" "$root/data/h5.c" "$root/base/util.c" \
  $(pkg-config --libs libzstd libxxhash libcjson libutf8proc) $h5lib -lpthread -lm \
  -o "$out/fuzz_data"
cd "$out"
exec ./fuzz_data -max_total_time="$secs" -rss_limit_mb=2048 \
  -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  "$out/corpus" "$root/tests/data/fuzz/corpus"
