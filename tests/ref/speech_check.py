#!/usr/bin/env python3
"""Independent check of baton's speech model against PyTorch (issue 15).

Reads what tests/ref/speech_dump.c wrote, rebuilds the model in PyTorch
(float64) from the same parameters and compares the loss and EVERY
parameter gradient. The PyTorch side shares no masking logic with baton:
it runs each utterance UNPADDED (its own frames only, full non-causal
attention), then F.ctc_loss(reduction='mean', zero_infinity=True) over
the batch, so baton's padding masks (conv.0 tail, key lengths, padded
query rows, CTC input lengths) are checked by their absence here.

Limit: relative error ||baton - torch|| / ||torch|| <= 1e-4 per tensor
(relative to the tensor's norm), and |loss - torch| / |torch| <= 1e-4.
baton computes in float32: ~1e-6 is typical; a wrong mask, transpose or
missing term is O(1e-2) or more.

usage: speech_check.py DUMPDIR
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

LIMIT = 1e-4


def load(d):
    meta = json.load(open(f"{d}/meta.json"))
    P = np.fromfile(f"{d}/params.f32", dtype=np.float32)
    G = np.fromfile(f"{d}/grads.f32", dtype=np.float32)
    params, grads = {}, {}
    for t in meta["tensors"]:
        n = int(np.prod(t["shape"]))
        o = t["offset"]
        params[t["name"]] = torch.tensor(
            P[o:o + n].reshape(t["shape"]).astype(np.float64),
            requires_grad=True)
        grads[t["name"]] = G[o:o + n].reshape(t["shape"])
    return meta, params, grads


def sinusoids(length, channels):
    """Whisper's positional embedding (sin half, cos half)."""
    inc = math.log(10000.0) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    pe = torch.cat([torch.sin(t), torch.cos(t)], dim=1)
    return pe.float().double()  # baton stores them as float32


def block(p, l, x, NH):
    """GPT-2 pre-LN block, Conv1D [in, out] weights, no mask."""
    T, C = x.shape
    hs = C // NH
    g = lambda k: p[f"h.{l}.{k}"]
    h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), 1e-5)
    qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")
    q, k, v = qkv.split(C, dim=1)
    q = q.view(T, NH, hs).transpose(0, 1)
    k = k.view(T, NH, hs).transpose(0, 1)
    v = v.view(T, NH, hs).transpose(0, 1)
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hs), dim=-1)
    y = (att @ v).transpose(0, 1).reshape(T, C)
    x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
    h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), 1e-5)
    h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"),
               approximate="tanh")
    return x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")


def utterance_logits(meta, p, x):
    """x [frames, n_mel] -> logits [T2, V] of one unpadded utterance."""
    h = x.T[None]  # [1, n_mel, frames]
    h = F.gelu(F.conv1d(h, p["conv.0.weight"], p["conv.0.bias"], stride=2,
                        padding=1), approximate="tanh")
    h = F.gelu(F.conv1d(h, p["conv.1.weight"], p["conv.1.bias"], stride=2,
                        padding=1), approximate="tanh")
    h = h[0].T  # [T2, C]
    h = h + sinusoids(h.shape[0], meta["C"])
    for l in range(meta["layers"]):
        h = block(p, l, h, meta["NH"])
    h = F.layer_norm(h, (meta["C"],), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    return h @ p["head.weight"].T + p["head.bias"]


def main():
    d = sys.argv[1]
    meta, p, grads = load(d)
    B, T, M, L = meta["B"], meta["T"], meta["n_mel"], meta["L"]
    feats = np.fromfile(f"{d}/feats.f32", dtype=np.float32).reshape(B, T, M)
    frames = np.fromfile(f"{d}/frames.i32", dtype=np.int32)
    labels = np.fromfile(f"{d}/labels.i32", dtype=np.int32).reshape(B, L)
    label_len = np.fromfile(f"{d}/label_len.i32", dtype=np.int32)

    outs = [utterance_logits(meta, p,
                             torch.tensor(feats[b, :frames[b]],
                                          dtype=torch.float64))
            for b in range(B)]
    T2 = max(o.shape[0] for o in outs)
    lp = torch.zeros(T2, B, meta["V"], dtype=torch.float64)
    for b, o in enumerate(outs):
        lp[:o.shape[0], b] = F.log_softmax(o, dim=-1)
    targets = torch.tensor(np.where(labels > 0, labels, 1), dtype=torch.long)
    loss = F.ctc_loss(lp, targets,
                      torch.tensor([o.shape[0] for o in outs]),
                      torch.tensor(label_len, dtype=torch.long), blank=0,
                      reduction="mean", zero_infinity=True)
    loss.backward()

    nBad = 0
    e = abs(meta["loss"] - loss.item()) / abs(loss.item())
    print(f"loss  baton {meta['loss']:.7f} torch {loss.item():.7f} "
          f"relerr {e:.2e} (limit {LIMIT:.0e})")
    nBad += not e <= LIMIT
    for t in meta["tensors"]:
        want = p[t["name"]].grad.numpy()
        got = grads[t["name"]]
        e = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
        ok = e <= LIMIT and np.linalg.norm(want) > 0
        print(f"{'ok ' if ok else 'BAD'} grad {t['name']:<24} relerr {e:.2e}")
        nBad += not ok
    print(f"{len(meta['tensors'])} gradients + loss, {nBad} over the limit")
    return 1 if nBad else 0


if __name__ == "__main__":
    sys.exit(main())
