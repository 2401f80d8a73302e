#!/usr/bin/env python3
"""emit_seeds.py DIR: writes the seed inputs of fuzz_data.c into DIR.

A small byte-level BPE trained with the `tokenizers` package (as
tests/data/test_data_bpe.py does) saved as tokenizer.json (mode 0), with its
merges as pairs (mode 0), and as vocab.json + NUL + merges.txt (mode 1);
CSV files with and without a header (mode 2); .npy files of several dtypes
and versions (mode 3); plus a few damaged variants of each. The first
byte of each file is the mode. Rerun after a format change and raise
data_fuzz_replay's --min-accepted (tests/data/CMakeLists.txt).
"""
import hashlib, io, json, os, sys, tempfile
import numpy as np
from tokenizers import ByteLevelBPETokenizer

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = []
text = ["the quick brown fox jumps over the lazy dog %d\n" % i for i in range(200)]
tok = ByteLevelBPETokenizer()
tok.train_from_iterator(text, vocab_size=300, min_frequency=2,
                        special_tokens=["<|endoftext|>"], show_progress=False)
with tempfile.TemporaryDirectory() as d:
    tok.save(os.path.join(d, "tokenizer.json"))
    tok.save_model(d)
    tj = open(os.path.join(d, "tokenizer.json"), "rb").read()
    vj = open(os.path.join(d, "vocab.json"), "rb").read()
    mt = open(os.path.join(d, "merges.txt"), "rb").read()
seeds.append(b"\0" + tj)
j = json.loads(tj)
j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
seeds.append(b"\0" + json.dumps(j).encode())
seeds.append(b"\0" + tj[: len(tj) // 2])            # truncated
j2 = json.loads(tj); j2["model"]["merges"].append("zz qq")
seeds.append(b"\0" + json.dumps(j2).encode())       # merge of unknown tokens
seeds.append(b"\1" + vj + b"\0" + mt)
seeds.append(b"\1" + vj + b"\0" + b"#version: 0.2\nx y z\n")
seeds.append(b"\1" + b'{"a": 0}' + b"\0")
seeds.append(b"\2a,b,label\n1,2,0\n3.5,-4e3,1\n")
seeds.append(b"\0021,2,3\n4,5,6\n")
seeds.append(b"\2a,b\n1,2\n3\n")
seeds.append(b"\2a,b\n1,nan\n")
seeds.append(b"\2\"q,1\",2\n3,4\r\n")
for arr in [np.arange(12, dtype=np.float32).reshape(3, 4),
            np.arange(6, dtype=np.float64), np.arange(8, dtype=np.int64).reshape(2, 2, 2),
            np.arange(4, dtype=np.int8), np.array([[1.0, np.nan]], np.float32),
            np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))]:
    b = io.BytesIO(); np.save(b, arr); seeds.append(b"\3" + b.getvalue())
b = io.BytesIO(); np.lib.format.write_array(b, np.zeros((2, 2), np.float32), version=(3, 0))
seeds.append(b"\3" + b.getvalue())
seeds.append(b"\3" + seeds[-1][1:60])                # truncated
seeds.append(b"\3\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}\n")
for s in seeds:
    open(os.path.join(out, hashlib.sha1(s).hexdigest()), "wb").write(s)
print("%d seeds" % len(seeds))
