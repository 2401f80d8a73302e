# lib.sh: simulated nodes on one machine for the multi-node tests (sourced).
#
# A "node" is a network namespace with its own loopback and one veth
# interface (eth0, 10.77.0.<i+1>/24) whose peer is a port of a bridge that
# lives in a namespace of its own, so the nodes talk over real TCP through a
# switch we can unplug: `mn_partition I` takes node I's switch port down.
# Processes are given to a node by `ip netns exec`; Open MPI reaches the
# nodes through the launch agent that mn_setup writes (--mca plm_rsh_agent),
# which does for "nodeI" what ssh would do for a real host: it runs the
# orted command line in node I's namespace, with its own host name (a UTS
# namespace, so "[rank R@host]" names the node). Open MPI puts each agent
# in a process group of its own, so, as with ssh to a real host, killing
# mpirun's process group does not reach the other nodes' processes.
#
# Invariants:
#   1. Every namespace this file creates is named "$MN_PREFIX..." with
#      MN_PREFIX unique to this shell (its pid), and is listed in MN_NS;
#      mn_teardown (run by the EXIT trap that mn_setup installs) kills every
#      process in each of them (`ip netns pids`) and deletes them, on
#      success, failure or signal.
#   2. Node 0 is the head: mpirun runs there (mn_head) under the host name
#      node0, so node 0's ranks are mpirun's own children, the other nodes'
#      ranks run under orted started by the agent. On the head, the names
#      node0..nodeN-1 resolve to the nodes' addresses (a private /etc/hosts
#      bound in a mount namespace, as a cluster's DNS would), so the
#      supervisor can probe them.
#   3. Nothing outside the namespaces is changed (no sysctl, no firewall
#      rule, no address of the host's own network stack).
#
# Needs root, iproute2 (ip) and util-linux (unshare, mount); where a
# namespace cannot be made, mn_require exits 77, which ctest reports as
# skipped, with the reason. mn_loss needs nft (nftables), mn_delay iptables
# and the nfq_delay test program (libnetfilter-queue); their tests skip
# without them.

MN_PREFIX="btmn$$"
MN_BR="${MN_PREFIX}br"
MN_NS=()
MN_N=0
MN_IF=eth0
MN_NET=10.77.0

mn_log() { echo "multinode: $*" >&2; }

# mn_require: exit 77 (skip) with the reason unless namespaces, veth pairs
# and bridges can be made here.
mn_require() {
  local why=""
  if [ "$(id -u)" -ne 0 ]; then why="not root (network namespaces need CAP_NET_ADMIN)"
  elif ! command -v ip >/dev/null; then why="no 'ip' command (install iproute2: launch/install-deps.sh)"
  elif ! command -v unshare >/dev/null; then why="no unshare (util-linux)"
  elif ! ip netns add "${MN_PREFIX}probe" 2>/dev/null; then why="cannot create a network namespace (ip netns add failed)"
  else
    if ! ip -n "${MN_PREFIX}probe" link add p0 type veth peer name p1 2>/dev/null ||
       ! ip -n "${MN_PREFIX}probe" link add b0 type bridge 2>/dev/null; then
      why="cannot create veth pairs or bridges in a namespace"
    fi
    ip netns del "${MN_PREFIX}probe" 2>/dev/null
  fi
  if [ -n "$why" ]; then
    echo "SKIP: multi-node tests need network namespaces: $why"
    exit 77
  fi
}

# mn_setup N DIR: N nodes, agent and hostfile helpers in DIR; installs the
# EXIT trap that tears everything down (chaining an EXIT trap set before).
mn_setup() {
  local n="$1" dir="$2" i ns
  MN_N="$n" MN_DIR="$dir"
  MN_OLD_TRAP="$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")"
  trap 'mn_teardown; eval "$MN_OLD_TRAP"' EXIT
  trap 'exit 130' INT TERM
  ip netns add "$MN_BR"
  MN_NS+=("$MN_BR")
  ip -n "$MN_BR" link set lo up
  ip -n "$MN_BR" link add br0 type bridge
  ip -n "$MN_BR" link set br0 up
  for ((i = 0; i < n; i++)); do
    ns="${MN_PREFIX}n$i"
    ip netns add "$ns"
    MN_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$ns" link add "$MN_IF" type veth peer name "port$i" netns "$MN_BR"
    ip -n "$ns" addr add "$MN_NET.$((i + 1))/24" dev "$MN_IF"
    ip -n "$ns" link set "$MN_IF" up
    ip -n "$MN_BR" link set "port$i" master br0 up
  done
  # The launch agent: `agent HOST CMD...` as Open MPI calls ssh. orted
  # arrives as one shell command line (quoted MCA values), so it goes
  # through sh -c, as sshd would run it. Each call is logged to
  # DIR/agent.log (which nodes were launched on).
  cat >"$dir/agent" <<AGENT
#!/bin/sh
# Launch agent for --mca plm_rsh_agent: runs CMD on simulated node HOST.
h="\$1"; shift
echo "\$h \$*" >>"$dir/agent.log"
case "\$h" in
  node[0-9]*) ns="${MN_PREFIX}n\${h#node}" ;;
  *) echo "agent: unknown host '\$h'" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c 'hostname "\$0" && exec sh -c "\$1"' "\$h" "\$*"
AGENT
  chmod +x "$dir/agent"
  cp /etc/hosts "$dir/etc.hosts"
  for ((i = 0; i < n; i++)); do echo "$MN_NET.$((i + 1)) node$i" >>"$dir/etc.hosts"; done
}

# mn_hostfile FILE G [NODES]: Open MPI hostfile, G slots on each of the first
# NODES (default all) nodes.
mn_hostfile() {
  local f="$1" g="$2" k="${3:-$MN_N}" i
  : >"$f"
  for ((i = 0; i < k; i++)); do echo "node$i slots=$g" >>"$f"; done
}

# mn_mpi_args: the mpirun arguments that run over the simulated network
# (for baton-launch --mpirun-args; --net tcp --iface adds the interface).
mn_mpi_args() {
  echo "--allow-run-as-root --oversubscribe --mca plm_rsh_agent $MN_DIR/agent --mca btl_vader_single_copy_mechanism none"
}

# mn_sysctl KEY VALUE: set a per-namespace sysctl on every node (e.g.
# net.ipv4.tcp_retries2, docs/operations.md); the host's own is untouched.
mn_sysctl() {
  local i
  for ((i = 0; i < MN_N; i++)); do
    # /proc/sys/net shows the namespace of the process that opens it.
    ip netns exec "${MN_PREFIX}n$i" sh -c 'echo "$1" >"/proc/sys/$0"' "${1//.//}" "$2"
  done
}

# mn_head CMD...: runs CMD on the head node (node 0) under host name node0,
# where the node names resolve.
mn_head() {
  ip netns exec "${MN_PREFIX}n0" unshare --uts --mount sh -c \
    'hostname node0 && mount --bind "$0" /etc/hosts && exec "$@"' "$MN_DIR/etc.hosts" "$@"
}

# mn_pids I: pids of every process on node I.
mn_pids() { ip netns pids "${MN_PREFIX}n$1"; }

# mn_kill_node I: SIGKILL every process on node I (the node dies).
mn_kill_node() {
  local p
  for p in $(mn_pids "$1"); do kill -9 "$p" 2>/dev/null; done
}

# mn_partition I / mn_heal I: unplug / plug node I's switch port.
mn_partition() { ip -n "$MN_BR" link set "port$1" down; }
mn_heal() { ip -n "$MN_BR" link set "port$1" up; }

# mn_loss I PERCENT: node I drops PERCENT % of the packets it receives
# (nftables, in its namespace: the receiving side, where the issue found
# that delay and loss model a bad link faithfully). mn_loss_dropped I
# prints how many it dropped so far.
mn_loss() {
  ip netns exec "${MN_PREFIX}n$1" nft -f - <<NFT
table inet mnloss {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "$MN_IF" numgen random mod 100 < $2 counter drop
  }
}
NFT
}
mn_loss_dropped() {
  ip netns exec "${MN_PREFIX}n$1" nft list table inet mnloss |
    sed -n 's/.*counter packets \([0-9]*\).*/\1/p'
}

# mn_delay I MS PCT [SEED]: node I's incoming packets are held MS ms and
# PCT % of them dropped (seeded), by nfq_delay ($NFQ_DELAY, built from
# nfq_delay.c) fed by an iptables NFQUEUE rule on node I's eth0 input. The
# kernel here has no netem qdisc and no nftables `queue` (CONFIG_NFT_QUEUE);
# iptables' NFQUEUE target (xt, through nft's compat layer) is there.
# Incoming, not outgoing (nfq_delay.c, 1.). The program is started and
# ready before the rule exists: a rule without a reader would drop every
# packet. mn_delay_stats I removes the rule, stops the program and prints
# its counts line; call it in the test's own shell, not in $(...), which
# could not wait for the program.
mn_delay() {
  local ns="${MN_PREFIX}n$1" end=$((SECONDS + 10))
  ip netns exec "$ns" "$NFQ_DELAY" --queue 0 --delay-ms "$2" --loss "$3" --seed "${4:-1}" \
    >"$MN_DIR/nfq$1.out" 2>"$MN_DIR/nfq$1.err" &
  eval "MN_NFQ_$1=$!"
  until grep -q "ready" "$MN_DIR/nfq$1.err"; do
    kill -0 "$!" 2>/dev/null && [ "$SECONDS" -lt "$end" ] || { cat "$MN_DIR/nfq$1.err" >&2; return 1; }
    sleep 0.02
  done
  ip netns exec "$ns" iptables -A INPUT -i "$MN_IF" -j NFQUEUE --queue-num 0
}
mn_delay_stats() {
  local p
  eval "p=\${MN_NFQ_$1:-}"
  [ -n "$p" ] || return 1
  ip netns exec "${MN_PREFIX}n$1" iptables -D INPUT -i "$MN_IF" -j NFQUEUE --queue-num 0
  kill -TERM "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  cat "$MN_DIR/nfq$1.out"
}

# mn_teardown: kill every process in every namespace, delete them.
mn_teardown() {
  local ns p k
  for ns in "${MN_NS[@]+"${MN_NS[@]}"}"; do
    for k in 1 2 3; do
      p="$(ip netns pids "$ns" 2>/dev/null)"
      [ -n "$p" ] || break
      kill -9 $p 2>/dev/null
      sleep 0.05
    done
    ip netns del "$ns" 2>/dev/null
  done
  MN_NS=()
}
