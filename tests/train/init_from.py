#!/usr/bin/env python3
"""init_from.py: the transformers side of the train.init_from tests.

    init_from.py model OUT L H C V T [--scale S]  random GPT2LMHeadModel, save_pretrained
    init_from.py data OUT.h5 V T N               N train windows (and N val) of T+1 tokens < V
    init_from.py loss MODEL DATA.h5              transformers' mean loss over all train windows
    init_from.py same MODEL EXPORT               every tensor of EXPORT == MODEL's, bitwise
    init_from.py logits EXPORT BATON             transformers on EXPORT vs `baton infer`
    init_from.py badshape MODEL OUT              MODEL with wpe cut to half its rows

Every parameter of the random model is drawn afresh (biases and layernorms
included), so a tensor that baton skipped or misplaced cannot match by
accident. A missing package is a failure, never a skip.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
import check_export as ce  # noqa: E402  (baton_logits, baton_ids, relerr, need)

np = ce.need("numpy")
torch = ce.need("torch")
transformers = ce.need("transformers")
torch.set_num_threads(1)


def cmd_model(out, L, H, C, V, T, scale=1.0):
    cfg = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=C, vocab_size=V,
                                  n_positions=T, resid_pdrop=0, embd_pdrop=0,
                                  attn_pdrop=0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(1234)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    if scale != 0:
        with torch.no_grad():
            for name, p in m.named_parameters():
                base = 1.0 if (".ln_" in name or "ln_f" in name) and name.endswith("weight") else 0.0
                p.copy_(base + scale * 0.05 * torch.randn_like(p))
    m.save_pretrained(out, safe_serialization=True)
    print(f"saved {sum(p.numel() for p in m.parameters())} parameters to {out}")


def cmd_data(out, V, T, N):
    h5py = ce.need("h5py")
    rng = np.random.default_rng(7)
    with h5py.File(out, "w") as f:
        f.attrs["baton_format_version"] = np.int32(1)
        f.attrs["vocab_size"] = np.int32(V)
        for split in ("train", "val"):
            toks = rng.integers(0, V, size=N * (T + 1)).astype(np.uint16)
            f.create_dataset(f"{split}/tokens", data=toks)


def load(d):
    return transformers.GPT2LMHeadModel.from_pretrained(d).eval()


def cmd_loss(model_dir, data):
    h5py = ce.need("h5py")
    m = load(model_dir)
    T = m.config.n_positions
    with h5py.File(data, "r") as f:
        toks = f["train/tokens"][:].astype(np.int64)
    w = torch.tensor(toks[: len(toks) // (T + 1) * (T + 1)].reshape(-1, T + 1))
    with torch.no_grad():
        logits = m(w[:, :T]).logits.double()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 w[:, 1:].reshape(-1))
    print(f"{loss.item():.9f}")


def cmd_same(model_dir, export_dir):
    from safetensors.numpy import load_file
    a = load_file(os.path.join(model_dir, "model.safetensors"))
    b = load_file(os.path.join(export_dir, "model.safetensors"))
    keys = [k for k in a if not k.endswith((".attn.bias", ".attn.masked_bias"))
            and k != "lm_head.weight"]
    bad = [k for k in keys if k not in b or a[k].shape != b[k].shape
           or not np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32))]
    ce.check(len(keys) > 0 and not bad,
             f"{len(keys)} tensors bitwise equal to the source (differing: {bad[:5]})")


def cmd_logits(export_dir, baton):
    m = load(export_dir)
    V = m.config.vocab_size
    for n in (7, m.config.n_positions):
        ids = ce.prompts(V, n, 1, seed=n)[0]
        ours = ce.baton_logits(baton, export_dir, ids, V)
        with torch.no_grad():
            theirs = m(torch.tensor([ids])).logits[0].numpy()
        e = ce.relerr(theirs, ours)
        ce.check(e < ce.TOL, f"transformers logits vs baton infer, {n} tokens: rel err {e:.2e}")
    ids = ce.prompts(V, 5, 1, seed=99)[0]
    ours = ce.baton_ids(baton, export_dir, ids, 16)
    with torch.no_grad():
        out = m.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16,
                         do_sample=False, use_cache=True, pad_token_id=0)
    theirs = out[0, len(ids):].tolist()
    ce.check(theirs == ours, f"greedy generate: transformers {theirs[:8]}... == baton {ours[:8]}...")


def cmd_badshape(model_dir, out):
    import shutil
    from safetensors.numpy import load_file, save_file
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(model_dir, "config.json"), out)
    t = load_file(os.path.join(model_dir, "model.safetensors"))
    w = t["transformer.wpe.weight"]
    t["transformer.wpe.weight"] = np.ascontiguousarray(w[: w.shape[0] // 2])
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "model":
        scale = 1.0
        if "--scale" in args:
            i = args.index("--scale")
            scale = float(args[i + 1])
            del args[i:i + 2]
        cmd_model(args[0], *map(int, args[1:6]), scale=scale)
    elif cmd == "data":
        cmd_data(args[0], *map(int, args[1:4]))
    elif cmd == "loss":
        cmd_loss(*args)
    elif cmd == "same":
        cmd_same(*args)
    elif cmd == "logits":
        cmd_logits(*args)
    elif cmd == "badshape":
        cmd_badshape(*args)
    else:
        sys.exit(f"unknown command {cmd}")
    if ce.failures:
        print(f"{len(ce.failures)} failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
