#!/usr/bin/env python3
"""check_export.py: baton's exports, loaded by the tools people deploy with.

    check_export.py hf          FIXTURE BATON   transformers GPT2LMHeadModel
    check_export.py safetensors FIXTURE DUMP    safetensors package vs checkpoint
    check_export.py onnx        FIXTURE BATON   onnx checker + ONNX Runtime (GPT)
    check_export.py mlp         FIXTURE BATON   MLP: ONNX Runtime, CSV and HDF5

FIXTURE is the directory tests/export/fixture.sh made. Logits are compared
as max|a - b| / max|b| < 1e-4 (fp32). A missing Python package is a
FAILURE with a message, never a skip.
"""
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TOL = 1e-4


def need(mod):
    try:
        return __import__(mod)
    except Exception as e:  # ImportError or a broken install
        print(f"FAIL: Python package '{mod}' is not usable ({e}); build the test "
              f"environment with `bash tests/pyenv.sh build/pyenv` and configure "
              f"with -DBATON_PYTHON_ENV=$PWD/build/pyenv", file=sys.stderr)
        sys.exit(1)


np = need("numpy")
failures = []


def check(cond, msg):
    print(("ok:   " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def relerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def baton_logits(baton, d, ids, vocab, extra=()):
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "l.bin")
        subprocess.run([baton, "infer", d, "--prompt-ids", ",".join(map(str, ids)),
                        "--max-new-tokens", "0", "--logits-out", out, *extra],
                       check=True, stdout=subprocess.DEVNULL)
        return np.fromfile(out, dtype="<f4").reshape(len(ids), vocab)


def baton_ids(baton, d, ids, n):
    r = subprocess.run([baton, "infer", d, "--prompt-ids", ",".join(map(str, ids)),
                        "--max-new-tokens", str(n), "--ids"],
                       check=True, capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def prompts(vocab, n, count, seed=0):
    rng = np.random.default_rng(seed)
    return [list(map(int, rng.integers(1, vocab, size=n))) for _ in range(count)]


def cmd_hf(fx, baton):
    torch = need("torch")
    transformers = need("transformers")
    torch.set_num_threads(1)
    cfg = json.load(open(os.path.join(fx, "fp32", "config.json")))
    V = cfg["vocab_size"]
    model, info = transformers.GPT2LMHeadModel.from_pretrained(
        os.path.join(fx, "fp32"), output_loading_info=True)
    model.eval()
    check(not info["unexpected_keys"], f"no unexpected keys ({info['unexpected_keys']})")
    missing = [k for k in info["missing_keys"] if not k.endswith("attn.bias")
               and not k.endswith("attn.masked_bias")]
    check(set(missing) <= {"lm_head.weight"}, f"only the tied lm_head may be missing ({missing})")
    check(model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(),
          "lm_head is tied to wte")
    for n in (9, cfg["n_positions"]):
        for ids in prompts(V, n, 2, seed=n):
            ours = baton_logits(baton, os.path.join(fx, "fp32"), ids, V)
            with torch.no_grad():
                theirs = model(torch.tensor([ids])).logits[0].numpy()
            e = relerr(theirs, ours)
            check(e < TOL, f"transformers fp32 logits vs baton, {n} tokens: rel err {e:.2e}")
    # Greedy generation agrees token for token.
    ids = [ord(c) for c in "12+34=46\n7+8="]
    ours = baton_ids(baton, os.path.join(fx, "fp32"), ids, 24)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                             use_cache=True, min_new_tokens=24, pad_token_id=0)
    theirs = out[0, len(ids):].tolist()
    check(theirs == ours, f"greedy generate: transformers {theirs[:12]}... == baton {ours[:12]}...")
    # The other direction: a model saved by transformers (save_pretrained,
    # safetensors) runs in `baton infer` unchanged (no baton_* config keys).
    with tempfile.TemporaryDirectory() as t:
        model.save_pretrained(t, safe_serialization=True)
        # transformers keeps unknown keys; drop baton's so this is a plain
        # HF config, as a model from elsewhere would have.
        cj = json.load(open(os.path.join(t, "config.json")))
        cj = {k: v for k, v in cj.items() if not k.startswith("baton_")}
        json.dump(cj, open(os.path.join(t, "config.json"), "w"))
        ids = prompts(V, 17, 1, seed=8)[0]
        ours = baton_logits(baton, t, ids, V)
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].numpy()
        e = relerr(theirs, ours)
        check(e < TOL, f"baton infer on transformers' save_pretrained output: rel err {e:.2e}")
    # Greedy generation on a model with spread-out logits (random weights
    # scaled up, as in export_kvcache): the trained 20-step fixture
    # mostly predicts newlines, which would make the comparison weak.
    torch.manual_seed(0)
    rc = transformers.GPT2Config(vocab_size=V, n_positions=64, n_embd=64, n_layer=2,
                                 n_head=4, activation_function="gelu_new",
                                 resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                 bos_token_id=0, eos_token_id=0)
    rm = transformers.GPT2LMHeadModel(rc).eval()
    with torch.no_grad():
        for name, p in rm.named_parameters():
            if not (".ln_" in name and name.endswith("weight")):
                p.mul_(8.0)
    with tempfile.TemporaryDirectory() as t:
        rm.save_pretrained(t, safe_serialization=True)
        ids = [ord(c) for c in "hello, baton"]
        ours = baton_ids(baton, t, ids, 40)
        with torch.no_grad():
            out = rm.generate(torch.tensor([ids]), max_new_tokens=40, min_new_tokens=40,
                              do_sample=False, use_cache=True, pad_token_id=0)
        theirs = out[0, len(ids):].tolist()
        check(theirs == ours and len(set(ours)) > 5,
              f"greedy generate on a random model: transformers == baton "
              f"({len(set(ours))} distinct tokens: {ours[:10]}...)")
    # bf16 export: loads in transformers; upcast to fp32 it equals baton's
    # own bf16 inference (both widen the same bf16 weights).
    mb = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(fx, "bf16"),
                                                      torch_dtype=torch.bfloat16)
    check(mb.transformer.wte.weight.dtype == torch.bfloat16, "bf16 export loads as bfloat16")
    mb = mb.float().eval()
    ids = prompts(V, 12, 1, seed=3)[0]
    ours = baton_logits(baton, os.path.join(fx, "bf16"), ids, V)
    with torch.no_grad():
        theirs = mb(torch.tensor([ids])).logits[0].numpy()
    e = relerr(theirs, ours)
    check(e < TOL, f"transformers bf16-weights logits vs baton bf16 inference: rel err {e:.2e}")


def rne_bf16(x):
    u = x.astype("<f4").view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return (r.astype(np.uint32) << 16).view(np.float32)


def cmd_safetensors(fx, dump):
    st = need("safetensors")
    from safetensors.numpy import load_file
    from safetensors import safe_open
    table = json.load(open(dump + ".json"))
    flat = np.fromfile(dump + ".bin", dtype="<f4")
    V = table["vocab_size"]
    dirs = ["fp32", "bf16", "fp16"] if table["kind"] == "gpt" else ["fp32"]
    for d in dirs:
        path = os.path.join(fx, d, "model.safetensors")
        if d == "bf16":
            # numpy has no bfloat16: read through torch
            torch = need("torch")
            from safetensors.torch import load_file as tload
            got = {k: v.float().numpy() for k, v in tload(path).items()}
        else:
            got = load_file(path)
        with safe_open(path, framework="np") as f:
            meta = f.metadata()
        check(meta.get("format") == "pt" and "config_xxh64" in meta and "step" in meta,
              f"{d}: __metadata__ has format/step/config_xxh64 ({meta})")
        names = set()
        for t in table["tensors"]:
            shape = list(t["shape"])
            if table["kind"] == "gpt":
                name = "transformer." + t["name"]
                if t["name"] == "wte.weight":
                    shape[0] = V
            else:
                name = t["name"]
            names.add(name)
            n = int(np.prod(shape))
            want = flat[t["offset"]:t["offset"] + n].reshape(shape)
            if d == "bf16":
                want = rne_bf16(want)
            elif d == "fp16":
                want = want.astype(np.float16).astype(np.float32)
            arr = got.get(name)
            if arr is None:
                check(False, f"{d}: tensor {name} present")
                continue
            ok = list(arr.shape) == shape and np.array_equal(arr.astype(np.float32), want)
            if not ok:
                check(False, f"{d}: tensor {name} identical to the checkpoint")
        check(set(got) == names, f"{d}: exactly the model's {len(names)} tensors, identical "
              f"to the checkpoint (dtype {d}, exact after rounding)")


def cmd_onnx(fx, baton):
    onnx = need("onnx")
    ort = need("onnxruntime")
    path = os.path.join(fx, "onnx", "model.onnx")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    check(True, f"onnx.checker (full_check) accepts model.onnx (opset "
          f"{m.opset_import[0].version}, IR {m.ir_version})")
    cfg = json.load(open(os.path.join(fx, "fp32", "config.json")))
    V, T = cfg["vocab_size"], cfg["n_positions"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for n in (5, 23, T):
        rows = prompts(V, n, 2, seed=100 + n)
        (logits,) = sess.run(["logits"], {"input_ids": np.array(rows, dtype=np.int64)})
        check(logits.shape == (2, n, V), f"ORT logits shape {logits.shape} for batch 2 x {n}")
        for b, ids in enumerate(rows):
            ours = baton_logits(baton, os.path.join(fx, "fp32"), ids, V)
            e = relerr(logits[b], ours)
            check(e < TOL, f"ORT vs baton, batch row {b}, {n} tokens: rel err {e:.2e}")
    cmd_onnx_past(fx, baton, ort, onnx, cfg)


def run_with_past(sess, rows, n_prefill, L, NH, hs):
    """Feeds rows[:, :n_prefill] with an empty cache, then one token at a
    time, passing present.* back as past_key_values.*; returns the logits
    of every position, concatenated."""
    B = rows.shape[0]
    outs = [o.name for o in sess.get_outputs()]
    cache = {f"present.{l}.{k}": np.zeros((B, NH, 0, hs), np.float32)
             for l in range(L) for k in ("key", "value")}
    pieces, t = [], 0
    while t < rows.shape[1]:
        step = n_prefill if t == 0 else 1
        feed = {"input_ids": rows[:, t:t + step]}
        for l in range(L):
            for k in ("key", "value"):
                feed[f"past_key_values.{l}.{k}"] = cache[f"present.{l}.{k}"]
        r = sess.run(outs, feed)
        pieces.append(r[0])
        cache = dict(zip(outs[1:], r[1:]))
        t += step
    return np.concatenate(pieces, axis=1), cache


def cmd_onnx_past(fx, baton, ort, onnx, cfg):
    path = os.path.join(fx, "onnx", "model_with_past.onnx")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    L, NH, C, V = cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["vocab_size"]
    names_in = [i.name for i in m.graph.input]
    check(names_in[:3] == ["input_ids", "past_key_values.0.key", "past_key_values.0.value"]
          and len(names_in) == 1 + 2 * L, f"model_with_past.onnx inputs {names_in[:3]}... ({len(names_in)})")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rows = np.array(prompts(V, 20, 2, seed=77), dtype=np.int64)
    got, cache = run_with_past(sess, rows, 7, L, NH, C // NH)
    check(cache["present.0.key"].shape == (2, NH, 20, C // NH),
          f"present.0.key shape {cache['present.0.key'].shape} after 20 tokens")
    for b in range(2):
        ours = baton_logits(baton, os.path.join(fx, "fp32"), list(rows[b]), V)
        e = relerr(got[b], ours)
        check(e < TOL, f"ORT with past (prefill 7 + 13 cached steps), row {b}: rel err {e:.2e} vs baton")
    # Cached greedy generation in ORT == baton's greedy tokens.
    ids = [ord(c) for c in "12+34=46\n7+8="]
    ours = baton_ids(baton, os.path.join(fx, "fp32"), ids, 20)
    seq = np.array([ids], dtype=np.int64)
    outs = [o.name for o in sess.get_outputs()]
    feed = {"input_ids": seq}
    for l in range(L):
        for k in ("key", "value"):
            feed[f"past_key_values.{l}.{k}"] = np.zeros((1, NH, 0, C // NH), np.float32)
    theirs = []
    for _ in range(20):
        r = sess.run(outs, feed)
        nxt = int(np.argmax(r[0][0, -1]))
        theirs.append(nxt)
        feed = {"input_ids": np.array([[nxt]], dtype=np.int64)}
        for i, name in enumerate(outs[1:]):
            feed[name.replace("present.", "past_key_values.")] = r[1 + i]
    check(theirs == ours, f"ORT cached greedy generation == baton ({ours[:8]}...)")


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def cmd_mlp(fx, baton):
    ort = need("onnxruntime")
    onnx = need("onnx")
    h5py = need("h5py")
    st = need("safetensors")
    from safetensors.numpy import load_file
    cfg = json.load(open(os.path.join(fx, "fp32", "config.json")))
    widths = cfg["widths"]
    K = widths[-1]
    x = np.loadtxt(os.path.join(fx, "rows.csv"), delimiter=",", dtype=np.float32)
    with tempfile.TemporaryDirectory() as t:
        lo = os.path.join(t, "l.bin")
        r = subprocess.run([baton, "infer", os.path.join(fx, "fp32"), "--input",
                            os.path.join(fx, "rows.csv"), "--logits-out", lo],
                           check=True, capture_output=True, text=True)
        classes = [int(c) for c in r.stdout.split()]
        ours = np.fromfile(lo, dtype="<f4").reshape(len(x), K)
        h5 = os.path.join(t, "rows.h5")
        with h5py.File(h5, "w") as f:
            f.create_dataset("/val/x", data=x)
        r2 = subprocess.run([baton, "infer", os.path.join(fx, "fp32"), "--input", h5],
                            check=True, capture_output=True, text=True)
        classes_h5 = [int(c) for c in r2.stdout.split()]
        # .npy input and a wrong feature count go through the same reader
        # as `baton prepare arrays` (data/features.c).
        npy = os.path.join(t, "rows.npy")
        np.save(npy, x.astype(np.float64))
        r3 = subprocess.run([baton, "infer", os.path.join(fx, "fp32"), "--input", npy],
                            check=True, capture_output=True, text=True)
        classes_npy = [int(c) for c in r3.stdout.split()]
        narrow = os.path.join(t, "narrow.csv")
        np.savetxt(narrow, x[:, :-1], delimiter=",")
        r4 = subprocess.run([baton, "infer", os.path.join(fx, "fp32"), "--input", narrow],
                            capture_output=True, text=True)
    check(len(classes) == len(x), f"baton infer printed {len(classes)} classes for {len(x)} rows")
    check(classes == list(np.argmax(ours, axis=1)), "printed classes are the argmax of --logits-out")
    check(classes_h5 == classes, "HDF5 /val/x input gives the same classes as CSV")
    check(classes_npy == classes, ".npy input gives the same classes as CSV")
    check(r4.returncode == 1 and f"{x.shape[1] - 1} features per row; the model takes {x.shape[1]}" in r4.stderr,
          f"a CSV of {x.shape[1] - 1} features is rejected by name: {r4.stderr.strip()}")
    # numpy reference from the safetensors weights (torch Linear layout)
    w = load_file(os.path.join(fx, "fp32", "model.safetensors"))
    h = x.astype(np.float64)
    n = len(widths) - 1
    for l in range(n):
        h = h @ w[f"layers.{l}.weight"].T.astype(np.float64) + w[f"layers.{l}.bias"]
        if l + 1 < n:
            h = gelu_tanh(h)
    e = relerr(ours, h)
    check(e < TOL, f"baton MLP logits vs numpy on the safetensors weights: rel err {e:.2e}")
    path = os.path.join(fx, "onnx", "model.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for b in (1, 7, len(x)):
        (lg,) = sess.run(["logits"], {"x": x[:b]})
        e = relerr(lg, ours[:b])
        check(e < TOL, f"ORT MLP logits vs baton, batch {b}: rel err {e:.2e}")
    check(list(np.argmax(lg, axis=1)) == classes, "ORT classes == baton classes")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    cmd, fx, arg = sys.argv[1:]
    {"hf": cmd_hf, "safetensors": cmd_safetensors, "onnx": cmd_onnx,
     "mlp": cmd_mlp}[cmd](fx, arg)
    if failures:
        print(f"{len(failures)} check(s) FAILED")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
