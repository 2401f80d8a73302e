#!/usr/bin/env python3
"""bad_inputs.py: runs the table of bad inputs (tests/cli/bad_inputs.tsv)
against the baton binary and checks each row's exit code and message.

  usage: bad_inputs.py BATON TABLE [--show] [--min-rows N] [--expect-fail]
                       [NAME-REGEX]

The table is plain text, one row per line, columns separated by TABs:
  name  exit  fragment  setup  command  [allow]
  - setup and command are bash, run with `bash -c` in a fresh, empty row
    directory $W (the current directory too). $F is the fixtures directory
    (made once here, read-only to the rows by convention), $BATON the
    binary, $PY this Python (with numpy and h5py), $HOST the host name.
    setup '-' is none.
  - fragment is a literal substring that stdout+stderr must contain, after
    $W, $F and $HOST in it are replaced by their values.
  - allow: a regex of paths (relative to $W) the command may create; '-'
    or absent: none.
'#' starts a comment line; a comment above a row documents it (rows whose
message is known to be poor say so there).

Every row must also:
  1. not crash: exit 134 (abort, an internal assertion) or 139 (segfault),
     or death by any signal, is always a failure, whatever the row expects;
  2. leave nothing behind: the files under $W and $F after the command are
     those that were there before it (minus none, plus `allow`), and no
     *.tmp.* file anywhere under them.
--show prints each row's actual exit code and output instead of checking
(for writing a new row: run it and read the message first). --min-rows N
fails a table of fewer rows. --expect-fail inverts the verdict: every row
must fail (selfcheck.tsv, whose rows are wrong on purpose, proves that each
check above can fail).
"""
import os, re, shutil, socket, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, cwd, env, timeout=120):
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def tree(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def make_fixtures(env, fix):
    r = sh("bash %s/fixtures.sh" % HERE, fix, env, timeout=600)
    if r.returncode != 0:
        sys.stdout.write(r.stdout.decode(errors="replace"))
        sys.exit("FAIL: fixtures.sh exit %d" % r.returncode)


def load_table(path):
    rows = []
    for i, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        col = line.split("\t")
        if len(col) not in (5, 6):
            sys.exit("%s:%d: %d columns, want 5 or 6" % (path, i, len(col)))
        rows.append((i, col[0], int(col[1]), col[2], col[3], col[4],
                     col[5] if len(col) == 6 and col[5] != "-" else None))
    return rows


def main():
    argv = sys.argv[1:]
    show = "--show" in argv
    invert = "--expect-fail" in argv
    nMin = 0
    if "--min-rows" in argv:
        i = argv.index("--min-rows")
        nMin = int(argv[i + 1])
        del argv[i:i + 2]
    args = [a for a in argv if a not in ("--show", "--expect-fail")]
    baton, table = os.path.abspath(args[0]), args[1]
    pick = re.compile(args[2]) if len(args) > 2 else None
    rows = load_table(table)
    if len(rows) < nMin:
        sys.exit("FAIL: %d rows, fewer than %d" % (len(rows), nMin))
    names = [r[1] for r in rows]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        sys.exit("FAIL: duplicate row names %s" % sorted(dup))
    top = tempfile.mkdtemp(prefix="baton-cli-")
    fix = os.path.join(top, "fix")
    os.mkdir(fix)
    env = dict(os.environ, BATON=baton, PY=sys.executable, F=fix,
               HOST=socket.gethostname(), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", HERE=HERE)
    nFail = nRun = 0
    try:
        make_fixtures(env, fix)
        for (ln, name, want, frag, setup, cmd, allow) in rows:
            if pick and not pick.search(name):
                continue
            if "mount " in setup and os.geteuid() != 0:
                # a read-only directory needs a bind mount (root ignores
                # chmod): without root the row cannot be set up
                print("skip %s (line %d): needs root for a read-only bind mount"
                      % (name, ln))
                continue
            w = os.path.join(top, "w", name)
            os.makedirs(w)
            renv = dict(env, W=w)
            if setup != "-":
                r = sh(setup, w, renv)
                if r.returncode != 0:
                    print("FAIL %s (line %d): setup exit %d: %s" % (
                        name, ln, r.returncode, r.stdout.decode(errors="replace")))
                    nFail += 1
                    continue
            before_w, before_f = tree(w), tree(fix)
            r = sh(cmd, w, renv)
            out = r.stdout.decode(errors="replace")
            rc = r.returncode
            nRun += 1
            if show:
                print("== %s (line %d): exit %d\n%s" % (name, ln, rc, out.rstrip()))
            why = []
            if rc in (134, 139) or rc < 0 or rc > 128:
                why.append("crashed (exit %d)" % rc)
            if not show:
                if rc != want:
                    why.append("exit %d, want %d" % (rc, want))
                f = frag.replace("$W", w).replace("$F", fix).replace("$HOST", env["HOST"])
                if f not in out:
                    why.append("message lacks %r" % f)
            new_w = tree(w) - before_w
            if allow:
                new_w = {p for p in new_w if not re.match(allow, p)}
            if new_w:
                why.append("left behind in $W: %s" % sorted(new_w))
            gone_w = before_w - tree(w)
            if gone_w and not allow:
                why.append("removed from $W: %s" % sorted(gone_w))
            after_f = tree(fix)
            if after_f != before_f:
                why.append("changed fixtures: +%s -%s" % (sorted(after_f - before_f),
                                                          sorted(before_f - after_f)))
            tmp = [p for p in tree(w) | after_f if ".tmp." in os.path.basename(p)]
            if tmp:
                why.append("temporary files left: %s" % sorted(tmp))
            if invert:
                if not why:
                    nFail += 1
                    print("FAIL %s (line %d): passed, but this row must fail" % (name, ln))
                else:
                    print("ok %s (line %d) failed as it must: %s" % (name, ln, "; ".join(why)))
            elif why:
                nFail += 1
                print("FAIL %s (line %d): %s\n  command: %s\n  output: %s" % (
                    name, ln, "; ".join(why), cmd, out.rstrip().replace("\n", "\n  | ")))
            # a row's leftovers must not leak into the next row's view
            subprocess.run(["umount", "-q", os.path.join(w, "ro")],
                           stderr=subprocess.DEVNULL)
    finally:
        subprocess.run(["bash", "-c", "grep -q ' %s/' /proc/mounts && "
                        "grep ' %s/' /proc/mounts | cut -d' ' -f2 | xargs -r -n1 umount"
                        % (top, top)], stderr=subprocess.DEVNULL)
        shutil.rmtree(top, ignore_errors=True)
    print("%d rows run, %d failed" % (nRun, nFail))
    if nRun == 0:
        sys.exit("FAIL: no row ran")
    sys.exit(1 if nFail else 0)


if __name__ == "__main__":
    main()
