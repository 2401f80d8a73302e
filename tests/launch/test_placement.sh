#!/usr/bin/env bash
# test_placement.sh MPIRUN: rank placement of launch/baton-launch (issue 16
# item 5), checked with Open MPI's own mapper on a synthetic hwloc topology
# (HWLOC_SYNTHETIC: 2 sockets, one NUMA domain and 8 cores each), so that
# nothing depends on this machine's shape; --do-not-launch maps and stops.
#   - 2 nodes x 8 GPUs: local rank i lands in NUMA domain i / 4 (the domain
#     of GPU i on an HGX board); the old `--map-by ppr:8:node --bind-to
#     numa` alternates domains on the same topology (the control: the check
#     can fail).
#   - --bind-to socket: ppr:4:socket, same placement.
#   - the bindings are printed (--report-bindings; Open MPI 5 --display
#     bindings), Open MPI 4 and 5 names (version from `mpirun --version`,
#     or --ompi-version), and quoted --mpirun-args / --mpirun-arg reach
#     mpirun intact.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
L="$here/../../launch/baton-launch"
MPIRUN="${1:-mpirun}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
has() { if [[ "$1" == *"$2"* ]]; then ok; else bad "$3: '$2' not in: $1"; fi; }
hasnt() { if [[ "$1" != *"$2"* ]]; then ok; else bad "$3: '$2' unexpectedly in: $1"; fi; }
tmp="$(mktemp -d /tmp/bt_place.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export HWLOC_SYNTHETIC="pack:2 numa:1 core:8 pu:1"
margs="--allow-run-as-root --oversubscribe --do-not-launch --display-devel-map"

# domains FILE: "rank local_rank domain" per process of a --display-devel-map
# output; domain = which bracket group of the Binding (head node) or, for
# a node mpirun did not start, the Locale it mapped to, holds the B's.
domains() {
  awk '
    /App rank:/ { for (i = 1; i <= NF; i++) { if ($i == "Local") lr = $(i + 2); if ($i == "App") r = $(i + 2) } }
    /Locale:/ { loc = $2 }
    /Binding:/ { b = ($2 == "UNBOUND") ? loc : $2
      n = split(b, g, "]"); d = "?"
      for (i = 1; i <= n; i++) if (g[i] ~ /B/) { d = i - 1; break }
      print r, lr, d }' "$1"
}

# 1. numa (the default): 2 nodes x 8 GPUs.
out="$("$L" --hosts localhost,nodeB --gpus-per-node 8 --numa-per-node 2 --mpirun "$MPIRUN" \
       --mpirun-args "$margs" -- /bin/true 2>&1)"
rc=$?
[ "$rc" -eq 0 ] && ok || bad "numa mapping: exit $rc: $out"
has "$out" "--map-by ppr:4:numa --bind-to numa --report-bindings" "numa map and report"
printf '%s\n' "$out" >"$tmp/numa"
domains "$tmp/numa" >"$tmp/numa.d"
[ "$(wc -l <"$tmp/numa.d")" -eq 16 ] && ok || bad "16 processes mapped: $(cat "$tmp/numa.d")"
while read -r r lr d; do
  [ "$lr" -eq $((r % 8)) ] && [ "$d" = $((lr / 4)) ] && ok ||
    bad "rank $r (local $lr) in domain $d, want $((lr / 4))"
done <"$tmp/numa.d"
echo "numa:   $(awk '{printf "%s:%s ", $1, $3}' "$tmp/numa.d")"

# The control: the previous mapping alternates domains on this topology.
"$MPIRUN" $margs --host localhost:8 -np 8 --map-by ppr:8:node --bind-to numa /bin/true >"$tmp/old" 2>&1
domains "$tmp/old" >"$tmp/old.d"
[ "$(awk '{printf "%s", $3}' "$tmp/old.d")" = "01010101" ] && ok ||
  bad "control: ppr:8:node should alternate domains: $(cat "$tmp/old.d")"
echo "old:    $(awk '{printf "%s:%s ", $1, $3}' "$tmp/old.d")"

# 2. socket binding.
out="$("$L" --hosts localhost --gpus-per-node 8 --bind-to socket --sockets-per-node 2 --mpirun "$MPIRUN" \
       --mpirun-args "$margs" -- /bin/true 2>&1)"
has "$out" "--map-by ppr:4:socket --bind-to socket" "socket map"
printf '%s\n' "$out" >"$tmp/sock"
[ "$(domains "$tmp/sock" | awk '{printf "%s", $3}')" = "00001111" ] && ok ||
  bad "socket placement: $(domains "$tmp/sock")"

# 3. Uneven split: said, and the plain map kept.
out="$("$L" --hosts a --gpus-per-node 3 --numa-per-node 2 --ompi-version 4 --dry-run -- x 2>&1)"
has "$out" "do not split evenly" "uneven split warned"
has "$out" "--map-by ppr:3:node --bind-to numa" "uneven split map"
out="$("$L" --hosts a --gpus-per-node 8 --numa-per-node 2 --bind-to none --no-report-bindings --ompi-version 4 --dry-run -- x)"
has "$out" "--map-by ppr:8:node --bind-to none" "no binding: plain map"
hasnt "$out" "bindings" "--no-report-bindings"

# 4. Open MPI 5 names, chosen from `mpirun --version`.
printf '#!/bin/sh\n[ "$1" = --version ] && { echo "mpirun (Open MPI) 5.0.3"; exit 0; }\nprintf "%%s\\n" "$@" >"%s/argv"\n' "$tmp" >"$tmp/mpirun5"
printf '#!/bin/sh\n[ "$1" = --version ] && { echo "mpirun (Open MPI) 4.1.4"; exit 0; }\nprintf "%%s\\n" "$@" >"%s/argv"\n' "$tmp" >"$tmp/mpirun4"
chmod +x "$tmp/mpirun5" "$tmp/mpirun4"
out="$("$L" --hosts a,b --gpus-per-node 8 --numa-per-node 2 --net tcp --iface eth1 --mpirun "$tmp/mpirun5" --dry-run -- x)"
has "$out" "--display bindings" "5: display bindings"
has "$out" "--mca btl tcp,self,sm" "5: sm btl"
has "$out" "--prtemca oob_tcp_if_include eth1" "5: PRRTE oob interface"
hasnt "$out" "--report-bindings" "5: no --report-bindings"
hasnt "$out" "vader" "5: no vader"
out="$("$L" --hosts a,b --gpus-per-node 8 --numa-per-node 2 --net tcp --iface eth1 --mpirun "$tmp/mpirun4" --dry-run -- x)"
has "$out" "--report-bindings" "4: report bindings"
has "$out" "--mca btl tcp,self,vader" "4: vader btl"
has "$out" "--mca oob_tcp_if_include eth1" "4: ORTE oob interface"
out="$("$L" --hosts a --gpus-per-node 1 --mpirun "$tmp/mpirun4" --ompi-version 5 --dry-run -- x)"
has "$out" "--display bindings" "--ompi-version overrides"
o="$("$L" --hosts a --gpus-per-node 1 --ompi-version 3 --dry-run -- x 2>&1)"; rc=$?
[ "$rc" -eq 2 ] && ok || bad "--ompi-version 3: exit $rc"
has "$o" "must be 4 or 5" "bad version message"

# 5. Quoted mpirun arguments reach mpirun as the words a shell would make.
env -i PATH="$PATH" "$L" --hosts h1 --gpus-per-node 1 --mpirun "$tmp/mpirun4" \
  --mpirun-args "--mca a 'two words' -x \"B=it's\" --tag back\\ slash" \
  --mpirun-arg 'C=a "b" c' -- prog "arg with space" >"$tmp/printed"
got="$(sed -n '/^--report-bindings$/,$p' "$tmp/argv" | tr '\n' '|')"
want="--report-bindings|-x|BATON_EXIT_FILE|-x|PATH|--mca|a|two words|-x|B=it's|--tag|back slash|C=a \"b\" c|prog|arg with space|"
[ "$got" = "$want" ] && ok || bad "argv: got $got want $want"
# ... and the printed command, run by a shell, gives the same argv.
cp "$tmp/argv" "$tmp/argv.direct"
(PATH="$tmp:$PATH"; eval "$(sed 's/^+ //' "$tmp/printed")")
cmp -s "$tmp/argv" "$tmp/argv.direct" && ok || bad "printed command differs: $(cat "$tmp/printed")"
o="$("$L" --hosts a --gpus-per-node 1 --mpirun-args "--mca 'unclosed" --ompi-version 4 --dry-run -- x 2>&1)"; rc=$?
[ "$rc" -eq 2 ] && ok || bad "unbalanced quote: exit $rc"
has "$o" "unbalanced quotes" "unbalanced quote message"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
