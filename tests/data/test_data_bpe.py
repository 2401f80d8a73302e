#!/usr/bin/env python3
"""test_data_bpe.py: the C byte-level BPE tokenizer (data/tokenizer.c)
against the Hugging Face `tokenizers` package, id for id.

Trains a ByteLevelBPETokenizer locally (nothing is downloaded) on seeded,
generated text, saves it as tokenizer.json and as GPT-2's vocab.json +
merges.txt (save_model), and a copy of tokenizer.json with the merges in
the list-of-pairs form newer versions of the package write. Then, on
several megabytes of other generated text (letters of several scripts,
combining marks, emoji, whitespace runs with tabs, newlines and trailing
spaces, numbers, punctuation, code, contractions in both cases, special
tokens), the C tokenizer (tok_tool, each form) must give the package's ids
exactly; tok_tool itself fails unless decode(encode(text)) == text and a
streamed encode (as `prepare text` does) equals the one-call encode.

Then `baton prepare text --tokenizer` (through PREPARE, the test driver
of bt_prepare_main) on the same text, in two files, must store the same
ids (uint16; uint32 for a vocabulary past 65536 ids), vocab_size and a
byte-exact copy of tokenizer.json.

usage: test_data_bpe.py TOK_TOOL PREPARE WORKDIR [MEGABYTES]
"""
import json
import os
import random
import subprocess
import sys
import time

from tokenizers import ByteLevelBPETokenizer, Tokenizer

SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyz",
    "accents": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœłńśźżğış",
    "greek": "αβγδεζηθικλμνξοπρστυφχψω",
    "cyrillic": "абвгдежзийклмнопрстуфхцчшщъыьэюяё",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "devanagari": "कखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह",
    "thai": "กขคฆงจฉชซญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ",
    "hangul": "가나다라마바사아자차카타파하강남동린민빈신인진한",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "kana": "あいうえおかきくけこさしすせそアイウエオカキクケコ",
}
# Combining marks (Mn/Mc: neither letter nor number for \p{L}/\p{N}).
MARKS = ["\u0301", "\u0308", "\u0327", "\u093f", "\u094d", "\u0e31", "\u05b7"]
EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀", "🤖", "✨", "🍕"]
NUMBERS = ["0", "7", "42", "1999", "3.14159", "1,000,000", "²", "½", "Ⅻ",
           "٣٤٥", "१२३", "①", "10⁹", "0x1F", "-17", "+3e-8"]
PUNCT = list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "—", "–", "«",
          "»", "“", "”", "¿", "¡", "§", "©", "→", "•", "‽"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n",
          "  \n", "\n   ", "\u00a0", "\u3000", "\u2009", "\u0085", "\x0b",
          "\x0c", " \t ", "\n\n\n\n", "        ", "\x1c", " \x1f ",
          "\u2028", "\u200b"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T",
                "'RE", "'VE", "'M", "'LL", "'D", "'x", "'", "''"]
CODE = [
    "int main(int argc, char **argv) {\n    return 0;\n}\n",
    "def f(x):\n    if x > 0:\n        return x * 2  # double\n    return -x\n",
    "for (size_t i = 0; i < n; i++) a[i] += b[i];\n",
    "    self.assertEqual(tok.encode('hi'), [1, 2])\n",
    "<div class=\"x\">&nbsp;</div>\n",
    "SELECT id, name FROM users WHERE age >= 18;\n",
    "https://example.com/path?q=a+b&r=%20\n",
    "x = {'a': 1, \"b\": [2, 3]}\t# trailing   \n",
]
SPECIAL = "<|endoftext|>"


def word(rng, script):
    chars = SCRIPTS[script]
    w = "".join(rng.choice(chars) for _ in range(rng.randint(1, 9)))
    r = rng.random()
    if script in ("latin", "accents", "greek", "cyrillic"):
        if r < 0.15:
            w = w.capitalize()
        elif r < 0.2:
            w = w.upper()
    if rng.random() < 0.05:
        w = w[: rng.randint(0, len(w))] + rng.choice(MARKS) + w[len(w) // 2:]
    return w


def generate(seed, nbytes):
    """Seeded text of about nbytes UTF-8 bytes."""
    rng = random.Random(seed)
    scripts = list(SCRIPTS)
    weights = [40, 8, 4, 6, 3, 3, 3, 3, 3, 4, 3]
    out, size = [], 0
    while size < nbytes:
        r = rng.random()
        if r < 0.03:
            s = rng.choice(CODE)
        elif r < 0.04:
            s = SPECIAL
        else:
            script = rng.choices(scripts, weights)[0]
            parts = []
            for _ in range(rng.randint(3, 20)):
                x = rng.random()
                if x < 0.70:
                    parts.append(word(rng, script))
                elif x < 0.78:
                    parts.append(rng.choice(NUMBERS))
                elif x < 0.86:
                    parts.append(rng.choice(PUNCT))
                elif x < 0.90:
                    parts.append(rng.choice(EMOJI))
                elif x < 0.95:
                    parts[-1:] = [(parts[-1] if parts else "it") +
                                  rng.choice(CONTRACTIONS)]
                else:
                    parts.append(rng.choice(SPACES))
                parts.append(" " if rng.random() < 0.85 else rng.choice(SPACES))
            s = "".join(parts) + rng.choice([".", "!", "?", ":", ""]) + \
                rng.choice(["\n", " ", "\n\n", "  \n", "\t\n", ""])
        out.append(s)
        size += len(s.encode())
    return "".join(out)


def check_prepare(prepare, work, tj, text, want, vocab):
    """prepare text --tokenizer over the text cut into two files (at a
    byte that is not a piece boundary: the stream must not care)."""
    import h5py
    import numpy as np
    raw = text.encode()
    cut = len(raw) // 2
    while (raw[cut] & 0xc0) == 0x80:
        cut += 1
    files = [os.path.join(work, "part1.txt"), os.path.join(work, "part2.txt")]
    open(files[0], "wb").write(raw[:cut])
    open(files[1], "wb").write(raw[cut:])
    out = os.path.join(work, "bpe.h5")
    r = subprocess.run([prepare, "text", "-o", out, "--val-fraction", "0",
                        "--chunk", "100000", "--tokenizer", tj] + files,
                       capture_output=True, text=True)
    print(r.stdout.strip())
    if r.returncode != 0:
        print(f"FAIL prepare --tokenizer exited {r.returncode}: {r.stderr}")
        return 1
    bad = []
    with h5py.File(out, "r") as f:
        tokens = f["train/tokens"]
        if tokens.dtype != np.uint16:
            bad.append(f"dtype {tokens.dtype}, not uint16")
        if not np.array_equal(tokens[:], np.array(want, dtype=np.uint16)):
            bad.append("train tokens differ from the package's ids")
        if f["val/tokens"].shape[0] != 0:
            bad.append("val not empty with --val-fraction 0")
        if int(f.attrs["vocab_size"]) != vocab:
            bad.append(f"vocab_size {f.attrs['vocab_size']} != {vocab}")
        name = f.attrs["tokenizer"]
        if (name.decode() if isinstance(name, bytes) else name) != "bpe":
            bad.append(f"tokenizer attribute {name}")
        if bytes(f["tokenizer/tokenizer.json"][:]) != open(tj, "rb").read():
            bad.append("/tokenizer/tokenizer.json is not a copy of the file")
    # A vocabulary past 65536 ids (an added token at id 70000) is stored
    # as uint32; the text holds no such token, so the ids are the same.
    d = json.load(open(tj, encoding="utf-8"))
    d["added_tokens"].append({"id": 70000, "content": "<|big|>",
                              "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False,
                              "special": True})
    big = os.path.join(work, "big.json")
    json.dump(d, open(big, "w", encoding="utf-8"), ensure_ascii=False)
    out32 = os.path.join(work, "bpe32.h5")
    r = subprocess.run([prepare, "text", "-o", out32, "--val-fraction", "0",
                        "--tokenizer", big] + files, capture_output=True,
                       text=True)
    if r.returncode != 0:
        bad.append(f"vocab 70001: exited {r.returncode}: {r.stderr}")
    else:
        with h5py.File(out32, "r") as f:
            t = f["train/tokens"]
            if t.dtype != np.uint32 or int(f.attrs["vocab_size"]) != 70001:
                bad.append(f"vocab 70001: dtype {t.dtype}, vocab_size "
                           f"{f.attrs['vocab_size']}")
            elif not np.array_equal(t[:], np.array(want, dtype=np.uint32)):
                bad.append("vocab 70001: uint32 tokens differ")
    for b in bad:
        print(f"FAIL prepare --tokenizer: {b}")
    if not bad:
        print("ok   prepare --tokenizer: same ids, uint16 (uint32 past "
              "65536 ids), vocab_size, tokenizer copied")
    return 1 if bad else 0


def main():
    tool, prepare, work = sys.argv[1], sys.argv[2], sys.argv[3]
    mb = float(sys.argv[4]) if len(sys.argv) > 4 else 4.0
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    train_text = generate(1, 1_500_000)
    test_text = generate(2, int(mb * 1e6))
    # Edge cases the generator may not hit, first and last.
    test_text = ("'s  x\t\t\ny   \n" + test_text +
                 " trailing spaces   \n\n\t  " + SPECIAL + "   ")
    tok = ByteLevelBPETokenizer()
    lines = train_text.splitlines(keepends=True)
    tok.train_from_iterator(lines, vocab_size=4000, min_frequency=2,
                            special_tokens=[SPECIAL], show_progress=False)
    tj = os.path.join(work, "tokenizer.json")
    tok.save(tj)
    gdir = os.path.join(work, "gpt2_files")
    os.makedirs(gdir, exist_ok=True)
    tok.save_model(gdir)  # vocab.json + merges.txt
    d = json.load(open(tj, encoding="utf-8"))
    d["model"]["merges"] = [m.split(" ") for m in d["model"]["merges"]]
    pairs = os.path.join(work, "tokenizer_pairs.json")
    json.dump(d, open(pairs, "w", encoding="utf-8"), ensure_ascii=False)
    t1 = time.time()

    text_path = os.path.join(work, "text.txt")
    with open(text_path, "wb") as f:
        f.write(test_text.encode())
    ref = Tokenizer.from_file(tj)
    t2 = time.time()
    # The package cuts added tokens out before anything else, so the text
    # between two <|endoftext|> is encoded on its own: encoding the parts
    # (in parallel) and joining them with its id is encode(test_text),
    # without the package's slow single call on megabytes.
    eot = ref.token_to_id(SPECIAL)
    want = []
    parts = test_text.split(SPECIAL)
    for i, enc in enumerate(ref.encode_batch(parts)):
        want += enc.ids + ([eot] if i + 1 < len(parts) else [])
    t3 = time.time()
    assert ref.decode(want, skip_special_tokens=False) == test_text
    # ... as checked here on a prefix that ends with <|endoftext|>.
    k = test_text.find(SPECIAL, 200_000) + len(SPECIAL)
    whole = ref.encode(test_text[:k]).ids
    assert whole == want[:len(whole)], "parts do not encode as the whole"
    print(f"generated + trained in {t1 - t0:.1f} s; package encoded "
          f"{len(parts)} documents, "
          f"{len(test_text.encode()) / 1e6:.1f} MB -> {len(want)} tokens in "
          f"{t3 - t2:.1f} s (vocab {ref.get_vocab_size()})")
    assert ref.get_vocab_size() > 3000, "the tokenizer should have trained"

    failed = 0
    for name, path in [("tokenizer.json", tj),
                       ("vocab.json + merges.txt",
                        os.path.join(gdir, "vocab.json")),
                       ("tokenizer.json, merges as pairs", pairs),
                       ("directory", gdir)]:
        out = os.path.join(work, "ids.u32")
        r = subprocess.run([tool, "encode", path, text_path, out],
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            print(f"FAIL {name}: tok_tool exited {r.returncode}")
            failed += 1
            continue
        raw = open(out, "rb").read()
        got = [int.from_bytes(raw[i:i + 4], "little")
               for i in range(0, len(raw), 4)]
        if got != want:
            i = next((k for k in range(min(len(got), len(want)))
                      if got[k] != want[k]), min(len(got), len(want)))
            lo = max(0, i - 3)
            print(f"FAIL {name}: {len(got)} ids, package {len(want)}; first "
                  f"difference at {i}: ours {got[lo:i + 4]} package "
                  f"{want[lo:i + 4]}; package tokens "
                  f"{[ref.id_to_token(t) for t in want[lo:i + 4]]}, ours "
                  f"{[ref.id_to_token(t) for t in got[lo:i + 4]]}")
            failed += 1
        else:
            print(f"ok   {name}: {len(got)} ids identical")
    failed += check_prepare(prepare, work, tj, test_text, want,
                            ref.get_vocab_size())
    print(f"total {time.time() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
