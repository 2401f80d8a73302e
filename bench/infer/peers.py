#!/usr/bin/env python3
"""peers.py: the peers of `baton infer` in bench/infer/run.sh.

  peers.py ort   DIR PROMPT N   ONNX Runtime on DIR/model.onnx, greedy
  peers.py ortkv DIR PROMPT N   ONNX Runtime on DIR/model_with_past.onnx
  peers.py torch DIR PROMPT N   transformers GPT2LMHeadModel.generate

Both at 1 thread. Prints JSON: tokens_per_s (N / wall time of the prompt
plus N new tokens, model load excluded, as for baton) and the ids.

ONNX Runtime, `ort`: model.onnx has no KV-cache inputs, so each new token
is a full forward over the whole sequence so far (KV-less recompute),
argmax of the last row. `ortkv`: model_with_past.onnx (baton export
--with-past) in our own loop: the prompt with an empty cache, then one
token per run, feeding present.* back as past_key_values.*. PyTorch: generate() with
use_cache=True, do_sample=False, min_new_tokens=N so EOS cannot stop it.
"""
import json
import os
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402


def run_ort(d, ids, n):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(d, "model.onnx"), so,
                                providers=["CPUExecutionProvider"])
    seq = list(ids)
    sess.run(["logits"], {"input_ids": np.array([seq], dtype=np.int64)})  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        (lg,) = sess.run(["logits"], {"input_ids": np.array([seq], dtype=np.int64)})
        seq.append(int(np.argmax(lg[0, -1])))
    dt = time.perf_counter() - t0
    return n / dt, seq[len(ids):]


def run_ortkv(d, ids, n):
    import onnxruntime as ort
    cfg = json.load(open(os.path.join(d, "config.json")))
    L, NH, hs = cfg["n_layer"], cfg["n_head"], cfg["n_embd"] // cfg["n_head"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(d, "model_with_past.onnx"), so,
                                providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]

    def generate():
        feed = {"input_ids": np.array([ids], dtype=np.int64)}
        for l in range(L):
            for k in ("key", "value"):
                feed[f"past_key_values.{l}.{k}"] = np.zeros((1, NH, 0, hs), np.float32)
        got = []
        for _ in range(n):
            r = sess.run(outs, feed)
            nxt = int(np.argmax(r[0][0, -1]))
            got.append(nxt)
            feed = {"input_ids": np.array([[nxt]], dtype=np.int64)}
            for i, name in enumerate(outs[1:]):
                feed[name.replace("present.", "past_key_values.")] = r[1 + i]
        return got

    generate()  # warm-up
    t0 = time.perf_counter()
    got = generate()
    return n / (time.perf_counter() - t0), got


def run_torch(d, ids, n):
    import torch
    import transformers
    torch.set_num_threads(1)
    model = transformers.GPT2LMHeadModel.from_pretrained(d).eval()
    x = torch.tensor([ids])
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
              pad_token_id=0)
    with torch.no_grad():
        model.generate(x, **kw)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(x, **kw)
        dt = time.perf_counter() - t0
    return n / dt, out[0, len(ids):].tolist()


def main():
    which, d, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ids = list(prompt.encode("utf-8"))
    run = {"ort": run_ort, "ortkv": run_ortkv, "torch": run_torch}[which]
    tps, out = run(d, ids, n)
    print(json.dumps({"tokens_per_s": tps, "ids": out}))


if __name__ == "__main__":
    main()
