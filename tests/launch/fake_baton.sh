#!/usr/bin/env bash
# fake_baton.sh: a stand-in for `baton train` with the interface that
# supervisor_e2e.sh relies on, so that the e2e script itself is tested
# before the real trainer exists (ctest launch_supervisor_e2e_selftest):
#   fake_baton.sh train CONFIG --run-dir DIR [--set train.steps=N]
#                 [--set checkpoint.every=E] [--dump-params FILE]
# Resumes from DIR/latest ("ckpt-<step>"), honours BATON_FAULT=
# "train.step:K@R" (SIGKILL on rank R at this process's K-th step), writes
# DIR/latest every E steps and metrics.jsonl lines on rank 0, and dumps
# "parameters" that depend only on N.
rank=${OMPI_COMM_WORLD_RANK:-0}
shift; cfg=$1; shift
steps=10 every=5 run="" dump=""
while [ $# -gt 0 ]; do case "$1" in
  --set) case "$2" in train.steps=*) steps=${2#*=};; checkpoint.every=*) every=${2#*=};; esac; shift 2;;
  --run-dir) run=$2; shift 2;; --dump-params) dump=$2; shift 2;; *) shift;; esac; done
mkdir -p "$run"
start=0; [ -e "$run/latest" ] && start=$((10#$(tr -cd 0-9 <"$run/latest")))
fk=""; fr=""
if [ -n "${BATON_FAULT:-}" ]; then f=${BATON_FAULT#train.step:}; fk=${f%@*}; fr=${f#*@}; fi
n=0
for ((s=start+1; s<=steps; s++)); do
  n=$((n+1))
  if [ "$n" = "$fk" ] && [ "$rank" = "$fr" ]; then kill -9 $$; fi
  sleep 0.05
  [ $rank = 0 ] && echo "{\"step\":$s,\"time\":1.0,\"train/loss\":$((1000/s))}" >>"$run/metrics.jsonl"
  # metrics of a step are written before its checkpoint: otherwise a kill
  # between the two loses that step's line for good
  if [ $((s % every)) = 0 ] && [ $rank = 0 ]; then printf 'ckpt-%08d' $s >"$run/latest.tmp"; mv "$run/latest.tmp" "$run/latest"; fi
done
[ $rank = 0 ] && echo "params after $steps" >"$dump"
exit 0
