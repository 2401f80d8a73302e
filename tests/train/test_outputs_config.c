/*
 * test_outputs_config.c: the two pieces of the training loop that have a
 * contract of their own.
 *
 *   Config enums (trainer/config.h): every word of every enum key parses
 *   to its value and prints back as the same word, so the config text a
 *   checkpoint carries (and a resume compares) is what it always was; an
 *   unknown word names the valid ones; an unset required enum prints "".
 *
 *   Run outputs (trainer/outputs.h): all or nothing on open (a sink that
 *   fails to open leaves no other open: the ASan run of the unit label
 *   catches a leaked FILE or metrics handle), close safe twice, and the
 *   loss log / metrics lines a step writes, including time/ckpt_ms of the
 *   previous step.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "tests/check.h"
#include "trainer/config.h"
#include "trainer/outputs.h"

static void test_enum_round_trip(void) {
  int nEnum = 0;
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    if (k->eType != BT_CFG_ENUM) continue;
    nEnum++;
    for (const bt_cfg_choice *p = k->aChoice; p->zName; p++) {
      bt_config c;
      bt_config_defaults(&c);
      bt_config_set(&c, "model.type=mlp", "test"); /* a required key */
      char zSet[128], zText[64];
      snprintf(zSet, sizeof zSet, "%s.%s=%s", k->zSection, k->zName, p->zName);
      CHECK(bt_config_set(&c, zSet, "test") == BT_OK, "%s: %s", zSet,
            bt_err_msg());
      CHECK(*(const int *)((const char *)&c + k->offset) == p->value,
            "%s: field holds %d", zSet, *(const int *)((const char *)&c +
                                                       k->offset));
      bt_config_value_text(&c, k, zText, sizeof zText);
      CHECK(!strcmp(zText, p->zName), "%s prints back as '%s'", zSet, zText);
      /* The whole text survives the checkpoint round trip. */
      char *z = bt_config_to_text(&c);
      bt_config d;
      CHECK(z && bt_config_from_text(&d, z, "test") == BT_OK, "from_text");
      char zKey[128] = "";
      CHECK(!bt_config_first_diff(&c, &d, 0, zKey, sizeof zKey),
            "%s: round trip differs at %s", zSet, zKey);
      free(z);
    }
  }
  CHECK(nEnum >= 6, "only %d enum keys", nEnum);

  bt_config c;
  bt_config_defaults(&c);
  CHECK(bt_config_set(&c, "optim.schedule=cosin", "--set") == BT_ERR,
        "bad word accepted");
  CHECK(strstr(bt_err_msg(), "--set: bad value 'cosin' for optim.schedule: "
                             "expected one of cosine|linear|constant"),
        "message: %s", bt_err_msg());
  char *z = bt_config_to_text(&c);
  CHECK(z && strstr(z, "\nmodel.type = \n") == NULL &&
            strncmp(z, "model.type = \n", 14) == 0,
        "unset model.type prints as '': %.40s", z ? z : "(null)");
  free(z);
  CHECK(c.backend == BT_BACKEND_CPU && c.comm == BT_COMM_AUTO &&
            c.nan_policy == BT_NAN_POLICY_STOP &&
            c.schedule == BT_LR_SCHEDULE_COSINE &&
            c.ckpt_on_error == BT_CKPT_ON_ERROR_STOP,
        "defaults");
  CHECK(!strcmp(bt_config_model_name(BT_MODEL_MLP), "mlp"), "model name");
}

static char g_zDir[64];

static bt_outputs_spec spec_of(const bt_config *c, const char *zLossLog) {
  bt_outputs_spec s = {.pCfg = c,
                       .zRunDir = g_zDir,
                       .zLossLog = zLossLog,
                       .rank = 0,
                       .world = 1,
                       .startStep = 0,
                       .gpuFlopsPerItem = 0};
  return s;
}

static void test_outputs_open_fails_clean(bt_config *c) {
  char zLog[256], zPath[256];
  bt_outputs o;
  /* The loss log cannot open: nothing else is opened. */
  snprintf(zLog, sizeof zLog, "%s/no/such/dir/loss.txt", g_zDir);
  bt_outputs_spec s = spec_of(c, zLog);
  CHECK(bt_outputs_open(&o, &s) == BT_ERR, "open with a bad loss log");
  CHECK(strstr(bt_err_msg(), "cannot open loss log"), "%s", bt_err_msg());
  CHECK(o.pTrace == NULL && o.pLossLog == NULL && o.pMet == NULL && !o.bOpen,
        "failed open left a sink");
  bt_outputs_close(&o); /* safe on a failed object */

  /* The trace (last to open) cannot: loss log and metrics are closed
   * again (ASan reports them otherwise). RUN/trace is a plain file. */
  snprintf(zPath, sizeof zPath, "%s/trace", g_zDir);
  CHECK(bt_file_write_atomic(zPath, "x", 1) == BT_OK, "%s", bt_err_msg());
  snprintf(zLog, sizeof zLog, "%s/loss.txt", g_zDir);
  s = spec_of(c, zLog);
  c->trace = 1;
  CHECK(bt_outputs_open(&o, &s) == BT_ERR, "open with a bad trace dir");
  CHECK(o.pLossLog == NULL && o.pMet == NULL && !o.bOpen,
        "failed open left a sink");
  c->trace = 0;
  unlink(zPath);
}

static void test_outputs_steps(bt_config *c) {
  char zLog[256], zPath[256];
  snprintf(zLog, sizeof zLog, "%s/loss.txt", g_zDir);
  unlink(zLog);
  bt_outputs o;
  bt_outputs_spec s = spec_of(c, zLog);
  c->trace = 1;
  CHECK(bt_outputs_open(&o, &s) == BT_OK, "open: %s", bt_err_msg());
  CHECK(o.pTrace != NULL, "trace handle");
  for (long step = 1; step <= 2; step++) {
    bt_step_report r = {.step = step,
                        .loss = 2.5 / (double)step,
                        .val = NAN,
                        .lr = 1e-3,
                        .gradNorm = 0.5,
                        .items = 64,
                        .secondsToReport = 0.5,
                        .t = {.data = 0.1, .ckpt = 0.25, .total = 1}};
    bt_outputs_step(&o, &r);
    bt_outputs_step_end(&o, &r);
  }
  bt_outputs_close(&o);
  bt_outputs_close(&o); /* twice is fine */
  c->trace = 0;

  size_t n = 0;
  char *z = bt_file_read_all(zLog, &n);
  CHECK(z && !strcmp(z, "1 2.5\n2 1.25\n"), "loss log: %s", z ? z : "-");
  free(z);
  snprintf(zPath, sizeof zPath, "%s/metrics.jsonl", g_zDir);
  z = bt_file_read_all(zPath, &n);
  /* Step 1 has no previous checkpoint; step 2 reports step 1's. */
  CHECK(z && strstr(z, "\"step\":1,") && strstr(z, "\"time/ckpt_ms\":0") &&
            strstr(z, "\"time/ckpt_ms\":250") &&
            strstr(z, "\"perf/tokens_per_s\":128") &&
            strstr(z, "\"train/loss\":1.25"),
        "metrics: %s", z ? z : "-");
  free(z);
  snprintf(zPath, sizeof zPath, "%s/trace/rank0.json", g_zDir);
  z = bt_file_read_all(zPath, &n);
  CHECK(z && n > 2 && strstr(z, "gradient communication") &&
            z[n - 1 - (z[n - 1] == '\n')] == '}',
        "trace closed: %s", z ? z : "-");
  free(z);
}

int main(void) {
  test_enum_round_trip();
  snprintf(g_zDir, sizeof g_zDir, "/tmp/bt_outputs_XXXXXX");
  if (!mkdtemp(g_zDir)) return 1;
  setenv("BATON_PROGRESS", "plain", 1);
  bt_config c;
  const char *azSet[] = {"model.type=gpt", "log.tensorboard=false"};
  CHECK(bt_config_load(&c, NULL, azSet, 2) == BT_OK, "%s", bt_err_msg());
  test_outputs_open_fails_clean(&c);
  test_outputs_steps(&c);
  char zCmd[128];
  snprintf(zCmd, sizeof zCmd, "rm -rf %s", g_zDir);
  if (system(zCmd) != 0) fprintf(stderr, "could not remove %s\n", g_zDir);
  return CHECK_DONE();
}
