/*
 * cuda_fused.cu: the CUDA backend's fused ops (issue 12 item 3):
 *
 *   residual_layernorm_fwd  a pre-LN block's residual add and the layernorm
 *                           that follows it, one warp per row;
 *   xent_fwd_bwd            softmax cross-entropy's loss and gradient in
 *                           one launch, in place on the logits, one block
 *                           per row.
 *
 * Contracts: kernels/ops.def; invariants: cuda_common.h. Both kernels are
 * templates over the [act] storage type T (float or __nv_bfloat16, picked
 * by BT_CUDA_ACT) and touch [act] data only through bt_ld / bt_st, so the
 * arithmetic is fp32 and every bf16 store rounds to nearest even, as the
 * CPU reference does in bf16 mode.
 *
 * Why fused:
 *   - residual + layernorm: the unfused pair writes the sum, then reads it
 *     back for the layernorm's statistics and again for its output. Here a
 *     warp writes the sum and reads its own row back while it is still in
 *     L1/L2, with 16-byte vector loads and stores where the rows allow
 *     (bt_fz_vec), and one launch instead of two.
 *   - cross-entropy: the training step needs the loss and the gradient of
 *     the same logits; one pass computes the row statistics, then each
 *     element is read once more and overwritten by its gradient. The loss
 *     is written by the thread that owns the target column, from the value
 *     it read just before overwriting it.
 *
 * Determinism (cuda_common.h invariant 2): row reductions only, each by
 * one warp (butterfly) or one block (bt_block_max / bt_block_sum), in a
 * fixed order; no atomics.
 *
 * Names: this file's #defines and device functions are copied into the
 * CPU emulator beside cuda_ops.cu's (tests/gpu/emu/extract.py), so they
 * carry their own prefixes (FZ_, bt_fz_) rather than reusing LN_ / XENT_.
 */
#include "kernels/cuda/cuda_common.h"

#include <string.h>

/* ======================================================================
 * residual + layernorm
 * ====================================================================== */

#define FZ_LN_WARPS 8 /* rows per 256-thread block: one warp per row */
#define FZ_PACK_MAX 8 /* elements of a 16-byte pack (bf16); float: 4 */

/* One value rounded to the storage type, as a store and a load would
 * leave it: the layernorm must see the sum as residual_fwd stores it. */
template <typename T>
__device__ __forceinline__ float bt_fz_round(float v) {
  T t;
  bt_st(&t, v);
  return bt_ld(&t);
}

/* E consecutive elements at p into f[0..E): E = 1, one scalar, or E =
 * 16 / sizeof(T), one 16-byte load (p is then 16-byte aligned: the host
 * wrapper checks; the pack loops run to the constant so that the compiler
 * sees every element written).
 * The pack moves between the uint4 and the element array by memcpy, the
 * one aliasing-safe way in C++ (a cast of &u would let the compiler drop
 * the stores: it did in the emulator); nvcc turns it into register moves. */
template <typename T>
__device__ __forceinline__ void bt_fz_ld(const T *p, int E, float *f) {
  if (E == 1) {
    f[0] = bt_ld(p);
    return;
  }
  const uint4 u = *reinterpret_cast<const uint4 *>(p);
  T e[16 / sizeof(T)];
  memcpy(e, &u, sizeof u);
  for (int k = 0; k < (int)(16 / sizeof(T)); k++) f[k] = bt_ld(e + k);
}

template <typename T>
__device__ __forceinline__ void bt_fz_st(T *p, int E, const float *f) {
  if (E == 1) {
    bt_st(p, f[0]);
    return;
  }
  T e[16 / sizeof(T)];
  for (int k = 0; k < (int)(16 / sizeof(T)); k++) bt_st(e + k, f[k]);
  uint4 u;
  memcpy(&u, e, sizeof u);
  *reinterpret_cast<uint4 *>(p) = u;
}

/* One warp per row; E elements (a pack) per lane step, E = 1 or 16 bytes'
 * worth. Three passes over the row, each lane visiting the same elements
 * in each, so a lane reads back only what it wrote itself (no barrier):
 *   1. outRes = a + b (stored), sum of the stored values -> mean
 *   2. sum of (x - mean)^2 -> rstd (two passes: no cancellation)
 *   3. outLn = (x - mean) * rstd * w + bias
 * The statistics follow bt_k_ln_fwd (cuda_ops.cu) operation for
 * operation, so the fused op and the pair agree to rounding order. */
template <typename T>
__global__ void bt_k_residual_ln_fwd(T *outRes, T *outLn, float *mean,
                                     float *rstd, const T *a, const T *b,
                                     const T *w, const T *bias, int N, int C,
                                     int E) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * FZ_LN_WARPS + (threadIdx.x >> 5);
  if (row >= N) return; /* whole warp: no block barrier below */
  const size_t o = (size_t)row * C;
  float f[FZ_PACK_MAX], g[FZ_PACK_MAX];
  float s = 0.0f;
  for (int c = lane * E; c < C; c += 32 * E) {
    bt_fz_ld(a + o + c, E, f);
    bt_fz_ld(b + o + c, E, g);
    for (int k = 0; k < E; k++) f[k] = bt_fz_round<T>(f[k] + g[k]);
    bt_fz_st(outRes + o + c, E, f);
    for (int k = 0; k < E; k++) s += f[k];
  }
  const float m = bt_warp_sum(s) / (float)C;
  float v = 0.0f;
  for (int c = lane * E; c < C; c += 32 * E) {
    bt_fz_ld(outRes + o + c, E, f);
    for (int k = 0; k < E; k++) {
      const float d = f[k] - m;
      v += d * d;
    }
  }
  const float r = 1.0f / sqrtf(bt_warp_sum(v) / (float)C + 1e-5f);
  float h[FZ_PACK_MAX];
  for (int c = lane * E; c < C; c += 32 * E) {
    bt_fz_ld(outRes + o + c, E, f);
    bt_fz_ld(w + c, E, g);
    bt_fz_ld(bias + c, E, h);
    for (int k = 0; k < E; k++) f[k] = (f[k] - m) * r * g[k] + h[k];
    bt_fz_st(outLn + o + c, E, f);
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

/* 16-byte packs when every row of every [act] argument starts on a
 * 16-byte boundary: the bases are aligned and a row is a whole number of
 * packs. Otherwise scalar accesses (same arithmetic, same bits). */
static int bt_fz_vec(size_t nElemSize, int C, const void *const *ap,
                     int nPtr) {
  const int E = (int)(16 / nElemSize);
  if (C % E != 0) return 1;
  for (int i = 0; i < nPtr; i++)
    if ((uintptr_t)ap[i] % 16 != 0) return 1;
  return E;
}

void bt_cuda_residual_layernorm_fwd(bt_backend *be, float *outRes,
                                    float *outLn, float *mean, float *rstd,
                                    const float *a, const float *b,
                                    const float *w, const float *bias, int N,
                                    int C) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0 || C <= 0) return;
  const void *ap[6] = {outRes, outLn, a, b, w, bias};
  const unsigned nBlock = (unsigned)((N + FZ_LN_WARPS - 1) / FZ_LN_WARPS);
  BT_CUDA_ACT(be, {
    const int E = bt_fz_vec(sizeof(act_t), C, ap, 6);
    bt_k_residual_ln_fwd<act_t><<<nBlock, 32 * FZ_LN_WARPS, 0, cu->stream>>>(
        (act_t *)outRes, (act_t *)outLn, mean, rstd, (const act_t *)a,
        (const act_t *)b, (const act_t *)w, (const act_t *)bias, N, C, E);
  });
  BT_CUDA_LAUNCHED(cu);
}

/* ======================================================================
 * softmax cross-entropy, loss and gradient in place: one block per row
 * ====================================================================== */

#define FZ_XENT_THREADS 256

/* losses[row] = log S - (x_t - M), written by the thread that owns column
 * t from the value it reads just before it overwrites it with the
 * gradient; x[v] = (softmax_v - [v == t]) * scale for v < V, 0 for the
 * padding. A masked row (t < 0): loss 0, gradient 0. A target >= V (a
 * loader bug) gives a NaN loss and a NaN gradient row, as xent_fwd/bwd. */
template <typename T>
__global__ void bt_k_xent_fwd_bwd(float *losses, T *logits,
                                  const int32_t *targets, float scale, int V,
                                  int Vp) {
  __shared__ float sh[32];
  const int row = blockIdx.x;
  const int t = targets[row];
  T *x = logits + (size_t)row * Vp;
  if (t < 0) { /* the same in every thread: no barrier is skipped by some */
    if (threadIdx.x == 0) losses[row] = 0.0f;
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) bt_st(x + v, 0.0f);
    return;
  }
  float M, S;
  bt_xent_row_stats(x, V, sh, &M, &S);
  if (t >= V) {
    if (threadIdx.x == 0) losses[row] = NAN;
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) bt_st(x + v, NAN);
    return;
  }
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    if (v < V) {
      const float xv = bt_ld(x + v);
      if (v == t) losses[row] = logf(S) - (xv - M);
      const float p = expf(xv - M) / S;
      bt_st(x + v, (p - (v == t ? 1.0f : 0.0f)) * scale);
    } else {
      bt_st(x + v, 0.0f);
    }
  }
}

void bt_cuda_xent_fwd_bwd(bt_backend *be, float *losses, float *logits,
                          const int32_t *targets, float scale, int N, int V,
                          int Vp) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0) return;
  BT_ASSERT(V > 0 && V <= Vp);
  BT_CUDA_ACT(be, bt_k_xent_fwd_bwd<act_t><<<N, FZ_XENT_THREADS, 0,
                                              cu->stream>>>(
                      losses, (act_t *)logits, targets, scale, V, Vp));
  BT_CUDA_LAUNCHED(cu);
}
