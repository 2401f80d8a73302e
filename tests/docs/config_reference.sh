#!/usr/bin/env bash
# config_reference.sh BATON: docs/config.md is generated from the key table
# (`baton config --markdown`); this test fails when the two drift apart.
set -euo pipefail
baton="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d /tmp/baton-docs-config.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$baton" config --markdown >"$work/config.md"
diff -u "$root/docs/config.md" "$work/config.md" || {
  echo "FAIL: docs/config.md is stale: run 'build/baton config --markdown > docs/config.md'" >&2
  exit 1
}
echo "1 passed, 0 failed"
