#!/usr/bin/env bash
# tests/ckpt/fuzz/fuzz_meta.sh SECONDS [BUILD_DIR]
#
# Like tests/ckpt/fuzz.sh, for fuzz_meta.c (a checkpoint's meta as the
# trainer reads it, and the saved config through the config parser):
# builds it with clang -fsanitize=fuzzer,address,undefined in BUILD_DIR
# (default build-fuzz-meta/), fuzzes for SECONDS from the seed corpus
# tests/ckpt/fuzz/corpus_meta (never written; new inputs go to
# BUILD_DIR/corpus). Exits non-zero on a crash; replay the reproducer with
#   build/tests/ckpt/ckpt_fuzz_meta_replay BUILD_DIR/crash-...
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${2:-$root/build-fuzz-meta}
mkdir -p "$out/corpus"
cc=${CC_FUZZ:-clang}
# BT_FUZZ_STANDALONE: a stub for trainer/init.c's hook (see fuzz_meta.c).
# shellcheck disable=SC2046
$cc -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DBT_FUZZ_STANDALONE \
  -I"$root" \
  $(pkg-config --cflags libzstd libxxhash libcjson) \
  "$root/tests/ckpt/fuzz/fuzz_meta.c" "$root/checkpoints/codec.c" \
  "$root/checkpoints/reader.c" "$root/base/util.c" "$root/base/cli.c" \
  "$root/trainer/config.c" \
  $(pkg-config --libs libzstd libxxhash libcjson) -linih -lm \
  -o "$out/fuzz_meta"
cd "$out"
exec ./fuzz_meta -max_total_time="$secs" -rss_limit_mb=2048 \
  -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  "$out/corpus" "$root/tests/ckpt/fuzz/corpus_meta"
