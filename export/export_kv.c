/*
 * export_kv.c: incremental GPT decoder with a key/value cache, used by
 * `baton infer` for generation.
 *
 * The training forward (model.c) recomputes every position of a T-token
 * window; generating n tokens that way costs O(n T) block evaluations.
 * Here each new token runs the blocks for ONE position and attends over
 * the cached keys and values of earlier positions, which is what makes
 * generation cost proportional to the tokens generated.
 *
 * Every step runs through the op interface (kernels/ops.h) on a CPU
 * backend the decoder owns: the ops of the full forward with N = 1 row
 * (embed_fwd, layernorm_fwd, matmul_fwd with its bias, gelu_fwd,
 * residual_fwd, and the tied lm_head as matmul_fwd in the OUT_IN layout),
 * plus attention_decode for the one new query against the cache. So the
 * decoder has no arithmetic of its own: layernorm, softmax and GELU are
 * the reference ops' code. The CPU backend's memory is host memory, so
 * the caller's host parameters are read in place, and the new position's
 * k and v are copied into the cache with bt_mem_from_host (a memmove on
 * this backend). The one-row products go through sgemm with M = 1, the
 * full forward's through sgemm over all rows, whose summation order
 * differs: tests/export/test_kvcache.c holds the logits to < 1e-4 of the
 * full forward at every position, not to bit equality.
 *
 * Invariants: after bt_kv_step at position p, cache rows [0, p] of every
 * layer hold that layer's k and v for the tokens fed so far; pos = p + 1.
 */
#include "base/util.h"
#include "export/export.h"
#include "kernels/ops.h"

#include <stdlib.h>
#include <string.h>

struct bt_kv_decoder {
  const bt_model *m;
  const float *P; /* host parameters, model layout */
  bt_backend *be; /* CPU backend owned by the decoder */
  int L, NH, C, T, V, pos;
  size_t firstTensor[1024 + 1];
  /* backend memory */
  float *k, *v;          /* [L, T, C] each */
  float *x, *x2;         /* residual stream, ping-pong: [C] each */
  float *ln, *qkv, *atty, *tmp; /* [C], [3C], [C], [C] */
  float *h, *hg;         /* MLP hidden before / after GELU: [4C] each */
  float *att;            /* attention_decode scratch: [NH, T] */
  float *logits;         /* [V] */
  int32_t *tok;          /* [1] */
};

int bt_kv_create(bt_kv_decoder **pp, const bt_model *m,
                 const float *hostParams) {
  *pp = NULL;
  if (m->eKind != BT_MODEL_GPT)
    return bt_err_set("the KV-cache decoder needs a GPT model");
  if (m->L > 1024)
    return bt_err_set("the KV-cache decoder supports at most 1024 layers, "
                      "the model has %d", m->L);
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
  d->be = bt_backend_create(BT_BACKEND_CPU, 0, 0);
  if (!d->be) {
    free(d);
    return BT_ERR;
  }
  bt_backend *be = d->be;
  size_t C = (size_t)m->C, cache = (size_t)m->L * m->T * C;
  d->k = bt_mem_alloc(be, cache, "kv cache (keys)");
  d->v = bt_mem_alloc(be, cache, "kv cache (values)");
  d->x = bt_mem_alloc(be, C, "kv x");
  d->x2 = bt_mem_alloc(be, C, "kv x");
  d->ln = bt_mem_alloc(be, C, "kv ln");
  d->qkv = bt_mem_alloc(be, 3 * C, "kv qkv");
  d->atty = bt_mem_alloc(be, C, "kv atty");
  d->tmp = bt_mem_alloc(be, C, "kv tmp");
  d->h = bt_mem_alloc(be, 4 * C, "kv mlp");
  d->hg = bt_mem_alloc(be, 4 * C, "kv mlp gelu");
  d->att = bt_mem_alloc(be, (size_t)m->NH * m->T, "kv attention scores");
  d->logits = bt_mem_alloc(be, (size_t)m->V, "kv logits");
  d->tok = bt_mem_alloc_i32(be, 1, "kv token");
  if (!d->k || !d->v || !d->x || !d->x2 || !d->ln || !d->qkv || !d->atty ||
      !d->tmp || !d->h || !d->hg || !d->att || !d->logits || !d->tok) {
    bt_kv_free(d);
    return BT_ERR;
  }
  *pp = d;
  return BT_OK;
}

void bt_kv_free(bt_kv_decoder *d) {
  if (!d) return;
  if (d->be) {
    float *a[] = {d->k,    d->v,   d->x,  d->x2, d->ln,  d->qkv,
                  d->atty, d->tmp, d->h,  d->hg, d->att, d->logits};
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) bt_mem_free(d->be, a[i]);
    bt_mem_free_i32(d->be, d->tok);
    bt_backend_free(d->be);
  }
  free(d);
}

void bt_kv_reset(bt_kv_decoder *d) { d->pos = 0; }
int bt_kv_pos(const bt_kv_decoder *d) { return d->pos; }

static const float *param(const bt_kv_decoder *d, size_t iTensor) {
  return d->P + d->m->aTensor[iTensor].offset;
}

int bt_kv_step(bt_kv_decoder *d, int token, float *logits) {
  bt_backend *be = d->be;
  const int C = d->C, p = d->pos;
  if (p >= d->T)
    return bt_err_set("context of %d tokens is full (the model was trained "
                      "with context %d)",
                      d->T, d->T);
  if (token < 0 || token >= d->V)
    return bt_err_set("token id %d is outside the vocabulary [0, %d)", token,
                      d->V);
  const float *wte = param(d, 0), *wpe = param(d, 1);
  int32_t tok = token;
  bt_mem_from_host_i32(be, d->tok, &tok, 1);
  /* x = wte[token] + wpe[p]: a batch of one position whose position table
   * starts at row p. */
  bt_op_embed_fwd(be, d->x, d->tok, wte, wpe + (size_t)p * C, 1, 1, C);
  for (int l = 0; l < d->L; l++) {
    size_t t0 = d->firstTensor[l];
    float *K = d->k + (size_t)l * d->T * C, *Vc = d->v + (size_t)l * d->T * C;
    bt_op_layernorm_fwd(be, d->ln, NULL, NULL, d->x, param(d, t0),
                        param(d, t0 + 1), 1, C);
    bt_op_matmul_fwd(be, d->qkv, d->ln, param(d, t0 + 2), param(d, t0 + 3), 1,
                     C, 3 * C, BT_W_IN_OUT);
    /* This position's k and v become cache row p (host memory: see the
     * file comment). */
    bt_mem_from_host(be, K + (size_t)p * C, d->qkv + C, (size_t)C);
    bt_mem_from_host(be, Vc + (size_t)p * C, d->qkv + 2 * (size_t)C,
                     (size_t)C);
    bt_op_attention_decode(be, d->atty, d->att, d->qkv, K, Vc, p + 1, C,
                           d->NH);
    bt_op_matmul_fwd(be, d->tmp, d->atty, param(d, t0 + 4), param(d, t0 + 5),
                     1, C, C, BT_W_IN_OUT);
    bt_op_residual_fwd(be, d->x2, d->x, d->tmp, (size_t)C);
    bt_op_layernorm_fwd(be, d->ln, NULL, NULL, d->x2, param(d, t0 + 6),
                        param(d, t0 + 7), 1, C);
    bt_op_matmul_fwd(be, d->h, d->ln, param(d, t0 + 8), param(d, t0 + 9), 1,
                     C, 4 * C, BT_W_IN_OUT);
    bt_op_gelu_fwd(be, d->hg, d->h, 4 * (size_t)C);
    bt_op_matmul_fwd(be, d->tmp, d->hg, param(d, t0 + 10), param(d, t0 + 11),
                     1, 4 * C, C, BT_W_IN_OUT);
    bt_op_residual_fwd(be, d->x, d->x2, d->tmp, (size_t)C);
  }
  size_t tf = d->firstTensor[d->L];
  bt_op_layernorm_fwd(be, d->ln, NULL, NULL, d->x, param(d, tf),
                      param(d, tf + 1), 1, C);
  /* Tied output: logits[V] = ln wte^T over wte's first V rows (the padded
   * rows are never read). */
  bt_op_matmul_fwd(be, d->logits, d->ln, wte, NULL, 1, C, d->V, BT_W_OUT_IN);
  bt_mem_to_host(be, logits, d->logits, (size_t)d->V);
  d->pos = p + 1;
  return BT_OK;
}
