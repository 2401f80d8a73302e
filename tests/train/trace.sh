#!/usr/bin/env bash
# Issue 8: a 2-rank run with log.trace = true writes one Chrome-trace JSON
# per rank that parses, whose spans nest (every span on the main thread lies
# inside its enclosing step), with data, forward, backward, optimizer and
# checkpoint spans, and one communication span per gradient bucket on its
# own thread lane.
source "$(dirname "$0")/lib.sh"
run_np 2 "$CFG" --run-dir "$WORK/run" --set log.trace=true --set train.steps=6 \
  --set checkpoint.every=3 >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "traced run failed"; }
for r in 0 1; do
  "$PY" - "$WORK/run/trace/rank$r.json" <<'PY' || fail "trace of rank $r is invalid"
import json, sys
doc = json.load(open(sys.argv[1]))
ev = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
main = sorted((e for e in ev if e["tid"] == 0), key=lambda e: (e["ts"], -e["dur"]))
steps = [e for e in main if e["name"] == "step"]
assert len(steps) == 6, len(steps)
names = {e["name"] for e in main}
for need in ("data", "forward", "backward", "optimizer", "checkpoint"):
    assert need in names, (need, names)
for e in main:
    if e["name"] == "step":
        continue
    parent = [s for s in steps if s["ts"] <= e["ts"] and e["ts"] + e["dur"] <= s["ts"] + s["dur"] + 1]
    assert parent, ("span outside every step", e)
comm = [e for e in ev if e["tid"] == 1 and e["name"].startswith("bucket")]
assert len(comm) >= 6, len(comm)
print("%s: %d spans, %d steps, %d bucket spans, all nested" % (sys.argv[1].split("/")[-1], len(ev), len(steps), len(comm)))
PY
done
echo "2 passed, 0 failed"
