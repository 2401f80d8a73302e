#!/usr/bin/env bash
# Issue 2: config errors stop with a message naming the file, line and key.
source "$(dirname "$0")/lib.sh"
pass=0
expect() { # expect EXIT_CODE "message substring" CMD...
  local code=$1 msg=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "exit $rc (want $code) for: $* -> $out"
  case "$out" in *"$msg"*) ;; *) fail "message lacks '$msg': $out";; esac
  pass=$((pass + 1))
}
c="$WORK/c.ini"
printf '[model]\ntype = gpt\n[train]\nstpes = 10\n' >"$c"
expect 2 "$c:4: unknown key 'stpes' in section [train]" "$BATON" train "$c"
printf '[model]\ntype = gpt\n\n[train]\nsteps = ten\n' >"$c"
expect 2 "$c:5: bad value 'ten' for train.steps: expected an integer" "$BATON" train "$c"
printf '[model]\ntype = gpt\n[optim]\nlr = -1\n' >"$c"
expect 2 "$c:4: bad value '-1' for optim.lr: must be between 0 and 10" "$BATON" train "$c"
printf '[model]\ntype = transformer\n' >"$c"
expect 2 "$c:2: bad value 'transformer' for model.type: expected one of gpt|mlp" "$BATON" train "$c"
printf '[train]\nsteps = 10\n' >"$c"
expect 2 "$c: missing required key model.type" "$BATON" train "$c"
printf '[modle]\ntype = gpt\n' >"$c"
expect 2 "$c:2: unknown section [modle] (key 'type')" "$BATON" train "$c"
printf '[model]\ntype = gpt\nn_embd = 30\nn_head = 4\n' >"$c"
expect 2 "model.n_embd (30) must be a multiple of model.n_head (4)" "$BATON" train "$c"
printf '[model]\ntype = gpt\n' >"$c"
expect 2 "--set: unknown key 'train.stepz'" "$BATON" train "$c" --set train.stepz=3
expect 2 "--set: bad value 'x' for dist.zero: expected true or false" "$BATON" train "$c" --set dist.zero=x
expect 2 "--set 'steps=3': expected section.key=value" "$BATON" train "$c" --set steps=3
expect 2 "cannot open config file '$WORK/none.ini'" "$BATON" train "$WORK/none.ini"
# Issue 17: a duplicate key names both lines (last-wins hid one silently);
# NUL bytes name their line (inih stopped there silently); a directory says
# so (it parsed as an empty file: "missing required key").
printf '[model]\ntype = gpt\n[train]\nsteps = 10\nlog_every = 5\n\nsteps = 20\n' >"$c"
expect 2 "$c:7: duplicate key train.steps (first set at $c:4)" "$BATON" train "$c"
printf '[model]\ntype = gpt\n[train]\nsteps = 10\n[model]\ntype = mlp\n' >"$c"
expect 2 "$c:6: duplicate key model.type (first set at $c:2)" "$BATON" train "$c"
printf '[model]\ntype = gpt\n[train]\nsteps\0 = 10\n' >"$c"
expect 2 "$c:4: NUL byte in config file" "$BATON" train "$c"
printf '[model]\ntype = gpt\n\0' >"$c"
expect 2 "$c:3: NUL byte in config file" "$BATON" train "$c"
mkdir -p "$WORK/dir.ini"
expect 2 "config file '$WORK/dir.ini' is a directory" "$BATON" train "$WORK/dir.ini"
echo "$pass passed, 0 failed"
