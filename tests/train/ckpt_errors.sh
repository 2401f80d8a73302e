#!/usr/bin/env bash
# Issue 5: a failed checkpoint write (EIO injected halfway through a payload
# file) is reported with the path and errno; the previous checkpoint stays
# intact; the run stops (checkpoint.on_error = stop, exit 1) or goes on and
# saves the next checkpoint (= continue), as configured.
source "$(dirname "$0")/lib.sh"
args=(--set train.steps=15 --set checkpoint.every=5 --set checkpoint.async=true)
# the second checkpoint's write fails (each rank's first payload file of
# save 1 is its first ckpt.eio hit; save 2's is the second ... with one
# payload file per item and 3 items, hit 4 is the first file of save 2)
set +e
BATON_FAULT="ckpt.eio:4" run_np 2 "$CFG" --run-dir "$WORK/a" "${args[@]}" >"$WORK/a.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/a.out"; fail "on_error=stop: exit $rc, want 1"; }
grep -q "checkpoint failed, stopping .*Input/output error (errno 5)" "$WORK/a.out" || { cat "$WORK/a.out"; fail "no stop message with errno"; }
grep -q "checkpoint write failed: .*$WORK/a/" "$WORK/a.out" || { cat "$WORK/a.out"; fail "message lacks the path"; }
[ -d "$WORK/a/ckpt-00000005" ] || fail "previous checkpoint missing"
"$BATON" inspect "$WORK/a" >"$WORK/a.inspect" 2>&1 || { cat "$WORK/a.inspect"; fail "previous checkpoint does not verify"; }
grep -q "newest checkpoint is ckpt-00000005" "$WORK/a.inspect" || fail "newest checkpoint is not step 5"
BATON_FAULT="ckpt.eio:4" run_np 2 "$CFG" --run-dir "$WORK/b" "${args[@]}" \
  --set checkpoint.on_error=continue >"$WORK/b.out" 2>&1 || { cat "$WORK/b.out"; fail "on_error=continue run failed"; }
grep -q "training continues" "$WORK/b.out" || { cat "$WORK/b.out"; fail "no continue message"; }
[ -d "$WORK/b/ckpt-00000015" ] && [ ! -d "$WORK/b/ckpt-00000010" ] || { ls "$WORK/b"; fail "expected ckpt 15 and no ckpt 10"; }
grep -m1 "checkpoint write failed" "$WORK/b.out"
echo "7 passed, 0 failed"
