#!/usr/bin/env bash
# `baton inspect DATA.h5` on the h5py fixtures (make_fixture.py --all):
# the layout lines, the first bad value with its index, the exit status.
# Usage: inspect.sh BATON FIXTURE_DIR
set -uo pipefail
baton=$1; cd "$2" || exit 1
pass=0 fails=0
# expect EXIT_CODE FILE [OPTIONS...] <<< "lines that must appear whole"
expect() {
  local code=$1; shift
  local want out rc
  want=$(cat)
  out=$("$baton" inspect "$@" 2>&1); rc=$?
  if [ "$rc" != "$code" ]; then
    echo "FAIL: inspect $* -> exit $rc (want $code):"; echo "$out"; fails=$((fails + 1)); return
  fi
  while IFS= read -r line; do
    if ! grep -qxF -- "$line" <<<"$out"; then
      echo "FAIL: inspect $*: no line '$line' in:"; echo "$out"; fails=$((fails + 1)); return
    fi
  done <<<"$want"
  pass=$((pass + 1))
}
expect 0 tok16_gzip_shuffle.h5 <<'EOF2'
attributes: baton_format_version = 1, tokenizer = "bytes", vocab_size = 256
  /train/tokens    uint16   [100000]         chunked (4096), shuffle, gzip 4; 99.6 KiB stored (195.3 KiB raw, 1.96x)
  /val/tokens      uint16   [5000]           chunked (4096), shuffle, gzip 4; 5.1 KiB stored (9.8 KiB raw, 1.93x)
tokens: ids checked against 256 (vocab_size)
  /train/tokens: 100000 tokens, ids 0..255: OK
  /val/tokens: 5000 tokens, ids 0..255: OK
result: OK
EOF2
expect 1 user_late_token.h5 --vocab 256 <<'EOF2'
attributes: none (no baton_format_version: read as version 1)
  /train/tokens    int32    [60000]          chunked (4096), gzip 4; 94.4 KiB stored (234.4 KiB raw, 2.48x)
tokens: ids checked against 256 (--vocab)
  /train/tokens: 60000 tokens, ids 0..300: BAD
    user_late_token.h5:/train/tokens: token id 300 at index 45678 is >= vocab size 256
  /val/tokens: 3000 tokens, ids 0..255: OK
result: 1 problem found
EOF2
# Without a vocabulary, nothing is out of range: the ids are reported.
expect 0 user_late_token.h5 <<'EOF2'
tokens: no vocab_size attribute: training takes the largest token id + 1 unless model.vocab_size is set
  /train/tokens: 60000 tokens, ids 0..300: OK
EOF2
expect 1 user_negative.h5 <<'EOF2'
  /train/tokens    int16    [20000]          contiguous; 39.1 KiB stored
    user_negative.h5:/train/tokens: token id -5 at index 777 is negative
EOF2
expect 1 user_nan.h5 <<'EOF2'
  /train/x         float32  [1000, 7]        contiguous; 27.3 KiB stored
  /train/x, y: 1000 rows of 7 features, labels 0..2: BAD
    user_nan.h5:/train/x: non-finite value nan at index 865 (row 123, column 4)
EOF2
expect 0 classes_2d.h5 <<'EOF2'
  /train/x         float32  [3000, 2, 3]     contiguous; 70.3 KiB stored
features: labels checked against 5 (num_classes)
  /train/x, y: 3000 rows of 6 features, labels 0..4: OK
EOF2
expect 1 bad_big-label.h5 <<'EOF2'
    bad_big-label.h5:/train/y: label 9 at index 777 is >= num_classes 4
EOF2
expect 1 bad_float-tokens.h5 <<'EOF2'
  /train: not scanned: /train/tokens is not a 1-D integer dataset (training refuses it)
result: 1 problem found
EOF2
expect 1 tok16_contig.h5 --vocab 256 <<'EOF2'
tokens: the file's vocab_size 50257 is larger than --vocab 256
EOF2
out=$("$baton" inspect bad_garbage.h5 2>&1); rc=$?
[ "$rc" = 1 ] && grep -qF "error: bad_garbage.h5: not an HDF5 file, or the file is truncated or corrupt (821304 bytes)" <<<"$out" \
  && pass=$((pass + 1)) || { echo "FAIL: garbage file: exit $rc: $out"; fails=$((fails + 1)); }
# A directory is still a checkpoint.
mkdir -p notackpt
grep -q "notackpt" <<<"$("$baton" inspect notackpt 2>&1)" && pass=$((pass + 1)) \
  || { echo "FAIL: a directory did not go to checkpoint inspection"; fails=$((fails + 1)); }
echo "$pass passed, $fails failed"
[ "$fails" = 0 ] && [ "$pass" -gt 0 ]
