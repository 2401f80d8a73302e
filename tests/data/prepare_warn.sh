#!/usr/bin/env bash
# `baton prepare` warns when a split comes out empty or tiny (docs/data.md):
# empty = no item (for /val: although --val-fraction asked for some); tiny =
# fewer than 1025 tokens or 64 rows, or under 1% of the other split.
# Usage: prepare_warn.sh BATON WORKDIR
set -uo pipefail
baton=$1; w=$2
rm -rf "$w"; mkdir -p "$w"; cd "$w" || exit 1
pass=0 fails=0
# expect "warning text" (or "" for none) ARGS...
expect() {
  local want=$1; shift
  local err rc
  err=$("$baton" prepare "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" != 0 ]; then echo "FAIL: prepare $* -> exit $rc: $err"; fails=$((fails + 1)); return; fi
  if [ -z "$want" ]; then
    if grep -q "warning" <<<"$err"; then echo "FAIL: prepare $*: unexpected: $err"; fails=$((fails + 1)); return; fi
  elif ! grep -qF -- "warning: $want" <<<"$err"; then
    echo "FAIL: prepare $*: no 'warning: $want' in: $err"; fails=$((fails + 1)); return
  fi
  pass=$((pass + 1))
}
head -c 3000 /dev/urandom >small.txt
head -c 200000 /dev/urandom >big.txt
expect "prepare: a.h5: /val is empty (3000 tokens in all, --val-fraction 0.1); the split is made of --chunk blocks: use a smaller --chunk, or more input" \
  text -o a.h5 small.txt
expect "" text -o b.h5 --val-fraction 0 small.txt
expect "prepare: c.h5: /val is tiny: 1000 tokens against 199000 in /train (fewer than 1025, or under 1% of the other split); the split is made of --chunk blocks: use a smaller --chunk, or more input" \
  text -o c.h5 --chunk 1000 --val-fraction 0.001 big.txt
expect "" text -o d.h5 --chunk 1000 big.txt
{ echo "a,b,label"; for i in $(seq 1 1000); do echo "$i,$((i * 3)),$((i % 3))"; done; } >rows.csv
expect "prepare: e.h5: /val is tiny: 5 rows against 995 in /train (fewer than 64, or under 1% of the other split); change --val-fraction, or use more rows" \
  arrays -o e.h5 --csv rows.csv --label-column label --val-fraction 0.005
expect "" arrays -o f.h5 --csv rows.csv --label-column label
echo "$pass passed, $fails failed"
[ "$fails" = 0 ] && [ "$pass" -gt 0 ]
