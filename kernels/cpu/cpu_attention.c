/*
 * cpu_attention.c: causal multi-head self-attention, CPU reference.
 *
 * Layout (GPT-2 / llm.c): qkv[B,T,3C] holds q in columns [0,C), k in
 * [C,2C), v in [2C,3C); head h owns the slice [h*hs, (h+1)*hs) of each,
 * hs = C/NH. att[B,NH,T,T] keeps the softmax probabilities (row t has
 * zeros for t2 > t) for the backward.
 *
 * Why it is written this way:
 *   - One (b, h) pair is one independent problem: its outputs (out slice,
 *     att block, and in the backward its dq/dk/dv slices) are touched by no
 *     other pair. So we parallelise over (b, h) with a static schedule and
 *     no thread ever adds into memory another thread writes: deterministic
 *     for any thread count, and no atomics.
 *   - Each (b, h) is a few small matrix products, done by single-threaded
 *     OpenBLAS sgemm (cpu_backend.c runs OpenBLAS with one thread) reading
 *     q, k, v in place through their row stride 3C. The query rows go in
 *     blocks of CPU_ATT_BLOCK: rows [r0, r1) see keys [0, r1) only, so the
 *     products cover the causal triangle plus a sliver of the diagonal
 *     blocks (5/8 of the full T x T at T = 128) while each call stays
 *     large enough for OpenBLAS's SIMD kernels. Measured at T = 128,
 *     hs = 64, one thread, per layer: plain vectorised loops over the
 *     triangle 5.3 / 9.3 ms (fwd / bwd), full T x T sgemm 1.9 / 2.5 ms,
 *     blocks of 32: 1.5 / 1.6 ms (16 and 64 are slower). Entries above
 *     the diagonal get probability (and dS) exactly 0, so the products
 *     need no mask.
 *   - The softmax rows use the vectorisable bt_cpu_expf and sum in double.
 *   - The decode step (one new query per head against a KV cache, for
 *     `baton infer`) uses the same row softmax, with sgemv products.
 *   - The backward's dP / dS matrix for one (b,h) lives in that pair's
 *     T*T block of the caller's scratch, so the op never allocates.
 */
#include "base/util.h"
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t bt_cpu_attention_att_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T * T;
}

size_t bt_cpu_attention_scratch_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T * T;
}

/* Query rows per block; see the file comment for the measurement. */
#define CPU_ATT_BLOCK 32

/* Work in multiply-adds of one call, to decide whether to go parallel. */
static size_t cpu_att_work(int B, int T, int C) {
  return (size_t)B * T * T * C;
}

/* In place on one row of n scores: softmax with the row max subtracted
 * (stable), exp by bt_cpu_expf, the sum in double. Static inline so that
 * each target clone of its callers vectorises its own copy. */
static inline void cpu_softmax_row(float *p, int n) {
  float mx = p[0];
  for (int t2 = 1; t2 < n; t2++) mx = p[t2] > mx ? p[t2] : mx;
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int t2 = 0; t2 < n; t2++) {
    float e = bt_cpu_expf(p[t2] - mx);
    p[t2] = e;
    sum += e;
  }
  float inv = (float)(1.0 / sum);
  for (int t2 = 0; t2 < n; t2++) p[t2] *= inv;
}

/* In place on the T x T scores S of one (b,h): row t becomes
 * softmax(S[t, 0..t]) followed by zeros. */
BT_CPU_SIMD_CLONES static void cpu_softmax_causal(float *S, int T) {
  for (int t = 0; t < T; t++) {
    float *p = S + (size_t)t * T;
    cpu_softmax_row(p, t + 1);
    for (int t2 = t + 1; t2 < T; t2++) p[t2] = 0.0f;
  }
}

/* The decode step's rows (NH rows of n scores). */
BT_CPU_SIMD_CLONES static void cpu_softmax_rows(float *S, int nRow, int n) {
  for (int r = 0; r < nRow; r++) cpu_softmax_row(S + (size_t)r * n, n);
}

/* In place on dP of one (b,h): dS = P * (dP - rowsum(P * dP)) * scale.
 * Where P is 0 (above the diagonal) dS is 0 too. */
BT_CPU_SIMD_CLONES static void cpu_softmax_causal_bwd(float *dP,
                                                      const float *P, int T,
                                                      float scale) {
  for (int t = 0; t < T; t++) {
    const float *p = P + (size_t)t * T;
    float *d = dP + (size_t)t * T;
    double sdp = 0.0;
#pragma omp simd reduction(+ : sdp)
    for (int t2 = 0; t2 <= t; t2++) sdp += p[t2] * d[t2];
    const float fs = (float)sdp;
    for (int t2 = 0; t2 <= t; t2++) d[t2] = p[t2] * (d[t2] - fs) * scale;
    for (int t2 = t + 1; t2 < T; t2++) d[t2] = 0.0f; /* dP not computed here */
  }
}

/* Per (b,h): S = scale Q K^T (sgemm into the att block), row-wise causal
 * softmax with the row max subtracted (stable), zeros above the diagonal,
 * then out_h = P V. */
void bt_cpu_attention_fwd(bt_backend *be, float *out, float *att,
                          const float *qkv, int B, int T, int C, int NH) {
  const int nt = bt_cpu_nthread(be);
  BT_ASSERT(NH > 0 && C % NH == 0);
  if (B <= 0 || T <= 0 || C <= 0) return; /* sgemm rejects ld = 0 */
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt) if (cpu_att_work(B, T, C) >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
      const float *k = q + C, *v = q + 2 * (size_t)C;
      float *P = att + ((size_t)b * NH + h) * T * T;
      float *o = out + (size_t)b * T * C + (size_t)h * hs;
      for (int r0 = 0; r0 < T; r0 += CPU_ATT_BLOCK) {
        int nr = T - r0 < CPU_ATT_BLOCK ? T - r0 : CPU_ATT_BLOCK;
        int nk = r0 + nr; /* keys 0..r1-1 are all any of these rows sees */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs,
                    scale, q + (size_t)r0 * C3, C3, k, C3, 0.0f,
                    P + (size_t)r0 * T, T);
      }
      cpu_softmax_causal(P, T);
      for (int r0 = 0; r0 < T; r0 += CPU_ATT_BLOCK) {
        int nr = T - r0 < CPU_ATT_BLOCK ? T - r0 : CPU_ATT_BLOCK;
        int nk = r0 + nr;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk,
                    1.0f, P + (size_t)r0 * T, T, v, C3, 0.0f,
                    o + (size_t)r0 * C, C);
      }
    }
  }
  bt_cpu_round_act(be, out, (size_t)B * T * C); /* att stays fp32 */
}

void bt_cpu_att_zero_head(float *dq, int T, int C, int hs) {
  for (int t = 0; t < T; t++)
    for (int j = 0; j < 3; j++)
      memset(dq + (size_t)t * 3 * C + (size_t)j * C, 0,
             (size_t)hs * sizeof(float));
}

/* Per (b,h), with P the saved probabilities and G = dout_h:
 *   dP  = G V^T
 *   dS  = P * (dP - rowsum(P * dP)) * scale     (softmax backward; 0 where
 *                                                P is 0, i.e. above the
 *                                                diagonal)
 *   dQ = dS K,   dK = dS^T Q,   dV = P^T G
 * dqkv is WRITTEN (ops.def): the pair's slices are zeroed, then the
 * products of the query blocks accumulate into them (beta = 1). The
 * forward output is not needed: D = rowsum(P * dP) comes with dP. */
void bt_cpu_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                          const float *dout, const float *qkv,
                          const float *out, const float *att, int B, int T,
                          int C, int NH) {
  (void)out; /* D comes with dP (above); the saved P replaces the rest */
  const int nt = bt_cpu_nthread(be);
  BT_ASSERT(NH > 0 && C % NH == 0);
  if (B <= 0 || T <= 0 || C <= 0) return; /* sgemm rejects ld = 0 */
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt) if (cpu_att_work(B, T, C) >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
      const float *q = qkv + off, *k = q + C, *v = q + 2 * (size_t)C;
      float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * (size_t)C;
      const float *G = dout + (size_t)b * T * C + (size_t)h * hs;
      const float *P = att + ((size_t)b * NH + h) * T * T;
      float *dS = scratch + ((size_t)b * NH + h) * T * T;
      bt_cpu_att_zero_head(dq, T, C, hs);
      for (int r0 = 0; r0 < T; r0 += CPU_ATT_BLOCK) {
        int nr = T - r0 < CPU_ATT_BLOCK ? T - r0 : CPU_ATT_BLOCK;
        int nk = r0 + nr;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, 1.0f,
                    G + (size_t)r0 * C, C, v, C3, 0.0f, dS + (size_t)r0 * T,
                    T);
      }
      cpu_softmax_causal_bwd(dS, P, T, scale);
      for (int r0 = 0; r0 < T; r0 += CPU_ATT_BLOCK) {
        int nr = T - r0 < CPU_ATT_BLOCK ? T - r0 : CPU_ATT_BLOCK;
        int nk = r0 + nr;
        const float *dSb = dS + (size_t)r0 * T, *Pb = P + (size_t)r0 * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk,
                    1.0f, dSb, T, k, C3, 1.0f, dq + (size_t)r0 * C3, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, 1.0f,
                    dSb, T, q + (size_t)r0 * C3, C3, 1.0f, dk, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, 1.0f,
                    Pb, T, G + (size_t)r0 * C, C, 1.0f, dv, C3);
      }
    }
  }
  bt_cpu_round_act(be, dqkv, (size_t)B * T * C3);
}

/* One query per head against nPos cached rows, per head h:
 *   scores = scale K_h q_h      (sgemv over K_h [nPos, hs], row stride C)
 *   p      = softmax(scores)    (the same row softmax as attention_fwd)
 *   out_h  = V_h^T p            (sgemv over V_h [nPos, hs])
 * Scores for all heads first, then one softmax pass (vectorised clone),
 * then the weighted sums. Heads are independent and tiny at decode time:
 * serial (one sgemv is far below a fork/join's worth of work). */
void bt_cpu_attention_decode(bt_backend *be, float *out, float *scratch,
                             const float *q, const float *kc, const float *vc,
                             int nPos, int C, int NH) {
  if (C <= 0) return;
  BT_ASSERT(NH > 0 && C % NH == 0 && nPos >= 1);
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf((float)hs);
  for (int h = 0; h < NH; h++)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, nPos, hs, scale,
                kc + (size_t)h * hs, C, q + (size_t)h * hs, 1, 0.0f,
                scratch + (size_t)h * nPos, 1);
  cpu_softmax_rows(scratch, NH, nPos);
  for (int h = 0; h < NH; h++)
    cblas_sgemv(CblasRowMajor, CblasTrans, nPos, hs, 1.0f,
                vc + (size_t)h * hs, C, scratch + (size_t)h * nPos, 1, 0.0f,
                out + (size_t)h * hs, 1);
  bt_cpu_round_act(be, out, (size_t)C);
}
