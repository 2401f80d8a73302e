#!/usr/bin/env bash
# equal.sh NODES G [LOSS]: a NODES x G `baton train` over TCP between simulated
# nodes (lib.sh), launched by launch/baton-launch with a hostfile from the
# head node, computes what the single-host runs compute:
#   - bitwise the same losses (every logged step) and final parameters as
#     NODES*G ranks on one host over shared memory: the reduction order
#     depends on the rank count only, never on the transport;
#   - final parameters within the 1e-5 relative difference of the
#     equivalence tests (tests/train/equivalence.sh) of one rank with the
#     whole batch (same global batch, different summation order).
# With LOSS (a percentage), node 1 drops that share of the packets it
# receives (nftables); TCP retransmits, so the results must not change, and
# at least one packet must have been dropped (else the run proved nothing).
# Environment: BATON, MPIRUN (local mpirun with its flags), PY.
set -euo pipefail
: "${BATON:?}" "${MPIRUN:?}" "${PY:?}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
source "$here/lib.sh"
mn_require
nodes="$1" g="$2" np=$(($1 * $2)) loss="${3:-}"
if [ -n "$loss" ] && ! command -v nft >/dev/null; then
  echo "SKIP: no 'nft' command (install nftables: launch/install-deps.sh)"
  exit 77
fi
cfg="$root/tests/train/micro.ini"
w="$(mktemp -d /tmp/bt_mn.XXXXXX)"
if [ "${BATON_MN_KEEP:-0}" = 1 ]; then echo "work dir: $w"; else trap 'rm -rf "$w"' EXIT; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# With loss, more steps: ~3000 packets reach node 1, so that a run without
# a single drop (probability 0.99^3000) cannot happen by chance.
steps=20
[ -z "$loss" ] || steps=100
train=(train "$cfg" --resume never --set train.steps=$steps)

t0=$(date +%s%N)
mn_setup "$nodes" "$w"
ms=$((($(date +%s%N) - t0) / 1000000))
# Well under a second on a quiet machine (the figure is printed); the
# bound is 5 s because six builds beside this test took teardown to 2.2 s.
[ "$ms" -lt 5000 ] || fail "setting up $nodes nodes took $ms ms (limit 5000)"
ok "$nodes nodes set up in $ms ms"
mn_hostfile "$w/hosts" "$g"
if [ -n "$loss" ]; then
  mn_loss 1 "$loss" || fail "cannot install the nftables loss rule on node1"
fi
t0=$(date +%s%N)
mn_head "$root/launch/baton-launch" --hostfile "$w/hosts" --net tcp --iface "$MN_IF" \
  --bind-to none --mpirun "${MPIRUN%% *}" --mpirun-args "$(mn_mpi_args)" -- \
  "$BATON" "${train[@]}" --run-dir "$w/multi" --dump-params "$w/multi.f32" >"$w/multi.out" 2>&1 ||
  { cat "$w/multi.out"; fail "the ${nodes}x$g run failed"; }
grep -q "$np ranks (mpi)" "$w/multi.out" || { cat "$w/multi.out"; fail "not $np ranks"; }
# The other nodes were reached through the agent (node 0 is mpirun's own).
for ((i = 1; i < nodes; i++)); do
  grep -q "^node$i " "$w/agent.log" || { cat "$w/agent.log"; fail "node$i was never launched on"; }
done
ms=$((($(date +%s%N) - t0) / 1000000))
ok "${nodes}x$g run over TCP completed in $ms ms"
if [ -n "$loss" ]; then
  d="$(mn_loss_dropped 1)"
  [ "${d:-0}" -gt 0 ] || fail "node1 dropped no packet: the loss was not exercised"
  ok "node1 dropped $d packets ($loss % loss)"
fi

$MPIRUN -np "$np" "$BATON" "${train[@]}" --run-dir "$w/local" --dump-params "$w/local.f32" \
  >"$w/local.out" 2>&1 || { cat "$w/local.out"; fail "the single-host $np-rank run failed"; }
"$BATON" "${train[@]}" --run-dir "$w/one" --dump-params "$w/one.f32" >"$w/one.out" 2>&1 ||
  { cat "$w/one.out"; fail "the 1-rank run failed"; }

"$PY" - "$w/multi/metrics.jsonl" "$w/local/metrics.jsonl" <<'PY' || fail "losses differ from the single-host run"
import json, sys
def losses(p):
    return [json.loads(l)["train/loss"] for l in open(p) if l.strip()]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
print("losses: %d logged, first %r, last %r" % (len(a), a[0], a[-1]))
assert len(a) >= 2 and a == b, ("multi-node", a, "single host", b)
PY
ok "losses bitwise equal to the single-host $np-rank run"
cmp -s "$w/multi.f32" "$w/local.f32" || fail "final parameters differ from the single-host $np-rank run"
ok "final parameters bitwise equal to the single-host $np-rank run"
e=$("$PY" - "$w/multi.f32" "$w/one.f32" "$w/multi/metrics.jsonl" <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32).astype(np.float64)
b = np.fromfile(sys.argv[2], np.float32).astype(np.float64)
assert a.shape == b.shape and a.size > 0
print("%.3e" % (np.linalg.norm(a - b) / np.linalg.norm(b)))
PY
)
"$PY" -c "import sys; sys.exit(0 if $e <= 1e-5 else 1)" || fail "relative difference to 1 rank $e > 1e-5"
ok "final parameters within $e (limit 1e-5) of the 1-rank run"
# The comparison must be able to fail: training moved the parameters.
"$BATON" train "$cfg" --resume never --set train.steps=1 --set optim.lr=0 \
  --run-dir "$w/init" --dump-params "$w/init.f32" >/dev/null 2>&1 || fail "the lr=0 run failed"
cmp -s "$w/one.f32" "$w/init.f32" && fail "training did not move the parameters: the checks prove nothing"
t0=$(date +%s%N)
mn_teardown
ms=$((($(date +%s%N) - t0) / 1000000))
[ -z "$(ip netns list | grep "^$MN_PREFIX")" ] || fail "namespaces left after teardown"
[ "$ms" -lt 5000 ] || fail "tearing down $nodes nodes took $ms ms (limit 5000)"
ok "$nodes nodes torn down in $ms ms"
echo "$pass passed, 0 failed"
