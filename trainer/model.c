/*
 * model.c: GPT-2 and MLP built from the op interface (see model.h).
 *
 * The forward keeps every activation the backward needs (no recompute);
 * the backward walks blocks in reverse, reusing a handful of gradient
 * buffers, and reports finished gradient ranges through the hook.
 *
 * Precision (train.precision, docs/design.md "Precision"): every buffer
 * is either activation-typed (kernels/ops.def [act]: activations, their
 * gradients, logits, the weights' working copy `work`) or fp32 (master
 * params, grads, layernorm mean/rstd, attention statistics, losses).
 * Activation-typed buffers are allocated with bt_mem_alloc_act and sliced
 * with AT() (bt_act_at: offsets in the backend's activation element size),
 * fp32 ones with plain float arithmetic, so the same code is right when a
 * backend stores bf16 in 2 bytes. Invariant: between steps, work ==
 * to_act(params) (bt_model_refresh_work after every write of params).
 *
 * The transformer stack (L pre-LN blocks + ln_f, the GPT-2 tensors
 * h.N.* and ln_f.*) is one code path shared by the GPT decoder and the
 * speech encoder (speech_model.c): bt_model_stack_fwd/bwd. The GPT calls
 * it with causal = 1 and no key lengths, which runs attention_fwd/bwd,
 * exactly the ops and order it ran before the stack was shared, so its
 * numbers are bit-identical; the encoder passes its frame lengths and
 * causal = 0 (attention_masked_fwd/bwd).
 *
 * Fusions (issue 12 item 3; docs/gpu.md "Fused kernels"): the stack
 * fuses each residual add with the layernorm that reads it
 * (residual_layernorm_fwd), and the GPT's classifier and cross-entropy
 * run in chunks of rows ("GPT loss in chunks" below), so that only one
 * chunk's logits exist. Both keep the CPU reference's bits (one chunk:
 * all of them; several: all but wte's gradient).
 */
#include "base/util.h"
#include "trainer/model.h"
#include "trainer/speech_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RNG_PURPOSE_INIT 1

struct bt_model_acts {
  /* The batch in backend memory: the buffers of the current forward, one
   * of each pair below (batch_buffers_next), and host copies. */
  int32_t *inputs, *targets;
  int32_t *hostTargets;
  float *hostLosses;
  float *x;   /* MLP inputs [act] */
  float *xIn; /* MLP inputs as fp32, staged for to_act (bf16 mode only) */
  /* Two of each uploaded buffer, taken in turn by successive forwards, so
   * that the upload of micro-step k+1's batch waits only for micro-step
   * k-1's backward (bt_backend_upload_release), not for micro-step k's
   * (issue 12 item 4). A backward always follows its own forward (the
   * activations are single), so it reads its forward's pair member.
   * aX[1] is NULL in bf16 mode: there x is written by to_act on the
   * compute stream, not uploaded, and the pair is aXIn. */
  int32_t *aInputs[2], *aTargets[2];
  float *aX[2], *aXIn[2];
  int iBuf; /* pair member of the current forward */
  /* GPT: per-layer activations, each kind one allocation of L slices */
  float *encoded;
  float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *attproj, *res2;
  float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *fcproj, *res3;
  float *lnf, *lnf_mean, *lnf_rstd, *logits, *losses;
  size_t attPerLayer;
  /* GPT loss in chunks (see "loss" below): logits holds logitsRows rows
   * [., Vp]; the loss loops take chunkRows rows at a time. bLossBwd: the
   * last forward (bt_model_forward_train) already ran the loss's backward
   * through the classifier with scale lossScale. */
  int logitsRows, chunkRows, bLossBwd;
  float lossScale;
  /* GPT gradient scratch */
  float *dres, *dbuf, *dqkv, *dfch, *dfch_gelu, *attScratch;
  /* MLP: pre[l] and act[l] per layer, two gradient buffers */
  float *aPre[16], *aAct[16];
  float *dA, *dP;
  int firstTensorOfLayer[1024 + 1];
};

/* ---- parameter table -------------------------------------------------- */

int bt_model_tensor_add(bt_model *m, int cap, const char *zName, int decay,
                        int ndim, int d0, int d1) {
  if (m->nTensor >= cap) return bt_err_set("internal: too many tensors");
  bt_tensor *t = &m->aTensor[m->nTensor++];
  bt_snprintf(t->zName, sizeof t->zName, "%s", zName);
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = ndim > 1 ? d1 : 1;
  t->numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
  t->offset = m->nParam;
  t->decay = decay;
  m->nParam += t->numel;
  return BT_OK;
}

#define tensor_add bt_model_tensor_add

static int gpt_tensors(bt_model *m) {
  int C = m->C, cap = 2 + 12 * m->L + 2;
  m->aTensor = bt_calloc((size_t)cap, sizeof(bt_tensor), "tensor table");
  if (!m->aTensor) return BT_ERR;
  tensor_add(m, cap, "wte.weight", 1, 2, m->Vp, C);
  tensor_add(m, cap, "wpe.weight", 1, 2, m->T, C);
  return bt_model_stack_tensors(m, cap);
}

int bt_model_stack_tensors(bt_model *m, int cap) {
  int C = m->C;
  char z[BT_TENSOR_NAME_MAX];
  for (int l = 0; l < m->L; l++) {
    m->pActs->firstTensorOfLayer[l] = m->nTensor;
#define ADD(suffix, decay, nd, a, b)                                           \
  bt_snprintf(z, sizeof z, "h.%d.%s", l, suffix);                              \
  tensor_add(m, cap, z, decay, nd, a, b)
    ADD("ln_1.weight", 0, 1, C, 0);
    ADD("ln_1.bias", 0, 1, C, 0);
    ADD("attn.c_attn.weight", 1, 2, C, 3 * C);
    ADD("attn.c_attn.bias", 0, 1, 3 * C, 0);
    ADD("attn.c_proj.weight", 1, 2, C, C);
    ADD("attn.c_proj.bias", 0, 1, C, 0);
    ADD("ln_2.weight", 0, 1, C, 0);
    ADD("ln_2.bias", 0, 1, C, 0);
    ADD("mlp.c_fc.weight", 1, 2, C, 4 * C);
    ADD("mlp.c_fc.bias", 0, 1, 4 * C, 0);
    ADD("mlp.c_proj.weight", 1, 2, 4 * C, C);
    ADD("mlp.c_proj.bias", 0, 1, C, 0);
#undef ADD
  }
  m->pActs->firstTensorOfLayer[m->L] = m->nTensor;
  tensor_add(m, cap, "ln_f.weight", 0, 1, C, 0);
  return tensor_add(m, cap, "ln_f.bias", 0, 1, C, 0);
}

static int mlp_tensors(bt_model *m) {
  int cap = 2 * m->nLayer;
  m->aTensor = bt_calloc((size_t)cap, sizeof(bt_tensor), "tensor table");
  if (!m->aTensor) return BT_ERR;
  char z[BT_TENSOR_NAME_MAX];
  for (int l = 0; l < m->nLayer; l++) {
    m->pActs->firstTensorOfLayer[l] = m->nTensor;
    bt_snprintf(z, sizeof z, "layers.%d.weight", l);
    tensor_add(m, cap, z, 1, 2, m->aWidth[l + 1], m->aWidth[l]);
    bt_snprintf(z, sizeof z, "layers.%d.bias", l);
    tensor_add(m, cap, z, 0, 1, m->aWidth[l + 1], 0);
  }
  m->pActs->firstTensorOfLayer[m->nLayer] = m->nTensor;
  return BT_OK;
}

const bt_tensor *bt_model_find(const bt_model *m, const char *zName) {
  for (int i = 0; i < m->nTensor; i++)
    if (!strcmp(m->aTensor[i].zName, zName)) return &m->aTensor[i];
  return NULL;
}

/* Slice of an activation-typed buffer (see the file comment). */
#define AT(p, n) bt_act_at(m->be, (p), (n))
/* Weight (working copy, [act]) / gradient (fp32) pointer of tensor i. */
#define P(i) AT(m->work, m->aTensor[i].offset)
#define G(i) (m->grads + m->aTensor[i].offset)

/* ---- build ------------------------------------------------------------ */

/* An activation-typed buffer of n elements ([act] in kernels/ops.def). */
static float *act_alloc(bt_model *m, size_t n, const char *zWhat, int *pRc) {
  if (*pRc != BT_OK) return NULL;
  float *p = bt_mem_alloc_act(m->be, n, zWhat);
  if (!p) *pRc = BT_ERR;
  return p;
}

/* An fp32 buffer of n floats, whatever the precision. */
static float *f32_alloc(bt_model *m, size_t n, const char *zWhat, int *pRc) {
  if (*pRc != BT_OK) return NULL;
  float *p = bt_mem_alloc(m->be, n, zWhat);
  if (!p) *pRc = BT_ERR;
  return p;
}

/* ---- batch buffers ----------------------------------------------------
 * Pair member i becomes the current batch buffers (a->inputs, a->targets,
 * a->x, a->xIn); members that do not exist (the GPT's x, the MLP's
 * inputs, fp32's xIn) stay NULL, bf16's single x stays. */
static void batch_buffers_select(bt_model_acts *a, int i) {
  a->iBuf = i;
  a->inputs = a->aInputs[i];
  a->targets = a->aTargets[i];
  a->x = a->aX[a->aX[1] ? i : 0];
  a->xIn = a->aXIn[i];
}

/* Each forward takes the other member of each pair: its upload then
 * waits only for the backward two forwards ago (batch_buffers_release). */
static void batch_buffers_next(bt_model_acts *a) {
  batch_buffers_select(a, a->iBuf ^ 1);
}

/* After a backward has been queued: every reader of this forward's
 * uploaded buffers is queued (ops.h bt_backend_upload_release). */
static void batch_buffers_release(bt_model *m) {
  bt_model_acts *a = m->pActs;
  bt_backend_upload_release(m->be, a->inputs);
  bt_backend_upload_release(m->be, a->targets);
  bt_backend_upload_release(m->be, a->xIn ? (const void *)a->xIn
                                          : (const void *)a->x);
}

int bt_model_stack_alloc(bt_model *m) {
  bt_model_acts *a = m->pActs;
  size_t B = (size_t)m->maxB, T = (size_t)m->T, C = (size_t)m->C,
         L = m->inferOnly ? 1 : (size_t)m->L, BT = B * T;
  int rc = BT_OK;
  a->attPerLayer = bt_op_attention_att_size(m->be, m->maxB, m->T, m->NH);
  a->encoded = act_alloc(m, BT * C, "encoded", &rc);
  a->ln1 = act_alloc(m, L * BT * C, "ln1", &rc);
  a->ln1_mean = f32_alloc(m, L * BT, "ln1 mean", &rc);
  a->ln1_rstd = f32_alloc(m, L * BT, "ln1 rstd", &rc);
  a->qkv = act_alloc(m, L * BT * 3 * C, "qkv", &rc);
  a->atty = act_alloc(m, L * BT * C, "atty", &rc);
  a->att = f32_alloc(m, L * a->attPerLayer, "att", &rc);
  a->attproj = act_alloc(m, L * BT * C, "attproj", &rc);
  a->res2 = act_alloc(m, L * BT * C, "residual2", &rc);
  a->ln2 = act_alloc(m, L * BT * C, "ln2", &rc);
  a->ln2_mean = f32_alloc(m, L * BT, "ln2 mean", &rc);
  a->ln2_rstd = f32_alloc(m, L * BT, "ln2 rstd", &rc);
  a->fch = act_alloc(m, L * BT * 4 * C, "fch", &rc);
  a->fch_gelu = act_alloc(m, L * BT * 4 * C, "fch_gelu", &rc);
  a->fcproj = act_alloc(m, L * BT * C, "fcproj", &rc);
  a->res3 = act_alloc(m, L * BT * C, "residual3", &rc);
  a->lnf = act_alloc(m, BT * C, "lnf", &rc);
  a->lnf_mean = f32_alloc(m, BT, "lnf mean", &rc);
  a->lnf_rstd = f32_alloc(m, BT, "lnf rstd", &rc);
  a->logitsRows = (int)BT;
  if (m->eKind == BT_MODEL_GPT) {
    /* one chunk of rows (an inference build: at least one sequence, so
     * that `baton infer` and the KV-cache check read a full forward) */
    size_t R = (size_t)a->chunkRows;
    if (m->inferOnly && R < T) R = T;
    a->logitsRows = (int)(R < BT ? R : BT);
  }
  a->logits = act_alloc(m, (size_t)a->logitsRows * m->Vp, "logits", &rc);
  a->losses = f32_alloc(m, BT, "losses", &rc);
  if (m->inferOnly) goto inputs; /* no backward buffers */
  a->dres = act_alloc(m, BT * C, "dresidual", &rc);
  a->dbuf = act_alloc(m, BT * C, "dbuf", &rc);
  a->dqkv = act_alloc(m, BT * 3 * C, "dqkv", &rc);
  a->dfch = act_alloc(m, BT * 4 * C, "dfch", &rc);
  a->dfch_gelu = act_alloc(m, BT * 4 * C, "dfch_gelu", &rc);
  a->attScratch = f32_alloc(
      m, bt_op_attention_scratch_size(m->be, m->maxB, m->T, m->NH) + 1,
      "attention scratch", &rc);
inputs:
  if (rc != BT_OK) return rc;
  for (int i = 0; i < 2; i++) {
    a->aInputs[i] = bt_mem_alloc_i32(m->be, BT, "inputs");
    a->aTargets[i] = bt_mem_alloc_i32(m->be, BT, "targets");
    if (!a->aInputs[i] || !a->aTargets[i]) return BT_ERR;
  }
  a->hostTargets = bt_calloc(BT, sizeof(int32_t), "host targets");
  a->hostLosses = bt_calloc(BT, sizeof(float), "host losses");
  if (!a->hostTargets || !a->hostLosses) return BT_ERR;
  batch_buffers_select(a, 0);
  return BT_OK;
}

static int mlp_alloc_acts(bt_model *m) {
  bt_model_acts *a = m->pActs;
  size_t B = (size_t)m->maxB;
  int rc = BT_OK, wmax = 0;
  for (int l = 0; l <= m->nLayer; l++)
    if (m->aWidth[l] > wmax) wmax = m->aWidth[l];
  size_t nX = B * (size_t)m->aWidth[0];
  a->aX[0] = act_alloc(m, nX, "mlp inputs", &rc);
  if (m->work != m->params)
    for (int i = 0; i < 2; i++)
      a->aXIn[i] = f32_alloc(m, nX, "mlp fp32 inputs", &rc);
  else
    a->aX[1] = act_alloc(m, nX, "mlp inputs", &rc);
  for (int l = 0; l < m->nLayer; l++) {
    a->aPre[l] = act_alloc(m, B * (size_t)m->aWidth[l + 1], "mlp pre", &rc);
    a->aAct[l] = act_alloc(m, B * (size_t)m->aWidth[l + 1], "mlp act", &rc);
  }
  a->losses = f32_alloc(m, B, "losses", &rc);
  if (!m->inferOnly) {
    a->dA = act_alloc(m, B * (size_t)wmax, "mlp dA", &rc);
    a->dP = act_alloc(m, B * (size_t)wmax, "mlp dP", &rc);
  }
  if (rc != BT_OK) return rc;
  for (int i = 0; i < 2; i++)
    if (!(a->aTargets[i] = bt_mem_alloc_i32(m->be, B, "targets")))
      return BT_ERR;
  a->hostTargets = bt_calloc(B, sizeof(int32_t), "host targets");
  a->hostLosses = bt_calloc(B, sizeof(float), "host losses");
  if (!a->hostTargets || !a->hostLosses) return BT_ERR;
  batch_buffers_select(a, 0);
  return BT_OK;
}

/* Rows of one loss chunk: model.loss_chunk_rows, or (0) as many as fit in
 * BT_LOSS_CHUNK_BYTES of fp32 logits, a multiple of 32, at least 32. The
 * bound is in fp32 bytes whatever the precision, so fp32 and bf16 runs
 * chunk alike. Why a multiple of 32: the CPU reference splits a GEMM's
 * rows in slabs aligned to 32 (cpu_ops.c), so a row's logits and its
 * d(lnf) come out with the same bits in any chunk. */
#define BT_LOSS_CHUNK_BYTES ((size_t)512 << 20)
static int gpt_chunk_rows(int nCfg, int Vp) {
  if (nCfg > 0) return nCfg;
  size_t r = BT_LOSS_CHUNK_BYTES / ((size_t)Vp * sizeof(float)) / 32 * 32;
  if (r < 32) r = 32;
  return r > (1u << 24) ? (1 << 24) : (int)r;
}

static int model_build(bt_model *m, const bt_config *c, bt_backend *be,
                       int maxB, size_t padMultiple, int inferOnly) {
  memset(m, 0, sizeof *m);
  m->inferOnly = inferOnly;
  m->be = be;
  /* Training fixes the backend's activation dtype from train.precision
   * (refused by a backend that cannot store it); an inference build uses
   * the backend as it is (fp32 unless its creator chose otherwise). */
  if (!inferOnly && bt_backend_set_act_dtype(be, c->precision) != BT_OK)
    return BT_ERR;
  m->maxB = maxB < 1 ? 1 : maxB;
  m->pActs = bt_calloc(1, sizeof(bt_model_acts), "model activations");
  if (!m->pActs) return BT_ERR;
  int rc;
  if (c->model_type == BT_MODEL_SPEECH) {
    /* An inference build (`baton eval`) runs bt_speech_forward only: it
     * has no gradients, and bt_speech_backward must not be called. */
    rc = bt_speech_build(m, c);
  } else if (c->model_type == BT_MODEL_GPT) {
    m->eKind = BT_MODEL_GPT;
    m->L = c->n_layer;
    m->NH = c->n_head;
    m->C = c->n_embd;
    m->T = c->context;
    m->V = c->vocab_size;
    m->Vp = bt_config_vocab_padded(c);
    if (m->L > 1024) return bt_err_set("model.n_layer: at most 1024 layers");
    m->pActs->chunkRows = gpt_chunk_rows(c->loss_chunk_rows, m->Vp);
    rc = gpt_tensors(m);
  } else {
    m->eKind = BT_MODEL_MLP;
    int aHidden[15];
    int nHidden = bt_config_mlp_hidden(c, aHidden, 15);
    if (nHidden < 0) return BT_ERR;
    m->aWidth[0] = c->n_features;
    for (int i = 0; i < nHidden; i++) m->aWidth[i + 1] = aHidden[i];
    m->aWidth[nHidden + 1] = c->n_classes;
    m->nLayer = nHidden + 1;
    m->T = 1;
    rc = mlp_tensors(m);
  }
  if (rc != BT_OK) return rc;
  size_t pad = padMultiple ? padMultiple : 1;
  m->nFlat = (m->nParam + pad - 1) / pad * pad;
  m->params = bt_mem_alloc(be, m->nFlat, "parameters");
  if (!m->params) return BT_ERR;
  m->work = m->params; /* fp32: the master is the working copy */
  if (bt_backend_act_dtype(be) != BT_ACT_F32) {
    m->work = bt_mem_alloc_act(be, m->nFlat, "parameters (working copy)");
    if (!m->work) return BT_ERR;
  }
  if (!m->inferOnly) {
    m->grads = bt_mem_alloc(be, m->nFlat, "gradients");
    if (!m->grads) return BT_ERR;
  }
  rc = m->eKind == BT_MODEL_GPT      ? bt_model_stack_alloc(m)
       : m->eKind == BT_MODEL_SPEECH ? bt_speech_alloc(m)
                                     : mlp_alloc_acts(m);
  if (rc != BT_OK)
    return bt_err_prefix("allocating activations for %d samples: ", m->maxB);
  return BT_OK;
}

int bt_model_build(bt_model *m, const bt_config *c, bt_backend *be, int maxB,
                   size_t padMultiple) {
  return model_build(m, c, be, maxB, padMultiple, 0);
}

int bt_model_build_infer(bt_model *m, const bt_config *c, bt_backend *be,
                         int maxB) {
  return model_build(m, c, be, maxB, 1, 1);
}

void bt_model_free(bt_model *m) {
  if (!m->pActs) return;
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  bt_speech_free(m);
  float **apF[] = {&a->aX[0], &a->aX[1], &a->aXIn[0], &a->aXIn[1],
                   &a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd,
                   &a->qkv, &a->atty, &a->att, &a->attproj, &a->res2, &a->ln2,
                   &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
                   &a->fcproj, &a->res3, &a->lnf, &a->lnf_mean, &a->lnf_rstd,
                   &a->logits, &a->losses, &a->dres, &a->dbuf, &a->dqkv,
                   &a->dfch, &a->dfch_gelu, &a->attScratch, &a->dA, &a->dP};
  for (size_t i = 0; i < sizeof apF / sizeof apF[0]; i++)
    bt_mem_free(be, *apF[i]);
  for (int l = 0; l < 16; l++) {
    bt_mem_free(be, a->aPre[l]);
    bt_mem_free(be, a->aAct[l]);
  }
  for (int i = 0; i < 2; i++) {
    bt_mem_free_i32(be, a->aInputs[i]);
    bt_mem_free_i32(be, a->aTargets[i]);
  }
  free(a->hostTargets);
  free(a->hostLosses);
  free(a);
  if (m->work != m->params) bt_mem_free(be, m->work);
  bt_mem_free(be, m->params);
  bt_mem_free(be, m->grads);
  free(m->aTensor);
  memset(m, 0, sizeof *m);
}

/* ---- initialisation --------------------------------------------------- */

int bt_model_init_weights(bt_model *m, uint64_t seed) {
  if (m->eKind == BT_MODEL_SPEECH) return bt_speech_init_weights(m, seed);
  float *h = bt_calloc(m->nFlat, sizeof(float), "initial weights");
  if (!h) return BT_ERR;
  for (int i = 0; i < m->nTensor; i++) {
    const bt_tensor *t = &m->aTensor[i];
    float *p = h + t->offset;
    uint64_t key = bt_rng_key(seed, RNG_PURPOSE_INIT, (uint64_t)i, 0);
    const char *zLeaf = strrchr(t->zName, '.');
    int isBias = zLeaf && !strcmp(zLeaf, ".bias");
    int isLn = strstr(t->zName, "ln_") != NULL;
    if (isLn && !isBias) {
      for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
    } else if (isBias) {
      /* zero */
    } else if (m->eKind == BT_MODEL_GPT) {
      /* GPT-2: N(0, 0.02); residual projections scaled by 1/sqrt(2L). */
      double std = 0.02;
      if (strstr(t->zName, "c_proj.weight")) std /= sqrt(2.0 * m->L);
      size_t n = t->numel;
      if (!strcmp(t->zName, "wte.weight")) n = (size_t)m->V * (size_t)m->C;
      for (size_t j = 0; j < n; j++)
        p[j] = (float)(std * bt_rng_normal(key, j));
    } else {
      double std = 1.0 / sqrt((double)t->shape[1]);
      for (size_t j = 0; j < t->numel; j++)
        p[j] = (float)(std * bt_rng_normal(key, j));
    }
  }
  bt_mem_from_host(m->be, m->params, h, m->nFlat);
  free(h);
  bt_model_refresh_work(m);
  return BT_OK;
}

void bt_model_refresh_work(bt_model *m) {
  if (m->work != m->params) bt_op_to_act(m->be, m->work, m->params, m->nFlat);
}

/* ---- forward ---------------------------------------------------------- */

static double host_loss_sum(bt_model *m, size_t N, const int32_t *targets,
                            int64_t *pnCount) {
  bt_model_acts *a = m->pActs;
  bt_mem_to_host(m->be, a->hostLosses, a->losses, N);
  double sum = 0;
  int64_t cnt = 0;
  for (size_t i = 0; i < N; i++) {
    if (targets[i] < 0) continue;
    sum += a->hostLosses[i];
    cnt++;
  }
  *pnCount = cnt;
  return sum;
}

/* The targets of N rows (checked by the caller) to the device and to the
 * host copy. */
static void upload_targets(bt_model *m, int N, const int32_t *targets) {
  bt_model_acts *a = m->pActs;
  memcpy(a->hostTargets, targets, (size_t)N * sizeof(int32_t));
  bt_backend_upload_async(m->be, a->targets, targets,
                          (size_t)N * sizeof(int32_t));
}

/* The per-row losses of N rows, once written: *pnCount counts the rows
 * whose target is not ignored (< 0); *pLossSum is their sum read back now,
 * or 0 where the trainer keeps the sum on the device until the step's one
 * read-back (m->pLossAcc, model.h). */
static void collect_loss(bt_model *m, int N, const int32_t *targets,
                         double *pLossSum, int64_t *pnCount) {
  bt_model_acts *a = m->pActs;
  if (!m->pLossAcc) {
    *pLossSum = host_loss_sum(m, (size_t)N, targets, pnCount);
    return;
  }
  bt_op_loss_sum_acc(m->be, m->pLossAcc, a->losses, a->targets, (size_t)N);
  int64_t cnt = 0;
  for (int i = 0; i < N; i++) cnt += targets[i] >= 0;
  *pLossSum = 0;
  *pnCount = cnt;
}

/* The MLP's loss over N rows of logits [N, K]; *pLossSum and *pnCount
 * cover the rows whose target is not ignored (< 0). */
static void forward_loss(bt_model *m, const float *logits, int N, int V,
                         int Vp, const int32_t *targets, double *pLossSum,
                         int64_t *pnCount) {
  bt_model_acts *a = m->pActs;
  upload_targets(m, N, targets);
  bt_op_xent_fwd(m->be, a->losses, logits, a->targets, N, V, Vp);
  collect_loss(m, N, targets, pLossSum, pnCount);
}

/* ---- GPT loss in chunks ------------------------------------------------
 * The logits of all N = B*T rows would take N x Vp values (B=64, T=1024,
 * Vp=50304: 13 GB in fp32), so the classifier and the cross-entropy run
 * over chunks of at most chunkRows rows, and the logits buffer holds one
 * chunk. Per chunk [r0, r0 + n):
 *   logits = lnf[r0..] wte^T                      (matmul_fwd)
 *   without a backward:  losses[r0..]             (xent_fwd)
 *   with one:            losses[r0..], and logits overwritten in place by
 *                        dlogits (xent_fwd_bwd); d(lnf)[r0..] = dlogits
 *                        wte, dwte += dlogits^T lnf[r0..]  (matmul_bwd)
 * Every op is row-wise except the dwte accumulation, so losses and d(lnf)
 * have the unchunked bits (chunk starts are multiples of 32: see
 * gpt_chunk_rows), and with ONE chunk (N <= chunkRows: every test model
 * and any vocabulary small enough) the op sequence is exactly the
 * unchunked one. With several, dwte sums its chunks' products in chunk
 * order, a different rounding of the same sum (measured in
 * tests/train/test_loss_chunks.c), deterministic run to run. */

/* Loss only (evaluation, validation, a forward without a backward). */
static void gpt_loss_fwd(bt_model *m, int N) {
  bt_model_acts *a = m->pActs;
  int C = m->C;
  for (int r0 = 0; r0 < N; r0 += a->chunkRows) {
    int n = N - r0 < a->chunkRows ? N - r0 : a->chunkRows;
    bt_op_matmul_fwd(m->be, a->logits, AT(a->lnf, (size_t)r0 * C), P(0),
                     NULL, n, C, m->Vp, BT_W_OUT_IN);
    bt_op_xent_fwd(m->be, a->losses + r0, a->logits, a->targets + r0, n,
                   m->V, m->Vp);
  }
}

/* Loss and its backward through the classifier: losses, d(lnf) in dbuf
 * (written), wte's first gradient (accumulated). */
static void gpt_loss_fwd_bwd(bt_model *m, int N, float scale) {
  bt_model_acts *a = m->pActs;
  int C = m->C;
  bt_mem_zero_act(m->be, a->dbuf, (size_t)N * C);
  for (int r0 = 0; r0 < N; r0 += a->chunkRows) {
    int n = N - r0 < a->chunkRows ? N - r0 : a->chunkRows;
    const float *lnf = AT(a->lnf, (size_t)r0 * C);
    bt_op_matmul_fwd(m->be, a->logits, lnf, P(0), NULL, n, C, m->Vp,
                     BT_W_OUT_IN);
    bt_op_xent_fwd_bwd(m->be, a->losses + r0, a->logits, a->targets + r0,
                       scale, n, m->V, m->Vp);
    bt_op_matmul_bwd(m->be, AT(a->dbuf, (size_t)r0 * C), G(0), NULL,
                     a->logits, lnf, P(0), n, C, m->Vp, BT_W_OUT_IN);
  }
}

/* bLossBwd: also the loss's backward through the classifier (scale). */
static int gpt_forward(bt_model *m, int B, const int32_t *inputs,
                       const int32_t *targets, int bLossBwd, float scale,
                       double *pLossSum, int64_t *pnCount) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  int T = m->T, C = m->C, N = B * T;
  for (int i = 0; i < N; i++)
    if (inputs[i] < 0 || inputs[i] >= m->V)
      return bt_err_set("token id %d at position %d is outside the "
                        "vocabulary [0, %d)",
                        inputs[i], i, m->V);
  /* a copy stream from pinned staging: the host does not wait for the
   * device (ops.h bt_backend_upload_async) */
  bt_backend_upload_async(be, a->inputs, inputs, (size_t)N * sizeof(int32_t));
  bt_op_embed_fwd(be, a->encoded, a->inputs, P(0), P(1), B, T, C);
  if (!targets && N > a->logitsRows)
    return bt_err_set("a forward without targets keeps the logits of every "
                      "row: %d rows, but the logits buffer holds %d "
                      "(model.loss_chunk_rows)",
                      N, a->logitsRows);
  if (targets)
    for (int i = 0; i < N; i++)
      if (targets[i] >= m->V)
        return bt_err_set("target id %d at position %d is outside the "
                          "vocabulary [0, %d)",
                          targets[i], i, m->V);
  bt_model_stack_fwd(m, a->encoded, B, T, NULL, 1);
  if (!targets) {
    bt_op_matmul_fwd(be, a->logits, a->lnf, P(0), NULL, N, C, m->Vp,
                     BT_W_OUT_IN);
    return BT_OK;
  }
  upload_targets(m, N, targets);
  if (bLossBwd) gpt_loss_fwd_bwd(m, N, scale);
  else gpt_loss_fwd(m, N);
  a->bLossBwd = bLossBwd;
  a->lossScale = scale;
  collect_loss(m, N, targets, pLossSum, pnCount);
  return BT_OK;
}

/* Self-attention of one block: the GPT's causal op, or the masked one. */
static void stack_attention_fwd(bt_model *m, float *atty, float *att,
                                const float *qkv, int B, int T,
                                const int32_t *keyLen, int causal) {
  if (causal && !keyLen)
    bt_op_attention_fwd(m->be, atty, att, qkv, B, T, m->C, m->NH);
  else
    bt_op_attention_masked_fwd(m->be, atty, att, qkv, keyLen, causal, B, T,
                               m->C, m->NH);
}

const float *bt_model_stack_fwd(bt_model *m, const float *x, int B, int T,
                                const int32_t *keyLen, int causal) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  int C = m->C, L = m->L, N = B * T;
  BT_ASSERT(B <= m->maxB && T <= m->T);
  size_t sC = (size_t)m->maxB * m->T * C, sBT = (size_t)m->maxB * m->T;
  /* Activation slice of block l: its own for training (backward needs
   * them all), the single shared one for inference. */
#define SLICE(l) ((size_t)(m->inferOnly ? 0 : (l)))
  int tf = a->firstTensorOfLayer[L];
  /* Each residual add is fused with the layernorm that reads it
   * (residual_layernorm_fwd: the same bits as the two ops): res2 with
   * ln_2, res3 with the next block's ln_1 or, after the last block, ln_f.
   * Only block 0's ln_1 reads x, which no add produces. */
  if (L == 0)
    bt_op_layernorm_fwd(be, a->lnf, a->lnf_mean, a->lnf_rstd, x, P(tf),
                        P(tf + 1), N, C);
  else
    bt_op_layernorm_fwd(be, a->ln1, a->ln1_mean, a->ln1_rstd, x,
                        P(a->firstTensorOfLayer[0]),
                        P(a->firstTensorOfLayer[0] + 1), N, C);
  for (int l = 0; l < L; l++) {
    int t0 = a->firstTensorOfLayer[l];
    size_t li = SLICE(l);
    const float *res = l == 0 ? x : AT(a->res3, SLICE(l - 1) * sC);
    float *ln1 = AT(a->ln1, li * sC), *qkv = AT(a->qkv, li * 3 * sC),
          *atty = AT(a->atty, li * sC), *att = a->att + li * a->attPerLayer,
          *attproj = AT(a->attproj, li * sC), *res2 = AT(a->res2, li * sC),
          *ln2 = AT(a->ln2, li * sC), *ln2m = a->ln2_mean + li * sBT,
          *ln2r = a->ln2_rstd + li * sBT, *fch = AT(a->fch, li * 4 * sC),
          *fchg = AT(a->fch_gelu, li * 4 * sC),
          *fcproj = AT(a->fcproj, li * sC), *res3 = AT(a->res3, li * sC);
    bt_op_matmul_fwd(be, qkv, ln1, P(t0 + 2), P(t0 + 3), N, C, 3 * C,
                     BT_W_IN_OUT);
    stack_attention_fwd(m, atty, att, qkv, B, T, keyLen, causal);
    bt_op_matmul_fwd(be, attproj, atty, P(t0 + 4), P(t0 + 5), N, C, C,
                     BT_W_IN_OUT);
    bt_op_residual_layernorm_fwd(be, res2, ln2, ln2m, ln2r, res, attproj,
                                 P(t0 + 6), P(t0 + 7), N, C);
    /* fch keeps the pre-activation for gelu_bwd; one op so that CUDA can
     * fuse bias and GELU into the GEMM's epilogue */
    bt_op_matmul_gelu_fwd(be, fchg, fch, ln2, P(t0 + 8), P(t0 + 9), N, C,
                          4 * C, BT_W_IN_OUT);
    bt_op_matmul_fwd(be, fcproj, fchg, P(t0 + 10), P(t0 + 11), N, 4 * C, C,
                     BT_W_IN_OUT);
    if (l + 1 < L) { /* the next block's ln_1 (its own slice) */
      size_t ln = SLICE(l + 1);
      int tn = a->firstTensorOfLayer[l + 1];
      bt_op_residual_layernorm_fwd(be, res3, AT(a->ln1, ln * sC),
                                   a->ln1_mean + ln * sBT,
                                   a->ln1_rstd + ln * sBT, res2, fcproj,
                                   P(tn), P(tn + 1), N, C);
    } else {
      bt_op_residual_layernorm_fwd(be, res3, a->lnf, a->lnf_mean,
                                   a->lnf_rstd, res2, fcproj, P(tf),
                                   P(tf + 1), N, C);
    }
  }
#undef SLICE
  return a->lnf;
}

float *bt_model_stack_lnf(bt_model *m) { return m->pActs->lnf; }
float *bt_model_stack_logits(bt_model *m) { return m->pActs->logits; }
float *bt_model_stack_dbuf(bt_model *m) { return m->pActs->dbuf; }

static int mlp_forward(bt_model *m, int B, const float *x,
                       const int32_t *targets, double *pLossSum,
                       int64_t *pnCount) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  size_t nX = (size_t)B * m->aWidth[0];
  if (a->xIn) { /* bf16: fp32 features -> the activation dtype */
    bt_backend_upload_async(be, a->xIn, x, nX * sizeof(float));
    bt_op_to_act(be, a->x, a->xIn, nX);
  } else {
    bt_backend_upload_async(be, a->x, x, nX * sizeof(float));
  }
  const float *in = a->x;
  for (int l = 0; l < m->nLayer; l++) {
    int t0 = a->firstTensorOfLayer[l];
    bt_op_matmul_fwd(be, a->aPre[l], in, P(t0), P(t0 + 1), B, m->aWidth[l],
                     m->aWidth[l + 1], BT_W_OUT_IN);
    if (l + 1 < m->nLayer) {
      bt_op_gelu_fwd(be, a->aAct[l], a->aPre[l],
                     (size_t)B * m->aWidth[l + 1]);
      in = a->aAct[l];
    }
  }
  if (targets) {
    int K = m->aWidth[m->nLayer];
    for (int i = 0; i < B; i++)
      if (targets[i] >= K)
        return bt_err_set("label %d of sample %d is not below the number "
                          "of classes %d",
                          targets[i], i, K);
    forward_loss(m, a->aPre[m->nLayer - 1], B, K, K, targets, pLossSum,
                 pnCount);
  }
  return BT_OK;
}

static int model_forward(bt_model *m, int n, const int32_t *inputs,
                         const float *x, const int32_t *targets, int bLossBwd,
                         float scale, double *pLossSum, int64_t *pnCount) {
  if (n < 1 || n > m->maxB)
    return bt_err_set("internal: forward of %d samples (model sized for %d)",
                      n, m->maxB);
  m->curB = n;
  batch_buffers_next(m->pActs);
  double s = 0;
  int64_t c = 0;
  if (m->eKind == BT_MODEL_SPEECH)
    return bt_err_set("model.type = speech: the forward takes a speech batch "
                      "(bt_speech_forward); the training loop is not wired "
                      "to the audio loader yet (issue 15)");
  m->pActs->bLossBwd = 0;
  int rc = m->eKind == BT_MODEL_GPT
               ? gpt_forward(m, n, inputs, targets, bLossBwd, scale, &s, &c)
               : mlp_forward(m, n, x, targets, &s, &c);
  if (pLossSum) *pLossSum = s;
  if (pnCount) *pnCount = c;
  return rc;
}

int bt_model_forward(bt_model *m, int n, const int32_t *inputs, const float *x,
                     const int32_t *targets, double *pLossSum,
                     int64_t *pnCount) {
  return model_forward(m, n, inputs, x, targets, 0, 0.0f, pLossSum, pnCount);
}

int bt_model_forward_train(bt_model *m, int n, const int32_t *inputs,
                           const float *x, const int32_t *targets,
                           float scale, double *pLossSum, int64_t *pnCount) {
  BT_ASSERT(targets && !m->inferOnly);
  return model_forward(m, n, inputs, x, targets, 1, scale, pLossSum,
                       pnCount);
}

/* ---- backward --------------------------------------------------------- */

static void ready(bt_grad_ready_fn fn, void *ctx, size_t lo) {
  if (fn) fn(ctx, lo);
}

static void gpt_backward(bt_model *m, float scale, bt_grad_ready_fn fn,
                         void *ctx) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  int B = m->curB, T = m->T, C = m->C, N = B * T;

  /* loss -> logits (in place) -> lnf (tied wte gets its first gradient),
   * chunk by chunk; already done by bt_model_forward_train, else here,
   * recomputing each chunk's logits (the logits of only one chunk are
   * kept). Either way the same ops on the same rows: the same bits. */
  if (a->bLossBwd) BT_ASSERT(a->lossScale == scale);
  else gpt_loss_fwd_bwd(m, N, scale);
  a->bLossBwd = 0;
  const float *dx = bt_model_stack_bwd(m, a->encoded, B, T, NULL, 1, fn, ctx);
  bt_op_embed_bwd(be, G(0), G(1), dx, a->inputs, B, T, C, m->V);
  ready(fn, ctx, 0);
}

/* out (atty) is the forward's output, kept for attproj's backward; the
 * attention backward takes it too (ops.def). */
static void stack_attention_bwd(bt_model *m, float *dqkv, const float *dout,
                                const float *qkv, const float *out,
                                const float *att, int B, int T,
                                const int32_t *keyLen, int causal) {
  bt_model_acts *a = m->pActs;
  if (causal && !keyLen)
    bt_op_attention_bwd(m->be, dqkv, a->attScratch, dout, qkv, out, att, B,
                        T, m->C, m->NH);
  else
    bt_op_attention_masked_bwd(m->be, dqkv, a->attScratch, dout, qkv, out,
                               att, keyLen, causal, B, T, m->C, m->NH);
}

const float *bt_model_stack_bwd(bt_model *m, const float *x, int B, int T,
                                const int32_t *keyLen, int causal,
                                bt_grad_ready_fn fn, void *ctx) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  int C = m->C, L = m->L, N = B * T;
  size_t sC = (size_t)m->maxB * m->T * C, sBT = (size_t)m->maxB * m->T;
  size_t nC = (size_t)N * C;
  int tf = a->firstTensorOfLayer[L];
  bt_mem_zero_act(be, a->dres, nC);
  bt_op_layernorm_bwd(be, a->dres, G(tf), G(tf + 1), a->dbuf,
                      AT(a->res3, (size_t)(L - 1) * sC), P(tf), a->lnf_mean,
                      a->lnf_rstd, N, C);
  ready(fn, ctx, m->aTensor[tf].offset);

  for (int l = L - 1; l >= 0; l--) {
    int t0 = a->firstTensorOfLayer[l];
    const float *res =
        l == 0 ? x : AT(a->res3, (size_t)(l - 1) * sC);
    float *ln1 = AT(a->ln1, l * sC), *ln1m = a->ln1_mean + l * sBT,
          *ln1r = a->ln1_rstd + l * sBT, *qkv = AT(a->qkv, l * 3 * sC),
          *atty = AT(a->atty, l * sC), *att = a->att + l * a->attPerLayer,
          *res2 = AT(a->res2, l * sC), *ln2 = AT(a->ln2, l * sC),
          *ln2m = a->ln2_mean + l * sBT, *ln2r = a->ln2_rstd + l * sBT,
          *fch = AT(a->fch, l * 4 * sC), *fchg = AT(a->fch_gelu, l * 4 * sC);
    /* dres holds d(residual3): MLP branch, then its skip path */
    bt_mem_zero_act(be, a->dfch_gelu, 4 * nC);
    bt_op_matmul_bwd(be, a->dfch_gelu, G(t0 + 10), G(t0 + 11), a->dres, fchg,
                     P(t0 + 10), N, 4 * C, C, BT_W_IN_OUT);
    bt_mem_zero_act(be, a->dfch, 4 * nC);
    bt_op_gelu_bwd(be, a->dfch, fch, a->dfch_gelu, 4 * nC);
    bt_mem_zero_act(be, a->dbuf, nC);
    bt_op_matmul_bwd(be, a->dbuf, G(t0 + 8), G(t0 + 9), a->dfch, ln2,
                     P(t0 + 8), N, C, 4 * C, BT_W_IN_OUT);
    bt_op_layernorm_bwd(be, a->dres, G(t0 + 6), G(t0 + 7), a->dbuf, res2,
                        P(t0 + 6), ln2m, ln2r, N, C);
    /* dres holds d(residual2): attention branch, then its skip path */
    bt_mem_zero_act(be, a->dbuf, nC);
    bt_op_matmul_bwd(be, a->dbuf, G(t0 + 4), G(t0 + 5), a->dres, atty,
                     P(t0 + 4), N, C, C, BT_W_IN_OUT);
    /* dqkv is WRITTEN by the attention backward (ops.def): no zeroing */
    stack_attention_bwd(m, a->dqkv, a->dbuf, qkv, atty, att, B, T, keyLen,
                        causal);
    bt_mem_zero_act(be, a->dbuf, nC);
    bt_op_matmul_bwd(be, a->dbuf, G(t0 + 2), G(t0 + 3), a->dqkv, ln1,
                     P(t0 + 2), N, C, 3 * C, BT_W_IN_OUT);
    bt_op_layernorm_bwd(be, a->dres, G(t0), G(t0 + 1), a->dbuf, res, P(t0),
                        ln1m, ln1r, N, C);
    ready(fn, ctx, m->aTensor[t0].offset);
  }
  return a->dres;
}

static void mlp_backward(bt_model *m, float scale, bt_grad_ready_fn fn,
                         void *ctx) {
  bt_model_acts *a = m->pActs;
  bt_backend *be = m->be;
  int B = m->curB, K = m->aWidth[m->nLayer];
  float *dout = a->aPre[m->nLayer - 1];
  bt_op_xent_bwd(be, dout, dout, a->targets, scale, B, K, K);
  for (int l = m->nLayer - 1; l >= 0; l--) {
    int t0 = a->firstTensorOfLayer[l];
    int in = m->aWidth[l], out = m->aWidth[l + 1];
    const float *inp = l == 0 ? a->x : a->aAct[l - 1];
    if (l > 0) bt_mem_zero_act(be, a->dA, (size_t)B * in);
    bt_op_matmul_bwd(be, l > 0 ? a->dA : NULL, G(t0), G(t0 + 1), dout, inp,
                     P(t0), B, in, out, BT_W_OUT_IN);
    if (l > 0) {
      bt_mem_zero_act(be, a->dP, (size_t)B * in);
      bt_op_gelu_bwd(be, a->dP, a->aPre[l - 1], a->dA, (size_t)B * in);
      dout = a->dP;
    }
    ready(fn, ctx, m->aTensor[t0].offset);
  }
}

void bt_model_backward(bt_model *m, float scale, bt_grad_ready_fn fn,
                       void *ctx) {
  BT_ASSERT(m->curB > 0);
  BT_ASSERT(!m->inferOnly);
  if (m->eKind == BT_MODEL_GPT) gpt_backward(m, scale, fn, ctx);
  else if (m->eKind == BT_MODEL_SPEECH) bt_speech_backward(m, scale, fn, ctx);
  else mlp_backward(m, scale, fn, ctx);
  /* the speech model's batch buffers are its own (speech_model.c) */
  if (m->eKind != BT_MODEL_SPEECH) batch_buffers_release(m);
}

const float *bt_model_logits(const bt_model *m) {
  return m->eKind != BT_MODEL_MLP ? m->pActs->logits
                                  : m->pActs->aPre[m->nLayer - 1];
}

int bt_model_logits_stride(const bt_model *m) {
  return m->eKind != BT_MODEL_MLP ? m->Vp : m->aWidth[m->nLayer];
}

double bt_model_flops_per_item(const bt_model *m) {
  if (m->eKind == BT_MODEL_GPT)
    return 6.0 * (double)m->nParam + 6.0 * m->L * m->C * (double)m->T;
  return 6.0 * (double)m->nParam;
}
