/*
 * test_ops_bf16.c: the CPU reference's bf16 mode held to its contract
 * (kernels/ops.h bt_act_dtype, kernels/ops.def "ELEMENT TYPES").
 *
 * Usage: test_ops_bf16 [-l] [-o NAME]...   (the filter of op_cases.h)
 *
 * The contract, op by op: with the backend's activation dtype bf16, an op
 * gives EXACTLY the fp32 op's result on the same bf16-valued inputs, with
 * each activation-typed ([act]) output rounded to bf16 (base/bf16.h)
 * and each fp32 output left as it is. So every case runs the op twice on
 * identical inputs, on a CPU backend in bf16 mode and on one in fp32 mode,
 * and requires the same bits after rounding the fp32 run's [act] outputs.
 * Inputs and the initial contents of outputs (backward ops accumulate)
 * are random; [act] ones are rounded to bf16 first, as a bf16 buffer would
 * hold them; fp32 ones are not.
 *
 * Why bit equality is the right limit: the two runs execute the same
 * instructions on the same values (same thread count, same shapes), and
 * rounding is a pure function, so any difference is a contract breach:
 *   - an [act] output not rounded (or rounded before an accumulation
 *     instead of after it) differs from the rounded reference;
 *   - an fp32 output rounded (a parameter gradient, mean/rstd, a loss, an
 *     attention statistic, AdamW state) differs from the unrounded one;
 *   - an input rounded where it should not be (to_act's fp32 source).
 * And each case is shown not to be vacuous: it counts the [act] output
 * elements that rounding changed (must be > 0 wherever an output is not
 * a plain copy of bf16 inputs) and the fp32 output elements that are not
 * bf16 values (must be > 0 wherever the op has an fp32 output).
 *
 * Also here: bt_round_bf16 against an independent fp64 implementation
 * (nearbyint on the scaled significand) on every bf16 pattern, ties and a
 * million random floats; and bt_backend_set_act_dtype's rules (fixed once
 * set or once an activation buffer exists; errors name train.precision).
 * Every op of kernels/ops.def needs a case here (op_cases.h invariant 2):
 * a new op states how bf16 mode treats it.
 */
#include "base/util.h"
#include "base/bf16.h"
#include "kernels/ops.h"
#include "tests/check.h"
#include "tests/kernels/op_cases.h"

#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Slot kinds: inputs, and outputs (also inputs: their initial contents). */
enum { IN_ACT, IN_F32, OUT_ACT, OUT_F32 };

#define MAX_SLOT 12

/* One run of one op on one backend: the buffers it declared, in order. */
typedef struct Run {
  bt_backend *be;
  uint64_t salt;
  int nSlot;
  const char *azName[MAX_SLOT];
  int aeKind[MAX_SLOT];
  size_t anElem[MAX_SLOT];
  float *apDev[MAX_SLOT];
  float *apHost[MAX_SLOT]; /* outputs, fetched after the op */
  int32_t *pIds;
  int nIvec;
  int32_t *apIvec[4]; /* int32 inputs given by value (ivec) */
  double ret; /* sumsq's value */
} Run;

static void *xmalloc(size_t nByte) {
  void *p = calloc(1, nByte ? nByte : 1);
  if (!p) {
    fprintf(stderr, "test_ops_bf16: out of memory\n");
    abort();
  }
  return p;
}

/* Declares the next buffer of the op: n random values in [lo, hi), a pure
 * function of (case salt, slot index), so both runs see the same values;
 * rounded to bf16 for [act] kinds. Returns the backend pointer. */
static float *S(Run *r, const char *zName, int eKind, size_t n, float lo,
                float hi) {
  BT_ASSERT(r->nSlot < MAX_SLOT);
  int i = r->nSlot++;
  float *h = xmalloc(n * sizeof(float));
  uint64_t key = bt_rng_key(4321, 12, r->salt, (uint64_t)i);
  for (size_t j = 0; j < n; j++) {
    h[j] = (float)(lo + (hi - lo) * bt_rng_uniform(key, j));
    if (eKind == IN_ACT || eKind == OUT_ACT) h[j] = bt_round_bf16(h[j]);
  }
  float *d = bt_mem_alloc(r->be, n ? n : 1, zName);
  BT_ASSERT(d != NULL);
  if (n) bt_mem_from_host(r->be, d, h, n);
  free(h);
  r->azName[i] = zName;
  r->aeKind[i] = eKind;
  r->anElem[i] = n;
  r->apDev[i] = d;
  return d;
}

/* n token ids / targets in [0, V); every 5th is -1 when bMask. */
static const int32_t *ids(Run *r, size_t n, int V, int bMask) {
  int32_t *h = xmalloc(n * sizeof(int32_t));
  uint64_t key = bt_rng_key(4321, 13, r->salt, 0);
  for (size_t j = 0; j < n; j++)
    h[j] = bMask && j % 5 == 3 ? -1 : (int32_t)(bt_rng_u64(key, j) % V);
  r->pIds = bt_mem_alloc_i32(r->be, n ? n : 1, "ids");
  BT_ASSERT(r->pIds != NULL);
  if (n) bt_mem_from_host_i32(r->be, r->pIds, h, n);
  free(h);
  return r->pIds;
}

/* An int32 input of n given values (lengths, labels) in backend memory. */
static const int32_t *ivec(Run *r, const int32_t *aVal, size_t n) {
  BT_ASSERT(r->nIvec < 4);
  int32_t *d = bt_mem_alloc_i32(r->be, n ? n : 1, "ivec");
  BT_ASSERT(d != NULL);
  if (n) bt_mem_from_host_i32(r->be, d, aVal, n);
  r->apIvec[r->nIvec++] = d;
  return d;
}

/* ---- the op calls: declare the buffers, call the op ---------------------- */

static void op_matmul_fwd(Run *r, const int *a) {
  int N = a[0], C = a[1], OC = a[2];
  float *out = S(r, "out", OUT_ACT, (size_t)N * OC, -1, 1);
  float *inp = S(r, "inp", IN_ACT, (size_t)N * C, -1, 1);
  float *w = S(r, "w", IN_ACT, (size_t)C * OC, -1, 1);
  float *b = S(r, "bias", IN_ACT, (size_t)OC, -1, 1);
  bt_op_matmul_fwd(r->be, out, inp, w, a[4] ? b : NULL, N, C, OC,
                   (bt_wlayout)a[3]);
}
static void op_matmul_bwd(Run *r, const int *a) {
  int N = a[0], C = a[1], OC = a[2];
  float *dinp = S(r, "dinp", OUT_ACT, (size_t)N * C, -1, 1);
  float *dw = S(r, "dw", OUT_F32, (size_t)C * OC, -1, 1);
  float *db = S(r, "dbias", OUT_F32, (size_t)OC, -1, 1);
  float *dout = S(r, "dout", IN_ACT, (size_t)N * OC, -1, 1);
  float *inp = S(r, "inp", IN_ACT, (size_t)N * C, -1, 1);
  float *w = S(r, "w", IN_ACT, (size_t)C * OC, -1, 1);
  bt_op_matmul_bwd(r->be, dinp, dw, a[4] ? db : NULL, dout, inp, w, N, C, OC,
                   (bt_wlayout)a[3]);
}
static void op_bias(Run *r, const int *a) {
  int N = a[0], C = a[1];
  float *out = S(r, "out", OUT_ACT, (size_t)N * C, -1, 1);
  float *dinp = S(r, "dinp", OUT_ACT, (size_t)N * C, -1, 1);
  float *db = S(r, "dbias", OUT_F32, (size_t)C, -1, 1);
  float *inp = S(r, "inp", IN_ACT, (size_t)N * C, -1, 1);
  float *bias = S(r, "bias", IN_ACT, (size_t)C, -1, 1);
  bt_op_bias_fwd(r->be, out, inp, bias, N, C);
  bt_op_bias_bwd(r->be, dinp, db, inp, N, C);
}
static void op_embed(Run *r, const int *a) {
  int B = a[0], T = a[1], C = a[2], V = a[3];
  size_t n = (size_t)B * T * C;
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *dwte = S(r, "dwte", OUT_F32, (size_t)V * C, -1, 1);
  float *dwpe = S(r, "dwpe", OUT_F32, (size_t)T * C, -1, 1);
  float *wte = S(r, "wte", IN_ACT, (size_t)V * C, -1, 1);
  float *wpe = S(r, "wpe", IN_ACT, (size_t)T * C, -1, 1);
  float *dout = S(r, "dout", IN_ACT, n, -1, 1);
  const int32_t *tok = ids(r, (size_t)B * T, V, 0);
  bt_op_embed_fwd(r->be, out, tok, wte, wpe, B, T, C);
  bt_op_embed_bwd(r->be, dwte, dwpe, dout, tok, B, T, C, V);
}
static void op_layernorm(Run *r, const int *a) {
  int N = a[0], C = a[1];
  size_t n = (size_t)N * C;
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *mean = S(r, "mean", OUT_F32, (size_t)N, -1, 1);
  float *rstd = S(r, "rstd", OUT_F32, (size_t)N, -1, 1);
  float *dinp = S(r, "dinp", OUT_ACT, n, -1, 1);
  float *dw = S(r, "dw", OUT_F32, (size_t)C, -1, 1);
  float *db = S(r, "db", OUT_F32, (size_t)C, -1, 1);
  float *inp = S(r, "inp", IN_ACT, n, -2, 3);
  float *w = S(r, "w", IN_ACT, (size_t)C, 0.5f, 1.5f);
  /* b and dout share one slot's values (dout is an [act] tensor too) */
  float *bd = S(r, "b, dout", IN_ACT, n, -1, 1);
  bt_op_layernorm_fwd(r->be, out, mean, rstd, inp, w, bd, N, C);
  bt_op_layernorm_bwd(r->be, dinp, dw, db, bd, inp, w, mean, rstd, N, C);
}
static void op_gelu(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *dinp = S(r, "dinp", OUT_ACT, n, -1, 1);
  float *inp = S(r, "inp", IN_ACT, n, -5, 5);
  float *dout = S(r, "dout", IN_ACT, n, -1, 1);
  bt_op_gelu_fwd(r->be, out, inp, n);
  bt_op_gelu_bwd(r->be, dinp, inp, dout, n);
}
static void op_residual(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *da = S(r, "da", OUT_ACT, n, -1, 1);
  float *db = S(r, "db", OUT_ACT, n, -1, 1);
  float *x = S(r, "a", IN_ACT, n, -1, 1);
  float *y = S(r, "b", IN_ACT, n, -1, 1);
  bt_op_residual_fwd(r->be, out, x, y, n);
  bt_op_residual_bwd(r->be, da, db, y, n);
}
static void op_attention(Run *r, const int *a) {
  int B = a[0], T = a[1], C = a[2], NH = a[3];
  size_t n = (size_t)B * T * C;
  size_t nAtt = bt_op_attention_att_size(r->be, B, T, NH);
  size_t nScr = bt_op_attention_scratch_size(r->be, B, T, NH);
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *att = S(r, "att", OUT_F32, nAtt, 0, 1);
  float *dqkv = S(r, "dqkv", OUT_ACT, 3 * n, -1, 1);
  float *scr = S(r, "scratch", OUT_F32, nScr, 0, 1);
  float *qkv = S(r, "qkv", IN_ACT, 3 * n, -2, 2);
  float *dout = S(r, "dout", IN_ACT, n, -1, 1);
  bt_op_attention_fwd(r->be, out, att, qkv, B, T, C, NH);
  bt_op_attention_bwd(r->be, dqkv, scr, dout, qkv, out, att, B, T, C, NH);
}
static void op_attention_decode(Run *r, const int *a) {
  int nPos = a[0], C = a[1], NH = a[2];
  float *out = S(r, "out", OUT_ACT, (size_t)C, -1, 1);
  float *scr = S(r, "scratch", OUT_F32, (size_t)NH * nPos, 0, 1);
  float *q = S(r, "q", IN_ACT, (size_t)C, -2, 2);
  float *kc = S(r, "kc", IN_ACT, (size_t)nPos * C, -2, 2);
  float *vc = S(r, "vc", IN_ACT, (size_t)nPos * C, -2, 2);
  bt_op_attention_decode(r->be, out, scr, q, kc, vc, nPos, C, NH);
}
static void op_xent(Run *r, const int *a) {
  int N = a[0], V = a[1], Vp = a[2];
  float *losses = S(r, "losses", OUT_F32, (size_t)N, -1, 1);
  float *dl = S(r, "dlogits", OUT_ACT, (size_t)N * Vp, -1, 1);
  float *logits = S(r, "logits", IN_ACT, (size_t)N * Vp, -4, 4);
  const int32_t *tgt = ids(r, (size_t)N, V, 1);
  bt_op_xent_fwd(r->be, losses, logits, tgt, N, V, Vp);
  bt_op_xent_bwd(r->be, dl, logits, tgt, 1.0f / N, N, V, Vp);
}
/* The fused cross-entropy: in place, so the logits slot is an [act]
 * output whose initial contents are the (bf16) logits. */
static void op_xent_fwd_bwd(Run *r, const int *a) {
  int N = a[0], V = a[1], Vp = a[2];
  float *losses = S(r, "losses", OUT_F32, (size_t)N, -1, 1);
  float *logits = S(r, "logits -> dlogits", OUT_ACT, (size_t)N * Vp, -4, 4);
  const int32_t *tgt = ids(r, (size_t)N, V, 1);
  bt_op_xent_fwd_bwd(r->be, losses, logits, tgt, 1.0f / N, N, V, Vp);
}
/* The fused residual + layernorm reads its sum AS STORED (rounded in bf16
 * mode), which "the fp32 op on bf16 inputs, outputs rounded" does not do
 * when a + b needs more than bf16's 8 bits. So a and b are multiples of
 * 1/16 in [-4, 4) (7 bits each): every sum has at most 8 significant bits
 * and is exact in bf16, both runs feed the layernorm the same values, and
 * the case checks the layernorm half and the kinds of all six outputs.
 * (tests/kernels/test_ops.c checks general inputs in bf16 mode against
 * residual_fwd + layernorm_fwd, bit for bit.) */
static float *S16th(Run *r, const char *zName, size_t n) {
  float *d = S(r, zName, IN_ACT, n, -4, 4);
  float *h = xmalloc(n * sizeof(float));
  bt_mem_to_host(r->be, h, d, n);
  for (size_t j = 0; j < n; j++) h[j] = floorf(h[j] * 16.0f) / 16.0f;
  bt_mem_from_host(r->be, d, h, n);
  free(h);
  return d;
}
static void op_residual_layernorm(Run *r, const int *a) {
  int N = a[0], C = a[1];
  size_t n = (size_t)N * C;
  float *res = S(r, "outRes", OUT_ACT, n, -1, 1);
  float *ln = S(r, "outLn", OUT_ACT, n, -1, 1);
  float *mean = S(r, "mean", OUT_F32, (size_t)N, -1, 1);
  float *rstd = S(r, "rstd", OUT_F32, (size_t)N, -1, 1);
  float *x = S16th(r, "a", n);
  float *y = S16th(r, "b", n);
  float *w = S(r, "w", IN_ACT, (size_t)C, 0.5f, 1.5f);
  float *bias = S(r, "bias", IN_ACT, (size_t)C, -1, 1);
  bt_op_residual_layernorm_fwd(r->be, res, ln, mean, rstd, x, y, w, bias, N,
                               C);
}
/* matmul_gelu_fwd: its GELU reads the ROUNDED pre in bf16 mode (as
 * matmul_fwd then gelu_fwd do), the fp32 run the unrounded one, so as for
 * residual_layernorm the inputs make pre exact in bf16: inp and w are
 * multiples of 1/4 in [-1, 1), the bias of 1/16, so with C <= 8 every pre
 * is a multiple of 1/16 of magnitude <= 9 (8 significant bits). The case
 * then checks the GELU's rounding and both outputs' kinds.
 * (tests/kernels/test_ops.c checks general inputs in bf16 mode against
 * matmul_fwd + gelu_fwd, bit for bit.) */
static float *SQuant(Run *r, const char *zName, size_t n, float q) {
  float *d = S(r, zName, IN_ACT, n, -1, 1);
  float *h = xmalloc(n * sizeof(float));
  bt_mem_to_host(r->be, h, d, n);
  for (size_t j = 0; j < n; j++) h[j] = floorf(h[j] * q) / q;
  bt_mem_from_host(r->be, d, h, n);
  free(h);
  return d;
}
static void op_matmul_gelu(Run *r, const int *a) {
  int N = a[0], C = a[1], OC = a[2];
  BT_ASSERT(C <= 8); /* pre exact in bf16 (above) */
  float *out = S(r, "out", OUT_ACT, (size_t)N * OC, -1, 1);
  float *pre = S(r, "pre", OUT_ACT, (size_t)N * OC, -1, 1);
  float *inp = SQuant(r, "inp", (size_t)N * C, 4.0f);
  float *w = SQuant(r, "w", (size_t)C * OC, 4.0f);
  float *b = SQuant(r, "bias", (size_t)OC, 16.0f);
  bt_op_matmul_gelu_fwd(r->be, out, pre, inp, w, a[4] ? b : NULL, N, C, OC,
                        (bt_wlayout)a[3]);
}
/* Speech ops (issue 15): conv1d B2 T9 Cin3 Cout4 K3 S2 P1 and the like. */
static void op_conv1d(Run *r, const int *a) {
  int B = a[0], T = a[1], Cin = a[2], Cout = a[3], K = 3, St = 2, Pd = 1;
  int To = (T + 2 * Pd - K) / St + 1;
  size_t nScr = bt_op_conv1d_scratch_size(r->be, B, T, Cin, Cout, K, St, Pd);
  float *out = S(r, "out", OUT_ACT, (size_t)B * To * Cout, -1, 1);
  float *scr = S(r, "scratch", OUT_F32, nScr, 0, 1);
  float *dinp = S(r, "dinp", OUT_ACT, (size_t)B * T * Cin, -1, 1);
  float *dw = S(r, "dw", OUT_F32, (size_t)Cout * Cin * K, -1, 1);
  float *db = S(r, "dbias", OUT_F32, (size_t)Cout, -1, 1);
  float *inp = S(r, "inp", IN_ACT, (size_t)B * T * Cin, -2, 2);
  float *w = S(r, "w", IN_ACT, (size_t)Cout * Cin * K, -1, 1);
  float *bias = S(r, "bias", IN_F32, (size_t)Cout, -1, 1);
  float *dout = S(r, "dout", IN_ACT, (size_t)B * To * Cout, -1, 1);
  bt_op_conv1d_fwd(r->be, out, scr, inp, w, bias, B, T, Cin, Cout, K, St, Pd);
  bt_op_conv1d_bwd(r->be, dinp, dw, db, scr, dout, inp, w, B, T, Cin, Cout,
                   K, St, Pd);
}
static void op_attention_masked(Run *r, const int *a) {
  int B = a[0], T = a[1], C = a[2], NH = a[3], causal = a[4];
  size_t n = (size_t)B * T * C;
  size_t nAtt = bt_op_attention_att_size(r->be, B, T, NH);
  size_t nScr = bt_op_attention_scratch_size(r->be, B, T, NH);
  int32_t aLen[2] = {T, T - 3};
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *att = S(r, "att", OUT_F32, nAtt, 0, 1);
  float *dqkv = S(r, "dqkv", OUT_ACT, 3 * n, -1, 1);
  float *scr = S(r, "scratch", OUT_F32, nScr, 0, 1);
  float *qkv = S(r, "qkv", IN_ACT, 3 * n, -2, 2);
  float *dout = S(r, "dout", IN_ACT, n, -1, 1);
  const int32_t *len = ivec(r, aLen, (size_t)B);
  bt_op_attention_masked_fwd(r->be, out, att, qkv, len, causal, B, T, C, NH);
  bt_op_attention_masked_bwd(r->be, dqkv, scr, dout, qkv, out, att, len,
                             causal, B, T, C, NH);
}
static void op_ctc(Run *r, const int *a) {
  int B = 2, T = a[0], V = a[1], L = a[2];
  int32_t aIn[2] = {T, T - 2}, aTgtLen[2] = {L, L - 1}, aTgt[2 * 8];
  BT_ASSERT(L <= 8);
  for (int i = 0; i < B * L; i++) aTgt[i] = 1 + (i * 7 + i / L) % (V - 1);
  size_t nScr = bt_op_ctc_scratch_size(r->be, B, T, V, L);
  float *losses = S(r, "losses", OUT_F32, (size_t)B, -1, 1);
  float *scr = S(r, "scratch", OUT_F32, nScr, 0, 1);
  float *dl = S(r, "dlogits", OUT_ACT, (size_t)B * T * V, -1, 1);
  float *logits = S(r, "logits", IN_ACT, (size_t)B * T * V, -3, 3);
  float *dloss = S(r, "dloss", IN_F32, (size_t)B, 0.5f, 1.5f);
  const int32_t *in = ivec(r, aIn, (size_t)B);
  const int32_t *tgt = ivec(r, aTgt, (size_t)B * L);
  const int32_t *tl = ivec(r, aTgtLen, (size_t)B);
  bt_op_ctc_loss_fwd(r->be, losses, scr, logits, in, tgt, tl, B, T, V, L);
  bt_op_ctc_loss_bwd(r->be, dl, scr, dloss, in, tgt, tl, B, T, V, L);
}
static void op_adamw(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *p = S(r, "param", OUT_F32, n, -1, 1);
  float *m = S(r, "m", OUT_F32, n, -0.1f, 0.1f);
  float *v = S(r, "v", OUT_F32, n, 0, 0.01f);
  float *g = S(r, "grad", IN_F32, n, -1, 1);
  bt_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, 3};
  bt_op_adamw(r->be, p, g, m, v, n, &hp);
}
static void op_sumsq_scale(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *x = S(r, "x", OUT_F32, n, -3, 3);
  r->ret = bt_op_sumsq(r->be, x, n);
  bt_op_scale(r->be, x, 0.37f, n);
}
/* The step statistics (fp32 and double only, whatever the mode): the
 * accumulators are two doubles in a 4-float slot, compared bit for bit. */
static void op_step_stats(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *x = S(r, "x (clipped)", OUT_F32, n, -3, 3);
  float *acc = S(r, "sumsq_acc, loss_sum_acc (2 doubles)", OUT_F32, 4, 0.5f, 1);
  float *l = S(r, "losses", IN_F32, n, 0, 5);
  int32_t *h = xmalloc(n * sizeof(int32_t)), *t = bt_mem_alloc_i32(r->be, n, "targets");
  BT_ASSERT(t != NULL);
  for (size_t i = 0; i < n; i++) h[i] = i % 3 == 1 ? -1 : (int32_t)i;
  bt_mem_from_host_i32(r->be, t, h, n);
  bt_op_sumsq_acc(r->be, (double *)acc, x, n);
  bt_op_loss_sum_acc(r->be, (double *)acc + 1, l, t, n);
  bt_op_clip_grads(r->be, x, n, (const double *)acc, 1.0); /* norm >> 1 */
  bt_backend_sync(r->be);
  bt_mem_free_i32(r->be, t);
  free(h);
}
static void op_to_act(Run *r, const int *a) {
  size_t n = (size_t)a[0];
  float *out = S(r, "out", OUT_ACT, n, -1, 1);
  float *in = S(r, "in", IN_F32, n, -3, 3);
  float *inPlace = S(r, "in place", OUT_ACT, n, -1, 1);
  bt_op_to_act(r->be, out, in, n);
  /* in place (allowed where storage is float): idempotent on bf16 data */
  bt_op_to_act(r->be, inPlace, inPlace, n);
}

/* ---- the harness -------------------------------------------------------- */

static bt_backend *g_be16, *g_be32;

/* Runs xOp on backend be, fetches its outputs. */
static void run_on(Run *r, bt_backend *be, uint64_t salt,
                   void (*xOp)(Run *, const int *), const int *a) {
  memset(r, 0, sizeof *r);
  r->be = be;
  r->salt = salt;
  xOp(r, a);
  bt_backend_sync(be);
  for (int i = 0; i < r->nSlot; i++) {
    if (r->aeKind[i] == OUT_ACT || r->aeKind[i] == OUT_F32) {
      r->apHost[i] = xmalloc(r->anElem[i] * sizeof(float));
      if (r->anElem[i])
        bt_mem_to_host(be, r->apHost[i], r->apDev[i], r->anElem[i]);
    }
    bt_mem_free(be, r->apDev[i]);
  }
  bt_mem_free_i32(be, r->pIds);
  for (int i = 0; i < r->nIvec; i++) bt_mem_free_i32(be, r->apIvec[i]);
}

static void run_free(Run *r) {
  for (int i = 0; i < r->nSlot; i++) free(r->apHost[i]);
}

static int is_bf16(float x) { return bt_round_bf16(x) == x || x != x; }

/* The case: bf16 run == fp32 run with [act] outputs rounded, bit for bit;
 * and rounding changed some [act] output and some fp32 output is not a
 * bf16 value (else the case could not tell the kinds apart). */
static void check_pair(const char *zLabel, void (*xOp)(Run *, const int *),
                       const int *a, uint64_t salt) {
  Run r16, r32;
  run_on(&r16, g_be16, salt, xOp, a);
  run_on(&r32, g_be32, salt, xOp, a);
  BT_ASSERT(r16.nSlot == r32.nSlot);
  long nRounded = 0, nF32 = 0, nF32Wide = 0, nActOut = 0;
  for (int i = 0; i < r16.nSlot; i++) {
    int e = r16.aeKind[i];
    if (e != OUT_ACT && e != OUT_F32) continue;
    size_t n = r16.anElem[i];
    long nBad = 0, nNotBf16 = 0;
    for (size_t j = 0; j < n; j++) {
      float want = r32.apHost[i][j], got = r16.apHost[i][j];
      if (e == OUT_ACT) {
        float rw = bt_round_bf16(want);
        nRounded += memcmp(&rw, &want, sizeof rw) != 0;
        want = rw;
        nActOut++;
      } else {
        nF32++;
        nF32Wide += !is_bf16(want);
      }
      nNotBf16 += !is_bf16(got);
      nBad += memcmp(&got, &want, sizeof got) != 0;
    }
    CHECK(nBad == 0, "%s: %s (%s): %ld of %zu elements differ from the fp32 "
          "op%s", zLabel, r16.azName[i], e == OUT_ACT ? "[act]" : "fp32",
          nBad, n, e == OUT_ACT ? " rounded to bf16" : "");
    if (e == OUT_ACT)
      CHECK(nNotBf16 == 0, "%s: [act] output %s holds %ld values that are "
            "not bf16", zLabel, r16.azName[i], nNotBf16);
  }
  if (r32.nSlot && xOp == op_sumsq_scale)
    CHECK(memcmp(&r16.ret, &r32.ret, sizeof r16.ret) == 0,
          "%s: sumsq %.17g in bf16 mode, %.17g in fp32", zLabel, r16.ret,
          r32.ret);
  printf("  %-44s %ld [act] outputs (%ld changed by rounding), %ld fp32 "
         "(%ld not bf16 values)\n", zLabel, nActOut, nRounded, nF32, nF32Wide);
  if (nActOut)
    CHECK(nRounded > 0, "%s: rounding changed no [act] output: the case "
          "proves nothing", zLabel);
  if (nF32)
    CHECK(nF32Wide > 0, "%s: every fp32 output is a bf16 value: the case "
          "cannot tell rounded from unrounded", zLabel);
  run_free(&r16);
  run_free(&r32);
}

/* ---- bt_round_bf16 ------------------------------------------------------ */

/* Independent reference: round to 8 significant bits in double with
 * nearbyint (ties to even in the default rounding mode); bf16's quantum
 * is 2^(e-8) for |x| = m 2^e, m in [0.5, 1), and 2^-133 below 2^-126
 * (subnormals, the same exponent range as float). */
static float ref_round(float x) {
  if (isnan(x) || isinf(x) || x == 0.0f) return x;
  int e;
  (void)frexp((double)x, &e);
  int q = e - 8 < -133 ? -133 : e - 8;
  double r = ldexp(nearbyint(ldexp((double)x, -q)), q);
  if (fabs(r) > 3.3895313892515355e38) return x > 0 ? INFINITY : -INFINITY;
  return (float)r;
}

static void test_round(void) {
  CHECK(fegetround() == FE_TONEAREST, "rounding mode is not to-nearest");
  /* ties to even: 1 + 2^-8 sits between 1 and 1 + 2^-7 */
  CHECK(bt_round_bf16(1.00390625f) == 1.0f, "1+2^-8 -> 1 (even)");
  CHECK(bt_round_bf16(1.01171875f) == 1.015625f, "1+3*2^-8 -> 1+2^-6 (even)");
  CHECK(bt_round_bf16(nextafterf(1.00390625f, 2.0f)) == 1.0078125f,
        "just above a tie rounds up");
  CHECK(bt_round_bf16(-1.00390625f) == -1.0f, "sign is kept");
  CHECK(isinf(bt_round_bf16(3.40e38f)), "above the largest bf16 -> inf");
  CHECK(bt_round_bf16(INFINITY) == INFINITY, "inf stays inf");
  float nan = bt_round_bf16(NAN), nNeg = bt_round_bf16(-NAN);
  CHECK(isnan(nan) && isnan(nNeg) && signbit(nNeg), "NaN stays NaN, sign "
        "kept");
  /* a NaN whose payload is only in the low 16 bits must not become inf */
  uint32_t u = 0x7F800001u;
  float sn;
  memcpy(&sn, &u, sizeof sn);
  CHECK(isnan(bt_round_bf16(sn)), "low-payload NaN stays NaN");
  /* every bf16 pattern: idempotent (invariant 2) and exact in float */
  long nBad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float x = bt_bf16_to_f32((uint16_t)h);
    if (isnan(x)) continue;
    float y = bt_round_bf16(x);
    nBad += memcmp(&x, &y, sizeof x) != 0 || bt_f32_to_bf16(x) != h;
  }
  CHECK(nBad == 0, "%ld bf16 values change when rounded again", nBad);
  /* random bit patterns (every exponent, subnormals included) */
  nBad = 0;
  uint64_t key = bt_rng_key(4321, 14, 0, 0);
  for (size_t j = 0; j < 1000000; j++) {
    uint32_t bits = (uint32_t)bt_rng_u64(key, j);
    float x, want;
    memcpy(&x, &bits, sizeof x);
    if (isnan(x)) continue;
    want = ref_round(x);
    float got = bt_round_bf16(x);
    nBad += memcmp(&got, &want, sizeof got) != 0;
  }
  CHECK(nBad == 0, "bt_round_bf16 differs from the fp64 reference on %ld "
        "of 1e6 random floats", nBad);
  printf("  bt_round_bf16: ties, specials, 65536 patterns, 1e6 random "
         "floats checked\n");
}

/* ---- bt_backend_set_act_dtype ------------------------------------------ */

static void test_set_dtype(void) {
  bt_backend *be = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  BT_ASSERT(be);
  CHECK(bt_backend_act_dtype(be) == BT_ACT_F32, "default is fp32");
  CHECK(bt_backend_set_act_dtype(be, BT_ACT_BF16) == BT_OK, "set bf16: %s",
        bt_err_msg());
  CHECK(bt_backend_act_dtype(be) == BT_ACT_BF16 &&
            bt_backend_act_bytes(be) == 4,
        "cpu bf16 stores float (4 bytes), got %zu",
        bt_backend_act_bytes(be));
  CHECK(bt_backend_set_act_dtype(be, BT_ACT_BF16) == BT_OK,
        "setting the same dtype again is allowed");
  CHECK(bt_backend_set_act_dtype(be, BT_ACT_F32) == BT_ERR &&
            strstr(bt_err_msg(), "train.precision") &&
            strstr(bt_err_msg(), "bf16"),
        "changing a fixed dtype must fail naming the key: '%s'",
        bt_err_msg());
  bt_backend_free(be);
  /* an activation buffer fixes the default */
  be = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  float *p = bt_mem_alloc_act(be, 10, "act");
  CHECK(p && bt_act_at(be, p, 3) == p + 3, "act slice of a float buffer");
  CHECK(bt_backend_set_act_dtype(be, BT_ACT_BF16) == BT_ERR,
        "bf16 after an fp32 activation buffer must fail");
  bt_mem_free(be, p);
  bt_backend_free(be);
}

/* ---- the case table ----------------------------------------------------- */

static const char *const azTag[] = {"round", "dtype"};
#define N_TAG ((int)(sizeof azTag / sizeof azTag[0]))

typedef void (*OpFn)(Run *, const int *);
static const OpFn aFn[] = {op_matmul_fwd, op_matmul_bwd,       op_bias,
                           op_embed,      op_layernorm,        op_gelu,
                           op_residual,   op_attention,        op_attention_decode,
                           op_xent,       op_adamw,            op_sumsq_scale,
                           op_to_act,     op_conv1d,           op_attention_masked,
                           op_ctc,        op_xent_fwd_bwd,     op_residual_layernorm,
                           op_step_stats, op_matmul_gelu};
enum { F_MMF, F_MMB, F_BIAS, F_EMB, F_LN, F_GELU, F_RES, F_ATT, F_DEC, F_XENT,
       F_ADAM, F_SUMSQ, F_TOACT, F_CONV, F_MATT, F_CTC, F_XFB, F_RLN, F_STEP,
       F_MMG,
       F_ROUND = 100, F_DTYPE };

static int g_iCase;
static void run_case(const int *a);

#define ATT "attention_fwd attention_bwd attention_att_size attention_scratch_size"
/* a[5] selects the op (aFn index or F_ROUND / F_DTYPE); a[0..4] the shape. */
static const TestCase aCase[] = {
    {"round", "bt_round_bf16 vs fp64 reference", run_case, {0, 0, 0, 0, 0, F_ROUND}, 0},
    {"dtype", "set_act_dtype: fixed once set", run_case, {0, 0, 0, 0, 0, F_DTYPE}, 0},
    {"matmul_fwd", "matmul_fwd N7 C5 OC6 IN_OUT bias", run_case, {7, 5, 6, BT_W_IN_OUT, 1, F_MMF}, 0},
    {"matmul_fwd", "matmul_fwd N9 C6 OC3 OUT_IN", run_case, {9, 6, 3, BT_W_OUT_IN, 0, F_MMF}, 0},
    /* 64 x 600 outputs: the parallel rounding path (>= 32768 floats) */
    {"matmul_fwd", "matmul_fwd N64 C40 OC600 IN_OUT bias", run_case, {64, 40, 600, BT_W_IN_OUT, 1, F_MMF}, 0},
    {"matmul_bwd", "matmul_bwd N7 C5 OC6 IN_OUT bias", run_case, {7, 5, 6, BT_W_IN_OUT, 1, F_MMB}, 0},
    {"matmul_bwd", "matmul_bwd N9 C70 OC3 OUT_IN", run_case, {9, 70, 3, BT_W_OUT_IN, 0, F_MMB}, 0},
    {"bias_fwd bias_bwd", "bias N5 C70", run_case, {5, 70, 0, 0, 0, F_BIAS}, 0},
    {"embed_fwd embed_bwd", "embed B2 T7 C5 V4", run_case, {2, 7, 5, 4, 0, F_EMB}, 0},
    {"layernorm_fwd layernorm_bwd", "layernorm N5 C70", run_case, {5, 70, 0, 0, 0, F_LN}, 0},
    {"gelu_fwd gelu_bwd", "gelu n40001", run_case, {40001, 0, 0, 0, 0, F_GELU}, 0},
    {"residual_fwd residual_bwd", "residual n40001", run_case, {40001, 0, 0, 0, 0, F_RES}, 0},
    {ATT, "attention B2 T7 C6 NH3", run_case, {2, 7, 6, 3, 0, F_ATT}, 0},
    {ATT, "attention B1 T70 C8 NH2", run_case, {1, 70, 8, 2, 0, F_ATT}, 0},
    {"attention_decode", "attention_decode T9 C12 NH3", run_case, {9, 12, 3, 0, 0, F_DEC}, 0},
    {"xent_fwd xent_bwd", "xent N7 V5 Vp8 (masked rows)", run_case, {7, 5, 8, 0, 0, F_XENT}, 0},
    {"xent_fwd_bwd", "xent_fwd_bwd N7 V5 Vp8 (in place, masked rows)", run_case, {7, 5, 8, 0, 0, F_XFB}, 0},
    {"matmul_gelu_fwd", "matmul_gelu_fwd N7 C5 OC6 IN_OUT bias (exact pre)", run_case, {7, 5, 6, BT_W_IN_OUT, 1, F_MMG}, 0},
    /* 64 x 600 outputs: the parallel rounding path (>= 32768 floats) */
    {"matmul_gelu_fwd", "matmul_gelu_fwd N64 C8 OC600 OUT_IN (exact pre)", run_case, {64, 8, 600, BT_W_OUT_IN, 0, F_MMG}, 0},
    {"residual_layernorm_fwd", "residual_layernorm_fwd N5 C70 (exact sums)", run_case, {5, 70, 0, 0, 0, F_RLN}, 0},
    {"adamw", "adamw n1001 (fp32 in both modes)", run_case, {1001, 0, 0, 0, 0, F_ADAM}, 0},
    {"sumsq scale", "sumsq, scale n40001 (fp32)", run_case, {40001, 0, 0, 0, 0, F_SUMSQ}, 0},
    {"sumsq_acc loss_sum_acc clip_grads", "step statistics n40001 (fp32)", run_case, {40001, 0, 0, 0, 0, F_STEP}, 0},
    {"to_act", "to_act n40001, and in place", run_case, {40001, 0, 0, 0, 0, F_TOACT}, 0},
    {"conv1d_fwd conv1d_bwd conv1d_scratch_size", "conv1d B2 T9 Cin3 Cout4 K3 S2 P1", run_case, {2, 9, 3, 4, 0, F_CONV}, 0},
    {"attention_masked_fwd attention_masked_bwd", "attention_masked B2 T7 C6 NH3 lengths 7,4", run_case, {2, 7, 6, 3, 0, F_MATT}, 0},
    {"attention_masked_fwd attention_masked_bwd", "attention_masked causal B2 T9 C8 NH2", run_case, {2, 9, 8, 2, 1, F_MATT}, 0},
    {"ctc_loss_fwd ctc_loss_bwd ctc_scratch_size", "ctc B2 T12 V6 L4", run_case, {12, 6, 4, 0, 0, F_CTC}, 0},
};
#define N_CASE ((int)(sizeof aCase / sizeof aCase[0]))

static void run_case(const int *a) {
  if (a[5] == F_ROUND) return test_round();
  if (a[5] == F_DTYPE) return test_set_dtype();
  check_pair(aCase[g_iCase].zLabel, aFn[a[5]], a, 100 + (uint64_t)g_iCase);
}

int main(int argc, char **argv) {
  OpcFilter filter = {{0}, 0};
  int bList = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-l") == 0) {
      bList = 1;
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      int rc = opc_filter_add(&filter, argv[++i], azTag, N_TAG,
                              "test_ops_bf16");
      if (rc) return rc;
    } else {
      fprintf(stderr, "usage: test_ops_bf16 [-l] [-o NAME]...\n");
      opc_print_names(stderr, azTag, N_TAG);
      return 2;
    }
  }
  if (bList) {
    opc_list(aCase, N_CASE);
    return 0;
  }
  /* Two CPU backends, the same thread count: the same instructions. */
  g_be16 = bt_backend_create(BT_BACKEND_CPU, 2, 0);
  g_be32 = bt_backend_create(BT_BACKEND_CPU, 2, 0);
  if (!g_be16 || !g_be32 ||
      bt_backend_set_act_dtype(g_be16, BT_ACT_BF16) != BT_OK) {
    fprintf(stderr, "test_ops_bf16: %s\n", bt_err_msg());
    return 1;
  }
  opc_check_table(aCase, N_CASE, azTag, N_TAG);
  int nRan = 0;
  for (int i = 0; i < N_CASE; i++) {
    if (!opc_selected(&filter, &aCase[i])) continue;
    printf("case %s [%s]\n", aCase[i].zLabel, aCase[i].zOps);
    g_iCase = i;
    aCase[i].xRun(aCase[i].a);
    nRan++;
  }
  opc_report(&filter, nRan, N_CASE);
  bt_backend_free(g_be16);
  bt_backend_free(g_be32);
  return CHECK_DONE();
}
