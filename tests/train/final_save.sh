#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 4: with checkpoint.on_error = continue,
# a run whose final checkpoint (or pre-emption checkpoint) could not be
# written does not exit 0 / 4 nor print "training complete"; a regular
# file named like a checkpoint is not taken for one (not chosen, not
# deleted) and does not make the save of its step fail.
source "$(dirname "$0")/lib.sh"
args=(--set train.steps=10 --set checkpoint.every=5 --set checkpoint.on_error=continue)
# one rank, 3 payload files per save: hit 4 is the first file of the final save
set +e
BATON_FAULT="ckpt.eio:4" "$BATON" train "$CFG" --run-dir "$WORK/a" "${args[@]}" >"$WORK/a.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/a.out"; fail "failed final save: exit $rc, want 1"; }
grep -q "training complete" "$WORK/a.out" && { cat "$WORK/a.out"; fail "failed final save: 'training complete'"; }
grep -q "error: trained 10 steps but the final checkpoint could not be saved" "$WORK/a.out" \
  || { cat "$WORK/a.out"; fail "failed final save: message"; }
[ -d "$WORK/a/ckpt-00000005" ] && [ ! -e "$WORK/a/ckpt-00000010" ] || { ls "$WORK/a"; fail "checkpoints"; }
grep -m1 "final checkpoint could not be saved" "$WORK/a.out"
# pre-emption at step 3 whose checkpoint fails: an error, not "pre-empted"
set +e
BATON_FAULT="train.sigterm:3,ckpt.eio:1" "$BATON" train "$CFG" --run-dir "$WORK/b" "${args[@]}" >"$WORK/b.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/b.out"; fail "pre-emption with a failed checkpoint: exit $rc, want 1"; }
grep -q "pre-emption signal received but the checkpoint at step 3 could not be written" "$WORK/b.out" \
  || { cat "$WORK/b.out"; fail "pre-emption with a failed checkpoint: message"; }
# stray files named like checkpoints
mkdir "$WORK/c"
echo "not a checkpoint" >"$WORK/c/ckpt-00000005"
echo "nor this" >"$WORK/c/ckpt-00000100"
"$BATON" train "$CFG" --run-dir "$WORK/c" "${args[@]}" --set checkpoint.keep_last=1 >"$WORK/c.out" 2>&1 \
  || { cat "$WORK/c.out"; fail "a file named ckpt-00000005 made the run fail"; }
grep -q "resumed\|refusing" "$WORK/c.out" && { cat "$WORK/c.out"; fail "a file was taken for a checkpoint"; }
grep -q "failed" "$WORK/c.out" && { cat "$WORK/c.out"; fail "a save failed"; }
[ -d "$WORK/c/ckpt-00000010" ] || { ls -l "$WORK/c"; fail "no checkpoint 10"; }
[ "$(cat "$WORK/c/rejected-ckpt-00000005")" = "not a checkpoint" ] || { ls -l "$WORK/c"; fail "the stray file was not kept"; }
[ "$(cat "$WORK/c/ckpt-00000100")" = "nor this" ] || { ls -l "$WORK/c"; fail "retention touched a file"; }
"$BATON" train "$CFG" --run-dir "$WORK/c" "${args[@]}" --set train.steps=12 >"$WORK/d.out" 2>&1 \
  || { cat "$WORK/d.out"; fail "resume beside a stray file failed"; }
grep -q "resumed from .*ckpt-00000010 at step 10" "$WORK/d.out" || { cat "$WORK/d.out"; fail "did not resume from 10"; }
echo "5 passed, 0 failed"
