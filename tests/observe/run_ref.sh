#!/usr/bin/env bash
# run_ref.sh PYTHON WRITER WHAT: has WRITER produce the files and checks
# them with check_ref.py under PYTHON (the test venv of tests/pyenv.sh,
# which `make test` builds). Fails loudly, never skips.
set -euo pipefail
py="$1" writer="$2" what="$3"
here="$(cd "$(dirname "$0")" && pwd)"
if ! "$py" -c "import tensorboard" 2>/dev/null; then
  echo "FAIL: $py cannot import tensorboard; build the test environment" >&2
  echo "      with 'make pyenv' (tests/pyenv.sh, tests/requirements.txt)" >&2
  exit 1
fi
work="$(mktemp -d /tmp/bt_observe_ref.XXXXXX)"
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
