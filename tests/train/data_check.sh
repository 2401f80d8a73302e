#!/usr/bin/env bash
# Issue 14 (item 4): the start-up data check. A token past the vocabulary
# at a known index stops the run before the first step, on 1 rank and on N
# ranks (each rank reads 1/N of the file; the bad token lies in the last
# rank's share, so the others learn of it only through the check's
# all-gather), every rank with the same message naming the index.
# data.check = false skips the scan (and the run starts training).
# Usage: data_check.sh NRANKS
source "$(dirname "$0")/lib.sh"
n=${1:-2}
"$PY" - "$WORK/bad.h5" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1], "w") as f:  # as a user writes it: no attributes
    t = rng.integers(0, 256, size=60000).astype(np.int32)
    t[59000] = 300
    f.create_dataset("train/tokens", data=t, chunks=(4096,), compression="gzip")
PY
msg="$WORK/bad.h5:/train/tokens: token id 300 at index 59000 is >= vocab size 256"
set +e
out=$(run_np "$n" "$CFG" --run-dir "$WORK/r1" --set data.path="$WORK/bad.h5" \
  --set model.vocab_size=256 --loss-log "$WORK/r1.loss" 2>&1); rc=$?
set -e
[ "$rc" = 1 ] || fail "exit $rc (want 1): $out"
grep -qF "[rank 0@" <<<"$(grep -F "error: $msg" <<<"$out")" \
  || fail "rank 0 does not stop with '$msg': $out"
[ ! -s "$WORK/r1.loss" ] || fail "a step ran before the check stopped the run: $out"
# Off: no scan, training starts (the window with the bad token is not in
# the first 2 steps of this seed).
out=$(run_np "$n" "$CFG" --run-dir "$WORK/r2" --set data.path="$WORK/bad.h5" \
  --set model.vocab_size=256 --set data.check=false --set train.steps=2 \
  --loss-log "$WORK/r2.loss" 2>&1) || fail "data.check = false: $out"
! grep -q "^data check:" <<<"$out" || fail "data.check = false still scanned: $out"
[ "$(wc -l <"$WORK/r2.loss")" = 2 ] || fail "no 2 steps with data.check = false: $out"
echo "3 passed, 0 failed"
