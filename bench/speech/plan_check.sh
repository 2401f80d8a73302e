#!/usr/bin/env bash
# bench_speech_plan: the speech benchmark's PyTorch peer trains on the
# batches speech_plan prints (bench/speech/run.sh); this checks that those
# are the batches `baton train` takes. On the toy corpus of the training
# tests (tests/train/speech_corpus.py, 40 utterances, several epochs in 20
# steps), for every step: the utterance count (metrics.jsonl's
# samples_per_s x step_ms) and the running padding fraction
# (data/pad_fraction, over B x T summed) equal the plan's. A plan made with
# another seed must differ, or the comparison proves nothing.
#
# usage: plan_check.sh   (env BATON, SPEECH_PLAN, PY from CMake)
set -euo pipefail
: "${BATON:?}" "${SPEECH_PLAN:?}" "${PY:?}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d /tmp/baton-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }

"$PY" "$root/tests/train/speech_corpus.py" "$work/c" 40 12 7
"$BATON" prepare audio -o "$work/train.h5" "$work/c/train.tsv" >/dev/null
cfg="$root/tests/train/speech_micro.ini" # max_frames 256, sort_window 16
"$BATON" train "$cfg" --set data.path="$work/train.h5" --run-dir "$work/r" \
  --resume never --quiet --set train.steps=20 --set train.log_every=1 \
  --set train.seed=1337 >/dev/null 2>&1 || fail "baton train failed"
"$SPEECH_PLAN" "$work/train.h5" 256 16 1337 1 20 >"$work/plan" || fail "speech_plan failed"
"$SPEECH_PLAN" "$work/train.h5" 256 16 99 1 20 >"$work/plan99"

"$PY" - "$work/r/metrics.jsonl" "$work/plan" "$work/plan99" <<'PY' || fail "plan and training differ"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if "time/step_ms" in r]
assert len(rows) == 20, len(rows)

def expect(path):
    """Per step: (utterances, running pad fraction) from a plan file."""
    out, pad, tot = [], 0, 0
    for line in open(path):
        w = [int(x) for x in line.split()]
        pad, tot = pad + w[1] - w[0], tot + w[1]
        out.append((len(w) - 2, pad / tot))
    return out

got = [(round(r["perf/samples_per_s"] * r["time/step_ms"] / 1e3),
        r["data/pad_fraction"]) for r in rows]
want, other = expect(sys.argv[2]), expect(sys.argv[3])
bad = [(i + 1, g, w) for i, (g, w) in enumerate(zip(got, want))
       if g[0] != w[0] or abs(g[1] - w[1]) > 1e-12]
print("steps compared: %d; mismatches: %d" % (len(got), len(bad)))
for b in bad[:5]:
    print("  step %d: train (B, pad) %s, plan %s" % b)
same99 = all(g[0] == w[0] and abs(g[1] - w[1]) <= 1e-12 for g, w in zip(got, other))
print("another seed's plan matches too: %s (must be False)" % same99)
sys.exit(1 if bad or same99 else 0)
PY
echo "PASS"
