/*
 * cpu_speech.c: the speech model's ops, CPU reference (issue 15):
 * 1-D convolution over time, self-attention with a causal flag and key
 * lengths, and the CTC loss. Contracts in kernels/ops.def.
 *
 * Why it is written this way:
 *   - conv1d is im2col + OpenBLAS sgemm (the backend's GEMM): the column
 *     matrix col[(b,o), ci*K + k] = inp[b, o*S - P + k, ci] makes the
 *     convolution one product with w viewed as [Cout, Cin*K], which is
 *     exactly torch's weight layout flattened. Each product's output rows
 *     are cut into calls of a fixed number of rows (conv_gemm), one
 *     single-threaded sgemm each, shared among the threads: every output
 *     element is computed by one call in one fixed order.
 *   - Sums over rows (dbias, dw) are split by output column / output
 *     channel, never by row (cpu_internal.h rule 1); col2im of dinp is
 *     split by utterance, whose input rows no other utterance touches.
 *   - Masked attention keeps the reference attention's structure: per
 *     (b, h), sgemm over the n = keyLen[b] valid rows and keys only, a row
 *     softmax over each row's visible keys, zeros elsewhere. Padded query
 *     rows are written as 0 and pass no gradient.
 *   - CTC runs the alpha / beta recursions over the 2L+1 extended states
 *     (blank, l1, blank, l2, ..., blank) in log space with the sums in
 *     double; one utterance is one independent problem (parallel over b).
 *     beta_t(s) here EXCLUDES frame t's emission, so alpha_t(s) +
 *     beta_t(s) is the log-probability of all paths through s at t and
 *     the gradient w.r.t. the logits is softmax - occupancy (Graves 2006,
 *     eq. 16, with the log_softmax folded in).
 */
#include "base/util.h"
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#endif

/* ---- conv1d -------------------------------------------------------------- */

/* Output rows per sgemm call: a product is cut into calls of this many
 * rows whatever the thread count, and the calls are shared among the
 * threads, so every output element comes from the same call, with the
 * same operands, on any number of threads (OpenBLAS picks its kernel, and
 * with it the order of the inner sum, by the call's shape: slabs of one
 * call per thread gave 1 and 3 threads different bits). 128 rows keep
 * the re-packing of the shared operand per call small; the weight
 * gradient's output channels go 32 per call. */
#define CONV_ROWS 128
#define CONV_DW_ROWS 32
/* Below this many multiply-adds one sgemm call beats a fork/join. */
#define CONV_PAR_MIN (1L << 20)

static int conv_out_len(int T, int K, int S, int P) {
  return (T + 2 * P - K) / S + 1;
}

size_t bt_cpu_conv1d_scratch_size(bt_backend *be, int B, int T, int Cin,
                                  int Cout, int K, int S, int P) {
  (void)be, (void)Cout;
  int To = conv_out_len(T, K, S, P);
  return 2 * (size_t)B * (size_t)(To > 0 ? To : 0) * Cin * K;
}

/* col[N, Cin*K] from inp[B,T,Cin]; rows outside [0,T) are 0. */
static void cpu_im2col(float *col, const float *inp, int B, int T, int Cin,
                       int K, int S, int P, int To, int nt) {
  const int N = B * To, CK = Cin * K;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * CK >= BT_CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const int b = r / To, o = r % To;
    float *c = col + (size_t)r * CK;
    for (int k = 0; k < K; k++) {
      const int t = o * S - P + k;
      const float *x = inp + ((size_t)b * T + t) * Cin;
      for (int ci = 0; ci < Cin; ci++)
        c[ci * K + k] = (t >= 0 && t < T) ? x[ci] : 0.0f;
    }
  }
}

/* Denormal floats (below FLT_MIN = 1.2e-38) read or made as 0 by this
 * thread until conv_ftz_end: MXCSR's DAZ and FTZ bits on x86-64, nothing
 * elsewhere. Why: the front end's gradients pass GELU's derivative, which
 * for the unnormalised log-mel input (pre-activations below -10) is a
 * denormal for ~20% of conv.0's output gradients; each product with one
 * takes a microcode assist, and the weight-gradient sgemm ran 150x slower
 * (60 ms instead of 0.4 ms per step, measured on the corpus of
 * launch/speech-corpus.sh). Flushing changes a sum by less than 1e-38 per
 * term, the same on every run and every thread count. */
static unsigned conv_ftz_begin(void) {
#if defined(__x86_64__) || defined(__SSE2__)
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
  return csr;
#else
  return 0;
#endif
}

static void conv_ftz_end(unsigned csr) {
#if defined(__x86_64__) || defined(__SSE2__)
  _mm_setcsr(csr);
#else
  (void)csr;
#endif
}

/* C[M,Nc] = op(A)[M,K] op(B)[K,Nc] + beta C in calls of nRow rows of C
 * (CONV_ROWS above), the calls shared among the threads. A is [M,K]
 * (lda), or [K,M] with bTransA; B is [Nc,K] with bTransB, else [K,Nc].
 * Every output element is one call's, its inner sum sgemm's own order
 * over all of K. (The first version's weight gradient went 8 output
 * channels per call: each call re-packed the whole column matrix and
 * OpenBLAS's kernel ran at 8 rows; with the denormals above, that was 57%
 * of a speech step.) */
static void conv_gemm(int nt, int nRow, int bTransA, int bTransB, int M,
                      int Nc, int K, const float *A, int lda, const float *B,
                      int ldb, float beta, float *Cm, int ldc) {
  if (M <= 0 || Nc <= 0 || K <= 0) return;
  const int nCall = (M + nRow - 1) / nRow;
#pragma omp parallel num_threads(nt) if ((long)M * Nc * K >= CONV_PAR_MIN && nCall > 1)
  {
    const unsigned csr = conv_ftz_begin();
#pragma omp for schedule(static)
    for (int i = 0; i < nCall; i++) {
      const int r0 = i * nRow, nr = M - r0 < nRow ? M - r0 : nRow;
      cblas_sgemm(CblasRowMajor, bTransA ? CblasTrans : CblasNoTrans,
                  bTransB ? CblasTrans : CblasNoTrans, nr, Nc, K, 1.0f,
                  bTransA ? A + r0 : A + (size_t)r0 * lda, lda, B, ldb, beta,
                  Cm + (size_t)r0 * ldc, ldc);
    }
    conv_ftz_end(csr);
  }
}

static void conv_check(int B, int T, int Cin, int Cout, int K, int S, int P) {
  BT_ASSERT(B >= 0 && T >= 0 && Cin > 0 && Cout > 0 && K > 0 && S > 0 &&
            P >= 0);
}

void bt_cpu_conv1d_fwd(bt_backend *be, float *out, float *scratch,
                       const float *inp, const float *w, const float *bias,
                       int B, int T, int Cin, int Cout, int K, int S, int P) {
  conv_check(B, T, Cin, Cout, K, S, P);
  const int To = conv_out_len(T, K, S, P), nt = bt_cpu_nthread(be);
  if (B == 0 || To <= 0) return;
  const int N = B * To, CK = Cin * K;
  cpu_im2col(scratch, inp, B, T, Cin, K, S, P, To, nt);
  conv_gemm(nt, CONV_ROWS, 0, 1, N, Cout, CK, scratch, CK, w, CK, 0.0f, out,
            Cout);
  if (bias) {
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * Cout >= BT_CPU_PAR_MIN)
    for (int r = 0; r < N; r++)
      for (int co = 0; co < Cout; co++) out[(size_t)r * Cout + co] += bias[co];
  }
  bt_cpu_round_act(be, out, (size_t)N * Cout);
}

/* dinp[b] += col2im(dcol[b]), one utterance per thread. */
static void cpu_col2im(float *dinp, const float *dcol, int B, int T, int Cin,
                       int K, int S, int P, int To, int nt) {
  const int CK = Cin * K;
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)B * To * CK >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++)
    for (int o = 0; o < To; o++) {
      const float *c = dcol + ((size_t)b * To + o) * CK;
      for (int k = 0; k < K; k++) {
        const int t = o * S - P + k;
        if (t < 0 || t >= T) continue;
        float *dx = dinp + ((size_t)b * T + t) * Cin;
        for (int ci = 0; ci < Cin; ci++) dx[ci] += c[ci * K + k];
      }
    }
}

void bt_cpu_conv1d_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                       float *scratch, const float *dout, const float *inp,
                       const float *w, int B, int T, int Cin, int Cout, int K,
                       int S, int P) {
  conv_check(B, T, Cin, Cout, K, S, P);
  const int To = conv_out_len(T, K, S, P), nt = bt_cpu_nthread(be);
  if (B == 0 || To <= 0) return;
  const int N = B * To, CK = Cin * K;
  float *col = scratch, *dcol = scratch + (size_t)N * CK;
  if (dbias) {
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)N * Cout >= BT_CPU_PAR_MIN)
    for (int co = 0; co < Cout; co++) {
      double s = 0.0;
      for (int r = 0; r < N; r++) s += dout[(size_t)r * Cout + co];
      dbias[co] += (float)s;
    }
  }
  if (dw) { /* dw[Cout, CK] += dout^T col, split by output channel */
    cpu_im2col(col, inp, B, T, Cin, K, S, P, To, nt);
    conv_gemm(nt, CONV_DW_ROWS, 1, 0, Cout, CK, N, dout, Cout, col, CK, 1.0f,
              dw, CK);
  }
  if (dinp) { /* dcol[N, CK] = dout w, then scattered back */
    conv_gemm(nt, CONV_ROWS, 0, 0, N, CK, Cout, dout, Cout, w, CK, 0.0f, dcol,
              CK);
    cpu_col2im(dinp, dcol, B, T, Cin, K, S, P, To, nt);
    bt_cpu_round_act(be, dinp, (size_t)B * T * Cin);
  }
}

/* ---- attention with a causal flag and key lengths ------------------------ */

/* Keys query row t sees among the n valid ones. */
static inline int att_row_keys(int t, int n, int causal) {
  return causal && t + 1 < n ? t + 1 : n;
}

/* Rows [0,n) of the T x T block P: softmax over each row's visible keys
 * (max subtracted, exp by bt_cpu_expf, sum in double), zeros elsewhere;
 * rows [n,T) all zero. */
BT_CPU_SIMD_CLONES static void cpu_softmax_masked(float *S, int T, int n,
                                                  int causal) {
  for (int t = 0; t < T; t++) {
    float *p = S + (size_t)t * T;
    const int nk = t < n ? att_row_keys(t, n, causal) : 0;
    if (nk > 0) {
      float mx = p[0];
      for (int j = 1; j < nk; j++) mx = p[j] > mx ? p[j] : mx;
      double sum = 0.0;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < nk; j++) {
        float e = bt_cpu_expf(p[j] - mx);
        p[j] = e;
        sum += e;
      }
      const float inv = (float)(1.0 / sum);
      for (int j = 0; j < nk; j++) p[j] *= inv;
    }
    for (int j = nk; j < T; j++) p[j] = 0.0f;
  }
}

/* dS = P * (dP - rowsum(P * dP)) * scale on the visible keys, 0 elsewhere. */
BT_CPU_SIMD_CLONES static void cpu_softmax_masked_bwd(float *dP,
                                                      const float *P, int T,
                                                      int n, int causal,
                                                      float scale) {
  for (int t = 0; t < T; t++) {
    const float *p = P + (size_t)t * T;
    float *d = dP + (size_t)t * T;
    const int nk = t < n ? att_row_keys(t, n, causal) : 0;
    double sdp = 0.0;
#pragma omp simd reduction(+ : sdp)
    for (int j = 0; j < nk; j++) sdp += p[j] * d[j];
    const float fs = (float)sdp;
    for (int j = 0; j < nk; j++) d[j] = p[j] * (d[j] - fs) * scale;
    for (int j = nk; j < T; j++) d[j] = 0.0f;
  }
}

static int att_valid_len(const int32_t *keyLen, int b, int T) {
  if (!keyLen) return T;
  BT_ASSERT(keyLen[b] >= 1 && keyLen[b] <= T);
  return keyLen[b];
}

void bt_cpu_attention_masked_fwd(bt_backend *be, float *out, float *att,
                                 const float *qkv, const int32_t *keyLen,
                                 int causal, int B, int T, int C, int NH) {
  const int nt = bt_cpu_nthread(be);
  BT_ASSERT(NH > 0 && C % NH == 0);
  if (B <= 0 || T <= 0 || C <= 0) return;
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt) if ((size_t)B * T * T * C >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const int n = att_valid_len(keyLen, b, T);
      const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
      const float *k = q + C, *v = q + 2 * (size_t)C;
      float *Pm = att + ((size_t)b * NH + h) * T * T;
      float *o = out + (size_t)b * T * C + (size_t)h * hs;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hs, scale,
                  q, C3, k, C3, 0.0f, Pm, T);
      cpu_softmax_masked(Pm, T, n, causal);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, n, 1.0f,
                  Pm, T, v, C3, 0.0f, o, C);
      for (int t = n; t < T; t++)
        memset(o + (size_t)t * C, 0, (size_t)hs * sizeof(float));
    }
  }
  bt_cpu_round_act(be, out, (size_t)B * T * C);
}

void bt_cpu_attention_masked_bwd(bt_backend *be, float *dqkv, float *scratch,
                                 const float *dout, const float *qkv,
                                 const float *out, const float *att,
                                 const int32_t *keyLen, int causal, int B,
                                 int T, int C, int NH) {
  (void)out; /* as bt_cpu_attention_bwd: the saved P is enough */
  const int nt = bt_cpu_nthread(be);
  BT_ASSERT(NH > 0 && C % NH == 0);
  if (B <= 0 || T <= 0 || C <= 0) return;
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt) if ((size_t)B * T * T * C >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const int n = att_valid_len(keyLen, b, T);
      const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
      const float *q = qkv + off, *k = q + C, *v = q + 2 * (size_t)C;
      float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * (size_t)C;
      const float *G = dout + (size_t)b * T * C + (size_t)h * hs;
      const float *Pm = att + ((size_t)b * NH + h) * T * T;
      float *dS = scratch + ((size_t)b * NH + h) * T * T;
      /* WRITTEN (ops.def): all T rows, so padded rows and keys are 0 */
      bt_cpu_att_zero_head(dq, T, C, hs);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hs, 1.0f, G,
                  C, v, C3, 0.0f, dS, T);
      cpu_softmax_masked_bwd(dS, Pm, T, n, causal, scale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, n, 1.0f,
                  dS, T, k, C3, 1.0f, dq, C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, n, 1.0f, dS,
                  T, q, C3, 1.0f, dk, C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, n, 1.0f, Pm,
                  T, G, C, 1.0f, dv, C3);
    }
  }
  bt_cpu_round_act(be, dqkv, (size_t)B * T * C3);
}

/* ---- CTC loss ------------------------------------------------------------ */

size_t bt_cpu_ctc_scratch_size(bt_backend *be, int B, int T, int V, int L) {
  (void)be;
  return (size_t)B * T * V + 2 * (size_t)B * T * (2 * L + 1) + (size_t)B;
}

static inline double lse2(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  double m = a > b ? a : b;
  return m + log(exp(a - m) + exp(b - m));
}

/* Label of extended state s: blank at even s, target (s-1)/2 at odd s. */
static inline int ctc_lab(const int32_t *tgt, int s) {
  return (s & 1) ? tgt[s >> 1] : 0;
}

/* May a path move from state s-2 to s (skip the blank between)? */
static inline int ctc_skip(const int32_t *tgt, int s) {
  return s >= 2 && (s & 1) && tgt[s >> 1] != tgt[(s >> 1) - 1];
}

/* Returns log p(target | frames): -inf when no alignment exists. */
static double ctc_alpha(float *alpha, const float *lp, const int32_t *tgt,
                        int n, int tl, int V, int Smax) {
  const int S = 2 * tl + 1;
  for (int s = 0; s < S; s++) alpha[s] = -INFINITY;
  alpha[0] = lp[0];
  if (S > 1) alpha[1] = lp[ctc_lab(tgt, 1)];
  for (int t = 1; t < n; t++) {
    const float *a0 = alpha + (size_t)(t - 1) * Smax;
    float *a1 = alpha + (size_t)t * Smax;
    for (int s = 0; s < S; s++) {
      double x = a0[s];
      if (s >= 1) x = lse2(x, a0[s - 1]);
      if (ctc_skip(tgt, s)) x = lse2(x, a0[s - 2]);
      a1[s] = (float)(x + lp[(size_t)t * V + ctc_lab(tgt, s)]);
    }
  }
  const float *aN = alpha + (size_t)(n - 1) * Smax;
  double ll = aN[S - 1];
  if (S > 1) ll = lse2(ll, aN[S - 2]);
  return ll;
}

static void ctc_beta(float *beta, const float *lp, const int32_t *tgt, int n,
                     int tl, int V, int Smax) {
  const int S = 2 * tl + 1;
  float *bN = beta + (size_t)(n - 1) * Smax;
  for (int s = 0; s < S; s++) bN[s] = (s >= S - 2) ? 0.0f : -INFINITY;
  for (int t = n - 2; t >= 0; t--) {
    const float *b1 = beta + (size_t)(t + 1) * Smax;
    const float *lp1 = lp + (size_t)(t + 1) * V;
    float *b0 = beta + (size_t)t * Smax;
    for (int s = 0; s < S; s++) {
      double x = (double)b1[s] + lp1[ctc_lab(tgt, s)];
      if (s + 1 < S) x = lse2(x, (double)b1[s + 1] + lp1[ctc_lab(tgt, s + 1)]);
      if (s + 2 < S && ctc_skip(tgt, s + 2))
        x = lse2(x, (double)b1[s + 2] + lp1[ctc_lab(tgt, s + 2)]);
      b0[s] = (float)x;
    }
  }
}

typedef struct CtcView {
  float *lp, *alpha, *beta, *ll;
  int Smax;
} CtcView;

static CtcView ctc_view(float *scratch, int B, int T, int V, int L) {
  CtcView w;
  w.Smax = 2 * L + 1;
  w.lp = scratch;
  w.alpha = w.lp + (size_t)B * T * V;
  w.beta = w.alpha + (size_t)B * T * w.Smax;
  w.ll = w.beta + (size_t)B * T * w.Smax;
  return w;
}

static void ctc_check(const int32_t *inLen, const int32_t *tgtLen, int b,
                      int T, int L) {
  BT_ASSERT(inLen[b] >= 1 && inLen[b] <= T);
  BT_ASSERT(tgtLen[b] >= 0 && tgtLen[b] <= L);
}

void bt_cpu_ctc_loss_fwd(bt_backend *be, float *losses, float *scratch,
                         const float *logits, const int32_t *inLen,
                         const int32_t *targets, const int32_t *tgtLen, int B,
                         int T, int V, int L) {
  const int nt = bt_cpu_nthread(be);
  CtcView w = ctc_view(scratch, B, T, V, L);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)B * T * V >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    ctc_check(inLen, tgtLen, b, T, L);
    const int n = inLen[b];
    float *lp = w.lp + (size_t)b * T * V;
    for (int t = 0; t < n; t++) { /* log_softmax of the valid frames */
      const float *x = logits + ((size_t)b * T + t) * V;
      float mx = x[0];
      for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
      double s = 0.0;
      for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
      const double lz = mx + log(s);
      for (int v = 0; v < V; v++) lp[(size_t)t * V + v] = (float)(x[v] - lz);
    }
    double ll = ctc_alpha(w.alpha + (size_t)b * T * w.Smax, lp,
                          targets + (size_t)b * L, n, tgtLen[b], V, w.Smax);
    w.ll[b] = (float)ll;
    losses[b] = isfinite(ll) ? (float)-ll : 0.0f; /* zero_infinity */
  }
}

void bt_cpu_ctc_loss_bwd(bt_backend *be, float *dlogits, float *scratch,
                         const float *dloss, const int32_t *inLen,
                         const int32_t *targets, const int32_t *tgtLen, int B,
                         int T, int V, int L) {
  const int nt = bt_cpu_nthread(be);
  CtcView w = ctc_view(scratch, B, T, V, L);
#pragma omp parallel for schedule(static) num_threads(nt) if ((size_t)B * T * V >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    ctc_check(inLen, tgtLen, b, T, L);
    const double ll = w.ll[b];
    if (!isfinite(ll)) continue; /* zero_infinity: no gradient */
    const int n = inLen[b], tl = tgtLen[b], S = 2 * tl + 1;
    const int32_t *tgt = targets + (size_t)b * L;
    const float *lp = w.lp + (size_t)b * T * V;
    const float *alpha = w.alpha + (size_t)b * T * w.Smax;
    float *beta = w.beta + (size_t)b * T * w.Smax;
    ctc_beta(beta, lp, tgt, n, tl, V, w.Smax);
    const float g = dloss[b];
    for (int t = 0; t < n; t++) {
      float *d = dlogits + ((size_t)b * T + t) * V;
      const float *lpt = lp + (size_t)t * V;
      for (int v = 0; v < V; v++) d[v] += g * expf(lpt[v]);
      for (int s = 0; s < S; s++) {
        double occ = (double)alpha[(size_t)t * w.Smax + s] +
                     beta[(size_t)t * w.Smax + s] - ll;
        if (occ > -INFINITY) d[ctc_lab(tgt, s)] -= g * (float)exp(occ);
      }
    }
  }
  bt_cpu_round_act(be, dlogits, (size_t)B * T * V);
}
