#!/usr/bin/env python3
"""model.py: a roofline model of one GPT-2 training step on an H100 / H200,
op by op, for baton's CUDA kernels as written today ("before") and for the
design issue 12 targets ("after"). No GPU, no dependencies (stdlib only).

Usage (from the repository root):
  python3 bench/gpu/model.py                 # markdown tables, B = 64
  python3 bench/gpu/model.py --B 16 --json out.json
  python3 bench/gpu/model.py --detail        # one row per kernel call kind

What it computes, per token (a step of B*T tokens, divided by B*T):
  FLOPs  of each op as the kernel executes it (the flash backward
         recomputes S and dP, so it does 9 products where the forward does
         2; cuDNN's backward does 5);
  bytes  of compulsory HBM traffic: every tensor a kernel reads or writes
         counted once per kernel call (reuse inside a kernel -- the K/V
         tiles that flash attention streams again for each query tile, the
         second pass of a row kernel -- is assumed to hit shared memory or
         L2); weights, their gradients and the optimizer state are per
         step, so per token they are divided by B*T;
  time   at roofline: max(FLOPs / peak of the unit that runs the op,
         bytes / HBM bandwidth), ops summed (no overlap between kernels).
  MFU    = model FLOPs per token / (time per token * 989e12), the model
         FLOPs by llm.c's convention 6 N + 6 L C T (N = 124,475,904
         parameters with the padded vocabulary, as allocated; 6 L C T is
         the causal attention term; PaLM's 12 L C T counts the masked
         half too). The peak is the dense bf16 one for every column, so
         the fp32 columns show what the precision costs.
Roofline is an upper bound: real GEMMs reach ~70-80% of peak, and kernel
launch gaps are ignored, so measured MFU will be lower; the model says
which ops bound the step and whether a design can reach the target at all.

Peaks (NVIDIA H100 SXM5 datasheet; H200 has the same SMs and clocks):
  bf16 dense tensor 989 TFLOP/s, tf32 dense 495, fp32 non-tensor 67;
  HBM3 3.35 TB/s (H100 SXM), HBM3e 4.8 TB/s (H200).
"""
import argparse
import json
import sys

HW = {
    "H100": {"bf16": 989e12, "tf32": 495e12, "fp32": 67e12, "hbm": 3.35e12},
    "H200": {"bf16": 989e12, "tf32": 495e12, "fp32": 67e12, "hbm": 4.8e12},
}
MFU_PEAK = 989e12
TARGET_MFU = 0.45
# The "derated" column: fractions of peak that well-tuned kernels reach
# (assumptions, not measurements): cuBLASLt bf16 GEMMs at these shapes
# ~70%, CUDA-core fp32 ~70%, streaming kernels ~80% of HBM bandwidth.
# Attention is taken at the same 70% (cuDNN's FA-class kernels at hs 64).
EFFICIENCY = {"tensor": 0.70, "fp32": 0.70, "hbm": 0.80}


class Cfg:
    def __init__(self, B=64, T=1024, L=12, C=768, NH=12, V=50257, Vp=50304):
        self.B, self.T, self.L, self.C, self.NH = B, T, L, C, NH
        self.V, self.Vp = V, Vp
        self.BT = B * T

    def n_params(self):
        C, L = self.C, self.L
        per_layer = 12 * C * C + 13 * C  # ln1, qkv, attproj, ln2, fc, fcproj
        return self.Vp * C + self.T * C + L * per_layer + 2 * C

    def model_flops(self):
        """llm.c / PaLM convention (causal attention term 6 L C T)."""
        return 6 * self.n_params() + 6 * self.L * self.C * self.T


class Op:
    """One kind of kernel call: per-token FLOPs and bytes for ONE call,
    `count` calls per token (e.g. L per layer op), and the unit it runs
    on: 'fp32' (CUDA cores), 'tf32' or 'bf16' (tensor cores)."""

    def __init__(self, name, flops, nbytes, unit, count=1, group=None):
        self.name, self.flops, self.bytes = name, float(flops), float(nbytes)
        self.unit, self.count = unit, count
        self.group = group or name

    def time(self, hw):
        return self.count * max(self.flops / hw[self.unit],
                                self.bytes / hw["hbm"])

    def bound(self, hw):
        return ("compute" if self.flops / hw[self.unit] >= self.bytes / hw["hbm"]
                else "memory")


# ---- GEMMs ---------------------------------------------------------------

def gemm(cfg, name, K, N, mode, group, w_reads=1, out_acc=False,
         extra_in=0, extra_out=0, count=None):
    """One GEMM per token row: [1, K] x [K, N] -> [1, N], 2 K N FLOPs.
    mode:
      'fp32'     activations fp32, CUBLAS_COMPUTE_32F on CUDA cores (TF32
                 off): baton's default today;
      'bf16conv' BATON_CUDA_GEMM=bf16 today: both operands converted to
                 bf16 in scratch before every call (read 4, write 2, GEMM
                 reads 2), D fp32, tensor cores;
      'bf16'     the design: bf16 storage, tensor cores, fp32 accumulate.
    K-side activation in, N-side out; out_acc: D += (beta = 1, read+write);
    extra_in/extra_out: epilogue traffic in elements of the activation
    dtype (GELU aux, ...). Weights (K N) read w_reads times per step."""
    count = cfg.L if count is None else count
    flops = 2.0 * K * N
    wbytes = {"fp32": 4, "bf16conv": 4 + 2 + 2, "bf16": 2}[mode] * K * N * w_reads / cfg.BT
    if mode == "fp32":
        act = 4 * K + 4 * N * (2 if out_acc else 1)
        unit = "fp32"
    elif mode == "bf16conv":
        act = (4 + 2 + 2) * K + 4 * N * (2 if out_acc else 1)
        unit = "bf16"
    else:
        act = 2 * K + 2 * N * (2 if out_acc else 1)
        unit = "bf16"
    esize = 4 if mode != "bf16" else 2
    return Op(name, flops, act + wbytes + esize * (extra_in + extra_out), unit, count, group)


def gemm_dw(cfg, name, K, N, mode, group, count=None):
    """Weight gradient dW[K, N] += inp^T dout over the B T rows: per token
    reads one inp row (K) and one dout row (N); dW (fp32, += ) is read and
    written once per step."""
    count = cfg.L if count is None else count
    flops = 2.0 * K * N
    if mode == "fp32":
        act, unit = 4 * (K + N), "fp32"
    elif mode == "bf16conv":
        act, unit = 8 * (K + N), "bf16"
    else:
        act, unit = 2 * (K + N), "bf16"
    return Op(name, flops, act + 8.0 * K * N / cfg.BT, unit, count, group)


# ---- the step as written today -----------------------------------------------

def ops_before(cfg, mode="fp32"):
    """kernels/cuda as of issue 12's start: fp32 activations (4 bytes),
    flash attention on CUDA cores, separate bias-gradient column sums,
    separate GELU, residual and layernorm kernels, fp32 logits and their
    in-place gradient, gradient buffers zeroed and accumulated (+=)
    (trainer/model.c gpt_backward)."""
    C, T, L, V, NH = cfg.C, cfg.T, cfg.L, cfg.Vp, cfg.NH
    f = 4
    o = []
    # forward
    o.append(Op("embed fwd", 0, f * 3 * C, "fp32", 1, "embedding"))
    ln_fwd = Op("layernorm fwd", 8 * C, f * 2 * C + 8, "fp32", 2 * L, "layernorm")
    o.append(ln_fwd)
    o.append(gemm(cfg, "qkv fwd", C, 3 * C, mode, "GEMM qkv"))
    o.append(Op("attention fwd (flash, fp32)", 2.0 * T * C,
                f * (3 * C + C) + 4 * NH, "fp32", L, "attention"))
    o.append(gemm(cfg, "attproj fwd", C, C, mode, "GEMM attproj"))
    o.append(Op("residual fwd", C, f * 3 * C, "fp32", 2 * L, "residual"))
    o.append(gemm(cfg, "fc fwd", C, 4 * C, mode, "GEMM fc"))
    o.append(Op("gelu fwd", 20 * 4 * C, f * 8 * C, "fp32", L, "gelu"))
    o.append(gemm(cfg, "fcproj fwd", 4 * C, C, mode, "GEMM fcproj"))
    o.append(Op("layernorm fwd (final)", 8 * C, f * 2 * C + 8, "fp32", 1, "layernorm"))
    o.append(gemm(cfg, "classifier fwd", C, V, mode, "classifier", count=1))
    o.append(Op("xent fwd", 4 * V, f * V + 8, "fp32", 1, "cross-entropy"))
    o.append(Op("xent bwd (in place)", 4 * V, f * 2 * V + 8, "fp32", 1, "cross-entropy"))
    # backward: zeroed gradient buffers (dbuf 3x, dfch, dfch_gelu, dqkv per
    # layer; dbuf, dres once), accumulating GEMMs and kernels
    o.append(Op("memset of gradient buffers", 0, f * 14 * C, "fp32", L, "memset"))
    o.append(Op("memset of gradient buffers (final)", 0, f * 2 * C, "fp32", 1, "memset"))
    o.append(gemm(cfg, "classifier bwd dinp", V, C, mode, "classifier", out_acc=True, count=1))
    o.append(gemm_dw(cfg, "classifier bwd dW", C, V, mode, "classifier", count=1))
    ln_bwd = Op("layernorm bwd dinp", 10 * C, f * 4 * C + 8, "fp32", 2 * L + 1, "layernorm")
    o.append(ln_bwd)
    o.append(Op("layernorm bwd dw/db", 4 * C, f * 2 * C + 8, "fp32", 2 * L + 1, "layernorm"))
    for nm, K, N in (("fcproj", 4 * C, C), ("fc", C, 4 * C), ("attproj", C, C), ("qkv", C, 3 * C)):
        g = "GEMM " + nm
        o.append(gemm(cfg, nm + " bwd dinp", N, K, mode, g, out_acc=True))
        o.append(gemm_dw(cfg, nm + " bwd dW", K, N, mode, g))
        o.append(Op(nm + " bias grad (colsum)", N, f * N, "fp32", L, g))
    o.append(Op("gelu bwd", 30 * 4 * C, f * 4 * 4 * C, "fp32", L, "gelu"))
    o.append(Op("attention bwd (flash, fp32)", 9.0 * T * C,
                f * (3 * C + C + 2 * 3 * C) + 8 * NH, "fp32", L, "attention"))
    o.append(Op("embed bwd", 0, f * 3 * C, "fp32", 1, "embedding"))
    N = cfg.n_params()
    o.append(Op("grad zero + sumsq + AdamW", 12.0 * N / cfg.BT,
                (4 + 4 + 28) * N / cfg.BT, "fp32", 1, "optimizer"))
    return o


# ---- the design of issue 12 ------------------------------------------------

def ops_after(cfg):
    """Issue 12's design: bf16 activations and activation gradients (2
    bytes), bf16 working weights, fp32 master weights, gradients and AdamW
    moments; cuDNN SDPA (fwd 2 products, bwd 5; dQ accumulated in an fp32
    workspace); residual add fused into the layernorm that follows it (and
    the residual gradient into the layernorm backward); GELU (with its
    pre-activation saved as aux) and bias in the fc GEMM epilogue, dGELU in
    the fcproj dinp epilogue, bias gradients in the dW GEMM epilogue
    (BGRADB); the classifier's logits stored once in bf16 and overwritten
    in place by their gradient in one fused softmax-xent kernel (llm.c's
    fused_classifier); gradients written, not zeroed and accumulated."""
    C, T, L, V, NH = cfg.C, cfg.T, cfg.L, cfg.Vp, cfg.NH
    h = 2
    o = []
    o.append(Op("embed fwd", 0, h * 3 * C, "fp32", 1, "embedding"))
    # residual + layernorm (residual_layernorm_fwd, kernels/cuda/
    # cuda_fused.cu): read a, b; write the sum and the normalised row. Two
    # per block (res2 + ln_2; res3 + the next ln_1 or ln_f); block 0's ln_1
    # reads the embedding, which no add produces: a plain layernorm.
    o.append(Op("layernorm fwd (block 0 ln_1)", 8 * C, h * 2 * C + 8, "fp32", 1, "layernorm"))
    o.append(Op("residual + layernorm fwd (fused)", 9 * C, h * 4 * C + 8, "fp32", 2 * L, "layernorm"))
    o.append(gemm(cfg, "qkv fwd (+bias epilogue)", C, 3 * C, "bf16", "GEMM qkv"))
    o.append(Op("attention fwd (cuDNN SDPA)", 2.0 * T * C,
                h * (3 * C + C) + 4 * NH, "bf16", L, "attention"))
    o.append(gemm(cfg, "attproj fwd", C, C, "bf16", "GEMM attproj"))
    o.append(gemm(cfg, "fc fwd (+bias+GELU epilogue, aux)", C, 4 * C, "bf16", "GEMM fc",
                  extra_out=4 * C))
    o.append(gemm(cfg, "fcproj fwd", 4 * C, C, "bf16", "GEMM fcproj"))
    o.append(gemm(cfg, "classifier fwd", C, V, "bf16", "classifier", count=1))
    # xent_fwd_bwd (cuda_fused.cu), over chunks of model.loss_chunk_rows
    # rows (trainer/model.c): per token the same traffic as unchunked, the
    # logits read (the statistics pass; the gradient pass's re-read
    # assumed in L2, as for every row kernel here) and overwritten once.
    o.append(Op("fused softmax-xent fwd+bwd (in place)", 8 * V, h * 2 * V + 8, "fp32", 1, "cross-entropy"))
    o.append(gemm(cfg, "classifier bwd dinp", V, C, "bf16", "classifier", count=1))
    o.append(gemm_dw(cfg, "classifier bwd dW", C, V, "bf16", "classifier", count=1))
    # layernorm backward fused with the residual gradient: reads dout, x,
    # the incoming residual gradient; writes the new one; dw/db partials
    # from the same pass
    o.append(Op("layernorm bwd + residual grad (fused)", 14 * C, h * 4 * C + 8, "fp32", 2 * L + 1, "layernorm"))
    o.append(gemm(cfg, "fcproj bwd dinp (+dGELU epilogue)", C, 4 * C, "bf16", "GEMM fcproj",
                  extra_in=4 * C))
    o.append(gemm_dw(cfg, "fcproj bwd dW (+bias grad epilogue)", 4 * C, C, "bf16", "GEMM fcproj"))
    for nm, K, N in (("fc", C, 4 * C), ("attproj", C, C), ("qkv", C, 3 * C)):
        g = "GEMM " + nm
        o.append(gemm(cfg, nm + " bwd dinp", N, K, "bf16", g))
        o.append(gemm_dw(cfg, nm + " bwd dW (+bias grad epilogue)", K, N, "bf16", g))
    o.append(Op("attention bwd (cuDNN SDPA, deterministic)", 5.0 * T * C,
                h * (3 * C + C + C + 3 * C) + 4 * NH + 4 * 2 * C, "bf16", L, "attention"))
    o.append(Op("embed bwd", 0, h * C + 4 * 2 * C, "fp32", 1, "embedding"))
    N = cfg.n_params()
    o.append(Op("sumsq + AdamW (+bf16 copy)", 12.0 * N / cfg.BT,
                (4 + 30) * N / cfg.BT, "fp32", 1, "optimizer"))
    return o


# ---- totals and tables -----------------------------------------------------

def totals(cfg, ops, hw):
    t = sum(o.time(hw) for o in ops)
    return {
        "flops_per_token": sum(o.count * o.flops for o in ops),
        "bytes_per_token": sum(o.count * o.bytes for o in ops),
        "ns_per_token": t * 1e9,
        "tokens_per_s": 1.0 / t,
        "mfu": cfg.model_flops() / (t * MFU_PEAK),
    }


def grouped(ops, hw):
    out = {}
    for o in ops:
        g = out.setdefault(o.group, {"flops": 0.0, "bytes": 0.0, "time": 0.0})
        g["flops"] += o.count * o.flops
        g["bytes"] += o.count * o.bytes
        g["time"] += o.time(hw)
    return out


def table(cfg, cols, hwname, detail):
    hw = HW[hwname]
    names = list(cols)
    rows = []
    if detail:
        keys = []
        for n in names:
            for o in cols[n]:
                if o.name not in keys:
                    keys.append(o.name)
        per = {n: {o.name: {"flops": o.count * o.flops, "bytes": o.count * o.bytes,
                            "time": o.time(hw)} for o in cols[n]} for n in names}
    else:
        per = {n: grouped(cols[n], hw) for n in names}
        keys = []
        for n in names:
            for k in per[n]:
                if k not in keys:
                    keys.append(k)
    hdr = "| op (per token, %s) |" % hwname + "".join(
        " %s MFLOP | %s KB | %s ns |" % (n, n, n) for n in names)
    rows.append(hdr)
    rows.append("|---|" + "---:|" * (3 * len(names)))
    for k in keys:
        r = "| %s |" % k
        for n in names:
            g = per[n].get(k)
            r += (" %.1f | %.1f | %.1f |" % (g["flops"] / 1e6, g["bytes"] / 1e3, g["time"] * 1e9)
                  if g else " - | - | - |")
        rows.append(r)
    tot = {n: totals(cfg, cols[n], hw) for n in names}
    r = "| **total** |"
    for n in names:
        r += " %.0f | %.0f | %.0f |" % (tot[n]["flops_per_token"] / 1e6,
                                       tot[n]["bytes_per_token"] / 1e3, tot[n]["ns_per_token"])
    rows.append(r)
    return "\n".join(rows), tot


def derate(hw):
    """The peaks scaled by EFFICIENCY (a realistic, not a bound, figure)."""
    return {"bf16": hw["bf16"] * EFFICIENCY["tensor"], "tf32": hw["tf32"] * EFFICIENCY["tensor"],
            "fp32": hw["fp32"] * EFFICIENCY["fp32"], "hbm": hw["hbm"] * EFFICIENCY["hbm"]}


def summary(cfg, cols):
    rows = ["| column | GPU | ns/token | tokens/s | MFU at roofline | MFU derated |",
            "|---|---|---:|---:|---:|---:|"]
    res = {}
    for n, ops in cols.items():
        for hwname, hw in HW.items():
            t, d = totals(cfg, ops, hw), totals(cfg, ops, derate(hw))
            res.setdefault(hwname, {})[n] = dict(t, mfu_derated=d["mfu"])
            rows.append("| %s | %s | %.0f | %.2fM | **%.1f%%** | %.1f%% |" % (
                n, hwname, t["ns_per_token"], t["tokens_per_s"] / 1e6, 100 * t["mfu"],
                100 * d["mfu"]))
    return "\n".join(rows), res


# Rows of one loss chunk as trainer/model.c derives them (model.loss_chunk_rows
# = 0): as many as fit in 512 MiB of fp32 logits, a multiple of 32.
LOSS_CHUNK_BYTES = 512 << 20


def logits_memory(cfg):
    """Bytes of logits alive at once: before, all B*T rows in fp32; after,
    one chunk of rows (gpt_chunk_rows in trainer/model.c) in bf16."""
    rows = max(32, LOSS_CHUNK_BYTES // (cfg.Vp * 4) // 32 * 32)
    rows = min(rows, cfg.BT)
    return {"before": cfg.BT * cfg.Vp * 4, "after": rows * cfg.Vp * 2,
            "chunk_rows": rows}


def columns(cfg):
    return {
        "before": ops_before(cfg, "fp32"),
        "before-bf16gemm": ops_before(cfg, "bf16conv"),
        "after": ops_after(cfg),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--B", type=int, default=64, help="sequences per step (default 64)")
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--detail", action="store_true", help="one row per kernel call kind")
    ap.add_argument("--json", help="also write the totals here")
    a = ap.parse_args(argv)
    cfg = Cfg(B=a.B, T=a.T)
    cols = columns(cfg)
    print("GPT-2 124M step model: B=%d T=%d L=%d C=%d NH=%d Vp=%d, N=%d params, "
          "model FLOPs/token 6N + 6LCT = %.1f MFLOP" % (
              cfg.B, cfg.T, cfg.L, cfg.C, cfg.NH, cfg.Vp, cfg.n_params(), cfg.model_flops() / 1e6))
    print("columns: before = kernels/cuda today (fp32 GEMMs); before-bf16gemm = "
          "today with BATON_CUDA_GEMM=bf16; after = issue 12's design\n")
    result = {"B": cfg.B, "T": cfg.T, "n_params": cfg.n_params(),
              "model_flops_per_token": cfg.model_flops()}
    for hwname in HW:
        text, _ = table(cfg, cols, hwname, a.detail)
        print(text + "\n")
    text, res = summary(cfg, cols)
    print(text + "\n")
    lm = logits_memory(cfg)
    print("logits in memory: before %.2f GB (all %d rows, fp32); after %.3f GB "
          "(one chunk of %d rows, bf16)\n" % (lm["before"] / 1e9, cfg.BT,
                                              lm["after"] / 1e9, lm["chunk_rows"]))
    result["logits_bytes"] = lm
    print("derated: peaks times %s (assumed, see EFFICIENCY)\n" % EFFICIENCY)
    result.update(res)
    ok = result["H100"]["after"]["mfu"] >= TARGET_MFU
    print("after on H100: %.1f%% MFU at roofline (target >= %.0f%%): %s" % (
        100 * result["H100"]["after"]["mfu"], 100 * TARGET_MFU, "met" if ok else "NOT met"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
