/*
 * cpu_internal.h: private declarations shared by the files of the CPU
 * reference backend (cpu_backend.c: lifetime, memory and the function table;
 * cpu_ops.c: dense and element-wise ops; cpu_attention.c: attention).
 *
 * Each bt_cpu_* function has exactly the contract of the matching bt_op_*
 * function in kernels/ops.h. Nothing outside kernels/cpu includes this file.
 *
 * Rules every op here keeps (they are what makes this backend the reference
 * the CUDA backend is tested against):
 *   1. Deterministic, independent of the thread count: a value that is a sum
 *      over rows (dbias, dw of layernorm, dwpe, dwte) is computed by ONE
 *      thread in a fixed row order. We parallelise over the independent
 *      index (columns, channels, (b, h) pairs), never over the summed one.
 *   2. No allocation inside an op; temporaries live on the stack or in the
 *      caller's scratch argument.
 *   3. OpenMP only where there is enough work to pay for the fork/join
 *      (BT_CPU_PAR_MIN); the `if` clause keeps small calls serial.
 */
#ifndef BATON_CPU_INTERNAL_H
#define BATON_CPU_INTERNAL_H

#include "kernels/backend_impl.h"
#include "base/bf16.h"

#include <omp.h>

/* Backend-private state (bt_backend.pImpl). */
typedef struct bt_cpu_state {
  int nThread; /* as requested; <= 0 means the OpenMP default */
} bt_cpu_state;

/* Threads for this backend's parallel regions, passed to every region as
 * num_threads(): the count belongs to the handle, so two backends with
 * different counts in one process (the unit test does that) each get
 * their own, whichever thread calls them. */
static inline int bt_cpu_nthread(const bt_backend *be) {
  const bt_cpu_state *st = (const bt_cpu_state *)be->pImpl;
  return st->nThread > 0 ? st->nThread : omp_get_max_threads();
}

/* Below this many floats of work a parallel region costs more than it
 * saves (a fork/join is a few microseconds; 32K floats of simple work is
 * about that). */
#define BT_CPU_PAR_MIN 32768

/* The build's baseline is -march=x86-64-v2 (4-wide SSE). The few loops
 * that are compute bound (GELU, layernorm rows, softmax rows) are compiled
 * three times, for AVX-512, AVX2 and the baseline, and the dynamic loader
 * picks the widest the CPU has (GCC target_clones, resolved once through
 * an ifunc). Measured on the bench machine (Sapphire Rapids): GELU 1.3 ns
 * per element baseline, 0.73 AVX2, 0.39 AVX-512. Results may differ in
 * the last bit between CPUs (vector width, FMA), never between runs or
 * thread counts on one machine: callers hand these kernels fixed rows or
 * fixed-size chunks, so each element takes the same code path. Other
 * compilers and targets get the baseline. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&     \
    defined(__linux__) && !defined(BATON_NO_TARGET_CLONES)
#define BT_CPU_SIMD_CLONES                                                    \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BT_CPU_SIMD_CLONES
#endif

/* Element-wise ops run in chunks of this many elements, the unit of work
 * of the OpenMP loops: fixed so that chunk boundaries (where a vector loop
 * hands over to its scalar tail) do not move with the thread count. */
#define BT_CPU_EW_CHUNK 16384

/* x clamped to [lo, hi] by selecting bit patterns with integer masks.
 * Why not `x < lo ? lo : x`: GCC turns that into a branch, duplicates the
 * rest of the expression for the constant x == lo case and evaluates both
 * sides in every SIMD lane; in GELU the constant side is x / (1 + e^88),
 * a denormal for |x| < 2, and denormal arithmetic made GELU 6x slower. The
 * masks keep one straight-line computation per lane. NaN compares false
 * both ways, so NaN passes through (a diverging run stays visible). */
static inline float bt_cpu_clampf(float x, float lo, float hi) {
  int32_t xi, li, hi_i;
  __builtin_memcpy(&xi, &x, sizeof xi);
  __builtin_memcpy(&li, &lo, sizeof li);
  __builtin_memcpy(&hi_i, &hi, sizeof hi_i);
  int32_t mLo = -(int32_t)(x < lo), mHi = -(int32_t)(x > hi);
  xi = (xi & ~mLo) | (li & mLo);
  xi = (xi & ~mHi) | (hi_i & mHi);
  float r;
  __builtin_memcpy(&r, &xi, sizeof r);
  return r;
}

/* exp(x) for float, written so that GCC vectorises loops that call it
 * (libm expf is an opaque call, which kept GELU and softmax scalar).
 * Cephes expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts so
 * n*ln2 is exact), a polynomial for e^r, and 2^n built in the exponent
 * bits. Max error about 1-2 ulp (tests/kernels/test_ops.c measures GELU and
 * softmax against fp64). Inputs are clamped to [-87.3, 88] so 2^n stays a
 * normal float: exp(-87.3) is 1.2e-38, not 0, and exp(>88) is 1.65e38, not
 * inf; every caller adds the result to 1 or normalises by a sum >= 1, where
 * neither matters. Rounding to the nearest integer uses the 1.5*2^23 trick
 * because GCC does not vectorise floorf/rintf at -march=x86-64-v2. */
static inline float bt_cpu_expf(float x) {
  x = bt_cpu_clampf(x, -87.3f, 88.0f);
  /* nm = 1.5*2^23 + round(x/ln2): the integer sits in nm's low mantissa
   * bits, so n's bits are read off with integer arithmetic (unsigned, and
   * no float-to-int conversion, so even NaN has defined behaviour: it
   * gives garbage bits times NaN, i.e. NaN). */
  float nm = x * 1.44269504088896341f + 12582912.0f;
  uint32_t nmBits;
  __builtin_memcpy(&nmBits, &nm, sizeof nmBits);
  float n = nm - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = (nmBits - 0x4B400000u + 127u) << 23; /* 2^n */
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* bf16 mode (ops.h bt_act_dtype): p[0..n) = bt_round_bf16(p[0..n)), the
 * store of an activation-typed output, called by each op after its last
 * write to that output. Nothing in fp32 mode (so fp32 keeps its bits) or
 * when p is NULL. Chunked like the element-wise ops. */
void bt_cpu_round_act(const bt_backend *be, float *p, size_t n);
void bt_cpu_round_act_range(float *p, size_t n);

/* cpu_attention.c: zeroes head h's q, k and v slices (hs columns each) in
 * the T rows of one utterance's dqkv[T, 3C] (row stride 3C). The attention
 * backwards WRITE dqkv (ops.def) but sum dK, dV over query blocks: each
 * (b, h) clears its own slices first, then accumulates as before, so the
 * bits are those of the former zeroed-buffer-then-add contract. */
void bt_cpu_att_zero_head(float *dq, int T, int C, int hs);

/* bt_cpu_<name> for every op of kernels/ops.def, with its signature:
 * cpu_ops.c (dense, element-wise, loss, optimizer) and cpu_attention.c. */
#define BT_OP_RET(ret, name, params, args) ret bt_cpu_##name params;
#include "kernels/ops.def"

#endif /* BATON_CPU_INTERNAL_H */
