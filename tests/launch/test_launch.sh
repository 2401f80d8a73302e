#!/usr/bin/env bash
# test_launch.sh dryrun | local MPIRUN: checks launch/baton-launch.
#   dryrun: the mpirun command generated for an 8-node x 8-GPU hostfile (tcp
#           with an interface, ib), for --hosts, and the usage errors.
#   local : really runs 2 ranks on this machine with --hosts localhost.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
L="$here/../../launch/baton-launch"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
has() { # has OUTPUT NEEDLE DESC
  if [[ "$1" == *"$2"* ]]; then ok; else bad "$3: '$2' not in: $1"; fi
}
hasnt() {
  if [[ "$1" != *"$2"* ]]; then ok; else bad "$3: '$2' unexpectedly in: $1"; fi
}
tmp="$(mktemp -d /tmp/bt_launch.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

dryrun() {
  hf="$tmp/hosts"
  { echo "# 8 nodes x 8 GPUs"; for i in 1 2 3 4 5 6 7 8; do echo "node$i slots=8   # rack A"; done; echo; } >"$hf"
  out="$(env -i PATH="$PATH" HOME="$HOME" NCCL_DEBUG=INFO NCCL_IB_HCA=mlx5_0 CUDA_VISIBLE_DEVICES=0,1 \
        BATON_FAULT=x OMP_NUM_THREADS=4 LD_LIBRARY_PATH=/opt/lib UNRELATED=1 \
        "$L" --hostfile "$hf" --net tcp --iface eth1 --numa-per-node 2 --dry-run -- baton train cfg.ini --run-dir /runs/a)"
  rc=$?
  [ "$rc" -eq 0 ] && ok || bad "dry-run exit $rc"
  [[ "$out" == "+ mpirun "* ]] && ok || bad "starts with '+ mpirun': $out"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && ok || bad "one line: $out"
  has "$out" "--hostfile $hf" hostfile
  has "$out" "-np 64 " "64 ranks"
  has "$out" "--map-by ppr:4:numa" "ppr mapping: GPUs 0-3 on NUMA 0 (test_placement.sh)"
  has "$out" "--bind-to numa" "numa binding"
  has "$out" "--mca pml ob1 --mca btl tcp,self,vader" "tcp transports"
  has "$out" "--mca btl_tcp_if_include eth1" "tcp iface"
  has "$out" "--mca oob_tcp_if_include eth1" "oob iface"
  for v in NCCL_DEBUG NCCL_IB_HCA NCCL_SOCKET_IFNAME CUDA_VISIBLE_DEVICES BATON_FAULT OMP_NUM_THREADS PATH LD_LIBRARY_PATH; do
    has "$out" "-x $v " "passthrough of $v"
  done
  hasnt "$out" "UNRELATED" "no unrelated variables"
  [[ "$out" == *" baton train cfg.ini --run-dir /runs/a" ]] && ok || bad "command at the end: $out"

  out="$("$L" --hostfile "$hf" --net ib --dry-run -- baton train c.ini)"
  has "$out" "--mca pml ucx" "ib uses ucx"
  hasnt "$out" "btl tcp" "ib has no tcp btl"

  out="$("$L" --hosts a,b,c --gpus-per-node 4 --bind-to none --dry-run -- baton train 'my cfg.ini')"
  has "$out" "--host a:4,b:4,c:4 -np 12 --map-by ppr:4:node --bind-to none" "--hosts form"
  has "$out" "'my cfg.ini'" "quoted argument"
  hasnt "$out" "--mca" "--net auto sets no transports"

  # --gpus-per-node overrides the hostfile's slots.
  out="$("$L" --hostfile "$hf" --gpus-per-node 2 --numa-per-node 1 --dry-run -- x)"
  has "$out" "-np 16 --map-by ppr:2:node" "gpus-per-node override"

  # The printed command is what a shell would run: eval it with a fake mpirun.
  printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/argv"\n' "$tmp" >"$tmp/fake-mpirun"
  chmod +x "$tmp/fake-mpirun"
  "$L" --hosts h1 --gpus-per-node 1 --mpirun "$tmp/fake-mpirun" -- echo "a b" "it's" >/dev/null
  [ "$(tail -n 3 "$tmp/argv" | tr '\n' '|')" = "echo|a b|it's|" ] && ok || bad "argv passed intact: $(tr '\n' '|' <"$tmp/argv")"

  # Usage errors: exit 2 and a message, nothing run.
  printf 'n1 slots=8\nn2 slots=4\n' >"$tmp/uneven"
  err() { # err DESC NEEDLE ARGS...
    local desc="$1" needle="$2"; shift 2
    local o; o="$("$L" "$@" 2>&1)"; local rc=$?
    [ "$rc" -eq 2 ] && ok || bad "$desc: exit $rc"
    has "$o" "$needle" "$desc message"
  }
  err "uneven slots" "same GPU count" --hostfile "$tmp/uneven" --dry-run -- x
  err "no command" "no command" --hosts a --gpus-per-node 1
  err "no hosts" "--hostfile FILE or --hosts" --dry-run -- x
  err "hosts without gpus" "--gpus-per-node" --hosts a -- x
  err "bad net" "--net must be" --hosts a --gpus-per-node 1 --net carrier-pigeon -- x
  err "iface without tcp" "--iface needs --net tcp" --hosts a --gpus-per-node 1 --iface eth0 -- x
  err "missing hostfile" "cannot read" --hostfile "$tmp/nope" -- x
  err "unknown option" "unknown option" --frobnicate -- x
}

local_run() {
  mpirun="$1"
  margs="--oversubscribe --allow-run-as-root --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
  out="$(BATON_TEST_VALUE=42 "$L" --hosts localhost --gpus-per-node 2 --mpirun "$mpirun" --mpirun-args "$margs" \
         -- /bin/true 2>&1)"
  rc=$?
  [ "$rc" -eq 0 ] && ok || bad "2 ranks of /bin/true: exit $rc: $out"
  has "$out" "+ " "command printed"
  out="$(BATON_TEST_VALUE=42 "$L" --hosts localhost --gpus-per-node 2 --mpirun "$mpirun" --mpirun-args "$margs" \
         -- /bin/sh -c 'echo "rank=$OMPI_COMM_WORLD_RANK local=$OMPI_COMM_WORLD_LOCAL_RANK v=$BATON_TEST_VALUE"' 2>&1)"
  has "$out" "rank=0 local=0 v=42" "rank 0 ran with the variable"
  has "$out" "rank=1 local=1 v=42" "rank 1 ran with the variable"
  "$L" --hosts localhost --gpus-per-node 2 --mpirun "$mpirun" --mpirun-args "$margs" -- /bin/sh -c 'exit 3' >/dev/null 2>&1
  rc=$?
  [ "$rc" -eq 3 ] && ok || bad "exit status passes through: $rc"
}

case "${1:-}" in
  dryrun) dryrun ;;
  local) local_run "${2:-mpirun}" ;;
  *) echo "usage: test_launch.sh dryrun | local MPIRUN" >&2; exit 2 ;;
esac
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
