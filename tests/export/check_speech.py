#!/usr/bin/env python3
"""check_speech.py FIXTURE BATON: a speech export (issue 15) checked by
code that shares nothing with baton's forward.

FIXTURE is what tests/export/speech_fixture.sh made. The 13 utterances of
FIXTURE/infer.tsv (12 validation files and long.wav, which is longer than
the model's max_utterance_frames) go through:
  baton    `baton infer EXPORT --wav ...` on the WAV files themselves
           (its own features), --logits-out;
  torch    tests/ref/speech_check.py's float64 re-implementation of the
           model, weights from the export's model.safetensors, features
           from FIXTURE/infer.h5 (`prepare audio`'s, the same function);
  onnx     ONNX Runtime on model.onnx, one utterance per run, the same
           features.
Checks:
  1. config.json: model_type baton_speech, the shapes of the run, the
     characters = infer.h5's /audio/vocab; every safetensors tensor has
     the name and shape speech_model.h gives it;
  2. logits, baton vs torch and onnx vs torch, per utterance:
     max|a - b| / max|b| <= 1e-4. Why 1e-4: both sides run fp32 (torch is
     float64) through ~5 matrix products of inner size <= 240; float32
     rounding gives ~1e-6 relative (measured: see the output), while a
     wrong mask, transpose, position or conv padding moves the logits by
     1e-2 or more. bf16: the same limit, with torch reading the bf16
     weights too (baton widens them exactly);
  3. transcripts: baton infer's lines equal greedy decoding of the torch
     logits mapped through config.json's characters, equal `baton infer
     --checkpoint` on the run, and the CER/WER computed here from the 12
     validation ones against infer.tsv equal `baton eval` on the export
     and on the run over val.h5 (baton eval decodes padded batches);
  4. the model learned something (CER < 0.5, at least half the
     transcripts non-empty), so the equalities above are not between
     empty strings.
A missing Python package is a FAILURE, never a skip.
"""
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))

LIMIT = 1e-4


def need(mod):
    try:
        return __import__(mod)
    except Exception as e:
        print(f"FAIL: Python package '{mod}' is not usable ({e})",
              file=sys.stderr)
        sys.exit(1)


np = need("numpy")
torch = need("torch")
h5py = need("h5py")
ort = need("onnxruntime")
need("safetensors")
from safetensors.torch import load_file  # noqa: E402

import speech_check  # noqa: E402  (tests/ref: the torch model)

failures = []


def check(cond, msg):
    print(("ok:   " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def relerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def greedy(logits, chars):
    ids = np.argmax(logits, axis=1)
    out, prev = [], -1
    for i in ids:
        if i != prev and i != 0:
            out.append(chars[i - 1])
        prev = i
    return "".join(out)


def edits(a, b):
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            cur = min(row[j] + 1, row[j - 1] + 1,
                      prev + (a[i - 1] != b[j - 1]))
            prev, row[j] = row[j], cur
    return row[len(b)]


def enc_frames(n):
    n1 = (n - 1) // 2 + 1
    return (n1 - 1) // 2 + 1


def baton_infer(baton, src, wavs, V, extra=()):
    with tempfile.TemporaryDirectory() as t:
        lg = os.path.join(t, "l.f32")
        r = subprocess.run([baton, "infer", src, "--wav", *wavs,
                            "--logits-out", lg, *extra],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            raise SystemExit(f"FAIL: baton infer {src} exited {r.returncode}")
        lines = [l.split("\t", 1) for l in r.stdout.split("\n") if l]
        return lines, np.fromfile(lg, dtype="<f4").reshape(-1, V)


def baton_eval(baton, src, data):
    r = subprocess.run([baton, "eval", src, "--data", data, "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        raise SystemExit(f"FAIL: baton eval {src} exited {r.returncode}")
    return json.loads(r.stdout)


def torch_logits(cfg, params, feats):
    meta = {"C": cfg["n_embd"], "layers": cfg["n_layer"], "NH": cfg["n_head"]}
    with torch.no_grad():
        return speech_check.utterance_logits(
            meta, params, torch.tensor(feats, dtype=torch.float64)).numpy()


def check_config(fx, cfg, st, chars):
    run = {l.split("=")[0].strip(): l.split("=")[1].strip()
           for l in open(os.path.join(HERE, "..", "train", "speech_micro.ini"))
           if "=" in l and not l.startswith(";")}
    check(cfg["model_type"] == "baton_speech", "config.json model_type")
    for k in ("n_layer", "n_head", "n_embd", "conv_channels"):
        check(cfg[k] == int(run[k]), f"config.json {k} = {cfg[k]}")
    check(cfg["n_mel"] == 80 and cfg["features"]["n_mel"] == 80 and
          cfg["features"]["hop_length"] == 160, "config.json features")
    check(cfg["vocab_size"] == len(chars) + 1 and cfg["characters"] == chars,
          f"config.json characters {cfg['characters']} = infer.h5's vocab")
    C, Cc, V = cfg["n_embd"], cfg["conv_channels"], cfg["vocab_size"]
    want = {"conv.0.weight": (Cc, 80, 3), "conv.1.weight": (C, Cc, 3),
            "h.0.attn.c_attn.weight": (C, 3 * C), "head.weight": (V, C),
            "head.bias": (V,), "ln_f.weight": (C,)}
    check(all(tuple(st[k].shape) == s for k, s in want.items()) and
          len(st) == 4 + 12 * cfg["n_layer"] + 4,
          f"{len(st)} tensors with speech_model.h's names and shapes")


def check_logits(name, got, want_list, offs):
    worst = max(relerr(got[offs[i]:offs[i + 1]], w)
                for i, w in enumerate(want_list))
    check(worst <= LIMIT, f"{name}: worst max|a-b|/max|b| over "
          f"{len(want_list)} utterances {worst:.2e} (limit {LIMIT:.0e})")


def main():
    fx, baton = sys.argv[1], sys.argv[2]
    exp = os.path.join(fx, "fp32")
    cfg = json.load(open(os.path.join(exp, "config.json")))
    f = h5py.File(os.path.join(fx, "infer.h5"), "r")
    chars = [c.decode() if isinstance(c, bytes) else c
             for c in f["/audio/vocab"][1:]]
    F, off = f["/audio/features"][:], f["/audio/frame_offsets"][:]
    feats = [F[off[i]:off[i + 1]] for i in range(len(off) - 1)]
    manifest = [l.rstrip("\n").split("\t", 1)
                for l in open(os.path.join(fx, "infer.tsv"))]
    wavs, refs = [m[0] for m in manifest], [m[1] for m in manifest]
    assert len(wavs) == len(feats) == 13, (len(wavs), len(feats))
    check(max(len(x) for x in feats) > cfg["max_utterance_frames"],
          f"long.wav has {len(feats[-1])} frames, over max_utterance_frames "
          f"{cfg['max_utterance_frames']}")
    st = load_file(os.path.join(exp, "model.safetensors"))
    check_config(fx, cfg, st, chars)
    V = cfg["vocab_size"]
    offs = np.cumsum([0] + [enc_frames(len(x)) for x in feats])

    params = {k: v.double() for k, v in st.items()}
    ref = [torch_logits(cfg, params, x) for x in feats]
    lines, got = baton_infer(baton, exp, wavs, V)
    check(got.shape[0] == offs[-1], f"--logits-out holds {got.shape[0]} "
          f"encoder frames of 13 files ({offs[-1]} expected)")
    check_logits("baton infer vs torch (fp32 export)", got, ref, offs)

    sess = ort.InferenceSession(os.path.join(fx, "onnx", "model.onnx"))
    onx = np.concatenate([sess.run(None, {"features": x[None]})[0][0]
                          for x in feats])
    check_logits("onnxruntime vs torch", onx, ref, offs)
    check_logits("onnxruntime vs baton infer", onx,
                 [got[offs[i]:offs[i + 1]] for i in range(13)], offs)

    stb = load_file(os.path.join(fx, "bf16", "model.safetensors"))
    check(all(v.dtype == torch.bfloat16 for v in stb.values()),
          "bf16 export holds bfloat16 tensors")
    refb = [torch_logits(cfg, {k: v.double() for k, v in stb.items()}, x)
            for x in feats]
    _, gotb = baton_infer(baton, os.path.join(fx, "bf16"), wavs, V)
    check_logits("baton infer vs torch (bf16 export)", gotb, refb, offs)

    hyp = [t for _, t in lines]
    check([p for p, _ in lines] == wavs, "one line per file, in order")
    want = [greedy(r, cfg["characters"]) for r in ref]
    check(hyp == want, "transcripts = greedy decoding of the torch logits")
    ck, _ = baton_infer(baton, os.path.join(fx, "run"), wavs, V,
                        ("--checkpoint",))
    check([t for _, t in ck] == hyp, "transcripts = infer --checkpoint's")
    for a, b, c in list(zip(wavs, refs, hyp))[:4] + [(wavs[-1], refs[-1],
                                                      hyp[-1])]:
        print(f"      {os.path.basename(a)}: ref '{b}' hyp '{c}'")

    # the 12 validation files (baton eval keeps max_utterance_frames,
    # as validation in training does: long.wav is infer's alone)
    pairs = list(zip(refs, hyp))[:12]
    ce = sum(edits(list(r), list(h)) for r, h in pairs)
    cn = sum(len(r) for r, _ in pairs)
    we = sum(edits(r.split(), h.split()) for r, h in pairs)
    wn = sum(len(r.split()) for r, _ in pairs)
    for src in (exp, os.path.join(fx, "run")):
        e = baton_eval(baton, src, os.path.join(fx, "val.h5"))
        check(e["utterances"] == 12 and abs(e["cer"] - ce / cn) < 1e-12 and
              abs(e["wer"] - we / wn) < 1e-12,
              f"baton eval {os.path.basename(src)}: cer {e['cer']:.6f} wer "
              f"{e['wer']:.6f} = these transcripts' {ce}/{cn}, {we}/{wn}")
    check(ce / cn < 0.5 and sum(1 for h in hyp if h) >= 7,
          f"the model learned: CER {ce / cn:.3f} < 0.5, "
          f"{sum(1 for h in hyp if h)} of 13 transcripts non-empty")
    check(len(set(hyp)) >= 6, f"{len(set(hyp))} distinct transcripts")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
