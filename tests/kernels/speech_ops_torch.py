#!/usr/bin/env python3
"""The speech ops against PyTorch (issue 15), from the same inputs.

Reads what tests/kernels/speech_ops_dump.c wrote and recomputes, in
float64 with autograd:
  conv1d            F.conv1d on the [B, Cin, T] transpose (torch's weight
                    layout), stride 2, padding 1; out, dinp, dw, dbias for
                    L = sum(out * R);
  attention_masked  softmax(q k^T / sqrt(hs)) with keys t2 >= keyLen[b]
                    (and t2 > t when causal) set to -inf, padded query rows
                    zeroed; out and dqkv, causal 0 and 1;
  ctc_loss          F.ctc_loss(log_softmax(logits), reduction='none',
                    zero_infinity=True, blank=0); losses and dlogits for
                    L = sum(loss * R).
Limit: ||baton - torch|| / ||torch|| <= 1e-5 per tensor (baton is fp32 on
small shapes: ~1e-7 expected; a wrong index, mask or sign is O(1)).

usage: speech_ops_torch.py DUMPDIR
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

LIMIT = 1e-5
D = sys.argv[1]
nBad = 0


def f32(name, shape):
    return torch.tensor(np.fromfile(f"{D}/{name}", dtype=np.float32)
                        .reshape(shape).astype(np.float64))


def i32(name):
    return np.fromfile(f"{D}/{name}", dtype=np.int32)


def cmp(what, got, want):
    global nBad
    want = want.detach().numpy()
    got = got.numpy()
    e = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    ok = e <= LIMIT and np.isfinite(got).all()
    print(f"{'ok ' if ok else 'BAD'} {what:<28} relerr {e:.2e} "
          f"(limit {LIMIT:.0e})")
    nBad += not ok


def conv():
    B, T, CI, CO, K = 2, 11, 4, 5, 3
    To = (T + 2 - K) // 2 + 1
    x = f32("conv_x.f32", (B, T, CI)).requires_grad_()
    w = f32("conv_w.f32", (CO, CI, K)).requires_grad_()
    b = f32("conv_b.f32", (CO,)).requires_grad_()
    r = f32("conv_r.f32", (B, To, CO))
    out = F.conv1d(x.transpose(1, 2), w, b, stride=2, padding=1).transpose(1, 2)
    (out * r).sum().backward()
    cmp("conv1d out", f32("conv_out.f32", (B, To, CO)), out)
    cmp("conv1d dinp", f32("conv_dx.f32", (B, T, CI)), x.grad)
    cmp("conv1d dw", f32("conv_dw.f32", (CO, CI, K)), w.grad)
    cmp("conv1d dbias", f32("conv_db.f32", (CO,)), b.grad)


def attention(causal):
    B, T, C, NH = 3, 9, 8, 2
    hs = C // NH
    lens = i32("att_len.i32")
    qkv = f32("att_qkv.f32", (B, T, 3 * C)).requires_grad_()
    r = f32("att_r.f32", (B, T, C))
    q, k, v = [t.view(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, 2)]
    s = q @ k.transpose(-1, -2) / math.sqrt(hs)
    key = torch.arange(T)[None, :] < torch.tensor(lens)[:, None]  # [B, T]
    mask = key[:, None, None, :].expand(B, NH, T, T)
    if causal:
        mask = mask & torch.tril(torch.ones(T, T, dtype=torch.bool))
    p = torch.softmax(s.masked_fill(~mask, -math.inf), dim=-1)
    out = (p @ v).transpose(1, 2).reshape(B, T, C) * key[:, :, None]
    (out * r).sum().backward()
    cmp(f"attention causal={causal} out", f32(f"att{causal}_out.f32",
                                              (B, T, C)), out)
    cmp(f"attention causal={causal} dqkv", f32(f"att{causal}_dqkv.f32",
                                               (B, T, 3 * C)), qkv.grad)


def ctc():
    B, T, V, L = 4, 12, 6, 4
    x = f32("ctc_x.f32", (B, T, V)).requires_grad_()
    r = f32("ctc_r.f32", (B,))
    tg = torch.tensor(np.where(i32("ctc_tg.i32") > 0, i32("ctc_tg.i32"), 1)
                      .reshape(B, L), dtype=torch.long)
    loss = F.ctc_loss(F.log_softmax(x, -1).transpose(0, 1), tg,
                      torch.tensor(i32("ctc_in.i32"), dtype=torch.long),
                      torch.tensor(i32("ctc_tl.i32"), dtype=torch.long),
                      blank=0, reduction="none", zero_infinity=True)
    (loss * r).sum().backward()
    assert loss[3].item() == 0.0, "utterance 3 should be impossible"
    cmp("ctc_loss losses", f32("ctc_loss.f32", (B,)), loss)
    cmp("ctc_loss dlogits", f32("ctc_dx.f32", (B, T, V)), x.grad)


conv()
attention(0)
attention(1)
ctc()
print(f"{nBad} over the limit")
sys.exit(1 if nBad else 0)
