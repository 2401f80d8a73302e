#!/usr/bin/env python3
"""Independent check of baton's forward and backward against PyTorch.

Reads what tests/ref/ref_dump.c wrote (tensor table, parameters, inputs,
logits, loss, gradients), rebuilds the same GPT-2 or MLP in PyTorch from
those parameters, runs forward and backward in float32 and compares:
logits, loss and every parameter's gradient must agree within a relative
error (||baton - torch|| / ||torch||) of 1e-4. Prints one line per tensor
and exits non-zero on any failure.

usage: torch_check.py DUMPDIR
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
        params[t["name"]] = torch.tensor(P[o:o + n].reshape(t["shape"]),
                                         requires_grad=True)
        grads[t["name"]] = G[o:o + n].reshape(t["shape"])
    return meta, params, grads


def gpt_forward(meta, p, idx):
    B, T, L, NH, C = meta["B"], meta["T"], meta["L"], meta["NH"], meta["C"]
    hs = C // NH
    x = p["wte.weight"][idx] + p["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        g = lambda n: p[f"h.{l}.{n}"]
        h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), eps=1e-5)
        qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), eps=1e-5)
        h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"),
                   approximate="tanh")
        x = x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    return x @ p["wte.weight"].t()  # tied output projection, [B, T, Vp]


def mlp_forward(meta, p, x):
    n = len([k for k in p if k.endswith(".weight")])
    for i in range(n):
        x = x @ p[f"layers.{i}.weight"].t() + p[f"layers.{i}.bias"]
        if i + 1 < n:
            x = F.gelu(x, approximate="tanh")
    return x


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    if not np.all(np.isfinite(a)):
        return math.inf
    return d / nb if nb > 0 else d


def main():
    d = sys.argv[1]
    meta, p, gb = load(d)
    B, T = meta["B"], meta["T"]
    tg = torch.tensor(np.fromfile(f"{d}/targets.i32", dtype=np.int32)
                      .astype(np.int64))
    if meta["kind"] == "gpt":
        idx = torch.tensor(np.fromfile(f"{d}/inputs.i32", dtype=np.int32)
                           .astype(np.int64)).view(B, T)
        logits = gpt_forward(meta, p, idx)
        V = meta["V"]
        lg = logits.reshape(B * T, -1)
        loss = F.cross_entropy(lg[:, :V], tg, ignore_index=-1)
    else:
        D = meta["D"]
        x = torch.tensor(np.fromfile(f"{d}/x.f32", dtype=np.float32)[:B * D]
                         .reshape(B, D))
        logits = mlp_forward(meta, p, x)
        loss = F.cross_entropy(logits, tg, ignore_index=-1)
    loss.backward()
    lb = np.fromfile(f"{d}/logits.f32", dtype=np.float32)
    failures = 0
    rows = [("logits", rel(lb, logits.detach().numpy().ravel())),
            ("loss", abs(meta["loss"] - loss.item()) / abs(loss.item()))]
    for name, t in p.items():
        rows.append((f"grad {name}", rel(gb[name], t.grad.numpy())))
    worst = 0.0
    for name, r in rows:
        ok = r <= LIMIT
        failures += not ok
        worst = max(worst, r)
        print(f"{'ok  ' if ok else 'FAIL'} {name:40s} rel err {r:.2e}")
    print(f"{meta['kind']}: torch {torch.__version__}, loss baton "
          f"{meta['loss']:.7f} torch {loss.item():.7f}, worst rel err "
          f"{worst:.2e} (limit {LIMIT:g})")
    print(f"{len(rows) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
