/*
 * export_kv.c: incremental GPT decoder with a key/value cache (CPU, host
 * memory), used by `baton infer` for generation.
 *
 * The training forward (model.c) recomputes every position of a T-token
 * window; generating n tokens that way costs O(n T) block evaluations.
 * Here each new token runs the blocks for ONE position and attends over
 * the cached keys and values of earlier positions, which is what makes
 * generation cost proportional to the tokens generated.
 *
 * Numerics follow the CPU reference ops so the logits agree with a full
 * forward to ~1e-6 (tests/export/test_kvcache.c holds it to < 1e-4 at
 * every position): layernorm statistics in double with the two-pass
 * variance, softmax with the max subtracted and the sum in double, GELU
 * with tanhf. Matrix-vector products go through OpenBLAS sgemv, whose
 * summation order differs from the sgemm of the full forward, hence the
 * small tolerance instead of bit equality.
 *
 * Invariants: after bt_kv_step at position p, cache rows [0, p] of every
 * layer hold that layer's k and v for the tokens fed so far; pos = p + 1.
 */
#include "base/util.h"
#include "export/export.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bt_kv_decoder {
  const bt_model *m;
  const float *P; /* host parameters, model layout */
  int L, NH, C, T, V, pos;
  size_t firstTensor[1024 + 1];
  float *k, *v;   /* [L, T, C] each */
  float *x, *ln, *qkv, *atty, *tmp, *h, *att;
};

#define KV_LN_EPS 1e-5
#define KV_GELU_S 0.7978845608028654f
#define KV_GELU_K 0.044715f

int bt_kv_create(bt_kv_decoder **pp, const bt_model *m,
                 const float *hostParams) {
  *pp = NULL;
  if (m->eKind != BT_MODEL_GPT)
    return bt_err_set("the KV-cache decoder needs a GPT model");
  bt_kv_decoder *d = bt_calloc(1, sizeof *d, "kv decoder");
  if (!d) return BT_ERR;
  d->m = m;
  d->P = hostParams;
  d->L = m->L;
  d->NH = m->NH;
  d->C = m->C;
  d->T = m->T;
  d->V = m->V;
  /* Tensor order per block is fixed by model.c (ln_1 w,b; c_attn w,b;
   * c_proj w,b; ln_2 w,b; c_fc w,b; c_proj w,b): 12 per layer after wte,
   * wpe. Look the names up rather than trusting the arithmetic. */
  for (int l = 0; l < m->L; l++) {
    char z[BT_TENSOR_NAME_MAX];
    bt_snprintf(z, sizeof z, "h.%d.ln_1.weight", l);
    const bt_tensor *t = bt_model_find(m, z);
    if (!t) {
      free(d);
      return bt_err_set("internal: tensor %s not found", z);
    }
    d->firstTensor[l] = (size_t)(t - m->aTensor);
  }
  const bt_tensor *tf = bt_model_find(m, "ln_f.weight");
  BT_ASSERT(tf);
  d->firstTensor[m->L] = (size_t)(tf - m->aTensor);
  size_t C = (size_t)m->C, cache = (size_t)m->L * m->T * C;
  d->k = bt_malloc(cache * sizeof(float), "kv cache (keys)");
  d->v = bt_malloc(cache * sizeof(float), "kv cache (values)");
  d->x = bt_malloc(C * sizeof(float), "kv x");
  d->ln = bt_malloc(C * sizeof(float), "kv ln");
  d->qkv = bt_malloc(3 * C * sizeof(float), "kv qkv");
  d->atty = bt_malloc(C * sizeof(float), "kv atty");
  d->tmp = bt_malloc(C * sizeof(float), "kv tmp");
  d->h = bt_malloc(4 * C * sizeof(float), "kv mlp");
  d->att = bt_malloc((size_t)m->T * sizeof(float), "kv att");
  if (!d->k || !d->v || !d->x || !d->ln || !d->qkv || !d->atty || !d->tmp ||
      !d->h || !d->att) {
    bt_kv_free(d);
    return BT_ERR;
  }
  *pp = d;
  return BT_OK;
}

void bt_kv_free(bt_kv_decoder *d) {
  if (!d) return;
  free(d->k);
  free(d->v);
  free(d->x);
  free(d->ln);
  free(d->qkv);
  free(d->atty);
  free(d->tmp);
  free(d->h);
  free(d->att);
  free(d);
}

void bt_kv_reset(bt_kv_decoder *d) { d->pos = 0; }
int bt_kv_pos(const bt_kv_decoder *d) { return d->pos; }

static const float *param(const bt_kv_decoder *d, size_t iTensor) {
  return d->P + d->m->aTensor[iTensor].offset;
}

/* Same arithmetic as bt_cpu_layernorm_fwd for one row. */
static void layernorm(float *o, const float *x, const float *w,
                      const float *b, int C) {
  double s = 0.0;
  for (int c = 0; c < C; c++) s += x[c];
  double mean = s / C, var = 0.0;
  for (int c = 0; c < C; c++) {
    double dd = x[c] - mean;
    var += dd * dd;
  }
  double rs = 1.0 / sqrt(var / C + KV_LN_EPS);
  for (int c = 0; c < C; c++) o[c] = (float)((x[c] - mean) * rs) * w[c] + b[c];
}

/* y[OC] = x[C] W[C, OC] + b (Conv1D layout). */
static void linear(float *y, const float *x, const float *W, const float *b,
                   int C, int OC) {
  memcpy(y, b, (size_t)OC * sizeof(float));
  cblas_sgemv(CblasRowMajor, CblasTrans, C, OC, 1.0f, W, OC, x, 1, 1.0f, y, 1);
}

int bt_kv_step(bt_kv_decoder *d, int token, float *logits) {
  const int C = d->C, NH = d->NH, hs = C / NH, p = d->pos;
  if (p >= d->T)
    return bt_err_set("context of %d tokens is full (the model was trained "
                      "with context %d)",
                      d->T, d->T);
  if (token < 0 || token >= d->V)
    return bt_err_set("token id %d is outside the vocabulary [0, %d)", token,
                      d->V);
  const float *wte = d->P + d->m->aTensor[0].offset;
  const float *wpe = d->P + d->m->aTensor[1].offset;
  for (int c = 0; c < C; c++)
    d->x[c] = wte[(size_t)token * C + c] + wpe[(size_t)p * C + c];
  const float scale = 1.0f / sqrtf((float)hs);
  for (int l = 0; l < d->L; l++) {
    size_t t0 = d->firstTensor[l];
    float *K = d->k + (size_t)l * d->T * C, *Vc = d->v + (size_t)l * d->T * C;
    layernorm(d->ln, d->x, param(d, t0), param(d, t0 + 1), C);
    linear(d->qkv, d->ln, param(d, t0 + 2), param(d, t0 + 3), C, 3 * C);
    memcpy(K + (size_t)p * C, d->qkv + C, (size_t)C * sizeof(float));
    memcpy(Vc + (size_t)p * C, d->qkv + 2 * C, (size_t)C * sizeof(float));
    for (int h = 0; h < NH; h++) {
      const float *q = d->qkv + (size_t)h * hs;
      float mx = -INFINITY;
      for (int t2 = 0; t2 <= p; t2++) {
        const float *k = K + (size_t)t2 * C + (size_t)h * hs;
        float dot = 0.0f;
        for (int i = 0; i < hs; i++) dot += q[i] * k[i];
        dot *= scale;
        d->att[t2] = dot;
        mx = dot > mx ? dot : mx;
      }
      double sum = 0.0;
      for (int t2 = 0; t2 <= p; t2++) {
        float e = expf(d->att[t2] - mx);
        d->att[t2] = e;
        sum += e;
      }
      float inv = (float)(1.0 / sum);
      float *o = d->atty + (size_t)h * hs;
      for (int i = 0; i < hs; i++) o[i] = 0.0f;
      for (int t2 = 0; t2 <= p; t2++) {
        const float *v = Vc + (size_t)t2 * C + (size_t)h * hs;
        float a = d->att[t2] * inv;
        for (int i = 0; i < hs; i++) o[i] += a * v[i];
      }
    }
    linear(d->tmp, d->atty, param(d, t0 + 4), param(d, t0 + 5), C, C);
    for (int c = 0; c < C; c++) d->x[c] += d->tmp[c];
    layernorm(d->ln, d->x, param(d, t0 + 6), param(d, t0 + 7), C);
    linear(d->h, d->ln, param(d, t0 + 8), param(d, t0 + 9), C, 4 * C);
    for (int i = 0; i < 4 * C; i++) {
      float x = d->h[i];
      float u = KV_GELU_S * (x + KV_GELU_K * x * x * x);
      d->h[i] = 0.5f * x * (1.0f + tanhf(u));
    }
    linear(d->tmp, d->h, param(d, t0 + 10), param(d, t0 + 11), 4 * C, C);
    for (int c = 0; c < C; c++) d->x[c] += d->tmp[c];
  }
  size_t tf = d->firstTensor[d->L];
  layernorm(d->ln, d->x, param(d, tf), param(d, tf + 1), C);
  /* tied output: logits[V] = wte[V, C] ln (padded rows skipped) */
  cblas_sgemv(CblasRowMajor, CblasNoTrans, d->V, C, 1.0f, wte, C, d->ln, 1,
              0.0f, logits, 1);
  d->pos = p + 1;
  return BT_OK;
}
