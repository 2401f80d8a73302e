#!/usr/bin/python3
"""make_fixture.py: write baton HDF5 datasets with h5py (docs/data.md layout).

Reusable by any test:
  make_fixture.py OUT.h5 --kind tokens  [--dtype int8..uint64] [--tokens N]
                  [--val-tokens N] [--vocab V] [--chunk C] [--gzip L]
                  [--shuffle] [--seed S] [--text FILE]
  make_fixture.py OUT.h5 --kind classes [--rows N] [--val-rows N]
                  [--dim D | --dim 4x3] [--classes K] [--chunk C] [--gzip L]
  make_fixture.py --all DIR      the suite used by tests/data (good + bad,
                                 and user_*.h5: files without baton's
                                 attributes, every integer token type)

Every file also gets its expected contents as raw little-endian arrays
beside it, OUT.h5.<split>.<name>.bin (tokens as uint32, x float32,
y int32), so a C test can compare without parsing .npy.
--bad CASE writes a deliberately broken file (see BAD below).
"""
import argparse
import os
import sys

import h5py
import numpy as np

BAD = ["float-tokens", "2d-tokens", "big-token", "empty", "missing-dataset",
       "big-label", "xy-mismatch", "no-version", "truncated", "garbage",
       "small", "corrupt-chunk"]


def dump(path, split, name, arr, dtype):
    np.ascontiguousarray(arr, dtype=dtype).tofile(f"{path}.{split}.{name}.bin")


def write_tokens(path, a):
    rng = np.random.default_rng(a.seed)
    dt = np.dtype(a.dtype)
    with h5py.File(path, "w") as f:
        f.attrs["baton_format_version"] = np.int32(1)
        f.attrs["vocab_size"] = np.int32(a.vocab)
        f.attrs["tokenizer"] = "bytes" if a.vocab == 256 else "random"
        for split, n in (("train", a.tokens), ("val", a.val_tokens)):
            if a.text:
                data = np.frombuffer(open(a.text, "rb").read(), np.uint8)
                data = data[: n] if split == "train" else data[-n:]
            else:
                data = rng.integers(0, a.vocab, size=n)
            data = data.astype(dt)
            kw = {}
            if a.chunk:
                kw["chunks"] = (min(a.chunk, max(1, n)),)
            if a.gzip is not None:
                kw["compression"] = "gzip"
                kw["compression_opts"] = a.gzip
            if a.shuffle:
                kw["shuffle"] = True
            f.create_dataset(f"{split}/tokens", data=data, **kw)
            dump(path, split, "tokens", data, "<u4")


def write_classes(path, a):
    rng = np.random.default_rng(a.seed)
    dims = [int(d) for d in str(a.dim).split("x")]
    with h5py.File(path, "w") as f:
        f.attrs["baton_format_version"] = np.int32(1)
        f.attrs["num_classes"] = np.int32(a.classes)
        for split, n in (("train", a.rows), ("val", a.val_rows)):
            x = rng.normal(size=[n] + dims).astype(np.float32)
            y = rng.integers(0, a.classes, size=n).astype(np.int32)
            kw = {}
            if a.chunk:
                kw["chunks"] = tuple([min(a.chunk, max(1, n))] + dims)
            if a.gzip is not None:
                kw["compression"] = "gzip"
                kw["compression_opts"] = a.gzip
            f.create_dataset(f"{split}/x", data=x, **kw)
            f.create_dataset(f"{split}/y", data=y)
            dump(path, split, "x", x, "<f4")
            dump(path, split, "y", y, "<i4")


def write_bad(path, case, seed=1):
    rng = np.random.default_rng(seed)
    if case == "corrupt-chunk":  # valid metadata, garbage inside a chunk
        with h5py.File(path, "w") as f:
            f.attrs["baton_format_version"] = np.int32(1)
            f.attrs["vocab_size"] = np.int32(256)
            tok = rng.integers(0, 256, size=200000).astype(np.uint16)
            d = f.create_dataset("train/tokens", data=tok, chunks=(10000,),
                                 compression="gzip")
            off = d.id.get_chunk_info(10).byte_offset
        with open(path, "r+b") as fh:
            fh.seek(off + 16)
            fh.write(bytes(range(256)) * 4)
        return
    if case in ("truncated", "garbage"):
        ns = argparse.Namespace(seed=seed, dtype="uint16", tokens=400000,
                                val_tokens=1000, vocab=256, chunk=4096,
                                gzip=None, shuffle=False, text=None)
        write_tokens(path, ns)
        if case == "truncated":
            size = os.path.getsize(path)
            with open(path, "r+b") as fh:
                fh.truncate(size // 2)
        else:
            with open(path, "r+b") as fh:  # smash the superblock
                fh.seek(0)
                fh.write(b"not an hdf5 file at all" * 4)
        return
    with h5py.File(path, "w") as f:
        if case != "no-version":
            f.attrs["baton_format_version"] = np.int32(1)
        f.attrs["vocab_size"] = np.int32(256)
        f.attrs["num_classes"] = np.int32(4)
        tok = rng.integers(0, 256, size=50000).astype(np.uint16)
        if case == "float-tokens":
            f["train/tokens"] = tok.astype(np.float32)
        elif case == "2d-tokens":
            f["train/tokens"] = tok.reshape(500, 100)
        elif case == "big-token":
            tok[12345] = 300
            f.create_dataset("train/tokens", data=tok, chunks=(1000,),
                             compression="gzip")
        elif case == "empty":
            f.create_dataset("train/tokens", shape=(0,), dtype=np.uint16)
        elif case == "small":
            f["train/tokens"] = tok[:100]
        elif case == "missing-dataset":
            f["train/other"] = tok
        elif case == "no-version":
            f["train/tokens"] = tok
        elif case == "big-label":
            y = rng.integers(0, 4, size=1000).astype(np.int32)
            y[777] = 9
            f["train/x"] = rng.normal(size=(1000, 8)).astype(np.float32)
            f["train/y"] = y
        elif case == "xy-mismatch":
            f["train/x"] = rng.normal(size=(1000, 8)).astype(np.float32)
            f["train/y"] = rng.integers(0, 4, size=999).astype(np.int32)
        else:
            raise SystemExit(f"unknown bad case {case}")


INT_TYPES = ["int8", "int16", "int32", "int64",
             "uint8", "uint16", "uint32", "uint64"]


def write_user(d):
    """Files as a user's own h5py script writes them: no attribute at all,
    numpy's default dtypes (int64 tokens, float64 features) or any other."""
    rng = np.random.default_rng(11)
    for name in INT_TYPES:  # ids < 120 fit every type; contiguous (pread)
        path = os.path.join(d, f"user_{name}.h5")
        with h5py.File(path, "w") as f:
            for split, n in (("train", 20000), ("val", 3000)):
                t = rng.integers(0, 120, size=n).astype(name)
                f[f"{split}/tokens"] = t
                dump(path, split, "tokens", t, "<u4")
    with h5py.File(os.path.join(d, "user_chunked_int64.h5"), "w") as f:
        t = rng.integers(0, 1000, size=50000)  # int64, numpy's default
        f.create_dataset("train/tokens", data=t, chunks=(1000,),
                         compression="gzip")
        dump(os.path.join(d, "user_chunked_int64.h5"), "train", "tokens", t,
             "<u4")
    # Bad values at known indices (docs/data.md, "Checking a dataset").
    with h5py.File(os.path.join(d, "user_negative.h5"), "w") as f:
        t = rng.integers(0, 100, size=20000).astype(np.int16)
        t[777] = -5
        f["train/tokens"] = t
    with h5py.File(os.path.join(d, "user_u64big.h5"), "w") as f:
        t = rng.integers(0, 256, size=20000).astype(np.uint64)
        t[999] = 1 << 40
        f["train/tokens"] = t
    with h5py.File(os.path.join(d, "user_late_token.h5"), "w") as f:
        t = rng.integers(0, 256, size=60000).astype(np.int32)
        t[45678] = 300  # in the second half: rank 1 of 2 finds it
        f.create_dataset("train/tokens", data=t, chunks=(4096,),
                         compression="gzip")
        f["val/tokens"] = rng.integers(0, 256, size=3000).astype(np.int32)
    with h5py.File(os.path.join(d, "user_val_token.h5"), "w") as f:
        f["train/tokens"] = rng.integers(0, 256, size=20000).astype(np.uint16)
        v = rng.integers(0, 256, size=3000).astype(np.uint16)
        v[2048] = 256
        f["val/tokens"] = v
    path = os.path.join(d, "user_classes.h5")
    with h5py.File(path, "w") as f:  # float64 x, int64 y, no num_classes
        for split, n in (("train", 2000), ("val", 300)):
            x = rng.normal(size=(n, 7))
            y = rng.integers(0, 3, size=n)
            f[f"{split}/x"] = x
            f[f"{split}/y"] = y
            dump(path, split, "x", x, "<f4")
            dump(path, split, "y", y, "<i4")
    path = os.path.join(d, "user_classes_int.h5")
    with h5py.File(path, "w") as f:  # integer features, [N, 1] labels
        x = rng.integers(-50, 50, size=(1000, 5)).astype(np.int16)
        y = rng.integers(0, 4, size=(1000, 1)).astype(np.uint8)
        f["train/x"] = x
        f["train/y"] = y
        dump(path, "train", "x", x, "<f4")
        dump(path, "train", "y", y, "<i4")
    with h5py.File(os.path.join(d, "user_nan.h5"), "w") as f:
        x = rng.normal(size=(1000, 7)).astype(np.float32)
        x[123, 4] = np.nan
        f["train/x"] = x
        f["train/y"] = rng.integers(0, 3, size=1000).astype(np.int32)


def write_all(d):
    os.makedirs(d, exist_ok=True)

    def tok(name, **kw):
        ns = dict(seed=3, dtype="uint16", tokens=100000, val_tokens=5000,
                  vocab=256, chunk=None, gzip=None, shuffle=False, text=None)
        ns.update(kw)
        write_tokens(os.path.join(d, name), argparse.Namespace(**ns))

    tok("tok16_gzip_shuffle.h5", dtype="uint16", chunk=4096, gzip=4,
        shuffle=True)
    tok("tok32_chunked.h5", dtype="uint32", vocab=70000, chunk=1000)
    tok("tok16_contig.h5", dtype="uint16", vocab=50257)
    cl = dict(seed=5, rows=3000, val_rows=500, dim="6", classes=5,
              chunk=256, gzip=1)
    write_classes(os.path.join(d, "classes.h5"), argparse.Namespace(**cl))
    cl.update(dim="2x3", gzip=None, chunk=None)
    write_classes(os.path.join(d, "classes_2d.h5"), argparse.Namespace(**cl))
    for case in BAD:
        write_bad(os.path.join(d, f"bad_{case}.h5"), case)
    write_user(d)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", nargs="?")
    p.add_argument("--all", metavar="DIR")
    p.add_argument("--kind", choices=["tokens", "classes"], default="tokens")
    p.add_argument("--bad", choices=BAD)
    p.add_argument("--dtype", choices=INT_TYPES, default="uint16")
    p.add_argument("--tokens", type=int, default=100000)
    p.add_argument("--val-tokens", type=int, default=10000)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--val-rows", type=int, default=512)
    p.add_argument("--dim", default="16")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--chunk", type=int, default=0)
    p.add_argument("--gzip", type=int, default=None)
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--text", help="tokens: take bytes of FILE, not random")
    a = p.parse_args()
    if a.all:
        write_all(a.all)
    elif not a.out:
        p.error("OUT.h5 or --all DIR is required")
    elif a.bad:
        write_bad(a.out, a.bad, a.seed)
    elif a.kind == "tokens":
        write_tokens(a.out, a)
    else:
        write_classes(a.out, a)


if __name__ == "__main__":
    sys.exit(main())
