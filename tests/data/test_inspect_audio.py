#!/usr/bin/env python3
"""`baton inspect` on a file of `baton prepare audio` (data/check.c):
the summary lines (utterances, frames, seconds, labels, utterance lengths,
vocabulary) equal what h5py computes from the same file, exit 0; a NaN
feature and a label outside the vocabulary (written into copies with
h5py) are reported with the utterance and row or label index, exit 1.

usage: test_inspect_audio.py BATON WORK_DIR
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

baton, work = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
subprocess.run([sys.executable, os.path.join(here, "..", "train", "speech_corpus.py"),
                os.path.join(work, "c"), "40", "12", "3"], check=True)
h5 = os.path.join(work, "train.h5")
subprocess.run([baton, "prepare", "audio", "-o", h5, os.path.join(work, "c", "train.tsv")],
               check=True, stdout=subprocess.DEVNULL)

passed = 0


def inspect(path):
    r = subprocess.run([baton, "inspect", path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def expect(cond, what, out):
    global passed
    if not cond:
        print(out)
        sys.exit("FAIL: " + what)
    passed += 1


# 1. The summary against h5py.
with h5py.File(h5, "r") as f:
    g = f["audio"]
    fo, lo = g["frame_offsets"][:], g["label_offsets"][:]
    vocab = [v.decode() if isinstance(v, bytes) else v for v in g["vocab"][:]]
frames = np.diff(fo)
n, sec = len(frames), 0.01
want = [
    "audio: %d utterances, %d frames (%.1f s), %d labels" % (n, fo[-1], fo[-1] * sec, lo[-1]),
    "  utterances: %.2f s .. %.2f s, mean %.2f s; %d without a transcript"
    % (frames.min() * sec, frames.max() * sec, fo[-1] * sec / n, int((np.diff(lo) == 0).sum())),
    '  vocabulary: %d (blank + %d characters): "%s"' % (len(vocab), len(vocab) - 1, "".join(vocab[1:])),
    "  /audio: every feature finite, every label in 1..%d: OK" % (len(vocab) - 1),
    "result: OK",
]
rc, out = inspect(h5)
expect(rc == 0, "inspect of a good audio file exited %d" % rc, out)
expect("not a dataset baton trains on" not in out, "audio file called 'not a dataset'", out)
for line in want:
    expect(line in out.splitlines(), "no line %r" % line, out)
print("\n".join(l for l in out.splitlines() if l.startswith(("audio:", "  utt", "  voc", "  /audio:"))))

# 2. A NaN feature in utterance 7, row 3 of it.
bad = os.path.join(work, "nan.h5")
shutil.copy(h5, bad)
with h5py.File(bad, "r+") as f:
    f["audio/features"][fo[7] + 3, 5] = np.nan
rc, out = inspect(bad)
expect(rc == 1, "NaN feature: exit %d" % rc, out)
expect("%s:/audio/features: utterance 7: row %d holds a non-finite value" % (bad, fo[7] + 3) in out,
       "NaN feature not named", out)
expect("result: 1 problem found" in out, "NaN feature: no problem count", out)

# 3. A label outside the vocabulary: the 2nd label of utterance 11.
bad = os.path.join(work, "label.h5")
shutil.copy(h5, bad)
with h5py.File(bad, "r+") as f:
    f["audio/labels"][lo[11] + 1] = len(vocab)
rc, out = inspect(bad)
expect(rc == 1, "bad label: exit %d" % rc, out)
expect("%s:/audio/labels: utterance 11: label %d is %d, outside 1..%d (the vocabulary)"
       % (bad, lo[11] + 1, len(vocab), len(vocab) - 1) in out, "bad label not named", out)
print("%d passed, 0 failed" % passed)
