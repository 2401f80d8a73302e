#!/usr/bin/env bash
# shrink_args.sh: how `baton-supervise --shrink` rewrites the command
# (docs/operations.md, "Shrinking onto the surviving nodes"), on a fake job
# that records its arguments and fails once (or twice), no namespaces
# needed. The host that "cannot be reached" is a name that does not resolve
# (the probe counts that as no answer, fast and the same everywhere);
# 127.0.0.1 answers (port 1: connection refused is an answer). Cases:
#   1. --host list and -np: the dead host leaves the list, -np 4 -> 2;
#   2. --hostfile: the next attempt gets a copy without the dead host's
#      line (comments and the other lines kept), named in the log;
#   3. --shrink-after 2: no drop after the first failure, a drop after the
#      second;
#   4. --shrink-min 2 and an -np the slots left do not divide: no drop, the
#      command unchanged, the reason logged;
#   5. without --shrink: the command unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sup="$here/../../launch/baton-supervise"
w="$(mktemp -d /tmp/bt_shrink.XXXXXX)"
trap 'rm -rf "$w"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; [ ! -e "$w/sup.out" ] || cat "$w/sup.out" >&2; exit 1; }
dead=dead-node.invalid

# The fake job: appends its arguments (and a hostfile's host names) as one
# line to $w/args, fails until it has run FAILS+1 times.
cat >"$w/job" <<'JOB'
#!/usr/bin/env bash
line="$*"
prev=""
for a in "$@"; do
  [ "$prev" != --hostfile ] || line+=" [$(sed 's/#.*//; /^ *$/d; s/ .*//' "$a" | paste -sd,)]"
  prev="$a"
done
echo "$line" >>"$ARGS"
[ "$(wc -l <"$ARGS")" -gt "$FAILS" ]
JOB
chmod +x "$w/job"

# attempt N: the arguments of attempt N of the last run.
attempt() { sed -n "$1p" "$w/args"; }
run() { # run FAILS SUPERVISOR-OPTIONS... -- JOB-ARGS...
  local fails="$1"
  shift
  rm -f "$w/args"
  ARGS="$w/args" FAILS="$fails" "$sup" --backoff 0 --probe-port 1 --log "$w/sup.log" "$@" \
    >"$w/sup.out" 2>&1 || fail "the supervisor exited $? for: $*"
}

run 1 --shrink -- "$w/job" --host "127.0.0.1:2,$dead:2" -np 4 train
[ "$(attempt 1)" = "--host 127.0.0.1:2,$dead:2 -np 4 train" ] || fail "attempt 1: $(attempt 1)"
[ "$(attempt 2)" = "--host 127.0.0.1:2 -np 2 train" ] || fail "attempt 2: $(attempt 2)"
grep -q "shrink: dropping $dead (no answer on TCP port 1 after 1 consecutive failed attempt(s)); restarting on 1 of 2 hosts, 2 of 4 slots: 127.0.0.1\$" \
  "$w/sup.out" || fail "no shrink message naming $dead"
ok "--host list and -np: $dead dropped, -np 4 -> 2"

printf '127.0.0.1 slots=2\n# a comment\n%s slots=2\n' "$dead" >"$w/hosts"
run 1 --shrink -- "$w/job" --hostfile "$w/hosts" -- baton train
[[ "$(attempt 1)" == *"--hostfile $w/hosts -- baton train [127.0.0.1,$dead]" ]] || fail "attempt 1: $(attempt 1)"
[[ "$(attempt 2)" =~ --hostfile\ (.*)\ --\ baton\ train\ \[127.0.0.1\]$ ]] || fail "attempt 2: $(attempt 2)"
[ "${BASH_REMATCH[1]}" != "$w/hosts" ] || fail "the original hostfile was used"
[ "$(cat "$w/hosts")" = "$(printf '127.0.0.1 slots=2\n# a comment\n%s slots=2' "$dead")" ] ||
  fail "the original hostfile was changed"
ok "--hostfile: a copy without $dead; the original untouched"

run 2 --shrink --shrink-after 2 -- "$w/job" --host "127.0.0.1,$dead" -np 2
[ "$(attempt 2)" = "--host 127.0.0.1,$dead -np 2" ] || fail "dropped after one failure: $(attempt 2)"
[ "$(attempt 3)" = "--host 127.0.0.1 -np 1" ] || fail "not dropped after two: $(attempt 3)"
ok "--shrink-after 2: dropped after the second failure"

run 1 --shrink --shrink-min 2 -- "$w/job" --host "127.0.0.1,$dead" -np 2
[ "$(attempt 2)" = "$(attempt 1)" ] || fail "--shrink-min 2 ignored: $(attempt 2)"
grep -q "shrink: not dropping $dead (.*): 1 host(s) would be left (--shrink-min 2); restarting on every host" \
  "$w/sup.out" || fail "no message for --shrink-min"
run 1 --shrink -- "$w/job" --host "127.0.0.1:1,$dead:2" -np 4
[ "$(attempt 2)" = "$(attempt 1)" ] || fail "an -np that does not scale was rewritten: $(attempt 2)"
grep -q "shrink: not dropping $dead (.*): -np 4 does not scale to 1 of 3 slots" "$w/sup.out" ||
  fail "no message for the -np that does not scale"
ok "--shrink-min and an -np that does not scale: unchanged, with the reason"

run 1 -- "$w/job" --host "127.0.0.1,$dead" -np 2
[ "$(attempt 2)" = "$(attempt 1)" ] || fail "shrunk without --shrink: $(attempt 2)"
! grep -q "shrink:" "$w/sup.out" || fail "a shrink message without --shrink"
ok "without --shrink: the command unchanged"
echo "$pass passed, 0 failed"
