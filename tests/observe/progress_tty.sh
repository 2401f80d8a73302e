#!/usr/bin/env bash
# progress_tty.sh BATON: the live progress bar on a real terminal (tmux, a
# private server), issue 17:
#   1. a log line printed while the bar is live ("checkpoint ... complete")
#      is on a line of its own, never glued onto the bar;
#   2. at 80 columns the bar shows val loss, lr and elapsed time;
#   3. after the window shrinks to 60 columns (while the run is stopped by
#      the fault point train.stop) the bar is redrawn within 59 columns and
#      no piece of the wider bar is left on the screen;
#   4. --quiet prints no progress at all.
set -euo pipefail
baton=$1
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d /tmp/bt_progress_tty.XXXXXX)"
sock="bt_progress_$$"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v tmux >/dev/null || fail "tmux is needed (apt-get install tmux)"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# start NAME CMD: a detached 80x24 session running CMD, then "EXIT rc".
start() {
  tmux -L "$sock" new-session -d -s "$1" -x 80 -y 24 \
    "$2; echo EXIT \$?; sleep 600"
}
screen() { tmux -L "$sock" capture-pane -p -J -t "$1"; } # -J: wrapped lines joined
wait_for() { # wait_for NAME TEXT: until the screen shows TEXT (30 s)
  for _ in $(seq 300); do
    screen "$1" | grep -q -- "$2" && return 0
    sleep 0.1
  done
  screen "$1"; fail "'$2' never appeared on the screen of $1"
}

args="$here/../train/micro.ini --set train.steps=30 --set train.log_every=1 \
--set checkpoint.every=5 --set data.val_every=5"
start run "BATON_FAULT=train.stop:13 $baton train $args --run-dir $work/run"
# The run stops itself (SIGSTOP) at the start of its 13th step.
pid=""
for _ in $(seq 300); do
  shell=$(tmux -L "$sock" list-panes -t run -F '#{pane_pid}')
  pid=$(pgrep -P "$shell" -x baton || true)
  [ -n "$pid" ] && [ "$(ps -o stat= -p "$pid" | cut -c1)" = T ] && break
  sleep 0.1
done
[ -n "$pid" ] && [ "$(ps -o stat= -p "$pid" | cut -c1)" = T ] || { screen run; fail "the run did not stop"; }
screen run >"$work/80.txt"
tmux -L "$sock" resize-window -t run -x 60
sleep 0.3
kill -CONT "$pid"
wait_for run "EXIT 0"
screen run >"$work/60.txt"

echo "--- at 80 columns, stopped at step 12:"; cat "$work/80.txt"
echo "--- at 60 columns, finished:"; cat "$work/60.txt"
# A bar line: optional "[###...]" and percentage, the counter, fields.
bar='^(\[[#.]+\]( +[0-9.]+%)?  )?[0-9]+/30(  [a-zA-Z]+ [^ ]+)*$'
for f in 80 60; do
  # 1. Every line that carries bar fields is a whole bar line, and no log
  #    line carries bar text.
  if grep -E 'loss [0-9]|/30  ' "$work/$f.txt" | grep -Ev "$bar" | grep -q .; then
    fail "a bar line with other text glued on at $f columns: $(grep -E 'loss [0-9]|/30  ' "$work/$f.txt" | grep -Ev "$bar")"
  fi
  grep -q "checkpoint .*ckpt-00000010 complete" "$work/$f.txt" || fail "log line missing at $f columns"
  [ "$(grep -Ec "$bar" "$work/$f.txt")" = 1 ] || fail "not exactly one bar line at $f columns"
done
# 2. At 80 columns, stopped after step 12: val loss (of step 10), lr, elapsed.
line=$(grep -E "$bar" "$work/80.txt")
case "$line" in *"12/30"*"val "*"lr "*"elapsed "*) ;; *) fail "80 columns: '$line'";; esac
[ ${#line} -le 79 ] || fail "bar wider than 79 columns: ${#line}"
# 3. After the resize: the final bar fits 59 columns and keeps val and lr;
#    no line on the screen is wider than the window (a reflowed old bar
#    would leave a wrapped piece).
line=$(grep -E "$bar" "$work/60.txt")
case "$line" in *"30/30"*"val "*"lr "*) ;; *) fail "60 columns: '$line'";; esac
[ ${#line} -le 59 ] || fail "bar wider than 59 columns after the resize: ${#line}"
if grep -E 'elapsed|e-0[0-9]  |^[0-9.:]+$' "$work/60.txt" | grep -Ev "$bar" | grep -q .; then
  fail "a piece of the old bar is left after the resize"
fi

# 4. --quiet: no progress on the terminal.
start quiet "$baton train $args --run-dir $work/quiet --quiet"
wait_for quiet "EXIT 0"
screen quiet >"$work/quiet.txt"
if grep -Eq '/30|loss [0-9]' "$work/quiet.txt"; then
  cat "$work/quiet.txt"; fail "--quiet printed progress"
fi
echo "4 passed, 0 failed"
