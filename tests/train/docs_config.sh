#!/usr/bin/env bash
# docs/config.md is generated from the key table (`baton config --markdown`);
# this test fails when the two drift apart.
source "$(dirname "$0")/lib.sh"
"$BATON" config --markdown >"$WORK/config.md"
diff -u "$HERE/../../docs/config.md" "$WORK/config.md" \
  || fail "docs/config.md is stale: run 'build/baton config --markdown > docs/config.md'"
echo "1 passed, 0 failed"
