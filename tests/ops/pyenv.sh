#!/usr/bin/env bash
# pyenv.sh: creates (or checks) the Python environment the ops `ref` tests use.
#
# Usage:  tests/ops/pyenv.sh [DIR]
#   DIR defaults to <repo>/build/pyenv. Relative paths are taken from the
#   current directory.
#
# Contract:
#   - Creates DIR with `/usr/bin/python3 -m venv --system-site-packages` (so
#     Debian's numpy/h5py/torch stay visible) and installs the pinned
#     packages below from PyPI with the venv's own pip.
#   - Idempotent: when DIR/bin/python already imports the pinned versions it
#     does nothing and costs one interpreter start. Concurrent calls are
#     serialized with flock on DIR.lock.
#   - On success prints the interpreter path (DIR/bin/python) as the last line
#     of stdout and exits 0; on any failure prints why on stderr and exits 1.
#   - BATON_PIP_ARGS (optional) is appended to the pip command line, e.g. an
#     index mirror; nothing else from the environment is consulted.
set -euo pipefail

TB_VERSION=2.20.0
PB_VERSION=5.29.5

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:-$repo/build/pyenv}"
py="$dir/bin/python"

check() {
  [ -x "$py" ] && "$py" - "$TB_VERSION" "$PB_VERSION" <<'PYEOF' 2>/dev/null
import sys
import tensorboard, google.protobuf
from tensorboard.backend.event_processing import event_file_loader  # noqa: F401
ok = (tensorboard.__version__ == sys.argv[1]
      and google.protobuf.__version__ == sys.argv[2])
sys.exit(0 if ok else 1)
PYEOF
}

if check; then
  echo "$py"
  exit 0
fi

# Two ref tests may start at once under `ctest -j`: one installs, the other
# waits for it and then finds the environment ready.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if check; then
  echo "$py"
  exit 0
fi

if [ ! -x /usr/bin/python3 ]; then
  echo "pyenv.sh: /usr/bin/python3 not found (run launch/install-deps.sh)" >&2
  exit 1
fi
if [ ! -x "$py" ]; then
  echo "pyenv.sh: creating $dir" >&2
  /usr/bin/python3 -m venv --system-site-packages "$dir" || {
    echo "pyenv.sh: venv creation failed (is python3-venv installed?)" >&2
    exit 1
  }
fi
echo "pyenv.sh: installing tensorboard==$TB_VERSION protobuf==$PB_VERSION into $dir" >&2
# shellcheck disable=SC2086
"$py" -m pip install --quiet --disable-pip-version-check \
  "tensorboard==$TB_VERSION" "protobuf==$PB_VERSION" ${BATON_PIP_ARGS:-} >&2 || {
  echo "pyenv.sh: pip install failed (PyPI reachable?)" >&2
  exit 1
}
if ! check; then
  echo "pyenv.sh: $py still cannot import tensorboard==$TB_VERSION / protobuf==$PB_VERSION" >&2
  exit 1
fi
echo "$py"
