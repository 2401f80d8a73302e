#!/usr/bin/env python3
"""A toy speech corpus for the training tests (issue 15): N utterances of
16 kHz mono WAV, each one or two words of 1-3 characters from a 4-letter
alphabet, every character a 60 ms tone of its own frequency, a space
60 ms of silence (+ a little noise throughout), so that a tiny CTC model
can learn the mapping in a few dozen steps and WER differs from CER. Writes
OUT/train.tsv and OUT/val.tsv (manifests for `baton prepare audio`).

Seeded: the same N and seed give the same files.
usage: speech_corpus.py OUT N_TRAIN N_VAL [SEED]
"""
import os
import sys
import wave

import numpy as np

SR = 16000
FREQ = {"a": 300.0, "b": 700.0, "c": 1300.0, "d": 2200.0}
CHAR_S, GAP_S = 0.06, 0.02


def utterance(rng):
    words = ["".join(rng.choice(list(FREQ), int(rng.integers(1, 4))))
             for _ in range(int(rng.integers(1, 3)))]
    text = " ".join(words)
    parts = []
    for ch in text:
        t = np.arange(int(CHAR_S * SR)) / SR
        tone = 0.4 * np.sin(2 * np.pi * FREQ[ch] * t) if ch != " " else 0 * t
        parts.append(tone)
        parts.append(np.zeros(int(GAP_S * SR)))
    x = np.concatenate([np.zeros(int(0.03 * SR))] + parts)
    return text, x + 0.01 * rng.standard_normal(len(x))


def write_wav(path, x):
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def main():
    out, nTrain, nVal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "wav"), exist_ok=True)
    for split, n in (("train", nTrain), ("val", nVal)):
        with open(os.path.join(out, split + ".tsv"), "w") as f:
            for i in range(n):
                text, x = utterance(rng)
                name = "wav/%s%03d.wav" % (split, i)
                write_wav(os.path.join(out, name), x)
                f.write("%s\t%s\n" % (name, text))


if __name__ == "__main__":
    main()
