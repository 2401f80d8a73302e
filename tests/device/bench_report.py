#!/usr/bin/env python3
"""bench_report.py: the GPT-2 124M benchmark's figures for the device check.

bench/gpu/run.sh leaves, in its OUT folder, torch.json (PyTorch peer),
results.json (tokens/s and MFU per system) and baton-run-<mode>/metrics.jsonl
(baton's per-step timers). device_check.sh samples the GPU's per-process
memory with nvidia-smi while each system runs (one "pid, MiB" line per
sample). This adds what run.sh's table lacks: the median step time, its
breakdown (data, compute, exposed communication, optimizer: baton's own
timers; PyTorch reports the whole step only), and the peak device memory
of each process as nvidia-smi saw it, which counts the CUDA context and
allocator caches for both systems alike (PyTorch's allocator peak is shown
too).

usage: bench_report.py BENCH_DIR WARMUP MODES TORCH_MEM BATON_MEM OUT_JSON
  MODES is the list run.sh ran, in order ("fp32 bf16"): baton's processes
  appear in the memory samples in that order.
Prints one table; exits 1 when there is nothing to report.
"""
import json
import os
import statistics
import sys

PEAK = 989e12  # H200 SXM (= H100 SXM) dense bf16, the MFU denominator
# FLOPs per token as bench/gpu/run.sh and torch_gpt2.py count them:
# 6 N + 6 L C T, N = 124,475,904 (vocabulary padded to 50304, tied lm_head).
L, C, T, V = 12, 768, 1024, 50304
N = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
FLOPS_PER_TOKEN = 6 * N + 6 * L * C * T


def peaks_by_pid(path):
    """Max MiB per pid, pids in order of first appearance."""
    order, peak = [], {}
    if not os.path.exists(path):
        return []
    with open(path) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            try:
                mib = float(parts[1].split()[0])
            except (ValueError, IndexError):
                continue
            pid = parts[0]
            if pid not in peak:
                order.append(pid)
                peak[pid] = 0.0
            peak[pid] = max(peak[pid], mib)
    return [peak[p] for p in order]


def median_of(rows, key, warmup):
    v = [r[key] for r in rows if r.get("step", 0) > warmup and key in r]
    return statistics.median(v) if v else None


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    bench, warmup, modes, torch_mem, baton_mem, out_json = sys.argv[1:]
    warmup = int(warmup)
    modes = modes.split()
    res = {}
    results = {}
    p = os.path.join(bench, "results.json")
    if os.path.exists(p):
        results = json.load(open(p))
    p = os.path.join(bench, "torch.json")
    if os.path.exists(p):
        t = json.load(open(p))
        mem = peaks_by_pid(torch_mem)
        res["pytorch"] = {
            "precision": "bf16 autocast", "tokens_per_s": t["tokens_per_s"],
            "mfu": t["tokens_per_s"] * t["flops_per_token"] / PEAK,
            "step_ms": t["step_ms_median"],
            "peak_mem_gib": max(mem) / 1024 if mem else None,
            "alloc_peak_gib": t.get("max_mem_gib"),
            "device": t.get("device"), "B": t.get("B"), "T": t.get("T")}
    mem = peaks_by_pid(baton_mem)
    for i, mode in enumerate(modes):
        metrics = os.path.join(bench, "baton-run-" + mode, "metrics.jsonl")
        if not os.path.exists(metrics):
            continue
        rows = [json.loads(l) for l in open(metrics) if l.strip()]
        tok = median_of(rows, "perf/tokens_per_s", warmup)
        if tok is None:
            continue
        r = results.get("baton-" + mode, {})
        res["baton-" + mode] = {
            "precision": r.get("precision", mode),
            "tokens_per_s": tok, "mfu": tok * FLOPS_PER_TOKEN / PEAK,
            "step_ms": median_of(rows, "time/step_ms", warmup),
            "data_ms": median_of(rows, "time/data_ms", warmup),
            "compute_ms": median_of(rows, "time/compute_ms", warmup),
            "comm_ms": median_of(rows, "time/comm_exposed_ms", warmup),
            "optim_ms": median_of(rows, "time/optim_ms", warmup),
            "peak_mem_gib": mem[i] / 1024 if i < len(mem) else None}
    if not res:
        print("bench_report: no results in " + bench)
        return 1
    ref = res.get("pytorch", {}).get("tokens_per_s")

    def f(x, fmt):
        return fmt % x if x is not None else "-"
    print("%-12s %-18s %10s %6s %6s %8s %8s  %s" % (
        "system", "precision", "tokens/s", "MFU", "vs pt", "step ms",
        "peak GiB", "step: data/compute/comm/optim ms"))
    for k, r in res.items():
        ratio = "%.2fx" % (r["tokens_per_s"] / ref) if ref else "-"
        mfu = f(r["mfu"] and 100 * r["mfu"], "%.1f%%")
        if k == "pytorch":
            brk = "(whole step only; allocator peak %s GiB)" % f(
                r["alloc_peak_gib"], "%.1f")
        else:
            brk = "/".join(f(r[x], "%.1f") for x in
                           ("data_ms", "compute_ms", "comm_ms", "optim_ms"))
        print("%-12s %-18s %10.0f %6s %6s %8s %8s  %s" % (
            k, r["precision"], r["tokens_per_s"], mfu, ratio,
            f(r["step_ms"], "%.1f"), f(r["peak_mem_gib"], "%.1f"), brk))
    with open(out_json, "w") as fo:
        json.dump(res, fo, indent=1)
        fo.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
