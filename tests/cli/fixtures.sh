#!/usr/bin/env bash
# fixtures.sh: the valid inputs the bad-input rows start from, made once in
# the current directory ($F) by bad_inputs.py: a config, a text dataset, a
# trained run with one checkpoint, its export, and the damaged datasets
# (written with h5py, as a user would).
set -euo pipefail
: "${BATON:?}" "${PY:?}" "${HERE:?}"
cp "$HERE/../train/micro.ini" micro.ini
"$PY" - <<'PY'
import numpy as np, h5py
rng = np.random.default_rng(1)
open("text.txt", "w").write("".join("%d+%d=%d\n" % (a, b, a + b)
    for a, b in rng.integers(0, 1000, (3000, 2))))
tok = rng.integers(0, 256, 4096).astype(np.int32)
def mk(name, **d):
    with h5py.File(name, "w") as f:
        for k, v in d.items():
            f[k.replace("__", "/")] = v
mk("good_tok.h5", train__tokens=tok, val__tokens=tok[:1024])
mk("nolayout.h5", train__ids=tok)
mk("float_tok.h5", train__tokens=tok.astype(np.float32), val__tokens=tok[:64].astype(np.float32))
mk("tok2d.h5", train__tokens=tok.reshape(64, 64), val__tokens=tok[:64])
mk("empty_train.h5", train__tokens=np.zeros(0, np.int32), val__tokens=tok[:64])
bad = tok.copy(); bad[1234] = 300
mk("oob_tok.h5", train__tokens=bad, val__tokens=tok[:1024])
neg = tok.copy(); neg[77] = -5
mk("neg_tok.h5", train__tokens=neg, val__tokens=tok[:1024])
mk("few_tok.h5", train__tokens=tok[:40], val__tokens=tok[:40])
x = rng.standard_normal((256, 8)).astype(np.float32); y = rng.integers(0, 4, 256).astype(np.int64)
mk("good_mlp.h5", train__x=x, train__y=y, val__x=x[:32], val__y=y[:32])
xn = x.copy(); xn[10, 3] = np.nan
mk("nan_x.h5", train__x=xn, train__y=y, val__x=x[:32], val__y=y[:32])
mk("short_y.h5", train__x=x, train__y=y[:255], val__x=x[:32], val__y=y[:32])
yb = y.copy(); yb[17] = 9
f = h5py.File("label_oob.h5", "w"); f["train/x"] = x; f["train/y"] = yb
f["val/x"] = x[:32]; f["val/y"] = y[:32]; f.attrs["num_classes"] = 4; f.close()
np.save("x.npy", x); np.save("y.npy", y)
x16 = rng.standard_normal((4, 16)).astype(np.float32); x16[2, 5] = np.nan
np.save("x16_nan.npy", x16)
open("notnpy.npy", "wb").write(b"not a numpy file\n")
with open("data.csv", "w") as f:
    f.write("a,b,c,label\n")
    for i in range(64): f.write("%d,%d,%d,%d\n" % (i, i * 2, i % 3, i % 4))
open("ragged.csv", "w").write("a,b,label\n1,2,0\n3,4\n5,6,1\n")
open("notnum.csv", "w").write("a,b,label\n1,2,0\n3,x,1\n")
PY
head -c 5000 good_tok.h5 >trunc.h5
printf 'this is not an HDF5 file\n' >nothdf5.h5
: >empty.h5
cat >mlp.ini <<'INI'
[model]
type = mlp
mlp_hidden = 8
[data]
path = synthetic:clusters
[train]
steps = 2
batch_size = 16
threads = 1
[checkpoint]
async = false
[log]
tensorboard = false
INI
"$BATON" train micro.ini --run-dir run --set train.steps=2 --quiet >train.log 2>&1 ||
  { cat train.log; exit 1; }
"$BATON" export run --format safetensors -o exp >export.log 2>&1 || { cat export.log; exit 1; }
"$BATON" train mlp.ini --run-dir mlprun --quiet >mlp.log 2>&1 || { cat mlp.log; exit 1; }
"$BATON" export mlprun --format safetensors -o mlpexp >>export.log 2>&1 || { cat export.log; exit 1; }
rm -f train.log mlp.log export.log
