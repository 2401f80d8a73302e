/*
 * export_common.c: loading a model for export or inference, from a
 * checkpoint or from an export directory (see export.h).
 *
 * The config.json mapping and the safetensors tensor reader live in
 * trainer/init.c, shared with `train.init_from`.
 *
 * A speech export's config.json ("baton_speech") is read by
 * speech_export.c, which also gives back its characters (x->aVocab).
 *
 * Both paths end in the same place: a bt_model built from a bt_config with
 * every parameter set, so `baton infer` on an export and the trainer on the
 * checkpoint run the same forward code on the same bits (fp32 exports).
 */
#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "export/export.h"
#include "trainer/init.h"

#include <cjson/cJSON.h>
#include <math.h>
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
  free(x->aVocab);
  memset(x, 0, sizeof *x);
}

/* Builds x->m from x->cfg on be (or a new CPU backend); a speech model
 * for utterances of up to maxFrames frames if that is above its own
 * bound (bt_export_load). */
static int build(bt_export_model *x, int maxB, int maxFrames) {
  if (!x->be) {
    x->be = bt_backend_create(BT_BACKEND_CPU, 0, 0);
    if (!x->be) return BT_ERR;
  }
  bt_backend *be = x->be;
  if (maxB <= 0) maxB = x->cfg.model_type == BT_MODEL_MLP ? 256 : 1;
  if (x->cfg.model_type == BT_MODEL_SPEECH && maxFrames > x->cfg.max_utt_frames)
    x->cfg.max_utt_frames = maxFrames;
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

static int load_ckpt(bt_export_model *x, const char *zPath, int maxB,
                     int maxFrames, bt_backend *be) {
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
  if (build(x, maxB, maxFrames) != BT_OK) goto done;
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
  return bt_init_tensor_info(m, t, zName, nName, aShape);
}

/* ---- export directory ------------------------------------------------- */

/* config.json -> x->cfg: a speech export here (speech_export.c), GPT and
 * MLP by the mapping train.init_from shares (trainer/init.c). */
static int dir_config(bt_export_model *x, const char *zCfg) {
  size_t n = 0;
  char *z = bt_file_read_all(zCfg, &n);
  if (!z) return BT_ERR;
  cJSON *o = cJSON_ParseWithLength(z, n);
  free(z);
  int rc = !cJSON_IsObject(o) ? bt_err_set("%s: not a JSON object", zCfg)
           : bt_speech_config_is(o)
               ? bt_speech_config_from_json(&x->cfg, o, zCfg, &x->aVocab,
                                            &x->nVocab)
               : bt_init_config_from_json(&x->cfg, zCfg);
  cJSON_Delete(o);
  return rc;
}

static int load_dir(bt_export_model *x, const char *zDir, int maxB,
                    int maxFrames, bt_backend *be) {
  memset(x, 0, sizeof *x);
  x->be = be; /* owned from here on */
  x->step = -1;
  snprintf(x->zSource, sizeof x->zSource, "%s", zDir);
  char zCfg[4096], zSt[4096];
  snprintf(zCfg, sizeof zCfg, "%s/config.json", zDir);
  snprintf(zSt, sizeof zSt, "%s/model.safetensors", zDir);
  if (dir_config(x, zCfg) != BT_OK) return BT_ERR;
  if (build(x, maxB, maxFrames) != BT_OK) return BT_ERR;
  if (bt_init_read_safetensors(&x->m, zSt, x->hostParams, &x->step) != BT_OK)
    return BT_ERR;
  return upload(x);
}

int bt_export_load_ckpt(bt_export_model *x, const char *zPath, int maxB,
                        bt_backend *be) {
  return load_ckpt(x, zPath, maxB, 0, be);
}

int bt_export_load_dir(bt_export_model *x, const char *zDir, int maxB,
                       bt_backend *be) {
  return load_dir(x, zDir, maxB, 0, be);
}

int bt_export_load(bt_export_model *x, const char *zPath, int isCkpt,
                   int maxB, int maxFrames, bt_backend *be) {
  return isCkpt ? load_ckpt(x, zPath, maxB, maxFrames, be)
                : load_dir(x, zPath, maxB, maxFrames, be);
}
