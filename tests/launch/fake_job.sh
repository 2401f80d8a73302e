#!/usr/bin/env bash
# fake_job.sh STATE_DIR MODE: a stand-in for `baton train` that the
# supervisor tests drive. Each run appends "<attempt> <unix time>" to
# STATE_DIR/attempts and behaves by MODE and attempt number:
#   flaky    1: ckpt 10, exit 1   2: ckpt 20, SIGKILL itself   3+: exit 0
#   loop     every run: ckpt 30, exit 1 (a crash loop)
#   progress every run: ckpt 10*attempt, exit 1 (fails, but makes progress)
#   config   exit 2
#   preempt  1: exit 4   2+: exit 0
#   wait     waits for SIGUSR1/SIGTERM, then exits 4 ("checkpointed")
#   stuck    1: prints a watchdog abort, then hangs ignoring SIGTERM, with a
#               child in its process group (pid in STATE_DIR/stuck.child)
#            2: prints a watchdog abort, exits 3   3+: exit 0
# Under mpirun (OMPI_COMM_WORLD_RANK set) only rank 0 records attempts and
# writes the checkpoint pointer; mode "mpikill" SIGKILLs rank 1 on attempt 1.
set -u
state="$1" mode="$2"
rank="${OMPI_COMM_WORLD_RANK:-0}"
# Every rank counts its own starts (no race between ranks); rank 0 records.
n=$(( $(cat "$state/count.$rank" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$state/count.$rank"
if [ "$rank" = 0 ]; then echo "$n $(date +%s.%N)" >>"$state/attempts"; fi
ckpt() { [ "$rank" != 0 ] || printf 'ckpt-%08d' "$1" >"$state/run/latest"; }
echo "fake_job: attempt $n mode $mode rank $rank" >&2
case "$mode" in
  flaky)
    case "$n" in
      1) ckpt 10; echo "fake_job: boom at attempt 1" >&2; exit 1 ;;
      2) ckpt 20; echo "fake_job: about to be killed" >&2; kill -9 $$ ;;
      *) exit 0 ;;
    esac ;;
  loop) ckpt 30; echo "fake_job: same failure again" >&2; exit 1 ;;
  progress) ckpt $((10 * n)); exit 1 ;;
  config) echo "fake_job: unknown key train.stepz" >&2; exit 2 ;;
  preempt) [ "$n" -ge 2 ] || exit 4; exit 0 ;;
  wait)
    trap 'echo "fake_job: rank $rank got stop signal" >&2; exit 4' USR1 TERM
    echo ready >"$state/ready.$rank"
    for _ in $(seq 600); do sleep 0.1; done
    exit 1 ;;
  stuck)
    case "$n" in
      1)
        echo "[rank 0@fake] error: watchdog: no progress for 5.0 s in loss all-reduce at step 7; aborting the job (exit code 3)" >&2
        trap '' TERM # inherited: the child ignores it too
        sleep 300 &
        echo $! >"$state/stuck.child"
        for _ in $(seq 3000); do sleep 0.1; done
        exit 1 ;;
      2) echo "[rank 0@fake] error: watchdog: no progress for 5.0 s at step 7; aborting the job (exit code 3)" >&2; exit 3 ;;
      *) exit 0 ;;
    esac ;;
  mpikill)
    if [ "$n" = 1 ] && [ "$rank" = 1 ]; then sleep 0.5; kill -9 $$; fi
    [ "$n" = 1 ] && sleep 5
    exit 0 ;;
  *) echo "fake_job: unknown mode $mode" >&2; exit 99 ;;
esac
