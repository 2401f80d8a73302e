#!/usr/bin/env bash
# supervisor_e2e.sh BATON CONFIG [MPIRUN]: end-to-end crash recovery.
#
# A 4-rank training run under launch/baton-supervise has a random rank
# SIGKILLed at a random step, twice (BATON_FAULT="train.step:K@R": the
# trainer kills rank R at the K-th step of that process). The supervisor must
# restart it from the last checkpoint each time and the run must end with
# parameters bitwise identical to an uninterrupted reference run.
#
# Needs from the trainer: `baton train CONFIG --run-dir DIR --set
# train.steps=N --set checkpoint.every=E --dump-params FILE`, RUN/latest =
# "ckpt-<step>", and the fault point "train.step".
# Environment: BATON_E2E_STEPS (default 40), BATON_E2E_EVERY (5),
# BATON_E2E_SEED (default: random; printed so that a failure can be replayed),
# BATON_E2E_KEEP=1 keeps the work directory.
# Prints "N passed, N failed"; exit 0 only if all checks pass.
set -u
if [ $# -lt 2 ]; then
  echo "usage: supervisor_e2e.sh BATON CONFIG [MPIRUN]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
SUP="$here/../../launch/baton-supervise"
BATON="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
CONFIG="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
MPIRUN="${3:-mpirun}"
STEPS="${BATON_E2E_STEPS:-40}"
EVERY="${BATON_E2E_EVERY:-5}"
SEED="${BATON_E2E_SEED:-$(( $(date +%s) % 100000 ))}"
NP=4
RANDOM="$SEED"
echo "supervisor_e2e: seed $SEED (replay with BATON_E2E_SEED=$SEED), $STEPS steps, checkpoint every $EVERY"

pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
w="$(mktemp -d /tmp/bt_e2e.XXXXXX)"
if [ "${BATON_E2E_KEEP:-0}" = 1 ]; then echo "work dir: $w"; else trap 'rm -rf "$w"' EXIT; fi
mpi=("$MPIRUN" --oversubscribe --allow-run-as-root --mca btl self,vader
     --mca btl_vader_single_copy_mechanism none -np "$NP")
train_args=(train "$CONFIG" --set "train.steps=$STEPS" --set "checkpoint.every=$EVERY")

# 1. Reference: uninterrupted.
if "${mpi[@]}" "$BATON" "${train_args[@]}" --run-dir "$w/ref" --dump-params "$w/ref.params" >"$w/ref.log" 2>&1; then
  ok
else
  bad "reference run failed; see its output:"; tail -n 30 "$w/ref.log" >&2
fi

# 2. The same run under the supervisor; the job script injects one fault in
#    each of the first two attempts (a fault counts steps from process start).
k1=$(( EVERY + 1 + RANDOM % (STEPS - EVERY - 1) ))   # after the first checkpoint
r1=$(( RANDOM % NP ))
r2=$(( RANDOM % NP ))
cat >"$w/job.sh" <<JOB
#!/usr/bin/env bash
n=\$(( \$(cat "$w/attempt" 2>/dev/null || echo 0) + 1 ))
echo "\$n" >"$w/attempt"
unset BATON_FAULT
if [ "\$n" = 1 ]; then
  export BATON_FAULT="train.step:$k1@$r1"
elif [ "\$n" = 2 ]; then
  c=\$(cat "$w/run/latest" 2>/dev/null | tr -cd '0-9'); c=\$((10#\${c:-0}))
  left=\$(( $STEPS - c ))
  if [ "\$left" -ge 2 ]; then
    k2=\$(( 1 + $RANDOM % (left - 1) ))
    export BATON_FAULT="train.step:\$k2@$r2"
  fi
fi
echo "attempt \$n: BATON_FAULT=\${BATON_FAULT:-none}" >>"$w/faults"
exec ${mpi[*]} -x BATON_FAULT "$BATON" ${train_args[*]} --run-dir "$w/run" --dump-params "$w/run.params"
JOB
chmod +x "$w/job.sh"
"$SUP" --backoff 1 --max-restarts 5 --run-dir "$w/run" -- "$w/job.sh" >"$w/sup.out" 2>&1
rc=$?
cat "$w/faults" 2>/dev/null
[ "$rc" -eq 0 ] && ok || { bad "supervised run ended with $rc"; tail -n 40 "$w/sup.out" >&2; }
n_attempts="$(cat "$w/attempt" 2>/dev/null || echo 0)"
[ "$n_attempts" -eq 3 ] && ok || bad "expected 3 attempts (2 faults), got $n_attempts"
kills="$(grep -c 'killed by signal 9' "$w/run/supervisor.log" 2>/dev/null)"
[ "${kills:-0}" -eq 2 ] && ok || bad "supervisor.log should show 2 SIGKILL failures, shows ${kills:-0}"

# 3. Bitwise identical final parameters.
if [ -s "$w/ref.params" ] && cmp -s "$w/ref.params" "$w/run.params"; then
  ok
else
  bad "final parameters differ from the uninterrupted run (or are missing): $(cmp "$w/ref.params" "$w/run.params" 2>&1)"
fi

# 4. If the trainer writes metrics.jsonl: the losses in the last line of each
#    step of the resumed run equal the reference (bitwise reproducible too).
if [ -s "$w/ref/metrics.jsonl" ] && [ -s "$w/run/metrics.jsonl" ]; then
  if /usr/bin/python3 - "$w/ref/metrics.jsonl" "$w/run/metrics.jsonl" <<'PY'
import json, sys
def last(path):
    out = {}
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a torn line left by a killed run
        # Losses only: throughput and timings legitimately differ.
        out[r["step"]] = {k: v for k, v in r.items() if "loss" in k}
    return out
a, b = last(sys.argv[1]), last(sys.argv[2])
bad = [s for s in a if a[s] != b.get(s)]
if bad or set(a) != set(b):
    print("metrics differ at steps", bad[:10], file=sys.stderr)
    sys.exit(1)
PY
  then ok; else bad "metrics.jsonl of the resumed run differs from the reference"; fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
