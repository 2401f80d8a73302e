#!/usr/bin/env python3
"""test_data_bpe_e2e.py: a BPE tokenizer from prepare to infer.

A tokenizer trained locally with the `tokenizers` package -> `baton
prepare text --tokenizer` -> a few training steps -> `baton export`, whose
directory must carry the tokenizer so that transformers' AutoTokenizer
loads it and encodes as the package does; `baton infer --prompt` encodes
with it (the logits have one row per BPE token), and its greedy tokens and
their decoded text are transformers' own. Without the tokenizer files,
infer refuses --prompt for this (non-256) vocabulary; --checkpoint finds
the tokenizer in the run's data file.

usage: test_data_bpe_e2e.py BATON SRC_DIR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_data_bpe import SPECIAL, generate  # noqa: E402

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def run(cmd, ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if ok and r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n"
                 f"{r.stderr}")
    return r


def main():
    baton, src, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    from tokenizers import ByteLevelBPETokenizer, Tokenizer
    text = generate(3, 300_000)
    text_path = os.path.join(work, "text.txt")
    open(text_path, "w", encoding="utf-8").write(text)
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(text.splitlines(keepends=True), vocab_size=1000,
                            min_frequency=2, special_tokens=[SPECIAL],
                            show_progress=False)
    tdir = os.path.join(work, "tok")
    os.makedirs(tdir)
    tj = os.path.join(tdir, "tokenizer.json")
    tok.save(tj)
    ref = Tokenizer.from_file(tj)
    V = ref.get_vocab_size()

    h5 = os.path.join(work, "data.h5")
    run([baton, "prepare", "text", "-o", h5, "--tokenizer", tj, "--chunk",
         "4096", text_path])
    rd = os.path.join(work, "run")
    run([baton, "train", os.path.join(src, "configs", "tiny.ini"),
         "--run-dir", rd, "--set", f"data.path={h5}",
         "--set", f"model.vocab_size={V}", "--set", "train.steps=60",
         "--set", "checkpoint.every=60", "--set", "data.val_every=0"])
    exp = os.path.join(work, "export")
    run([baton, "export", rd, "--format", "safetensors", "-o", exp])
    check(os.path.exists(os.path.join(exp, "tokenizer.json")) and
          open(os.path.join(exp, "tokenizer.json"), "rb").read() ==
          open(tj, "rb").read(), "the export carries tokenizer.json")
    cfg = json.load(open(os.path.join(exp, "config.json")))
    check(cfg["eos_token_id"] == ref.token_to_id(SPECIAL),
          f"config.json eos_token_id is {SPECIAL}'s id")

    import numpy as np
    import torch
    import transformers
    prompt = "Hello wörld, it's 2024!\n\tдобрый день 👍 "
    at = transformers.AutoTokenizer.from_pretrained(exp)
    ids = ref.encode(prompt).ids
    check(at(prompt)["input_ids"] == ids,
          "AutoTokenizer.from_pretrained(export) encodes as the package")

    lg = os.path.join(work, "logits.bin")
    run([baton, "infer", exp, "--prompt", prompt, "--max-new-tokens", "0",
         "--logits-out", lg])
    rows = os.path.getsize(lg) // (4 * V)
    check(rows == len(ids), f"infer --prompt encodes with the tokenizer "
          f"({rows} logit rows, {len(ids)} BPE tokens)")

    r = run([baton, "infer", exp, "--prompt", prompt, "--max-new-tokens",
             "12", "--ids"])
    got = [int(t) for t in r.stdout.split()]
    model = transformers.GPT2LMHeadModel.from_pretrained(exp)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12,
                             do_sample=False, pad_token_id=0,
                             eos_token_id=None)
    want = out[0, len(ids):].tolist()
    check(got == want, f"infer greedy ids {got} == transformers' {want}")
    # Decoding: sampled (varied) tokens, printed as ids and as text.
    samp = ["--max-new-tokens", "40", "--temperature", "1", "--seed", "3"]
    r = run([baton, "infer", exp, "--prompt", prompt, "--ids"] + samp)
    sampled = [int(t) for t in r.stdout.split()]
    r = subprocess.run([baton, "infer", exp, "--prompt", prompt] + samp,
                       capture_output=True)
    # The token bytes (transformers' decode would replace a UTF-8
    # character cut by the window with U+FFFD; baton prints the bytes),
    # escaped as docs/export.md says: printable ASCII, \n, \t and valid
    # UTF-8 as they are, every other byte as \xNN.
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    b2u = {u: b for b, u in bytes_to_unicode().items()}
    toks = at.convert_ids_to_tokens(sampled)
    data = bytes(b2u[c] for t in toks for c in t)
    check(at.decode(sampled) == data.decode("utf-8", errors="replace"),
          "the token bytes are transformers' decoded text")

    def escaped(b):
        out, i = bytearray(), 0
        while i < len(b):
            c = b[i]
            if c in (9, 10) or 0x20 <= c < 0x7F:
                out.append(c); i += 1; continue
            for n in (2, 3, 4):  # the shortest valid sequence starting here
                try:
                    b[i:i + n].decode("utf-8")
                    if c >= 0xC2 and len(b[i:i + n]) == n:
                        out += b[i:i + n]; i += n; break
                except UnicodeDecodeError:
                    pass
            else:
                out += b"\\x%02x" % c; i += 1
        return bytes(out)
    raw = escaped(data)
    check(len(set(sampled)) > 5 and r.returncode == 0 and
          r.stdout == raw + b"\n",
          f"infer prints the text transformers decodes ({raw[:40]!r})")

    bare = os.path.join(work, "export_no_tokenizer")
    shutil.copytree(exp, bare)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(os.path.join(bare, f))
    r = run([baton, "infer", bare, "--prompt", prompt], ok=False)
    check(r.returncode != 0 and f"has {V} tokens, not 256" in r.stderr and
          "tokenizer" in r.stderr,
          f"infer refuses a byte prompt for a {V}-token model: "
          f"{r.stderr.strip()[:160]}")
    r = run([baton, "infer", bare, "--prompt-ids", ",".join(map(str, ids)),
             "--max-new-tokens", "3", "--ids"], ok=False)
    check(r.returncode == 0, "--prompt-ids still works without a tokenizer")

    lg2 = os.path.join(work, "logits_ckpt.bin")
    run([baton, "infer", rd, "--checkpoint", "--prompt", prompt,
         "--max-new-tokens", "0", "--logits-out", lg2])
    check(np.array_equal(np.fromfile(lg, "<f4"), np.fromfile(lg2, "<f4")),
          "infer --checkpoint takes the tokenizer from the data file")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
