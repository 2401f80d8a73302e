#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 2: when the run directory holds
# checkpoints and none is usable, `baton train` refuses to start again from
# step 0 (exit 1), names each checkpoint and why it was rejected, and
# leaves them untouched. --allow-fresh-start starts from step 0 (bit-exact
# with a new run) and keeps the damaged checkpoints as rejected-ckpt-*,
# never deleting them; --resume never starts over as before. Also when the
# checkpoints only fail while loading (version-1 manifests edited), after
# which the partly loaded state must be reset.
source "$(dirname "$0")/lib.sh"
common=(--set train.steps=10 --set checkpoint.every=5 --set checkpoint.keep_last=1)
"$BATON" train "$CFG" --run-dir "$WORK/ref" "${common[@]}" --dump-params "$WORK/ref.f32" \
  >"$WORK/ref.out" 2>&1 || { cat "$WORK/ref.out"; fail "reference run failed"; }
"$BATON" train "$CFG" --run-dir "$WORK/base" "${common[@]}" --set checkpoint.keep_last=10 \
  >"$WORK/base.out" 2>&1 || { cat "$WORK/base.out"; fail "base run failed"; }
[ -d "$WORK/base/ckpt-00000005" ] && [ -d "$WORK/base/ckpt-00000010" ] || fail "base checkpoints"

flip_middle() {
  "$PY" - "$1" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x04
open(p, "wb").write(b)
PY
}
tree_sum() { (cd "$1" && find . -type f | sort | xargs md5sum); }

# Both checkpoints damaged: one payload, one manifest.
cp -r "$WORK/base" "$WORK/run"
flip_middle "$(ls "$WORK"/run/ckpt-00000010/params.*.zst | head -1)"
flip_middle "$WORK/run/ckpt-00000005/manifest.json"
tree_sum "$WORK/run/ckpt-00000010" >"$WORK/sum10"
tree_sum "$WORK/run/ckpt-00000005" >"$WORK/sum5"
set +e
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" >"$WORK/a.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/a.out"; fail "no usable checkpoint: exit $rc, want 1"; }
grep -q "no checkpoint in $WORK/run is usable (ckpt-00000010: .*checksum mismatch.*; ckpt-00000005: .*manifest.json fails its checksum.*); refusing to start again from step 0" "$WORK/a.out" \
  || { cat "$WORK/a.out"; fail "the refusal does not name each checkpoint and why"; }
grep -q "training complete\|^step " "$WORK/a.out" && { cat "$WORK/a.out"; fail "trained anyway"; }
diff <(tree_sum "$WORK/run/ckpt-00000010") "$WORK/sum10" >/dev/null || fail "ckpt-10 changed"
diff <(tree_sum "$WORK/run/ckpt-00000005") "$WORK/sum5" >/dev/null || fail "ckpt-5 changed"
grep -m1 "refusing" "$WORK/a.out"

# --allow-fresh-start: step 0, bit-exact with a new run; nothing deleted.
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --allow-fresh-start \
  --dump-params "$WORK/run.f32" >"$WORK/b.out" 2>&1 || { cat "$WORK/b.out"; fail "--allow-fresh-start failed"; }
grep -q "resumed" "$WORK/b.out" && fail "--allow-fresh-start resumed"
cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "--allow-fresh-start: parameters differ from a new run"
diff <(tree_sum "$WORK/run/rejected-ckpt-00000010") "$WORK/sum10" >/dev/null || { ls "$WORK/run"; fail "damaged ckpt-10 not kept"; }
diff <(tree_sum "$WORK/run/rejected-ckpt-00000005") "$WORK/sum5" >/dev/null || { ls "$WORK/run"; fail "damaged ckpt-5 not kept"; }
"$BATON" inspect "$WORK/run" >/dev/null || fail "the new run's checkpoint does not verify"
grep -m1 "kept as" "$WORK/b.out"

# --resume never: starts over as before.
rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
flip_middle "$(ls "$WORK"/run/ckpt-00000010/params.*.zst | head -1)"
flip_middle "$(ls "$WORK"/run/ckpt-00000005/params.*.zst | head -1)"
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --resume never \
  >"$WORK/c.out" 2>&1 || { cat "$WORK/c.out"; fail "--resume never failed"; }

# Checkpoints that only fail while loading (version 1: no manifest
# checksum; a loader state beyond the data).
rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
for s in 5 10; do
  "$PY" - "$(printf '%s/ckpt-%08d' "$WORK/run" "$s")/manifest.json" <<'PY'
import json, sys
p = sys.argv[1]
m = json.load(open(p)); del m["manifest_xxh64"]; m["format_version"] = 1
m["meta"]["loader"]["consumed"] = 10**9
json.dump(m, open(p, "w"))
PY
done
set +e
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" >"$WORK/d.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "no checkpoint in $WORK/run is usable (ckpt-00000010: .*cannot seek.*; ckpt-00000005: .*cannot seek" "$WORK/d.out" \
  || { cat "$WORK/d.out"; fail "load-time failures: exit $rc or message"; }
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --allow-fresh-start \
  --dump-params "$WORK/run.f32" >"$WORK/e.out" 2>&1 || { cat "$WORK/e.out"; fail "load-time + --allow-fresh-start failed"; }
cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "after failed loads, the fresh start differs from a new run"
[ -d "$WORK/run/rejected-ckpt-00000010" ] && [ -d "$WORK/run/rejected-ckpt-00000005" ] || { ls "$WORK/run"; fail "load-time rejected not kept"; }
echo "8 passed, 0 failed"
