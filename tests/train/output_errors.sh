#!/usr/bin/env bash
# Issue 17 item 5: a metrics, TensorBoard or loss-log write that fails (a
# full disk) is reported when it happens, naming the file and errno; it
# leaves no torn line or record; checkpoint.on_error decides:
#   stop (default)  every rank writes a checkpoint at the next step and
#                   the job exits 1 (docs/operations.md "Exit codes");
#   continue        one warning, training goes on without that output.
# The failures: BATON_FAULT=metrics.enospc:N / tboard.enospc:N (the Nth
# write of the sink gets half its bytes out, then fails with ENOSPC: the
# torn case), and a loss log on /dev/full (every write fails with ENOSPC).
source "$(dirname "$0")/lib.sh"
pass=0
ok() { pass=$((pass + 1)); }
args=(--set train.steps=20 --set checkpoint.every=0)
# every line of a metrics.jsonl parses and ends with a newline; prints the
# number of lines
jsonl_lines() {
  "$PY" - "$1" <<'PY'
import json, sys
data = open(sys.argv[1], "rb").read()
assert data.endswith(b"\n"), "last line torn (no newline)"
lines = data.decode().splitlines()
for i, l in enumerate(lines, 1):
    json.loads(l)  # raises on a torn line
print(len(lines))
PY
}

# 1. metrics.jsonl, stop, 2 ranks: the 5th line fails -> error right away,
#    checkpoint at step 6 on every rank, exit 1, 4 whole lines.
set +e
BATON_FAULT=metrics.enospc:5 run_np 2 "$CFG" --run-dir "$WORK/a" "${args[@]}" \
  >"$WORK/a.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/a.out"; fail "metrics stop: exit $rc, want 1"; }
grep -q "error: metrics: write to '$WORK/a/metrics.jsonl' failed at byte [0-9]*: No space left on device (errno 28).*the partial line was cut off.*checkpoint.on_error = stop" "$WORK/a.out" ||
  { cat "$WORK/a.out"; fail "metrics stop: no error naming the file, errno and the policy"; }
grep -q "stopped after an output write failure .*checkpoint at step 6 written; exiting with code 1" "$WORK/a.out" ||
  { cat "$WORK/a.out"; fail "metrics stop: no stop message at step 6"; }
# reported when it happened: before the stop, not at exit
[ "$(grep -n "metrics: write to" "$WORK/a.out" | cut -d: -f1)" -lt \
  "$(grep -n "stopped after an output" "$WORK/a.out" | cut -d: -f1)" ] ||
  { cat "$WORK/a.out"; fail "metrics stop: failure reported after the stop"; }
[ -d "$WORK/a/ckpt-00000006" ] || { ls "$WORK/a"; fail "metrics stop: no checkpoint at step 6"; }
"$BATON" inspect "$WORK/a/ckpt-00000006" >/dev/null || fail "metrics stop: checkpoint 6 does not verify"
n=$(jsonl_lines "$WORK/a/metrics.jsonl") || fail "metrics stop: metrics.jsonl has a torn line"
[ "$n" = 4 ] || fail "metrics stop: $n lines in metrics.jsonl, want 4 (steps 1-4)"
ok

# 2. metrics.jsonl, continue: one warning, 20 steps, exit 0, no torn line.
BATON_FAULT=metrics.enospc:5 "$BATON" train "$CFG" --run-dir "$WORK/b" "${args[@]}" \
  --set checkpoint.on_error=continue >"$WORK/b.out" 2>&1 ||
  { cat "$WORK/b.out"; fail "metrics continue: the run failed"; }
[ "$(grep -c "metrics: write to" "$WORK/b.out")" = 1 ] || { cat "$WORK/b.out"; fail "metrics continue: not warned exactly once"; }
grep -q "warning: metrics: .*No space left on device (errno 28).*training continues without it" "$WORK/b.out" ||
  { cat "$WORK/b.out"; fail "metrics continue: no warning"; }
grep -q "training complete: 20 steps" "$WORK/b.out" || fail "metrics continue: did not train on"
n=$(jsonl_lines "$WORK/b/metrics.jsonl") || fail "metrics continue: torn line"
[ "$n" = 4 ] || fail "metrics continue: $n lines, want 4"
ok

# 3. TensorBoard, stop: the event of step 4 (write 1: file version, 2: the
#    session start, 3..: steps) fails -> error naming the event file,
#    checkpoint at step 5, exit 1; the file holds only whole records.
set +e
BATON_FAULT=tboard.enospc:6 "$BATON" train "$CFG" --run-dir "$WORK/c" "${args[@]}" \
  --set log.tensorboard=true >"$WORK/c.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/c.out"; fail "tboard stop: exit $rc, want 1"; }
grep -q "error: metrics: tboard: write to '$WORK/c/tb/events.out.tfevents[^']*' failed at byte [0-9]*: No space left on device (errno 28)" "$WORK/c.out" ||
  { cat "$WORK/c.out"; fail "tboard stop: no error naming the event file and errno"; }
[ -d "$WORK/c/ckpt-00000005" ] || { ls "$WORK/c"; fail "tboard stop: no checkpoint at step 5"; }
"$PY" - "$WORK"/c/tb/events.out.tfevents.* <<'PY' || fail "tboard stop: torn record in the event file"
import struct, sys
data = open(sys.argv[1], "rb").read()
off = n = 0
while off < len(data):
    assert off + 12 <= len(data), "torn header at byte %d" % off
    (ln,) = struct.unpack("<Q", data[off:off + 8])
    assert off + 16 + ln <= len(data), "torn record at byte %d" % off
    off += 16 + ln
    n += 1
assert n == 5, "%d records, want 5 (version, start, steps 1-3)" % n
PY
ok

# 4. Loss log on /dev/full: continue -> one warning naming it, exit 0;
#    stop -> error, checkpoint at step 2, exit 1.
"$BATON" train "$CFG" --run-dir "$WORK/d" "${args[@]}" --loss-log /dev/full \
  --set checkpoint.on_error=continue >"$WORK/d.out" 2>&1 ||
  { cat "$WORK/d.out"; fail "loss log continue: the run failed"; }
[ "$(grep -c "loss log /dev/full: writing step 1: No space left on device (errno 28)" "$WORK/d.out")" = 1 ] ||
  { cat "$WORK/d.out"; fail "loss log continue: not warned exactly once"; }
set +e
"$BATON" train "$CFG" --run-dir "$WORK/e" "${args[@]}" --loss-log /dev/full >"$WORK/e.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$WORK/e.out"; fail "loss log stop: exit $rc, want 1"; }
[ -d "$WORK/e/ckpt-00000002" ] || { ls "$WORK/e"; fail "loss log stop: no checkpoint at step 2"; }
ok
echo "$pass passed, 0 failed"
