#!/usr/bin/env python3
"""Scaling estimate for GPT-2 124M data-parallel training on H100s.

A ring all-reduce of S bytes over n GPUs moves 2(n-1)/n * S bytes through
each GPU's slowest link, so t_comm = 2(n-1)/n * S / busbw (the nccl-tests
bus-bandwidth convention). Bandwidths (issue 3): about 450 GB/s inside an
NVLink node of 8 GPUs, about 45 GB/s per 400 Gb/s NIC between nodes. NCCL
runs one ring per NIC in parallel, so across nodes busbw = min(450,
NICs per node * 45): two fabrics are shown, 8 NICs per node (DGX-style,
360 GB/s) and 1 NIC per node (45 GB/s, common on rented machines).

Compute: FLOPs per token = 6N + 6 L C T (N = 124.48 M with the vocabulary
padded to 50304), at an assumed 45% MFU of 989 TFLOP/s (the issue's
target; not measured here: no GPU was available), for 16 sequences of 1024
tokens per GPU per optimizer step (weak scaling: per-GPU work fixed).

Overlap: backward is 2/3 of compute; buckets reduced during backward hide
up to that much communication, except the last bucket (25 MB), which can
only start when backward ends:
  exposed = max(t_comm - 2/3 t_compute, t_last_bucket)
Gradients are reduced in fp32 (baton today), S = 4 N bytes.
Efficiency = t_compute / (t_compute + exposed).
"""
L, C, T, V = 12, 768, 1024, 50304
N = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
FLOPS_TOK = 6 * N + 6 * L * C * T
PEAK, MFU = 989e12, 0.45
TOK_PER_GPU = 16 * 1024
S = 4 * N
BUCKET = 25e6


def t_ring(n, nbytes, busbw):
    return 2 * (n - 1) / n * nbytes / busbw if n > 1 else 0.0


def main():
    t_comp = TOK_PER_GPU * FLOPS_TOK / (PEAK * MFU)
    print(f"GPT-2 124M: N = {N/1e6:.2f} M parameters, {FLOPS_TOK/1e6:.0f} "
          f"MFLOP/token, gradients {S/1e6:.0f} MB (fp32)")
    print(f"compute per step: {TOK_PER_GPU} tokens/GPU at {MFU:.0%} MFU = "
          f"{t_comp*1e3:.1f} ms (backward {t_comp*2/3*1e3:.1f} ms)\n")
    print("| GPUs | nodes | fabric | busbw GB/s | all-reduce ms | "
          "efficiency, no overlap | efficiency, overlap |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for n in (8, 16, 32, 48, 64):
        nodes = n // 8
        for fabric, nics in (("8 NICs/node", 8), ("1 NIC/node", 1)):
            if nodes == 1 and nics == 1:
                continue
            bw = 450e9 if nodes == 1 else min(450e9, nics * 45e9)
            tc = t_ring(n, S, bw)
            last = t_ring(n, BUCKET, bw)
            exp_on = max(tc - 2 / 3 * t_comp, last)
            e_off = t_comp / (t_comp + tc)
            e_on = t_comp / (t_comp + exp_on)
            fab = "NVLink" if nodes == 1 else fabric
            print(f"| {n} | {nodes} | {fab} | {bw/1e9:.0f} | {tc*1e3:.2f} | "
                  f"{e_off:.1%} | {e_on:.1%} |")


if __name__ == "__main__":
    main()
