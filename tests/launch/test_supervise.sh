#!/usr/bin/env bash
# test_supervise.sh [MPIRUN]: launch/baton-supervise driven by fake jobs
# (tests/launch/fake_job.sh): a job that fails twice then succeeds; a crash loop
# at one step stops with a message; back-off doubles and is honoured; the
# restart budget; config error and pre-emption are not retried; a stop signal
# is passed on and ends supervision; the same under mpirun with a rank
# SIGKILLed (skipped parts are failures: MPIRUN defaults to mpirun); a job
# that hangs after printing its abort is ended after --abort-grace.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
SUP="$here/../../launch/baton-supervise"
JOB="$here/fake_job.sh"
MPIRUN="${1:-mpirun}"
MPIARGS=(--oversubscribe --allow-run-as-root --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() { # expect DESC COND...
  local d="$1"; shift
  if "$@"; then ok; else bad "$d"; fi
}
contains() { grep -qF -- "$2" "$1"; }
matches() { grep -qE -- "$2" "$1"; }
tmp="$(mktemp -d /tmp/bt_supervise.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

fresh() { st="$tmp/$1"; rm -rf "$st"; mkdir -p "$st/run"; }
attempts() { wc -l <"$st/attempts" | tr -d ' '; }
gap() { # gap I: seconds between attempt I and I+1
  awk -v i="$1" 'NR == i { a = $2 } NR == i + 1 { printf "%.3f", $2 - a }' "$st/attempts"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# 1. Fails twice (exit 1, then SIGKILL), then completes. The run dir comes
#    from the command's own --run-dir.
fresh flaky
"$SUP" --backoff 1 -- "$JOB" "$st" flaky --run-dir "$st/run" >"$st/out" 2>"$st/err"
rc=$?
L="$st/run/supervisor.log"
expect "flaky: exit 0 (got $rc)" [ "$rc" -eq 0 ]
expect "flaky: 3 attempts" [ "$(attempts)" -eq 3 ]
expect "flaky: log in the command's run dir" [ -s "$L" ]
# (the duration depends on the machine's load: any whole number of seconds)
expect "flaky: exit-code cause logged" matches "$L" "FAILED after [0-9]+s: exit code 1 \(error\); checkpoint step 10"
expect "flaky: signal cause logged" contains "$L" "exit code 137 (killed by signal 9, SIGKILL); checkpoint step 20"
expect "flaky: stderr tail logged" contains "$L" "  | fake_job: boom at attempt 1"
expect "flaky: completion logged" contains "$L" "attempt 3: completed (exit 0)"
expect "flaky: log also on stdout" contains "$st/out" "attempt 3: completed"
expect "flaky: child stderr shown live" contains "$st/err" "fake_job: boom at attempt 1"
expect "flaky: back-off reset after progress" [ "$(grep -c 'in 1s' "$L")" -eq 2 ]
expect "flaky: back-off honoured ($(gap 1)s, $(gap 2)s)" ge "$(gap 1)" 1
expect "flaky: back-off honoured (2)" ge "$(gap 2)" 1

# 2. Crash loop: always fails at checkpoint 30. Back-off doubles: 1 s, 2 s.
fresh loop
"$SUP" --backoff 1 --backoff-max 10 --same-step-limit 3 --run-dir "$st/run" -- "$JOB" "$st" loop >"$st/out" 2>&1
rc=$?
L="$st/run/supervisor.log"
expect "loop: exit 5 (got $rc)" [ "$rc" -eq 5 ]
expect "loop: 3 attempts" [ "$(attempts)" -eq 3 ]
expect "loop: clear message" contains "$L" "crash loop: 3 consecutive failures at checkpoint step 30 without progress; stopping"
expect "loop: first delay 1s" contains "$L" "restart 1/10 in 1s"
expect "loop: doubled delay 2s" contains "$L" "restart 2/10 in 2s"
expect "loop: gap 1 >= 1s ($(gap 1))" ge "$(gap 1)" 1
expect "loop: gap 2 >= 2s ($(gap 2))" ge "$(gap 2)" 2

# 3. Progress every time, but the restart budget runs out.
fresh budget
"$SUP" --backoff 0.2 --max-restarts 2 --step-file "$st/run/latest" --log "$st/sup.log" -- "$JOB" "$st" progress >/dev/null 2>&1
rc=$?
expect "budget: exit 6 (got $rc)" [ "$rc" -eq 6 ]
expect "budget: 3 attempts" [ "$(attempts)" -eq 3 ]
expect "budget: message" contains "$st/sup.log" "giving up: 2 restarts used (--max-restarts 2)"

# 4. Config error: not retried.
fresh config
"$SUP" --backoff 0 --run-dir "$st/run" -- "$JOB" "$st" config >/dev/null 2>&1
rc=$?
expect "config: exit 2 (got $rc)" [ "$rc" -eq 2 ]
expect "config: 1 attempt" [ "$(attempts)" -eq 1 ]
expect "config: reason logged" contains "$st/run/supervisor.log" "unknown key train.stepz"

# 5. Pre-emption: passed up by default; restarted at once on request.
fresh preempt
"$SUP" --backoff 30 --run-dir "$st/run" -- "$JOB" "$st" preempt >/dev/null 2>&1
rc=$?
expect "preempt: exit 4 (got $rc)" [ "$rc" -eq 4 ]
expect "preempt: 1 attempt" [ "$(attempts)" -eq 1 ]
fresh preempt2
SECONDS=0
"$SUP" --backoff 30 --restart-on-preempt --run-dir "$st/run" -- "$JOB" "$st" preempt >/dev/null 2>&1
rc=$?
expect "restart-on-preempt: exit 0 (got $rc)" [ "$rc" -eq 0 ]
expect "restart-on-preempt: 2 attempts" [ "$(attempts)" -eq 2 ]
expect "restart-on-preempt: no back-off (${SECONDS}s)" [ "$SECONDS" -lt 20 ]

# 6. A stop signal to the supervisor reaches the job; no restart follows.
fresh signal
"$SUP" --backoff 0 --run-dir "$st/run" -- "$JOB" "$st" wait >"$st/out" 2>&1 &
sp=$!
for _ in $(seq 100); do [ -e "$st/ready.0" ] && break; sleep 0.1; done
kill -TERM "$sp"
wait "$sp"
rc=$?
expect "signal: exit 4 (got $rc)" [ "$rc" -eq 4 ]
expect "signal: 1 attempt" [ "$(attempts)" -eq 1 ]
expect "signal: job got it" contains "$st/out" "fake_job: rank 0 got stop signal"
expect "signal: logged" contains "$st/run/supervisor.log" "received SIGTERM"

# 7. Under mpirun: a rank SIGKILLed on the first attempt; then a stop signal
#    forwarded as SIGUSR1 through mpirun to every rank.
fresh mpikill
"$SUP" --backoff 0.5 --run-dir "$st/run" -- "$MPIRUN" "${MPIARGS[@]}" -np 2 "$JOB" "$st" mpikill >"$st/out" 2>&1
rc=$?
expect "mpi kill: exit 0 (got $rc)" [ "$rc" -eq 0 ]
expect "mpi kill: 2 attempts" [ "$(attempts)" -eq 2 ]
expect "mpi kill: cause logged" contains "$st/run/supervisor.log" "killed by signal 9"
fresh mpisignal
"$SUP" --backoff 0 --run-dir "$st/run" -- "$MPIRUN" "${MPIARGS[@]}" -np 2 "$JOB" "$st" wait >"$st/out" 2>&1 &
sp=$!
for _ in $(seq 150); do [ -e "$st/ready.0" ] && [ -e "$st/ready.1" ] && break; sleep 0.1; done
kill -TERM "$sp"
wait "$sp"
rc=$?
expect "mpi signal: exit 4 (got $rc)" [ "$rc" -eq 4 ]
expect "mpi signal: rank 0 stopped" contains "$st/out" "fake_job: rank 0 got stop signal"
expect "mpi signal: rank 1 stopped" contains "$st/out" "fake_job: rank 1 got stop signal"

# 8. A job that prints its abort but does not end (mpirun waiting for an
#    unreachable node's daemon): after --abort-grace the supervisor sends
#    SIGTERM to the job's process group, then SIGKILL (the job ignores
#    SIGTERM), and restarts. A job that aborts and exits by itself is left
#    alone.
fresh stuck
SECONDS=0
"$SUP" --backoff 0 --abort-grace 1 --run-dir "$st/run" -- "$JOB" "$st" stuck >"$st/out" 2>&1
rc=$?
L="$st/run/supervisor.log"
expect "stuck: exit 0 (got $rc)" [ "$rc" -eq 0 ]
expect "stuck: 3 attempts" [ "$(attempts)" -eq 3 ]
expect "stuck: ended within grace + kill wait (${SECONDS}s)" [ "$SECONDS" -lt 20 ]
expect "stuck: abort seen" contains "$L" "attempt 1: the job is aborting (stderr: [rank 0@fake] error: watchdog: no progress"
expect "stuck: SIGTERM to the group" contains "$L" "attempt 1: still running 1s after the abort began"
expect "stuck: SIGKILL after SIGTERM" contains "$L" "attempt 1: still running 4s after SIGTERM: SIGKILL"
expect "stuck: cause logged" contains "$L" "exit code 137 (killed by signal 9, SIGKILL), after the supervisor ended it 1s into its abort"
expect "stuck: one kill only" [ "$(grep -c 'SIGTERM to its process group' "$L")" -eq 1 ]
expect "stuck: attempt 2 failed by itself" matches "$L" "attempt 2: FAILED after [0-9]+s: exit code 3 \(watchdog: a collective or step hung\); checkpoint"
# gone PID: the process has ended. A SIGKILLed child is reparented to init,
# which may take a moment to reap it: a zombie (state Z) counts as ended,
# and the check waits up to 5 s for the kill to land.
gone() {
  [ -n "$1" ] || return 1
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || return 0
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] && return 0
    sleep 0.1
  done
  return 1
}
expect "stuck: the job's child was killed too" gone "$(cat "$st/stuck.child" 2>/dev/null)"

# 9. Usage errors.
"$SUP" --max-restarts 3 >/dev/null 2>&1; rc=$?
expect "no command: exit 2 (got $rc)" [ "$rc" -eq 2 ]
"$SUP" --bogus -- true >/dev/null 2>&1; rc=$?
expect "bad option: exit 2 (got $rc)" [ "$rc" -eq 2 ]
"$SUP" --backoff soon -- true >/dev/null 2>&1; rc=$?
expect "bad backoff: exit 2 (got $rc)" [ "$rc" -eq 2 ]
"$SUP" --abort-grace 1.5 -- true >/dev/null 2>&1; rc=$?
expect "bad abort grace: exit 2 (got $rc)" [ "$rc" -eq 2 ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
