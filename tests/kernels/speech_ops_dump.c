/*
 * speech_ops_dump.c: runs the speech ops (conv1d, attention_masked,
 * ctc_loss) forward and backward on the CPU backend from fixed random
 * inputs and writes inputs, outputs and gradients as raw float32 / int32
 * files for tests/kernels/speech_ops_torch.py, which recomputes them with
 * PyTorch (F.conv1d, a masked softmax attention, F.ctc_loss).
 *
 * usage: speech_ops_dump OUTDIR [cpu|cuda]
 */
#include "base/util.h"
#include "kernels/ops.h"

#include <stdlib.h>
#include <string.h>

static bt_backend *g_be;
static const char *g_zDir;
static int g_rc = 0;

static void dump(const char *zName, const void *p, size_t nByte) {
  char zPath[1024];
  bt_snprintf(zPath, sizeof zPath, "%s/%s", g_zDir, zName);
  if (bt_file_write_atomic(zPath, p, nByte)) g_rc = 1;
}

static float *rnd(size_t n, uint64_t salt, float lo, float hi) {
  float *x = malloc(n * sizeof(float));
  uint64_t key = bt_rng_key(31, 5, salt, 0);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(lo + (hi - lo) * bt_rng_uniform(key, i));
  return x;
}

static float *dev(const float *h, size_t n) {
  float *d = bt_mem_alloc(g_be, n, "dump");
  bt_mem_from_host(g_be, d, h, n);
  return d;
}

static int32_t *dev_i32(const int32_t *h, size_t n) {
  int32_t *d = bt_mem_alloc_i32(g_be, n, "dump");
  bt_mem_from_host_i32(g_be, d, h, n);
  return d;
}

/* Downloads device buffer d (n floats) into file zName. */
static void dump_dev(const char *zName, const float *d, size_t n) {
  float *h = malloc(n * sizeof(float));
  bt_backend_sync(g_be);
  bt_mem_to_host(g_be, h, d, n);
  dump(zName, h, n * sizeof(float));
  free(h);
}

/* conv1d: B 2, T 11, Cin 4 -> Cout 5, K 3, stride 2, pad 1. */
static void conv(void) {
  enum { B = 2, T = 11, CI = 4, CO = 5, K = 3, S = 2, P = 1 };
  const int To = (T + 2 * P - K) / S + 1;
  size_t nI = B * T * CI, nW = CO * CI * K, nO = (size_t)B * To * CO;
  float *x = rnd(nI, 1, -1, 1), *w = rnd(nW, 2, -1, 1), *b = rnd(CO, 3, -1, 1);
  float *r = rnd(nO, 4, -1, 1);
  float *dx = dev(x, nI), *dw = dev(w, nW), *db = dev(b, CO), *dr = dev(r, nO);
  float *out = bt_mem_alloc(g_be, nO, "out");
  float *gI = bt_mem_alloc(g_be, nI, "gi"), *gW = bt_mem_alloc(g_be, nW, "gw");
  float *gB = bt_mem_alloc(g_be, CO, "gb");
  float *scr = bt_mem_alloc(
      g_be, bt_op_conv1d_scratch_size(g_be, B, T, CI, CO, K, S, P), "scr");
  bt_op_conv1d_fwd(g_be, out, scr, dx, dw, db, B, T, CI, CO, K, S, P);
  bt_op_conv1d_bwd(g_be, gI, gW, gB, scr, dr, dx, dw, B, T, CI, CO, K, S, P);
  dump("conv_x.f32", x, nI * 4), dump("conv_w.f32", w, nW * 4);
  dump("conv_b.f32", b, CO * 4), dump("conv_r.f32", r, nO * 4);
  dump_dev("conv_out.f32", out, nO), dump_dev("conv_dx.f32", gI, nI);
  dump_dev("conv_dw.f32", gW, nW), dump_dev("conv_db.f32", gB, CO);
  float *a[] = {dx, dw, db, dr, out, gI, gW, gB, scr};
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) bt_mem_free(g_be, a[i]);
  free(x), free(w), free(b), free(r);
}

/* attention_masked: B 3, T 9, C 8, NH 2, keyLen 9 5 1; causal 0 and 1. */
static void attn(int causal) {
  enum { B = 3, T = 9, C = 8, NH = 2 };
  static const int32_t aLen[B] = {9, 5, 1};
  size_t nQ = (size_t)B * T * 3 * C, nO = (size_t)B * T * C;
  float *q = rnd(nQ, 10, -2, 2), *r = rnd(nO, 11, -1, 1);
  float *dq = dev(q, nQ), *dr = dev(r, nO);
  int32_t *dl = dev_i32(aLen, B);
  float *out = bt_mem_alloc(g_be, nO, "out"), *g = bt_mem_alloc(g_be, nQ, "g");
  float *att = bt_mem_alloc(g_be, bt_op_attention_att_size(g_be, B, T, NH), "a");
  float *scr =
      bt_mem_alloc(g_be, bt_op_attention_scratch_size(g_be, B, T, NH), "s");
  bt_op_attention_masked_fwd(g_be, out, att, dq, dl, causal, B, T, C, NH);
  bt_op_attention_masked_bwd(g_be, g, scr, dr, dq, out, att, dl, causal, B, T,
                             C, NH);
  char z[64];
  dump("att_qkv.f32", q, nQ * 4), dump("att_r.f32", r, nO * 4);
  dump("att_len.i32", aLen, sizeof aLen);
  bt_snprintf(z, sizeof z, "att%d_out.f32", causal);
  dump_dev(z, out, nO);
  bt_snprintf(z, sizeof z, "att%d_dqkv.f32", causal);
  dump_dev(z, g, nQ);
  float *a[] = {dq, dr, out, g, att, scr};
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) bt_mem_free(g_be, a[i]);
  bt_mem_free_i32(g_be, dl);
  free(q), free(r);
}

/* ctc_loss: B 4, T 12, V 6, L 4; utterance 3 is impossible (4 repeated
 * labels need 7 frames, it has 5). */
static void ctc(void) {
  enum { B = 4, T = 12, V = 6, L = 4 };
  static const int32_t aIn[B] = {12, 9, 7, 5}, aTl[B] = {4, 2, 0, 4};
  static const int32_t aTg[B * L] = {1, 2, 2, 5, 3, 4, -1, -1,
                                     -1, -1, -1, -1, 2, 2, 2, 2};
  size_t n = (size_t)B * T * V;
  float *x = rnd(n, 20, -3, 3), *r = rnd(B, 21, 0.5f, 1.5f);
  float *dx = dev(x, n), *dr = dev(r, B);
  int32_t *dIn = dev_i32(aIn, B), *dTl = dev_i32(aTl, B);
  int32_t *dTg = dev_i32(aTg, B * L);
  float *loss = bt_mem_alloc(g_be, B, "loss"), *g = bt_mem_alloc(g_be, n, "g");
  float *scr =
      bt_mem_alloc(g_be, bt_op_ctc_scratch_size(g_be, B, T, V, L), "s");
  bt_op_ctc_loss_fwd(g_be, loss, scr, dx, dIn, dTg, dTl, B, T, V, L);
  bt_op_ctc_loss_bwd(g_be, g, scr, dr, dIn, dTg, dTl, B, T, V, L);
  dump("ctc_x.f32", x, n * 4), dump("ctc_r.f32", r, B * 4);
  dump("ctc_in.i32", aIn, sizeof aIn), dump("ctc_tl.i32", aTl, sizeof aTl);
  dump("ctc_tg.i32", aTg, sizeof aTg);
  dump_dev("ctc_loss.f32", loss, B), dump_dev("ctc_dx.f32", g, n);
  float *a[] = {dx, dr, loss, g, scr};
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) bt_mem_free(g_be, a[i]);
  bt_mem_free_i32(g_be, dIn), bt_mem_free_i32(g_be, dTl);
  bt_mem_free_i32(g_be, dTg);
  free(x), free(r);
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: speech_ops_dump OUTDIR [cpu|cuda]\n");
    return 2;
  }
  g_zDir = argv[1];
  int bCuda = argc == 3 && !strcmp(argv[2], "cuda");
  g_be = bt_backend_create(bCuda ? BT_BACKEND_CUDA : BT_BACKEND_CPU, 1, 0);
  if (!g_be) {
    fprintf(stderr, "speech_ops_dump: %s\n", bt_err_msg());
    return bCuda ? 77 : 1;
  }
  conv();
  attn(0);
  attn(1);
  ctc();
  bt_backend_free(g_be);
  if (g_rc) fprintf(stderr, "speech_ops_dump: %s\n", bt_err_msg());
  return g_rc;
}
