#!/usr/bin/env python3
"""launch/speech-corpus.sh with a small N: the manifests, the split, and the
two HDF5 files (read with h5py): the labels spell the manifest's
transcripts, validation shares the train vocabulary, every utterance has the
frames its WAV's length gives, and a second run with the same seed writes
the same bytes (a different seed, different sentences).

Usage: test_speech_corpus.py SCRIPT BATON WORKDIR
"""
import hashlib
import os
import shutil
import subprocess
import sys
import wave

import h5py

N = 20


def run(script, baton, out, seed):
    env = dict(os.environ, BATON=baton, SEED=str(seed), JOBS="2")
    r = subprocess.run(["bash", script, out, str(N)], env=env, capture_output=True, text=True)
    print(r.stdout.strip())
    if r.returncode != 0:
        print(r.stderr)
    return r.returncode


def manifest(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]


def check_h5(out, split, rows, vocab_want, fails):
    with h5py.File(os.path.join(out, f"{split}.h5"), "r") as f:
        g = f["audio"]
        foff, loff = g["frame_offsets"][()], g["label_offsets"][()]
        labels, vocab = g["labels"][()], [v.decode() for v in g["vocab"][()]]
        nfeat = g["features"].shape
    if len(foff) != len(rows) + 1 or nfeat[0] != foff[-1] or nfeat[1] != 80:
        fails.append(f"{split}: {len(foff) - 1} utterances / {nfeat} features for {len(rows)} manifest rows")
        return vocab
    if vocab_want is not None and vocab != vocab_want:
        fails.append(f"{split}: vocabulary {vocab} differs from train's {vocab_want}")
    for i, (path, text) in enumerate(rows):
        got = "".join(vocab[k] for k in labels[loff[i]:loff[i + 1]])
        if got != text:
            fails.append(f"{split} {i}: labels spell '{got}', manifest '{text}'")
        with wave.open(os.path.join(out, path)) as w:
            rate, ch, n = w.getframerate(), w.getnchannels(), w.getnframes()
        want = 1 + (n - 400) // 160
        if rate != 16000 or ch != 1 or foff[i + 1] - foff[i] != want:
            fails.append(f"{split} {i}: {rate} Hz x{ch}, {foff[i + 1] - foff[i]} frames, want {want}")
    return vocab


def digest(out):
    h = hashlib.sha256()
    for name in ("train.tsv", "val.tsv", "train.h5", "val.h5"):
        with open(os.path.join(out, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def main():
    script, baton, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    a, b, c = (os.path.join(work, x) for x in ("a", "b", "c"))
    fails = []
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        if run(script, baton, out, seed) != 0:
            print(f"FAIL: speech-corpus.sh {out} {N} (seed {seed}) failed")
            return 1
    train, val = manifest(os.path.join(a, "train.tsv")), manifest(os.path.join(a, "val.tsv"))
    if len(train) + len(val) != N or len(val) != 1 or train[0][1] != "the quick brown fox jumps over the lazy dog":
        fails.append(f"split: {len(train)} train + {len(val)} val of {N}; first '{train[0][1]}'")
    if len({t for _, t in train + val}) < N - 2:
        fails.append("sentences: fewer than N - 2 distinct")
    vocab = check_h5(a, "train", train, None, fails)
    if vocab != [""] + sorted(set("".join(t for _, t in train))):
        fails.append(f"train vocabulary {vocab}")
    check_h5(a, "val", val, vocab, fails)
    if digest(a) != digest(b):
        fails.append("same seed: the manifests or HDF5 files differ")
    if manifest(os.path.join(c, "train.tsv")) == train:
        fails.append("seed 2: the same manifest as seed 1")
    for f in fails:
        print("FAIL:", f)
    print(f"speech corpus of {N}: {len(train)} train, {len(val)} val, vocabulary {len(vocab)}; "
          f"{'ok' if not fails else f'{len(fails)} failures'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
