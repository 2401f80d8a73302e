/*
 * onnx_export.c: model.onnx for a GPT or MLP model (opset 17, IR 8).
 *
 * The protobuf is written with protobuf-c from ONNX's own schema
 * (export/onnx/onnx.proto, code generated at build time by
 * trainer/module.cmake), so the encoding is the library's, not ours.
 *
 * GPT graph (input_ids int64 [batch, seq] -> logits float [batch, seq,
 * vocab_size]; batch and seq are dynamic, seq <= n_positions):
 *   pos   = Range(0, seq, 1) with seq = Gather(Shape(input_ids), 1)
 *   x     = Gather(wte, input_ids) + Gather(wpe, pos)
 *   per block:
 *     a   = LayerNormalization(x); qkv = a @ c_attn.W + b; q,k,v = Split
 *     heads: Reshape [0,0,NH,hs] + Transpose (k straight to [B,NH,hs,S])
 *     s   = (q @ k) * 1/sqrt(hs) + causal_mask[:seq,:seq]  (0 / -1e9)
 *     y   = Softmax(s) @ v -> Transpose/Reshape [B,S,C] -> @ c_proj + b
 *     x   = x + y
 *     m   = LayerNormalization(x) @ c_fc + b -> GELU(tanh) -> @ c_proj + b
 *     x   = x + m
 *   logits = LayerNormalization(x) @ wte^T   (a stored [C, V] initializer)
 * GELU is spelled out with Mul/Add/Tanh (opset 17 has no Gelu op):
 *   0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))), h^3 as h*h*h.
 * The causal mask is an additive [n_positions, n_positions] initializer
 * sliced to [seq, seq]; -1e9 (not -inf) keeps fully masked arithmetic
 * finite in any runtime, and exp(-1e9 - max) is exactly 0 in fp32.
 *
 * MLP graph (x float [batch, D] -> logits float [batch, classes]):
 *   Gemm(transB=1) per layer (weights stay in torch Linear [out, in]
 *   layout), GELU(tanh) between layers.
 *
 * Speech graph (features float [batch, frames, n_mel] -> logits float
 * [batch, enc_frames, vocab_size], raw logits before the log-softmax):
 *   Transpose to [B, n_mel, T]; Conv(k 3, s 2, p 1) + GELU twice (ONNX's
 *   Conv weight layout is torch's [Cout, Cin, K], baton's); Transpose
 *   back; + positions[:T2] (an initializer for up to 60 s of audio, or
 *   max_utterance_frames if more); the GPT blocks with no mask; ln_f;
 *   MatMul(head.weight^T) + head.bias. No padding mask: every input
 *   frame counts, so a batch holds utterances of equal length
 *   (docs/export.md).
 *
 * Initializers carry raw_data: little-endian fp32/int64, the host layout
 * on every platform baton builds for (checked at run time). Weights are
 * referenced, not copied, except wte^T which is built once.
 *
 * Memory: every protobuf-c object is allocated from one arena (onnx_b),
 * freed in one go, so error paths cannot leak.
 */
#include "base/util.h"
#include "export/export.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef BATON_HAVE_ONNX

int bt_onnx_export(const bt_export_model *x, const char *zPath, int withPast) {
  (void)x;
  return bt_err_set("%s: ONNX export is not built into this binary "
                    "(protobuf-c and protoc-c were not found at configure "
                    "time; install libprotobuf-c-dev and protobuf-c-compiler)",
                    zPath);
}

#else

#include "onnx.pb-c.h"

#define ONNX_OPSET 17
#define ONNX_IR_VERSION 8
#define ONNX_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define ONNX_INT64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

typedef struct onnx_b {
  void **apAlloc; /* every allocation, freed together */
  size_t nAlloc, nAllocCap;
  int oom;
  Onnx__NodeProto **apNode;
  size_t nNode, nNodeCap;
  Onnx__TensorProto **apInit;
  size_t nInit, nInitCap;
  int nTmp;
} onnx_b;

static void *ob_alloc(onnx_b *b, size_t n) {
  if (b->oom) return NULL;
  if (b->nAlloc == b->nAllocCap) {
    size_t cap = b->nAllocCap ? 2 * b->nAllocCap : 256;
    void **a = realloc(b->apAlloc, cap * sizeof *a);
    if (!a) {
      b->oom = 1;
      return NULL;
    }
    b->apAlloc = a;
    b->nAllocCap = cap;
  }
  void *p = calloc(1, n ? n : 1);
  if (!p) {
    b->oom = 1;
    return NULL;
  }
  b->apAlloc[b->nAlloc++] = p;
  return p;
}

static void ob_free(onnx_b *b) {
  for (size_t i = 0; i < b->nAlloc; i++) free(b->apAlloc[i]);
  free(b->apAlloc);
  free(b->apNode);
  free(b->apInit);
  memset(b, 0, sizeof *b);
}

static char *ob_str(onnx_b *b, const char *zFmt, ...) BT_PRINTF(2, 3);
static char *ob_str(onnx_b *b, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  int n = vsnprintf(NULL, 0, zFmt, ap);
  va_end(ap);
  char *z = n >= 0 ? ob_alloc(b, (size_t)n + 1) : NULL;
  if (!z) return NULL;
  va_start(ap, zFmt);
  vsnprintf(z, (size_t)n + 1, zFmt, ap);
  va_end(ap);
  return z;
}

static int ob_push(onnx_b *b, void ***pa, size_t *pn, size_t *pcap, void *p) {
  if (!p || b->oom) {
    b->oom = 1;
    return BT_ERR;
  }
  if (*pn == *pcap) {
    size_t cap = *pcap ? 2 * *pcap : 64;
    void **a = realloc(*pa, cap * sizeof *a);
    if (!a) {
      b->oom = 1;
      return BT_ERR;
    }
    *pa = a;
    *pcap = cap;
  }
  (*pa)[(*pn)++] = p;
  return BT_OK;
}

/* ---- initializers ----------------------------------------------------- */

static const char *init_raw(onnx_b *b, const char *zName, int32_t eType,
                            int ndim, const int64_t *aDim, const void *pData,
                            size_t nByte) {
  Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
  int64_t *dims = ob_alloc(b, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
  char *z = ob_str(b, "%s", zName);
  if (!t || !dims || !z) {
    b->oom = 1;
    return NULL;
  }
  onnx__tensor_proto__init(t);
  if (ndim > 0) memcpy(dims, aDim, sizeof(int64_t) * (size_t)ndim);
  t->n_dims = (size_t)ndim;
  t->dims = dims;
  t->has_data_type = 1;
  t->data_type = eType;
  t->name = z;
  t->has_raw_data = 1;
  t->raw_data.len = nByte;
  t->raw_data.data = (uint8_t *)pData; /* referenced; packed by pack() */
  if (ob_push(b, (void ***)&b->apInit, &b->nInit, &b->nInitCap, t) != BT_OK)
    return NULL;
  return z;
}

static const char *init_f32(onnx_b *b, const char *zName, int ndim,
                            const int64_t *aDim, const float *p) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)aDim[i];
  return init_raw(b, zName, ONNX_FLOAT, ndim, aDim, p, n * sizeof(float));
}

/* A small int64 constant (copied into the arena). */
static const char *init_i64(onnx_b *b, const char *zName, int ndim,
                            const int64_t *aDim, const int64_t *p, size_t n) {
  int64_t *c = ob_alloc(b, n * sizeof(int64_t));
  if (!c) return NULL;
  memcpy(c, p, n * sizeof(int64_t));
  return init_raw(b, zName, ONNX_INT64, ndim, aDim, c, n * sizeof(int64_t));
}

/* A float scalar (0-d) constant. */
static const char *init_scalar(onnx_b *b, const char *zName, float v) {
  float *c = ob_alloc(b, sizeof(float));
  if (!c) return NULL;
  *c = v;
  return init_raw(b, zName, ONNX_FLOAT, 0, NULL, c, sizeof(float));
}

/* ---- nodes ------------------------------------------------------------ */

/* Adds node zOp with nIn inputs and nOut fresh outputs named after zHint;
 * returns the node (outputs in node->output). */
static Onnx__NodeProto *node(onnx_b *b, const char *zOp, const char *zHint,
                             int nIn, const char *const *azIn, int nOut) {
  Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
  char **in = ob_alloc(b, sizeof(char *) * (size_t)nIn);
  char **out = ob_alloc(b, sizeof(char *) * (size_t)nOut);
  if (!n || !in || !out) {
    b->oom = 1;
    return NULL;
  }
  onnx__node_proto__init(n);
  int id = b->nTmp++;
  for (int i = 0; i < nIn; i++) {
    if (!azIn[i]) {
      b->oom = 1; /* an earlier step failed */
      return NULL;
    }
    in[i] = (char *)azIn[i];
  }
  for (int i = 0; i < nOut; i++)
    out[i] = nOut == 1 ? ob_str(b, "%s_%d", zHint, id)
                       : ob_str(b, "%s_%d_%d", zHint, id, i);
  n->n_input = (size_t)nIn;
  n->input = in;
  n->n_output = (size_t)nOut;
  n->output = out;
  n->op_type = ob_str(b, "%s", zOp);
  n->name = ob_str(b, "%s_%d", zOp, id);
  if (ob_push(b, (void ***)&b->apNode, &b->nNode, &b->nNodeCap, n) != BT_OK)
    return NULL;
  return b->oom ? NULL : n;
}

/* Appends attribute zName of type eType to node n (NULL after a failure). */
static Onnx__AttributeProto *attr_new(onnx_b *b, Onnx__NodeProto *n,
                                      const char *zName,
                                      Onnx__AttributeProto__AttributeType eType) {
  if (!n) return NULL;
  Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
  Onnx__AttributeProto **ap =
      ob_alloc(b, sizeof *ap * (n->n_attribute + 1));
  if (!a || !ap) return NULL;
  onnx__attribute_proto__init(a);
  a->name = ob_str(b, "%s", zName);
  a->has_type = 1;
  a->type = eType;
  if (n->n_attribute) memcpy(ap, n->attribute, sizeof *ap * n->n_attribute);
  ap[n->n_attribute++] = a;
  n->attribute = ap;
  return a;
}

static void attr_i(onnx_b *b, Onnx__NodeProto *n, const char *zName,
                   int64_t v) {
  Onnx__AttributeProto *a =
      attr_new(b, n, zName, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (!a) return;
  a->has_i = 1;
  a->i = v;
}

static void attr_f(onnx_b *b, Onnx__NodeProto *n, const char *zName,
                   float v) {
  Onnx__AttributeProto *a =
      attr_new(b, n, zName, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (!a) return;
  a->has_f = 1;
  a->f = v;
}

static void attr_ints(onnx_b *b, Onnx__NodeProto *n, const char *zName,
                      int cnt, const int64_t *v) {
  Onnx__AttributeProto *a =
      attr_new(b, n, zName, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *c = ob_alloc(b, sizeof(int64_t) * (size_t)cnt);
  if (!a || !c) return;
  memcpy(c, v, sizeof(int64_t) * (size_t)cnt);
  a->n_ints = (size_t)cnt;
  a->ints = c;
}

/* One-output helpers; NULL inputs (after an earlier failure) propagate. */
static const char *op1(onnx_b *b, const char *zOp, const char *a) {
  Onnx__NodeProto *n = node(b, zOp, zOp, 1, &a, 1);
  return n ? n->output[0] : NULL;
}

static const char *op2(onnx_b *b, const char *zOp, const char *a,
                       const char *c) {
  const char *az[2] = {a, c};
  Onnx__NodeProto *n = node(b, zOp, zOp, 2, az, 1);
  return n ? n->output[0] : NULL;
}

static const char *transpose_n(onnx_b *b, const char *a, int nPerm,
                               const int64_t *aPerm) {
  Onnx__NodeProto *n = node(b, "Transpose", "Transpose", 1, &a, 1);
  attr_ints(b, n, "perm", nPerm, aPerm);
  return n ? n->output[0] : NULL;
}

static const char *transpose(onnx_b *b, const char *a, int64_t p0, int64_t p1,
                             int64_t p2, int64_t p3) {
  int64_t perm[4] = {p0, p1, p2, p3};
  return transpose_n(b, a, 4, perm);
}

static const char *layernorm(onnx_b *b, const char *x, const char *w,
                             const char *bias) {
  const char *az[3] = {x, w, bias};
  Onnx__NodeProto *n = node(b, "LayerNormalization", "LayerNorm", 3, az, 1);
  attr_i(b, n, "axis", -1);
  attr_f(b, n, "epsilon", 1e-5f);
  return n ? n->output[0] : NULL;
}

/* x @ W + bias (W an initializer in [in, out] layout). */
static const char *linear(onnx_b *b, const char *x, const char *w,
                          const char *bias) {
  return op2(b, "Add", op2(b, "MatMul", x, w), bias);
}

/* The four scalar initializers of the GELU formula, added once a graph. */
typedef struct gelu_k {
  const char *zHalf, *zOne, *zK, *zS;
} gelu_k;

static gelu_k gelu_init(onnx_b *b) {
  gelu_k g;
  g.zHalf = init_scalar(b, "gelu_half", 0.5f);
  g.zOne = init_scalar(b, "gelu_one", 1.0f);
  g.zK = init_scalar(b, "gelu_k", 0.044715f);
  g.zS = init_scalar(b, "gelu_s", 0.7978845608028654f);
  return g;
}

/* GELU, tanh approximation, from primitive ops. */
static const char *gelu(onnx_b *b, const char *h, const gelu_k *g) {
  const char *h3 = op2(b, "Mul", op2(b, "Mul", h, h), h);
  const char *inner = op2(b, "Add", h, op2(b, "Mul", h3, g->zK));
  const char *t = op1(b, "Tanh", op2(b, "Mul", inner, g->zS));
  return op2(b, "Mul", op2(b, "Mul", h, g->zHalf), op2(b, "Add", t, g->zOne));
}

/* ---- graph inputs/outputs --------------------------------------------- */

/* Value info: elem type and dims; a dim < 0 is dynamic, named azParam[i]. */
static Onnx__ValueInfoProto *value_info(onnx_b *b, const char *zName,
                                        int32_t eType, int ndim,
                                        const int64_t *aDim,
                                        const char *const *azParam) {
  Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
  Onnx__TypeProto *tp = ob_alloc(b, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
  Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
  Onnx__TensorShapeProto__Dimension **ad =
      ob_alloc(b, sizeof *ad * (size_t)ndim);
  if (!v || !tp || !tt || !sh || !ad) return NULL;
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sh);
  for (int i = 0; i < ndim; i++) {
    Onnx__TensorShapeProto__Dimension *d = ob_alloc(b, sizeof *d);
    if (!d) return NULL;
    onnx__tensor_shape_proto__dimension__init(d);
    if (aDim[i] >= 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = aDim[i];
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = ob_str(b, "%s", azParam[i]);
    }
    ad[i] = d;
  }
  sh->n_dim = (size_t)ndim;
  sh->dim = ad;
  tt->has_elem_type = 1;
  tt->elem_type = eType;
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->type = tp;
  v->name = ob_str(b, "%s", zName);
  return v;
}

/* ---- models ----------------------------------------------------------- */

static const float *P(const bt_export_model *x, int iTensor) {
  return x->hostParams + x->m.aTensor[iTensor].offset;
}

/* Initializer for model tensor i under its exported (HF) name. */
static const char *init_param(onnx_b *b, const bt_export_model *x, int i) {
  char zName[BT_TENSOR_NAME_MAX + 32];
  int64_t aShape[4];
  int nd = bt_export_tensor_info(&x->m, &x->m.aTensor[i], zName, sizeof zName,
                                 aShape);
  return init_f32(b, zName, nd, aShape, P(x, i));
}

/* Every name the GPT graph shares between its parts: the initializers
 * (added by gpt_consts in a fixed order, so the file is reproducible), the
 * positions and the sliced mask (gpt_positions). */
typedef struct gpt_k {
  int withPast;
  int nonCausal; /* the speech encoder: no mask at all (zMaskS unused) */
  const char *zWte, *zWpe, *zWteT, *zMask, *zIdx1, *zI0, *zSplit, *zShp4,
      *zShp3, *zAxes, *zStarts, *zScale;
  gelu_k g;
  const char *zPos, *zMaskS;
} gpt_k;

/* wte^T [C, V] followed by the causal mask [T, T] (0 on and below the
 * diagonal, -1e9 above), in one host buffer that the caller frees. */
static float *gpt_host_consts(const bt_model *m, const float *wte) {
  const int C = m->C, T = m->T, V = m->V;
  float *wteT = bt_malloc(((size_t)C * V + (size_t)T * T) * sizeof(float),
                          "ONNX wte^T and mask");
  if (!wteT) return NULL;
  for (int v = 0; v < V; v++)
    for (int c = 0; c < C; c++)
      wteT[(size_t)c * V + v] = wte[(size_t)v * C + c];
  float *mask = wteT + (size_t)C * V;
  for (int i = 0; i < T; i++)
    for (int j = 0; j < T; j++) mask[(size_t)i * T + j] = j <= i ? 0.0f : -1e9f;
  return wteT;
}

static void gpt_consts(onnx_b *b, const bt_export_model *x, const float *wteT,
                       gpt_k *k) {
  const bt_model *m = &x->m;
  const int C = m->C, NH = m->NH, T = m->T, V = m->V, hs = C / NH;
  const float *mask = wteT + (size_t)C * V;
  const int withPast = k->withPast;
  k->zWte = init_param(b, x, 0);
  k->zWpe = init_param(b, x, 1);
  int64_t dCV[2] = {C, V}, dTT[2] = {T, T}, d2[1] = {2}, d3[1] = {3},
          d4[1] = {4};
  k->zWteT = init_f32(b, "lm_head.weight_transposed", 2, dCV, wteT);
  k->zMask = init_f32(b, "causal_mask", 2, dTT, mask);
  int64_t one = 1, zero = 0, split[3] = {C, C, C}, shp4[4] = {0, 0, NH, hs},
          shp3[3] = {0, 0, C}, axes01[2] = {0, 1}, zeros2[2] = {0, 0};
  k->zIdx1 = init_i64(b, "const_i64_1", 0, NULL, &one, 1);
  k->zI0 = withPast ? NULL : init_i64(b, "const_i64_0", 0, NULL, &zero, 1);
  k->zSplit = init_i64(b, "qkv_split", 1, d3, split, 3);
  k->zShp4 = init_i64(b, "shape_heads", 1, d4, shp4, 4);
  k->zShp3 = init_i64(b, "shape_merge", 1, d3, shp3, 3);
  k->zAxes = init_i64(b, "mask_axes", 1, d2, axes01, 2);
  k->zStarts =
      withPast ? NULL : init_i64(b, "mask_starts", 1, d2, zeros2, 2);
  k->zScale = init_scalar(b, "attn_scale", 1.0f / sqrtf((float)hs));
  k->g = gelu_init(b);
}

/* Positions and the mask slice from the dynamic lengths: S new tokens
 * after P cached ones (P = 0 without a cache) sit at positions
 * [P, P + S) and attend to keys [0, P + S): mask rows [P, P+S), columns
 * [0, P+S). */
static void gpt_positions(onnx_b *b, gpt_k *k) {
  int64_t zero = 0, d1[1] = {1};
  const char *zShape = op1(b, "Shape", "input_ids");
  const char *zSeq = op2(b, "Gather", zShape, k->zIdx1); /* S, 0-d */
  const char *zPast = k->zI0, *zTot = zSeq;
  if (k->withPast) {
    int64_t two = 2;
    const char *zIdx2 = init_i64(b, "const_i64_2", 0, NULL, &two, 1);
    zPast = op2(b, "Gather", op1(b, "Shape", "past_key_values.0.key"), zIdx2);
    zTot = op2(b, "Add", zPast, zSeq);
  }
  const char *az3[3] = {zPast, zTot, k->zIdx1};
  Onnx__NodeProto *nR = node(b, "Range", "positions", 3, az3, 1);
  k->zPos = nR ? nR->output[0] : NULL;
  const char *zAxis0 = init_i64(b, "axes_0", 1, d1, &zero, 1);
  const char *zTot1 = op2(b, "Unsqueeze", zTot, zAxis0);
  const char *azCat[2] = {zTot1, zTot1};
  Onnx__NodeProto *nC = node(b, "Concat", "mask_ends", 2, azCat, 1);
  attr_i(b, nC, "axis", 0);
  if (k->withPast) {
    const char *azSt[2] = {op2(b, "Unsqueeze", zPast, zAxis0),
                           init_i64(b, "const_i64_1d_0", 1, d1, &zero, 1)};
    Onnx__NodeProto *nSt = node(b, "Concat", "mask_starts", 2, azSt, 1);
    attr_i(b, nSt, "axis", 0);
    k->zStarts = nSt ? nSt->output[0] : NULL;
  }
  const char *azSl[4] = {k->zMask, k->zStarts, nC ? nC->output[0] : NULL,
                         k->zAxes};
  Onnx__NodeProto *nS = node(b, "Slice", "mask", 4, azSl, 1);
  k->zMaskS = nS ? nS->output[0] : NULL;
}

/* Keys (as [B, NH, hs, S]) and values (as [B, NH, S, hs]) of block l from
 * the Split node's outputs. With a cache, present = Concat(past, new)
 * along the sequence axis: graph outputs named as transformers/optimum
 * name them. Returns BT_ERR after a failure (b->oom tells which). */
static int gpt_kv(onnx_b *b, const gpt_k *k, Onnx__NodeProto *nSp, int l,
                  const char **pzK, const char **pzV) {
  if (!k->withPast) {
    *pzK = transpose(b, op2(b, "Reshape", nSp->output[1], k->zShp4), 0, 2, 3,
                     1);
    *pzV = transpose(b, op2(b, "Reshape", nSp->output[2], k->zShp4), 0, 2, 1,
                     3);
    return BT_OK;
  }
  const char *kn = transpose(b, op2(b, "Reshape", nSp->output[1], k->zShp4),
                             0, 2, 1, 3);
  const char *vn = transpose(b, op2(b, "Reshape", nSp->output[2], k->zShp4),
                             0, 2, 1, 3);
  const char *azK[2] = {ob_str(b, "past_key_values.%d.key", l), kn};
  const char *azV[2] = {ob_str(b, "past_key_values.%d.value", l), vn};
  Onnx__NodeProto *nK = node(b, "Concat", "present_key", 2, azK, 1);
  Onnx__NodeProto *nV = node(b, "Concat", "present_value", 2, azV, 1);
  attr_i(b, nK, "axis", 2);
  attr_i(b, nV, "axis", 2);
  if (!nK || !nV) return BT_ERR;
  nK->output[0] = ob_str(b, "present.%d.key", l);
  nV->output[0] = ob_str(b, "present.%d.value", l);
  *pzK = transpose(b, nK->output[0], 0, 1, 3, 2);
  *pzV = nV->output[0];
  return BT_OK;
}

/* Block l applied to the residual stream zx; returns the new stream. */
static const char *gpt_block(onnx_b *b, const bt_export_model *x,
                             const gpt_k *k, const char *zx, int l) {
  const bt_model *m = &x->m;
  char z[BT_TENSOR_NAME_MAX];
  bt_snprintf(z, sizeof z, "h.%d.ln_1.weight", l);
  const bt_tensor *t = bt_model_find(m, z);
  BT_ASSERT(t);
  int t0 = (int)(t - m->aTensor);
  const char *w[12];
  for (int i = 0; i < 12; i++) w[i] = init_param(b, x, t0 + i);
  const char *a = layernorm(b, zx, w[0], w[1]);
  const char *qkv = linear(b, a, w[2], w[3]);
  const char *azSp[2] = {qkv, k->zSplit};
  Onnx__NodeProto *nSp = node(b, "Split", "qkv", 2, azSp, 3);
  attr_i(b, nSp, "axis", -1);
  if (!nSp) return NULL;
  const char *q = transpose(b, op2(b, "Reshape", nSp->output[0], k->zShp4), 0,
                            2, 1, 3);
  const char *kk, *v;
  if (gpt_kv(b, k, nSp, l, &kk, &v) != BT_OK) return NULL;
  const char *s = op2(b, "Mul", op2(b, "MatMul", q, kk), k->zScale);
  if (!k->nonCausal) s = op2(b, "Add", s, k->zMaskS);
  Onnx__NodeProto *nSm = node(b, "Softmax", "Softmax", 1, &s, 1);
  attr_i(b, nSm, "axis", -1);
  if (!nSm) return NULL;
  const char *y = op2(b, "MatMul", nSm->output[0], v);
  y = op2(b, "Reshape", transpose(b, y, 0, 2, 1, 3), k->zShp3);
  zx = op2(b, "Add", zx, linear(b, y, w[4], w[5]));
  const char *hmid = linear(b, layernorm(b, zx, w[6], w[7]), w[8], w[9]);
  return op2(b, "Add", zx, linear(b, gelu(b, hmid, &k->g), w[10], w[11]));
}

static const char *gpt_graph(onnx_b *b, const bt_export_model *x,
                             float **ppOwned, int withPast) {
  const bt_model *m = &x->m;
  /* wte^T and the causal mask: built here, freed by the caller */
  float *wteT = gpt_host_consts(m, P(x, 0));
  if (!wteT) return NULL;
  *ppOwned = wteT;
  gpt_k k = {.withPast = withPast};
  gpt_consts(b, x, wteT, &k);
  gpt_positions(b, &k);
  const char *zx = op2(b, "Add", op2(b, "Gather", k.zWte, "input_ids"),
                       op2(b, "Gather", k.zWpe, k.zPos));
  for (int l = 0; l < m->L; l++) {
    zx = gpt_block(b, x, &k, zx, l);
    if (!zx) return NULL;
  }
  const bt_tensor *tf = bt_model_find(m, "ln_f.weight");
  BT_ASSERT(tf);
  int iF = (int)(tf - m->aTensor);
  const char *zF = layernorm(b, zx, init_param(b, x, iF),
                             init_param(b, x, iF + 1));
  return op2(b, "MatMul", zF, k.zWteT);
}

static const char *mlp_graph(onnx_b *b, const bt_export_model *x) {
  const bt_model *m = &x->m;
  const gelu_k g = gelu_init(b);
  const char *h = "x";
  for (int l = 0; l < m->nLayer; l++) {
    const char *az[3] = {h, init_param(b, x, 2 * l),
                         init_param(b, x, 2 * l + 1)};
    Onnx__NodeProto *n = node(b, "Gemm", "Linear", 3, az, 1);
    attr_i(b, n, "transB", 1);
    if (!n) return NULL;
    h = n->output[0];
    if (l + 1 < m->nLayer) h = gelu(b, h, &g);
  }
  return h;
}

/* The positions initializer covers at least 60 s of audio (6000 feature
 * frames, 1500 encoder frames; C * 6 KB), or max_utterance_frames if
 * that is more: an export is not bound to the training length, as
 * `baton infer` is not. */
#define SPEECH_ONNX_MIN_FRAMES 6000

static int speech_pos_rows(const bt_model *m) {
  int t = (SPEECH_ONNX_MIN_FRAMES - 1) / 2 / 2 + 1;
  return m->T > t ? m->T : t;
}

/* Whisper's sinusoids [T, C] as speech_model.c computes them (double,
 * stored as float): channel i < C/2 is sin(t w_i), C/2 + i cos(t w_i),
 * w_i = exp(-i ln(10000) / (C/2 - 1)). */
static float *speech_host_positions(const bt_model *m) {
  int T = speech_pos_rows(m), C = m->C, h = C / 2;
  float *pe = bt_malloc((size_t)T * C * sizeof(float), "ONNX positions");
  if (!pe) return NULL;
  for (int t = 0; t < T; t++)
    for (int i = 0; i < h; i++) {
      double w = exp(-(double)i * log(10000.0) / (h - 1));
      pe[(size_t)t * C + i] = (float)sin(t * w);
      pe[(size_t)t * C + h + i] = (float)cos(t * w);
    }
  return pe;
}

/* Conv (NCW) with the front end's kernel 3, stride 2, padding 1. */
static const char *speech_conv(onnx_b *b, const char *zIn,
                               const bt_export_model *x, int iW) {
  const char *az[3] = {zIn, init_param(b, x, iW), init_param(b, x, iW + 1)};
  Onnx__NodeProto *n = node(b, "Conv", "Conv", 3, az, 1);
  int64_t k = 3, st = 2, pads[2] = {1, 1};
  attr_ints(b, n, "kernel_shape", 1, &k);
  attr_ints(b, n, "strides", 1, &st);
  attr_ints(b, n, "pads", 2, pads);
  return n ? n->output[0] : NULL;
}

/* The encoder input: features -> conv.0, GELU -> conv.1, GELU -> + the
 * positions of the first T2 frames (Slice of the [speech_pos_rows, C]
 * initializer; a longer input fails in the Add, never silently). */
static const char *speech_front(onnx_b *b, const bt_export_model *x,
                                const float *pe, const gelu_k *g) {
  const bt_model *m = &x->m;
  int64_t p021[3] = {0, 2, 1}, dTC[2] = {speech_pos_rows(m), m->C}, one = 1,
          zero = 0,
          d1[1] = {1};
  const char *h = transpose_n(b, "features", 3, p021); /* [B, n_mel, T] */
  h = gelu(b, speech_conv(b, h, x, 0), g);
  h = gelu(b, speech_conv(b, h, x, 2), g);
  h = transpose_n(b, h, 3, p021); /* [B, T2, C] */
  const char *zPe = init_f32(b, "positions", 2, dTC, pe);
  const char *zIdx1 = init_i64(b, "const_i64_1", 0, NULL, &one, 1);
  const char *zAxis0 = init_i64(b, "axes_0", 1, d1, &zero, 1);
  const char *zT2 = op2(b, "Unsqueeze",
                        op2(b, "Gather", op1(b, "Shape", h), zIdx1), zAxis0);
  const char *azSl[4] = {zPe, init_i64(b, "starts_0", 1, d1, &zero, 1), zT2,
                         zAxis0};
  Onnx__NodeProto *nS = node(b, "Slice", "positions", 4, azSl, 1);
  return op2(b, "Add", h, nS ? nS->output[0] : NULL);
}

/* Speech graph (features float [batch, frames, n_mel] -> logits float
 * [batch, enc_frames, vocab_size], enc_frames = conv_len(conv_len(frames))
 * with conv_len(n) = (n - 1) / 2 + 1): the front end above, the GPT block
 * stack without a mask (every frame of the input is valid: no padding, so
 * a batch holds utterances of one length), ln_f, then head.weight^T +
 * head.bias. The positions are built here; the caller frees them. */
static const char *speech_graph(onnx_b *b, const bt_export_model *x,
                                float **ppOwned) {
  const bt_model *m = &x->m;
  float *pe = speech_host_positions(m);
  if (!pe) return NULL;
  *ppOwned = pe;
  const int C = m->C, NH = m->NH, hs = C / NH;
  gpt_k k = {.nonCausal = 1};
  int64_t d3[1] = {3}, d4[1] = {4}, split[3] = {C, C, C},
          shp4[4] = {0, 0, NH, hs}, shp3[3] = {0, 0, C}, p10[2] = {1, 0};
  k.zSplit = init_i64(b, "qkv_split", 1, d3, split, 3);
  k.zShp4 = init_i64(b, "shape_heads", 1, d4, shp4, 4);
  k.zShp3 = init_i64(b, "shape_merge", 1, d3, shp3, 3);
  k.zScale = init_scalar(b, "attn_scale", 1.0f / sqrtf((float)hs));
  k.g = gelu_init(b);
  const char *zx = speech_front(b, x, pe, &k.g);
  for (int l = 0; zx && l < m->L; l++) zx = gpt_block(b, x, &k, zx, l);
  if (!zx) return NULL;
  const bt_tensor *tf = bt_model_find(m, "ln_f.weight");
  BT_ASSERT(tf && tf - m->aTensor == m->nTensor - 4);
  int iF = (int)(tf - m->aTensor);
  const char *zF = layernorm(b, zx, init_param(b, x, iF),
                             init_param(b, x, iF + 1));
  const char *zHeadT = transpose_n(b, init_param(b, x, iF + 2), 2, p10);
  return op2(b, "Add", op2(b, "MatMul", zF, zHeadT),
             init_param(b, x, iF + 3));
}

/* The graph's inputs and outputs: [0] is input_ids (or x) and logits, then
 * past_key_values.N.{key,value} and present.N.{key,value}. */
typedef struct onnx_io {
  Onnx__ValueInfoProto **apIn, **apOut;
  int n;
} onnx_io;

/* Sets b->oom when an allocation failed. */
static void io_alloc(onnx_b *b, onnx_io *io, int n) {
  io->n = n;
  io->apIn = ob_alloc(b, sizeof *io->apIn * (size_t)n);
  io->apOut = ob_alloc(b, sizeof *io->apOut * (size_t)n);
  if (!io->apIn || !io->apOut) b->oom = 1;
}

static void gpt_io(onnx_b *b, const bt_model *m, int withPast, onnx_io *io) {
  io_alloc(b, io, 1 + (withPast ? 2 * m->L : 0));
  if (b->oom) return;
  const char *azP[3] = {"batch", "seq", NULL};
  int64_t dIn[2] = {-1, -1}, dOut[3] = {-1, -1, m->V};
  io->apIn[0] = value_info(b, "input_ids", ONNX_INT64, 2, dIn, azP);
  io->apOut[0] = value_info(b, "logits", ONNX_FLOAT, 3, dOut, azP);
  const char *azPast[4] = {"batch", NULL, "past_seq", NULL};
  const char *azPres[4] = {"batch", NULL, "total_seq", NULL};
  int64_t dKV[4] = {-1, m->NH, -1, m->C / m->NH};
  for (int i = 1; i < io->n; i++) {
    const int l = (i - 1) / 2;
    const char *zKind = (i - 1) % 2 ? "value" : "key";
    char zName[64];
    bt_snprintf(zName, sizeof zName, "past_key_values.%d.%s", l, zKind);
    io->apIn[i] = value_info(b, zName, ONNX_FLOAT, 4, dKV, azPast);
    bt_snprintf(zName, sizeof zName, "present.%d.%s", l, zKind);
    io->apOut[i] = value_info(b, zName, ONNX_FLOAT, 4, dKV, azPres);
  }
}

static void speech_io(onnx_b *b, const bt_model *m, onnx_io *io) {
  io_alloc(b, io, 1);
  if (b->oom) return;
  const char *azIn[3] = {"batch", "frames", NULL};
  const char *azOut[3] = {"batch", "enc_frames", NULL};
  int64_t dIn[3] = {-1, -1, m->nMel}, dOut[3] = {-1, -1, m->V};
  io->apIn[0] = value_info(b, "features", ONNX_FLOAT, 3, dIn, azIn);
  io->apOut[0] = value_info(b, "logits", ONNX_FLOAT, 3, dOut, azOut);
}

static void mlp_io(onnx_b *b, const bt_model *m, onnx_io *io) {
  io_alloc(b, io, 1);
  if (b->oom) return;
  const char *azP[2] = {"batch", NULL};
  int64_t dIn[2] = {-1, m->aWidth[0]}, dOut[2] = {-1, m->aWidth[m->nLayer]};
  io->apIn[0] = value_info(b, "x", ONNX_FLOAT, 2, dIn, azP);
  io->apOut[0] = value_info(b, "logits", ONNX_FLOAT, 2, dOut, azP);
}

/* Builds the graph of x into b; BT_ERR with the message set on failure. */
static int onnx_build(onnx_b *b, const bt_export_model *x, const char *zPath,
                      int withPast, float **ppOwned, onnx_io *io) {
  const bt_model *m = &x->m;
  const char *zLogits;
  if (m->eKind == BT_MODEL_SPEECH) {
    if (withPast)
      return bt_err_set("%s: --with-past applies to GPT models only", zPath);
    zLogits = speech_graph(b, x, ppOwned);
    speech_io(b, m, io);
  } else if (m->eKind == BT_MODEL_GPT) {
    if (m->C % m->NH)
      return bt_err_set("%s: n_head %d does not divide n_embd %d", zPath,
                        m->NH, m->C);
    zLogits = gpt_graph(b, x, ppOwned, withPast);
    gpt_io(b, m, withPast, io);
  } else {
    zLogits = mlp_graph(b, x);
    mlp_io(b, m, io);
  }
  int ok = zLogits && !b->oom;
  for (int i = 0; ok && i < io->n; i++) ok = io->apIn[i] && io->apOut[i];
  if (!ok) {
    if (!bt_err_msg()[0] || b->oom)
      bt_err_set("%s: out of memory building the ONNX graph", zPath);
    return BT_ERR;
  }
  /* The last node's output becomes the graph output "logits". */
  b->apNode[b->nNode - 1]->output[0] = (char *)"logits";
  return BT_OK;
}

/* Wraps the graph in a model (opset, producer, metadata), packs it and
 * writes it atomically to zPath. */
static int onnx_write(onnx_b *b, const bt_export_model *x, const onnx_io *io,
                      const char *zPath) {
  Onnx__GraphProto g;
  onnx__graph_proto__init(&g);
  g.name = x->m.eKind == BT_MODEL_GPT   ? "baton_gpt"
           : x->m.eKind == BT_MODEL_MLP ? "baton_mlp"
                                        : "baton_speech";
  g.n_node = b->nNode;
  g.node = b->apNode;
  g.n_initializer = b->nInit;
  g.initializer = b->apInit;
  g.n_input = (size_t)io->n;
  g.input = io->apIn;
  g.n_output = (size_t)io->n;
  g.output = io->apOut;

  Onnx__OperatorSetIdProto opset;
  onnx__operator_set_id_proto__init(&opset);
  opset.domain = "";
  opset.has_version = 1;
  opset.version = ONNX_OPSET;
  Onnx__OperatorSetIdProto *apOpset[1] = {&opset};

  char zStep[32], zSrc[1100];
  snprintf(zStep, sizeof zStep, "%ld", x->step);
  snprintf(zSrc, sizeof zSrc, "%s", x->zSource);
  Onnx__StringStringEntryProto meta[2], *apMeta[2] = {&meta[0], &meta[1]};
  onnx__string_string_entry_proto__init(&meta[0]);
  onnx__string_string_entry_proto__init(&meta[1]);
  meta[0].key = "baton_step";
  meta[0].value = zStep;
  meta[1].key = "baton_source";
  meta[1].value = zSrc;

  Onnx__ModelProto mp;
  onnx__model_proto__init(&mp);
  mp.has_ir_version = 1;
  mp.ir_version = ONNX_IR_VERSION;
  mp.n_opset_import = 1;
  mp.opset_import = apOpset;
  mp.producer_name = "baton";
  mp.producer_version = BATON_VERSION;
  mp.graph = &g;
  mp.n_metadata_props = 2;
  mp.metadata_props = apMeta;

  size_t n = onnx__model_proto__get_packed_size(&mp);
  if (n >= ((size_t)2 << 30))
    return bt_err_set("%s: the model needs %zu bytes, beyond protobuf's 2 GiB "
                      "limit (ONNX external data is not implemented)",
                      zPath, n);
  uint8_t *pOut = bt_malloc(n, "ONNX image");
  if (!pOut) return BT_ERR;
  size_t got = onnx__model_proto__pack(&mp, pOut);
  BT_ASSERT(got == n);
  int rc = bt_file_write_atomic(zPath, pOut, n);
  free(pOut);
  return rc;
}

int bt_onnx_export(const bt_export_model *x, const char *zPath, int withPast) {
  const uint32_t probe = 1;
  uint8_t first;
  memcpy(&first, &probe, 1);
  if (first != 1)
    return bt_err_set("%s: ONNX raw_data is little-endian; this host is "
                      "not",
                      zPath);
  onnx_b b = {0};
  float *pOwned = NULL;
  onnx_io io = {0};
  int rc = onnx_build(&b, x, zPath, withPast, &pOwned, &io);
  if (rc == BT_OK) rc = onnx_write(&b, x, &io, zPath);
  free(pOwned);
  ob_free(&b);
  return rc;
}

#endif /* BATON_HAVE_ONNX */
