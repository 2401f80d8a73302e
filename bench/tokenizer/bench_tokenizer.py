#!/usr/bin/env python3
"""bench/tokenizer/bench_tokenizer.py: encode throughput of baton's C
byte-level BPE (data/tokenizer.c) against the Hugging Face `tokenizers`
package, on the same text with the same tokenizer, side by side.

Two corpora of MB megabytes each: "generated" (the reference test's seeded
multilingual text: many rare pieces, few cache hits) and "docs+src"
(baton's own docs/*.md and C sources repeated: English and code). For each
a byte-level BPE of VOCAB tokens is trained locally on the corpus itself.

Columns (medians of RUNS runs, MB/s of UTF-8 input):
  baton 1T      tok_tool bench: one bt_tok_encode call per line, one
                thread, a fresh tokenizer (cold piece cache) per run
  pkg 1T        Tokenizer.encode_batch(lines) with RAYON_NUM_THREADS=1
  pkg batch     Tokenizer.encode_batch(lines) with every core (rayon)
The package is run in a child process per thread count so that the rayon
pool size is fixed before the package loads. Also checks that both give
the same ids (the benchmark is void otherwise). Prints a table and one JSON
line; the load average is printed as it was at the start and at the end.

usage: bench_tokenizer.py TOK_TOOL SRC_DIR [--mb 8] [--vocab 8000] [--runs 5]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "data"))

PKG_CHILD = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8", newline="").read()
lines = [l + "\n" for l in text.split("\n")]  # at "\n" only, as tok_tool
lines[-1] = lines[-1][:-1]
lines = [l for l in lines if l]
nbytes = sum(len(l.encode()) for l in lines)
res = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    out = tok.encode_batch(lines)
    res.append(nbytes / 1e6 / (time.perf_counter() - t0))
ids = [i for e in out for i in e.ids]
open(sys.argv[4], "wb").write(b"".join(i.to_bytes(4, "little") for i in ids))
print(json.dumps(res))
"""


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def corpus_docs_src(src, nbytes):
    files = sorted(glob.glob(os.path.join(src, "docs", "*.md")) +
                   glob.glob(os.path.join(src, "*", "*.c")) +
                   glob.glob(os.path.join(src, "*", "*.h")))
    one = "".join(open(f, encoding="utf-8", errors="replace").read()
                  for f in files)
    return (one * (nbytes // max(1, len(one.encode())) + 1))[:nbytes]


def pkg_runs(tj, text_path, runs, threads, ids_out):
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    else:
        env.pop("RAYON_NUM_THREADS", None)
    env["TOKENIZERS_PARALLELISM"] = "true"
    r = subprocess.run([sys.executable, "-c", PKG_CHILD, tj, text_path,
                        str(runs), ids_out], env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tok_tool")
    ap.add_argument("src")
    ap.add_argument("--mb", type=float, default=8)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    from tokenizers import ByteLevelBPETokenizer, __version__
    from test_data_bpe import SPECIAL, generate
    load0 = loadavg()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        nbytes = int(a.mb * 1e6)
        for name, text in [("generated", generate(2, nbytes)),
                           ("docs+src", corpus_docs_src(a.src, nbytes))]:
            tp = os.path.join(work, name + ".txt")
            open(tp, "w", encoding="utf-8", newline="").write(text)
            tok = ByteLevelBPETokenizer()
            tok.train_from_iterator(text.splitlines(keepends=True)[:200000],
                                    vocab_size=a.vocab, min_frequency=2,
                                    special_tokens=[SPECIAL],
                                    show_progress=False)
            tj = os.path.join(work, name + ".json")
            tok.save(tj)
            ids_ours = os.path.join(work, "ours.u32")
            r = subprocess.run([a.tok_tool, "bench", tj, tp, str(a.runs),
                                ids_ours],
                               capture_output=True, text=True, check=True)
            ours = json.loads(r.stdout)
            ids_pkg = os.path.join(work, "pkg.u32")
            one = pkg_runs(tj, tp, a.runs, 1, ids_pkg)
            same = open(ids_ours, "rb").read() == open(ids_pkg, "rb").read()
            allc = pkg_runs(tj, tp, a.runs, 0, ids_pkg)
            rows.append({
                "corpus": name, "mb": len(text.encode()) / 1e6,
                "vocab": tok.get_vocab_size(), "tokens": ours["tokens"],
                "baton_1t": statistics.median(ours["mb_s"]),
                "pkg_1t": statistics.median(one),
                "pkg_batch": statistics.median(allc),
                "same_ids": same})
    load1 = loadavg()
    print(f"# tokenizers {__version__}; {os.cpu_count()} cores; load average "
          f"{' '.join(load0)} at start, {' '.join(load1)} at end; medians "
          f"of {a.runs} runs, MB/s of UTF-8 input")
    print(f"{'corpus':<10} {'MB':>5} {'vocab':>6} {'tokens':>9} "
          f"{'baton 1T':>9} {'pkg 1T':>7} {'ratio':>6} {'pkg batch':>10} "
          f"{'same ids':>9}")
    for r in rows:
        print(f"{r['corpus']:<10} {r['mb']:>5.1f} {r['vocab']:>6} "
              f"{r['tokens']:>9} {r['baton_1t']:>9.1f} {r['pkg_1t']:>7.1f} "
              f"{r['baton_1t'] / r['pkg_1t']:>5.1f}x {r['pkg_batch']:>10.1f} "
              f"{'yes' if r['same_ids'] else 'NO':>9}")
    print(json.dumps({"loadavg_start": load0, "loadavg_end": load1,
                      "rows": rows}))
    return 0 if all(r["same_ids"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
