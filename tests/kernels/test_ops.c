/*
 * test_ops.c: holds a backend to the op contract in kernels/ops.h.
 *
 * Usage: test_ops [-l] [-o NAME]... [cpu|cuda]
 *   cpu|cuda  the backend (default cpu; cuda only if compiled in)
 *   -l        list the cases (the table at the end of this file)
 *   -o NAME   run only the cases of an op of kernels/ops.def, an op family
 *             ("layernorm" = layernorm_fwd + layernorm_bwd) or a tag
 *             (memory, empty_shapes, threads); repeatable. An unknown NAME
 *             is an error that lists the valid ones; a run that matches no
 *             case fails; the last line says how many cases ran.
 *
 * The test talks to the backend only through ops.h (bt_mem_* copies in and
 * out), so the same file checks the CUDA backend when it exists. For every op
 * it checks:
 *   1. forward against a naive fp64 implementation written here (loops a
 *      reader can check against the formula in ops.h);
 *   2. backward against central finite differences of L = sum(out * R) for
 *      a fixed random R, L accumulated in fp64, both through the op's own
 *      fp32 forward (2a) and through the fp64 forward of 1. (2b), on small
 *      odd shapes (T = 7, NH = 2 and 3, padded Vp > V,
 *      masked targets, both weight layouts, bias NULL);
 *   3. the accumulate convention: a second backward call adds the same
 *      gradient again (result = 2x), except for the ops whose contract
 *      says WRITTEN (xent_bwd, xent_fwd_bwd,
 *      attention_bwd, attention_masked_bwd): their
 *      second call starts from junk (values in [3, 7)) and must give the
 *      first call's gradient, so an op that adds, or leaves an element
 *      unwritten, fails;
 *   4. determinism: the same call twice gives the same bits; on the CPU
 *      backend also 1 vs 2 vs 3 threads, bit for bit, at shapes large
 *      enough to take every parallel path;
 *   5. AdamW against a hand-computed step, sumsq against fp64, scale,
 *      the step statistics (sumsq_acc, loss_sum_acc, clip_grads: results
 *      in backend memory, accumulating, masked rows never read),
 *      memory (zeroed, aligned, round trip), GELU and cross-entropy at
 *      extreme inputs (saturation, NaN propagation), empty shapes.
 *
 * "maxrel" everywhere is max_i |got_i - want_i| / max(|want_i|, floor),
 * with floor = 1% of the tensor's largest |want| (FD_FLOOR; 0.1% for the
 * accumulate check): elements near zero are judged on the tensor's scale.
 *
 * Error limits (each printed next to the measured value):
 *   FWD_LIMIT 2e-5 relative: fp32 forward vs fp64 on reductions of at most a
 *     few dozen terms accumulates a few ulps (6e-8 each) times the
 *     condition of the op; 2e-5 leaves 10-100x margin on what the CPU
 *     reference shows, yet a wrong constant (layernorm eps 1e-5 vs 1e-6 on
 *     the small-variance rows below, erf-GELU vs tanh-GELU, a missing
 *     1/sqrt(hs)) is off by 1e-4 or more.
 *   FD_LIMIT 1e-2 relative: central differences through the op's own fp32
 *     forward, step FD_EPS = 1e-2 (2e-3 for layernorm, whose tight row has
 *     std 0.058). The rounding noise of L (about sqrt(#out) * 6e-8 * |out|
 *     * |R|) divided by 2 eps is ~1e-5..1e-4 absolute on gradients of order
 *     1, truncation O(eps^2 f''') ~ 1e-5; measured worst is ~2e-3, so 1e-2
 *     keeps 5x margin while a wrong transpose, missing term or wrong sign
 *     gives O(1) error. Elements whose gradient is near zero are measured
 *     against a floor of 1% of the tensor's largest gradient (FD_FLOOR),
 *     otherwise noise / 0 would be "infinite" error.
 *   REF_FD_LIMIT 1e-4 relative: the same derivative through the fp64
 *     reference forward (step 1e-4: no fp32 noise, truncation ~1e-8), so
 *     what remains is the fp32 rounding of the backward itself; measured
 *     worst ~1e-5 (attention dqkv) on the CPU reference, and since the
 *     fp32 forward matches the fp64 one to FWD_LIMIT, this pins the
 *     backward 100x tighter than FD_LIMIT.
 *   ACC_LIMIT 1e-5 relative: second backward call vs 2x the first. Exact for
 *     ops that sum into a temporary then add; attention adds per row, so a
 *     few ulps of reordering.
 */
#include "base/util.h"
#include "base/bf16.h"
#include "kernels/ops.h"
#include "tests/check.h"
#include "tests/kernels/op_cases.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FWD_LIMIT 2e-5
#define FD_LIMIT 1e-2
#define FD_EPS 1e-2
#define FD_FLOOR 1e-2
#define REF_FD_EPS 1e-4
#define REF_FD_LIMIT 1e-4
#define ACC_LIMIT 1e-5

static bt_backend *g_be;
static bt_backend_kind g_eKind = BT_BACKEND_CPU;
static uint64_t g_salt = 1;

/* ---- helpers ------------------------------------------------------------ */

static void *xmalloc(size_t nByte) {
  void *p = calloc(1, nByte ? nByte : 1);
  if (!p) {
    fprintf(stderr, "test_ops: out of memory\n");
    abort();
  }
  return p;
}

/* Uniform in [lo, hi), a pure function of (salt, i): reproducible. */
static float *rand_vec(size_t n, float lo, float hi) {
  float *x = xmalloc(n * sizeof(float));
  uint64_t key = bt_rng_key(1234, 77, g_salt++, 0);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(lo + (hi - lo) * bt_rng_uniform(key, i));
  return x;
}

static float *dev_from(const float *h, size_t n) {
  float *d = bt_mem_alloc(g_be, n ? n : 1, "test");
  if (!d) {
    fprintf(stderr, "test_ops: %s\n", bt_err_msg());
    abort();
  }
  if (n) bt_mem_from_host(g_be, d, h, n);
  return d;
}

static int32_t *dev_from_i32(const int32_t *h, size_t n) {
  int32_t *d = bt_mem_alloc_i32(g_be, n ? n : 1, "test");
  if (!d) {
    fprintf(stderr, "test_ops: %s\n", bt_err_msg());
    abort();
  }
  if (n) bt_mem_from_host_i32(g_be, d, h, n);
  return d;
}

static void to_host(float *h, const float *d, size_t n) {
  bt_backend_sync(g_be);
  if (n) bt_mem_to_host(g_be, h, d, n);
}

/* Copies a device buffer into host memory h and frees it. */
static void fetch_free(float *h, float *d, size_t n) {
  if (h) to_host(h, d, n);
  bt_mem_free(g_be, d);
}

static double maxabs_d(const double *x, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
  return m;
}

/* max_i |a_i - r_i| / max(|r_i|, floorFrac * max|r|). */
static double maxrel(const float *a, const double *r, size_t n,
                     double floorFrac) {
  double fl = floorFrac * maxabs_d(r, n);
  if (fl < 1e-30) fl = 1e-30;
  double e = 0.0;
  for (size_t i = 0; i < n; i++) {
    double ei = check_relerr(a[i], r[i], fl);
    e = ei > e ? ei : e;
  }
  return e;
}

/* ---- the generic op case -------------------------------------------------
 * An op under test: up to 4 differentiable host inputs, one output whose
 * loss L = sum(out * R) is differentiated. fwd() uploads the inputs, runs
 * the forward op and downloads out; bwd() uploads the inputs and the
 * current gradients, runs the op's backward with dout = R and downloads the
 * gradients (which the backward accumulates into). ref() is the fp64
 * forward. */
typedef struct OpCase OpCase;
struct OpCase {
  char zName[96];
  int nIn;
  const char *azIn[4];
  float *aIn[4];
  size_t anIn[4];
  size_t nOut;
  float *R;
  int bWrites;  /* backward overwrites (WRITTEN in ops.def) instead of
                   accumulating */
  double fdEps; /* finite-difference step for 2a; 0 = FD_EPS */
  void (*fwd)(OpCase *, float *out);
  void (*bwd)(OpCase *, float **aGrad);
  void (*ref)(OpCase *, double *out);
  void *pArg;
};

static double ref_loss(OpCase *c, double *out) {
  c->ref(c, out);
  double L = 0.0;
  for (size_t i = 0; i < c->nOut; i++) L += out[i] * c->R[i];
  return L;
}

static double case_loss(OpCase *c, float *out) {
  c->fwd(c, out);
  double L = 0.0;
  for (size_t i = 0; i < c->nOut; i++) L += (double)out[i] * c->R[i];
  return L;
}

/* Runs every generic check on c. */
static void case_run(OpCase *c) {
  float *out = xmalloc(c->nOut * sizeof(float));
  float *out2 = xmalloc(c->nOut * sizeof(float));
  double *ref = xmalloc(c->nOut * sizeof(double));

  /* 1. forward vs fp64 */
  c->fwd(c, out);
  c->ref(c, ref);
  double eF = maxrel(out, ref, c->nOut, 1e-2);
  printf("  %-44s fwd    maxrel %.2e (limit %.0e)\n", c->zName, eF,
         FWD_LIMIT);
  CHECK(eF <= FWD_LIMIT, "%s: forward maxrel %.3e", c->zName, eF);

  /* 4. forward determinism */
  c->fwd(c, out2);
  CHECK(memcmp(out, out2, c->nOut * sizeof(float)) == 0,
        "%s: forward not deterministic", c->zName);

  /* analytic gradients from zero, twice (determinism), then once more on
   * top of the first (accumulation). */
  float *g1[4], *g1b[4], *g2[4];
  for (int k = 0; k < c->nIn; k++) {
    g1[k] = xmalloc(c->anIn[k] * sizeof(float));
    g1b[k] = xmalloc(c->anIn[k] * sizeof(float));
    g2[k] = xmalloc(c->anIn[k] * sizeof(float));
  }
  c->bwd(c, g1);
  c->bwd(c, g1b);
  for (int k = 0; k < c->nIn; k++) {
    CHECK(memcmp(g1[k], g1b[k], c->anIn[k] * sizeof(float)) == 0,
          "%s: d%s not deterministic", c->zName, c->azIn[k]);
    /* junk the op must replace, from a stream of its own (the other
     * cases' inputs stay as they were) */
    uint64_t jk = bt_rng_key(1234, 78, (uint64_t)k, 0);
    if (c->bWrites)
      for (size_t i = 0; i < c->anIn[k]; i++)
        g2[k][i] = (float)(3.0 + 4.0 * bt_rng_uniform(jk, i));
    else
      memcpy(g2[k], g1[k], c->anIn[k] * sizeof(float));
  }
  c->bwd(c, g2);
  for (int k = 0; k < c->nIn; k++) {
    double *want = xmalloc(c->anIn[k] * sizeof(double));
    for (size_t i = 0; i < c->anIn[k]; i++)
      want[i] = c->bWrites ? g1[k][i] : 2.0 * g1[k][i];
    double eA = maxrel(g2[k], want, c->anIn[k], 1e-3);
    CHECK(eA <= ACC_LIMIT, "%s: d%s second call %s (maxrel %.3e)", c->zName,
          c->azIn[k], c->bWrites ? "must overwrite" : "must accumulate to 2x",
          eA);
    free(want);
  }

  /* 2a. central differences of L through the op's own fp32 forward */
  double eps = c->fdEps > 0 ? c->fdEps : FD_EPS;
  double *ref2 = xmalloc(c->nOut * sizeof(double));
  for (int k = 0; k < c->nIn; k++) {
    size_t n = c->anIn[k];
    double *num = xmalloc(n * sizeof(double));
    double *numRef = xmalloc(n * sizeof(double));
    float *x = c->aIn[k];
    for (size_t i = 0; i < n; i++) {
      float x0 = x[i];
      float xp = (float)(x0 + eps), xm = (float)(x0 - eps);
      x[i] = xp;
      double Lp = case_loss(c, out2);
      x[i] = xm;
      double Lm = case_loss(c, out2);
      num[i] = (Lp - Lm) / ((double)xp - (double)xm);
      /* 2b. the same through the fp64 reference forward, with a small
       * step: no fp32 noise, truncation ~ REF_FD_EPS^2. */
      xp = (float)(x0 + REF_FD_EPS), xm = (float)(x0 - REF_FD_EPS);
      x[i] = xp;
      double Rp = ref_loss(c, ref2);
      x[i] = xm;
      double Rm = ref_loss(c, ref2);
      numRef[i] = (Rp - Rm) / ((double)xp - (double)xm);
      x[i] = x0;
    }
    double eG = maxrel(g1[k], num, n, FD_FLOOR);
    double eR = maxrel(g1[k], numRef, n, FD_FLOOR);
    printf("  %-44s d%-5s maxrel %.2e (limit %.0e)  vs fp64-fd %.2e "
           "(limit %.0e)\n",
           c->zName, c->azIn[k], eG, FD_LIMIT, eR, REF_FD_LIMIT);
    CHECK(eG <= FD_LIMIT, "%s: d%s vs finite differences maxrel %.3e",
          c->zName, c->azIn[k], eG);
    CHECK(eR <= REF_FD_LIMIT,
          "%s: d%s vs fp64 finite differences maxrel %.3e", c->zName,
          c->azIn[k], eR);
    free(num);
    free(numRef);
  }
  free(ref2);

  for (int k = 0; k < c->nIn; k++) {
    free(g1[k]);
    free(g1b[k]);
    free(g2[k]);
  }
  free(out);
  free(out2);
  free(ref);
}

static void case_free(OpCase *c) {
  for (int k = 0; k < c->nIn; k++) free(c->aIn[k]);
  free(c->R);
}

/* Uploads host gradients, returns device copies (for bwd() helpers). */
static float *grad_up(float *h, size_t n) { return dev_from(h, n); }

/* ---- matmul ------------------------------------------------------------- */

typedef struct {
  int N, C, OC, bBias;
  bt_wlayout eLayout;
} MatmulArg;

static void matmul_fwd(OpCase *c, float *out) {
  MatmulArg *a = c->pArg;
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dB = a->bBias ? dev_from(c->aIn[2], c->anIn[2]) : NULL;
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_matmul_fwd(g_be, dOut, dInp, dW, dB, a->N, a->C, a->OC, a->eLayout);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dW);
  bt_mem_free(g_be, dB);
}

static void matmul_bwd(OpCase *c, float **g) {
  MatmulArg *a = c->pArg;
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dR = dev_from(c->R, c->nOut);
  float *gI = grad_up(g[0], c->anIn[0]);
  float *gW = grad_up(g[1], c->anIn[1]);
  float *gB = a->bBias ? grad_up(g[2], c->anIn[2]) : NULL;
  bt_op_matmul_bwd(g_be, gI, gW, gB, dR, dInp, dW, a->N, a->C, a->OC,
                   a->eLayout);
  fetch_free(g[0], gI, c->anIn[0]);
  fetch_free(g[1], gW, c->anIn[1]);
  if (gB) fetch_free(g[2], gB, c->anIn[2]);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dW);
  bt_mem_free(g_be, dR);
}

static void matmul_ref(OpCase *c, double *out) {
  MatmulArg *a = c->pArg;
  const float *x = c->aIn[0], *w = c->aIn[1];
  for (int n = 0; n < a->N; n++)
    for (int o = 0; o < a->OC; o++) {
      double s = a->bBias ? c->aIn[2][o] : 0.0;
      for (int k = 0; k < a->C; k++) {
        double wk = a->eLayout == BT_W_IN_OUT ? w[(size_t)k * a->OC + o]
                                              : w[(size_t)o * a->C + k];
        s += (double)x[(size_t)n * a->C + k] * wk;
      }
      out[(size_t)n * a->OC + o] = s;
    }
}

static void test_matmul(int N, int C, int OC, bt_wlayout eLayout, int bBias) {
  MatmulArg a = {N, C, OC, bBias, eLayout};
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "matmul N%d C%d OC%d %s%s", N, C, OC,
           eLayout == BT_W_IN_OUT ? "IN_OUT" : "OUT_IN",
           bBias ? " bias" : " nobias");
  c.nIn = bBias ? 3 : 2;
  c.azIn[0] = "inp";
  c.azIn[1] = "w";
  c.azIn[2] = "bias";
  c.anIn[0] = (size_t)N * C;
  c.anIn[1] = (size_t)C * OC;
  c.anIn[2] = (size_t)OC;
  for (int k = 0; k < c.nIn; k++) c.aIn[k] = rand_vec(c.anIn[k], -1, 1);
  c.nOut = (size_t)N * OC;
  c.R = rand_vec(c.nOut, -1, 1);
  c.fwd = matmul_fwd;
  c.bwd = matmul_bwd;
  c.ref = matmul_ref;
  c.pArg = &a;
  case_run(&c);
  case_free(&c);
}

/* ---- matmul_gelu_fwd ------------------------------------------------------ */

/* matmul_gelu_fwd (bFused) or matmul_fwd + gelu_fwd on be; pre, out into
 * h[0], h[1]. in = inp, w, bias (bias NULL: none). */
static void mg_run(bt_backend *be, int bFused, const float *const *in, int N,
                   int C, int OC, bt_wlayout eL, float **h) {
  bt_backend *saved = g_be;
  g_be = be;
  size_t n = (size_t)N * OC;
  float *x = dev_from(in[0], (size_t)N * C), *w = dev_from(in[1], (size_t)C * OC);
  float *b = in[2] ? dev_from(in[2], (size_t)OC) : NULL;
  float *pre = bt_mem_alloc(be, n, "pre"), *out = bt_mem_alloc(be, n, "out");
  if (bFused) {
    bt_op_matmul_gelu_fwd(be, out, pre, x, w, b, N, C, OC, eL);
  } else {
    bt_op_matmul_fwd(be, pre, x, w, b, N, C, OC, eL);
    bt_op_gelu_fwd(be, out, pre, n);
  }
  fetch_free(h[0], pre, n);
  fetch_free(h[1], out, n);
  bt_mem_free(be, x);
  bt_mem_free(be, w);
  bt_mem_free(be, b);
  g_be = saved;
}

/* Fused vs the pair on be: bit for bit on the CPU (the contract); on
 * another backend pre to FWD_LIMIT and out to 1e-3 of max|out| (a fused
 * cuBLASLt GELU is its own tanh: tests/gpu/test_gpu_ops.c derives it). */
static void mg_vs_pair(bt_backend *be, const char *zWhat,
                       const float *const *in, int N, int C, int OC,
                       bt_wlayout eL, float **hF) {
  size_t n = (size_t)N * OC;
  float *hP[2];
  for (int k = 0; k < 2; k++) {
    hF[k] = xmalloc(n * sizeof(float));
    hP[k] = xmalloc(n * sizeof(float));
  }
  mg_run(be, 1, in, N, C, OC, eL, hF);
  mg_run(be, 0, in, N, C, OC, eL, hP);
  static const char *azOut[2] = {"pre", "out"};
  for (int k = 0; k < 2; k++) {
    int bSame = !memcmp(hF[k], hP[k], n * sizeof(float));
    double *r = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) r[i] = hP[k][i];
    double e = maxrel(hF[k], r, n, k ? 1.0 : 1e-2);
    printf("  matmul_gelu_fwd N%d C%d OC%d %s %-3s vs the two ops: %s "
           "(maxrel %.2e)\n", N, C, OC, zWhat, azOut[k],
           bSame ? "bitwise equal" : "differ", e);
    if (bt_backend_kind_of(be) == BT_BACKEND_CPU)
      CHECK(bSame, "matmul_gelu_fwd (%s) %s not bit-identical to "
            "matmul_fwd + gelu_fwd", zWhat, azOut[k]);
    else
      CHECK(e <= (k ? 1e-3 : FWD_LIMIT), "matmul_gelu_fwd (%s) %s maxrel "
            "%.3e", zWhat, azOut[k], e);
    free(r);
    free(hP[k]);
  }
}

static void test_matmul_gelu(int N, int C, int OC, bt_wlayout eL, int bBias) {
  float *x = rand_vec((size_t)N * C, -1, 1);
  float *w = rand_vec((size_t)C * OC, -0.5, 0.5), *b = rand_vec(OC, -1, 1);
  const float *in[3] = {x, w, bBias ? b : NULL};
  float *hF[2];
  mg_vs_pair(g_be, "fp32", in, N, C, OC, eL, hF);
  /* out against fp64 GELU(inp W + b): catches a pair that is wrong twice */
  size_t n = (size_t)N * OC;
  double *ref = xmalloc(n * sizeof(double));
  const double s = sqrt(2.0 / M_PI);
  for (int r = 0; r < N; r++)
    for (int o = 0; o < OC; o++) {
      double v = bBias ? b[o] : 0.0;
      for (int k = 0; k < C; k++)
        v += (double)x[(size_t)r * C + k] *
             (eL == BT_W_IN_OUT ? w[(size_t)k * OC + o] : w[(size_t)o * C + k]);
      ref[(size_t)r * OC + o] =
          0.5 * v * (1.0 + tanh(s * (v + 0.044715 * v * v * v)));
    }
  double e = maxrel(hF[1], ref, n, 1e-2);
  double lim = bt_backend_kind_of(g_be) == BT_BACKEND_CPU ? FWD_LIMIT : 1e-3;
  printf("  matmul_gelu_fwd N%d C%d OC%d fp32 out vs fp64: maxrel %.2e "
         "(limit %.0e)\n", N, C, OC, e, lim);
  CHECK(e <= lim, "matmul_gelu_fwd vs fp64: maxrel %.3e", e);
  free(ref);
  free(hF[0]), free(hF[1]);
  if (g_eKind == BT_BACKEND_CPU) {
    /* bf16 mode: the GELU reads the ROUNDED pre, as the pair does */
    bt_backend *be16 = bt_backend_create(BT_BACKEND_CPU, 0, 0);
    CHECK(be16 && bt_backend_set_act_dtype(be16, BT_ACT_BF16) == BT_OK,
          "bf16 CPU backend: %s", bt_err_msg());
    float *in16[3] = {NULL, NULL, NULL};
    size_t an[3] = {(size_t)N * C, (size_t)C * OC, (size_t)OC};
    for (int k = 0; k < 3; k++) {
      if (!in[k]) continue;
      in16[k] = xmalloc(an[k] * sizeof(float));
      for (size_t i = 0; i < an[k]; i++) in16[k][i] = bt_round_bf16(in[k][i]);
    }
    if (be16) {
      mg_vs_pair(be16, "bf16", (const float *const *)in16, N, C, OC, eL, hF);
      free(hF[0]), free(hF[1]);
    }
    for (int k = 0; k < 3; k++) free(in16[k]);
    bt_backend_free(be16);
  }
  free(x), free(w), free(b);
}

/* ---- bias --------------------------------------------------------------- */

typedef struct {
  int N, C;
} NCArg;

static void bias_fwd(OpCase *c, float *out) {
  NCArg *a = c->pArg;
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dB = dev_from(c->aIn[1], c->anIn[1]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_bias_fwd(g_be, dOut, dInp, dB, a->N, a->C);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dB);
}

static void bias_bwd(OpCase *c, float **g) {
  NCArg *a = c->pArg;
  float *dR = dev_from(c->R, c->nOut);
  float *gI = grad_up(g[0], c->anIn[0]);
  float *gB = grad_up(g[1], c->anIn[1]);
  bt_op_bias_bwd(g_be, gI, gB, dR, a->N, a->C);
  fetch_free(g[0], gI, c->anIn[0]);
  fetch_free(g[1], gB, c->anIn[1]);
  bt_mem_free(g_be, dR);
}

static void bias_ref(OpCase *c, double *out) {
  NCArg *a = c->pArg;
  for (int n = 0; n < a->N; n++)
    for (int k = 0; k < a->C; k++)
      out[(size_t)n * a->C + k] =
          (double)c->aIn[0][(size_t)n * a->C + k] + c->aIn[1][k];
}

static void test_bias(int N, int C) {
  NCArg a = {N, C};
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "bias N%d C%d", N, C);
  c.nIn = 2;
  c.azIn[0] = "inp";
  c.azIn[1] = "bias";
  c.anIn[0] = (size_t)N * C;
  c.anIn[1] = (size_t)C;
  for (int k = 0; k < c.nIn; k++) c.aIn[k] = rand_vec(c.anIn[k], -1, 1);
  c.nOut = (size_t)N * C;
  c.R = rand_vec(c.nOut, -1, 1);
  c.fwd = bias_fwd;
  c.bwd = bias_bwd;
  c.ref = bias_ref;
  c.pArg = &a;
  case_run(&c);
  case_free(&c);
}

/* ---- embedding ---------------------------------------------------------- */

typedef struct {
  int B, T, C, V, bPos;
  int32_t *tok;
} EmbedArg;

static void embed_fwd(OpCase *c, float *out) {
  EmbedArg *a = c->pArg;
  int32_t *dTok = dev_from_i32(a->tok, (size_t)a->B * a->T);
  float *dWte = dev_from(c->aIn[0], c->anIn[0]);
  float *dWpe = a->bPos ? dev_from(c->aIn[1], c->anIn[1]) : NULL;
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_embed_fwd(g_be, dOut, dTok, dWte, dWpe, a->B, a->T, a->C);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free_i32(g_be, dTok);
  bt_mem_free(g_be, dWte);
  bt_mem_free(g_be, dWpe);
}

static void embed_bwd(OpCase *c, float **g) {
  EmbedArg *a = c->pArg;
  int32_t *dTok = dev_from_i32(a->tok, (size_t)a->B * a->T);
  float *dR = dev_from(c->R, c->nOut);
  float *gE = grad_up(g[0], c->anIn[0]);
  float *gP = a->bPos ? grad_up(g[1], c->anIn[1]) : NULL;
  bt_op_embed_bwd(g_be, gE, gP, dR, dTok, a->B, a->T, a->C, a->V);
  fetch_free(g[0], gE, c->anIn[0]);
  if (gP) fetch_free(g[1], gP, c->anIn[1]);
  bt_mem_free_i32(g_be, dTok);
  bt_mem_free(g_be, dR);
}

static void embed_ref(OpCase *c, double *out) {
  EmbedArg *a = c->pArg;
  for (int b = 0; b < a->B; b++)
    for (int t = 0; t < a->T; t++)
      for (int k = 0; k < a->C; k++) {
        size_t bt = (size_t)b * a->T + t;
        double v = c->aIn[0][(size_t)a->tok[bt] * a->C + k];
        if (a->bPos) v += c->aIn[1][(size_t)t * a->C + k];
        out[bt * a->C + k] = v;
      }
}

static void test_embed(int B, int T, int C, int V, int bPos) {
  EmbedArg a = {B, T, C, V, bPos, NULL};
  a.tok = xmalloc(sizeof(int32_t) * B * T);
  /* V small relative to B*T: tokens repeat, so dwte rows collect several
   * contributions (the case that needs care to stay deterministic). */
  uint64_t key = bt_rng_key(99, 1, g_salt++, 0);
  for (int i = 0; i < B * T; i++) a.tok[i] = (int32_t)(bt_rng_u64(key, i) % V);
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "embed B%d T%d C%d V%d%s", B, T, C, V,
           bPos ? "" : " wpe=NULL");
  c.nIn = bPos ? 2 : 1;
  c.azIn[0] = "wte";
  c.azIn[1] = "wpe";
  c.anIn[0] = (size_t)V * C;
  c.anIn[1] = (size_t)T * C;
  for (int k = 0; k < c.nIn; k++) c.aIn[k] = rand_vec(c.anIn[k], -1, 1);
  c.nOut = (size_t)B * T * C;
  c.R = rand_vec(c.nOut, -1, 1);
  c.fwd = embed_fwd;
  c.bwd = embed_bwd;
  c.ref = embed_ref;
  c.pArg = &a;
  case_run(&c);
  case_free(&c);
  free(a.tok);
}

/* ---- layernorm ---------------------------------------------------------- */

static void layernorm_fwd(OpCase *c, float *out) {
  NCArg *a = c->pArg;
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dB = dev_from(c->aIn[2], c->anIn[2]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dMean = bt_mem_alloc(g_be, (size_t)a->N, "mean");
  float *dRstd = bt_mem_alloc(g_be, (size_t)a->N, "rstd");
  bt_op_layernorm_fwd(g_be, dOut, dMean, dRstd, dInp, dW, dB, a->N, a->C);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dMean);
  bt_mem_free(g_be, dRstd);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dW);
  bt_mem_free(g_be, dB);
}

static void layernorm_bwd(OpCase *c, float **g) {
  NCArg *a = c->pArg;
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dB = dev_from(c->aIn[2], c->anIn[2]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dMean = bt_mem_alloc(g_be, (size_t)a->N, "mean");
  float *dRstd = bt_mem_alloc(g_be, (size_t)a->N, "rstd");
  bt_op_layernorm_fwd(g_be, dOut, dMean, dRstd, dInp, dW, dB, a->N, a->C);
  float *dR = dev_from(c->R, c->nOut);
  float *gI = grad_up(g[0], c->anIn[0]);
  float *gW = grad_up(g[1], c->anIn[1]);
  float *gB = grad_up(g[2], c->anIn[2]);
  bt_op_layernorm_bwd(g_be, gI, gW, gB, dR, dInp, dW, dMean, dRstd, a->N,
                      a->C);
  fetch_free(g[0], gI, c->anIn[0]);
  fetch_free(g[1], gW, c->anIn[1]);
  fetch_free(g[2], gB, c->anIn[2]);
  bt_mem_free(g_be, dR);
  bt_mem_free(g_be, dOut);
  bt_mem_free(g_be, dMean);
  bt_mem_free(g_be, dRstd);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dW);
  bt_mem_free(g_be, dB);
}

static void layernorm_ref(OpCase *c, double *out) {
  NCArg *a = c->pArg;
  for (int n = 0; n < a->N; n++) {
    const float *x = c->aIn[0] + (size_t)n * a->C;
    double m = 0, v = 0;
    for (int k = 0; k < a->C; k++) m += x[k];
    m /= a->C;
    for (int k = 0; k < a->C; k++) v += (x[k] - m) * (x[k] - m);
    v /= a->C;
    double rs = 1.0 / sqrt(v + 1e-5);
    for (int k = 0; k < a->C; k++)
      out[(size_t)n * a->C + k] =
          (x[k] - m) * rs * c->aIn[1][k] + c->aIn[2][k];
  }
}

static void test_layernorm(int N, int C) {
  NCArg a = {N, C};
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "layernorm N%d C%d", N, C);
  c.nIn = 3;
  c.azIn[0] = "inp";
  c.azIn[1] = "w";
  c.azIn[2] = "b";
  c.anIn[0] = (size_t)N * C;
  c.anIn[1] = (size_t)C;
  c.anIn[2] = (size_t)C;
  /* Rows get growing offsets and spreads (|mean| > std tests the variance
   * for cancellation); the last row has mean 0.5 and a small spread (std
   * ~0.058, var ~3.3e-3) so that eps = 1e-5 changes its output by 0.15%:
   * a wrong eps fails the forward check by 100x. Its spread is 30x the
   * finite-difference step (fdEps below), so the differences stay in the
   * smooth region. */
  c.aIn[0] = rand_vec(c.anIn[0], -1, 1);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < C; k++) {
      float *x = &c.aIn[0][(size_t)n * C + k];
      if (n == N - 1) *x = 0.1f * *x + 0.5f;
      else *x = *x * (1.0f + n) + 0.5f * n;
    }
  c.fdEps = 2e-3;
  c.aIn[1] = rand_vec(C, 0.5, 1.5);
  c.aIn[2] = rand_vec(C, -0.5, 0.5);
  c.nOut = (size_t)N * C;
  c.R = rand_vec(c.nOut, -1, 1);
  c.fwd = layernorm_fwd;
  c.bwd = layernorm_bwd;
  c.ref = layernorm_ref;
  c.pArg = &a;
  case_run(&c);
  case_free(&c);
}

/* ---- gelu and residual ---------------------------------------------------- */

static void gelu_fwd(OpCase *c, float *out) {
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_gelu_fwd(g_be, dOut, dInp, c->nOut);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dInp);
}

static void gelu_bwd(OpCase *c, float **g) {
  float *dInp = dev_from(c->aIn[0], c->anIn[0]);
  float *dR = dev_from(c->R, c->nOut);
  float *gI = grad_up(g[0], c->anIn[0]);
  bt_op_gelu_bwd(g_be, gI, dInp, dR, c->nOut);
  fetch_free(g[0], gI, c->anIn[0]);
  bt_mem_free(g_be, dInp);
  bt_mem_free(g_be, dR);
}

static void gelu_ref(OpCase *c, double *out) {
  const double s = sqrt(2.0 / M_PI);
  for (size_t i = 0; i < c->nOut; i++) {
    double x = c->aIn[0][i];
    out[i] = 0.5 * x * (1.0 + tanh(s * (x + 0.044715 * x * x * x)));
  }
}

static void test_gelu(size_t n) {
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "gelu n%zu", n);
  c.nIn = 1;
  c.azIn[0] = "inp";
  c.anIn[0] = n;
  c.aIn[0] = rand_vec(n, -4, 4);
  c.nOut = n;
  c.R = rand_vec(n, -1, 1);
  c.fwd = gelu_fwd;
  c.bwd = gelu_bwd;
  c.ref = gelu_ref;
  case_run(&c);
  case_free(&c);
}

/* GELU far outside the random range: the vectorised exp clamps its
 * argument, so check saturation (x for large x, ~0 for very negative x),
 * that nothing becomes inf, and that NaN stays NaN (a diverging run must
 * stay visible). Tolerance: 1e-6 relative to max(1, |ref|). Known limit:
 * below about -1e30 the CPU GELU returns x * 6e-39 (exp's clamp) instead
 * of 0, and beyond |x| ~ 7e12 (x^3 overflows) its derivative is NaN. */
static void test_gelu_extremes(void) {
  const float xs[] = {0.0f,   1e-3f,  -1e-3f, 5.0f,  -5.0f, 9.0f,
                      -9.0f,  20.0f,  -20.0f, 100.0f, -100.0f, 1e4f,
                      -1e4f,  1e6f,   -1e6f,  NAN};
  const size_t n = sizeof xs / sizeof xs[0];
  float y[16], g[16], ones[16];
  for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
  float *dX = dev_from(xs, n), *dY = bt_mem_alloc(g_be, n, "y");
  float *dG = bt_mem_alloc(g_be, n, "g"), *dOne = dev_from(ones, n);
  bt_op_gelu_fwd(g_be, dY, dX, n);
  bt_op_gelu_bwd(g_be, dG, dX, dOne, n);
  to_host(y, dY, n);
  to_host(g, dG, n);
  int nBad = 0;
  double eMax = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    double x = xs[i], s = sqrt(2.0 / M_PI);
    double u = s * (x + 0.044715 * x * x * x);
    double ref = 0.5 * x * (1.0 + tanh(u));
    double e = fabs(y[i] - ref) / (fabs(ref) > 1 ? fabs(ref) : 1);
    eMax = e > eMax ? e : eMax;
    if (!(e <= 1e-6) || !isfinite(g[i])) {
      nBad++;
      printf("  gelu(%g) = %g (ref %g), gelu'(x) = %g\n", x, y[i], ref, g[i]);
    }
  }
  printf("  gelu extremes (0 .. +-1e6, NaN)            fwd    maxerr %.2e "
         "(limit 1e-06)\n",
         eMax);
  CHECK(nBad == 0, "gelu: %d extreme inputs wrong or non-finite", nBad);
  CHECK(isnan(y[n - 1]) && isnan(g[n - 1]),
        "gelu(NaN) = %g, gelu'(NaN) = %g: NaN must propagate", y[n - 1],
        g[n - 1]);
  bt_mem_free(g_be, dX);
  bt_mem_free(g_be, dY);
  bt_mem_free(g_be, dG);
  bt_mem_free(g_be, dOne);
}

static void residual_fwd(OpCase *c, float *out) {
  float *dA = dev_from(c->aIn[0], c->anIn[0]);
  float *dB = dev_from(c->aIn[1], c->anIn[1]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_residual_fwd(g_be, dOut, dA, dB, c->nOut);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dA);
  bt_mem_free(g_be, dB);
}

static void residual_bwd(OpCase *c, float **g) {
  float *dR = dev_from(c->R, c->nOut);
  float *gA = grad_up(g[0], c->anIn[0]);
  float *gB = grad_up(g[1], c->anIn[1]);
  bt_op_residual_bwd(g_be, gA, gB, dR, c->nOut);
  fetch_free(g[0], gA, c->anIn[0]);
  fetch_free(g[1], gB, c->anIn[1]);
  bt_mem_free(g_be, dR);
}

static void residual_ref(OpCase *c, double *out) {
  for (size_t i = 0; i < c->nOut; i++)
    out[i] = (double)c->aIn[0][i] + c->aIn[1][i];
}

static void test_residual(size_t n) {
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "residual n%zu", n);
  c.nIn = 2;
  c.azIn[0] = "a";
  c.azIn[1] = "b";
  c.anIn[0] = c.anIn[1] = n;
  c.aIn[0] = rand_vec(n, -1, 1);
  c.aIn[1] = rand_vec(n, -1, 1);
  c.nOut = n;
  c.R = rand_vec(n, -1, 1);
  c.fwd = residual_fwd;
  c.bwd = residual_bwd;
  c.ref = residual_ref;
  case_run(&c);
  case_free(&c);
}

/* ---- attention ---------------------------------------------------------- */

typedef struct {
  int B, T, C, NH;
} AttArg;

/* fp64 causal attention; probs (if not NULL) gets [B,NH,T,T]. */
static void attention_ref_full(const float *qkv, const AttArg *a, double *out,
                               double *probs) {
  int B = a->B, T = a->T, C = a->C, NH = a->NH, hs = C / NH;
  double *p = xmalloc(sizeof(double) * T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        double mx = -INFINITY, sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
          double s = 0;
          for (int i = 0; i < hs; i++) s += (double)q[i] * k[i];
          p[t2] = s / sqrt((double)hs);
          if (p[t2] > mx) mx = p[t2];
        }
        for (int t2 = 0; t2 <= t; t2++) sum += (p[t2] = exp(p[t2] - mx));
        for (int t2 = 0; t2 <= t; t2++) p[t2] /= sum;
        for (int i = 0; i < hs; i++) {
          double o = 0;
          for (int t2 = 0; t2 <= t; t2++)
            o += p[t2] *
                 qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * hs + i];
          out[((size_t)b * T + t) * C + h * hs + i] = o;
        }
        if (probs)
          for (int t2 = 0; t2 < T; t2++)
            probs[(((size_t)b * NH + h) * T + t) * T + t2] =
                t2 <= t ? p[t2] : 0.0;
      }
  free(p);
}

static void attention_fwd(OpCase *c, float *out) {
  AttArg *a = c->pArg;
  float *dQkv = dev_from(c->aIn[0], c->anIn[0]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dAtt = bt_mem_alloc(
      g_be, bt_op_attention_att_size(g_be, a->B, a->T, a->NH), "att");
  bt_op_attention_fwd(g_be, dOut, dAtt, dQkv, a->B, a->T, a->C, a->NH);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dAtt);
  bt_mem_free(g_be, dQkv);
}

static void attention_bwd(OpCase *c, float **g) {
  AttArg *a = c->pArg;
  float *dQkv = dev_from(c->aIn[0], c->anIn[0]);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dAtt = bt_mem_alloc(
      g_be, bt_op_attention_att_size(g_be, a->B, a->T, a->NH), "att");
  float *dScr = bt_mem_alloc(
      g_be, bt_op_attention_scratch_size(g_be, a->B, a->T, a->NH), "scratch");
  bt_op_attention_fwd(g_be, dOut, dAtt, dQkv, a->B, a->T, a->C, a->NH);
  float *dR = dev_from(c->R, c->nOut);
  float *gQ = grad_up(g[0], c->anIn[0]);
  bt_op_attention_bwd(g_be, gQ, dScr, dR, dQkv, dOut, dAtt, a->B, a->T, a->C,
                      a->NH);
  fetch_free(g[0], gQ, c->anIn[0]);
  bt_mem_free(g_be, dR);
  bt_mem_free(g_be, dOut);
  bt_mem_free(g_be, dAtt);
  bt_mem_free(g_be, dScr);
  bt_mem_free(g_be, dQkv);
}

static void attention_ref(OpCase *c, double *out) {
  attention_ref_full(c->aIn[0], c->pArg, out, NULL);
}

static void test_attention(int B, int T, int C, int NH) {
  AttArg a = {B, T, C, NH};
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "attention B%d T%d C%d NH%d", B, T, C,
           NH);
  c.nIn = 1;
  c.azIn[0] = "qkv";
  c.anIn[0] = (size_t)B * T * 3 * C;
  /* Inputs up to +-2 so the softmax is far from uniform (a missing scale or
   * max subtraction shows). */
  c.aIn[0] = rand_vec(c.anIn[0], -2, 2);
  c.nOut = (size_t)B * T * C;
  c.R = rand_vec(c.nOut, -1, 1);
  c.bWrites = 1; /* dqkv is WRITTEN (ops.def) */
  c.fwd = attention_fwd;
  c.bwd = attention_bwd;
  c.ref = attention_ref;
  c.pArg = &a;
  case_run(&c);

  /* The saved probabilities are part of the contract on the CPU backend:
   * softmax rows, upper triangle exactly zero. */
  if (g_eKind == BT_BACKEND_CPU) {
    size_t nAtt = (size_t)B * NH * T * T;
    double *pRef = xmalloc(nAtt * sizeof(double));
    double *oRef = xmalloc(c.nOut * sizeof(double));
    float *att = xmalloc(nAtt * sizeof(float));
    attention_ref_full(c.aIn[0], &a, oRef, pRef);
    float *dQkv = dev_from(c.aIn[0], c.anIn[0]);
    float *dOut = bt_mem_alloc(g_be, c.nOut, "out");
    /* Poison att first: the op must write the zeros, not rely on them. */
    float *junk = rand_vec(nAtt, 5, 6);
    float *dAtt = dev_from(junk, nAtt);
    bt_op_attention_fwd(g_be, dOut, dAtt, dQkv, B, T, C, NH);
    fetch_free(att, dAtt, nAtt);
    int nUpper = 0;
    for (size_t r = 0; r < (size_t)B * NH * T; r++) {
      int t = (int)(r % T);
      for (int t2 = t + 1; t2 < T; t2++) nUpper += att[r * T + t2] != 0.0f;
    }
    double eP = maxrel(att, pRef, nAtt, 1e-2);
    printf("  %-44s probs  maxrel %.2e (limit %.0e)\n", c.zName, eP,
           FWD_LIMIT);
    CHECK(eP <= FWD_LIMIT, "%s: saved probs maxrel %.3e", c.zName, eP);
    CHECK(nUpper == 0, "%s: %d non-zero probs above the diagonal", c.zName,
          nUpper);
    bt_mem_free(g_be, dOut);
    bt_mem_free(g_be, dQkv);
    free(junk);
    free(att);
    free(pRef);
    free(oRef);
  }
  case_free(&c);
}

/* ---- attention_decode ------------------------------------------------------
 * The one-query decode step against a KV cache: for EVERY position t of a
 * T-token sequence, query row t against cached rows 0..t must give row t
 * of the fp64 causal attention (attention_ref_full), i.e. exactly what the
 * full forward computes at that position (FWD_LIMIT, the forward limit).
 * Also: the output is fully written (poisoned first), the op is
 * deterministic, and nPos = 1 returns v[0]. No backward: it is an
 * inference op. */
static void test_attention_decode(int T, int C, int NH) {
  AttArg a = {1, T, C, NH};
  const size_t n3 = (size_t)T * 3 * C;
  float *qkv = rand_vec(n3, -2, 2);
  double *oRef = xmalloc((size_t)T * C * sizeof(double));
  attention_ref_full(qkv, &a, oRef, NULL);
  /* The cache as the decoder keeps it: K and V rows of C floats. */
  float *hK = xmalloc((size_t)T * C * sizeof(float));
  float *hV = xmalloc((size_t)T * C * sizeof(float));
  for (int t = 0; t < T; t++) {
    memcpy(hK + (size_t)t * C, qkv + (size_t)t * 3 * C + C, C * sizeof(float));
    memcpy(hV + (size_t)t * C, qkv + (size_t)t * 3 * C + 2 * C,
           C * sizeof(float));
  }
  float *dK = dev_from(hK, (size_t)T * C), *dV = dev_from(hV, (size_t)T * C);
  float *dQ = bt_mem_alloc(g_be, C, "q");
  float *dOut = bt_mem_alloc(g_be, C, "out");
  float *dScr = bt_mem_alloc(g_be, (size_t)NH * T, "scores");
  float *junk = rand_vec(C, 5, 6);
  float *o1 = xmalloc(C * sizeof(float)), *o2 = xmalloc(C * sizeof(float));
  float *all = xmalloc((size_t)T * C * sizeof(float)); /* rows of o1 */
  int nDiff = 0;
  for (int t = 0; t < T; t++) {
    bt_mem_from_host(g_be, dQ, qkv + (size_t)t * 3 * C, C);
    bt_mem_from_host(g_be, dOut, junk, C);
    bt_op_attention_decode(g_be, dOut, dScr, dQ, dK, dV, t + 1, C, NH);
    to_host(o1, dOut, C);
    bt_mem_from_host(g_be, dOut, junk, C);
    bt_op_attention_decode(g_be, dOut, dScr, dQ, dK, dV, t + 1, C, NH);
    to_host(o2, dOut, C);
    nDiff += memcmp(o1, o2, C * sizeof(float)) != 0;
    memcpy(all + (size_t)t * C, o1, C * sizeof(float));
    if (t == 0) {
      int nBad = 0;
      for (int i = 0; i < C; i++) nBad += o1[i] != hV[i];
      CHECK(nBad == 0, "attention_decode nPos=1: %d outputs differ from v[0]",
            nBad);
    }
  }
  /* maxrel over the whole [T, C] output, as for attention_fwd (the floor
   * is 1% of the largest |out| of the sequence, not of one row). */
  double eMax = maxrel(all, oRef, (size_t)T * C, 1e-2);
  printf("  %-44s fwd    maxrel %.2e (limit %.0e) over all %d positions\n",
         "attention_decode", eMax, FWD_LIMIT, T);
  CHECK(eMax <= FWD_LIMIT, "attention_decode T%d C%d NH%d: maxrel %.3e", T, C,
        NH, eMax);
  CHECK(nDiff == 0, "attention_decode not deterministic at %d positions",
        nDiff);
  bt_mem_free(g_be, dK);
  bt_mem_free(g_be, dV);
  bt_mem_free(g_be, dQ);
  bt_mem_free(g_be, dOut);
  bt_mem_free(g_be, dScr);
  free(qkv), free(oRef), free(hK), free(hV), free(junk), free(o1), free(o2),
      free(all);
}

/* ---- cross-entropy -------------------------------------------------------- */

typedef struct {
  int N, V, Vp;
  int32_t *tgt;
  float scale;
  int bAlias; /* run xent_bwd in place on the logits buffer */
} XentArg;

static void xent_fwd(OpCase *c, float *out) {
  XentArg *a = c->pArg;
  float *dL = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dT = dev_from_i32(a->tgt, (size_t)a->N);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "losses");
  bt_op_xent_fwd(g_be, dOut, dL, dT, a->N, a->V, a->Vp);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dL);
  bt_mem_free_i32(g_be, dT);
}

/* xent_bwd WRITES dlogits; the incoming g is overwritten (bWrites). */
static void xent_bwd(OpCase *c, float **g) {
  XentArg *a = c->pArg;
  float *dL = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dT = dev_from_i32(a->tgt, (size_t)a->N);
  if (a->bAlias) {
    bt_op_xent_bwd(g_be, dL, dL, dT, a->scale, a->N, a->V, a->Vp);
    fetch_free(g[0], dL, c->anIn[0]);
  } else {
    float *gL = grad_up(g[0], c->anIn[0]); /* stale content must be replaced */
    bt_op_xent_bwd(g_be, gL, dL, dT, a->scale, a->N, a->V, a->Vp);
    fetch_free(g[0], gL, c->anIn[0]);
    bt_mem_free(g_be, dL);
  }
  bt_mem_free_i32(g_be, dT);
}

static void xent_ref(OpCase *c, double *out) {
  XentArg *a = c->pArg;
  for (int n = 0; n < a->N; n++) {
    const float *l = c->aIn[0] + (size_t)n * a->Vp;
    if (a->tgt[n] < 0) {
      out[n] = 0;
      continue;
    }
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < a->V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < a->V; v++) s += exp(l[v] - mx);
    out[n] = log(s) + mx - l[a->tgt[n]];
  }
}

static void test_xent(int N, int V, int Vp, int bAlias) {
  XentArg a = {N, V, Vp, NULL, 0.37f, bAlias};
  a.tgt = xmalloc(sizeof(int32_t) * N);
  uint64_t key = bt_rng_key(5, 5, g_salt++, 0);
  for (int n = 0; n < N; n++)
    a.tgt[n] = (n % 3 == 1) ? -1 : (int32_t)(bt_rng_u64(key, n) % V);
  a.tgt[N - 1] = V - 1; /* the last real column */
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "xent N%d V%d Vp%d masked%s", N, V, Vp,
           bAlias ? " in-place" : "");
  c.nIn = 1;
  c.azIn[0] = "logit";
  c.anIn[0] = (size_t)N * Vp;
  c.aIn[0] = rand_vec(c.anIn[0], -3, 3);
  /* Padding columns hold huge values: if the op read them, loss and
   * gradient would be visibly wrong. */
  for (int n = 0; n < N; n++)
    for (int v = V; v < Vp; v++) c.aIn[0][(size_t)n * Vp + v] = 50.0f;
  c.nOut = (size_t)N;
  c.R = xmalloc(sizeof(float) * N);
  for (int n = 0; n < N; n++) c.R[n] = a.scale; /* dL/dloss_n = scale */
  c.bWrites = 1;
  c.fwd = xent_fwd;
  c.bwd = xent_bwd;
  c.ref = xent_ref;
  c.pArg = &a;
  case_run(&c);

  /* Exact zeros where the contract says so. */
  float *g = xmalloc(sizeof(float) * c.anIn[0]);
  for (size_t i = 0; i < c.anIn[0]; i++) g[i] = 7.0f; /* stale gradient */
  float *gp[1] = {g};
  xent_bwd(&c, gp);
  int nBad = 0;
  for (int n = 0; n < N; n++)
    for (int v = 0; v < Vp; v++) {
      int bZero = a.tgt[n] < 0 || v >= V;
      if (bZero && g[(size_t)n * Vp + v] != 0.0f) nBad++;
    }
  CHECK(nBad == 0, "%s: %d masked-row/padding gradients not exactly 0",
        c.zName, nBad);
  free(g);
  case_free(&c);
  free(a.tgt);
}

/* ---- fused ops (issue 12 item 3) -------------------------------------------
 * xent_fwd_bwd is xent_fwd + xent_bwd in place, residual_layernorm_fwd is
 * residual_fwd + layernorm_fwd. Each is held (1) to the generic checks
 * through the OpCase machinery where it has a gradient (loss vs fp64,
 * finite differences of its gradient output, determinism) and (2) to the
 * pair of ops it replaces: bit for bit on the CPU reference (the same row
 * helpers in the same order; the model's losses and gradients depend on
 * it), to FWD_LIMIT on another backend. */

/* The fused op on a fresh copy of the logits: losses into out. */
static void xfb_fwd(OpCase *c, float *out) {
  XentArg *a = c->pArg;
  float *dL = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dT = dev_from_i32(a->tgt, (size_t)a->N);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "losses");
  bt_op_xent_fwd_bwd(g_be, dOut, dL, dT, a->scale, a->N, a->V, a->Vp);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dL);
  bt_mem_free_i32(g_be, dT);
}

/* The gradient is what the op leaves in the logits buffer (bWrites). */
static void xfb_bwd(OpCase *c, float **g) {
  XentArg *a = c->pArg;
  float *dL = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dT = dev_from_i32(a->tgt, (size_t)a->N);
  float *dLoss = bt_mem_alloc(g_be, (size_t)a->N, "losses");
  bt_op_xent_fwd_bwd(g_be, dLoss, dL, dT, a->scale, a->N, a->V, a->Vp);
  fetch_free(g[0], dL, c->anIn[0]);
  bt_mem_free(g_be, dLoss);
  bt_mem_free_i32(g_be, dT);
}

/* Bits of the fused op vs xent_fwd then xent_bwd in place, on be. */
static void xfb_vs_pair(bt_backend *be, const char *zWhat, const float *hL,
                        const int32_t *tgt, float scale, int N, int V,
                        int Vp) {
  bt_backend *saved = g_be;
  g_be = be;
  size_t n = (size_t)N * Vp;
  float *d1 = dev_from(hL, n), *d2 = dev_from(hL, n);
  int32_t *dT = dev_from_i32(tgt, (size_t)N);
  float *l1 = bt_mem_alloc(be, (size_t)N, "l1");
  float *l2 = bt_mem_alloc(be, (size_t)N, "l2");
  bt_op_xent_fwd(be, l1, d1, dT, N, V, Vp);
  bt_op_xent_bwd(be, d1, d1, dT, scale, N, V, Vp);
  bt_op_xent_fwd_bwd(be, l2, d2, dT, scale, N, V, Vp);
  float *h[4] = {xmalloc(N * 4), xmalloc(N * 4), xmalloc(n * 4),
                 xmalloc(n * 4)};
  fetch_free(h[0], l1, (size_t)N);
  fetch_free(h[1], l2, (size_t)N);
  fetch_free(h[2], d1, n);
  fetch_free(h[3], d2, n);
  int bSame = !memcmp(h[0], h[1], (size_t)N * 4) && !memcmp(h[2], h[3], n * 4);
  double *r = xmalloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) r[i] = h[2][i];
  double eG = maxrel(h[3], r, n, 1e-2);
  for (int i = 0; i < N; i++) r[i] = h[0][i];
  double eL = maxrel(h[1], r, (size_t)N, 1e-2);
  printf("  xent_fwd_bwd vs xent_fwd + xent_bwd (%s): %s (loss maxrel %.2e, "
         "dlogits %.2e)\n", zWhat, bSame ? "bitwise equal" : "differ", eL, eG);
  if (bt_backend_kind_of(be) == BT_BACKEND_CPU)
    CHECK(bSame, "xent_fwd_bwd (%s) is not bit-identical to the two ops",
          zWhat);
  else
    CHECK(eL <= FWD_LIMIT && eG <= FWD_LIMIT,
          "xent_fwd_bwd (%s) vs the two ops: %.3e, %.3e", zWhat, eL, eG);
  bt_mem_free_i32(be, dT);
  for (int i = 0; i < 4; i++) free(h[i]);
  free(r);
  g_be = saved;
}

static void test_xent_fwd_bwd(int N, int V, int Vp) {
  XentArg a = {N, V, Vp, NULL, 0.37f, 1};
  a.tgt = xmalloc(sizeof(int32_t) * N);
  uint64_t key = bt_rng_key(5, 6, g_salt++, 0);
  for (int n = 0; n < N; n++)
    a.tgt[n] = (n % 3 == 1) ? -1 : (int32_t)(bt_rng_u64(key, n) % V);
  a.tgt[N - 1] = V - 1;
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "xent_fwd_bwd N%d V%d Vp%d masked", N, V,
           Vp);
  c.nIn = 1;
  c.azIn[0] = "logit";
  c.anIn[0] = (size_t)N * Vp;
  c.aIn[0] = rand_vec(c.anIn[0], -3, 3);
  for (int n = 0; n < N; n++) /* padding the op must not read */
    for (int v = V; v < Vp; v++) c.aIn[0][(size_t)n * Vp + v] = 50.0f;
  c.nOut = (size_t)N;
  c.R = xmalloc(sizeof(float) * N);
  for (int n = 0; n < N; n++) c.R[n] = a.scale;
  c.bWrites = 1;
  c.fwd = xfb_fwd;
  c.bwd = xfb_bwd;
  c.ref = xent_ref;
  c.pArg = &a;
  case_run(&c);
  xfb_vs_pair(g_be, "fp32", c.aIn[0], a.tgt, a.scale, N, V, Vp);
  /* bf16 mode (CPU reference): the same comparison on bf16 logits. */
  if (g_eKind == BT_BACKEND_CPU) {
    bt_backend *be16 = bt_backend_create(BT_BACKEND_CPU, 0, 0);
    CHECK(be16 && bt_backend_set_act_dtype(be16, BT_ACT_BF16) == BT_OK,
          "bf16 CPU backend: %s", bt_err_msg());
    float *h16 = xmalloc(c.anIn[0] * sizeof(float));
    for (size_t i = 0; i < c.anIn[0]; i++) h16[i] = bt_round_bf16(c.aIn[0][i]);
    if (be16) xfb_vs_pair(be16, "bf16", h16, a.tgt, a.scale, N, V, Vp);
    free(h16);
    bt_backend_free(be16);
  }
  case_free(&c);
  free(a.tgt);
}

/* residual_layernorm_fwd on be from host a, b, w, bias: outRes, outLn,
 * mean, rstd into h[0..3]; with bPair the two ops instead. */
static void rln_run(bt_backend *be, int bPair, const float *const *in, int N,
                    int C, float **h) {
  bt_backend *saved = g_be;
  g_be = be;
  size_t n = (size_t)N * C;
  float *a = dev_from(in[0], n), *b = dev_from(in[1], n);
  float *w = dev_from(in[2], (size_t)C), *bias = dev_from(in[3], (size_t)C);
  float *res = bt_mem_alloc(be, n, "res"), *ln = bt_mem_alloc(be, n, "ln");
  float *mean = bt_mem_alloc(be, (size_t)N, "mean");
  float *rstd = bt_mem_alloc(be, (size_t)N, "rstd");
  if (bPair) {
    bt_op_residual_fwd(be, res, a, b, n);
    bt_op_layernorm_fwd(be, ln, mean, rstd, res, w, bias, N, C);
  } else {
    bt_op_residual_layernorm_fwd(be, res, ln, mean, rstd, a, b, w, bias, N,
                                 C);
  }
  fetch_free(h[0], res, n);
  fetch_free(h[1], ln, n);
  fetch_free(h[2], mean, (size_t)N);
  fetch_free(h[3], rstd, (size_t)N);
  bt_mem_free(be, a);
  bt_mem_free(be, b);
  bt_mem_free(be, w);
  bt_mem_free(be, bias);
  g_be = saved;
}

/* Fused vs pair on be: bit for bit on the CPU, FWD_LIMIT elsewhere.
 * Returns the fused outputs in hF (4 buffers the caller frees). */
static void rln_vs_pair(bt_backend *be, const char *zWhat,
                        const float *const *in, int N, int C, float **hF) {
  size_t n = (size_t)N * C, an[4] = {n, n, (size_t)N, (size_t)N};
  float *hP[4];
  for (int k = 0; k < 4; k++) {
    hF[k] = xmalloc(an[k] * sizeof(float));
    hP[k] = xmalloc(an[k] * sizeof(float));
  }
  rln_run(be, 0, in, N, C, hF);
  rln_run(be, 1, in, N, C, hP);
  static const char *azOut[4] = {"outRes", "outLn", "mean", "rstd"};
  for (int k = 0; k < 4; k++) {
    int bSame = !memcmp(hF[k], hP[k], an[k] * sizeof(float));
    double *r = xmalloc(an[k] * sizeof(double));
    for (size_t i = 0; i < an[k]; i++) r[i] = hP[k][i];
    double e = maxrel(hF[k], r, an[k], 1e-2);
    printf("  residual_layernorm_fwd N%d C%d %s %-6s vs the two ops: %s "
           "(maxrel %.2e)\n", N, C, zWhat, azOut[k],
           bSame ? "bitwise equal" : "differ", e);
    if (bt_backend_kind_of(be) == BT_BACKEND_CPU)
      CHECK(bSame, "residual_layernorm_fwd (%s) %s not bit-identical to "
            "residual_fwd + layernorm_fwd", zWhat, azOut[k]);
    else
      CHECK(e <= FWD_LIMIT, "residual_layernorm_fwd (%s) %s maxrel %.3e",
            zWhat, azOut[k], e);
    free(r);
    free(hP[k]);
  }
}

static void test_residual_layernorm(int N, int C) {
  size_t n = (size_t)N * C;
  /* The residual stream: growing row offsets (|mean| > std) as in
   * test_layernorm, plus a branch output of ordinary size. */
  float *a = rand_vec(n, -1, 1), *b = rand_vec(n, -0.5, 0.5);
  for (int r = 0; r < N; r++)
    for (int k = 0; k < C; k++) a[(size_t)r * C + k] += 0.5f * r;
  float *w = rand_vec((size_t)C, 0.5, 1.5), *bias = rand_vec((size_t)C, -0.5, 0.5);
  const float *in[4] = {a, b, w, bias};
  float *hF[4];
  rln_vs_pair(g_be, "fp32", in, N, C, hF);
  /* against fp64: the fp32 sum exactly, the layernorm of that sum (the
   * contract: the layernorm reads the sum as stored) to FWD_LIMIT */
  double *ref = xmalloc(n * sizeof(double));
  int nSumBad = 0;
  for (int r = 0; r < N; r++) {
    const size_t o = (size_t)r * C;
    double m = 0, v = 0;
    for (int k = 0; k < C; k++) {
      float sum = a[o + k] + b[o + k];
      nSumBad += hF[0][o + k] != sum;
      m += sum;
    }
    m /= C;
    for (int k = 0; k < C; k++) {
      double d = (double)(a[o + k] + b[o + k]) - m;
      v += d * d;
    }
    double rs = 1.0 / sqrt(v / C + 1e-5);
    for (int k = 0; k < C; k++)
      ref[o + k] = ((double)(a[o + k] + b[o + k]) - m) * rs * w[k] + bias[k];
  }
  double e = maxrel(hF[1], ref, n, 1e-2);
  printf("  residual_layernorm_fwd N%d C%d fp32 outLn vs fp64: maxrel %.2e "
         "(limit %.0e); outRes: %d sums not exact\n", N, C, e, FWD_LIMIT,
         nSumBad);
  CHECK(e <= FWD_LIMIT, "residual_layernorm_fwd vs fp64: maxrel %.3e", e);
  CHECK(nSumBad == 0, "residual_layernorm_fwd: %d sums a + b wrong", nSumBad);
  for (int k = 0; k < 4; k++) free(hF[k]);
  /* NULL mean/rstd (inference) writes the same outputs */
  {
    float *dA = dev_from(a, n), *dB = dev_from(b, n);
    float *dW = dev_from(w, (size_t)C), *dBi = dev_from(bias, (size_t)C);
    float *dR = bt_mem_alloc(g_be, n, "res"), *dL = bt_mem_alloc(g_be, n, "ln");
    bt_op_residual_layernorm_fwd(g_be, dR, dL, NULL, NULL, dA, dB, dW, dBi, N,
                                 C);
    float *h1 = xmalloc(n * 4), *h2[4];
    for (int k = 0; k < 4; k++) h2[k] = xmalloc((k < 2 ? n : (size_t)N) * 4);
    to_host(h1, dL, n);
    rln_run(g_be, 0, in, N, C, h2);
    CHECK(!memcmp(h1, h2[1], n * 4),
          "residual_layernorm_fwd with mean = rstd = NULL differs");
    free(h1);
    for (int k = 0; k < 4; k++) free(h2[k]);
    bt_mem_free(g_be, dA), bt_mem_free(g_be, dB), bt_mem_free(g_be, dW);
    bt_mem_free(g_be, dBi), bt_mem_free(g_be, dR), bt_mem_free(g_be, dL);
  }
  if (g_eKind == BT_BACKEND_CPU) {
    /* bf16 mode: the layernorm reads the ROUNDED sum, as the pair does */
    bt_backend *be16 = bt_backend_create(BT_BACKEND_CPU, 0, 0);
    CHECK(be16 && bt_backend_set_act_dtype(be16, BT_ACT_BF16) == BT_OK,
          "bf16 CPU backend: %s", bt_err_msg());
    float *in16[4];
    size_t an[4] = {n, n, (size_t)C, (size_t)C};
    for (int k = 0; k < 4; k++) {
      in16[k] = xmalloc(an[k] * sizeof(float));
      for (size_t i = 0; i < an[k]; i++) in16[k][i] = bt_round_bf16(in[k][i]);
    }
    if (be16) {
      rln_vs_pair(be16, "bf16", (const float *const *)in16, N, C, hF);
      for (int k = 0; k < 4; k++) free(hF[k]);
    }
    /* 1 vs 3 threads, bit for bit (rows split across threads) */
    bt_backend *be1 = bt_backend_create(BT_BACKEND_CPU, 1, 0);
    bt_backend *be3 = bt_backend_create(BT_BACKEND_CPU, 3, 0);
    float *h1[4], *h3[4];
    size_t ao[4] = {n, n, (size_t)N, (size_t)N};
    for (int k = 0; k < 4; k++) {
      h1[k] = xmalloc(ao[k] * 4);
      h3[k] = xmalloc(ao[k] * 4);
    }
    rln_run(be1, 0, in, N, C, h1);
    rln_run(be3, 0, in, N, C, h3);
    int nDiff = 0;
    for (int k = 0; k < 4; k++) nDiff += memcmp(h1[k], h3[k], ao[k] * 4) != 0;
    printf("  residual_layernorm_fwd N%d C%d: %d outputs differ 1 vs 3 "
           "threads\n", N, C, nDiff);
    CHECK(nDiff == 0, "residual_layernorm_fwd depends on the thread count");
    for (int k = 0; k < 4; k++) free(h1[k]), free(h3[k]), free(in16[k]);
    bt_backend_free(be1);
    bt_backend_free(be3);
    bt_backend_free(be16);
  }
  free(ref);
  free(a), free(b), free(w), free(bias);
}

/* Logit spreads far beyond exp's range (|l| up to 1e4) must give the
 * exact log-sum-exp, and a NaN logit must give a NaN loss. */
static void test_xent_extremes(void) {
  enum { N = 4, V = 5, Vp = 6 };
  float l[N * Vp] = {100, -100, 0, 50, 1, 0,       /* target 1: loss 200 */
                     1e4f, -1e4f, 3, 2, 1, 0,      /* target 0: loss ~0 */
                     -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, 0, /* uniform */
                     0, 1, NAN, 2, 3, 0};          /* NaN in the row */
  int32_t tgt[N] = {1, 0, 3, 4};
  float *dL = dev_from(l, N * Vp);
  int32_t *dT = dev_from_i32(tgt, N);
  float *dLoss = bt_mem_alloc(g_be, N, "loss");
  float loss[N];
  bt_op_xent_fwd(g_be, dLoss, dL, dT, N, V, Vp);
  to_host(loss, dLoss, N);
  /* fp64 log-sum-exp of row 0 minus l[target] (~200) */
  double mx = 100, s = 0;
  for (int v = 0; v < V; v++) s += exp((double)l[v] - mx);
  double want0 = log(s) + mx - l[1];
  double e0 = fabs(loss[0] - want0) / want0;
  double e2 = fabs(loss[2] - log(5.0)) / log(5.0);
  printf("  xent extremes: loss %.7g (want %.7g), %.3g (want ~0), %.7g "
         "(want ln 5), %g (want nan)\n",
         loss[0], want0, loss[1], loss[2], loss[3]);
  CHECK(e0 < 1e-6, "xent spread 200: rel err %.3e", e0);
  CHECK(loss[1] >= 0 && loss[1] < 1e-6, "xent dominant target: %g", loss[1]);
  CHECK(e2 < 1e-6, "xent uniform row: rel err %.3e", e2);
  CHECK(isnan(loss[3]), "xent with a NaN logit gave %g, want NaN", loss[3]);
  bt_mem_free(g_be, dL);
  bt_mem_free(g_be, dLoss);
  bt_mem_free_i32(g_be, dT);
}

/* ---- optimizer, sumsq, scale, memory ------------------------------------ */

static void test_adamw(void) {
  /* Hand-computed: t = 1 with m = v = 0 gives mhat = g, vhat = g^2, so the
   * step is lr * (g/(|g| + eps) + wd p) ~ lr * (sign(g) + wd p).
   * p = 0.5, g = 0.2, lr = 0.1, wd = 0.1: p' = 0.5 - 0.1 * (1 + 0.05)
   * = 0.395 (eps = 1e-8 moves it by 5e-9). m' = 0.1 * 0.2 = 0.02,
   * v' = 0.001 * 0.04 = 4e-5. */
  bt_adamw_hparams hp = {0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, 1};
  float p0[2] = {0.5f, -0.25f}, g0[2] = {0.2f, 0.0f};
  float *dP = dev_from(p0, 2), *dG = dev_from(g0, 2);
  float *dM = bt_mem_alloc(g_be, 2, "m"), *dV = bt_mem_alloc(g_be, 2, "v");
  bt_op_adamw(g_be, dP, dG, dM, dV, 2, &hp);
  float p[2], m[2], v[2];
  to_host(p, dP, 2);
  to_host(m, dM, 2);
  to_host(v, dV, 2);
  printf("  adamw t=1 hand: p %.9f (want 0.395), m %.9g, v %.9g\n", p[0],
         m[0], v[0]);
  CHECK(fabs(p[0] - 0.395) < 1e-6, "adamw t=1: p = %.9f, want 0.395", p[0]);
  /* m and v to 1e-4 relative: the float betas are not exactly 0.9 and
   * 0.999 (1 - 0.999f = 0.00099998713), which moves v by 1.3e-5. */
  CHECK(fabs(m[0] - 0.02) < 2e-6, "adamw t=1: m = %.9g, want 0.02", m[0]);
  CHECK(fabs(v[0] - 4e-5) < 4e-9, "adamw t=1: v = %.9g, want 4e-5", v[0]);
  /* zero gradient: only the decay acts: p' = p (1 - lr wd) */
  CHECK(fabs(p[1] - (-0.25 * (1 - 0.01))) < 1e-7,
        "adamw zero grad: p = %.9f, want -0.2475", p[1]);
  bt_mem_free(g_be, dP);
  bt_mem_free(g_be, dG);
  bt_mem_free(g_be, dM);
  bt_mem_free(g_be, dV);

  /* General step (t = 7, grad_scale 0.5, nonzero m, v) vs fp64 formula. */
  size_t n = 1000;
  float *P = rand_vec(n, -1, 1), *G = rand_vec(n, -2, 2);
  float *M = rand_vec(n, -0.1f, 0.1f), *Vv = rand_vec(n, 0, 0.01f);
  bt_adamw_hparams h2 = {3e-3f, 0.9f, 0.95f, 1e-6f, 0.05f, 0.5f, 7};
  dP = dev_from(P, n);
  dG = dev_from(G, n);
  dM = dev_from(M, n);
  dV = dev_from(Vv, n);
  bt_op_adamw(g_be, dP, dG, dM, dV, n, &h2);
  float *P2 = xmalloc(n * sizeof(float)), *M2 = xmalloc(n * sizeof(float));
  float *V2 = xmalloc(n * sizeof(float));
  to_host(P2, dP, n);
  to_host(M2, dM, n);
  to_host(V2, dV, n);
  double eMax = 0, eM = 0, eV = 0;
  /* The formula of ops.h in double, with the hyperparameters exactly as
   * the op receives them (float). */
  const double b1 = h2.beta1, b2 = h2.beta2, lr = h2.lr, ep = h2.eps;
  const double wd = h2.weight_decay, gs = h2.grad_scale;
  for (size_t i = 0; i < n; i++) {
    double g = (double)G[i] * gs;
    double mi = b1 * M[i] + (1 - b1) * g, vi = b2 * Vv[i] + (1 - b2) * g * g;
    double mh = mi / (1 - pow(b1, h2.t)), vh = vi / (1 - pow(b2, h2.t));
    double pw = P[i] - lr * (mh / (sqrt(vh) + ep) + wd * P[i]);
    /* Error in units of lr: |update| <= lr (|mhat/sqrt(vhat)| <= ~1, plus
     * wd |p|), so this is the error relative to a full-size step. */
    double e = fabs(P2[i] - pw) / lr;
    eMax = e > eMax ? e : eMax;
    e = check_relerr(M2[i], mi, 1e-3);
    eM = e > eM ? e : eM;
    e = check_relerr(V2[i], vi, 1e-6);
    eV = e > eV ? e : eV;
  }
  printf("  adamw t=7 vs fp64: |p err|/lr %.2e (limit 1e-4), m maxrel %.2e, "
         "v maxrel %.2e (limit 1e-5)\n",
         eMax, eM, eV);
  /* p is float: p - step rounds by up to 6e-8 |p| (|p| <= 1), which is
   * 2e-5 lr for lr = 3e-3, plus a few ulps of the step itself. */
  CHECK(eMax < 1e-4, "adamw t=7: |p err|/lr %.3e", eMax);
  CHECK(eM < 1e-5 && eV < 1e-5, "adamw t=7: m %.3e v %.3e", eM, eV);
  bt_mem_free(g_be, dP);
  bt_mem_free(g_be, dG);
  bt_mem_free(g_be, dM);
  bt_mem_free(g_be, dV);
  free(P), free(G), free(M), free(Vv), free(P2), free(M2), free(V2);
}

static void test_sumsq_scale(void) {
  size_t n = 100003; /* not a multiple of any chunking */
  float *x = rand_vec(n, -3, 3);
  double want = 0;
  for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
  float *d = dev_from(x, n);
  double got = bt_op_sumsq(g_be, d, n);
  double got2 = bt_op_sumsq(g_be, d, n);
  double e = fabs(got - want) / want;
  printf("  sumsq n=%zu: rel err %.2e vs fp64 (limit 1e-12)\n", n, e);
  /* each x^2 is exact in double; only the summation order differs */
  CHECK(e < 1e-12, "sumsq rel err %.3e", e);
  CHECK(memcmp(&got, &got2, sizeof got) == 0, "sumsq not deterministic");
  CHECK(bt_op_sumsq(g_be, d, 0) == 0.0, "sumsq of nothing must be 0");
  CHECK(bt_op_sumsq(g_be, d, 3) ==
            (double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2],
        "sumsq n=3");

  bt_op_scale(g_be, d, 0.3f, n);
  float *y = xmalloc(n * sizeof(float));
  to_host(y, d, n);
  int nBad = 0;
  for (size_t i = 0; i < n; i++) nBad += y[i] != x[i] * 0.3f;
  CHECK(nBad == 0, "scale: %d elements differ from x*s", nBad);
  bt_mem_free(g_be, d);
  free(x);
  free(y);
}

/* The step-statistics ops (issue 12 item 4): results in backend memory.
 * sumsq_acc adds exactly sumsq's value (twice: it accumulates);
 * loss_sum_acc skips rows with target < 0 even when their loss is NaN,
 * against the fp64 row-order sum (CPU: bit for bit); clip_grads scales by
 * exactly (float)(clip / norm) when the norm is above the limit, and
 * touches nothing below it, with a NaN norm or with clipping off. */
static double *dev_double(double v) {
  double *d = (double *)bt_mem_alloc(g_be, 2, "test double");
  if (!d) abort();
  bt_mem_from_host(g_be, (float *)d, (const float *)&v, 2);
  return d;
}
static double host_double(const double *d) {
  double v;
  to_host((float *)&v, (const float *)d, 2);
  return v;
}

static void test_step_stats(void) {
  size_t n = 100003;
  float *x = rand_vec(n, -3, 3);
  float *d = dev_from(x, n);
  double s = bt_op_sumsq(g_be, d, n);
  double *acc = dev_double(1.5);
  bt_op_sumsq_acc(g_be, acc, d, n);
  double got1 = host_double(acc);
  bt_op_sumsq_acc(g_be, acc, d, n);
  double got2 = host_double(acc);
  CHECK(got1 == 1.5 + s && got2 == (1.5 + s) + s,
        "sumsq_acc: %.17g then %.17g, want %.17g then %.17g", got1, got2,
        1.5 + s, (1.5 + s) + s);
  bt_op_sumsq_acc(g_be, acc, d, 0);
  CHECK(host_double(acc) == got2, "sumsq_acc of nothing changed acc");

  size_t nRow = 1001;
  float *l = rand_vec(nRow, 0, 6);
  int32_t *t = xmalloc(nRow * sizeof(int32_t));
  double want = 0;
  for (size_t i = 0; i < nRow; i++) {
    t[i] = i % 5 == 2 ? -1 : (int32_t)(i % 17);
    if (t[i] < 0) l[i] = NAN; /* masked rows must not be read into the sum */
    else want += l[i];
  }
  float *dl = dev_from(l, nRow);
  int32_t *dt = dev_from_i32(t, nRow);
  double *la = dev_double(0.25);
  bt_op_loss_sum_acc(g_be, la, dl, dt, nRow);
  double got = host_double(la), e = fabs(got - (0.25 + want)) / (0.25 + want);
  printf("  loss_sum_acc n=%zu: rel err %.2e vs fp64 row order (limit 1e-12; "
         "CPU 0)\n", nRow, e);
  CHECK(e < 1e-12, "loss_sum_acc %.17g want %.17g", got, 0.25 + want);
  if (bt_backend_kind_of(g_be) == BT_BACKEND_CPU)
    CHECK(got == 0.25 + want, "loss_sum_acc on the CPU is not the row-order sum");

  /* sumsq 400: norm 20 > 1.5, factor (float)(1.5 / 20) */
  const double aSs[] = {400.0, 0.25, NAN, 400.0};
  const double aClip[] = {1.5, 1.5, 1.5, 0.0};
  float *y = xmalloc(n * sizeof(float));
  for (int k = 0; k < 4; k++) {
    float *g = dev_from(x, n);
    double *ss = dev_double(aSs[k]);
    bt_op_clip_grads(g_be, g, n, ss, aClip[k]);
    to_host(y, g, n);
    float f = (float)(1.5 / 20.0);
    int nBad = 0;
    for (size_t i = 0; i < n; i++) {
      float w = k == 0 ? x[i] * f : x[i];
      nBad += memcmp(&y[i], &w, sizeof w) != 0;
    }
    CHECK(nBad == 0, "clip_grads sumsq %g clip %g: %d elements wrong", aSs[k],
          aClip[k], nBad);
    bt_mem_free(g_be, g);
    bt_mem_free(g_be, (float *)ss);
  }
  bt_mem_free(g_be, d);
  bt_mem_free(g_be, dl);
  bt_mem_free_i32(g_be, dt);
  bt_mem_free(g_be, (float *)acc);
  bt_mem_free(g_be, (float *)la);
  free(x), free(l), free(t), free(y);
}

/* to_act in the default fp32 mode: the working copy is the same bits
 * (copy), in place changes nothing, and the rest of out is untouched.
 * bf16 mode has its own test (tests/kernels/test_ops_bf16.c). */
static void test_to_act(void) {
  size_t n = 40001; /* above the parallel threshold's chunk */
  CHECK(bt_backend_act_dtype(g_be) == BT_ACT_F32,
        "a fresh backend's activation dtype must be fp32");
  CHECK(bt_backend_act_bytes(g_be) == sizeof(float), "fp32 act bytes %zu",
        bt_backend_act_bytes(g_be));
  float *x = rand_vec(n, -3, 3);
  x[0] = 1.00390625f; /* 1 + 2^-8: a bf16 tie that fp32 must keep */
  float *d = dev_from(x, n);
  float *o = bt_mem_alloc(g_be, n + 1, "to_act out");
  float *y = xmalloc((n + 1) * sizeof(float));
  bt_op_to_act(g_be, o, d, n);
  to_host(y, o, n + 1);
  CHECK(memcmp(y, x, n * sizeof(float)) == 0 && y[n] == 0.0f,
        "to_act fp32: not an exact copy of n elements");
  bt_op_to_act(g_be, d, d, n);
  to_host(y, d, n);
  CHECK(memcmp(y, x, n * sizeof(float)) == 0, "to_act fp32 in place changed "
        "the buffer");
  bt_mem_free(g_be, d);
  bt_mem_free(g_be, o);
  free(x);
  free(y);
}

/* bt_backend_upload_async (issue 12 item 4): 11 rounds (more than the
 * CUDA backend's 4 staging slots, with growing sizes so slots are
 * re-allocated) of: upload A into d, scale d by 2 (an op that reads d),
 * upload B into d again (the copy must wait for the scale), upload into a
 * second buffer; the host buffers are overwritten at once after each call
 * (the contract allows it). Reads back B in d and the last value in e. */
static void test_upload(void) {
  size_t nMax = 5000;
  float *d = bt_mem_alloc(g_be, nMax, "upload d");
  int32_t *e = bt_mem_alloc_i32(g_be, nMax, "upload e");
  float *h = xmalloc(nMax * sizeof(float)), *y = xmalloc(nMax * sizeof(float));
  int32_t *hi = xmalloc(nMax * sizeof(int32_t)), *yi = xmalloc(nMax * sizeof(int32_t));
  int nBad = 0;
  for (int r = 0; r < 11; r++) {
    size_t n = 100 + (size_t)r * 450;
    for (size_t i = 0; i < n; i++) h[i] = (float)(r * 10000 + i);
    bt_backend_upload_async(g_be, d, h, n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = -1; /* reused at once */
    bt_op_scale(g_be, d, 2.0f, n);
    for (size_t i = 0; i < n; i++) h[i] = (float)(7 + r + i);
    bt_backend_upload_async(g_be, d, h, n * sizeof(float));
    for (size_t i = 0; i < n; i++) hi[i] = (int32_t)(r - (int)i);
    bt_backend_upload_async(g_be, e, hi, n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) h[i] = -2, hi[i] = -2;
    bt_op_scale(g_be, d, 3.0f, n); /* reads the second upload */
    to_host(y, d, n);
    bt_mem_to_host(g_be, (float *)yi, (const float *)e, n);
    for (size_t i = 0; i < n; i++) {
      nBad += y[i] != (float)(7 + r + i) * 3.0f;
      nBad += yi[i] != (int32_t)(r - (int)i);
    }
  }
  CHECK(nBad == 0, "upload_async: %d elements wrong", nBad);
  bt_mem_free(g_be, d);
  bt_mem_free_i32(g_be, e);
  free(h), free(y), free(hi), free(yi);
}

static void test_memory(void) {
  size_t n = 1001;
  float *d = bt_mem_alloc(g_be, n, "mem test");
  CHECK(d != NULL, "alloc: %s", bt_err_msg());
  if (!d) return;
  float *h = xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) h[i] = 1.0f;
  to_host(h, d, n);
  int nNonZero = 0;
  for (size_t i = 0; i < n; i++) nNonZero += h[i] != 0.0f;
  CHECK(nNonZero == 0, "fresh memory has %d non-zero floats", nNonZero);
  if (g_eKind == BT_BACKEND_CPU)
    CHECK(((uintptr_t)d & 63) == 0, "CPU memory not 64-byte aligned");
  float *x = rand_vec(n, -1, 1);
  bt_mem_from_host(g_be, d, x, n);
  to_host(h, d, n);
  CHECK(memcmp(h, x, n * sizeof(float)) == 0, "host round trip differs");
  bt_mem_zero(g_be, d, n);
  to_host(h, d, n);
  nNonZero = 0;
  for (size_t i = 0; i < n; i++) nNonZero += h[i] != 0.0f;
  CHECK(nNonZero == 0, "mem_zero left %d non-zero floats", nNonZero);
  bt_mem_free(g_be, d);
  free(h);
  free(x);
}

/* Empty shapes (a rank whose shard is empty, a zero-length range) must be
 * no-ops, not crashes or BLAS parameter errors; and an output must stay
 * untouched. */
static void test_empty_shapes(void) {
  float h[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float *d = dev_from(h, 8), *g = dev_from(h, 8);
  int32_t z[2] = {0, 0};
  int32_t *dz = dev_from_i32(z, 2);
  bt_adamw_hparams hp = {0.1f, 0.9f, 0.99f, 1e-8f, 0.1f, 1.0f, 1};
  bt_op_matmul_fwd(g_be, g, d, d, d, 0, 2, 2, BT_W_IN_OUT);
  bt_op_matmul_bwd(g_be, g, g, g, d, d, d, 0, 2, 2, BT_W_OUT_IN);
  bt_op_bias_fwd(g_be, g, d, d, 0, 2);
  bt_op_bias_bwd(g_be, g, g, d, 0, 2);
  bt_op_embed_fwd(g_be, g, dz, d, d, 0, 2, 2);
  bt_op_embed_bwd(g_be, g, g, d, dz, 0, 2, 2, 2);
  bt_op_layernorm_fwd(g_be, g, g, g, d, d, d, 0, 2);
  bt_op_layernorm_bwd(g_be, g, g, g, d, d, d, d, d, 0, 2);
  bt_op_gelu_fwd(g_be, g, d, 0);
  bt_op_matmul_gelu_fwd(g_be, g, g + 4, d, d, d, 0, 2, 2, BT_W_IN_OUT);
  bt_op_gelu_bwd(g_be, g, d, d, 0);
  bt_op_residual_fwd(g_be, g, d, d, 0);
  bt_op_residual_bwd(g_be, g, g, d, 0);
  bt_op_attention_fwd(g_be, g, g, d, 0, 2, 2, 1);
  bt_op_attention_bwd(g_be, g, g, d, d, d, d, 1, 0, 2, 1);
  bt_op_attention_decode(g_be, g, g, d, d, d, 1, 0, 1);
  bt_op_xent_fwd(g_be, g, d, dz, 0, 2, 2);
  bt_op_xent_bwd(g_be, g, d, dz, 1.0f, 0, 2, 2);
  bt_op_xent_fwd_bwd(g_be, g, g, dz, 1.0f, 0, 2, 2);
  bt_op_residual_layernorm_fwd(g_be, g, g, g, g, d, d, d, d, 0, 2);
  bt_op_conv1d_fwd(g_be, g, g, d, d, d, 0, 2, 1, 1, 1, 1, 0);
  bt_op_conv1d_bwd(g_be, g, g, g, g, d, d, d, 0, 2, 1, 1, 1, 1, 0);
  bt_op_attention_masked_fwd(g_be, g, g, d, NULL, 0, 0, 2, 2, 1);
  bt_op_attention_masked_bwd(g_be, g, g, d, d, d, d, NULL, 0, 0, 2, 2, 1);
  bt_op_ctc_loss_fwd(g_be, g, g, d, dz, dz, dz, 0, 2, 2, 1);
  bt_op_ctc_loss_bwd(g_be, g, g, d, dz, dz, dz, 0, 2, 2, 1);
  bt_op_adamw(g_be, g, d, g, g, 0, &hp);
  bt_op_scale(g_be, g, 2.0f, 0);
  bt_op_to_act(g_be, g, d, 0);
  double ss = bt_op_sumsq(g_be, d, 0);
  float back[8];
  to_host(back, g, 8);
  CHECK(ss == 0.0 && memcmp(back, h, sizeof h) == 0,
        "an op with an empty shape wrote its output (sumsq %g)", ss);
  bt_mem_free(g_be, d);
  bt_mem_free(g_be, g);
  bt_mem_free_i32(g_be, dz);
}

/* ---- thread-count independence (CPU) ------------------------------------
 * Runs every op at shapes big enough to take the parallel paths (OpenMP
 * `if` thresholds, OpenBLAS threading) with 1 thread and with 2, and
 * requires the same bits. Returns a checksum-free byte comparison of all
 * outputs, so any schedule-dependent reduction fails it. */
typedef struct {
  float *out[24];
  size_t n[24];
  int nBuf;
  double sumsq;
} RunAll;

static void run_all_ops(RunAll *r) {
  const int B = 4, T = 61, C = 128, NH = 4, V = 300, Vp = 320;
  const int N = B * T;
  r->nBuf = 0;
  g_salt = 5000; /* same inputs on every call */
  int32_t *tok = xmalloc(sizeof(int32_t) * N), *tgt = xmalloc(sizeof(int32_t) * N);
  for (int i = 0; i < N; i++) {
    tok[i] = (i * 7919) % V;
    tgt[i] = i % 5 == 0 ? -1 : (i * 104729) % V;
  }
  float *hWte = rand_vec((size_t)V * C, -1, 1), *hWpe = rand_vec((size_t)T * C, -1, 1);
  float *hW = rand_vec((size_t)C * 3 * C, -0.1f, 0.1f), *hB = rand_vec(3 * C, -1, 1);
  float *hLw = rand_vec(C, 0.5, 1.5), *hLb = rand_vec(C, -1, 1);
  float *hR = rand_vec((size_t)N * 3 * C, -1, 1);
  float *hLog = rand_vec((size_t)N * Vp, -3, 3);
  int32_t *dTok = dev_from_i32(tok, N), *dTgt = dev_from_i32(tgt, N);
  float *wte = dev_from(hWte, (size_t)V * C), *wpe = dev_from(hWpe, (size_t)T * C);
  float *w = dev_from(hW, (size_t)C * 3 * C), *bias = dev_from(hB, 3 * C);
  float *lw = dev_from(hLw, C), *lb = dev_from(hLb, C);
  float *R = dev_from(hR, (size_t)N * 3 * C), *logits = dev_from(hLog, (size_t)N * Vp);
  float *x = bt_mem_alloc(g_be, (size_t)N * C, "x");
  float *ln = bt_mem_alloc(g_be, (size_t)N * C, "ln");
  float *mean = bt_mem_alloc(g_be, N, "mean"), *rstd = bt_mem_alloc(g_be, N, "rstd");
  float *qkv = bt_mem_alloc(g_be, (size_t)N * 3 * C, "qkv");
  float *ge = bt_mem_alloc(g_be, (size_t)N * 3 * C, "gelu");
  float *att = bt_mem_alloc(g_be, bt_op_attention_att_size(g_be, B, T, NH), "att");
  float *scr = bt_mem_alloc(g_be, bt_op_attention_scratch_size(g_be, B, T, NH), "scr");
  float *ao = bt_mem_alloc(g_be, (size_t)N * C, "attout");
  float *res = bt_mem_alloc(g_be, (size_t)N * C, "res");
  float *losses = bt_mem_alloc(g_be, N, "losses");
  float *dqkv = bt_mem_alloc(g_be, (size_t)N * 3 * C, "dqkv");
  float *dln = bt_mem_alloc(g_be, (size_t)N * C, "dln");
  float *dw = bt_mem_alloc(g_be, (size_t)C * 3 * C, "dw");
  float *db = bt_mem_alloc(g_be, 3 * C, "db");
  float *dx = bt_mem_alloc(g_be, (size_t)N * C, "dx");
  float *dlw = bt_mem_alloc(g_be, C, "dlw"), *dlb = bt_mem_alloc(g_be, C, "dlb");
  float *dwte = bt_mem_alloc(g_be, (size_t)V * C, "dwte");
  float *dwpe = bt_mem_alloc(g_be, (size_t)T * C, "dwpe");
  float *dge = bt_mem_alloc(g_be, (size_t)N * 3 * C, "dgelu");
  float *m = bt_mem_alloc(g_be, (size_t)C * 3 * C, "m"), *v = bt_mem_alloc(g_be, (size_t)C * 3 * C, "v");

  bt_op_embed_fwd(g_be, x, dTok, wte, wpe, B, T, C);
  bt_op_layernorm_fwd(g_be, ln, mean, rstd, x, lw, lb, N, C);
  bt_op_matmul_fwd(g_be, qkv, ln, w, bias, N, C, 3 * C, BT_W_IN_OUT);
  bt_op_gelu_fwd(g_be, ge, qkv, (size_t)N * 3 * C);
  bt_op_attention_fwd(g_be, ao, att, qkv, B, T, C, NH);
  bt_op_residual_fwd(g_be, res, ao, x, (size_t)N * C);
  bt_op_bias_fwd(g_be, res, res, lb, N, C);
  bt_op_xent_fwd(g_be, losses, logits, dTgt, N, V, Vp);
  bt_op_xent_bwd(g_be, logits, logits, dTgt, 0.01f, N, V, Vp);
  bt_op_gelu_bwd(g_be, dge, qkv, R, (size_t)N * 3 * C);
  bt_op_attention_bwd(g_be, dqkv, scr, R, qkv, ao, att, B, T, C, NH);
  bt_op_matmul_bwd(g_be, dln, dw, db, dqkv, ln, w, N, C, 3 * C, BT_W_IN_OUT);
  bt_op_matmul_bwd(g_be, dln, dw, db, dqkv, ln, w, N, C, 3 * C, BT_W_OUT_IN);
  bt_op_bias_bwd(g_be, dln, dlb, R, N, C);
  bt_op_layernorm_bwd(g_be, dx, dlw, dlb, dln, x, lw, mean, rstd, N, C);
  bt_op_residual_bwd(g_be, dx, dln, R, (size_t)N * C);
  bt_op_embed_bwd(g_be, dwte, dwpe, dx, dTok, B, T, C, V);
  bt_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 3};
  bt_op_adamw(g_be, w, dw, m, v, (size_t)C * 3 * C, &hp);
  r->sumsq = bt_op_sumsq(g_be, dw, (size_t)C * 3 * C);
  bt_op_scale(g_be, dw, 0.5f, (size_t)C * 3 * C);

  float *keep[] = {x, ln, mean, rstd, qkv, ge, att, ao, res, losses, logits,
                   dge, dqkv, dln, dw, db, dx, dlw, dlb, dwte, dwpe, w, m, v};
  size_t nKeep[] = {(size_t)N * C, (size_t)N * C, N, N, (size_t)N * 3 * C,
                    (size_t)N * 3 * C, (size_t)B * NH * T * T, (size_t)N * C,
                    (size_t)N * C, N, (size_t)N * Vp, (size_t)N * 3 * C,
                    (size_t)N * 3 * C, (size_t)N * C, (size_t)C * 3 * C, 3 * C,
                    (size_t)N * C, C, C, (size_t)V * C, (size_t)T * C,
                    (size_t)C * 3 * C, (size_t)C * 3 * C, (size_t)C * 3 * C};
  for (int i = 0; i < 24; i++) {
    r->n[i] = nKeep[i];
    r->out[i] = xmalloc(nKeep[i] * sizeof(float));
    to_host(r->out[i], keep[i], nKeep[i]);
  }
  r->nBuf = 24;
  float *all[] = {wte, wpe, w, bias, lw, lb, R, logits, x, ln, mean, rstd,
                  qkv, ge, att, scr, ao, res, losses, dqkv, dln, dw, db, dx,
                  dlw, dlb, dwte, dwpe, dge, m, v};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) bt_mem_free(g_be, all[i]);
  bt_mem_free_i32(g_be, dTok);
  bt_mem_free_i32(g_be, dTgt);
  free(tok), free(tgt), free(hWte), free(hWpe), free(hW), free(hB);
  free(hLw), free(hLb), free(hR), free(hLog);
}

static void test_thread_independence(void) {
  static const char *azName[24] = {
      "embed", "ln", "mean", "rstd", "qkv", "gelu", "att", "attout", "bias",
      "losses", "dlogits", "dgelu", "dqkv", "dln", "dw", "db", "dx", "dlnw",
      "dlnb", "dwte", "dwpe", "adamw p", "adamw m", "adamw v"};
  RunAll r1, r2, r2b, r3;
  bt_backend *saved = g_be;
  bt_backend *be1 = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  bt_backend *be2 = bt_backend_create(BT_BACKEND_CPU, 2, 0);
  bt_backend *be3 = bt_backend_create(BT_BACKEND_CPU, 3, 0);
  CHECK(be1 && be2 && be3, "cpu backend create: %s", bt_err_msg());
  if (!be1 || !be2 || !be3) return;
  /* The thread count belongs to each handle (all three coexist). */
  g_be = be1;
  run_all_ops(&r1);
  g_be = be2;
  run_all_ops(&r2);
  run_all_ops(&r2b);
  g_be = be3;
  run_all_ops(&r3);
  int nDiff = 0, nDiff2 = 0, nDiff3 = 0;
  for (int i = 0; i < r1.nBuf; i++) {
    size_t nb = r1.n[i] * sizeof(float);
    int d = memcmp(r1.out[i], r2.out[i], nb) != 0;
    int d2 = memcmp(r2.out[i], r2b.out[i], nb) != 0;
    int d3 = memcmp(r1.out[i], r3.out[i], nb) != 0;
    if (d) printf("  1 vs 2 threads differ: %s\n", azName[i]);
    if (d2) printf("  2 threads run twice differs: %s\n", azName[i]);
    if (d3) printf("  1 vs 3 threads differ: %s\n", azName[i]);
    nDiff += d;
    nDiff2 += d2;
    nDiff3 += d3;
  }
  printf("  determinism (B4 T61 C128 NH4 V300 Vp320, all ops): %d buffers "
         "differ 1 vs 2 threads, %d 1 vs 3 threads, %d run to run\n",
         nDiff, nDiff3, nDiff2);
  CHECK(nDiff2 == 0, "%d outputs differ between two identical runs", nDiff2);
  CHECK(nDiff == 0, "%d outputs differ between 1 and 2 threads", nDiff);
  CHECK(nDiff3 == 0, "%d outputs differ between 1 and 3 threads", nDiff3);
  CHECK(memcmp(&r1.sumsq, &r2.sumsq, sizeof(double)) == 0 &&
            memcmp(&r1.sumsq, &r3.sumsq, sizeof(double)) == 0,
        "sumsq differs between thread counts");
  for (int i = 0; i < r1.nBuf; i++) {
    free(r1.out[i]);
    free(r2.out[i]);
    free(r2b.out[i]);
    free(r3.out[i]);
  }
  bt_backend_free(be3);
  bt_backend_free(be1);
  bt_backend_free(be2);
  g_be = saved;
}

/* ---- the case table --------------------------------------------------------
 * Every case names the ops of kernels/ops.def it exercises, or a tag
 * (azTag) for the checks that are not about one op; op_cases.h says how
 * -o selects cases and what it checks (every op of ops.def has a case
 * here). Each case starts from its own fixed random stream (g_salt), so a
 * filtered run computes exactly the numbers of the full run. */
/* The tags of the checks that are not about one op. */
static const char *const azTag[] = {"memory", "empty_shapes", "threads"};
#define N_TAG ((int)(sizeof azTag / sizeof azTag[0]))
#define CASE_CPU_ONLY 1

static void run_memory(const int *a) { (void)a, test_memory(); }
#include "tests/kernels/test_ops_speech.h"

static void run_matmul(const int *a) {
  test_matmul(a[0], a[1], a[2], (bt_wlayout)a[3], a[4]);
}
static void run_bias(const int *a) { test_bias(a[0], a[1]); }
static void run_embed(const int *a) {
  test_embed(a[0], a[1], a[2], a[3], a[4]);
}
static void run_layernorm(const int *a) { test_layernorm(a[0], a[1]); }
static void run_gelu(const int *a) { test_gelu((size_t)a[0]); }
static void run_gelu_extremes(const int *a) { (void)a, test_gelu_extremes(); }
static void run_residual(const int *a) { test_residual((size_t)a[0]); }
static void run_attention(const int *a) {
  test_attention(a[0], a[1], a[2], a[3]);
}
static void run_attention_decode(const int *a) {
  test_attention_decode(a[0], a[1], a[2]);
}
static void run_xent(const int *a) { test_xent(a[0], a[1], a[2], a[3]); }
static void run_xent_extremes(const int *a) { (void)a, test_xent_extremes(); }
static void run_xent_fwd_bwd(const int *a) {
  test_xent_fwd_bwd(a[0], a[1], a[2]);
}
static void run_residual_layernorm(const int *a) {
  test_residual_layernorm(a[0], a[1]);
}
static void run_matmul_gelu(const int *a) {
  test_matmul_gelu(a[0], a[1], a[2], (bt_wlayout)a[3], a[4]);
}
static void run_adamw(const int *a) { (void)a, test_adamw(); }
static void run_sumsq_scale(const int *a) { (void)a, test_sumsq_scale(); }
static void run_to_act(const int *a) { (void)a, test_to_act(); }
static void run_step_stats(const int *a) { (void)a, test_step_stats(); }
/* bt_backend_upload_release: two buffers in turn as the model's batch
 * buffers are (trainer/model.c). Round r uploads r+1 into p[r % 2], an op
 * reads and rewrites it (x3), and p[r % 2] is released; round r + 2's
 * upload into the same buffer must still wait for that op (the release
 * event follows it), while it need not wait for round r + 1's op. Each
 * round's result is added into sum on the compute stream, so a copy that
 * overtook the x3 of its buffer changes the sum: expected
 * sum_r 3 * (r + 1). A released buffer then uploaded without a new
 * release falls back to waiting for everything (last check). */
static void test_upload_release(void) {
  enum { n = 4096, nRound = 12 };
  float *p[2], *sum = bt_mem_alloc(g_be, n, "upload sum");
  float *h = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
  for (int i = 0; i < 2; i++) p[i] = bt_mem_alloc(g_be, n, "upload pair");
  bt_mem_zero(g_be, sum, n);
  for (int r = 0; r < nRound; r++) {
    float *d = p[r % 2];
    for (size_t i = 0; i < n; i++) h[i] = (float)(r + 1);
    bt_backend_upload_async(g_be, d, h, n * sizeof(float));
    bt_op_scale(g_be, d, 3.0f, n);
    bt_op_residual_fwd(g_be, sum, sum, d, n);
    bt_backend_upload_release(g_be, d);
  }
  to_host(y, sum, n);
  int nBad = 0;
  for (size_t i = 0; i < n; i++)
    nBad += y[i] != (float)(3 * nRound * (nRound + 1) / 2);
  /* no release after this reader: the next upload waits for all work */
  bt_op_scale(g_be, p[0], 5.0f, n);
  bt_op_residual_fwd(g_be, sum, sum, p[0], n);
  for (size_t i = 0; i < n; i++) h[i] = 1000.0f;
  bt_backend_upload_async(g_be, p[0], h, n * sizeof(float));
  to_host(y, sum, n);
  float want = (float)(3 * nRound * (nRound + 1) / 2) + 5.0f * 3.0f * 11.0f;
  for (size_t i = 0; i < n; i++) nBad += y[i] != want;
  to_host(y, p[0], n);
  for (size_t i = 0; i < n; i++) nBad += y[i] != 1000.0f;
  CHECK(nBad == 0, "upload_release: %d elements wrong", nBad);
  for (int i = 0; i < 2; i++) bt_mem_free(g_be, p[i]);
  bt_mem_free(g_be, sum);
  free(h), free(y);
}

static void run_upload(const int *a) { (void)a, test_upload(); }
static void run_upload_release(const int *a) {
  (void)a, test_upload_release();
}
static void run_empty(const int *a) { (void)a, test_empty_shapes(); }
static void run_threads(const int *a) { (void)a, test_thread_independence(); }

#define MM "matmul_fwd matmul_bwd"
#define ATT "attention_fwd attention_bwd attention_att_size attention_scratch_size"
/* Odd sizes throughout: nothing divides by a vector width or a block. */
static const TestCase aCase[] = {
    {"memory", "memory: zeroed, aligned, round trip", run_memory, {0}, 0},
    {"memory scale", "upload_async: ordered after ops, host buffer reusable", run_upload, {0}, 0},
    {"memory scale residual_fwd", "upload_release: two buffers in turn, each copy after its buffer's readers", run_upload_release, {0}, 0},
    {MM, "matmul N7 C5 OC6 IN_OUT bias", run_matmul, {7, 5, 6, BT_W_IN_OUT, 1}, 0},
    {MM, "matmul N7 C5 OC6 OUT_IN bias", run_matmul, {7, 5, 6, BT_W_OUT_IN, 1}, 0},
    {MM, "matmul N9 C6 OC3 IN_OUT nobias", run_matmul, {9, 6, 3, BT_W_IN_OUT, 0}, 0},
    {MM, "matmul N9 C6 OC3 OUT_IN nobias", run_matmul, {9, 6, 3, BT_W_OUT_IN, 0}, 0},
    /* > one 64-column block */
    {MM, "matmul N3 C70 OC67 OUT_IN bias", run_matmul, {3, 70, 67, BT_W_OUT_IN, 1}, 0},
    {"matmul_gelu_fwd", "matmul_gelu N7 C5 OC6 IN_OUT bias (vs the pair, fp32 and bf16)", run_matmul_gelu, {7, 5, 6, BT_W_IN_OUT, 1}, 0},
    {"matmul_gelu_fwd", "matmul_gelu N9 C6 OC8 OUT_IN nobias", run_matmul_gelu, {9, 6, 8, BT_W_OUT_IN, 0}, 0},
    /* > BT_CPU_PAR_MIN elements: both ops split across threads */
    {"matmul_gelu_fwd", "matmul_gelu N64 C40 OC256 IN_OUT bias", run_matmul_gelu, {64, 40, 256, BT_W_IN_OUT, 1}, 0},
    {"bias_fwd bias_bwd", "bias N5 C7", run_bias, {5, 7}, 0},
    {"bias_fwd bias_bwd", "bias N3 C70", run_bias, {3, 70}, 0},
    {"embed_fwd embed_bwd", "embed B2 T7 C5 V4", run_embed, {2, 7, 5, 4, 1}, 0},
    {"embed_fwd embed_bwd", "embed B3 T5 C3 V6 wpe=NULL", run_embed, {3, 5, 3, 6, 0}, 0},
    {"layernorm_fwd layernorm_bwd", "layernorm N5 C9", run_layernorm, {5, 9}, 0},
    {"layernorm_fwd layernorm_bwd", "layernorm N3 C70", run_layernorm, {3, 70}, 0},
    {"gelu_fwd gelu_bwd", "gelu n301", run_gelu, {301}, 0},
    {"gelu_fwd gelu_bwd", "gelu extremes (saturation, NaN)", run_gelu_extremes, {0}, 0},
    {"residual_fwd residual_bwd", "residual n101", run_residual, {101}, 0},
    {"residual_layernorm_fwd", "residual_layernorm N5 C9 (vs the pair, fp32 and bf16)", run_residual_layernorm, {5, 9}, 0},
    /* > BT_CPU_PAR_MIN elements: rows split across threads */
    {"residual_layernorm_fwd", "residual_layernorm N300 C128", run_residual_layernorm, {300, 128}, 0},
    {ATT, "attention B2 T7 C6 NH2", run_attention, {2, 7, 6, 2}, 0},
    {ATT, "attention B2 T7 C6 NH3", run_attention, {2, 7, 6, 3}, 0},
    {ATT, "attention B1 T5 C12 NH3", run_attention, {1, 5, 12, 3}, 0},
    /* T = 1: softmax of one element */
    {ATT, "attention B1 T1 C4 NH2", run_attention, {1, 1, 4, 2}, 0},
    /* T > 2 query blocks of the CPU kernel */
    {ATT, "attention B1 T70 C4 NH2", run_attention, {1, 70, 4, 2}, 0},
    {"attention_decode", "attention_decode T7 C6 NH2", run_attention_decode, {7, 6, 2}, 0},
    {"attention_decode", "attention_decode T70 C12 NH3", run_attention_decode, {70, 12, 3}, 0},
    {"attention_decode", "attention_decode T1 C4 NH2", run_attention_decode, {1, 4, 2}, 0},
    {"conv1d_fwd conv1d_bwd conv1d_scratch_size", "conv1d B2 T9 Cin3 Cout4 K3 S2 P1", test_conv1d, {2, 9, 3, 4, 3, 210}, 0},
    {"conv1d_fwd conv1d_bwd conv1d_scratch_size", "conv1d B1 T8 Cin5 Cout2 K3 S1 P0 nobias", test_conv1d, {1, 8, 5, 2, 3, 101}, 0},
    /* > one 64-row sgemm chunk, > 8 output channels (the dw split) */
    {"conv1d_fwd conv1d_bwd conv1d_scratch_size", "conv1d B2 T140 Cin2 Cout11 K3 S2 P1", test_conv1d, {2, 140, 2, 11, 3, 210}, 0},
    /* keyLen bytes: 7, 3, 1 (one key only) */
    {"attention_masked_fwd attention_masked_bwd", "attention_masked B3 T7 C6 NH2 full keyLen", test_attention_masked, {3, 7, 6, 2, 0, 7 | 3 << 8 | 1 << 16}, 0},
    {"attention_masked_fwd attention_masked_bwd", "attention_masked B2 T7 C6 NH3 causal keyLen", test_attention_masked, {2, 7, 6, 3, 1, 5 | 7 << 8}, 0},
    {"attention_masked_fwd attention_masked_bwd", "attention_masked B2 T5 C4 NH2 full", test_attention_masked, {2, 5, 4, 2, 0, 0}, 0},
    {"attention_masked_fwd attention_masked_bwd", "attention_masked B1 T6 C4 NH1 causal", test_attention_masked, {1, 6, 4, 1, 1, 0}, 0},
    {"ctc_loss_fwd ctc_loss_bwd ctc_scratch_size", "ctc_loss vs enumerated alignments, set 0", test_ctc, {0}, 0},
    {"ctc_loss_fwd ctc_loss_bwd ctc_scratch_size", "ctc_loss set 1 (impossible utterance)", test_ctc, {1}, 0},
    {"xent_fwd xent_bwd", "xent N7 V5 Vp8", run_xent, {7, 5, 8, 0}, 0},
    {"xent_fwd xent_bwd", "xent N7 V5 Vp8 in-place", run_xent, {7, 5, 8, 1}, 0},
    /* no padding */
    {"xent_fwd xent_bwd", "xent N4 V9 Vp9", run_xent, {4, 9, 9, 0}, 0},
    {"xent_fwd", "xent extremes (spread 1e4, NaN)", run_xent_extremes, {0}, 0},
    {"xent_fwd_bwd", "xent_fwd_bwd N7 V5 Vp8 (vs the pair, fp32 and bf16)", run_xent_fwd_bwd, {7, 5, 8}, 0},
    /* rows > the CPU's parallel threshold (N * V >= 8192) */
    {"xent_fwd_bwd", "xent_fwd_bwd N40 V300 Vp320", run_xent_fwd_bwd, {40, 300, 320}, 0},
    {"adamw", "adamw: hand-computed step, fp64 formula", run_adamw, {0}, 0},
    {"sumsq scale", "sumsq n100003, scale", run_sumsq_scale, {0}, 0},
    {"sumsq_acc loss_sum_acc clip_grads", "step statistics in backend memory", run_step_stats, {0}, 0},
    {"to_act", "to_act fp32: exact copy, in place", run_to_act, {0}, 0},
    {"empty_shapes", "every op with an empty shape is a no-op", run_empty, {0}, 0},
    {"threads", "every op: 1, 2, 3 threads bit for bit", run_threads, {0}, CASE_CPU_ONLY},
    {"threads conv1d_fwd conv1d_bwd attention_masked_fwd attention_masked_bwd ctc_loss_fwd ctc_loss_bwd",
     "speech ops: 1, 2, 3 threads bit for bit", test_speech_threads, {0}, CASE_CPU_ONLY},
};
#define N_CASE ((int)(sizeof aCase / sizeof aCase[0]))

static int usage(void) {
  fprintf(stderr, "usage: test_ops [-l] [-o NAME]... [cpu|cuda]\n"
                  "  -l       list the cases and the ops each exercises\n"
                  "  -o NAME  run only the cases of op (or family, or tag) "
                  "NAME; repeatable\n");
  opc_print_names(stderr, azTag, N_TAG);
  return 2;
}

int main(int argc, char **argv) {
  OpcFilter filter = {{0}, 0};
  int bList = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-l") == 0) {
      bList = 1;
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      int rc = opc_filter_add(&filter, argv[++i], azTag, N_TAG, "test_ops");
      if (rc) return rc;
    } else if (strcmp(argv[i], "cuda") == 0) {
      g_eKind = BT_BACKEND_CUDA;
    } else if (strcmp(argv[i], "cpu") == 0) {
      g_eKind = BT_BACKEND_CPU;
    } else {
      return usage();
    }
  }
  if (bList) {
    opc_list(aCase, N_CASE);
    return 0;
  }
  if (g_eKind == BT_BACKEND_CUDA && !bt_backend_cuda_compiled()) {
    printf("SKIP: the CUDA backend is not compiled into this binary\n");
    return 77; /* ctest SKIP_RETURN_CODE */
  }
  g_be = bt_backend_create(g_eKind, 0, 0);
  if (!g_be) {
    if (g_eKind == BT_BACKEND_CUDA) {
      printf("SKIP: cannot create the CUDA backend (no device?): %s\n",
             bt_err_msg());
      return 77;
    }
    fprintf(stderr, "test_ops: cannot create backend: %s\n", bt_err_msg());
    return 1;
  }
  printf("test_ops on backend '%s'\n", bt_backend_name(g_be));

  opc_check_table(aCase, N_CASE, azTag, N_TAG);
  int nRan = 0;
  for (int i = 0; i < N_CASE; i++) {
    const TestCase *c = &aCase[i];
    if (!opc_selected(&filter, c)) continue;
    if ((c->flags & CASE_CPU_ONLY) && g_eKind != BT_BACKEND_CPU) {
      printf("case %s: skipped (CPU backend only)\n", c->zLabel);
      continue;
    }
    printf("case %s [%s]\n", c->zLabel, c->zOps);
    g_salt = 1000 * (uint64_t)(i + 1); /* the same inputs filtered or not */
    c->xRun(c->a);
    nRan++;
  }
  opc_report(&filter, nRan, N_CASE);

  bt_backend_free(g_be);
  return CHECK_DONE();
}
