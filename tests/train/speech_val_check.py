#!/usr/bin/env python3
"""Recomputes a speech run's last validation (issue 15) independently:
the model rebuilt in PyTorch (float64) from the parameters the run dumped
(--dump-params), each validation utterance of data.val_path run UNPADDED,
its CTC loss (F.ctc_loss, 'mean': loss / label count, averaged), greedy
decoding (argmax per frame, repeats merged, blanks dropped), ids mapped
through the file's /audio/vocab, and CER / WER by a Levenshtein distance
written here (edits summed over utterances over the reference lengths
summed). Compares with val/loss, val/cer, val/wer of the last line of
metrics.jsonl that has them.

Limits: loss relative 1e-4 (baton is float32); CER and WER exactly, as
fractions of the same integer counts (an argmax flipped by float32
rounding would show as one edit; the toy corpus has clear margins).

usage: speech_val_check.py CONFIG_JSON PARAMS.f32 VAL.h5 METRICS.jsonl
"""
import json
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def tensors(cfg):
    C, Cc, M, V = cfg["n_embd"], cfg["conv_channels"], cfg["n_mel"], cfg["V"]
    t = [("conv.0.weight", (Cc, M, 3)), ("conv.0.bias", (Cc,)),
         ("conv.1.weight", (C, Cc, 3)), ("conv.1.bias", (C,))]
    for l in range(cfg["n_layer"]):
        t += [(f"h.{l}.ln_1.weight", (C,)), (f"h.{l}.ln_1.bias", (C,)),
              (f"h.{l}.attn.c_attn.weight", (C, 3 * C)),
              (f"h.{l}.attn.c_attn.bias", (3 * C,)),
              (f"h.{l}.attn.c_proj.weight", (C, C)),
              (f"h.{l}.attn.c_proj.bias", (C,)),
              (f"h.{l}.ln_2.weight", (C,)), (f"h.{l}.ln_2.bias", (C,)),
              (f"h.{l}.mlp.c_fc.weight", (C, 4 * C)),
              (f"h.{l}.mlp.c_fc.bias", (4 * C,)),
              (f"h.{l}.mlp.c_proj.weight", (4 * C, C)),
              (f"h.{l}.mlp.c_proj.bias", (C,))]
    return t + [("ln_f.weight", (C,)), ("ln_f.bias", (C,)),
                ("head.weight", (V, C)), ("head.bias", (V,))]


def load_params(cfg, path):
    flat = np.fromfile(path, dtype=np.float32).astype(np.float64)
    p, o = {}, 0
    for name, shape in tensors(cfg):
        n = int(np.prod(shape))
        p[name] = torch.tensor(flat[o:o + n].reshape(shape))
        o += n
    assert o <= len(flat), (o, len(flat))
    return p


def block(p, l, x, NH):
    T, C = x.shape
    hs = C // NH
    g = lambda k: p[f"h.{l}.{k}"]
    h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), 1e-5)
    q, k, v = (h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")).split(C, 1)
    q, k, v = (z.view(T, NH, hs).transpose(0, 1) for z in (q, k, v))
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hs), dim=-1)
    y = (att @ v).transpose(0, 1).reshape(T, C)
    x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
    h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), 1e-5)
    h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh")
    return x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")


def logits(cfg, p, x):
    h = x.T[None]
    for i in (0, 1):
        h = F.gelu(F.conv1d(h, p[f"conv.{i}.weight"], p[f"conv.{i}.bias"],
                            stride=2, padding=1), approximate="tanh")
    h = h[0].T
    C = cfg["n_embd"]
    inc = math.log(10000.0) / (C // 2 - 1)
    inv = torch.exp(-inc * torch.arange(C // 2, dtype=torch.float64))
    t = torch.arange(h.shape[0], dtype=torch.float64)[:, None] * inv[None, :]
    h = h + torch.cat([torch.sin(t), torch.cos(t)], 1).float().double()
    for l in range(cfg["n_layer"]):
        h = block(p, l, h, cfg["n_head"])
    h = F.layer_norm(h, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    return h @ p["head.weight"].T + p["head.bias"]


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                       prev + (x != y))
    return row[len(b)]


def main():
    cfg = json.load(open(sys.argv[1]))
    f = h5py.File(sys.argv[3], "r")
    feats = f["/audio/features"][:]
    fo, lo = f["/audio/frame_offsets"][:], f["/audio/label_offsets"][:]
    labels = f["/audio/labels"][:]
    vocab = [v.decode() if isinstance(v, bytes) else v for v in f["/audio/vocab"][:]]
    cfg["V"] = len(vocab)
    p = load_params(cfg, sys.argv[2])
    N = len(fo) - 1
    losses, ce, cn, we, wn = [], 0, 0, 0, 0
    for i in range(N):
        lg = logits(cfg, p, torch.tensor(feats[fo[i]:fo[i + 1]], dtype=torch.float64))
        lab = labels[lo[i]:lo[i + 1]]
        lp = F.log_softmax(lg, -1)
        l = F.ctc_loss(lp[:, None], torch.tensor(lab[None], dtype=torch.long),
                       [lg.shape[0]], [len(lab)], blank=0, reduction="sum",
                       zero_infinity=True).item()
        losses.append(l / max(1, len(lab)))
        best = lg.argmax(-1).tolist()
        hyp = [c for k, c in enumerate(best) if c != 0 and (k == 0 or c != best[k - 1])]
        ref = "".join(vocab[c] for c in lab)
        hy = "".join(vocab[c] for c in hyp)
        ce += levenshtein(ref, hy); cn += len(ref)
        we += levenshtein(ref.split(), hy.split()); wn += len(ref.split())
    want = {"val/loss": sum(losses) / N, "val/cer": ce / cn, "val/wer": we / wn}
    got = [r for r in map(json.loads, open(sys.argv[4])) if "val/cer" in r][-1]
    print(f"{N} utterances, step {got['step']}: char edits {ce}/{cn}, word edits {we}/{wn}")
    ok = True
    for k, v in want.items():
        lim = 1e-4 * abs(v) if k == "val/loss" else 1e-12
        good = abs(got[k] - v) <= lim
        ok &= good
        print(f"{'ok ' if good else 'BAD'} {k}: baton {got[k]:.9f} python {v:.9f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
