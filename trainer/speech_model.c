/*
 * speech_model.c: the speech recogniser of speech_model.h, built from the
 * op interface and the transformer stack of model.c.
 *
 * Why it is written this way:
 *   - The encoder IS the GPT's block stack (bt_model_stack_fwd/bwd), so it
 *     owns only the front end, the head and the loss; its activations are
 *     the stack's (sized for T = the longest encoder sequence) plus the
 *     few front-end buffers below.
 *   - Masking by zeroing rows (bt_mem_zero on each utterance's padded
 *     tail) rather than a mask op: one contiguous range per utterance.
 *   - The CTC backward does not read the logits (the op keeps the
 *     log-probabilities in its scratch), so their buffer becomes dlogits.
 */
#include "base/util.h"
#include "trainer/speech_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RNG_PURPOSE_INIT 1 /* as model.c: one stream per tensor index */
#define CONV_K 3
#define CONV_S 2
#define CONV_P 1
#define T_CONV0 0 /* tensor indices: conv.0.weight, conv.0.bias, ... */
#define T_CONV1 2
#define T_STACK 4

typedef struct bt_speech_state {
  float *feats;          /* [maxB, maxFrames, nMel] */
  float *c0, *c0g;       /* conv.0 output before / after GELU [B, T1, Cc] */
  float *c1, *x;         /* conv.1 before GELU; encoder input [B, T2, C] */
  float *pe;             /* [T2max, C] positions */
  float *dC0, *dC0g, *dC1;
  float *convScratch, *ctcScratch, *losses, *dloss;
  int32_t *dLen2, *dLabels, *dLabelLen;
  int32_t *aLen1, *aLen2, *aLabelLen; /* host */
  float *hLoss, *hDloss;
  int T1max, Lmax;
  int B, T, T1, T2, L; /* the last forward */
} bt_speech_state;

#define P(i) (m->params + m->aTensor[i].offset)
#define G(i) (m->grads + m->aTensor[i].offset)

static int conv_len(int n) { return (n + 2 * CONV_P - CONV_K) / CONV_S + 1; }

/* ---- build ------------------------------------------------------------- */

static void set_conv_shape(bt_tensor *t, int Cout, int Cin) {
  t->ndim = 3;
  t->shape[0] = Cout;
  t->shape[1] = Cin;
  t->shape[2] = CONV_K;
}

int bt_speech_build(bt_model *m, const bt_config *c) {
  m->eKind = BT_MODEL_SPEECH;
  m->L = c->n_layer;
  m->NH = c->n_head;
  m->C = c->n_embd;
  m->V = m->Vp = c->vocab_size;
  m->nMel = c->n_mel;
  m->nConv = c->conv_channels;
  m->maxFrames = c->max_utt_frames;
  m->T = conv_len(conv_len(c->max_utt_frames));
  if (m->L > 1024) return bt_err_set("model.n_layer: at most 1024 layers");
  /* The conv and CTC ops are fp32 only, and this file addresses the
   * master weights (P above), not model.c's activation-typed working copy. */
  if (c->precision != BT_ACT_F32)
    return bt_err_set("train.precision = bf16: model.type = speech trains "
                      "in fp32 only for now (its convolution and CTC ops "
                      "have no bf16 mode); set train.precision = fp32");
  if (m->V < 2)
    return bt_err_set("model.vocab_size = %d: a speech model needs the CTC "
                      "blank and at least one character",
                      m->V);
  if (m->C % 2 || m->C < 4)
    return bt_err_set("model.n_embd = %d: the sinusoidal positions of a "
                      "speech model need an even width >= 4",
                      m->C);
  int cap = 4 + 12 * m->L + 2 + 2;
  m->aTensor = bt_calloc((size_t)cap, sizeof(bt_tensor), "tensor table");
  if (!m->aTensor) return BT_ERR;
  bt_model_tensor_add(m, cap, "conv.0.weight", 1, 2, m->nConv,
                      m->nMel * CONV_K);
  set_conv_shape(&m->aTensor[T_CONV0], m->nConv, m->nMel);
  bt_model_tensor_add(m, cap, "conv.0.bias", 0, 1, m->nConv, 0);
  bt_model_tensor_add(m, cap, "conv.1.weight", 1, 2, m->C, m->nConv * CONV_K);
  set_conv_shape(&m->aTensor[T_CONV1], m->C, m->nConv);
  bt_model_tensor_add(m, cap, "conv.1.bias", 0, 1, m->C, 0);
  bt_model_stack_tensors(m, cap);
  bt_model_tensor_add(m, cap, "head.weight", 1, 2, m->V, m->C);
  return bt_model_tensor_add(m, cap, "head.bias", 0, 1, m->V, 0);
}

/* Whisper's sinusoids: channel i < C/2 is sin(t * w_i), C/2 + i is
 * cos(t * w_i), w_i = exp(-i ln(10000) / (C/2 - 1)); computed in double. */
static int speech_positions(bt_model *m, bt_speech_state *s) {
  int T = m->T, C = m->C, h = C / 2;
  float *pe = bt_calloc((size_t)T * C, sizeof(float), "positions");
  if (!pe) return BT_ERR;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < h; i++) {
      double w = exp(-(double)i * log(10000.0) / (h - 1));
      pe[(size_t)t * C + i] = (float)sin(t * w);
      pe[(size_t)t * C + h + i] = (float)cos(t * w);
    }
  bt_mem_from_host(m->be, s->pe, pe, (size_t)T * C);
  free(pe);
  return BT_OK;
}

static float *s_alloc(bt_model *m, size_t n, const char *z, int *pRc) {
  if (*pRc != BT_OK) return NULL;
  float *p = bt_mem_alloc(m->be, n ? n : 1, z);
  if (!p) *pRc = BT_ERR;
  return p;
}

static size_t conv_scratch(bt_model *m, int B, int T1max) {
  size_t a = bt_op_conv1d_scratch_size(m->be, B, m->maxFrames, m->nMel,
                                       m->nConv, CONV_K, CONV_S, CONV_P);
  size_t b = bt_op_conv1d_scratch_size(m->be, B, T1max, m->nConv, m->C,
                                       CONV_K, CONV_S, CONV_P);
  return a > b ? a : b;
}

int bt_speech_alloc(bt_model *m) {
  int rc = bt_model_stack_alloc(m);
  if (rc != BT_OK) return rc;
  bt_speech_state *s = bt_calloc(1, sizeof *s, "speech state");
  if (!s) return BT_ERR;
  m->pSpeech = s;
  size_t B = (size_t)m->maxB, T2 = (size_t)m->T;
  s->T1max = conv_len(m->maxFrames);
  s->Lmax = m->T; /* more labels than frames can never be aligned */
  size_t n1 = B * s->T1max * m->nConv, n2 = B * T2 * m->C;
  s->feats = s_alloc(m, B * m->maxFrames * m->nMel, "features", &rc);
  s->c0 = s_alloc(m, n1, "conv.0 out", &rc);
  s->c0g = s_alloc(m, n1, "conv.0 gelu", &rc);
  s->dC0 = s_alloc(m, n1, "d conv.0", &rc);
  s->dC0g = s_alloc(m, n1, "d conv.0 gelu", &rc);
  s->c1 = s_alloc(m, n2, "conv.1 out", &rc);
  s->x = s_alloc(m, n2, "encoder input", &rc);
  s->dC1 = s_alloc(m, n2, "d conv.1", &rc);
  s->pe = s_alloc(m, T2 * m->C, "positions", &rc);
  s->convScratch = s_alloc(m, conv_scratch(m, m->maxB, s->T1max), "conv "
                           "scratch", &rc);
  s->ctcScratch = s_alloc(
      m, bt_op_ctc_scratch_size(m->be, m->maxB, m->T, m->V, s->Lmax),
      "CTC scratch", &rc);
  s->losses = s_alloc(m, B, "losses", &rc);
  s->dloss = s_alloc(m, B, "dloss", &rc);
  if (rc != BT_OK) return rc;
  s->dLen2 = bt_mem_alloc_i32(m->be, B, "frame lengths");
  s->dLabels = bt_mem_alloc_i32(m->be, B * s->Lmax, "labels");
  s->dLabelLen = bt_mem_alloc_i32(m->be, B, "label lengths");
  s->aLen1 = bt_calloc(B, sizeof(int32_t), "lengths");
  s->aLen2 = bt_calloc(B, sizeof(int32_t), "lengths");
  s->aLabelLen = bt_calloc(B, sizeof(int32_t), "lengths");
  s->hLoss = bt_calloc(B, sizeof(float), "losses");
  s->hDloss = bt_calloc(B, sizeof(float), "dloss");
  if (!s->dLen2 || !s->dLabels || !s->dLabelLen || !s->aLen1 || !s->aLen2 ||
      !s->aLabelLen || !s->hLoss || !s->hDloss)
    return BT_ERR;
  return speech_positions(m, s);
}

void bt_speech_free(bt_model *m) {
  bt_speech_state *s = m->pSpeech;
  if (!s) return;
  float *apF[] = {s->feats, s->c0, s->c0g, s->c1, s->x, s->pe, s->dC0,
                  s->dC0g, s->dC1, s->convScratch, s->ctcScratch, s->losses,
                  s->dloss};
  for (size_t i = 0; i < sizeof apF / sizeof apF[0]; i++)
    bt_mem_free(m->be, apF[i]);
  bt_mem_free_i32(m->be, s->dLen2);
  bt_mem_free_i32(m->be, s->dLabels);
  bt_mem_free_i32(m->be, s->dLabelLen);
  free(s->aLen1);
  free(s->aLen2);
  free(s->aLabelLen);
  free(s->hLoss);
  free(s->hDloss);
  free(s);
  m->pSpeech = NULL;
}

/* Layer norms 1, biases 0; convolutions N(0, 1/fan_in) (fan_in = Cin K);
 * the stack's and the head's matrices N(0, 0.02), residual projections
 * scaled by 1/sqrt(2L) as GPT-2. */
int bt_speech_init_weights(bt_model *m, uint64_t seed) {
  float *h = bt_calloc(m->nFlat, sizeof(float), "initial weights");
  if (!h) return BT_ERR;
  for (int i = 0; i < m->nTensor; i++) {
    const bt_tensor *t = &m->aTensor[i];
    float *p = h + t->offset;
    uint64_t key = bt_rng_key(seed, RNG_PURPOSE_INIT, (uint64_t)i, 0);
    const char *zLeaf = strrchr(t->zName, '.');
    if (zLeaf && !strcmp(zLeaf, ".bias")) continue;
    double std = 0.02;
    if (strstr(t->zName, "ln_")) {
      for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
      continue;
    }
    if (t->ndim == 3) std = 1.0 / sqrt((double)t->shape[1] * t->shape[2]);
    if (strstr(t->zName, "c_proj.weight")) std /= sqrt(2.0 * m->L);
    for (size_t j = 0; j < t->numel; j++)
      p[j] = (float)(std * bt_rng_normal(key, j));
  }
  bt_mem_from_host(m->be, m->params, h, m->nFlat);
  free(h);
  return BT_OK;
}

/* ---- forward ----------------------------------------------------------- */

static int speech_check(const bt_model *m, const bt_speech_batch *pb) {
  const bt_speech_state *s = m->pSpeech;
  if (pb->B < 1 || pb->B > m->maxB)
    return bt_err_set("speech batch of %d utterances (model sized for %d)",
                      pb->B, m->maxB);
  if (pb->nMel != m->nMel)
    return bt_err_set("speech batch has %d mel bins per frame, "
                      "model.n_mel = %d",
                      pb->nMel, m->nMel);
  if (pb->T > m->maxFrames)
    return bt_err_set("speech batch padded to %d frames: above "
                      "model.max_utterance_frames = %d",
                      pb->T, m->maxFrames);
  for (int b = 0; b < pb->B; b++) {
    long long idx = pb->aIndex ? (long long)pb->aIndex[b] : b;
    if (pb->aFrames[b] < 1 || pb->aFrames[b] > pb->T)
      return bt_err_set("utterance %lld: %d frames, outside 1..%d", idx,
                        pb->aFrames[b], pb->T);
    if (pb->aLabelLen[b] < 0 || pb->aLabelLen[b] > pb->L ||
        pb->aLabelLen[b] > s->Lmax)
      return bt_err_set("utterance %lld: %d labels (batch L %d, at most %d "
                        "for model.max_utterance_frames)",
                        idx, pb->aLabelLen[b], pb->L, s->Lmax);
    for (int j = 0; j < pb->aLabelLen[b]; j++) {
      int32_t y = pb->labels[(size_t)b * pb->L + j];
      if (y < 1 || y >= m->V)
        return bt_err_set("utterance %lld: label %d at position %d is "
                          "outside 1..%d (0 is the CTC blank)",
                          idx, y, j, m->V - 1);
    }
  }
  return BT_OK;
}

/* Zeroes rows t >= aLen[b] of x[B, T, C]. */
static void zero_tail(bt_model *m, float *x, const int32_t *aLen, int B,
                      int T, int C) {
  for (int b = 0; b < B; b++)
    if (aLen[b] < T)
      bt_mem_zero(m->be, x + ((size_t)b * T + aLen[b]) * C,
                  (size_t)(T - aLen[b]) * C);
}

/* Front end: feats -> conv.0 -> GELU -> mask -> conv.1 -> GELU -> + pe. */
static void speech_front_fwd(bt_model *m, bt_speech_state *s) {
  bt_backend *be = m->be;
  int B = s->B, Cc = m->nConv, C = m->C;
  bt_op_conv1d_fwd(be, s->c0, s->convScratch, s->feats, P(T_CONV0),
                   P(T_CONV0 + 1), B, s->T, m->nMel, Cc, CONV_K, CONV_S,
                   CONV_P);
  bt_op_gelu_fwd(be, s->c0g, s->c0, (size_t)B * s->T1 * Cc);
  zero_tail(m, s->c0g, s->aLen1, B, s->T1, Cc);
  bt_op_conv1d_fwd(be, s->c1, s->convScratch, s->c0g, P(T_CONV1),
                   P(T_CONV1 + 1), B, s->T1, Cc, C, CONV_K, CONV_S, CONV_P);
  bt_op_gelu_fwd(be, s->x, s->c1, (size_t)B * s->T2 * C);
  for (int b = 0; b < B; b++) {
    float *xb = s->x + (size_t)b * s->T2 * C;
    bt_op_residual_fwd(be, xb, xb, s->pe, (size_t)s->T2 * C);
  }
}

static void speech_upload(bt_model *m, bt_speech_state *s,
                          const bt_speech_batch *pb) {
  s->B = pb->B, s->T = pb->T, s->L = pb->L;
  s->T1 = conv_len(s->T), s->T2 = conv_len(s->T1);
  for (int b = 0; b < pb->B; b++) {
    s->aLen1[b] = conv_len(pb->aFrames[b]);
    s->aLen2[b] = conv_len(s->aLen1[b]);
    s->aLabelLen[b] = pb->aLabelLen[b];
  }
  bt_mem_from_host(m->be, s->feats, pb->feats,
                   (size_t)pb->B * pb->T * pb->nMel);
  bt_mem_from_host_i32(m->be, s->dLen2, s->aLen2, (size_t)pb->B);
  bt_mem_from_host_i32(m->be, s->dLabelLen, s->aLabelLen, (size_t)pb->B);
  if (pb->L > 0)
    bt_mem_from_host_i32(m->be, s->dLabels, pb->labels,
                         (size_t)pb->B * pb->L);
}

int bt_speech_forward(bt_model *m, const bt_speech_batch *pb,
                      double *pLossSum, int64_t *pnCount) {
  bt_speech_state *s = m->pSpeech;
  BT_ASSERT(m->eKind == BT_MODEL_SPEECH && s);
  if (speech_check(m, pb) != BT_OK) return BT_ERR;
  speech_upload(m, s, pb);
  m->curB = pb->B;
  speech_front_fwd(m, s);
  int N = s->B * s->T2;
  const float *lnf = bt_model_stack_fwd(m, s->x, s->B, s->T2, s->dLen2, 0);
  float *logits = bt_model_stack_logits(m);
  int th = m->nTensor - 2;
  bt_op_matmul_fwd(m->be, logits, lnf, P(th), P(th + 1), N, m->C, m->V,
                   BT_W_OUT_IN);
  bt_op_ctc_loss_fwd(m->be, s->losses, s->ctcScratch, logits, s->dLen2,
                     s->dLabels, s->dLabelLen, s->B, s->T2, m->V, s->L);
  bt_mem_to_host(m->be, s->hLoss, s->losses, (size_t)s->B);
  double sum = 0.0;
  for (int b = 0; b < s->B; b++)
    sum += (double)s->hLoss[b] / (s->aLabelLen[b] > 0 ? s->aLabelLen[b] : 1);
  if (pLossSum) *pLossSum = sum;
  if (pnCount) *pnCount = s->B;
  return BT_OK;
}

/* ---- backward ---------------------------------------------------------- */

static void ready(bt_grad_ready_fn fn, void *ctx, size_t lo) {
  if (fn) fn(ctx, lo);
}

/* d(encoder input) -> front end -> conv weights. */
static void speech_front_bwd(bt_model *m, bt_speech_state *s, const float *dx,
                             bt_grad_ready_fn fn, void *ctx) {
  bt_backend *be = m->be;
  int B = s->B, Cc = m->nConv, C = m->C;
  size_t n1 = (size_t)B * s->T1 * Cc, n2 = (size_t)B * s->T2 * C;
  bt_mem_zero(be, s->dC1, n2);
  bt_op_gelu_bwd(be, s->dC1, s->c1, dx, n2);
  bt_mem_zero(be, s->dC0g, n1);
  bt_op_conv1d_bwd(be, s->dC0g, G(T_CONV1), G(T_CONV1 + 1), s->convScratch,
                   s->dC1, s->c0g, P(T_CONV1), B, s->T1, Cc, C, CONV_K,
                   CONV_S, CONV_P);
  ready(fn, ctx, m->aTensor[T_CONV1].offset);
  zero_tail(m, s->dC0g, s->aLen1, B, s->T1, Cc); /* masked in the forward */
  bt_mem_zero(be, s->dC0, n1);
  bt_op_gelu_bwd(be, s->dC0, s->c0, s->dC0g, n1);
  bt_op_conv1d_bwd(be, NULL, G(T_CONV0), G(T_CONV0 + 1), s->convScratch,
                   s->dC0, s->feats, P(T_CONV0), B, s->T, m->nMel, Cc,
                   CONV_K, CONV_S, CONV_P);
  ready(fn, ctx, 0);
}

void bt_speech_backward(bt_model *m, float scale, bt_grad_ready_fn fn,
                        void *ctx) {
  bt_speech_state *s = m->pSpeech;
  bt_backend *be = m->be;
  int N = s->B * s->T2, th = m->nTensor - 2;
  for (int b = 0; b < s->B; b++)
    s->hDloss[b] = scale / (float)(s->aLabelLen[b] > 0 ? s->aLabelLen[b] : 1);
  bt_mem_from_host(be, s->dloss, s->hDloss, (size_t)s->B);
  /* the CTC backward reads its scratch, not the logits: reuse them */
  float *dlogits = bt_model_stack_logits(m);
  bt_mem_zero(be, dlogits, (size_t)N * m->V);
  bt_op_ctc_loss_bwd(be, dlogits, s->ctcScratch, s->dloss, s->dLen2,
                     s->dLabels, s->dLabelLen, s->B, s->T2, m->V, s->L);
  float *dlnf = bt_model_stack_dbuf(m);
  bt_mem_zero(be, dlnf, (size_t)N * m->C);
  bt_op_matmul_bwd(be, dlnf, G(th), G(th + 1), dlogits,
                   bt_model_stack_lnf(m), P(th), N, m->C, m->V, BT_W_OUT_IN);
  ready(fn, ctx, m->aTensor[th].offset);
  const float *dx =
      bt_model_stack_bwd(m, s->x, s->B, s->T2, s->dLen2, 0, fn, ctx);
  speech_front_bwd(m, s, dx, fn, ctx);
}

int bt_speech_frames(const bt_model *m, const int32_t **paLen) {
  const bt_speech_state *s = m->pSpeech;
  if (paLen) *paLen = s->aLen2;
  return s->T2;
}
