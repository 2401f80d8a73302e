/*
 * fuzz_meta.c: libFuzzer target for a checkpoint's meta as the trainer
 * reads it on resume (trainer/state.c bt_state_apply_meta).
 *
 * The input is the text of the manifest's "meta" value. It is embedded in
 * an otherwise valid manifest (no items, no files; "step" is meta.step when
 * that is a whole number in [0, 2^40], else 0, so a meta that agrees with
 * its manifest gets past the reader's cross-check), opened with
 * bt_ckpt_open_text, and taken back with bt_ckpt_meta_json: the path every
 * resume takes. Then what bt_state_apply_meta reads from it is checked the
 * way it reads it: step, loader.epoch/consumed, running.*, and the saved
 * config text through the config parser (bt_config_from_text), the parser
 * every config byte of a checkpoint goes through.
 * Invariants checked beyond "no crash, no sanitizer report":
 *   1. a saved config the parser accepts prints (bt_config_to_text) to a
 *      text that parses again to the same text (a resume compares configs
 *      by that text; a non-idempotent printer would refuse every resume);
 *   2. numbers are only converted to integers after a range check (a
 *      double outside int64_t is undefined behaviour: UBSan reports it).
 * Accepted (tests/fuzz/fuzz.h): the manifest opened and the meta has a
 * step, a loader with numeric epoch/consumed in range and a config the
 * parser accepts.
 *
 * Built two ways, like fuzz_ckpt.c: with -fsanitize=fuzzer by
 * tests/ckpt/fuzz_meta.sh (which also defines BT_FUZZ_STANDALONE: the
 * config parser's train.init_from hook, trainer/init.c, pulls in the whole
 * trainer, so a stub stands in for it there), and with tests/fuzz/replay.c
 * for the seed-corpus replay (ctest ckpt_fuzz_meta_replay).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_impl.h"
#include "tests/fuzz/fuzz.h"
#include "trainer/config.h"

int bt_fuzz_last_accepted = 0;
static char g_zDir[256];

#ifdef BT_FUZZ_STANDALONE
#include "trainer/init.h"
/* Stand-in for trainer/init.c in the libFuzzer build (see the header). */
int bt_init_merge_config(bt_config *pCfg, unsigned char *aSeen,
                         const char *zSource) {
  (void)pCfg;
  (void)aSeen;
  return bt_err_set("%s: train.init_from is not followed in the fuzzer",
                    zSource);
}
#endif

static void dir_cleanup(void) { rmdir(g_zDir); }

/* 1 if x is a whole number in [0, 2^53]: safe to convert to int64_t. */
static int whole_in_range(const cJSON *x) {
  return cJSON_IsNumber(x) && x->valuedouble >= 0 &&
         x->valuedouble <= 9007199254740992.0 &&
         x->valuedouble == floor(x->valuedouble);
}

/* What bt_state_apply_meta reads; BT_OK if it would accept it. */
static int check_meta(const char *zJson) {
  cJSON *o = cJSON_Parse(zJson);
  if (!o) return BT_ERR;
  int rc = BT_ERR;
  cJSON *pStep = cJSON_GetObjectItemCaseSensitive(o, "step");
  cJSON *pL = cJSON_GetObjectItemCaseSensitive(o, "loader");
  cJSON *pCfg = cJSON_GetObjectItemCaseSensitive(o, "config");
  cJSON *pR = cJSON_GetObjectItemCaseSensitive(o, "running");
  if (!whole_in_range(pStep) || !cJSON_IsObject(pL) || !cJSON_IsString(pCfg))
    goto done;
  if (!whole_in_range(cJSON_GetObjectItemCaseSensitive(pL, "epoch")) ||
      !whole_in_range(cJSON_GetObjectItemCaseSensitive(pL, "consumed")))
    goto done;
  if (cJSON_IsObject(pR)) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(pR, "items_seen");
    volatile int64_t n = whole_in_range(x) ? (int64_t)x->valuedouble : 0;
    (void)n;
  }
  bt_config a;
  if (bt_config_from_text(&a, pCfg->valuestring, "meta") != BT_OK) goto done;
  char *z1 = bt_config_to_text(&a);
  bt_config b;
  if (bt_config_from_text(&b, z1, "printed") != BT_OK) {
    fprintf(stderr, "fuzz_meta: printed config does not parse: %s\n%s\n",
            bt_err_msg(), z1);
    abort();
  }
  char *z2 = bt_config_to_text(&b);
  if (strcmp(z1, z2)) {
    fprintf(stderr, "fuzz_meta: config text not idempotent:\n%s\n---\n%s\n", z1, z2);
    abort();
  }
  free(z1);
  free(z2);
  rc = BT_OK;
done:
  cJSON_Delete(o);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData) {
  bt_fuzz_last_accepted = 0;
  if (!g_zDir[0]) {
    bt_log_set_level(0);
    snprintf(g_zDir, sizeof g_zDir, "/tmp/baton-fuzz-meta-%d", (int)getpid());
    mkdir(g_zDir, 0755);
    atexit(dir_cleanup);
  }
  if (nData > 1 << 20) return 0;
  char *zMeta = malloc(nData + 1);
  memcpy(zMeta, pData, nData);
  zMeta[nData] = 0;
  /* The manifest's step: meta.step when it can be one (see the header). */
  long step = 0;
  cJSON *o = cJSON_Parse(zMeta);
  cJSON *pS = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
  if (cJSON_IsNumber(pS) && pS->valuedouble >= 0 &&
      pS->valuedouble <= 1099511627776.0 &&
      pS->valuedouble == floor(pS->valuedouble))
    step = (long)pS->valuedouble;
  cJSON_Delete(o);
  size_t nMan = nData + 512;
  char *zMan = malloc(nMan);
  int n = snprintf(zMan, nMan,
                   "{\"format\":\"baton-checkpoint\",\"format_version\":1,"
                   "\"baton_version\":\"0.1.0\",\"step\":%ld,\"world_size\":1,"
                   "\"created\":\"x\",\"meta\":%s,\"items\":[],\"files\":[]}",
                   step, zMeta);
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open_text(&pC, g_zDir, zMan, (size_t)n, 1) == BT_OK) {
    const char *zJson = bt_ckpt_meta_json(pC);
    if (zJson && check_meta(zJson) == BT_OK) bt_fuzz_last_accepted = 1;
    bt_ckpt_close(pC);
  }
  free(zMan);
  free(zMeta);
  return 0;
}
