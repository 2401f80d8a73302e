/*
 * cpu_ops.c: the CPU reference for every op in kernels/ops.h except
 * attention (cpu_attention.c) and the speech ops (cpu_speech.c). The two
 * fused ops (residual_layernorm_fwd, xent_fwd_bwd) are built from the
 * same row helpers as the ops they fuse, so they give the same bits.
 *
 * Why it is written this way:
 *   - Matrix products go to OpenBLAS cblas_sgemm, forward and backward; the
 *     backward uses beta = 1 so the product lands directly on the gradient
 *     (ops.h: backward ops accumulate). Threads split the OUTPUT rows and
 *     never the inner dimension, so no element is a sum of partial sums
 *     from different threads and the bits repeat run after run.
 *   - Sums over rows (dbias, layernorm dw/db, dwpe, dwte) are parallelised
 *     over columns: one thread owns a block of columns and adds the rows in
 *     order 0..N-1, so the bits do not depend on the thread count or the
 *     schedule. They accumulate in double (cheap: memory bound anyway) so
 *     the reference is a little better than the kernels tested against it.
 *   - Per-row statistics (layernorm mean and variance, the softmax sums of
 *     cross-entropy) accumulate in double for the same reason; outputs
 *     are float.
 *   - exp is bt_cpu_expf (cpu_internal.h), not libm's expf, so that GELU
 *     and softmax loops vectorise; the tests measure its error.
 *   - Element-wise loops are plain `for` loops the compiler vectorises, with
 *     an OpenMP `if` so small tensors do not pay for a fork/join.
 */
#include "base/util.h"
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Columns per block in the column-parallel row sums: 64 floats = 4 cache
 * lines per row, enough for the compiler to vectorise the inner loop and
 * small enough that the double accumulators stay in registers/L1. */
#define CPU_COL_BLOCK 64

/* acc[j] += sum_n x[n*ld + j] for j < nc <= CPU_COL_BLOCK, rows in order,
 * in double. */
BT_CPU_SIMD_CLONES static void cpu_colsum_block(float *acc, const float *x,
                                                int N, int ld, int nc) {
  double s[CPU_COL_BLOCK] = {0};
  for (int n = 0; n < N; n++) {
    const float *row = x + (size_t)n * ld;
    for (int j = 0; j < nc; j++) s[j] += row[j];
  }
  for (int j = 0; j < nc; j++) acc[j] += (float)s[j];
}

/* acc[c] += sum_{n=0..N-1} x[n*ld + c] for c in [0, C), rows summed in
 * order in double by one thread per column block (deterministic). */
static void cpu_colsum_acc(int nt, float *acc, const float *x, int N, int C,
                           int ld) {
  int nBlock = (C + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN && nBlock > 1)
  for (int blk = 0; blk < nBlock; blk++) {
    int c0 = blk * CPU_COL_BLOCK;
    int nc = C - c0 < CPU_COL_BLOCK ? C - c0 : CPU_COL_BLOCK;
    cpu_colsum_block(acc + c0, x + c0, N, ld, nc);
  }
}

/* ---- matmul ------------------------------------------------------------
 * OpenBLAS runs single-threaded (cpu_backend.c says why); the parallelism is
 * ours: the rows of the OUTPUT are split into one contiguous slab per
 * OpenMP thread and each thread calls sgemm on its slab. No output element
 * is summed by two threads, and every element's inner sum runs over the
 * whole K in sgemm's own order. Slab edges are multiples of CPU_ROW_ALIGN
 * rows so that sgemm's register tiles line up the same way however many
 * threads there are (tests/kernels/test_ops.c checks 1 vs 2 threads bit for
 * bit). */

#define CPU_ROW_ALIGN 32
/* Below this many multiply-adds one sgemm call beats a fork/join. */
#define CPU_GEMM_PAR_MIN (1L << 20)

/* Thread iPart's slab [*p0, *p1) of nRow rows split nPart ways. */
static void cpu_slab(int nRow, int nPart, int iPart, int *p0, int *p1) {
  int per = (nRow + nPart - 1) / nPart;
  per = (per + CPU_ROW_ALIGN - 1) / CPU_ROW_ALIGN * CPU_ROW_ALIGN;
  int r0 = iPart * per, r1 = r0 + per;
  *p0 = r0 < nRow ? r0 : nRow;
  *p1 = r1 < nRow ? r1 : nRow;
}

/* C[M,Nc] (ldc) += op(A)[M,K] op(B)[K,Nc], the M rows split across the
 * OpenMP threads. A is [M,K] (lda) or, with bTransA, [K,M] (lda) whose
 * columns are the rows of op(A); B is [K,Nc] or [Nc,K] with bTransB. */
static void cpu_gemm_acc(int nt, int bTransA, int bTransB, int M, int Nc,
                         int K, const float *A, int lda, const float *B,
                         int ldb, float *Cm, int ldc) {
  if (M <= 0 || Nc <= 0 || K <= 0) return;
  long work = (long)M * Nc * K;
#pragma omp parallel num_threads(nt) if (work >= CPU_GEMM_PAR_MIN && M > CPU_ROW_ALIGN)
  {
    int r0, r1;
    cpu_slab(M, omp_get_num_threads(), omp_get_thread_num(), &r0, &r1);
    if (r1 > r0) {
      const float *Ar = bTransA ? A + r0 : A + (size_t)r0 * lda;
      cblas_sgemm(CblasRowMajor, bTransA ? CblasTrans : CblasNoTrans,
                  bTransB ? CblasTrans : CblasNoTrans, r1 - r0, Nc, K, 1.0f,
                  Ar, lda, B, ldb, 1.0f, Cm + (size_t)r0 * ldc, ldc);
    }
  }
}

/* out = inp W (+ bias). out is first filled with the bias rows (or 0) and
 * the product accumulated on top (beta = 1), so bias and no bias, and the
 * degenerate K = C = 0, take one path (sgemm may skip the product entirely
 * when K = 0, and beta = 0 would then leave out unwritten). The layout
 * only changes whether sgemm reads W transposed: IN_OUT [C,OC] as is,
 * OUT_IN [OC,C] as W^T. */
void bt_cpu_matmul_fwd(bt_backend *be, float *out, const float *inp,
                       const float *w, const float *bias, int N, int C, int OC,
                       bt_wlayout eLayout) {
  const int nt = bt_cpu_nthread(be);
  if (N <= 0 || OC <= 0) return;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * OC >= BT_CPU_PAR_MIN)
  for (int n = 0; n < N; n++) {
    float *o = out + (size_t)n * OC;
    if (bias) memcpy(o, bias, (size_t)OC * sizeof(float));
    else memset(o, 0, (size_t)OC * sizeof(float));
  }
  int bT = eLayout == BT_W_OUT_IN;
  cpu_gemm_acc(nt, 0, bT, N, OC, C, inp, C, w, bT ? C : OC, out, OC);
  bt_cpu_round_act(be, out, (size_t)N * OC);
}

/* dinp += dout W^T, dw += inp^T dout (stored in W's layout), dbias += the
 * column sums of dout; sgemm with beta = 1 accumulates in place. */
void bt_cpu_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                       const float *dout, const float *inp, const float *w,
                       int N, int C, int OC, bt_wlayout eLayout) {
  const int nt = bt_cpu_nthread(be);
  if (N <= 0 || OC <= 0 || C <= 0) return;
  int bOutIn = eLayout == BT_W_OUT_IN;
  /* [N,OC] x [OC,C]: W^T for IN_OUT, W itself for OUT_IN */
  if (dinp) {
    cpu_gemm_acc(nt, 0, !bOutIn, N, C, OC, dout, OC, w, bOutIn ? C : OC, dinp,
                 C);
    bt_cpu_round_act(be, dinp, (size_t)N * C);
  }
  if (dw) {
    if (bOutIn) /* dW[OC,C] += dout^T [OC,N] x inp [N,C] */
      cpu_gemm_acc(nt, 1, 0, OC, C, N, dout, OC, inp, C, dw, C);
    else /* dW[C,OC] += inp^T [C,N] x dout [N,OC] */
      cpu_gemm_acc(nt, 1, 0, C, OC, N, inp, C, dout, OC, dw, OC);
  }
  if (dbias) cpu_colsum_acc(nt, dbias, dout, N, OC, OC);
}

/* ---- bias -------------------------------------------------------------- */

/* out = inp + bias per row; out may alias inp (element-wise). */
void bt_cpu_bias_fwd(bt_backend *be, float *out, const float *inp,
                     const float *bias, int N, int C) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    for (int c = 0; c < C; c++) o[c] = x[c] + bias[c];
  }
  bt_cpu_round_act(be, out, (size_t)N * C);
}

void bt_cpu_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                     const float *dout, int N, int C) {
  const int nt = bt_cpu_nthread(be);
  if (N <= 0 || C <= 0) return;
  if (dinp) bt_cpu_residual_bwd(be, dinp, NULL, dout, (size_t)N * C);
  if (dbias) cpu_colsum_acc(nt, dbias, dout, N, C, C);
}

/* ---- embedding --------------------------------------------------------- */

void bt_cpu_embed_fwd(bt_backend *be, float *out, const int32_t *tok,
                      const float *wte, const float *wpe, int B, int T,
                      int C) {
  const int nt = bt_cpu_nthread(be);
  int nRow = B * T;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)nRow * C >= BT_CPU_PAR_MIN)
  for (int bt = 0; bt < nRow; bt++) {
    /* no V here to bound it above; a masked target (-1) passed as a token
     * is the likely mistake */
    BT_ASSERT(tok[bt] >= 0);
    const float *e = wte + (size_t)tok[bt] * C;
    float *o = out + (size_t)bt * C;
    if (wpe) {
      const float *p = wpe + (size_t)(bt % T) * C;
      for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    } else {
      memcpy(o, e, (size_t)C * sizeof(float));
    }
  }
  bt_cpu_round_act(be, out, (size_t)nRow * C);
}

/* dwte[tok[b,t]] += dout[b,t]: the same token row can be hit from many
 * (b,t), so rows cannot be split across threads without atomics (which
 * would make the sum order, hence the bits, depend on timing). Instead each
 * thread owns a block of CHANNELS and walks all (b,t) in order: every
 * dwte element is accumulated by one thread in a fixed order.
 * dwpe[t] += sum_b dout[b,t]: independent per t, so parallel over t with b
 * summed in order. */
void bt_cpu_embed_bwd(bt_backend *be, float *dwte, float *dwpe,
                      const float *dout, const int32_t *tok, int B, int T,
                      int C, int V) {
  const int nt = bt_cpu_nthread(be);
  int nRow = B * T;
  if (nRow <= 0 || C <= 0) return;
  for (int bt = 0; bt < nRow; bt++)
    BT_ASSERT(tok[bt] >= 0 && tok[bt] < V);
  if (dwte) {
    int nBlock = (C + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)nRow * C >= BT_CPU_PAR_MIN && nBlock > 1)
    for (int blk = 0; blk < nBlock; blk++) {
      int c0 = blk * CPU_COL_BLOCK;
      int nc = C - c0 < CPU_COL_BLOCK ? C - c0 : CPU_COL_BLOCK;
      for (int bt = 0; bt < nRow; bt++) {
        float *d = dwte + (size_t)tok[bt] * C + c0;
        const float *g = dout + (size_t)bt * C + c0;
        for (int j = 0; j < nc; j++) d[j] += g[j];
      }
    }
  }
  if (dwpe) {
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)nRow * C >= BT_CPU_PAR_MIN)
    for (int t = 0; t < T; t++) {
      float *d = dwpe + (size_t)t * C;
      for (int b = 0; b < B; b++) {
        const float *g = dout + ((size_t)b * T + t) * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
      }
    }
  }
}

/* ---- layernorm --------------------------------------------------------- */

#define CPU_LN_EPS 1e-5 /* GPT-2 */

/* One row: two-pass mean and variance in double (one pass E[x^2]-E[x]^2
 * cancels badly when |mean| >> std), x - mean in double too (the float
 * mean's rounding would otherwise dominate the normalised value). Saves
 * mean and 1/std for the backward. */
BT_CPU_SIMD_CLONES static void cpu_ln_fwd_row(float *o, float *pMean,
                                              float *pRstd, const float *x,
                                              const float *w, const float *b,
                                              int C) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int c = 0; c < C; c++) s += x[c];
  double m = s / C;
  double v = 0.0;
#pragma omp simd reduction(+ : v)
  for (int c = 0; c < C; c++) {
    double d = x[c] - m;
    v += d * d;
  }
  double rs = 1.0 / sqrt(v / C + CPU_LN_EPS);
  for (int c = 0; c < C; c++) o[c] = (float)((x[c] - m) * rs) * w[c] + b[c];
  *pMean = (float)m;
  *pRstd = (float)rs;
}

void bt_cpu_layernorm_fwd(bt_backend *be, float *out, float *mean, float *rstd,
                          const float *inp, const float *w, const float *b,
                          int N, int C) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN)
  for (int n = 0; n < N; n++) {
    float m, rs;
    cpu_ln_fwd_row(out + (size_t)n * C, &m, &rs, inp + (size_t)n * C, w, b,
                   C);
    if (mean) mean[n] = m;
    if (rstd) rstd[n] = rs;
  }
  bt_cpu_round_act(be, out, (size_t)N * C);
}

/* With xhat = (x - mean) rstd and y = xhat w + b:
 *   dxhat = dy w
 *   dx    = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
 *   dw   += sum_n dy xhat,  db += sum_n dy
 * dx is per row (parallel over rows); dw/db are row sums (parallel over
 * column blocks, rows in order), so two passes. */
BT_CPU_SIMD_CLONES static void cpu_ln_bwd_row(float *dx, const float *dy,
                                              const float *x, const float *w,
                                              float m, float rs, int C) {
  double sd = 0.0, sdx = 0.0;
#pragma omp simd reduction(+ : sd, sdx)
  for (int c = 0; c < C; c++) {
    float dxh = dy[c] * w[c];
    sd += dxh;
    sdx += (double)dxh * ((x[c] - m) * rs);
  }
  float md = (float)(sd / C), mdx = (float)(sdx / C);
  for (int c = 0; c < C; c++) {
    float xh = (x[c] - m) * rs;
    dx[c] += rs * (dy[c] * w[c] - md - xh * mdx);
  }
}

/* dw[j] += sum_n dy[n,j] xhat[n,j], db[j] += sum_n dy[n,j] for the nc <=
 * CPU_COL_BLOCK columns starting at dy/x (row stride ld), rows in order,
 * in double. */
BT_CPU_SIMD_CLONES static void cpu_ln_dwdb_block(float *dw, float *db,
                                                 const float *dy,
                                                 const float *x,
                                                 const float *mean,
                                                 const float *rstd, int N,
                                                 int ld, int nc) {
  double sw[CPU_COL_BLOCK] = {0}, sb[CPU_COL_BLOCK] = {0};
  for (int n = 0; n < N; n++) {
    const float *xr = x + (size_t)n * ld, *dyr = dy + (size_t)n * ld;
    float m = mean[n], rs = rstd[n];
    for (int j = 0; j < nc; j++) {
      sw[j] += dyr[j] * ((xr[j] - m) * rs);
      sb[j] += dyr[j];
    }
  }
  for (int j = 0; j < nc; j++) {
    if (dw) dw[j] += (float)sw[j];
    if (db) db[j] += (float)sb[j];
  }
}

void bt_cpu_layernorm_bwd(bt_backend *be, float *dinp, float *dw, float *db,
                          const float *dout, const float *inp, const float *w,
                          const float *mean, const float *rstd, int N, int C) {
  const int nt = bt_cpu_nthread(be);
  if (N <= 0 || C <= 0) return;
  if (dinp) {
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN)
    for (int n = 0; n < N; n++)
      cpu_ln_bwd_row(dinp + (size_t)n * C, dout + (size_t)n * C,
                     inp + (size_t)n * C, w, mean[n], rstd[n], C);
    bt_cpu_round_act(be, dinp, (size_t)N * C);
  }
  if (dw || db) {
    int nBlock = (C + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN && nBlock > 1)
    for (int blk = 0; blk < nBlock; blk++) {
      int c0 = blk * CPU_COL_BLOCK;
      int nc = C - c0 < CPU_COL_BLOCK ? C - c0 : CPU_COL_BLOCK;
      cpu_ln_dwdb_block(dw ? dw + c0 : NULL, db ? db + c0 : NULL,
                        dout + c0, inp + c0, mean, rstd, N, C, nc);
    }
  }
}

/* ---- GELU --------------------------------------------------------------
 * GPT-2 "gelu_new": 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
 * Using 1 + tanh(u) = 2 sigmoid(2u) this is x * sigmoid(2u)
 * = x / (1 + exp(-2u)): the same function, with no cancellation near
 * u = 0 and an exp the compiler can vectorise (bt_cpu_expf), where libm's
 * tanhf is a scalar call that made GELU cost half as much as all matmuls. */
#define CPU_GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define CPU_GELU_K 0.044715f

BT_CPU_SIMD_CLONES static void cpu_gelu_fwd_range(float *out,
                                                  const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float u = CPU_GELU_S * (x + CPU_GELU_K * x * x * x);
    out[i] = x / (1.0f + bt_cpu_expf(-2.0f * u));
  }
}

/* With s = sigmoid(2u): 1 + tanh u = 2s and 1 - tanh^2 u = 4 s (1 - s), so
 * d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'
 *                           = s + 2 x s (1 - s) u',
 * u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
BT_CPU_SIMD_CLONES static void cpu_gelu_bwd_range(float *dinp,
                                                  const float *inp,
                                                  const float *dout,
                                                  size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float u = CPU_GELU_S * (x + CPU_GELU_K * x * x * x);
    float s = 1.0f / (1.0f + bt_cpu_expf(-2.0f * u));
    float du = CPU_GELU_S * (1.0f + 3.0f * CPU_GELU_K * x * x);
    dinp[i] += (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
  }
}

void bt_cpu_gelu_fwd(bt_backend *be, float *out, const float *inp, size_t n) {
  const int nt = bt_cpu_nthread(be);
  size_t nChunk = (n + BT_CPU_EW_CHUNK - 1) / BT_CPU_EW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (size_t k = 0; k < nChunk; k++) {
    size_t i0 = k * BT_CPU_EW_CHUNK;
    size_t len = n - i0 < BT_CPU_EW_CHUNK ? n - i0 : BT_CPU_EW_CHUNK;
    cpu_gelu_fwd_range(out + i0, inp + i0, len);
  }
  bt_cpu_round_act(be, out, n);
}

/* The pair itself, so the result is bit-identical to matmul_fwd then
 * gelu_fwd by construction (ops.def), rounding included in bf16 mode: the
 * GELU reads the rounded pre, as the unfused trainer did. The CPU has no
 * epilogue to fuse into; sgemm dominates either way. */
void bt_cpu_matmul_gelu_fwd(bt_backend *be, float *out, float *pre,
                            const float *inp, const float *w,
                            const float *bias, int N, int C, int OC,
                            bt_wlayout eLayout) {
  if (N <= 0 || OC <= 0) return;
  bt_cpu_matmul_fwd(be, pre, inp, w, bias, N, C, OC, eLayout);
  bt_cpu_gelu_fwd(be, out, pre, (size_t)N * OC);
}

void bt_cpu_gelu_bwd(bt_backend *be, float *dinp, const float *inp,
                     const float *dout, size_t n) {
  const int nt = bt_cpu_nthread(be);
  size_t nChunk = (n + BT_CPU_EW_CHUNK - 1) / BT_CPU_EW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (size_t k = 0; k < nChunk; k++) {
    size_t i0 = k * BT_CPU_EW_CHUNK;
    size_t len = n - i0 < BT_CPU_EW_CHUNK ? n - i0 : BT_CPU_EW_CHUNK;
    cpu_gelu_bwd_range(dinp + i0, inp + i0, dout + i0, len);
  }
  bt_cpu_round_act(be, dinp, n);
}

/* ---- residual ---------------------------------------------------------- */

void bt_cpu_residual_fwd(bt_backend *be, float *out, const float *a,
                         const float *b, size_t n) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
  bt_cpu_round_act(be, out, n);
}

void bt_cpu_residual_bwd(bt_backend *be, float *da, float *db,
                         const float *dout, size_t n) {
  const int nt = bt_cpu_nthread(be);
  if (da) {
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) da[i] += dout[i];
    bt_cpu_round_act(be, da, n);
  }
  if (db) {
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) db[i] += dout[i];
    bt_cpu_round_act(be, db, n);
  }
}

/* outRes = a + b, then layernorm of each row of it, one row at a time
 * (the row is still in cache when the layernorm reads it). In bf16 mode
 * the row is rounded before the layernorm reads it, as residual_fwd
 * rounds its output before layernorm_fwd would read it: bit-identical to
 * the two ops (tests/kernels/test_ops.c compares them). */
void bt_cpu_residual_layernorm_fwd(bt_backend *be, float *outRes,
                                   float *outLn, float *mean, float *rstd,
                                   const float *a, const float *b,
                                   const float *w, const float *bias, int N,
                                   int C) {
  const int nt = bt_cpu_nthread(be);
  const int bRound = be->eActDtype == BT_ACT_BF16;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * C >= BT_CPU_PAR_MIN)
  for (int n = 0; n < N; n++) {
    size_t o = (size_t)n * C;
    float *r = outRes + o;
    for (int c = 0; c < C; c++) r[c] = a[o + c] + b[o + c];
    if (bRound) bt_cpu_round_act_range(r, (size_t)C);
    float m, rs;
    cpu_ln_fwd_row(outLn + o, &m, &rs, r, w, bias, C);
    if (mean) mean[n] = m;
    if (rstd) rstd[n] = rs;
  }
  bt_cpu_round_act(be, outLn, (size_t)N * C);
}

/* ---- softmax cross-entropy --------------------------------------------- */

/* Row max and sum_v exp(l_v - max) over the V real columns. The exps are
 * bt_cpu_expf (1-2 ulp, vectorised), summed in double: the log-sum-exp is
 * the whole loss, so its rounding is the loss's. */
BT_CPU_SIMD_CLONES static void cpu_row_lse(const float *l, int V, float *pMax,
                                           double *pSum) {
  float mx = l[0];
  for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int v = 0; v < V; v++) s += bt_cpu_expf(l[v] - mx);
  *pMax = mx;
  *pSum = s;
}

/* d[v] = softmax(l)[v] * scale; d may alias l (element v is read, then
 * written). */
BT_CPU_SIMD_CLONES static void cpu_xent_row_grad(float *d, const float *l,
                                                 float mx, float inv,
                                                 float scale, int V) {
  for (int v = 0; v < V; v++) d[v] = bt_cpu_expf(l[v] - mx) * inv * scale;
}

/* losses[n] = logsumexp(l) - l[target] = log(sum) + max - l[target]. */
void bt_cpu_xent_fwd(bt_backend *be, float *losses, const float *logits,
                     const int32_t *targets, int N, int V, int Vp) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * V >= BT_CPU_PAR_MIN / 4)
  for (int n = 0; n < N; n++) {
    int tgt = targets[n];
    if (tgt < 0) {
      losses[n] = 0.0f;
      continue;
    }
    BT_ASSERT(tgt < V);
    const float *l = logits + (size_t)n * Vp;
    float mx;
    double s;
    cpu_row_lse(l, V, &mx, &s);
    losses[n] = (float)(log(s) + mx - l[tgt]);
  }
}

/* dlogits = (softmax - onehot) * scale. dlogits may alias logits: the row
 * statistics are taken first, then each element is read before it is
 * written, so no pointer here is restrict. */
void bt_cpu_xent_bwd(bt_backend *be, float *dlogits, const float *logits,
                     const int32_t *targets, float scale, int N, int V,
                     int Vp) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * V >= BT_CPU_PAR_MIN / 4)
  for (int n = 0; n < N; n++) {
    const float *l = logits + (size_t)n * Vp;
    float *d = dlogits + (size_t)n * Vp;
    int tgt = targets[n];
    if (tgt < 0) {
      memset(d, 0, (size_t)Vp * sizeof(float));
      continue;
    }
    BT_ASSERT(tgt < V);
    float mx;
    double s;
    cpu_row_lse(l, V, &mx, &s);
    cpu_xent_row_grad(d, l, mx, (float)(1.0 / s), scale, V);
    d[tgt] -= scale;
    for (int v = V; v < Vp; v++) d[v] = 0.0f;
  }
  bt_cpu_round_act(be, dlogits, (size_t)N * Vp);
}

/* xent_fwd then xent_bwd in place, row by row: the loss is taken from the
 * row's statistics and its target logit before the row is overwritten
 * with the gradient. The same helpers, in the same order, as the two ops,
 * so the losses and the gradient are bit-identical to theirs. */
void bt_cpu_xent_fwd_bwd(bt_backend *be, float *losses, float *logits,
                         const int32_t *targets, float scale, int N, int V,
                         int Vp) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * V >= BT_CPU_PAR_MIN / 4)
  for (int n = 0; n < N; n++) {
    float *l = logits + (size_t)n * Vp;
    int tgt = targets[n];
    if (tgt < 0) {
      losses[n] = 0.0f;
      memset(l, 0, (size_t)Vp * sizeof(float));
      continue;
    }
    BT_ASSERT(tgt < V);
    float mx;
    double s;
    cpu_row_lse(l, V, &mx, &s);
    losses[n] = (float)(log(s) + mx - l[tgt]);
    cpu_xent_row_grad(l, l, mx, (float)(1.0 / s), scale, V);
    l[tgt] -= scale;
    for (int v = V; v < Vp; v++) l[v] = 0.0f;
  }
  bt_cpu_round_act(be, logits, (size_t)N * Vp);
}

/* ---- optimizer and helpers --------------------------------------------- */

/* AdamW exactly as ops.h writes it, on one chunk, in tiles of
 * CPU_ADAMW_TILE elements and three loops: the moment update and the
 * parameter update vectorise; sqrtf alone cannot (it may set errno, so GCC
 * keeps it scalar and, in a fused loop, drags the whole loop to scalar
 * with it). Same operations per element as the one-loop form. */
#define CPU_ADAMW_TILE 256
typedef struct cpu_adamw_k {
  float b1, b2, lr, eps, wd, gs, bc1, bc2;
} cpu_adamw_k;

BT_CPU_SIMD_CLONES static void cpu_adamw_range(float *param,
                                               const float *grad, float *m,
                                               float *v, size_t n,
                                               const cpu_adamw_k *k) {
  float den[CPU_ADAMW_TILE];
  for (size_t i0 = 0; i0 < n; i0 += CPU_ADAMW_TILE) {
    size_t nn = n - i0 < CPU_ADAMW_TILE ? n - i0 : CPU_ADAMW_TILE;
    float *p = param + i0, *mm = m + i0, *vv = v + i0;
    const float *g = grad + i0;
    for (size_t j = 0; j < nn; j++) {
      float gj = g[j] * k->gs;
      mm[j] = k->b1 * mm[j] + (1.0f - k->b1) * gj;
      vv[j] = k->b2 * vv[j] + (1.0f - k->b2) * gj * gj;
      den[j] = vv[j] / k->bc2; /* vhat */
    }
    for (size_t j = 0; j < nn; j++) den[j] = sqrtf(den[j]);
    for (size_t j = 0; j < nn; j++) {
      float mhat = mm[j] / k->bc1;
      p[j] -= k->lr * (mhat / (den[j] + k->eps) + k->wd * p[j]);
    }
  }
}

/* The bias corrections are computed once in double (beta^t for large t
 * underflows gracefully there). */
void bt_cpu_adamw(bt_backend *be, float *param, const float *grad, float *m,
                  float *v, size_t n, const bt_adamw_hparams *hp) {
  const int nt = bt_cpu_nthread(be);
  BT_ASSERT(hp->t >= 1);
  const cpu_adamw_k k = {
      hp->beta1, hp->beta2, hp->lr, hp->eps, hp->weight_decay, hp->grad_scale,
      (float)(1.0 - pow((double)hp->beta1, hp->t)),
      (float)(1.0 - pow((double)hp->beta2, hp->t))};
  size_t nChunk = (n + BT_CPU_EW_CHUNK - 1) / BT_CPU_EW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN / 4)
  for (size_t c = 0; c < nChunk; c++) {
    size_t i0 = c * BT_CPU_EW_CHUNK;
    size_t len = n - i0 < BT_CPU_EW_CHUNK ? n - i0 : BT_CPU_EW_CHUNK;
    cpu_adamw_range(param + i0, grad + i0, m + i0, v + i0, len, &k);
  }
}

/* sum x[i]^2 in double; each square is exact in double, only the
 * (compile-time fixed) summation order rounds. */
BT_CPU_SIMD_CLONES static double cpu_sumsq_range(const float *x, size_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

/* Fixed chunking: the chunk boundaries depend only on n, each chunk is
 * summed in double by one thread, and the chunk sums are added in order,
 * so the result is the same bits for any thread count. */
#define CPU_SUMSQ_CHUNKS 64
double bt_cpu_sumsq(bt_backend *be, const float *x, size_t n) {
  const int nt = bt_cpu_nthread(be);
  double part[CPU_SUMSQ_CHUNKS] = {0};
  size_t chunk = (n + CPU_SUMSQ_CHUNKS - 1) / CPU_SUMSQ_CHUNKS;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (int k = 0; k < CPU_SUMSQ_CHUNKS; k++) {
    size_t i0 = (size_t)k * chunk, i1 = i0 + chunk;
    if (i1 > n) i1 = n;
    part[k] = i1 > i0 ? cpu_sumsq_range(x + i0, i1 - i0) : 0.0;
  }
  double tot = 0.0;
  for (int k = 0; k < CPU_SUMSQ_CHUNKS; k++) tot += part[k];
  return tot;
}

void bt_cpu_scale(bt_backend *be, float *x, float s, size_t n) {
  const int nt = bt_cpu_nthread(be);
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* The working copy / input conversion (ops.def): storage is float, so a
 * copy (memmove: out may equal in) and, in bf16 mode, the rounding a GPU
 * applies when it stores the bf16 copy. */
void bt_cpu_to_act(bt_backend *be, float *out, const float *in, size_t n) {
  if (n == 0) return;
  if (out != in) memmove(out, in, n * sizeof(float));
  bt_cpu_round_act(be, out, n);
}
