#!/usr/bin/env python3
"""extract.py: pulls the device code out of the CUDA backend's sources so
that test_gpu_emu can compile it with the host C++ compiler.

Usage: extract.py KERNELS_CUDA_DIR OUT_FILE

Copied: every `#define` (except the op-list macros of SKIP_DEFINES), every
function that starts a line with `__global__` or `__device__` (with the
`template <typename T>` line directly above it, for kernels templated over
the [act] storage type: cuda_common.h), and the
attention kernels' shared-memory size helpers (`static size_t fa_*`), each
preceded by a `#line` marker, so that __LINE__ / __FILE__ (which the
emulator's barrier and shuffle matching reports) name the kernel source.
Rewritten, each on its own line so line numbers stay true:
`extern __shared__ float sm[];` becomes a pointer to the emulator's
per-block dynamic buffer; every `__shared__ T a[N], b[M];` becomes
`auto &a = emu_static_smem<T[N]>(id); ...` (a poisoned buffer per resident
block); `#pragma unroll` lines become blank. After each kernel with
`__launch_bounds__(n)` an EmuBoundsReg records n, so a launch above it fails.
Nothing else is changed: the emulated code is the code nvcc compiles.
"""
import re
import sys

FILES = ["cuda_common.h", "cuda_gemm.cu", "cuda_ops.cu", "cuda_attention.cu",
         "cuda_speech.cu", "cuda_fused.cu",
         "cuda_step.cu"]
SKIP = set()  # kernels left out (none: emu.h provides the bf16 type)
# Host-side macros that expand kernels/ops.def into prototypes: not device
# code, and the emulator does not include the op list after them.
SKIP_DEFINES = {"BT_OP", "BT_OP_RET"}


def extract(path, name):
    lines = open(path).read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"#define (\w+)", line)
        if m and m.group(1) in SKIP_DEFINES:
            pass
        elif line.startswith("#define") and not re.match(r"#define \w+_H$", line):
            block = [line]
            while block[-1].endswith("\\"):
                i += 1
                block.append(lines[i])
            out.append('#line %d "kernels/cuda/%s"\n' % (i + 1, name)
                       + "\n".join(block))
        elif (line.startswith("__global__") or line.startswith("__device__")
              or line.startswith("static size_t fa_")
              or (line.startswith("template <") and i + 1 < len(lines)
                  and (lines[i + 1].startswith("__global__")
                       or lines[i + 1].startswith("__device__")))):
            tmpl = line if line.startswith("template <") else None
            text, depth, started, j = "", 0, False, i
            while True:
                text += lines[j] + "\n"
                for ch in lines[j]:
                    if ch == "{":
                        depth += 1
                        started = True
                    elif ch == "}":
                        depth -= 1
                if started and depth == 0:
                    break
                j += 1
            first = text.split("{")[0]
            bounds = re.search(r"__launch_bounds__\(([^)]*)\)", first)
            head = re.sub(r"__launch_bounds__\([^)]*\)", "", first)
            m = re.search(r"(\w+)\s*\(", head)
            if m is None or m.group(1) not in SKIP:
                text = '#line %d "kernels/cuda/%s"\n' % (i + 1, name) + text
                isKernel = ("__global__" in first.split("(")[0])
                if bounds and isKernel and tmpl is None:
                    text += "static EmuBoundsReg emu_lb_%s(%s, %s);\n" % (
                        m.group(1), m.group(1), bounds.group(1))
                elif bounds and isKernel:
                    # A template over the [act] storage type (cuda_common.h):
                    # the bound holds for both instantiations.
                    for k, t in (("f", "float"), ("h", "__nv_bfloat16")):
                        text += ("static EmuBoundsReg emu_lb_%s_%s(%s<%s>, %s);\n"
                                 % (m.group(1), k, m.group(1), t,
                                    bounds.group(1)))
                out.append(text)
            i = j
        i += 1
    return out


# `__shared__ T a[N][M], b[K];` on one line.
SHARED = re.compile(r"__shared__\s+([A-Za-z_][\w ]*?)\s+(\w+\s*(?:\[[^\]]+\])+"
                    r"(?:\s*,\s*\w+\s*(?:\[[^\]]+\])+)*)\s*;")
_nShared = [0]


def shared_decl(m):
    out = []
    for d in re.findall(r"(\w+)\s*((?:\[[^\]]+\])+)", m.group(2)):
        _nShared[0] += 1
        out.append("auto &%s = emu_static_smem<%s%s>(%d);"
                   % (d[0], m.group(1), d[1], _nShared[0]))
    return " ".join(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    items = []
    for f in FILES:
        items += extract(src.rstrip("/") + "/" + f, f)
    code = "\n".join(items)
    code = "\n".join("" if l.strip().startswith("#pragma unroll") else l
                     for l in code.split("\n"))
    code = code.replace("extern __shared__ float sm[];",
                        "float *sm = g_dyn_smem;")
    code = SHARED.sub(shared_decl, code)
    if "__shared__" in code:
        sys.exit("extract.py: a __shared__ declaration it cannot rewrite")
    if "bt_k_flash_fwd" not in code:
        sys.exit("extract.py: no kernels found under " + src)
    with open(dst, "w") as f:
        f.write("/* generated by tests/gpu/emu/extract.py: do not edit */\n")
        f.write(code)


if __name__ == "__main__":
    main()
