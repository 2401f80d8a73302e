/*
 * test_metrics.c: the JSONL sink written, parsed back with cJSON, appended
 * to on "resume" (after a torn last line), non-finite values, tag limits,
 * buffering rules and the rank != 0 no-op.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "tests/check.h"
#include "trainer/observe/metrics.h"

static char g_zDir[64];

/* Reads RUN/metrics.jsonl into lines; returns the count. */
static int read_lines(char ***pazLine) {
  char zPath[256];
  snprintf(zPath, sizeof zPath, "%s/metrics.jsonl", g_zDir);
  size_t n = 0;
  char *z = bt_file_read_all(zPath, &n);
  *pazLine = NULL;
  if (!z) return -1;
  int nLine = 0;
  char **az = calloc(1024, sizeof *az);
  for (char *tok = strtok(z, "\n"); tok && nLine < 1024; tok = strtok(NULL, "\n"))
    az[nLine++] = strdup(tok);
  free(z);
  *pazLine = az;
  return nLine;
}

static void free_lines(char **az, int n) {
  for (int i = 0; i < n; i++) free(az[i]);
  free(az);
}

static double num(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void test_write_and_parse(void) {
  bt_metrics *m = NULL;
  CHECK(bt_metrics_open(&m, g_zDir, 1, 1) == BT_OK && m, "open: %s", bt_err_msg());
  for (int s = 1; s <= 3; s++) {
    CHECK(bt_metrics_scalar(m, s, "train/loss", 2.5 / s) == BT_OK, "scalar");
    CHECK(bt_metrics_scalar(m, s, "train/lr", 3e-4) == BT_OK, "scalar");
    CHECK(bt_metrics_flush_step(m, s) == BT_OK, "flush %d: %s", s, bt_err_msg());
  }
  /* Same tag twice: the last value wins. Non-finite -> null. Odd tag text. */
  bt_metrics_scalar(m, 4, "train/loss", 9.0);
  bt_metrics_scalar(m, 4, "train/loss", 0.1);
  bt_metrics_scalar(m, 4, "val/loss", NAN);
  bt_metrics_scalar(m, 4, "odd \"tag\"\\", INFINITY);
  bt_metrics_scalar(m, 4, "exact", 0.1 + 0.2);
  /* A new step flushes the buffered one (nothing lost). */
  bt_metrics_scalar(m, 5, "train/loss", 0.05);
  CHECK(bt_metrics_flush_step(m, 5) == BT_OK, "flush 5");
  /* Reserved and bad tags. */
  CHECK(bt_metrics_scalar(m, 6, "step", 1) == BT_ERR, "reserved step");
  CHECK(bt_metrics_scalar(m, 6, "time", 1) == BT_ERR, "reserved time");
  CHECK(bt_metrics_scalar(m, 6, "", 1) == BT_ERR, "empty tag");
  char zLong[BT_METRICS_MAX_TAG + 2];
  memset(zLong, 'a', sizeof zLong - 1);
  zLong[sizeof zLong - 1] = 0;
  CHECK(bt_metrics_scalar(m, 6, zLong, 1) == BT_ERR, "long tag");
  /* Tag limit per step. */
  int rcLast = BT_OK;
  for (int i = 0; i <= BT_METRICS_MAX_TAGS; i++) {
    char zT[32];
    snprintf(zT, sizeof zT, "t%d", i);
    rcLast = bt_metrics_scalar(m, 6, zT, i);
  }
  CHECK(rcLast == BT_ERR && strstr(bt_err_msg(), "more than"), "tag limit: %s",
        bt_err_msg());
  /* Flushing a different step than buffered: written anyway, error said. */
  CHECK(bt_metrics_flush_step(m, 7) == BT_ERR, "flush mismatch");
  CHECK(bt_metrics_flush_step(m, 7) == BT_OK, "flush with nothing buffered");
  CHECK(bt_metrics_close(m) == BT_OK, "close: %s", bt_err_msg());

  char **az;
  int n = read_lines(&az);
  CHECK(n == 6, "lines %d", n);
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_Parse(az[i]);
    CHECK(o != NULL, "line %d parses: %s", i, az[i]);
    if (!o) continue;
    int step = (int)num(o, "step");
    CHECK(num(o, "time") > 1.7e9, "time is Unix seconds");
    if (step >= 1 && step <= 3) {
      CHECK(num(o, "train/loss") == 2.5 / step, "loss %d exact", step);
      CHECK(num(o, "train/lr") == 3e-4, "lr");
    }
    if (step == 4) {
      CHECK(num(o, "train/loss") == 0.1, "last value wins");
      CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "val/loss")),
            "NaN -> null");
      CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "odd \"tag\"\\")),
            "escaped tag, inf -> null");
      CHECK(num(o, "exact") == 0.1 + 0.2, "round trip of 0.1+0.2");
      CHECK(strstr(az[i], "\"train/loss\":0.1,") != NULL, "short form: %s", az[i]);
    }
    if (step == 6) {
      CHECK(cJSON_GetArraySize(o) == 2 + BT_METRICS_MAX_TAGS, "64 tags kept");
    }
    cJSON_Delete(o);
  }
  free_lines(az, n);
}

static void test_resume(void) {
  /* A crash left a torn line: the next open starts a new line first. */
  char zPath[256];
  snprintf(zPath, sizeof zPath, "%s/metrics.jsonl", g_zDir);
  FILE *f = fopen(zPath, "a");
  fputs("{\"step\":7,\"ti", f);
  fclose(f);
  bt_metrics *m = NULL;
  CHECK(bt_metrics_open(&m, g_zDir, 1, 0) == BT_OK, "reopen");
  CHECK(bt_metrics_mark_start(m, 5) == BT_OK, "mark start");
  bt_metrics_scalar(m, 6, "train/loss", 42.0);
  CHECK(bt_metrics_close(m) == BT_OK, "close flushes the buffered step");
  char **az;
  int n = read_lines(&az);
  CHECK(n == 8, "lines after resume %d", n);
  if (n == 8) {
    CHECK(cJSON_Parse(az[6]) == NULL, "torn line stays unparsable");
    cJSON *o = cJSON_Parse(az[7]);
    CHECK(o && num(o, "step") == 6 && num(o, "train/loss") == 42.0,
          "appended line: %s", az[7]);
    cJSON_Delete(o);
  }
  free_lines(az, n);
}

static void test_inactive(void) {
  char zOther[128];
  snprintf(zOther, sizeof zOther, "%s/rank1", g_zDir);
  bt_log_set_rank(1, 2);
  bt_metrics *m = NULL;
  CHECK(bt_metrics_open(&m, zOther, 1, 1) == BT_OK && m, "open on rank 1");
  CHECK(bt_metrics_scalar(m, 1, "x", 1) == BT_OK, "no-op scalar");
  CHECK(bt_metrics_flush_step(m, 1) == BT_OK, "no-op flush");
  CHECK(bt_metrics_close(m) == BT_OK, "no-op close");
  CHECK(!bt_path_exists(zOther), "rank 1 created nothing");
  bt_log_set_rank(0, 1);
  CHECK(bt_metrics_scalar(NULL, 1, "x", 1) == BT_OK, "NULL handle");
  CHECK(bt_metrics_close(NULL) == BT_OK, "NULL close");
  /* Both sinks off: nothing created either. */
  CHECK(bt_metrics_open(&m, zOther, 0, 0) == BT_OK, "open, sinks off");
  bt_metrics_scalar(m, 1, "x", 1);
  bt_metrics_close(m);
  CHECK(!bt_path_exists(zOther), "sinks off created nothing");
  /* Unusable run directory: an error naming it. */
  CHECK(bt_metrics_open(&m, "/proc/nope/run", 1, 1) == BT_ERR && !m,
        "bad run dir: %s", bt_err_msg());
}

int main(void) {
  snprintf(g_zDir, sizeof g_zDir, "/tmp/bt_metrics_XXXXXX");
  CHECK(mkdtemp(g_zDir) != NULL, "mkdtemp");
  test_write_and_parse();
  test_resume();
  test_inactive();
  char zCmd[128];
  snprintf(zCmd, sizeof zCmd, "rm -rf '%s'", g_zDir);
  CHECK(system(zCmd) == 0, "cleanup");
  return CHECK_DONE();
}
