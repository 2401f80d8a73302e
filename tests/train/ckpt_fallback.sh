#!/usr/bin/env bash
# Issue 17 ("nothing silent"), item 1: a bit flipped in a trainer
# checkpoint is detected by `baton inspect` and, while the resume chooses
# its checkpoint, skipped: the run falls back to the previous checkpoint,
# the damaged one is kept (renamed rejected-ckpt-*), and the final
# parameters equal those of an uninterrupted run, bit for bit. Damage that
# only loading can show (a version-1 manifest, which has no manifest
# checksum: a loader state the data does not have or that does not follow
# from the step, a saved config key that does not parse, a decoded-data
# checksum) falls back the same way instead
# of stopping the resume, and is not reported as a config change.
# (Every bit of a manifest: ckpt_bitflip, in-process.)
source "$(dirname "$0")/lib.sh"
common=(--set train.steps=20 --set checkpoint.every=5 --set checkpoint.keep_last=10)
"$BATON" train "$CFG" --run-dir "$WORK/ref" "${common[@]}" --dump-params "$WORK/ref.f32" \
  >"$WORK/ref.out" 2>&1 || { cat "$WORK/ref.out"; fail "reference run failed"; }
# The damaged run directory: ckpt-5 intact, ckpt-10 the newest (15, 20 gone).
mkdir "$WORK/base"
cp -r "$WORK/ref/ckpt-00000005" "$WORK/ref/ckpt-00000010" "$WORK/base/"
man="$WORK/base/ckpt-00000010/manifest.json"

# flip FILE BIT: flips bit BIT (0 = first bit of byte 0) of FILE in place.
flip() {
  "$PY" - "$1" "$2" <<'PY'
import sys
p, bit = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[bit // 8] ^= 1 << (bit % 8)
open(p, "wb").write(b)
PY
}

# The bits to flip in the manifest: every bit of the bytes that decide where
# training resumes (the step, meta's step, loader epoch and consumed, a
# config key, the manifest checksum), plus a seeded sample of the rest.
bits=$("$PY" - "$man" <<'PY'
import re, sys, random
t = open(sys.argv[1], "rb").read().decode()
bits = set()
for pat in [r'"step":\s*(\d+)', r'"epoch":\s*(\d+)', r'"consumed":\s*(\d+)',
            r'model\.n_layer = (\d)', r'"manifest_xxh64":\s*"([0-9a-f]{2})']:
    for m in re.finditer(pat, t):
        bits |= {8 * p + b for p in range(m.start(1), m.end(1)) for b in range(8)}
random.seed(17)
bits |= {8 * p + random.randrange(8) for p in random.sample(range(len(t)), 24)}
print(" ".join(map(str, sorted(bits))))
PY
)
n=0 nResume=0
for bit in $bits; do
  rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
  flip "$WORK/run/ckpt-00000010/manifest.json" "$bit"
  set +e
  "$BATON" inspect "$WORK/run/ckpt-00000010" >"$WORK/i.out" 2>&1
  rc=$?
  set -e
  [ "$rc" = 1 ] && grep -q "verify: FAIL" "$WORK/i.out" || { cat "$WORK/i.out"; fail "manifest bit $bit: inspect exit $rc"; }
  n=$((n + 1))
  # the full resume and comparison for every 4th flip (time)
  [ $((n % 4)) = 1 ] || continue
  "$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --dump-params "$WORK/run.f32" \
    >"$WORK/r.out" 2>&1 || { cat "$WORK/r.out"; fail "manifest bit $bit: resume failed"; }
  grep -q "warning: skipping checkpoint .*ckpt-00000010" "$WORK/r.out" || { cat "$WORK/r.out"; fail "bit $bit: damage not reported"; }
  grep -q "resumed from .*ckpt-00000005 at step 5" "$WORK/r.out" || { cat "$WORK/r.out"; fail "bit $bit: no fallback to step 5"; }
  cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "bit $bit: final parameters differ from the uninterrupted run"
  [ -d "$WORK/run/rejected-ckpt-00000010" ] || { ls "$WORK/run"; fail "bit $bit: the damaged checkpoint was not kept"; }
  nResume=$((nResume + 1))
done
echo "manifest: $n bit flips detected by inspect; $nResume resumed from step 5 bit-exact"
grep -m1 "skipping checkpoint" "$WORK/r.out"

# A sample of payload bits: first, middle and last byte of every file.
n=0
for f in "$WORK"/base/ckpt-00000010/*.zst; do
  sz=$(stat -c %s "$f")
  for bit in 3 $((4 * sz + 1)) $((8 * sz - 1)); do
    rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
    flip "$WORK/run/ckpt-00000010/$(basename "$f")" "$bit"
    set +e; "$BATON" inspect "$WORK/run" >"$WORK/i.out" 2>&1; rc=$?; set -e
    [ "$rc" = 1 ] || { cat "$WORK/i.out"; fail "payload $(basename "$f") bit $bit: inspect exit $rc"; }
    "$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --dump-params "$WORK/run.f32" \
      >"$WORK/r.out" 2>&1 || { cat "$WORK/r.out"; fail "payload bit $bit: resume failed"; }
    grep -q "resumed from .*ckpt-00000005 at step 5" "$WORK/r.out" || { cat "$WORK/r.out"; fail "payload bit $bit: no fallback"; }
    cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "payload bit $bit: final parameters differ"
    n=$((n + 1))
  done
done
echo "payloads: $n bit flips detected and resumed from step 5 bit-exact"

# A directory whose name disagrees with its manifest's step.
rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
mv "$WORK/run/ckpt-00000010" "$WORK/run/ckpt-00000012"
set +e; "$BATON" inspect "$WORK/run" >"$WORK/i.out" 2>&1; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "directory name ckpt-00000012 says step 12 but its manifest says step 10" "$WORK/i.out" \
  || { cat "$WORK/i.out"; fail "renamed checkpoint: inspect exit $rc"; }
"$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --dump-params "$WORK/run.f32" \
  >"$WORK/r.out" 2>&1 || { cat "$WORK/r.out"; fail "renamed checkpoint: resume failed"; }
grep -q "resumed from .*ckpt-00000005 at step 5" "$WORK/r.out" || { cat "$WORK/r.out"; fail "renamed checkpoint: no fallback"; }
cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "renamed checkpoint: final parameters differ"
tail -1 "$WORK/i.out"

# Damage that only loading shows: version-1 manifests (no manifest checksum,
# still read) edited after the fact.
v1_edit() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys
p, what = sys.argv[1], sys.argv[2]
m = json.load(open(p))
del m["manifest_xxh64"]
m["format_version"] = 1
if what == "loader":
    m["meta"]["loader"]["consumed"] = 10**9
elif what == "consumed":  # possible for the data, wrong for step 10
    m["meta"]["loader"]["consumed"] = 16
elif what == "epoch":
    m["meta"]["loader"]["epoch"] = 1
elif what == "config":
    m["meta"]["config"] = m["meta"]["config"].replace("model.n_layer", "model.n_lazer")
elif what == "raw":
    f = m["files"][0]
    f["raw_xxh64"] = "%016x" % (int(f["raw_xxh64"], 16) ^ 1)
json.dump(m, open(p, "w"), indent=1)
PY
}
for what in loader consumed epoch config raw; do
  rm -rf "$WORK/run"; cp -r "$WORK/base" "$WORK/run"
  v1_edit "$WORK/run/ckpt-00000010/manifest.json" "$what"
  "$BATON" train "$CFG" --run-dir "$WORK/run" "${common[@]}" --dump-params "$WORK/run.f32" \
    >"$WORK/r.out" 2>&1 || { cat "$WORK/r.out"; fail "v1 $what: the resume stopped instead of falling back"; }
  grep -q "warning: checkpoint .*ckpt-00000010 failed while loading" "$WORK/r.out" || { cat "$WORK/r.out"; fail "v1 $what: not reported"; }
  grep -q "resumed from .*ckpt-00000005 at step 5" "$WORK/r.out" || { cat "$WORK/r.out"; fail "v1 $what: no fallback"; }
  grep -q "in the checkpoint but" "$WORK/r.out" && { cat "$WORK/r.out"; fail "v1 $what: reported as a config change"; }
  cmp -s "$WORK/ref.f32" "$WORK/run.f32" || fail "v1 $what: final parameters differ"
  [ -d "$WORK/run/rejected-ckpt-00000010" ] || fail "v1 $what: damaged checkpoint not kept"
  grep -m1 "failed while loading" "$WORK/r.out"
done
echo "load-time damage: 5 cases fell back to step 5 bit-exact"
