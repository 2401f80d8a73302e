#!/usr/bin/env bash
# Issue 5: a ZeRO-1 checkpoint written by N ranks resumes on M ranks
# (optimizer state resharded by ranges). The continued run matches a
# same-size resume within floating-point tolerance, and the data stream
# continues exactly: the loader state is world-size independent, so the
# M-rank run consumes the same global samples as the N-rank one.
# PRECISION = bf16 (default fp32): every run in bf16, limits from
# precision_limit (lib.sh: 256x the fp32 ones, derived there).
# usage: resume_world.sh N M [PRECISION]
source "$(dirname "$0")/lib.sh"
n=$1 m=$2 K=6 prec=${3:-$PREC}
lim=$(precision_limit "$prec" 1e-5)
bs=$(( (n > m ? n : m) * 2 ))
common=(--set dist.zero=true --set train.batch_size=$bs --set dist.watchdog_seconds=300
        --set train.precision="$prec")
run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --set train.steps=$K \
  >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "first $n-rank run failed"; }
cp -r "$WORK/a" "$WORK/b"
# continue on N ranks (reference) and on M ranks
run_np "$n" "$CFG" --run-dir "$WORK/a" "${common[@]}" --set train.steps=$((2 * K)) \
  --loss-log "$WORK/a.loss" --dump-params "$WORK/a.f32" >"$WORK/a2.out" 2>&1 || { cat "$WORK/a2.out"; fail "$n-rank resume failed"; }
run_np "$m" "$CFG" --run-dir "$WORK/b" "${common[@]}" --set train.steps=$((2 * K)) \
  --loss-log "$WORK/b.loss" --dump-params "$WORK/b.f32" >"$WORK/b2.out" 2>&1 || { cat "$WORK/b2.out"; fail "$m-rank resume failed"; }
grep -q "saved by $n ranks" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "did not resume the $n-rank checkpoint"; }
grep -q "backend cpu ($prec)" "$WORK/b2.out" || { cat "$WORK/b2.out"; fail "the $m-rank run is not in $prec"; }
e=$(relerr "$WORK/b.f32" "$WORK/a.f32")
echo "$n -> $m ranks ($prec): parameters differ from the $n -> $n resume by $e (limit $lim)"
le "$e" "$lim" || fail "relative difference $e > $lim"
"$PY" - "$WORK/a.loss" "$WORK/b.loss" "$lim" <<'PY' || fail "losses of the continued runs differ"
import sys
a = [float(l.split()[1]) for l in open(sys.argv[1])]
b = [float(l.split()[1]) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print("losses of the %d continued steps agree within %.2e" % (len(a), worst))
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
echo "3 passed, 0 failed"
