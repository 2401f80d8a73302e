#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 3: a path option longer than baton's
# buffers (--run-dir, --resume, --loss-log, --dump-params of 1,024+ (1,300 here)
# characters) is a usage error naming the option and the limit (exit 2),
# not an internal assertion (exit 134). A path of exactly the limit works.
source "$(dirname "$0")/lib.sh"
long="$WORK/$("$PY" -c "print('d' * 1300)")"
for opt in --run-dir --resume --loss-log --dump-params; do
  args=(--run-dir "$WORK/run" --set train.steps=1)
  set +e
  "$BATON" train "$CFG" "${args[@]}" "$opt" "$long" >"$WORK/o.out" 2>&1
  rc=$?
  set -e
  [ "$rc" = 2 ] || { cat "$WORK/o.out"; fail "$opt of ${#long} characters: exit $rc, want 2"; }
  grep -q "baton train: $opt: the path is ${#long} characters; the limit is 1000" "$WORK/o.out" \
    || { cat "$WORK/o.out"; fail "$opt: message"; }
  grep -q "assert" "$WORK/o.out" && fail "$opt: internal assertion"
done
cat "$WORK/o.out"
# exactly 1000 characters, in components of at most 200 (NAME_MAX)
dir="$WORK"
while [ ${#dir} -lt 800 ]; do dir="$dir/$("$PY" -c "print('r' * 150)")"; done
dir="$dir/$("$PY" -c "print('x' * (1000 - ${#dir} - 1))")"
[ ${#dir} = 1000 ] || fail "built a path of ${#dir} characters"
"$BATON" train "$CFG" --run-dir "$dir" --set train.steps=2 --set checkpoint.every=1 \
  --loss-log "$(dirname "$dir")/loss" >"$WORK/p.out" 2>&1 || { cat "$WORK/p.out"; fail "a run directory of 1000 characters failed"; }
# a checkpoint path of exactly 1000 characters: a link beside the run dir
up="$(dirname "$dir")"
ck="$up/$("$PY" -c "print('y' * (1000 - ${#up} - 1))")"
ln -s "$dir/ckpt-00000002" "$ck"
"$BATON" train "$CFG" --run-dir "$dir" --set train.steps=3 --resume "$ck" \
  >"$WORK/q.out" 2>&1 || { cat "$WORK/q.out"; fail "--resume in a 1000-character run directory failed"; }
grep -q "resumed from" "$WORK/q.out" || fail "did not resume"
echo "6 passed, 0 failed"
