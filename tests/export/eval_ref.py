#!/usr/bin/env python3
"""eval_ref.py: the independent side of the `baton eval` test (eval.sh).

    eval_ref.py gpt MODEL DATA.h5 SPLIT N    transformers' mean token loss over
                                             the first N windows (0: all)
    eval_ref.py mlpdata OUT.h5               a 4-class feature file (train, val)
    eval_ref.py mlp EXPORT DATA.h5 SPLIT     numpy loss and accuracy of an MLP
                                             export over the whole split

Each prints "loss METRIC" (perplexity for GPT, accuracy for MLP) with 12
significant digits. A missing package is a failure, never a skip.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_export as ce  # noqa: E402

np = ce.need("numpy")
h5py = ce.need("h5py")


def cmd_gpt(model_dir, data, split, n):
    torch = ce.need("torch")
    transformers = ce.need("transformers")
    torch.set_num_threads(1)
    m = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    T = m.config.n_positions
    with h5py.File(data, "r") as f:
        toks = f[f"{split}/tokens"][:].astype(np.int64)
    w = toks[: len(toks) // (T + 1) * (T + 1)].reshape(-1, T + 1)
    if int(n) > 0:
        w = w[: int(n)]
    w = torch.tensor(w)
    with torch.no_grad():
        logits = m(w[:, :T]).logits.double()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1)).item()
    print(f"{loss:.12g} {np.exp(loss):.12g}")


def cmd_mlpdata(out):
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(4, 6)) * 1.5
    with h5py.File(out, "w") as f:
        for split, n in (("train", 512), ("val", 203)):
            y = rng.integers(0, 4, size=n)
            x = centers[y] + rng.normal(size=(n, 6))
            f[f"{split}/x"] = x.astype(np.float32)
            f[f"{split}/y"] = y.astype(np.int64)


def cmd_mlp(export_dir, data, split):
    from safetensors.numpy import load_file
    w = load_file(os.path.join(export_dir, "model.safetensors"))
    with h5py.File(data, "r") as f:
        h = f[f"{split}/x"][:].astype(np.float64)
        y = f[f"{split}/y"][:].astype(np.int64)
    n = len([k for k in w if k.endswith(".weight")])
    for i in range(n):
        h = h @ w[f"layers.{i}.weight"].T.astype(np.float64) + w[f"layers.{i}.bias"]
        if i + 1 < n:
            h = 0.5 * h * (1 + np.tanh(0.7978845608028654 * (h + 0.044715 * h ** 3)))
    z = h - h.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), y].mean()
    acc = (np.argmax(h, axis=1) == y).mean()
    print(f"{loss:.12g} {acc:.12g}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"gpt": cmd_gpt, "mlpdata": cmd_mlpdata, "mlp": cmd_mlp}[cmd](*args)


if __name__ == "__main__":
    main()
