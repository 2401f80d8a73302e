#!/usr/bin/env bash
# tests/ckpt/crash_mpi.sh TEST_CKPT_MPI MPIEXEC...
#
# A machine dies during a multi-rank checkpoint: for each fault point, a
# 4-rank job saves step 10, then a second 4-rank job saving step 20 is
# killed there (BATON_FAULT; ckpt.write kills rank 1 halfway through one of
# its payloads, the others kill rank 0). The run must then resume on 3
# ranks from the newest complete checkpoint (10, or 20 when the kill came
# after the rename), with every element right, and a new 2-rank job must
# remove the stale temporary directory and save step 30.
set -uo pipefail
bin=$1
shift
mpiexec=("$@")
fail=0
for fault in ckpt.write:2@1 ckpt.before_manifest:1 ckpt.before_rename:1 ckpt.before_latest:1; do
  run=$(mktemp -d /tmp/baton-crash-mpi.XXXXXX)
  want=10
  [ "$fault" = ckpt.before_latest:1 ] && want=20
  if ! "${mpiexec[@]}" -np 4 "$bin" save "$run" 10 >"$run.log" 2>&1; then
    echo "FAIL $fault: first save"; cat "$run.log"; fail=1; continue
  fi
  if BATON_FAULT=$fault "${mpiexec[@]}" -x BATON_FAULT -np 4 "$bin" save "$run" 20 >"$run.log" 2>&1; then
    echo "FAIL $fault: the job was not killed"; fail=1
  fi
  # What the kill must have left behind (proof that it hit where asked).
  tmp="$run/.tmp-ckpt-00000020"
  case $fault in
    ckpt.write*) left=$([ -d "$tmp" ] && [ ! -e "$tmp/manifest.json" ] && echo ok) ;;
    ckpt.before_manifest*) left=$([ -d "$tmp" ] && [ ! -e "$tmp/manifest.json" ] &&
                                  ls "$tmp"/adam_v.r3.* >/dev/null 2>&1 && echo ok) ;;
    ckpt.before_rename*) left=$([ -f "$tmp/manifest.json" ] && echo ok) ;;
    ckpt.before_latest*) left=$([ ! -e "$tmp" ] && [ -d "$run/ckpt-00000020" ] &&
                                grep -q ckpt-00000010 "$run/latest" && echo ok) ;;
  esac
  if [ "$left" != ok ]; then
    echo "FAIL $fault: unexpected leftovers"; ls -la "$run" "$tmp" 2>&1; fail=1
  fi
  if ! "${mpiexec[@]}" -np 3 "$bin" check "$run" "$want" >"$run.log" 2>&1; then
    echo "FAIL $fault: resume on 3 ranks did not find step $want"; cat "$run.log"; fail=1
  else
    echo "ok   $fault: killed; leftovers as expected; resumed on 3 ranks from step $want"
  fi
  if ! "${mpiexec[@]}" -np 2 "$bin" save "$run" 30 >"$run.log" 2>&1 ||
     ls -d "$run"/.tmp-ckpt-* >/dev/null 2>&1 ||
     ! "${mpiexec[@]}" -np 2 "$bin" check "$run" 30 >>"$run.log" 2>&1; then
    echo "FAIL $fault: save of step 30 after the crash"; cat "$run.log"; ls -la "$run"; fail=1
  fi
  rm -rf "$run" "$run.log"
done
[ $fail = 0 ] && echo "crash_mpi: all fault points passed"
exit $fail
