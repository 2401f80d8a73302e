#!/usr/bin/python3
"""check_samples.py RUN_DIR REF_DIR BATCH STEPS NSAMPLE: the data stream of a
run that was restarted on other world sizes (tests/multinode/shrink.sh).

Both directories hold the files of BATON_DUMP_SAMPLES (trainer/train.c):
samples.s<S>.w<W>.r<R>.txt, lines "step epoch index", one file per rank of
each start (S: the step it resumed from, W: its world size). Checks:
  1. every start's every step has BATCH samples over its ranks (two starts
     with the same S and W would merge and fail here, never pass), except
     the last step of a start cut off mid-step, which must be a subset of
     that step's complete re-run;
  2. a step run by several starts (re-run after a restart from an older
     checkpoint) took the same samples each time;
  3. steps 1..STEPS are all there, and each equals the same step of the
     uninterrupted reference run in REF_DIR (the stream continued exactly);
  4. each complete epoch saw every index of 0..NSAMPLE-1 exactly once, and
     the last partial one no index twice.
Prints the starts it found; exits 1 with the first violation.
"""
import collections
import glob
import os
import re
import sys


def load(d):
    """{(S, W): {step: sorted [(epoch, index)]}}"""
    starts = collections.defaultdict(lambda: collections.defaultdict(list))
    files = glob.glob(os.path.join(d, "samples.s*.w*.r*.txt"))
    if not files:
        sys.exit("no samples.*.txt in %s" % d)
    for f in files:
        m = re.match(r"samples\.s(\d+)\.w(\d+)\.r(\d+)\.txt$", os.path.basename(f))
        key = (int(m.group(1)), int(m.group(2)))
        for ln, line in enumerate(open(f), 1):
            w = line.split()
            if len(w) != 3:
                sys.exit("%s:%d: not 'step epoch index': %r" % (f, ln, line))
            starts[key][int(w[0])].append((int(w[1]), int(w[2])))
    for k in starts:
        for s in starts[k]:
            starts[k][s].sort()
    return starts


def merge(starts, batch, d):
    """{step: samples}, every step complete. The last step of a start may
    be short when that start was cut off mid-step (a rank dies after its
    peers logged the step, before it did: ranks are at most one step
    apart, held together by the step's all-reduce); such a step must be
    re-run in full by another start and hold a subset of its samples."""
    steps, partial = {}, []
    for (s0, w), per in sorted(starts.items()):
        for s, got in per.items():
            if len(got) != batch:
                if len(got) < batch and s == max(per):
                    partial.append((s0, w, s, got))
                    continue
                sys.exit("%s: start at step %d on %d ranks: step %d has %d "
                         "samples, expected %d" % (d, s0, w, s, len(got), batch))
            if s in steps and steps[s] != got:
                sys.exit("%s: step %d took different samples in two starts "
                         "(the second at step %d on %d ranks)" % (d, s, s0, w))
            steps[s] = got
    for s0, w, s, got in partial:
        full = collections.Counter(steps.get(s, []))
        if s not in steps or collections.Counter(got) - full:
            sys.exit("%s: start at step %d on %d ranks: its cut-off step %d "
                     "(%d of %d samples) is not a part of a complete re-run "
                     "of that step" % (d, s0, w, s, len(got), batch))
        print("start at step %d on %d ranks: cut off in step %d (%d of %d "
              "samples logged), re-run in full later" % (s0, w, s, len(got), batch))
    return steps


def main():
    run, ref, batch, nstep, nsample = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    starts = load(run)
    for (s0, w), per in sorted(starts.items()):
        print("start at step %d on %d ranks: steps %d..%d" % (s0, w, min(per), max(per)))
    steps = merge(starts, batch, run)
    want = merge(load(ref), batch, ref)
    missing = [s for s in range(1, nstep + 1) if s not in steps]
    if missing:
        sys.exit("steps missing from the run: %s" % missing[:10])
    for s in range(1, nstep + 1):
        if steps[s] != want.get(s):
            sys.exit("step %d: samples differ from the uninterrupted run" % s)
    seen = collections.defaultdict(collections.Counter)
    for s in range(1, nstep + 1):
        for e, i in steps[s]:
            seen[e][i] += 1
    last = max(seen)
    for e in sorted(seen):
        twice = [i for i, c in seen[e].items() if c > 1]
        if twice:
            sys.exit("epoch %d: index %d seen %d times" % (e, twice[0], seen[e][twice[0]]))
        if e < last and sorted(seen[e]) != list(range(nsample)):
            sys.exit("epoch %d: %d of %d indices seen" % (e, len(seen[e]), nsample))
    print("%d steps as in the uninterrupted run; %d complete epochs, every "
          "sample once in each" % (nstep, last))


main()
