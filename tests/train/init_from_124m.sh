#!/usr/bin/env bash
# Issue 14, item 1, at full size: GPT-2 124M (GPT2Config() defaults: 12
# layers, width 768, 12 heads, vocab 50257 padded to 50304, context 1024)
# with random weights, saved by transformers as ~500 MB of safetensors in
# a scratch directory under /tmp (deleted on exit), starts a baton run: the
# step-1 loss on one 1024-token window equals transformers' within 1e-5
# and the exported parameters equal the source bit for bit. One rank: the
# run needs ~5.5 GB of memory and ~30 s on one CPU thread.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
"$PY" - <<'PY'
import torch, transformers
torch.manual_seed(0)
transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained("g124", safe_serialization=True)
PY
"$PY" "$HERE/init_from.py" data d.h5 50257 1024 1
cat >g.ini <<'INI'
[model]
type = gpt
[data]
path = d.h5
[train]
steps = 1
batch_size = 1
threads = 1
[optim]
lr = 0
warmup_steps = 0
[checkpoint]
async = false
[log]
tensorboard = false
INI
"$BATON" train g.ini --run-dir r --set train.init_from=g124 --loss-log l >r.out 2>&1 || { cat r.out; fail "124M run failed"; }
grep -q "initialised 124475904 parameters from g124/model.safetensors" r.out || { cat r.out; fail "init log line"; }
grep -q "124475904 parameters" r.out && grep -m1 "gpt model" r.out
"$BATON" export r --format safetensors -o e >/dev/null
rm -rf r   # 1.5 GB of checkpoint no longer needed
"$PY" "$HERE/init_from.py" same g124 e
ours=$(awk '$1 == 1 {print $2}' l)
theirs=$("$PY" "$HERE/init_from.py" loss g124 d.h5)
echo "124M step-1 loss: baton $ours, transformers $theirs"
"$PY" -c "import sys; sys.exit(0 if abs($ours - $theirs) <= 1e-5 else 1)" \
  || fail "step-1 loss $ours differs from transformers' $theirs by more than 1e-5"
echo "init_from 124M: all checks passed"
