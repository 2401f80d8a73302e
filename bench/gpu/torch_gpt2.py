#!/usr/bin/env python3
"""torch_gpt2.py: the PyTorch peer of baton's GPU benchmark.

One GPT-2 124M training configuration, written the way a PyTorch user
would get the most out of one H100 today:
  - bf16 autocast (weights and optimizer state stay fp32),
  - torch.compile of the whole model,
  - F.scaled_dot_product_attention(is_causal=True) (flash kernel),
  - fused AdamW,
  - TF32 allowed for whatever autocast leaves in fp32,
  - vocabulary padded to 50304 (as baton's gpt2-124m.ini: vocab_pad_to=64).

Data are random token ids: this measures the training step, not a loader.

Reported (stdout table and a JSON line, --json FILE for a copy):
  tokens/s   = B * T * grad_accum / median step time (after warm-up steps)
  MFU        = tokens/s * FLOPs/token / peak, with
               FLOPs/token = 6 N + 6 L C T  (N = parameters incl. embeddings,
               tied lm_head counted once; the 6 L C T term is the causal
               attention score and value products, forward + backward)
               peak = 989e12 (H100 SXM dense bf16; --peak to change)

Usage (on a GPU machine, bench/gpu/run.sh calls it):
  python3 bench/gpu/torch_gpt2.py --batch-size 16 --steps 30 --json out.json
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the caller (run.sh) reports this as a skip
    print(f"SKIPPED: PyTorch not importable ({e})")
    sys.exit(77)


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        k = k.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        v = v.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


class GPT(nn.Module):
    def __init__(self, L, C, NH, T, V):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)),
                               targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16, help="micro-batch B")
    ap.add_argument("--seq", type=int, default=1024, help="context T")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed steps first (compilation, autotuning)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak", type=float, default=989e12,
                    help="peak FLOP/s for MFU (H100 SXM bf16 dense)")
    ap.add_argument("--json", help="also write the result JSON here")
    a = ap.parse_args()

    if not torch.cuda.is_available():
        print("SKIPPED: no CUDA device visible to PyTorch")
        sys.exit(77)
    L, C, NH, V = 12, 768, 12, 50304
    T, B = a.seq, a.batch_size
    dev = "cuda"
    torch.manual_seed(1337)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    model = GPT(L, C, NH, T, V).to(dev)
    nParam = sum(p.numel() for p in model.parameters())  # tied: counted once
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95),
                            eps=1e-8, weight_decay=0.1, fused=True)
    step_model = model if a.no_compile else torch.compile(model)

    g = torch.Generator(device=dev)
    g.manual_seed(0)

    def batch():
        x = torch.randint(0, 50257, (B, T), device=dev, generator=g)
        y = torch.randint(0, 50257, (B, T), device=dev, generator=g)
        return x, y

    def train_step():
        opt.zero_grad(set_to_none=True)
        for _ in range(a.grad_accum):
            x, y = batch()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = step_model(x, y) / a.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(a.warmup):
        train_step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = train_step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)

    step_s = statistics.median(times)
    tokens_per_step = B * T * a.grad_accum
    tok_s = tokens_per_step / step_s
    flops_per_token = 6 * nParam + 6 * L * C * T
    mfu = tok_s * flops_per_token / a.peak
    res = {
        "system": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "precision": "bf16 autocast",
        "compile": not a.no_compile,
        "params": nParam,
        "B": B, "T": T, "grad_accum": a.grad_accum,
        "steps": a.steps, "warmup": a.warmup,
        "step_ms_median": 1e3 * step_s,
        "step_ms_min": 1e3 * min(times),
        "tokens_per_s": tok_s,
        "flops_per_token": flops_per_token,
        "peak_flops": a.peak,
        "mfu": mfu,
        "last_loss": float(loss.item()) * a.grad_accum,
        "max_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    assert math.isfinite(res["last_loss"]), "loss is not finite"
    print(f"{'system':<10} {'precision':<14} {'B':>4} {'T':>5} "
          f"{'step ms':>9} {'tokens/s':>11} {'MFU':>7}")
    print(f"{'pytorch':<10} {'bf16 autocast':<14} {B:>4} {T:>5} "
          f"{res['step_ms_median']:>9.1f} {tok_s:>11.0f} {100 * mfu:>6.1f}%")
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
