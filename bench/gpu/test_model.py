#!/usr/bin/env python3
"""test_model.py: checks bench/gpu/model.py's arithmetic against totals
computed by hand (ctest gpu_step_model). Fails on any mismatch, so a
change to the model that breaks its bookkeeping cannot pass silently.

Hand computations (GPT-2 124M, B=64, T=1024, C=768, L=12, Vp=50304):
  N = Vp C + T C + L (12 C^2 + 13 C) + 2 C
    = 38,633,472 + 786,432 + 12 * 7,087,872 + 1,536 = 124,475,904
  model FLOPs/token = 6 N + 6 L C T = 746,855,424 + 56,623,104 = 803,478,528
  qkv forward GEMM today (fp32, CUDA cores), per token per layer:
    FLOPs 2 * 768 * 2304 = 3,538,944
    bytes 4 * 768 (in) + 4 * 2304 (out) + 4 * 768 * 2304 / 65,536 (W)
        = 3,072 + 9,216 + 108 = 12,396
    H100 time max(3,538,944 / 67e12, 12,396 / 3.35e12) = 52.8201 ns
    (compute bound), 12 layers: 633.841 ns
  cuDNN attention forward in the design, per token per layer:
    FLOPs 2 * T * C = 1,572,864 -> 1.5904 ns at 989e12
    bytes 2 * (3 * 768 + 768) + 4 * 12 = 6,192 -> 1.8484 ns at 3.35e12
    (memory bound), 12 layers: 22.180 ns
"""
import contextlib
import io
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402

nPass = nFail = 0


def check(ok, what):
    global nPass, nFail
    print("%-5s %s" % ("ok" if ok else "FAIL", what))
    if ok:
        nPass += 1
    else:
        nFail += 1


def close(a, b, rel=1e-6):
    return math.isfinite(a) and abs(a - b) <= rel * abs(b)


def main():
    cfg = model.Cfg(B=64)
    check(cfg.n_params() == 124475904, "N = %d (hand: 124,475,904)" % cfg.n_params())
    check(cfg.model_flops() == 803478528, "6N + 6LCT = %d (hand: 803,478,528)" % cfg.model_flops())
    h100 = model.HW["H100"]
    before = {o.name: o for o in model.ops_before(cfg)}
    q = before["qkv fwd"]
    check(q.flops == 3538944, "qkv fwd FLOPs %.0f (hand: 3,538,944)" % q.flops)
    check(close(q.bytes, 12396), "qkv fwd bytes %.3f (hand: 12,396)" % q.bytes)
    check(q.bound(h100) == "compute", "qkv fwd fp32 is compute bound")
    check(close(q.time(h100) * 1e9, 633.8407, 1e-5),
          "qkv fwd x12 on H100 %.4f ns (hand: 633.8407)" % (q.time(h100) * 1e9))
    after = {o.name: o for o in model.ops_after(cfg)}
    a = after["attention fwd (cuDNN SDPA)"]
    check(a.flops == 1572864 and close(a.bytes, 6192), "cuDNN attention fwd FLOPs, bytes")
    check(a.bound(h100) == "memory", "cuDNN attention fwd is memory bound")
    check(close(a.time(h100) * 1e9, 12 * 6192 / 3.35e12 * 1e9),
          "cuDNN attention fwd x12 on H100 %.3f ns (hand: 22.180)" % (a.time(h100) * 1e9))
    # logits memory: all rows in fp32 before, one 2656-row bf16 chunk after
    #   64 * 1024 * 50304 * 4 = 13,186,891,776; 536,870,912 // 201,216 =
    #   2668 -> 2656 (multiple of 32); 2656 * 50304 * 2 = 267,214,848
    lm = model.logits_memory(cfg)
    check(lm["before"] == 13186891776 and lm["chunk_rows"] == 2656 and
          lm["after"] == 267214848,
          "logits memory %d -> %d bytes, %d-row chunks (hand: 13,186,891,776 "
          "-> 267,214,848, 2656)" % (lm["before"], lm["after"], lm["chunk_rows"]))
    # totals: the sum of the op times, and MFU from it
    for name, ops in model.columns(cfg).items():
        t = sum(o.count * max(o.flops / h100[o.unit], o.bytes / h100["hbm"]) for o in ops)
        tot = model.totals(cfg, ops, h100)
        check(close(tot["ns_per_token"], t * 1e9) and
              close(tot["mfu"], 803478528 / (t * 989e12)),
              "%s: total %.1f ns/token and MFU %.2f%% are the sum of its ops"
              % (name, t * 1e9, 100 * tot["mfu"]))
    b = model.totals(cfg, model.ops_before(cfg), h100)["mfu"]
    f = model.totals(cfg, model.ops_after(cfg), h100)["mfu"]
    check(b < 0.10, "before: %.1f%% MFU at roofline (< 10%%, issue 12's ~5%%)" % (100 * b))
    check(f >= model.TARGET_MFU, "after: %.1f%% MFU at roofline (target >= 45%%)" % (100 * f))
    # the command runs and writes its JSON
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.json")
        with contextlib.redirect_stdout(io.StringIO()):
            rc = model.main(["--B", "64", "--json", path])
        j = json.load(open(path))
        check(rc == 0 and close(j["H100"]["after"]["mfu"], f), "model.py --json writes the totals")
    print("%d passed, %d failed" % (nPass, nFail))
    return 0 if nFail == 0 and nPass > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
