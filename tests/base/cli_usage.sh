#!/usr/bin/env bash
# cli_usage.sh BATON: every subcommand parses its command line the same way
# (base/cli.h): --help prints the usage on stdout and exits 0; an unknown
# option, an option without its value, or an extra argument prints
# "baton CMD: ..." naming it on stderr and exits 2 (BT_EXIT_USAGE).
set -uo pipefail
baton=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fails=0 n=0

# expect CODE STDERR-TEXT ARGS...: exit code and a line of stderr.
expect() {
  local want=$1 text=$2; shift 2
  n=$((n + 1))
  "$baton" "$@" >"$t/out" 2>"$t/err"
  local got=$?
  if [ "$got" != "$want" ] || ! grep -qF -- "$text" "$t/err"; then
    echo "FAIL: baton $* -> exit $got (want $want), stderr:"; cat "$t/err"
    fails=$((fails + 1))
  fi
}

for cmd in train config prepare inspect export infer; do
  n=$((n + 1))
  if ! "$baton" $cmd --help >"$t/out" 2>"$t/err" || ! grep -q "^usage: baton $cmd" "$t/out"; then
    echo "FAIL: baton $cmd --help"; cat "$t/out" "$t/err"; fails=$((fails + 1))
  fi
  expect 2 "baton $cmd: unknown option '--no-such-option'" $cmd --no-such-option
  expect 2 "baton $cmd: unknown option '-Z'" $cmd -Z
  # The usage follows the message, so the user sees the options.
  grep -q "^usage: baton $cmd" "$t/err" || { echo "FAIL: no usage after the error of baton $cmd"; fails=$((fails + 1)); }
done
# `prepare audio` has its own parser (data/prepare_audio.c); the shared
# `prepare --help` must still list it among the modes.
n=$((n + 1))
"$baton" prepare --help 2>&1 | grep -q "^ *baton prepare audio -o OUT.h5" ||
  { echo "FAIL: baton prepare --help does not list 'prepare audio'"; fails=$((fails + 1)); }

# A value-taking option at the end of the line.
expect 2 "baton config: option '--set' needs a value" config --set
expect 2 "baton prepare: option '--seed' needs a value" prepare text -o x.h5 --seed
expect 2 "baton prepare: option '-o' needs a value" prepare text -o
expect 2 "baton export: option '--format' needs a value" export CKPT -o d --format
expect 2 "baton infer: option '--prompt' needs a value" infer DIR --prompt
# A flag given a value.
expect 2 "baton infer: option '--ids' takes no value" infer DIR --ids=1
# Extra or missing arguments.
expect 2 "baton train: expected exactly one CONFIG file, got 'a.ini' and 'b.ini'" train a.ini b.ini
expect 2 "baton train: expected exactly one CONFIG file" train --quiet
expect 2 "baton train: option '--run-dir' needs a value" train a.ini --run-dir
expect 2 "baton config: unexpected argument 'b.ini'" config a.ini b.ini
expect 2 "baton inspect: unexpected argument 'b'" inspect a b
expect 2 "baton inspect: CHECKPOINT_DIR or RUN_DIR is required" inspect
expect 2 "baton export: unexpected argument 'b'" export a b --format onnx -o d
expect 2 "baton export: CHECKPOINT and -o are required" export a
expect 2 "baton infer: unexpected argument 'b'" infer a b
expect 2 "baton infer: DIR is required" infer --prompt x
expect 2 "baton prepare: -o OUT.h5 is required" prepare text f.txt
expect 2 "baton prepare: give a mode" prepare -o x.h5
# Bad option values are usage errors too.
expect 2 "baton infer: --top-k expects an integer, got 'x'" infer DIR --top-k x
expect 2 "baton prepare: --gzip '12' is not in [0, 9]" prepare text -o x.h5 --gzip 12 f
expect 2 "baton export: unknown format 'zip'" export CKPT --format zip -o d
# Options after positionals, "--opt=value", and "--" all parse.
# (config: a config file that cannot be read is exit 2 as well.)
expect 2 "cannot open config file '$t/none.ini'" config "$t/none.ini" --set=train.steps=3
expect 2 "baton config: option '--markdown' takes no value" config --markdown=1
expect 2 "cannot open config file '--set=x'" config -- --set=x
echo "$n checks, $fails failed"
[ "$fails" = 0 ]
