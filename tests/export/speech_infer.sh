#!/usr/bin/env bash
# speech_infer.sh BATON FIXTURE GPT_EXPORT PY: `baton infer --wav` (issue
# 15) on the speech fixture (speech_fixture.sh): both spellings of the
# file list give the same lines, and every bad input is exit 1 (exit 2
# for usage) with a message naming the file or the directory:
#   stereo, 8 kHz, truncated, 0-sample, 10 ms (under one window), missing
#   and non-audio files; a GPT export given WAV files; a speech export
#   given --prompt or nothing; a positional file without --wav.
# A bad file among good ones prints no transcript (all files are read
# first). The speech export's own numbers are check_speech.py's.
set -euo pipefail
baton=$1 fx=$2 gpt=$3 py=$4
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
W=$(mktemp -d /tmp/baton-speech-infer.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
n=0
ok() { echo "ok:   $*"; n=$((n + 1)); }
a=$fx/c/wav/val000.wav b=$fx/c/wav/val001.wav

"$baton" infer "$fx/fp32" --wav "$a" "$b" >"$W/one" || fail "infer --wav A B"
"$baton" infer "$fx/fp32" --wav "$a" --wav "$b" >"$W/two" || fail "infer --wav A --wav B"
cmp -s "$W/one" "$W/two" || fail "the two spellings differ"
[ "$(cut -f1 "$W/one")" = "$(printf '%s\n%s' "$a" "$b")" ] || { cat "$W/one"; fail "not one path<TAB>text line per file"; }
ok "--wav A B = --wav A --wav B: $(tr '\t\n' '=;' <"$W/one")"

"$py" - "$W" "$a" <<'PY'
import sys, wave
import numpy as np
W, src = sys.argv[1], sys.argv[2]
with wave.open(src, "rb") as w:
    pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
def put(name, x, rate=16000, ch=1):
    with wave.open(f"{W}/{name}", "wb") as w:
        w.setnchannels(ch); w.setsampwidth(2); w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(x, "<i2").tobytes())
put("stereo.wav", np.repeat(pcm, 2), ch=2)
put("rate8k.wav", pcm, rate=8000)
put("empty.wav", pcm[:0])
put("short.wav", pcm[:160])
put("full.wav", pcm)
data = open(f"{W}/full.wav", "rb").read()
open(f"{W}/trunc.wav", "wb").write(data[:len(data) // 2])
open(f"{W}/text.wav", "w").write("not audio\n")
PY

# expect EXIT FRAGMENT ARGS...: baton exits EXIT, stderr has FRAGMENT,
# stdout is empty (no transcript of the good file before the bad one).
expect() {
  local want=$1 frag=$2; shift 2
  set +e
  "$baton" "$@" >"$W/out" 2>"$W/err"
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || { cat "$W/err"; fail "exit $rc (want $want): $*"; }
  grep -qF -- "$frag" "$W/err" || { cat "$W/err"; fail "no '$frag' for: $*"; }
  [ ! -s "$W/out" ] || { cat "$W/out"; fail "stdout not empty for: $*"; }
  ok "exit $rc: $(head -1 "$W/err")"
}
expect 1 "$W/stereo.wav: 2 channels, expected mono" infer "$fx/fp32" --wav "$a" "$W/stereo.wav"
expect 1 "$W/rate8k.wav: sample rate 8000 Hz, expected 16000" infer "$fx/fp32" --wav "$W/rate8k.wav"
expect 1 "$W/trunc.wav: truncated" infer "$fx/fp32" --wav "$W/trunc.wav"
expect 1 "$W/empty.wav: 0 samples, shorter than one 400-sample (25 ms) window (empty)" infer "$fx/fp32" --wav "$W/empty.wav"
expect 1 "$W/short.wav: 160 samples, shorter than one 400-sample" infer "$fx/fp32" --wav "$W/short.wav"
expect 1 "$W/nosuch.wav: cannot read" infer "$fx/fp32" --wav "$W/nosuch.wav"
expect 1 "$W/text.wav: cannot read" infer "$fx/fp32" --wav "$W/text.wav"
expect 1 "$gpt is a GPT model, not a speech model: --wav needs an export of a model.type = speech run" infer "$gpt" --wav "$a"
expect 1 "$fx/fp32 is a speech model: give --wav FILE.wav (16 kHz mono), not --prompt" infer "$fx/fp32" --prompt hello
expect 1 "$fx/fp32 is a speech model: give --wav FILE.wav (16 kHz mono)" infer "$fx/fp32"
expect 2 "baton infer: unexpected argument '$a'" infer "$fx/fp32" "$a"
"$baton" infer "$fx/fp32" --wav "$W/full.wav" >"$W/full" || fail "the rewritten good file"
[ "$(cut -f2 "$W/full")" = "$(head -1 "$W/one" | cut -f2)" ] || fail "the same audio gives another transcript"
ok "the same samples rewritten: the same transcript"
echo "$n passed, 0 failed"
