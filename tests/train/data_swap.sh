#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 3: a dataset swapped behind the same
# path (a symbolic link changed to another file) is found on resume: the
# checkpoint holds the dataset's size and a hash of its first and last
# 64 KiB (meta "data_fingerprint"), the resume stops with the path, both
# identities and the way to train on new data deliberately; with the
# original back it resumes and ends bit-exact with a run that never saw
# the swap.
source "$(dirname "$0")/lib.sh"
root="$HERE/../.."
"$BATON" prepare text -o "$WORK/a.h5" --chunk 256 "$root/docs/design.md" >/dev/null
"$BATON" prepare text -o "$WORK/b.h5" --chunk 256 "$root/docs/guide.md" >/dev/null
ln -s "$WORK/a.h5" "$WORK/data.h5"
args=(--set data.path="$WORK/data.h5" --set checkpoint.every=5 --set data.val_every=0)
# The reference makes the same two starts (5 steps, then on to 10) with the
# dataset left alone.
"$BATON" train "$CFG" --run-dir "$WORK/ref" "${args[@]}" --set train.steps=5 \
  >"$WORK/ref.out" 2>&1 || { cat "$WORK/ref.out"; fail "reference run"; }
"$BATON" train "$CFG" --run-dir "$WORK/ref" "${args[@]}" --set train.steps=10 \
  --dump-params "$WORK/ref.f32" >"$WORK/ref.out" 2>&1 || { cat "$WORK/ref.out"; fail "reference run"; }
"$BATON" train "$CFG" --run-dir "$WORK/run" "${args[@]}" --set train.steps=5 \
  >"$WORK/r1.out" 2>&1 || { cat "$WORK/r1.out"; fail "first run"; }
grep -q '"data_fingerprint"' "$WORK/run/ckpt-00000005/manifest.json" || fail "no data_fingerprint in the manifest"

ln -sfn "$WORK/b.h5" "$WORK/data.h5"
set +e
"$BATON" train "$CFG" --run-dir "$WORK/run" "${args[@]}" --set train.steps=10 >"$WORK/r2.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] || { cat "$WORK/r2.out"; fail "resumed on a swapped dataset"; }
grep -qF "data.path '$WORK/data.h5' is not the dataset $WORK/run/ckpt-00000005 was trained on" "$WORK/r2.out" ||
  { cat "$WORK/r2.out"; fail "message does not name the dataset"; }
grep -qF "train.init_from = $WORK/run/ckpt-00000005" "$WORK/r2.out" || { cat "$WORK/r2.out"; fail "no way forward named"; }
[ -d "$WORK/run/ckpt-00000005" ] || fail "the checkpoint was set aside"

ln -sfn "$WORK/a.h5" "$WORK/data.h5"
"$BATON" train "$CFG" --run-dir "$WORK/run" "${args[@]}" --set train.steps=10 \
  --dump-params "$WORK/run.f32" >"$WORK/r3.out" 2>&1 || { cat "$WORK/r3.out"; fail "resume with the original"; }
cmp "$WORK/ref.f32" "$WORK/run.f32" || fail "resume with the original is not bit-exact"
echo "ok: swapped dataset refused, original resumes bit-exact"
