#!/usr/bin/env python3
"""finetune.py: the Python steps of docs/guide.md, "Fine-tune a pretrained
model". Nothing is downloaded: the tokenizer is trained here and the
"pretrained" GPT-2 is made here, both with the packages users already have
(tokenizers, transformers, torch).

    finetune.py tokenizer OUT.json FILE...   train a byte-level BPE tokenizer
    finetune.py model OUT_DIR TOKENIZER      a small GPT-2, save_pretrained
    finetune.py compare EXPORT PROMPT N      transformers' greedy tokens ==
                                             `baton infer`'s (exit 1 if not)
"""
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cmd_tokenizer(out, *files):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train(list(files), trainer)
    tok.save(out)
    print(f"{out}: {tok.get_vocab_size()} tokens")


def cmd_model(out, tokenizer):
    import torch
    import transformers
    from tokenizers import Tokenizer
    vocab = Tokenizer.from_file(tokenizer).get_vocab_size()
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64,
                                  n_positions=64, vocab_size=vocab)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(out, safe_serialization=True)
    print(f"{out}: GPT-2, 2 layers, width 64, context 64, vocabulary {vocab}")


def cmd_compare(export, prompt, n):
    import torch
    import transformers
    n = int(n)
    tok = transformers.AutoTokenizer.from_pretrained(export)
    model = transformers.GPT2LMHeadModel.from_pretrained(export).eval()
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             pad_token_id=0)
    theirs = out[0, len(ids):].tolist()
    r = subprocess.run(["baton", "infer", export, "--prompt", prompt,
                        "--max-new-tokens", str(n), "--ids"],
                       check=True, capture_output=True, text=True)
    ours = [int(x) for x in r.stdout.split()]
    print("transformers:", theirs)
    print("baton infer: ", ours)
    if ours != theirs:
        sys.exit("the greedy tokens differ")
    print(f"same {n} greedy tokens: {tok.decode(ours)!r}")


if __name__ == "__main__":
    {"tokenizer": cmd_tokenizer, "model": cmd_model,
     "compare": cmd_compare}[sys.argv[1]](*sys.argv[2:])
