#!/usr/bin/env bash
# speech_fixture.sh BATON SRC OUT PY: a tiny trained speech model
# (model.type = speech, issue 15) and its exports, for the speech export
# tests (a ctest fixture). Everything lands in OUT, which is recreated:
#   c/              the toy corpus of tests/train/speech_corpus.py (40
#                   train + 12 val utterances of tone "characters")
#   long.wav        val000..002 end to end (1.2 s, 117 frames): longer than
#                   the model's max_utterance_frames (64), which inference
#                   must not be bound by
#   infer.tsv/.h5   the 12 val files + long.wav, prepared with the training
#                   vocabulary: the features the Python checks feed to
#                   PyTorch and ONNX Runtime, and what `baton eval` scores
#   run/            150 steps of tests/train/speech_micro.ini (validation
#                   CER ~12%: transcripts are neither empty nor perfect)
#   fp32/ bf16/     `baton export run -o DIR` (the default format) and
#                   --dtype bf16
#   onnx/           --format onnx
set -euo pipefail
baton=$1 src=$2 out=$3 py=$4
rm -rf "$out"
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
"$py" "$src/tests/train/speech_corpus.py" "$out/c" 40 12 7
"$py" - "$out" <<'PY'
import sys, wave
out = sys.argv[1]
frames, texts = b"", []
lines = [l.rstrip("\n").split("\t", 1) for l in open(out + "/c/val.tsv")]
for path, text in lines[:3]:
    with wave.open(f"{out}/c/{path}", "rb") as w:
        params = w.getparams()
        frames += w.readframes(w.getnframes())
    texts.append(text)
with wave.open(out + "/long.wav", "wb") as w:
    w.setparams(params)
    w.writeframes(frames)
with open(out + "/infer.tsv", "w") as f:
    for path, text in lines:
        f.write(f"{out}/c/{path}\t{text}\n")
    f.write(f"{out}/long.wav\t{' '.join(texts)}\n")
PY
"$baton" prepare audio -o "$out/train.h5" "$out/c/train.tsv" >/dev/null
"$baton" prepare audio -o "$out/val.h5" --vocab "$out/train.h5" "$out/c/val.tsv" >/dev/null
"$baton" prepare audio -o "$out/infer.h5" --vocab "$out/train.h5" "$out/infer.tsv" >/dev/null
"$baton" train "$src/tests/train/speech_micro.ini" --run-dir "$out/run" \
  --set data.path="$out/train.h5" --set data.val_path="$out/val.h5" \
  --set data.val_every=150 --set train.steps=150 --set checkpoint.every=150 \
  >"$out/train.log" 2>&1 || { cat "$out/train.log"; exit 1; }
grep "validation at step 150" "$out/train.log"
"$baton" export "$out/run" -o "$out/fp32"
"$baton" export "$out/run" -o "$out/bf16" --dtype bf16
"$baton" export "$out/run" --format onnx -o "$out/onnx"
echo "fixture speech ready in $out"
