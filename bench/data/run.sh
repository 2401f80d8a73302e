#!/bin/sh
# bench/data/run.sh: loader throughput with 1 and 4 ranks on a generated
# token file of >= 1 GB, and `baton prepare` throughput making it.
#   BUILD=build SIZE_MB=512 T=1023 GB=64 sh bench/data/run.sh
# SIZE_MB of input bytes become 2*SIZE_MB of uint16 tokens in the file.
# Files live in $TMPDIR (default /tmp) and are deleted at the end. The page
# cache is not dropped (that would disturb other users): figures are for a
# warm cache, i.e. the loader's CPU ceiling, not the disk's.
set -eu
BUILD=${BUILD:-build}
SIZE_MB=${SIZE_MB:-512}
T=${T:-1023}
GB=${GB:-64}
TMP=${TMPDIR:-/tmp}
IN=$TMP/baton_bench_$$.txt
OUT=$TMP/baton_bench_$$.h5
MPI="mpirun --oversubscribe --allow-run-as-root --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
trap 'rm -f "$IN" "$OUT" "$OUT".log "$OUT".tmp.*' EXIT INT TERM

cmake --build "$BUILD" -j2 --target data_prepare_driver data_bench_loader >/dev/null
echo "# input: $SIZE_MB MiB of bytes -> $((2 * SIZE_MB)) MiB uint16 token file"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$IN"
t0=$(date +%s.%N)
"$BUILD"/tests/data/data_prepare_driver text -o "$OUT" --val-fraction 0.01 "$IN" >/dev/null 2>"$OUT.log" || { cat "$OUT.log"; exit 1; }
t1=$(date +%s.%N)
echo "# prepare text: $(awk -v a="$SIZE_MB" -v b="$t0" -v c="$t1" 'BEGIN { printf "%.1f", a / (c - b) }') MiB/s of input ($(ls -l "$OUT" | awk '{print $5}') bytes written)"
rm -f "$IN"
for shuffle in 1 0; do
  for n in 1 4; do
    $MPI -n $n "$BUILD"/tests/data/data_bench_loader "$OUT" "$T" "$GB" $shuffle
  done
done
echo "# the same file read through H5Dread instead of pread (BATON_DATA_PREAD=0)"
for n in 1 4; do
  $MPI -x BATON_DATA_PREAD=0 -n $n "$BUILD"/tests/data/data_bench_loader "$OUT" "$T" "$GB" 1
done
