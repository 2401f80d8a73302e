#!/usr/bin/env python3
"""PyTorch peer of baton's speech training benchmark (bench/speech/run.sh).

The same model as baton's model.type = speech (trainer/speech_model.h;
its float64 twin is tests/ref/speech_check.py): two K3 stride-2 pad-1
convolutions with GELU (conv.0's padded tail zeroed), Whisper's sinusoidal
positions, L pre-LN GPT-2 blocks with non-causal self-attention whose
padded keys are masked, ln_f, a linear head, F.ctc_loss(reduction='mean',
zero_infinity=True); AdamW (betas 0.9/0.95, weight decay 0.1 on matrices),
gradient clipping at 1, fp32. It is written as a PyTorch user would
write it: batched and padded, the attention one masked softmax over
[B, NH, T, T] (torch 1.13 has no fused attention for CPU training).

The batches are baton's: --plan is speech_plan's output (one line per
step: frames, padded frames, utterance indices), read from the same HDF5.
Features are loaded before timing (baton reads them inside its step; that
read is ~1-2% of its step time). Each step is timed from zero_grad to the
end of opt.step(); frames/s = the valid input frames of the timed steps
over their summed time (the same figure run.sh computes for baton), and
frames per CPU-second (time.process_time, all threads of the process).

usage: torch_speech.py --threads N --data TRAIN.h5 --plan PLAN --warmup W
       --steps S --layers L --width C --heads NH --conv CC
Prints one JSON line.
"""
import argparse
import json
import math
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, keymask):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.NH, hs).transpose(1, 2)
        k = k.view(B, T, self.NH, hs).transpose(1, 2)
        v = v.view(B, T, self.NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(keymask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


def sinusoids(length, channels):
    inc = math.log(10000.0) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1).float()


def conv_len(n):
    return (n - 1) // 2 + 1


class Speech(nn.Module):
    def __init__(self, M, CC, C, NH, L, V):
        super().__init__()
        self.conv0 = nn.Conv1d(M, CC, 3, stride=2, padding=1)
        self.conv1 = nn.Conv1d(CC, C, 3, stride=2, padding=1)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.head = nn.Linear(C, V)
        self.register_buffer("pe", sinusoids(4096, C))
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, feats, frames, labels, label_len):
        len1 = conv_len(frames)
        len2 = conv_len(len1)
        h = F.gelu(self.conv0(feats.transpose(1, 2)), approximate="tanh")
        T1 = h.shape[2]
        h = h * (torch.arange(T1)[None, :] < len1[:, None])[:, None, :]
        x = F.gelu(self.conv1(h), approximate="tanh").transpose(1, 2)
        T2 = x.shape[1]
        x = x + self.pe[:T2]
        keymask = (torch.arange(T2)[None, :] >= len2[:, None])[:, None, None, :]
        for b in self.h:
            x = b(x, keymask)
        logits = self.head(self.ln_f(x))
        lp = F.log_softmax(logits, dim=-1).transpose(0, 1)
        return F.ctc_loss(lp, labels, len2, label_len, blank=0,
                          reduction="mean", zero_infinity=True)


def load_batches(path, plan):
    """Each plan line -> (frames, feats [B,T,M], frames [B], labels, lens)."""
    out = []
    with h5py.File(path, "r") as f:
        fo = f["/audio/frame_offsets"][:]
        lo = f["/audio/label_offsets"][:]
        feats, labs = f["/audio/features"], f["/audio/labels"][:]
        V = len(f["/audio/vocab"])
        for line in open(plan):
            w = [int(x) for x in line.split()]
            idx = w[2:]
            fr = [int(fo[i + 1] - fo[i]) for i in idx]
            ll = [int(lo[i + 1] - lo[i]) for i in idx]
            B, T, L = len(idx), max(fr), max(max(ll), 1)
            x = np.zeros((B, T, feats.shape[1]), np.float32)
            y = np.ones((B, L), np.int64)
            for j, i in enumerate(idx):
                x[j, :fr[j]] = feats[fo[i]:fo[i + 1]]
                y[j, :ll[j]] = labs[lo[i]:lo[i + 1]]
            out.append((w[0], torch.from_numpy(x), torch.tensor(fr),
                        torch.from_numpy(y), torch.tensor(ll)))
    return out, feats.shape[1], V


def main():
    ap = argparse.ArgumentParser()
    for k in ("threads", "warmup", "steps", "layers", "width", "heads",
              "conv"):
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    batches, M, V = load_batches(a.data, a.plan)
    m = Speech(M, a.conv, a.width, a.heads, a.layers, V)
    decay = [p for p in m.parameters() if p.dim() >= 2]
    rest = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    frames = secs = cpu = 0.0
    losses = []
    for s, (nf, x, fr, y, ll) in enumerate(batches[:a.warmup + a.steps]):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = m(x, fr, y, ll)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(loss.item())
        if s >= a.warmup:
            frames += nf
            secs += dt
            cpu += dc
    print(json.dumps({"peer": "pytorch", "version": torch.__version__,
                      "threads": a.threads, "frames_per_s": frames / secs,
                      "frames_per_cpu_s": frames / cpu, "steps": a.steps,
                      "first_loss": losses[0], "last_loss": losses[-1],
                      "params": sum(p.numel() for p in m.parameters())}))


if __name__ == "__main__":
    main()
