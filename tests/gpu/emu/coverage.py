#!/usr/bin/env python3
"""coverage.py: fails if a __global__ kernel of kernels/cuda has no case in
the CPU emulator test (issue 12 item 6: every kernel has emulator cases).

Usage: coverage.py KERNELS_CUDA_DIR TEST_GPU_EMU

The kernels are every `__global__ ... name(` in the .cu and .h files (the
same files extract.py copies); the covered list is what
`test_gpu_emu --list-covered` prints, i.e. the table in test_gpu_emu.cpp
that a new case must extend. A name listed but not a kernel fails too (a
stale entry would hide a missing case).
"""
import glob
import re
import subprocess
import sys


def main():
    src, exe = sys.argv[1], sys.argv[2]
    kernels = set()
    for path in sorted(glob.glob(src.rstrip("/") + "/*.cu") +
                       glob.glob(src.rstrip("/") + "/*.h")):
        text = open(path).read()
        for m in re.finditer(r"^__global__\s+(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s*)?"
                             r"(?:void\s+)?(\w+)\s*\(", text, re.M):
            kernels.add(m.group(1))
    out = subprocess.run([exe, "--list-covered"], check=True,
                         capture_output=True, text=True).stdout
    covered = set(out.split())
    missing, stale = sorted(kernels - covered), sorted(covered - kernels)
    print("%d kernels in %s, %d with emulator cases" % (len(kernels), src, len(covered & kernels)))
    for k in missing:
        print("MISSING emulator case: %s" % k)
    for k in stale:
        print("STALE entry (no such kernel): %s" % k)
    if not kernels:
        sys.exit("coverage.py: no kernels found under " + src)
    sys.exit(1 if missing or stale else 0)


if __name__ == "__main__":
    main()
