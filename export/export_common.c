/*
 * export_common.c: loading a model for export or inference, from a
 * checkpoint or from an export directory (see export.h).
 *
 * Both paths end in the same place: a bt_model built from a bt_config with
 * every parameter set, so `baton infer` on an export and the trainer on the
 * checkpoint run the same forward code on the same bits (fp32 exports).
 */
#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "export/export.h"
#include "checkpoints/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int bt_export_resolve_ckpt(const char *zPath, char *zOut, size_t nOut) {
  char zMan[4096];
  snprintf(zMan, sizeof zMan, "%s/manifest.json", zPath);
  if (bt_path_exists(zMan)) {
    if (strlen(zPath) >= nOut) return bt_err_set("path too long: %s", zPath);
    memcpy(zOut, zPath, strlen(zPath) + 1);
    return BT_OK;
  }
  struct stat st;
  if (stat(zPath, &st) != 0 || !S_ISDIR(st.st_mode))
    return bt_err_set("%s: no such checkpoint or run directory", zPath);
  int rc = bt_ckpt_find_latest(zPath, zOut, nOut);
  if (rc == BT_ERR) return BT_ERR;
  if (rc == 1)
    return bt_err_set("%s: not a checkpoint directory (no manifest.json) and "
                      "no valid checkpoint inside it",
                      zPath);
  return BT_OK;
}

void bt_export_model_free(bt_export_model *x) {
  if (x->hostParams && x->m.params != x->hostParams) free(x->hostParams);
  bt_model_free(&x->m);
  if (x->be) bt_backend_free(x->be);
  free(x->zCfgText);
  memset(x, 0, sizeof *x);
}

/* Builds x->m from x->cfg on be (or a new CPU backend). */
static int build(bt_export_model *x, int maxB) {
  if (!x->be) {
    x->be = bt_backend_create(BT_BACKEND_CPU, 0, 0);
    if (!x->be) return BT_ERR;
  }
  bt_backend *be = x->be;
  if (maxB <= 0) maxB = x->cfg.model_type == BT_MODEL_GPT ? 1 : 256;
  if (bt_model_build_infer(&x->m, &x->cfg, be, maxB) != BT_OK) return BT_ERR;
  if (bt_backend_kind_of(be) == BT_BACKEND_CPU) {
    x->hostParams = x->m.params;
  } else {
    x->hostParams = bt_calloc(x->m.nFlat, sizeof(float), "host parameters");
    if (!x->hostParams) return BT_ERR;
  }
  return BT_OK;
}

static int upload(bt_export_model *x) {
  if (x->hostParams != x->m.params)
    bt_mem_from_host(x->be, x->m.params, x->hostParams, x->m.nFlat);
  return BT_OK;
}

int bt_export_load_ckpt(bt_export_model *x, const char *zPath, int maxB,
                        bt_backend *be) {
  memset(x, 0, sizeof *x);
  x->be = be; /* owned from here on */
  x->step = -1;
  if (bt_export_resolve_ckpt(zPath, x->zSource, sizeof x->zSource) != BT_OK)
    return BT_ERR;
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open(&pC, x->zSource, 1) != BT_OK) return BT_ERR;
  int rc = BT_ERR;
  cJSON *o = cJSON_Parse(bt_ckpt_meta_json(pC));
  cJSON *pCfg = o ? cJSON_GetObjectItemCaseSensitive(o, "config") : NULL;
  cJSON *pStep = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
  if (!cJSON_IsString(pCfg)) {
    bt_err_set("%s: manifest meta has no config text", x->zSource);
    goto done;
  }
  x->step = cJSON_IsNumber(pStep) ? (long)pStep->valuedouble
                                  : bt_ckpt_step(pC);
  x->zCfgText = strdup(pCfg->valuestring);
  if (!x->zCfgText) goto done;
  if (bt_config_from_text(&x->cfg, x->zCfgText, x->zSource) != BT_OK)
    goto done;
  if (build(x, maxB) != BT_OK) goto done;
  uint64_t n = bt_ckpt_item_total(pC, "params");
  if (n != x->m.nParam) {
    bt_err_set("%s: params item has %llu elements but the model described by "
               "its config has %zu",
               x->zSource, (unsigned long long)n, x->m.nParam);
    goto done;
  }
  if (bt_ckpt_read_range(pC, "params", 0, n, x->hostParams) != BT_OK) goto done;
  rc = upload(x);
done:
  cJSON_Delete(o);
  bt_ckpt_close(pC);
  return rc;
}

int bt_export_tensor_info(const bt_model *m, const bt_tensor *t, char *zName,
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

/* ---- export directory ------------------------------------------------- */

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

/* config.json -> bt_config (model section only; the rest stays default). */
static int config_from_json(bt_config *c, const char *zFile) {
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
      bt_err_set("%s: model_type '%s' is not one baton exports (gpt2, "
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

int bt_export_load_dir(bt_export_model *x, const char *zDir, int maxB,
                       bt_backend *be) {
  memset(x, 0, sizeof *x);
  x->be = be; /* owned from here on */
  x->step = -1;
  snprintf(x->zSource, sizeof x->zSource, "%s", zDir);
  char zCfg[4096], zSt[4096];
  snprintf(zCfg, sizeof zCfg, "%s/config.json", zDir);
  snprintf(zSt, sizeof zSt, "%s/model.safetensors", zDir);
  if (config_from_json(&x->cfg, zCfg) != BT_OK) return BT_ERR;
  if (build(x, maxB) != BT_OK) return BT_ERR;
  bt_st_file f;
  if (bt_st_open(&f, zSt) != BT_OK) {
    bt_st_close(&f);
    return BT_ERR;
  }
  int rc = BT_OK;
  const char *zStep = bt_st_meta(&f, "step");
  if (zStep) x->step = strtol(zStep, NULL, 10);
  /* Every tensor the model needs, with its exact shape; extra tensors (a
   * written-out lm_head, attention mask buffers) are ignored. */
  for (int i = 0; rc == BT_OK && i < x->m.nTensor; i++) {
    const bt_tensor *t = &x->m.aTensor[i];
    char zName[BT_TENSOR_NAME_MAX + 32];
    int64_t aShape[4];
    int nd = bt_export_tensor_info(&x->m, t, zName, sizeof zName, aShape);
    if (!bt_st_find(&f, zName) && x->m.eKind == BT_MODEL_GPT &&
        bt_st_find(&f, zName + strlen("transformer.")))
      memmove(zName, zName + 12, strlen(zName + 12) + 1); /* bare GPT2Model */
    rc = bt_st_read_f32(&f, zName, nd, aShape, x->hostParams + t->offset);
  }
  bt_st_close(&f);
  if (rc != BT_OK) return BT_ERR;
  return upload(x);
}
