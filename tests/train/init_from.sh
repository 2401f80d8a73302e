#!/usr/bin/env bash
# Issue 14, item 1: train.init_from. A GPT-2 saved by transformers
# (save_pretrained, safetensors) starts a 2-rank run: with lr 0 the
# parameters stay the source's bit for bit (through `baton export`) and
# the step-1 loss is transformers' loss on the same batch (the whole train
# split, so the order of samples cannot matter) within 1e-5. A real
# fine-tune exported again loads in transformers with logits equal to
# `baton infer`'s; rerunning it resumes (init_from ignored, logged); a
# baton checkpoint, and an MLP export, are sources too. Then the refusals, each by its
# message: missing path, not a model, not safetensors, a tensor of the
# wrong shape, a config key that contradicts the source.
# PY is the reference Python (transformers, torch, h5py, safetensors).
source "$(dirname "$0")/lib.sh"
ref() { "$PY" "$HERE/init_from.py" "$@"; }
expect_fail() { # expect_fail NAME PATTERN ARGS...: baton train fails, saying PATTERN
  local name=$1 pat=$2; shift 2
  set +e; "$BATON" train "$@" >"$WORK/$name.out" 2>&1; local rc=$?; set -e
  [ "$rc" != 0 ] || { cat "$WORK/$name.out"; fail "$name: baton train succeeded"; }
  grep -q -- "$pat" "$WORK/$name.out" || { cat "$WORK/$name.out"; fail "$name: no '$pat' in the error"; }
  echo "$name: exit $rc: $(grep -m1 error "$WORK/$name.out")"
}
cd "$WORK"
ref model hf 2 2 64 300 64 >/dev/null
ref data d.h5 300 64 8
# No [model] shape keys: they all come from hf/config.json.
cat >ft.ini <<'INI'
[model]
type = gpt
[data]
path = d.h5
[train]
batch_size = 8
threads = 1
log_every = 1
[optim]
warmup_steps = 0
[checkpoint]
async = false
[log]
tensorboard = false
INI

# 1. lr 0: the source's parameters and transformers' loss.
run_np 2 ft.ini --run-dir r0 --set train.init_from=hf --set train.steps=2 \
  --set optim.lr=0 --loss-log l0 >r0.out 2>&1 || { cat r0.out; fail "init_from run failed"; }
grep -q "initialised 124672 parameters from hf/model.safetensors" r0.out || { cat r0.out; fail "no init log line"; }
"$BATON" export r0 --format safetensors -o e0 >/dev/null
ref same hf e0
ours=$(awk '$1 == 1 {print $2}' l0)
theirs=$(ref loss hf d.h5)
echo "step-1 loss: baton $ours, transformers $theirs"
"$PY" -c "import sys; sys.exit(0 if abs($ours - $theirs) <= 1e-5 else 1)" \
  || fail "step-1 loss $ours differs from transformers' $theirs by more than 1e-5"

# 2. A real fine-tune on 2 ranks, exported and read back by transformers.
run_np 2 ft.ini --run-dir r1 --set train.init_from=hf --set train.steps=6 \
  --set optim.lr=3e-3 --set checkpoint.every=3 --loss-log l1 >r1.out 2>&1 \
  || { cat r1.out; fail "fine-tune failed"; }
first=$(awk '$1 == 1 {print $2}' l1) last=$(awk '$1 == 6 {print $2}' l1)
echo "fine-tune loss: $first -> $last"
le "$last" "$("$PY" -c "print($first - 0.05)")" || fail "fine-tune loss did not fall ($first -> $last)"
"$BATON" export r1 --format safetensors -o e1 >/dev/null
ref logits e1 "$BATON"

# 3. Resume wins: the same command with more steps continues r1.
run_np 2 ft.ini --run-dir r1 --set train.init_from=hf --set train.steps=8 \
  --set optim.lr=3e-3 --set checkpoint.every=3 >r1b.out 2>&1 || { cat r1b.out; fail "resume failed"; }
grep -q "train.init_from = hf ignored: the run resumed from its own checkpoint at step 6" r1b.out \
  || { cat r1b.out; fail "resume did not say that init_from is ignored"; }
grep -q "initialised" r1b.out && fail "a resumed run was initialised again"

# 4. A baton checkpoint as the source (a new run directory, lr 0).
run_np 2 ft.ini --run-dir r2 --set train.init_from=r1/ckpt-00000006 --set train.steps=1 \
  --set optim.lr=0 >r2.out 2>&1 || { cat r2.out; fail "init_from a checkpoint failed"; }
grep -q "initialised 124672 parameters from r1/ckpt-00000006 (baton checkpoint)" r2.out || { cat r2.out; fail "checkpoint init log"; }
"$BATON" export r1/ckpt-00000006 --format safetensors -o e1c >/dev/null
"$BATON" export r2 --format safetensors -o e2 >/dev/null
ref same e1c e2

# 4b. An MLP export (model_type baton_mlp) is a source too.
mlp="$HERE/../../configs/tiny-mlp.ini"
"$BATON" train "$mlp" --run-dir m0 --set train.steps=5 --dump-params m0.bin >m0.out 2>&1 || { cat m0.out; fail "MLP run"; }
"$BATON" export m0 --format safetensors -o em >/dev/null
"$BATON" train "$mlp" --run-dir m1 --set train.init_from=em --set train.steps=1 --set optim.lr=0 \
  --dump-params m1.bin >m1.out 2>&1 || { cat m1.out; fail "MLP init_from"; }
cmp -s m0.bin m1.bin || fail "MLP: parameters differ from the export's"
echo "MLP export as the source: parameters equal"

# 5. Refusals.
mkdir empty notst
cp hf/config.json notst/ && head -c 4096 /dev/urandom >notst/model.safetensors
ref badshape hf badshape
expect_fail missing "train.init_from = nowhere: no such file or directory" ft.ini --run-dir x1 --set train.init_from=nowhere
expect_fail notmodel "neither a model directory" ft.ini --run-dir x2 --set train.init_from=empty
expect_fail notst "notst/model.safetensors" ft.ini --run-dir x3 --set train.init_from=notst
expect_fail shape "tensor 'transformer.wpe.weight' has shape \[32, 64\], expected \[64, 64\]" ft.ini --run-dir x4 --set train.init_from=badshape
expect_fail conflict "model.n_embd = 32 but train.init_from's source has 64 (hf/config.json)" ft.ini --run-dir x5 --set train.init_from=hf --set model.n_embd=32
echo "init_from: all checks passed"
