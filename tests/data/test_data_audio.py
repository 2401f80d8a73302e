#!/usr/bin/env python3
"""`baton prepare audio` (data/prepare_audio.c) against an independent numpy
implementation of the log-mel features of data/audio_features.h, plus the
layout, the vocabulary, --vocab reuse, crash safety and every bad input.

The reference is written from the definition in the header, not from the C
code: numpy's float64 rfft, a Slaney mel filterbank built from the formula.
Tolerance: max |ours - reference| <= 1e-3 in log space (ours uses FFTW in
single precision; the test signals keep every mel band well above the
1e-10 floor so float32 rounding stays ~1e-5 there; the measured figure is
printed).

Usage: test_data_audio.py BATON WORKDIR
"""
import json
import math
import os
import shutil
import subprocess
import sys
import wave

import h5py
import numpy as np

SR, NMEL, WIN, HOP, NFFT = 16000, 80, 400, 160, 512
TOL = 1e-3


def write_wav(path, samples, rate=SR, channels=1):
    """int16 PCM via the wave module; samples float in [-1, 1)."""
    x = np.clip(np.round(np.asarray(samples) * 32768), -32768, 32767)
    x = x.astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return x.astype(np.float64).reshape(-1) / 32768.0


def signal(rng, n):
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 400)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * (f0 * 3.7 + 900 * t) * t)
    return x + 0.02 * rng.standard_normal(n)


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15, 200 * m / 3, 1000 * np.exp(np.log(6.4) * (m - 15) / 27))


def filterbank():
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(SR / 2), NMEL + 2))
    freqs = np.arange(NFFT // 2 + 1) * SR / NFFT
    fb = np.zeros((NMEL, NFFT // 2 + 1))
    for j in range(NMEL):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        tri = np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))
        fb[j] = np.maximum(tri, 0) * 2 / (hi - lo)
    return fb


FB = filterbank()


def reference(x):
    n = 1 + (len(x) - WIN) // HOP
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
    frames = np.stack([x[t * HOP:t * HOP + WIN] * w for t in range(n)])
    p = np.abs(np.fft.rfft(frames, n=NFFT, axis=1)) ** 2
    return np.log(np.maximum(p @ FB.T, 1e-10))


def run(baton, args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([baton, "prepare", "audio"] + args, capture_output=True, text=True, env=e)


class T:
    fails = 0
    n = 0

    @classmethod
    def check(cls, ok, what):
        cls.n += 1
        if not ok:
            cls.fails += 1
            print("FAIL:", what)


def good_corpus(w, rng):
    os.makedirs(os.path.join(w, "wav"), exist_ok=True)
    texts = ["hello world", "a cat sat", "zebra quiz", "café au lait", "Hi there", "ok"]
    lens = [400, 559, 560, 16000, 23456, 4000]  # one window; 1 frame short of 2; 2 frames
    ref, lines = [], []
    for i, (txt, n) in enumerate(zip(texts, lens)):
        x = write_wav(os.path.join(w, "wav", f"u{i}.wav"), signal(rng, n))
        ref.append((x, txt))
        if i % 2:
            lines.append(json.dumps({"audio": f"wav/u{i}.wav", "text": txt}, ensure_ascii=False))
        else:
            lines.append(f"wav/u{i}.wav\t{txt}")
    lines.insert(2, "")  # empty lines are skipped
    with open(os.path.join(w, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("\ufeff" + "\n".join(lines) + "\r\n")  # a BOM, a CRLF
    return ref


def check_layout(path, ref):
    with h5py.File(path, "r") as f:
        g = f["audio"]
        feats, foff = g["features"][()], g["frame_offsets"][()]
        labels, loff = g["labels"][()], g["label_offsets"][()]
        vocab = [v.decode("utf-8") for v in g["vocab"][()]]
        attrs = dict(g.attrs)
    T.check(feats.dtype == np.float32 and feats.shape[1] == NMEL, f"features {feats.dtype} {feats.shape}")
    T.check(foff.dtype == np.int64 and loff.dtype == np.int64 and labels.dtype == np.int32, "dtypes")
    T.check(len(foff) == len(ref) + 1 and len(loff) == len(ref) + 1, "offset lengths")
    for k, v in dict(sample_rate=SR, n_mel=NMEL, window=WIN, hop=HOP, n_fft=NFFT, format_version=1).items():
        T.check(int(attrs.get(k, -1)) == v, f"attribute {k} = {attrs.get(k)}")
    T.check(attrs.get("mel_scale") in (b"slaney", "slaney"), f"mel_scale {attrs.get('mel_scale')}")
    chars = sorted(set("".join(t for _, t in ref)))
    T.check(vocab == [""] + chars, f"vocab {vocab!r} != blank + {chars!r}")
    worst = 0.0
    for i, (x, txt) in enumerate(ref):
        r = reference(x)
        got = feats[foff[i]:foff[i + 1]]
        T.check(got.shape == r.shape, f"utterance {i}: frames {got.shape} vs reference {r.shape}")
        if got.shape == r.shape:
            worst = max(worst, float(np.max(np.abs(got - r))))
        want = [vocab.index(c) for c in txt]
        T.check(list(labels[loff[i]:loff[i + 1]]) == want, f"utterance {i}: labels")
    print(f"features: max |baton - numpy reference| = {worst:.2e} (tolerance {TOL:g}) over "
          f"{len(ref)} utterances, {feats.shape[0]} frames")
    T.check(worst <= TOL, f"feature difference {worst} > {TOL}")
    return vocab


def bad_cases(w, rng):
    """(name, manifest lines, files to make, expected message fragment)."""
    b = os.path.join(w, "bad")
    os.makedirs(b, exist_ok=True)
    ok = signal(rng, 4000)
    write_wav(os.path.join(b, "ok.wav"), ok)
    write_wav(os.path.join(b, "rate.wav"), signal(rng, 4000), rate=22050)
    write_wav(os.path.join(b, "stereo.wav"), np.repeat(ok, 2), channels=2)
    write_wav(os.path.join(b, "empty.wav"), np.zeros(0))
    write_wav(os.path.join(b, "short.wav"), ok[:399])
    write_wav(os.path.join(b, "trunc_src.wav"), ok)
    with open(os.path.join(b, "trunc_src.wav"), "rb") as f:
        data = f.read()
    with open(os.path.join(b, "trunc.wav"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(b, "noise.wav"), "wb") as f:
        f.write(bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    return [
        ("rate", "rate.wav\thi", "rate.wav': sample rate 22050 Hz, expected 16000"),
        ("stereo", "stereo.wav\thi", "stereo.wav': 2 channels, expected mono"),
        ("empty", "empty.wav\thi", "empty.wav': 0 samples, shorter than one 400-sample (25 ms) window (empty)"),
        ("short", "short.wav\thi", "short.wav': 399 samples, shorter than one 400-sample"),
        ("truncated", "trunc.wav\thi", "trunc.wav': truncated"),
        ("missing", "nope.wav\thi", "nope.wav': cannot read"),
        ("not_audio", "noise.wav\thi", "noise.wav': cannot read"),
        ("empty_text", "ok.wav\t", "audio 'ok.wav': empty transcript"),
        ("no_tab", "ok.wav hi", "expected PATH<TAB>TRANSCRIPT or a JSON object"),
        ("bad_json", '{"audio": "ok.wav", "text": ', "not a JSON object"),
        ("json_trailing", '{"audio": "ok.wav", "text": "hi"} x', "not a JSON object"),
        ("json_fields", '{"audio": "ok.wav", "txt": "hi"}', 'needs string fields "audio" and "text"'),
        ("control_char", "ok.wav\thi\tthere", "transcript holds control character U+0009"),
        ("bad_utf8", b"ok.wav\thi\xff", "transcript is not valid UTF-8 at byte 3"),
    ]


def check_bad(baton, w, rng):
    b = os.path.join(w, "bad")
    for name, line, frag in bad_cases(w, rng):
        man = os.path.join(b, f"{name}.tsv")
        good = b"ok.wav\thello\n"
        with open(man, "wb") as f:  # the bad line is line 2
            f.write(good + (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
        out = os.path.join(b, f"{name}.h5")
        r = run(baton, ["-o", out, man])
        msg = r.stderr.strip()
        T.check(r.returncode == 1, f"bad {name}: exit {r.returncode} (want 1): {msg}")
        T.check(f"{man}:2:" in msg and frag in msg, f"bad {name}: want '{man}:2:' and '{frag}' in: {msg}")
        left = [x for x in os.listdir(b) if x.startswith(f"{name}.h5")]
        T.check(not left, f"bad {name}: left behind {left}")
        print(f"bad {name}: exit {r.returncode}: {msg}")


def check_vocab_reuse(baton, w, vocab):
    val = os.path.join(w, "val.tsv")
    with open(val, "w", encoding="utf-8") as f:
        f.write("wav/u1.wav\tworld hello\n")
    r = run(baton, ["-o", os.path.join(w, "val.h5"), "--vocab", os.path.join(w, "train.h5"), val])
    T.check(r.returncode == 0, f"--vocab: exit {r.returncode}: {r.stderr}")
    if r.returncode == 0:
        with h5py.File(os.path.join(w, "val.h5"), "r") as f:
            v = [x.decode() for x in f["audio/vocab"][()]]
            lab = list(f["audio/labels"][()])
        T.check(v == vocab, "--vocab: vocabulary differs from train's")
        T.check(lab == [vocab.index(c) for c in "world hello"], "--vocab: labels")
    with open(val, "w", encoding="utf-8") as f:
        f.write("wav/u1.wav\thello\nwav/u2.wav\tjump\n")
    r = run(baton, ["-o", os.path.join(w, "val2.h5"), "--vocab", os.path.join(w, "train.h5"), val])
    frag = f"{val}:2: audio 'wav/u2.wav': character 'j' (U+006A) is not in the vocabulary of"
    T.check(r.returncode == 1 and frag in r.stderr, f"--vocab outside: exit {r.returncode}: {r.stderr}")


def check_crash(baton, w):
    """SIGKILL mid-write leaves the previous OUT.h5 intact and only a .tmp."""
    out = os.path.join(w, "train.h5")
    before = open(out, "rb").read()
    r = run(baton, ["-o", out, os.path.join(w, "train.tsv")], env={"BATON_FAULT": "prepare_audio.kill:3"})
    T.check(r.returncode == -9, f"crash: exit {r.returncode} (want SIGKILL)")
    T.check(open(out, "rb").read() == before, "crash: OUT.h5 changed")
    tmps = [x for x in os.listdir(w) if x.startswith("train.h5.tmp.")]
    T.check(len(tmps) == 1, f"crash: temporary files {tmps}")
    for x in tmps:
        os.unlink(os.path.join(w, x))


def main():
    baton, w = sys.argv[1], sys.argv[2]
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    rng = np.random.default_rng(15)
    ref = good_corpus(w, rng)
    r = run(baton, ["-o", os.path.join(w, "train.h5"), "--gzip", "4", os.path.join(w, "train.tsv")])
    print(r.stdout.strip(), r.stderr.strip())
    T.check(r.returncode == 0, f"prepare audio: exit {r.returncode}")
    if r.returncode == 0:
        vocab = check_layout(os.path.join(w, "train.h5"), ref)
        check_vocab_reuse(baton, w, vocab)
        check_crash(baton, w)
    check_bad(baton, w, rng)
    for args, frag in ((["-o", os.path.join(w, "x.h5")], "give the MANIFEST"),
                       ([os.path.join(w, "train.tsv")], "-o OUT.h5 is required"),
                       (["-o", os.path.join(w, "x.h5"), "--gzip", "12", "m.tsv"], "--gzip '12' is not in [0, 9]")):
        r = run(baton, args)
        T.check(r.returncode == 2 and frag in r.stderr, f"usage {args}: exit {r.returncode}: {r.stderr}")
    print(f"{T.n - T.fails}/{T.n} checks passed")
    return 1 if T.fails else 0


if __name__ == "__main__":
    sys.exit(main())
