#!/bin/sh
# filter_check.sh TEST: the case filter of an op test binary (test_ops,
# test_gpu_ops). Checks that
#   1. -l lists the cases, each with the ops it exercises;
#   2. -o layernorm runs the layernorm cases and nothing else, and its last
#      line says how many ran (as many as -l lists for layernorm);
#   3. two -o accumulate (layernorm + gelu);
#   4. an unknown name exits 2 and lists the valid names (ops of
#      kernels/ops.def);
#   5. the filter's exit status is the checks' status (0 here).
# TEST may take more arguments after its name (e.g. "test_ops cuda").
set -u
t=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; cat "$out"; exit 1; }
# 77 from the test (no CUDA device, or not compiled in): skipped.
skip() { cat "$out"; exit 77; }

"$t" "$@" -l >"$out" 2>&1
rc=$?
[ $rc -eq 77 ] && skip
[ $rc -eq 0 ] || fail "-l exited $rc"
nAll=$(wc -l <"$out")
nLn=$(grep -cw 'layernorm_fwd' "$out")  # -w: not residual_layernorm_fwd
nGelu=$(grep -cw 'gelu_fwd' "$out")
[ "$nAll" -gt 10 ] && [ "$nLn" -ge 1 ] && [ "$nGelu" -ge 1 ] ||
  fail "-l lists $nAll cases, $nLn layernorm, $nGelu gelu"
echo "ok: -l lists $nAll cases ($nLn layernorm, $nGelu gelu)"

"$t" "$@" -o layernorm >"$out" 2>&1
rc=$?
[ $rc -eq 77 ] && skip
[ $rc -eq 0 ] || fail "-o layernorm exited $rc"
grep -q "^ran $nLn of $nAll cases (-o layernorm)$" "$out" ||
  fail "-o layernorm: no 'ran $nLn of $nAll cases (-o layernorm)' line"
nOther=$(grep '^case ' "$out" | grep -vc 'layernorm')
[ "$nOther" -eq 0 ] || fail "-o layernorm ran $nOther cases of other ops"
echo "ok: -o layernorm ran its $nLn cases only"

want=$((nLn + nGelu))
"$t" "$@" -o layernorm -o gelu >"$out" 2>&1 || fail "-o layernorm -o gelu exited $?"
grep -q "^ran $want of $nAll cases (-o layernorm gelu)$" "$out" ||
  fail "-o layernorm -o gelu: no 'ran $want of $nAll cases' line"
echo "ok: -o layernorm -o gelu ran $want cases"

"$t" "$@" -o no_such_op >"$out" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "-o no_such_op exited $rc, want 2"
grep -q "no_such_op" "$out" && grep -q "matmul_fwd" "$out" &&
  grep -q "attention_decode" "$out" ||
  fail "-o no_such_op: the message does not list the valid names"
echo "ok: an unknown name fails (exit 2) and lists the valid names"
