#!/usr/bin/env bash
# report.sh BATON PYTHON: `baton report` (report/report.c, issue 17).
# Two short runs, one killed and resumed, drawn into one PNG: the file has
# the asked size and is a real picture (png_check.py: many colours, a fair
# share drawn, both runs' colours present); the resume is found. Errors
# name the run directory, file and line; a torn line is skipped with a
# warning naming file:line.
set -euo pipefail
baton=$1 py=$2
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d /tmp/bt_report.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
pass=0
expect() { # expect EXIT_CODE "message substring" CMD...
  local code=$1 msg=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "exit $rc (want $code) for: $* -> $out"
  case "$out" in *"$msg"*) ;; *) fail "message lacks '$msg': $out";; esac
  pass=$((pass + 1))
}
args=("$here/../train/micro.ini" --set train.steps=40 --set data.val_every=10
      --set checkpoint.every=10)
"$baton" train "${args[@]}" --run-dir "$work/fresh" >"$work/a.out" 2>&1 || { cat "$work/a.out"; fail "run a"; }
set +e
BATON_FAULT=train.step:26 "$baton" train "${args[@]}" --run-dir "$work/resumed" \
  --set optim.lr=5e-3 >"$work/b1.out" 2>&1
set -e
"$baton" train "${args[@]}" --run-dir "$work/resumed" --set optim.lr=5e-3 \
  >"$work/b2.out" 2>&1 || { cat "$work/b2.out"; fail "resume b"; }

expect 0 "resumed: 40 steps, 1 restart" "$baton" report "$work/fresh" "$work/resumed" \
  -o "$work/r.png" --size 800x500
case "$out" in *"fresh: 40 steps, 0 restarts"*) ;; *) fail "fresh run: $out";; esac
"$py" "$here/png_check.py" "$work/r.png" 800 500 || fail "the picture"
pass=$((pass + 1))
# Default output: RUN_DIR/report.png of the first run, 1600x1000.
expect 0 "wrote $work/fresh/report.png" "$baton" report "$work/fresh"
# (one run: only the format and the size matter here; IHDR: 1600 x 1000)
[ "$(head -c 24 "$work/fresh/report.png" | od -An -tx1 | tr -d ' \n')" = \
  89504e470d0a1a0a0000000d4948445200000640000003e8 ] || fail "default output is not a 1600x1000 PNG"

# A torn line (a crash mid-write) is skipped with file:line named.
cp -r "$work/fresh" "$work/torn"
sed -i '3s/.*/{"step":3,"time":17/' "$work/torn/metrics.jsonl"
expect 0 "$work/torn/metrics.jsonl:3: skipping a line" "$baton" report "$work/torn" -o "$work/t.png"
# Errors: exit 1, no PNG left behind.
expect 1 "run directory '$work/none': No such file or directory" "$baton" report "$work/none" -o "$work/e.png"
mkdir "$work/empty" && : >"$work/empty/metrics.jsonl"
expect 1 "$work/empty/metrics.jsonl: empty" "$baton" report "$work/empty" -o "$work/e.png"
mkdir "$work/bad" && printf '{"step":1,"ti\n\n{"step"\n' >"$work/bad/metrics.jsonl"
expect 1 "$work/bad/metrics.jsonl:1: no metrics record in the file" "$baton" report "$work/bad" -o "$work/e.png"
mkdir "$work/nometrics"
expect 1 "$work/nometrics/metrics.jsonl" "$baton" report "$work/nometrics" -o "$work/e.png"
BATON_GNUPLOT=/nonexistent/gnuplot expect 1 "BATON_GNUPLOT='/nonexistent/gnuplot' is not an executable" \
  "$baton" report "$work/fresh" -o "$work/e.png"
expect 2 "expected at least one RUN_DIR" "$baton" report
expect 2 "--size 'big'" "$baton" report "$work/fresh" --size big
[ ! -e "$work/e.png" ] || fail "a failed report left $work/e.png"
ls "$work" | grep -q '\.tmp\.' && fail "a temporary file was left"
echo "$pass passed, 0 failed"
