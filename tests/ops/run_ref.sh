#!/usr/bin/env bash
# run_ref.sh PYENV WRITER WHAT: prepares the Python environment (pyenv.sh,
# a no-op when present), has WRITER produce the files and checks them with
# check_ref.py. Fails loudly, never skips.
set -euo pipefail
pyenv="$1" writer="$2" what="$3"
here="$(cd "$(dirname "$0")" && pwd)"
if ! py="$(bash "$here/pyenv.sh" "$pyenv" | tail -n 1)"; then
  echo "FAIL: the Python environment for the ref tests could not be set up;" >&2
  echo "      run tests/ops/pyenv.sh $pyenv and read its message" >&2
  exit 1
fi
work="$(mktemp -d /tmp/bt_ops_ref.XXXXXX)"
trap 'rm -rf "$work"' EXIT
case "$what" in
  tboard)
    "$writer" tboard "$work/run"
    "$py" "$here/check_ref.py" tboard "$work/run" ;;
  trace)
    "$writer" trace "$work/trace/rank1.json"
    "$writer" trace-crash "$work/trace/crash.json"
    "$py" "$here/check_ref.py" trace "$work/trace/rank1.json" "$work/trace/crash.json" \
      "$here/../../launch/baton-trace-repair" ;;
  *) echo "run_ref.sh: unknown check $what" >&2; exit 2 ;;
esac
