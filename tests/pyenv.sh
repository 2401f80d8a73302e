#!/usr/bin/env bash
# Creates (or reuses) the Python environment the reference tests run in:
# a venv over Debian's /usr/bin/python3 with --system-site-packages, so it
# sees python3-torch, python3-numpy and python3-h5py, plus the pinned PyPI
# packages of tests/requirements.txt. Idempotent: a stamp holding the
# requirements' hash skips the install when nothing changed.
#
# usage: tests/pyenv.sh DIR      (prints nothing on reuse)
set -euo pipefail
dir=${1:?usage: tests/pyenv.sh DIR}
req="$(cd "$(dirname "$0")" && pwd)/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$dir/bin/python3" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "baton: creating the test Python environment in $dir"
rm -rf "$dir"
/usr/bin/python3 -m venv --system-site-packages "$dir"
"$dir/bin/python3" -m pip install -q --disable-pip-version-check -r "$req"
"$dir/bin/python3" -c "import torch, numpy, h5py, tensorboard, onnxruntime, safetensors, transformers"
echo "$want" > "$dir/.stamp"
