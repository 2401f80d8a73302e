#!/usr/bin/env bash
# demo-attempt.sh RUN COMMAND...: runs COMMAND; on the first attempt (no
# RUN/.demo-attempts yet) with BATON_FAULT set so that rank 1 is killed
# with SIGKILL at its step DEMO_KILL_STEP (default 800; launch/demo.sh and
# launch/speech-demo.sh). Lets the demos show a crash and an automatic
# resume under the supervisor; not needed for real runs.
set -euo pipefail
run=$1; shift
kill_step=${DEMO_KILL_STEP:-800}
n=$(cat "$run/.demo-attempts" 2>/dev/null || echo 0)
echo $((n + 1)) >"$run/.demo-attempts"
if [ "$n" = 0 ]; then
  echo "demo: attempt 1 -- rank 1 will be killed (SIGKILL) at its step $kill_step"
  # mpirun passes its environment to the ranks it starts on this node.
  exec env BATON_FAULT="train.step:$kill_step@1" "$@"
fi
exec "$@"
