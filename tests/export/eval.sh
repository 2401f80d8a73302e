#!/usr/bin/env bash
# `baton eval` (issue 14 item 5) against independent computations:
#  - GPT: a transformers-saved GPT-2 (an export-layout directory) over the
#    first 30 val windows: loss within 1e-5 of transformers' and perplexity
#    = exp(loss); the same on 2 ranks within 1e-6 relative of 1 rank
#    (ranks only change the order of the double sums); a fine-tuned
#    checkpoint (run directory, data from its config) gives the loss its
#    own validation printed, and its export the checkpoint's loss;
#  - MLP: loss and accuracy of an export over a whole split within 1e-5 /
#    exactly of numpy's, 1 and 3 ranks (203 samples: uneven shards);
#  - refusals by message and exit code.
# PY: the reference Python (torch, transformers, h5py, safetensors).
set -euo pipefail
: "${BATON:?}" "${MPIRUN:?}" "${PY:?}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d /tmp/baton-eval.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
ref() { "$PY" "$HERE/eval_ref.py" "$@"; }
# jget FILE KEY: a value of the JSON object baton eval printed
jget() { "$PY" -c "import json,sys; print(repr(json.load(open(sys.argv[1]))[sys.argv[2]]))" "$1" "$2"; }
# close A B TOL: |A-B| <= TOL*|B|
close() { "$PY" -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t*abs(b) else 1)" "$1" "$2" "$3"; }
cd "$WORK"

# ---- GPT: transformers model, export-directory form --------------------
"$PY" "$HERE/../train/init_from.py" model hf 2 2 64 300 64 >/dev/null
"$PY" "$HERE/../train/init_from.py" data d.h5 300 64 40
"$BATON" eval hf --data d.h5 --max-samples 30 --json >g1.json
$MPIRUN -np 2 "$BATON" eval hf --data d.h5 --max-samples 30 --json >g2.json
read -r rl rp < <(ref gpt hf d.h5 val 30)
l1=$(jget g1.json loss); p1=$(jget g1.json perplexity); l2=$(jget g2.json loss)
[ "$(jget g1.json tokens)" = 1920 ] || fail "tokens $(jget g1.json tokens), expected 30*64"
close "$l1" "$rl" 1e-5 || fail "GPT loss $l1 vs transformers $rl"
close "$p1" "$rp" 1e-5 || fail "GPT perplexity $p1 vs exp(transformers loss) $rp"
close "$l2" "$l1" 1e-6 || fail "2 ranks $l2 vs 1 rank $l1"
[ "$(jget g2.json world)" = 2 ] || fail "g2 world"
echo "gpt: loss $l1 (transformers $rl), 2 ranks $l2, perplexity $p1"
"$BATON" eval hf --data d.h5 --max-samples 30 | grep -q "1920 tokens, loss .*perplexity" \
  || fail "the plain line"

# ---- GPT: a fine-tuned checkpoint, its run directory and its export ------
cat >ft.ini <<'INI'
[model]
type = gpt
[data]
path = d.h5
val_every = 3
val_samples = 0
[train]
steps = 3
batch_size = 8
threads = 1
init_from = hf
[checkpoint]
async = false
[log]
tensorboard = false
INI
"$BATON" train ft.ini --run-dir run >train.out 2>&1 || { cat train.out; fail "fine-tune"; }
vline=$(grep -o "validation at step 3: loss = [0-9.]*" train.out | awk '{print $NF}')
"$BATON" eval run --json >c.json
close "$(jget c.json loss)" "$vline" 2e-5 || fail "eval of run $(jget c.json loss) vs its validation $vline"
[ "$(jget c.json step)" = 3 ] || fail "step $(jget c.json step)"
"$BATON" export run --format safetensors -o exp >/dev/null
"$BATON" eval exp --data d.h5 --json >e.json
close "$(jget e.json loss)" "$(jget c.json loss)" 1e-9 || fail "export vs checkpoint"
read -r rl rp < <(ref gpt exp d.h5 val 0)
close "$(jget e.json loss)" "$rl" 1e-5 || fail "export loss vs transformers $rl"
echo "checkpoint: validation $vline, eval $(jget c.json loss), export $(jget e.json loss), transformers $rl"

# ---- MLP: loss and accuracy against numpy ------------------------------
ref mlpdata m.h5
cat >mlp.ini <<'INI'
[model]
type = mlp
mlp_hidden = 16
[data]
path = m.h5
[train]
steps = 30
batch_size = 32
threads = 1
[checkpoint]
async = false
[log]
tensorboard = false
INI
"$BATON" train mlp.ini --run-dir mrun >/dev/null 2>&1 || fail "MLP training"
"$BATON" export mrun --format safetensors -o mexp >/dev/null
"$BATON" eval mexp --data m.h5 --json --batch-size 16 >m1.json
$MPIRUN -np 3 "$BATON" eval mrun --json >m3.json
read -r rl ra < <(ref mlp mexp m.h5 val)
close "$(jget m1.json loss)" "$rl" 1e-5 || fail "MLP loss $(jget m1.json loss) vs numpy $rl"
close "$(jget m1.json accuracy)" "$ra" 1e-12 || fail "MLP accuracy $(jget m1.json accuracy) vs numpy $ra"
close "$(jget m3.json loss)" "$(jget m1.json loss)" 1e-6 || fail "3 ranks MLP loss"
[ "$(jget m3.json correct)" = "$(jget m1.json correct)" ] || fail "3 ranks MLP correct"
[ "$(jget m1.json samples)" = 203 ] || fail "MLP samples"
echo "mlp: loss $(jget m1.json loss) (numpy $rl), accuracy $(jget m1.json accuracy) (numpy $ra), 3 ranks $(jget m3.json loss)"

# ---- refusals ------------------------------------------------------------
expect() { # expect RC PATTERN ARGS...
  local want=$1 pat=$2; shift 2
  set +e; "$BATON" eval "$@" >x.out 2>&1; local rc=$?; set -e
  [ "$rc" = "$want" ] || { cat x.out; fail "eval $*: exit $rc, expected $want"; }
  grep -q -- "$pat" x.out || { cat x.out; fail "eval $*: no '$pat'"; }
}
expect 1 "export directory, which names no dataset: give --data" hf
expect 2 "expected val or train, got 'test'" run --split test
expect 2 "PATH is required"
expect 2 "--max-samples: expected an integer >= 1" run --max-samples 0
expect 1 "nope: no such checkpoint or run directory" nope
echo "eval: all checks passed"
