#!/usr/bin/env bash
# slowlink.sh: a slow, lossy link names its node (issue 16 item 1's last
# test; docs/operations.md, "Stragglers"). 3 nodes x 2 ranks train twice:
#   - plain: every link healthy; nobody may be named (no straggler/ tag,
#     no "slow link" on the progress line);
#   - slow: node 2's incoming packets held 50 ms and 1 % of them dropped
#     (nfq_delay behind an iptables NFQUEUE rule, lib.sh mn_delay). The run
#     must complete; metrics.jsonl must name node2 (straggler/link_host/node2
#     = 4, straggler/link_rank = 4) from the third log interval on (the
#     default train.straggler_intervals), never another host, and never
#     name a compute straggler (busy time does not grow with a slow link);
#     the progress line says "slow link rank 4@node2" and one warning
#     "slow link: host node2 (rank 4) ..." is logged; nfq_delay must have
#     delayed and dropped packets (else the run proved nothing).
# Prints the median step time of both runs ("timing: ...",
# docs/operations.md).
# Environment: BATON, MPIRUN, PY, NFQ_DELAY (the nfq_delay program; empty
# when libnetfilter-queue was missing at configure time).
set -euo pipefail
: "${BATON:?}" "${MPIRUN:?}" "${PY:?}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
source "$here/lib.sh"
mn_require
if [ -z "${NFQ_DELAY:-}" ] || [ ! -x "$NFQ_DELAY" ]; then
  echo "SKIP: nfq_delay was not built (install libnetfilter-queue-dev: launch/install-deps.sh, then re-run cmake)"
  exit 77
fi
if ! command -v iptables >/dev/null; then
  echo "SKIP: no 'iptables' command (install iptables: launch/install-deps.sh)"
  exit 77
fi
nodes=3 g=2 victim=2 steps=40 every=5
w="$(mktemp -d /tmp/bt_mn.XXXXXX)"
if [ "${BATON_MN_KEEP:-0}" = 1 ]; then echo "work dir: $w"; else trap 'rm -rf "$w"' EXIT; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

mn_setup "$nodes" "$w"
mn_hostfile "$w/hosts" "$g"
# run NAME: the 3x2 job from the head node; output in $w/NAME.out.
run() {
  mn_head "$root/launch/baton-launch" --hostfile "$w/hosts" --net tcp --iface "$MN_IF" \
    --bind-to none --mpirun "${MPIRUN%% *}" --mpirun-args "$(mn_mpi_args)" -- \
    "$BATON" train "$root/tests/train/micro.ini" --resume never --set train.steps=$steps \
    --set train.batch_size=12 --set train.log_every=$every --run-dir "$w/$1" \
    >"$w/$1.out" 2>&1 || { tail -n 40 "$w/$1.out"; fail "the $1 run failed"; }
}
run plain
ok "the plain 3x2 run completed"
mn_delay "$victim" 50 1 7 || fail "cannot start nfq_delay on node$victim"
run slow
mn_delay_stats "$victim" >"$w/nfq.stats"
stats="$(cat "$w/nfq.stats")"
echo "$stats"
[[ "$stats" =~ nfq_delay:\ ([0-9]+)\ packets,\ ([0-9]+)\ dropped ]] || fail "no counts from nfq_delay"
[ "${BASH_REMATCH[1]}" -gt 100 ] && [ "${BASH_REMATCH[2]}" -gt 0 ] ||
  fail "nfq_delay saw ${BASH_REMATCH[1]} packets, dropped ${BASH_REMATCH[2]}: the slow link was not exercised"
ok "the run through the slow link completed (node$victim: ${BASH_REMATCH[1]} packets held 50 ms, ${BASH_REMATCH[2]} dropped)"

"$PY" - "$w/plain/metrics.jsonl" "$w/slow/metrics.jsonl" $steps $every <<'PY' || fail "metrics"
import json, statistics, sys
plain, slow = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
steps, every = int(sys.argv[3]), int(sys.argv[4])
logged = list(range(every, steps + 1, every))
for name, rows in (("plain", plain), ("slow", slow)):
    got = [r["step"] for r in rows if "time/link_ping_max_ms" in r]
    assert got == logged, (name, "link ping at log steps", got)
bad = [r for r in plain if any(k.startswith("straggler/") for k in r)]
assert not bad, ("named without a slow link", bad[0])
assert not any("straggler/rank" in r for r in slow), "a compute straggler named"
others = [k for r in slow for k in r
          if k.startswith("straggler/link_host/") and k != "straggler/link_host/node2"]
assert not others, ("another host named", others)
named = [r["step"] for r in slow if r.get("straggler/link_host/node2") == 4
         and r.get("straggler/link_rank") == 4]
# Persistent = 3 intervals: log steps 5, 10 and 15 build it up.
assert named == logged[2:], ("node2 named at", named, "expected", logged[2:])
ping = [r["straggler/link_ms"] for r in slow if "straggler/link_ms" in r]
assert min(ping) >= 45, ("node2's round trip under the 50 ms delay", ping)
lm = [r["time/link_ping_median_ms"] for r in slow if "time/link_ping_median_ms" in r]
med = lambda rows: statistics.median(r["time/step_ms"] for r in rows if r["step"] > every)
print("timing: median step %.1f ms with healthy links, %.1f ms with 50 ms + 1 %% loss into "
      "node2 (x%.0f); node2's round trip to rank 0 %.0f..%.0f ms, the median host's "
      "%.2f..%.2f ms" % (med(plain), med(slow), med(slow) / med(plain), min(ping), max(ping),
      min(lm), max(lm)))
PY
ok "metrics name node2 (rank 4) as the slow link from the third log interval, nobody else, and nobody without the delay"
grep -q "slow link rank 4@node2" "$w/slow.out" || fail "the progress line does not name rank 4@node2"
[ "$(grep -c "slow link: host node2 (rank 4)" "$w/slow.out")" = 1 ] ||
  fail "expected one warning naming node2"
! grep -q "slow link" "$w/plain.out" || fail "a slow link named with healthy links"
grep -m1 "slow link rank" "$w/slow.out"
ok "the progress line and one warning name node2"
echo "$pass passed, 0 failed"
