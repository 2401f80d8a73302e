"""check_ref.py: reads baton's metrics and trace files with independent
readers and checks their content. Prints 'N passed, N failed'; exit 1 on
any failure.

  check_ref.py tboard RUN         TensorBoard's EventFileLoader (raw records,
                                  CRC-checked) and EventAccumulator (scalars,
                                  restart purge) on RUN/tb; json on
                                  RUN/metrics.jsonl
  check_ref.py trace FULL CRASH REPAIR
                                  json module on a closed trace; span nesting
                                  per tid; a crash-truncated trace made valid
                                  by launch/baton-trace-repair
"""
import glob
import json
import math
import os
import subprocess
import sys

passed = 0
failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg, file=sys.stderr)


def close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(abs(b), 1e-30)


def expected_loss_after_resume(step):
    # Steps 1..10 written, crash, resume at 6 rewrote 6..8.
    return 10.0 / step if step <= 5 else 100.0 + step


def check_tboard(run):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.backend.event_processing import event_file_loader

    files = sorted(glob.glob(os.path.join(run, "tb", "events.out.tfevents.*")))
    check(len(files) == 2, "two event files (first run + resume): %s" % files)
    if len(files) != 2:
        return
    # Raw records of the first file, read by TensorBoard's own loader (it
    # verifies the masked CRCs of every record). The Legacy loader yields the
    # Event protos as written; the plain one migrates simple_value to tensors.
    evs = list(event_file_loader.LegacyEventFileLoader(files[0]).Load())
    check(evs[0].file_version == "brain.Event:2", "first record file_version")
    check(evs[0].wall_time > 1.7e9, "wall_time is Unix seconds")
    scal = [e for e in evs if e.HasField("summary")]
    check([e.step for e in scal] == list(range(1, 11)), "steps 1..10 in file 1")
    for e in scal:
        vals = {v.tag: v.simple_value for v in e.summary.value}
        want = {"train/loss": 10.0 / e.step, "train/lr": 1e-3 * e.step}
        if e.step % 5 == 0:
            want["val/loss"] = 20.0 / e.step
        check(set(vals) == set(want), "tags at step %d: %s" % (e.step, sorted(vals)))
        for k, w in want.items():
            check(k in vals and close(vals[k], w), "%s at step %d: %s vs %s"
                  % (k, e.step, vals.get(k), w))
    starts = [e for e in evs if e.HasField("session_log")]
    check(len(starts) == 1 and starts[0].session_log.status == 1,
          "file 1 has one SessionLog START")
    # A crash mid-write leaves a torn last record: the reader must keep the
    # complete ones and stop there, without an exception.
    torn = os.path.join(run, "torn.tfevents")
    with open(files[0], "rb") as f:
        data = f.read()
    with open(torn, "wb") as f:
        f.write(data[:-5])
    evs_torn = list(event_file_loader.LegacyEventFileLoader(torn).Load())
    check(len(evs_torn) == len(evs) - 1, "torn file: %d of %d records readable"
          % (len(evs_torn), len(evs)))
    os.unlink(torn)
    evs2 = list(event_file_loader.LegacyEventFileLoader(files[1]).Load())
    check(evs2[0].file_version == "brain.Event:2", "file 2 header")
    starts2 = [e for e in evs2 if e.HasField("session_log")]
    check(len(starts2) == 1 and starts2[0].step == 6, "file 2 restarts at 6")

    # The whole directory, as TensorBoard shows it: the resume purges the
    # stale points (steps >= 6) of the crashed run.
    acc = event_accumulator.EventAccumulator(os.path.join(run, "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    check(sorted(tags) == ["train/loss", "train/lr", "val/loss"], "tags %s" % tags)
    loss = acc.Scalars("train/loss")
    check([s.step for s in loss] == [1, 2, 3, 4, 5, 6, 7, 8],
          "train/loss steps after purge: %s" % [s.step for s in loss])
    for s in loss:
        check(close(s.value, expected_loss_after_resume(s.step)),
              "train/loss %d = %s" % (s.step, s.value))
    val = acc.Scalars("val/loss")
    check([(s.step, round(s.value, 6)) for s in val] == [(5, 4.0)],
          "val/loss after purge: %s" % [(s.step, s.value) for s in val])

    # JSONL: every line parses; the last line of a step wins.
    last = {}
    nline = 0
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            nline += 1
            check(isinstance(rec["step"], int) and rec["time"] > 1.7e9,
                  "step/time fields: %s" % line.strip())
            last[rec["step"]] = rec
    check(nline == 13, "13 JSONL lines (10 + 3 after resume): %d" % nline)
    check(sorted(last) == list(range(1, 11)), "steps in JSONL %s" % sorted(last))
    for step, rec in last.items():
        want = expected_loss_after_resume(step) if step <= 8 else 10.0 / step
        check(close(rec["train/loss"], want), "JSONL loss %d: %s" % (step, rec))
    check("val/loss" in last[5] and "val/loss" not in last[6], "val/loss only at 5, 10")


def check_nesting(events, label):
    """Per tid, X spans must nest: each span lies inside the span enclosing
    its start, or starts after it ended. Returns the number of spans."""
    bytid = {}
    for e in events:
        if e.get("ph") == "X":
            check(e["dur"] >= 0 and isinstance(e["ts"], (int, float)),
                  "%s: ts/dur numbers" % label)
            bytid.setdefault((e["pid"], e["tid"]), []).append(e)
    n = 0
    eps = 1e-3  # microseconds printed with 3 decimals
    for key, spans in bytid.items():
        spans.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        bad = 0
        for e in spans:
            start, end = e["ts"], e["ts"] + e["dur"]
            while stack and start >= stack[-1] - eps:
                stack.pop()
            if stack and end > stack[-1] + eps:
                bad += 1
            stack.append(end)
            n += 1
        check(bad == 0, "%s: %d spans cross their parent on %s" % (label, bad, key))
    return n


def check_trace(full, crash, repair):
    with open(full) as f:
        doc = json.load(f)
    check(doc.get("displayTimeUnit") == "ms", "displayTimeUnit")
    ev = doc["traceEvents"]
    meta = [e for e in ev if e["ph"] == "M"]
    check(any(e["name"] == "process_name" and e["args"]["name"].startswith("rank 1")
              for e in meta), "process name metadata")
    check(all(e["pid"] == 1 for e in ev), "pid is the rank")
    n = check_nesting(ev, "closed trace")
    check(n == 50 * (5 + 3), "span count %d" % n)
    comm = [e for e in ev if e["ph"] == "X" and e["tid"] == 1]
    check(len(comm) == 150 and all(e["cat"] == "comm" for e in comm), "comm lane")
    # Children inside "backward" on tid 0 and comm spans inside it in time.
    steps = sorted((e for e in ev if e["ph"] == "X" and e["name"] == "step"),
                   key=lambda e: e["ts"])
    for c in comm:
        inside = any(s["ts"] <= c["ts"] and c["ts"] + c["dur"] <= s["ts"] + s["dur"] + 1e-3
                     for s in steps)
        check(inside, "comm span at %s inside a step" % c["ts"])

    # A crash leaves no closing bracket: strict JSON fails, repair fixes it.
    with open(crash) as f:
        text = f.read()
    try:
        json.loads(text)
        check(False, "a crash-truncated trace is not complete JSON")
    except json.JSONDecodeError:
        check(True, "")
    check(text.startswith('{"traceEvents":[') and '"displayTimeUnit"' not in text,
          "crash trace is the truncated form")
    out = crash + ".fixed.json"
    r = subprocess.run([repair, crash, out], capture_output=True, text=True)
    check(r.returncode == 0, "baton-trace-repair: %s" % r.stderr)
    with open(out) as f:
        fixed = json.load(f)
    n = check_nesting(fixed["traceEvents"], "repaired trace")
    check(n == 50 * 8, "repaired trace keeps every finished step: %d" % n)
    # Repairing a complete file leaves it as it is.
    out2 = full + ".again.json"
    r = subprocess.run([repair, full, out2], capture_output=True, text=True)
    with open(out2) as f:
        check(json.load(f) == doc, "repair of a complete trace is the identity")


def main():
    what = sys.argv[1]
    if what == "tboard":
        check_tboard(sys.argv[2])
    elif what == "trace":
        check_trace(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print("unknown check", what, file=sys.stderr)
        return 2
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
