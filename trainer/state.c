/*
 * state.c: what a checkpoint holds, listed once for save and load.
 *
 * Tensors: "params" (fp32 master weights, replicated: rank 0 writes all
 * nParam elements), "adam_m" and "adam_v" (replicated, or with ZeRO-1
 * sharded: rank r writes the contiguous range [r C, (r+1) C) ∩ [0, nParam),
 * C = nFlat / world). Padding beyond nParam is never saved, so a
 * checkpoint does not depend on the world size that wrote it.
 *
 * ZeRO-1 moments live in memory as the rank's slices of every gradient
 * bucket (grad_sync.h), not as one range, while the checkpoint format
 * wants one contiguous range per rank (what any world size can reshard).
 * zero_exchange converts between the two, bucket by bucket, with one
 * host all-reduce per bucket: each rank puts the elements it has into a
 * zeroed copy of the bucket and the SUM over ranks, done on the bit
 * patterns as int32 (x + 0 == x exactly, -0.0 and NaN payloads included),
 * leaves every element with its one owner's bits. Save: slices -> range;
 * load (bt_state_commit_load): range -> slices. Checkpoints written before
 * the slices (one contiguous shard per rank) are the same format.
 * Scalars go into the manifest's meta JSON: step, loader (epoch, consumed),
 * running metrics and the full config text. There is no random-number
 * state: every random draw is a pure function of (seed, purpose, index).
 */
#include "base/util.h"
#include "trainer/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *host_of(bt_trainer *tr, float *pDev, float *pStage, size_t n,
                      int forSave) {
  if (bt_backend_kind_of(tr->be) == BT_BACKEND_CPU) return pDev;
  if (forSave) bt_mem_to_host(tr->be, pStage, pDev, n);
  return pStage;
}

/* An fp32 range [lo, hi) of a flat buffer of total elements. */
static bt_ckpt_item f32_item(const char *zName, float *pData, size_t total,
                             size_t lo, size_t hi, int sharded) {
  return (bt_ckpt_item){.zName = zName,
                        .eType = BT_CKPT_F32,
                        .pData = pData,
                        .total = total,
                        .lo = lo,
                        .hi = hi,
                        .sharded = sharded};
}

/* ZeRO-1: this rank's contiguous checkpoint range of the moments. */
static void zero_ckpt_range(const bt_trainer *tr, size_t *pLo, size_t *pHi) {
  size_t C = tr->model.nFlat / (size_t)tr->world, nParam = tr->model.nParam;
  size_t lo = (size_t)tr->rank * C, hi = lo + C;
  *pLo = lo < nParam ? lo : nParam;
  *pHi = hi < nParam ? hi : nParam;
}

/* See the file's comment. pSlices: nMom host floats in slice layout;
 * pRange: this rank's checkpoint range (zero_ckpt_range). Collective. */
static int zero_exchange(bt_trainer *tr, float *pSlices, float *pRange,
                         int toRange) {
  const bt_grad_sync *pS = &tr->sync;
  size_t cLo, cHi, nMax = 0;
  zero_ckpt_range(tr, &cLo, &cHi);
  for (int b = 0; b < pS->nBucket; b++)
    if (pS->aBucket[b].hi - pS->aBucket[b].lo > nMax)
      nMax = pS->aBucket[b].hi - pS->aBucket[b].lo;
  float *pScratch = bt_malloc(nMax * sizeof(float), "ZeRO moment exchange");
  if (!pScratch) return BT_ERR;
  int rc = BT_OK;
  for (int b = 0; b < pS->nBucket && rc == BT_OK; b++) {
    const bt_bucket *pB = &pS->aBucket[b];
    size_t q = pB->sliceHi - pB->sliceLo;
    size_t a = pB->lo > cLo ? pB->lo : cLo, e = pB->hi < cHi ? pB->hi : cHi;
    memset(pScratch, 0, (pB->hi - pB->lo) * sizeof(float));
    if (toRange)
      memcpy(pScratch + (pB->sliceLo - pB->lo), pSlices + pB->momOff,
             q * sizeof(float));
    else if (e > a)
      memcpy(pScratch + (a - pB->lo), pRange + (a - cLo),
             (e - a) * sizeof(float));
    rc = bt_comm_host_allreduce(tr->pComm, pScratch, pB->hi - pB->lo, BT_I32,
                                BT_SUM);
    if (rc != BT_OK) break;
    if (!toRange)
      memcpy(pSlices + pB->momOff, pScratch + (pB->sliceLo - pB->lo),
             q * sizeof(float));
    else if (e > a)
      memcpy(pRange + (a - cLo), pScratch + (a - pB->lo),
             (e - a) * sizeof(float));
  }
  free(pScratch);
  return rc;
}

/* The moments in host memory in slice layout: the backend's own on CPU,
 * else the staging copies (filled from the device for a save). */
static void moments_host(bt_trainer *tr, float **ppM, float **ppV,
                         int forSave) {
  size_t n = tr->optim.nMom;
  *ppM = host_of(tr, tr->optim.m, tr->hostStageM, n, forSave);
  *ppV = host_of(tr, tr->optim.v, tr->hostStageV, n, forSave);
}

int bt_state_items(bt_trainer *tr, bt_ckpt_item *a, int nMax, int forSave) {
  BT_ASSERT(nMax >= 3);
  bt_model *m = &tr->model;
  size_t nParam = m->nParam;
  float *pM, *pV;
  moments_host(tr, &pM, &pV, forSave);
  size_t lo = 0, hi = nParam;
  int sharded = tr->sync.zero;
  if (sharded) {
    /* The checkpoint's contiguous range, converted from the slices for a
     * save; filled by the load and converted in bt_state_commit_load. */
    zero_ckpt_range(tr, &lo, &hi);
    if (forSave &&
        (zero_exchange(tr, pM, tr->hostZeroM, 1) != BT_OK ||
         zero_exchange(tr, pV, tr->hostZeroV, 1) != BT_OK))
      return BT_ERR;
    pM = tr->hostZeroM;
    pV = tr->hostZeroV;
  }
  /* params: replicated, rank 0 writes all nParam elements. */
  a[0] = f32_item("params",
                  host_of(tr, m->params, tr->hostStage, m->nFlat, forSave),
                  nParam, 0, nParam, 0);
  a[1] = f32_item("adam_m", pM, nParam, lo, hi, sharded);
  a[2] = f32_item("adam_v", pV, nParam, lo, hi, sharded);
  return 3;
}

int bt_state_commit_load(bt_trainer *tr) {
  if (tr->sync.zero) {
    float *pM, *pV;
    moments_host(tr, &pM, &pV, 0);
    if (zero_exchange(tr, pM, tr->hostZeroM, 0) != BT_OK ||
        zero_exchange(tr, pV, tr->hostZeroV, 0) != BT_OK)
      return bt_err_prefix("spreading the loaded ZeRO-1 moments: ");
  }
  if (bt_backend_kind_of(tr->be) != BT_BACKEND_CPU) {
    size_t nMom = tr->optim.nMom;
    bt_mem_from_host(tr->be, tr->model.params, tr->hostStage,
                     tr->model.nFlat);
    bt_mem_from_host(tr->be, tr->optim.m, tr->hostStageM, nMom);
    bt_mem_from_host(tr->be, tr->optim.v, tr->hostStageV, nMom);
  }
  /* The checkpoint holds the fp32 master; bf16 derives its working copy. */
  bt_model_refresh_work(&tr->model);
  return BT_OK;
}

/* The speech model's audio stream has the token stream's state shape
 * (audio_loader.h: epoch, consumed in plan batches), so both go through
 * the same "loader" meta entry and the same resume path. */
bt_loader_state bt_state_loader_get(const bt_trainer *tr) {
  if (tr->pAudio) return bt_audio_loader_get_state(tr->pAudio);
  return bt_loader_get_state(tr->pLoader);
}

int bt_state_loader_seek(bt_trainer *tr, const bt_loader_state *pState) {
  if (tr->pAudio) return bt_audio_loader_seek(tr->pAudio, pState);
  return bt_loader_seek(tr->pLoader, pState);
}

char *bt_state_meta_json(bt_trainer *tr) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "step", (double)tr->step);
  cJSON_AddStringToObject(o, "baton_version", BATON_VERSION);
  cJSON_AddNumberToObject(o, "world_size", tr->world);
  cJSON_AddBoolToObject(o, "zero", tr->sync.zero);
  bt_loader_state ls = bt_state_loader_get(tr);
  cJSON *pL = cJSON_AddObjectToObject(o, "loader");
  cJSON_AddNumberToObject(pL, "epoch", (double)ls.epoch);
  cJSON_AddNumberToObject(pL, "consumed", (double)ls.consumed);
  cJSON *pR = cJSON_AddObjectToObject(o, "running");
  cJSON_AddNumberToObject(pR, "loss_ema", tr->run.lossEma);
  if (isfinite(tr->run.bestVal))
    cJSON_AddNumberToObject(pR, "best_val", tr->run.bestVal);
  cJSON_AddNumberToObject(pR, "val_no_improve", tr->run.nNoImprove);
  cJSON_AddNumberToObject(pR, "train_seconds", tr->run.trainSeconds);
  cJSON_AddNumberToObject(pR, "items_seen", (double)tr->run.itemsSeen);
  cJSON *pM = cJSON_AddObjectToObject(o, "model");
  cJSON_AddStringToObject(pM, "type",
                          bt_config_model_name(tr->cfg.model_type));
  cJSON_AddNumberToObject(pM, "n_param", (double)tr->model.nParam);
  cJSON_AddStringToObject(o, "config", tr->zCfgText);
  /* The dataset's identity: the config holds only its path, and a file
   * swapped behind the same path would resume silently on other data. */
  char zPrint[64];
  if (bt_file_fingerprint(tr->cfg.data_path, zPrint, sizeof zPrint) == BT_OK &&
      zPrint[0])
    cJSON_AddStringToObject(o, "data_fingerprint", zPrint);
  else
    bt_err_clear();
  char *z = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return z;
}

/* The dataset behind data.path must be the one the checkpoint was trained
 * on (its size and first and last 64 KiB: bt_file_fingerprint). A
 * checkpoint without a fingerprint (older, or synthetic data) passes. On a
 * mismatch *pRc becomes BT_STATE_CONFIG_CHANGED: a deliberate change, not
 * damage, so the resume stops instead of falling back. */
static int state_check_data(bt_trainer *tr, cJSON *o, const char *zDir,
                            int *pRc) {
  cJSON *pF = cJSON_GetObjectItemCaseSensitive(o, "data_fingerprint");
  if (!cJSON_IsString(pF)) return BT_OK;
  char zNow[64];
  if (bt_file_fingerprint(tr->cfg.data_path, zNow, sizeof zNow) != BT_OK)
    return BT_ERR;
  if (!strcmp(zNow, pF->valuestring)) return BT_OK;
  *pRc = BT_STATE_CONFIG_CHANGED;
  return bt_err_set("data.path '%s' is not the dataset %s was trained on "
                    "(size:hash %s then, %s now: another file behind the "
                    "same path?); put the original back, or to train these "
                    "weights on it, start a new run directory with "
                    "train.init_from = %s",
                    tr->cfg.data_path, zDir, pF->valuestring,
                    zNow[0] ? zNow : "not a regular file", zDir);
}

int bt_state_apply_meta(bt_trainer *tr, const char *zJson, const char *zDir) {
  cJSON *o = cJSON_Parse(zJson);
  if (!o) return bt_err_set("%s: manifest meta is not valid JSON", zDir);
  int rc = BT_ERR;
  cJSON *pStep = cJSON_GetObjectItemCaseSensitive(o, "step");
  cJSON *pL = cJSON_GetObjectItemCaseSensitive(o, "loader");
  cJSON *pCfg = cJSON_GetObjectItemCaseSensitive(o, "config");
  cJSON *pR = cJSON_GetObjectItemCaseSensitive(o, "running");
  if (!cJSON_IsNumber(pStep) || !cJSON_IsObject(pL) || !cJSON_IsString(pCfg)) {
    bt_err_set("%s: manifest meta lacks step, loader or config", zDir);
    goto done;
  }
  bt_config saved;
  if (bt_config_from_text(&saved, pCfg->valuestring, zDir) != BT_OK)
    goto done;
  char zKey[128];
  if (bt_config_first_diff(&saved, &tr->cfg, 1, zKey, sizeof zKey)) {
    const bt_cfg_key *k = NULL;
    for (int i = 0; i < bt_config_nkeys; i++) {
      char zName[128];
      bt_snprintf(zName, sizeof zName, "%s.%s", bt_config_keys[i].zSection,
                  bt_config_keys[i].zName);
      if (!strcmp(zName, zKey)) k = &bt_config_keys[i];
    }
    char va[BT_CFG_STR_MAX + 8] = "", vb[BT_CFG_STR_MAX + 8] = "";
    if (k) {
      bt_config_value_text(&saved, k, va, sizeof va);
      bt_config_value_text(&tr->cfg, k, vb, sizeof vb);
    }
    /* Only the model's shape ties the weights to the checkpoint: for
     * anything else, starting afresh from its weights is the way. */
    char zHint[1300] = "";
    if (strncmp(zKey, "model.", 6))
      bt_snprintf(zHint, sizeof zHint,
                  "; to train these weights on it, start a new run directory "
                  "with train.init_from = %s (fresh optimizer state, step 0)",
                  zDir);
    bt_err_set("%s is %s in the checkpoint but %s now; it changes the "
               "model or the data stream (start a new run directory, or set "
               "it back)%s",
               zKey, va, vb, zHint);
    rc = BT_STATE_CONFIG_CHANGED;
    goto done;
  }
  if (state_check_data(tr, o, zDir, &rc) != BT_OK) goto done;
  /* Safe keys that changed are allowed and logged. */
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    char va[BT_CFG_STR_MAX + 8], vb[BT_CFG_STR_MAX + 8];
    bt_config_value_text(&saved, k, va, sizeof va);
    bt_config_value_text(&tr->cfg, k, vb, sizeof vb);
    if (strcmp(va, vb))
      bt_log_info("resume: %s.%s changed from %s to %s", k->zSection,
                  k->zName, va, vb);
  }
  tr->step = (long)pStep->valuedouble;
  bt_optim_log_resume(&saved, &tr->cfg, tr->step);
  cJSON *pE = cJSON_GetObjectItemCaseSensitive(pL, "epoch");
  cJSON *pC = cJSON_GetObjectItemCaseSensitive(pL, "consumed");
  /* Range-checked before the conversion: a double beyond int64_t (1e300)
   * is undefined behaviour to convert (found by tests/ckpt/fuzz/fuzz_meta.c). */
  if (!cJSON_IsNumber(pE) || !cJSON_IsNumber(pC) || !(pE->valuedouble >= 0) ||
      !(pC->valuedouble >= 0) || pE->valuedouble > 9007199254740992.0 ||
      pC->valuedouble > 9007199254740992.0) {
    bt_err_set("%s: manifest meta has a bad loader state", zDir);
    goto done;
  }
  bt_loader_state ls = {.epoch = (int64_t)pE->valuedouble,
                        .consumed = (int64_t)pC->valuedouble};
  if (bt_state_loader_seek(tr, &ls) != BT_OK) {
    bt_err_prefix("%s: restoring the data stream: ", zDir);
    goto done;
  }
  if (cJSON_IsObject(pR)) {
    cJSON *x;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(pR, "loss_ema")))
      tr->run.lossEma = x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(pR, "best_val")))
      tr->run.bestVal = x->valuedouble;
    if (cJSON_IsNumber(
            x = cJSON_GetObjectItemCaseSensitive(pR, "val_no_improve")))
      tr->run.nNoImprove = (int)x->valuedouble;
    if (cJSON_IsNumber(
            x = cJSON_GetObjectItemCaseSensitive(pR, "train_seconds")))
      tr->run.trainSeconds = x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(pR, "items_seen")))
      tr->run.itemsSeen = (int64_t)x->valuedouble;
  }
  rc = BT_OK;
done:
  cJSON_Delete(o);
  return rc;
}
