#!/usr/bin/env bash
# speech-corpus.sh: a speech corpus without downloads (issue 15 item 5).
# Synthesises N utterances of generated English sentences with espeak-ng
# (several voices and variants, speeds and pitches), resamples them to
# 16 kHz mono with sox, writes TSV manifests, splits train/validation and
# runs `baton prepare audio` on both (validation with the train
# vocabulary). Deterministic from SEED: the same N and SEED give the same
# sentences, voices and manifests (the WAV bytes also depend on the
# installed espeak-ng and sox versions).
#
# usage: launch/speech-corpus.sh OUT_DIR [N]
#   N          utterances (default 3000)
#   env BATON  the baton binary (default: build/baton of this repository)
#   env SEED   seed of sentences, voices and split (default 1)
#   env VAL    every VAL-th utterance goes to validation (default 10)
#   env JOBS   parallel synthesis jobs (default: nproc)
#
# Writes OUT_DIR/wav/NNNNNN.wav, OUT_DIR/{train,val}.tsv and
# OUT_DIR/{train,val}.h5 (layout: docs/data.md, "Audio data"). Sentences
# are lower-case letters and spaces; utterance 0 is a pangram and always in
# train, so the train vocabulary holds every character validation uses.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT_DIR [N]" >&2
  exit 2
fi
out=$1
n=${2:-3000}
root="$(cd "$(dirname "$0")/.." && pwd)"
baton=${BATON:-$root/build/baton}
seed=${SEED:-1}
val=${VAL:-10}
jobs=${JOBS:-$(nproc)}
case $n in '' | *[!0-9]*) echo "$0: N '$n' is not a number" >&2; exit 2 ;; esac
if [ "$n" -lt 2 ]; then echo "$0: N must be at least 2" >&2; exit 2; fi
for tool in espeak-ng sox python3; do
  command -v "$tool" >/dev/null || {
    echo "$0: $tool not found (launch/install-deps.sh installs it)" >&2
    exit 1
  }
done
[ -x "$baton" ] || { echo "$0: baton binary '$baton' not found (set BATON)" >&2; exit 1; }
mkdir -p "$out/wav"

# 1. The plan: one line per utterance, "id<TAB>voice<TAB>speed<TAB>pitch<TAB>text",
#    from Python's seeded Mersenne Twister (stable across Python versions).
python3 - "$n" "$seed" >"$out/plan.tsv" <<'EOF'
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
det = ["the", "a", "every", "one", "some", "my", "your", "this", "that", "no"]
num = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]
adj = ["small", "big", "red", "green", "quiet", "loud", "happy", "lazy", "quick", "old",
       "young", "brave", "cold", "warm", "bright", "dark", "gentle", "strange", "heavy", "tiny"]
noun = ["cat", "dog", "fox", "bird", "farmer", "teacher", "robot", "river", "tree", "car",
        "boat", "child", "king", "queen", "horse", "zebra", "window", "garden", "market", "jacket"]
verb = [("sees", "see"), ("finds", "find"), ("likes", "like"), ("follows", "follow"),
        ("paints", "paint"), ("carries", "carry"), ("watches", "watch"),
        ("jumps over", "jump over"), ("moves", "move"), ("visits", "visit"),
        ("fixes", "fix"), ("builds", "build"), ("quietly opens", "quietly open"),
        ("never forgets", "never forget"), ("wants", "want")]
prep = ["near", "under", "behind", "beside", "inside", "across", "above"]
place = ["the house", "the old bridge", "a big box", "the park", "the lake", "the yellow wall"]
adv = ["today", "at night", "every morning", "again", "slowly", "very quickly", "at noon"]
voices = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
variants = ["", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3", "+f4"]

def np_():
    """(noun phrase, plural?)"""
    if rng.random() < 0.3:
        return f"{rng.choice(num)} {rng.choice(adj)} {rng.choice(noun)}s", True
    a = f"{rng.choice(adj)} " if rng.random() < 0.6 else ""
    rest = f"{a}{rng.choice(noun)}"
    d = rng.choice(det)
    if d == "a" and rest[0] in "aeiou":
        d = "an"
    return f"{d} {rest}", False

def sentence():
    subj, plural = np_()
    s = f"{subj} {rng.choice(verb)[plural]} {np_()[0]}"
    if rng.random() < 0.4:
        s += f" {rng.choice(prep)} {rng.choice(place)}"
    if rng.random() < 0.4:
        s += f" {rng.choice(adv)}"
    return s

for i in range(n):
    text = "the quick brown fox jumps over the lazy dog" if i == 0 else sentence()
    voice = rng.choice(voices) + rng.choice(variants)
    print(f"{i:06d}\t{voice}\t{rng.randint(130, 200)}\t{rng.randint(30, 75)}\t{text}")
EOF

# 2. Synthesis: espeak-ng writes 22050 Hz; sox resamples to 16 kHz mono.
synth() {
  local id=$1 voice=$2 speed=$3 pitch=$4 text=$5 dir=$6
  local tmp="$dir/wav/$id.22k.wav"
  espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$tmp" "$text"
  # -R: repeatable dither; gain -3: espeak peaks at full scale, and the
  # resampler's overshoot would otherwise clip.
  sox -q -R "$tmp" -r 16000 -c 1 -b 16 "$dir/wav/$id.wav" gain -3
  rm -f "$tmp"
}
export -f synth
export SPEECH_CORPUS_OUT="$out"
tr '\t\n' '\0\0' <"$out/plan.tsv" |
  xargs -0 -n 5 -P "$jobs" bash -c 'synth "$@" "$SPEECH_CORPUS_OUT"' _

# 3. Manifests: every VAL-th utterance (not utterance 0) to validation.
awk -F'\t' -v val="$val" -v OFS='\t' '
  { line = "wav/" $1 ".wav" OFS $5 }
  NR > 1 && (NR - 1) % val == 0 { print line > "'"$out"'/val.tsv"; next }
  { print line > "'"$out"'/train.tsv" }' "$out/plan.tsv"
touch "$out/val.tsv"

# 4. HDF5: train builds the vocabulary, validation reuses it.
"$baton" prepare audio -o "$out/train.h5" "$out/train.tsv"
if [ -s "$out/val.tsv" ]; then
  "$baton" prepare audio -o "$out/val.h5" --vocab "$out/train.h5" "$out/val.tsv"
fi
echo "speech-corpus: $n utterances in $out ($(wc -l <"$out/train.tsv") train, $(wc -l <"$out/val.tsv") validation)"
