/*
 * init.c: train.init_from and the config.json mapping (see init.h for the
 * sources and the invariants).
 *
 * Which shape keys a source decides (bt_init_merge_config):
 *   model directory  model.type and, for GPT, n_layer, n_head, n_embd,
 *                    context and vocab_size; for an MLP, n_features,
 *                    n_classes and mlp_hidden. model.vocab_pad_to stays
 *                    the run's: padding rows are zero and never leave
 *                    baton, so the source's padding does not matter.
 *   checkpoint       every model.* key, vocab_pad_to included: its params
 *                    item is the flat buffer of exactly that layout, read
 *                    as one range.
 */
#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/safetensors.h"
#include "trainer/init.h"
#include "trainer/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- config.json ------------------------------------------------------ */

static int json_int(const cJSON *o, const char *zKey, int lo, int hi, int *pv,
                    const char *zFile) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, zKey);
  if (!cJSON_IsNumber(p))
    return bt_err_set("%s: missing or non-numeric \"%s\"", zFile, zKey);
  double d = p->valuedouble;
  if (d != (double)(int)d || d < lo || d > hi)
    return bt_err_set("%s: \"%s\" = %g is not an integer in [%d, %d]", zFile,
                      zKey, d, lo, hi);
  *pv = (int)d;
  return BT_OK;
}

static int cfg_set(bt_config *c, const char *zFile, const char *zFmt, ...)
    BT_PRINTF(3, 4);
static int cfg_set(bt_config *c, const char *zFile, const char *zFmt, ...) {
  char z[BT_CFG_STR_MAX + 64];
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(z, sizeof z, zFmt, ap);
  va_end(ap);
  return bt_config_set(c, z, zFile);
}

/* GPT2Config switches that change the arithmetic: refuse the ones baton
 * does not implement instead of computing something else. */
static int gpt_check_switches(const cJSON *o, int C, const char *zFile) {
  const cJSON *pAct = cJSON_GetObjectItemCaseSensitive(o,
                                                       "activation_function");
  if (cJSON_IsString(pAct) && strcmp(pAct->valuestring, "gelu_new") &&
      strcmp(pAct->valuestring, "gelu_pytorch_tanh"))
    return bt_err_set("%s: activation_function '%s' is not supported (baton "
                      "implements gelu_new, the tanh approximation)",
                      zFile, pAct->valuestring);
  const cJSON *pEps = cJSON_GetObjectItemCaseSensitive(o,
                                                       "layer_norm_epsilon");
  if (pEps && (!cJSON_IsNumber(pEps) ||
               fabs(pEps->valuedouble - 1e-5) > 1e-12))
    return bt_err_set("%s: layer_norm_epsilon must be 1e-5 (baton's "
                      "layernorm)",
                      zFile);
  static const struct {
    const char *zKey;
    int want;
  } aFlag[] = {{"scale_attn_weights", 1},
               {"scale_attn_by_inverse_layer_idx", 0},
               {"reorder_and_upcast_attn", 0},
               {"add_cross_attention", 0}};
  for (size_t i = 0; i < sizeof aFlag / sizeof aFlag[0]; i++) {
    const cJSON *pF = cJSON_GetObjectItemCaseSensitive(o, aFlag[i].zKey);
    if (pF && (!cJSON_IsBool(pF) || cJSON_IsTrue(pF) != aFlag[i].want))
      return bt_err_set("%s: \"%s\": %s is not supported by baton", zFile,
                        aFlag[i].zKey, aFlag[i].want ? "false" : "true");
  }
  const cJSON *pInner = cJSON_GetObjectItemCaseSensitive(o, "n_inner");
  if (pInner && !cJSON_IsNull(pInner) &&
      !(cJSON_IsNumber(pInner) && pInner->valuedouble == 4.0 * C))
    return bt_err_set("%s: n_inner must be null or 4 * n_embd (%d)", zFile,
                      4 * C);
  return BT_OK;
}

/* A Hugging Face GPT2Config (model_type "gpt2"). */
static int gpt_from_json(bt_config *c, const cJSON *o, const char *zFile) {
  int L = 0, NH = 1, C = 0, T = 0, V = 0, pad = 64;
  if (json_int(o, "n_layer", 1, 256, &L, zFile) ||
      json_int(o, "n_head", 1, 256, &NH, zFile) ||
      json_int(o, "n_embd", 1, 65536, &C, zFile) ||
      json_int(o, "n_positions", 1, 1 << 20, &T, zFile) ||
      json_int(o, "vocab_size", 2, 1 << 24, &V, zFile))
    return BT_ERR;
  if (cJSON_GetObjectItemCaseSensitive(o, "baton_vocab_pad_to") &&
      json_int(o, "baton_vocab_pad_to", 1, 4096, &pad, zFile))
    return BT_ERR;
  if (C % NH)
    return bt_err_set("%s: n_head %d does not divide n_embd %d", zFile, NH,
                      C);
  if (gpt_check_switches(o, C, zFile) != BT_OK) return BT_ERR;
  if (cfg_set(c, zFile, "model.n_layer=%d", L) ||
      cfg_set(c, zFile, "model.n_head=%d", NH) ||
      cfg_set(c, zFile, "model.n_embd=%d", C) ||
      cfg_set(c, zFile, "model.context=%d", T) ||
      cfg_set(c, zFile, "model.vocab_size=%d", V) ||
      cfg_set(c, zFile, "model.vocab_pad_to=%d", pad))
    return BT_ERR;
  return BT_OK;
}

/* baton's own MLP description (model_type "baton_mlp"): "widths" lists
 * the input features, each hidden width, and the classes. */
static int mlp_from_json(bt_config *c, const cJSON *o, const char *zFile) {
  const cJSON *pW = cJSON_GetObjectItemCaseSensitive(o, "widths");
  int nW = cJSON_IsArray(pW) ? cJSON_GetArraySize(pW) : 0;
  if (nW < 2 || nW > 17)
    return bt_err_set("%s: \"widths\" must be an array of 2 to 17 layer "
                      "widths",
                      zFile);
  int a[17];
  for (int i = 0; i < nW; i++) {
    const cJSON *e = cJSON_GetArrayItem(pW, i);
    if (!cJSON_IsNumber(e) || e->valuedouble < 1 ||
        e->valuedouble > (1 << 24) ||
        e->valuedouble != (double)(int)e->valuedouble)
      return bt_err_set("%s: widths[%d] is not a positive integer", zFile, i);
    a[i] = (int)e->valuedouble;
  }
  char zH[BT_CFG_STR_MAX] = "";
  size_t k = 0;
  for (int i = 1; i < nW - 1; i++)
    k += (size_t)snprintf(zH + k, sizeof zH - k, "%s%d", i > 1 ? "," : "",
                          a[i]);
  if (a[nW - 1] < 2)
    return bt_err_set("%s: an MLP needs at least 2 classes", zFile);
  if (nW == 2)
    return bt_err_set("%s: baton MLPs have at least one hidden layer", zFile);
  if (cfg_set(c, zFile, "model.n_features=%d", a[0]) ||
      cfg_set(c, zFile, "model.n_classes=%d", a[nW - 1]) ||
      cfg_set(c, zFile, "model.mlp_hidden=%s", zH))
    return BT_ERR;
  return BT_OK;
}

/* The config.json "model_type" words an export may carry, and the
 * model.type each one becomes. */
static const struct {
  const char *zType;
  bt_model_kind eKind;
  int (*xParse)(bt_config *, const cJSON *, const char *);
} aJsonModel[] = {{"gpt2", BT_MODEL_GPT, gpt_from_json},
                  {"baton_mlp", BT_MODEL_MLP, mlp_from_json}};

int bt_init_config_from_json(bt_config *c, const char *zFile) {
  size_t n = 0;
  char *z = bt_file_read_all(zFile, &n);
  if (!z) return BT_ERR;
  cJSON *o = cJSON_ParseWithLength(z, n);
  free(z);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return bt_err_set("%s: not a JSON object", zFile);
  }
  bt_config_defaults(c);
  int rc = BT_ERR;
  const cJSON *pType = cJSON_GetObjectItemCaseSensitive(o, "model_type");
  if (!cJSON_IsString(pType)) {
    bt_err_set("%s: missing \"model_type\"", zFile);
  } else {
    size_t i = 0, nType = sizeof aJsonModel / sizeof aJsonModel[0];
    while (i < nType && strcmp(pType->valuestring, aJsonModel[i].zType)) i++;
    if (i == nType) {
      bt_err_set("%s: model_type '%s' is not one baton reads (gpt2, "
                 "baton_mlp)",
                 zFile, pType->valuestring);
    } else {
      c->model_type = aJsonModel[i].eKind;
      rc = aJsonModel[i].xParse(c, o, zFile);
    }
  }
  cJSON_Delete(o);
  return rc;
}


/* ---- tensors ----------------------------------------------------------- */

int bt_init_tensor_info(const bt_model *m, const bt_tensor *t, char *zName,
                        size_t nName, int64_t *aShape) {
  if (m->eKind == BT_MODEL_GPT)
    snprintf(zName, nName, "transformer.%s", t->zName);
  else
    snprintf(zName, nName, "%s", t->zName);
  for (int d = 0; d < t->ndim; d++) aShape[d] = t->shape[d];
  if (m->eKind == BT_MODEL_GPT && !strcmp(t->zName, "wte.weight"))
    aShape[0] = m->V; /* drop the padded rows */
  return t->ndim;
}

/* A GPT source may carry lm_head.weight (transformers writes it when the
 * head is not tied). baton ties the head to wte, so the two must hold the
 * same values: anything else would be a different model. */
static int check_tied_head(const bt_model *m, const bt_st_file *f,
                           const float *pHost) {
  if (m->eKind != BT_MODEL_GPT || !bt_st_find(f, "lm_head.weight"))
    return BT_OK;
  const bt_tensor *t = bt_model_find(m, "wte.weight");
  BT_ASSERT(t);
  size_t n = (size_t)m->V * (size_t)m->C;
  float *pHead = bt_malloc(n * sizeof(float), "lm_head.weight");
  if (!pHead) return BT_ERR;
  int64_t aShape[2] = {m->V, m->C};
  int rc = bt_st_read_f32(f, "lm_head.weight", 2, aShape, pHead);
  if (rc == BT_OK && memcmp(pHead, pHost + t->offset, n * sizeof(float)))
    rc = bt_err_set("%s: lm_head.weight differs from transformer.wte.weight; "
                    "baton ties the output projection to the token "
                    "embedding and cannot represent an untied head",
                    f->zPath);
  free(pHead);
  return rc;
}

int bt_init_read_safetensors(const bt_model *m, const char *zFile,
                             float *pHost, long *pStep) {
  bt_st_file f;
  *pStep = -1;
  if (bt_st_open(&f, zFile) != BT_OK) {
    bt_st_close(&f);
    return BT_ERR;
  }
  int rc = BT_OK;
  const char *zStep = bt_st_meta(&f, "step");
  if (zStep) *pStep = strtol(zStep, NULL, 10);
  /* Every tensor the model needs, with its exact shape; extra tensors
   * (attention-mask buffers) are ignored (init.h, invariant 4). */
  for (int i = 0; rc == BT_OK && i < m->nTensor; i++) {
    const bt_tensor *t = &m->aTensor[i];
    char zName[BT_TENSOR_NAME_MAX + 32];
    int64_t aShape[4];
    int nd = bt_init_tensor_info(m, t, zName, sizeof zName, aShape);
    const size_t nPrefix = strlen("transformer.");
    if (!bt_st_find(&f, zName) && m->eKind == BT_MODEL_GPT &&
        bt_st_find(&f, zName + nPrefix))
      memmove(zName, zName + nPrefix, strlen(zName + nPrefix) + 1); /* bare GPT2Model */
    rc = bt_st_read_f32(&f, zName, nd, aShape, pHost + t->offset);
  }
  if (rc == BT_OK) rc = check_tied_head(m, &f, pHost);
  bt_st_close(&f);
  return rc;
}

/* ---- the source ---------------------------------------------------------- */

typedef enum init_kind {
  INIT_MODEL_DIR = 0, /* model.safetensors + config.json */
  INIT_CKPT = 1,      /* a baton checkpoint */
} init_kind;

typedef struct init_source {
  init_kind eKind;
  char zDir[1200];  /* the model directory or the checkpoint directory */
  char zFile[1300]; /* config.json (model dir) or the checkpoint, for errors */
} init_source;

/* Decides what train.init_from names. Errors say what was expected. */
static int source_resolve(const char *zPath, init_source *s) {
  memset(s, 0, sizeof *s);
  struct stat st;
  if (stat(zPath, &st) != 0)
    return bt_err_set("train.init_from = %s: no such file or directory", zPath);
  if (!S_ISDIR(st.st_mode))
    return bt_err_set("train.init_from = %s: not a directory (expected a "
                      "model directory with model.safetensors and "
                      "config.json, or a baton checkpoint or run directory)",
                      zPath);
  char zA[1300], zB[1300];
  bt_snprintf(zA, sizeof zA, "%s/model.safetensors", zPath);
  bt_snprintf(zB, sizeof zB, "%s/model.safetensors.index.json", zPath);
  if (bt_path_exists(zA) || bt_path_exists(zB)) {
    if (!bt_path_exists(zA))
      return bt_err_set("train.init_from = %s: sharded safetensors "
                        "(model.safetensors.index.json) are not supported; "
                        "save the model as one file (save_pretrained(..., "
                        "max_shard_size=\"100GB\"))",
                        zPath);
    s->eKind = INIT_MODEL_DIR;
    bt_snprintf(s->zDir, sizeof s->zDir, "%s", zPath);
    bt_snprintf(s->zFile, sizeof s->zFile, "%s/config.json", zPath);
    if (!bt_path_exists(s->zFile))
      return bt_err_set("train.init_from = %s: model.safetensors has no "
                        "config.json beside it (the shapes come from it)",
                        zPath);
    return BT_OK;
  }
  s->eKind = INIT_CKPT;
  bt_snprintf(zA, sizeof zA, "%s/manifest.json", zPath);
  if (bt_path_exists(zA)) {
    bt_snprintf(s->zDir, sizeof s->zDir, "%s", zPath);
  } else {
    int rc = bt_ckpt_find_latest(zPath, s->zDir, sizeof s->zDir);
    if (rc == BT_ERR) return bt_err_prefix("train.init_from = %s: ", zPath);
    if (rc == 1)
      return bt_err_set("train.init_from = %s: neither a model directory "
                        "(model.safetensors + config.json) nor a baton "
                        "checkpoint (manifest.json) or run directory with "
                        "a valid checkpoint",
                        zPath);
  }
  bt_snprintf(s->zFile, sizeof s->zFile, "%s", s->zDir);
  return BT_OK;
}

/* The source's config: config.json, or the text a checkpoint carries. */
static int source_config(const init_source *s, bt_config *c) {
  if (s->eKind == INIT_MODEL_DIR) return bt_init_config_from_json(c, s->zFile);
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open(&pC, s->zDir, 0) != BT_OK) return BT_ERR;
  cJSON *o = cJSON_Parse(bt_ckpt_meta_json(pC));
  const cJSON *pCfg = o ? cJSON_GetObjectItemCaseSensitive(o, "config") : NULL;
  int rc = cJSON_IsString(pCfg)
               ? bt_config_from_text(c, pCfg->valuestring, s->zDir)
               : bt_err_set("%s: manifest meta has no config text", s->zDir);
  cJSON_Delete(o);
  bt_ckpt_close(pC);
  return rc;
}

/* Whether source kind e decides key k (table at the top of this file). */
static int source_decides(init_kind e, bt_model_kind eModel,
                          const bt_cfg_key *k) {
  if (strcmp(k->zSection, "model")) return 0;
  if (e == INIT_CKPT) return 1;
  static const char *const azGpt[] = {"type", "n_layer", "n_head", "n_embd",
                                      "context", "vocab_size", NULL};
  static const char *const azMlp[] = {"type", "n_features", "n_classes",
                                      "mlp_hidden", NULL};
  for (const char *const *p = eModel == BT_MODEL_GPT ? azGpt : azMlp; *p; p++)
    if (!strcmp(*p, k->zName)) return 1;
  return 0;
}

int bt_init_merge_config(bt_config *c, unsigned char *aSeen,
                         const char *zSource) {
  init_source s;
  if (source_resolve(c->init_from, &s) != BT_OK) return BT_ERR;
  bt_config src;
  if (source_config(&s, &src) != BT_OK)
    return bt_err_prefix("train.init_from: ");
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    if (!source_decides(s.eKind, src.model_type, k)) continue;
    char zRun[BT_CFG_STR_MAX + 8], zSrc[BT_CFG_STR_MAX + 8];
    bt_config_value_text(c, k, zRun, sizeof zRun);
    bt_config_value_text(&src, k, zSrc, sizeof zSrc);
    if (aSeen[i]) {
      if (strcmp(zRun, zSrc))
        return bt_err_set("%s: %s.%s = %s but train.init_from's source has "
                          "%s (%s); leave the key out to take the "
                          "source's value",
                          zSource, k->zSection, k->zName, zRun, zSrc,
                          s.zFile);
      continue;
    }
    memcpy((char *)c + k->offset, (const char *)&src + k->offset, k->size);
    aSeen[i] = 1;
  }
  return BT_OK;
}

/* ---- the weights ------------------------------------------------------- */

static int load_ckpt_params(const bt_model *m, const char *zDir,
                            float *pHost) {
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK) return BT_ERR;
  int rc = BT_OK;
  uint64_t n = bt_ckpt_item_total(pC, "params");
  if (n != m->nParam)
    rc = bt_err_set("%s: params item has %llu elements but the model of the "
                    "run's config has %zu",
                    zDir, (unsigned long long)n, m->nParam);
  else
    rc = bt_ckpt_read_range(pC, "params", 0, n, pHost);
  bt_ckpt_close(pC);
  return rc;
}

int bt_init_load_params(bt_trainer *tr) {
  const char *zFrom = tr->cfg.init_from;
  if (!zFrom[0]) return BT_OK;
  if (tr->step > 0) {
    bt_log_info("train.init_from = %s ignored: the run resumed from its own "
                "checkpoint at step %ld and keeps its trained weights",
                zFrom, tr->step);
    return BT_OK;
  }
  double t0 = bt_time_now();
  init_source s;
  if (source_resolve(zFrom, &s) != BT_OK) return BT_ERR;
  bt_model *m = &tr->model;
  /* Zeroed: padded wte rows and the flat buffer's tail stay zero, as
   * bt_model_init_weights leaves them. */
  float *pHost = bt_calloc(m->nFlat, sizeof(float), "init_from parameters");
  if (!pHost) return BT_ERR;
  long step = -1;
  char zSt[1300];
  bt_snprintf(zSt, sizeof zSt, "%s/model.safetensors", s.zDir);
  int rc = s.eKind == INIT_MODEL_DIR
               ? bt_init_read_safetensors(m, zSt, pHost, &step)
               : load_ckpt_params(m, s.zDir, pHost);
  if (rc == BT_OK) {
    bt_mem_from_host(tr->be, m->params, pHost, m->nFlat);
    bt_model_refresh_work(m); /* bf16: the working copy of the new master */
  }
  free(pHost);
  if (rc != BT_OK) return bt_err_prefix("train.init_from: ");
  bt_log_info("initialised %zu parameters from %s (%s) in %.2f s; a new "
              "run: step 0, fresh optimizer state, this config's data and "
              "schedule",
              m->nParam, s.eKind == INIT_MODEL_DIR ? zSt : s.zDir,
              s.eKind == INIT_MODEL_DIR ? "safetensors" : "baton checkpoint",
              bt_time_now() - t0);
  return BT_OK;
}
