/*
 * test_ckpt_io.c: single-process checkpoint tests (world size 1, no
 * communicator): save/load round trip (sync and async), snapshot semantics,
 * chunked files and range reads across them, retention, corruption and
 * truncation fallback, crafted manifests, disk full, and a crash at every
 * fault point (a child process killed by BATON_FAULT).
 *
 * The binary doubles as the crash child: `ckpt_io child RUN STEP` saves
 * one checkpoint of STEP with deterministic content and exits 0, or 3 after
 * printing the save error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "tests/check.h"
#include "tests/ckpt/ckpt_testutil.h"

#define N_PARAM 50000
#define N_OPT 30000

static uint64_t key_of(long step, int which) {
  return bt_rng_key(42, (uint64_t)which, (uint64_t)step, 0);
}

/* Standard content of checkpoint `step` used by the child and the checks. */
typedef struct state {
  float *pParam, *pOpt;
  char zText[64];
  bt_ckpt_item a[3];
} state;

static void state_make(state *s, long step) {
  s->pParam = malloc(N_PARAM * 4);
  s->pOpt = malloc(N_OPT * 4);
  tu_fill_normal(s->pParam, 0, N_PARAM, key_of(step, 1), 0.02);
  tu_fill_normal(s->pOpt, 0, N_OPT, key_of(step, 2), 1e-4);
  snprintf(s->zText, sizeof s->zText, "{\"loader\":{\"epoch\":%ld}}", step);
  s->a[0] = (bt_ckpt_item){"params", BT_CKPT_F32, s->pParam, N_PARAM, 0, N_PARAM, 0};
  s->a[1] = (bt_ckpt_item){"adam_m", BT_CKPT_F32, s->pOpt, N_OPT, 0, N_OPT, 1};
  s->a[2] = (bt_ckpt_item){"loader_state", BT_CKPT_BYTES, s->zText, strlen(s->zText), 0,
                           strlen(s->zText), 0};
}
static void state_free(state *s) {
  free(s->pParam);
  free(s->pOpt);
}

static bt_ckpt_options opts(const char *zRun, int async) {
  bt_ckpt_options o = {zRun, 3, 0, 3, async, 1};
  return o;
}

static int save_one(const char *zRun, long step, int async, size_t nChunk) {
  bt_ckpt_writer *pW = NULL;
  bt_ckpt_options o = opts(zRun, async);
  if (bt_ckpt_writer_create(&pW, NULL, &o) != BT_OK) return BT_ERR;
  if (nChunk) bt_ckpt_writer_set_chunk_bytes(pW, nChunk);
  state s;
  state_make(&s, step);
  char zMeta[128];
  snprintf(zMeta, sizeof zMeta, "{\"step\":%ld,\"lr\":0.0003}", step);
  int rc = bt_ckpt_save_begin(pW, step, zMeta, s.a, 3);
  if (rc == BT_OK) rc = bt_ckpt_finish(pW);
  state_free(&s);
  bt_ckpt_writer_free(pW);
  return rc;
}

/* Checks every element of checkpoint dir against state_make(step). */
static int content_ok(const char *zDir, long step) {
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open(&pC, zDir, 1) != BT_OK) return 0;
  state s;
  state_make(&s, step);
  float *p = malloc(N_PARAM * 4);
  int ok = bt_ckpt_step(pC) == step && bt_ckpt_world(pC) == 1;
  ok = ok && bt_ckpt_read_range(pC, "params", 0, N_PARAM, p) == BT_OK &&
       memcmp(p, s.pParam, N_PARAM * 4) == 0;
  ok = ok && bt_ckpt_read_range(pC, "adam_m", 0, N_OPT, p) == BT_OK &&
       memcmp(p, s.pOpt, N_OPT * 4) == 0;
  free(p);
  state_free(&s);
  bt_ckpt_close(pC);
  return ok;
}

/* ---- stderr capture (to check warnings) -------------------------------- */
static int g_saved = -1;
static char g_zCap[256];
static void cap_begin(void) {
  fflush(stderr);
  snprintf(g_zCap, sizeof g_zCap, "/tmp/baton-ckpt-cap-%d.txt", (int)getpid());
  g_saved = dup(2);
  int fd = open(g_zCap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 2);
  close(fd);
}
static char *cap_end(void) {
  fflush(stderr);
  dup2(g_saved, 2);
  close(g_saved);
  char *z = bt_file_read_all(g_zCap, NULL);
  unlink(g_zCap);
  return z ? z : strdup("");
}

/* ---- the crash child --------------------------------------------------- */
static int child_main(const char *zRun, long step, int async) {
  if (save_one(zRun, step, async, 64 << 10) != BT_OK) {
    fprintf(stderr, "child save error: %s\n", bt_err_msg());
    return 3;
  }
  return 0;
}

/* Runs this binary as a child with BATON_FAULT=zFault; returns wait status.
 * The child's stderr goes to zErrFile. */
static int run_child(const char *zRun, long step, const char *zFault,
                     const char *zErrFile) {
  pid_t pid = fork();
  if (pid == 0) {
    if (zFault) setenv("BATON_FAULT", zFault, 1);
    int fd = open(zErrFile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    char zStep[32];
    snprintf(zStep, sizeof zStep, "%ld", step);
    execl("/proc/self/exe", "ckpt_io", "child", zRun, zStep, "1", (char *)NULL);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

static int read_latest(const char *zRun, char *z, size_t n) {
  char zP[4200];
  snprintf(zP, sizeof zP, "%s/latest", zRun);
  char *t = bt_file_read_all(zP, NULL);
  if (!t) return -1;
  snprintf(z, n, "%s", t);
  z[strcspn(z, "\n")] = 0;
  free(t);
  return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_round_trip(int async) {
  char zRun[256], zDir[512], zFound[512];
  tu_tmpdir(zRun, sizeof zRun, "rt");
  /* 16 KiB chunks: params spans 13 files, adam_m 8. */
  CHECK(save_one(zRun, 7, async, 16 << 10) == BT_OK, "save: %s", bt_err_msg());
  snprintf(zDir, sizeof zDir, "%s/ckpt-00000007", zRun);
  CHECK(content_ok(zDir, 7), "content of step 7 (async=%d): %s", async, bt_err_msg());
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 &&
            strcmp(zFound, zDir) == 0, "find_latest: %s", zFound);
  char zL[64];
  CHECK(read_latest(zRun, zL, sizeof zL) == 0 && strcmp(zL, "ckpt-00000007") == 0,
        "latest names %s", zL);

  bt_ckpt *pC = NULL;
  CHECK(bt_ckpt_open(&pC, zDir, 0) == BT_OK, "%s", bt_err_msg());
  if (pC) {
    /* meta embedded as JSON, returned compact */
    CHECK(strcmp(bt_ckpt_meta_json(pC), "{\"step\":7,\"lr\":0.0003}") == 0,
          "meta %s", bt_ckpt_meta_json(pC));
    CHECK(bt_ckpt_item_total(pC, "params") == N_PARAM, "total");
    CHECK(bt_ckpt_item_total(pC, "nothing") == 0, "absent item");
    bt_ckpt_dtype e;
    CHECK(bt_ckpt_item_dtype(pC, "loader_state", &e) == BT_OK && e == BT_CKPT_BYTES, "dtype");
    char zText[64] = {0};
    CHECK(bt_ckpt_read_range(pC, "loader_state", 0, 22, zText) == BT_OK &&
              strcmp(zText, "{\"loader\":{\"epoch\":7}}") == 0, "bytes item: %s", zText);
    /* ranges across chunk boundaries (4096 floats per chunk) */
    uint64_t aR[][2] = {{0, 1}, {4095, 4097}, {100, 20000}, {N_PARAM - 3, N_PARAM},
                        {8192, 8192}, {12000, 12288}};
    float *p = malloc(N_PARAM * 4);
    for (size_t k = 0; k < sizeof aR / sizeof aR[0]; k++) {
      uint64_t lo = aR[k][0], hi = aR[k][1];
      int ok = bt_ckpt_read_range(pC, "params", lo, hi, p) == BT_OK;
      for (uint64_t i = lo; ok && i < hi; i++)
        ok = p[i - lo] == tu_val(key_of(7, 1), i, 0.02);
      CHECK(ok, "range [%llu,%llu): %s", (unsigned long long)lo,
            (unsigned long long)hi, bt_err_msg());
    }
    CHECK(bt_ckpt_read_range(pC, "params", 10, N_PARAM + 1, p) == BT_ERR, "out of range read");
    CHECK(bt_ckpt_read_range(pC, "params", 10, 5, p) == BT_ERR, "lo > hi read");
    free(p);
    bt_ckpt_close(pC);
  }
  /* manifest fields */
  char zMan[600];
  snprintf(zMan, sizeof zMan, "%s/manifest.json", zDir);
  char *zText = bt_file_read_all(zMan, NULL);
  cJSON *pRoot = zText ? cJSON_Parse(zText) : NULL;
  CHECK(pRoot && cJSON_IsObject(cJSON_GetObjectItem(pRoot, "meta")), "meta is an object");
  CHECK(pRoot && cJSON_GetObjectItem(pRoot, "format_version")->valueint == 2, "format_version");
  CHECK(pRoot && cJSON_IsString(cJSON_GetObjectItem(pRoot, "manifest_xxh64")), "manifest_xxh64");
  CHECK(pRoot && cJSON_GetArraySize(cJSON_GetObjectItem(pRoot, "files")) == 13 + 8 + 1,
        "file count %d", pRoot ? cJSON_GetArraySize(cJSON_GetObjectItem(pRoot, "files")) : -1);
  cJSON_Delete(pRoot);
  free(zText);

  /* inspect */
  FILE *f = tmpfile();
  CHECK(bt_ckpt_inspect(zDir, f) == BT_OK, "inspect failed");
  rewind(f);
  char zOut[65536];
  size_t n = fread(zOut, 1, sizeof zOut - 1, f);
  zOut[n] = 0;
  fclose(f);
  /* `baton inspect RUN` picks the newest checkpoint; exit code 0 on PASS */
  {
    char *argv[] = {"inspect", zRun, NULL};
    fflush(stdout);
    int saved = dup(1);
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    close(fd);
    int code = bt_inspect_main(2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(code == 0, "inspect of the run directory: exit %d", code);
  }
  CHECK(strstr(zOut, "verify: PASS") && strstr(zOut, "step: 7") &&
            strstr(zOut, "world size at save: 1") && strstr(zOut, "compression ratio") &&
            strstr(zOut, "\"lr\":"),
        "inspect output:\n%s", zOut);
  tu_rm(zRun);
}

static void test_load_items(void) {
  char zRun[256], zDir[512];
  tu_tmpdir(zRun, sizeof zRun, "load");
  CHECK(save_one(zRun, 4, 1, 32 << 10) == BT_OK, "%s", bt_err_msg());
  snprintf(zDir, sizeof zDir, "%s/ckpt-00000004", zRun);
  state s, d;
  state_make(&s, 4);
  state_make(&d, 0);
  memset(d.pParam, 0, N_PARAM * 4);
  memset(d.zText, 0, sizeof d.zText);
  /* Resume as rank 1 of 3: the sharded item's slice only. */
  uint64_t lo = N_OPT / 3, hi = 2 * (uint64_t)N_OPT / 3;
  d.a[1].lo = lo;
  d.a[1].hi = hi;
  d.a[2].total = d.a[2].hi = strlen(s.zText);
  bt_ckpt *pC;
  CHECK(bt_ckpt_open(&pC, zDir, 0) == BT_OK, "%s", bt_err_msg());
  CHECK(bt_ckpt_load_items(pC, d.a, 3) == BT_OK, "%s", bt_err_msg());
  CHECK(memcmp(d.pParam, s.pParam, N_PARAM * 4) == 0, "replicated item");
  CHECK(memcmp(d.pOpt, s.pOpt + lo, (hi - lo) * 4) == 0, "sharded slice");
  CHECK(strcmp(d.zText, s.zText) == 0, "bytes item %s", d.zText);
  d.a[0].total = N_PARAM + 1;
  CHECK(bt_ckpt_load_items(pC, d.a, 1) == BT_ERR && strstr(bt_err_msg(), "expects"),
        "shape mismatch: %s", bt_err_msg());
  bt_ckpt_close(pC);
  state_free(&s);
  state_free(&d);
  tu_rm(zRun);
}

static void test_snapshot(void) {
  char zRun[256], zDir[512];
  tu_tmpdir(zRun, sizeof zRun, "snap");
  bt_ckpt_writer *pW;
  bt_ckpt_options o = opts(zRun, 1);
  CHECK(bt_ckpt_writer_create(&pW, NULL, &o) == BT_OK, "%s", bt_err_msg());
  size_t n = 1 << 20;
  float *p = malloc(n * 4);
  tu_fill_normal(p, 0, n, 5, 0.02);
  bt_ckpt_item it = {"params", BT_CKPT_F32, p, n, 0, n, 0};
  CHECK(bt_ckpt_save_begin(pW, 1, "{}", &it, 1) == BT_OK, "%s", bt_err_msg());
  /* The main thread goes on training: the source changes at once. */
  for (size_t i = 0; i < n; i++) p[i] = -1.0f;
  long done = -2;
  int polls = 0;
  while (done < 0 && polls < 100000) {
    CHECK(bt_ckpt_poll(pW, &done) == BT_OK, "%s", bt_err_msg());
    polls++;
    if (done < 0) usleep(1000);
  }
  CHECK(done == 1, "poll reported step %ld after %d polls", done, polls);
  printf("async save of 4 MiB: %d polls, main thread blocked %.2f ms\n", polls,
         1e3 * bt_ckpt_last_blocking_seconds(pW));
  bt_ckpt_writer_free(pW);
  snprintf(zDir, sizeof zDir, "%s/ckpt-00000001", zRun);
  bt_ckpt *pC;
  CHECK(bt_ckpt_open(&pC, zDir, 1) == BT_OK, "%s", bt_err_msg());
  float *q = malloc(n * 4);
  CHECK(bt_ckpt_read_range(pC, "params", 0, n, q) == BT_OK, "%s", bt_err_msg());
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) ok = q[i] == tu_val(5, i, 0.02);
  CHECK(ok, "saved data is not the snapshot taken at save_begin");
  bt_ckpt_close(pC);
  free(p);
  free(q);
  tu_rm(zRun);
}

static void test_retention(void) {
  char zRun[256];
  tu_tmpdir(zRun, sizeof zRun, "keep");
  bt_ckpt_writer *pW;
  bt_ckpt_options o = {zRun, 2, 10, 1, 0, 1};
  CHECK(bt_ckpt_writer_create(&pW, NULL, &o) == BT_OK, "%s", bt_err_msg());
  float x[16] = {1, 2, 3};
  bt_ckpt_item it = {"w", BT_CKPT_F32, x, 16, 0, 16, 0};
  for (long s = 1; s <= 23; s++) {
    x[0] = (float)s;
    CHECK(bt_ckpt_save_begin(pW, s, "null", &it, 1) == BT_OK, "%s", bt_err_msg());
    long d;
    CHECK(bt_ckpt_poll(pW, &d) == BT_OK && d == s, "sync save committed at poll: %ld", d);
  }
  bt_ckpt_writer_free(pW);
  long *aStep;
  char **az;
  int n;
  bt_ckpt_list(zRun, &aStep, &az, &n);
  char zGot[256] = "";
  for (int i = 0; i < n; i++)
    snprintf(zGot + strlen(zGot), sizeof zGot - strlen(zGot), "%ld ", aStep[i]);
  CHECK(strcmp(zGot, "23 22 20 10 ") == 0, "kept: %s", zGot);
  bt_ckpt_list_free(aStep, az, n);
  /* keep_last <= 0 keeps everything */
  bt_ckpt_options oAll = {zRun, 0, 0, 1, 0, 1};
  CHECK(bt_ckpt_writer_create(&pW, NULL, &oAll) == BT_OK, "%s", bt_err_msg());
  for (long s = 24; s <= 26; s++) {
    CHECK(bt_ckpt_save_begin(pW, s, "null", &it, 1) == BT_OK && bt_ckpt_finish(pW) == BT_OK,
          "%s", bt_err_msg());
  }
  bt_ckpt_writer_free(pW);
  bt_ckpt_list(zRun, &aStep, &az, &n);
  CHECK(n == 7, "keep_last 0 kept %d checkpoints, want 7", n);
  bt_ckpt_list_free(aStep, az, n);
  tu_rm(zRun);
}

static void test_corruption(void) {
  char zRun[256], zD1[512], zD2[512], zF[700], zP[700];
  tu_tmpdir(zRun, sizeof zRun, "corrupt");
  snprintf(zD1, sizeof zD1, "%s/ckpt-00000001", zRun);
  snprintf(zD2, sizeof zD2, "%s/ckpt-00000002", zRun);
  CHECK(save_one(zRun, 1, 1, 0) == BT_OK, "%s", bt_err_msg());
  const char *azWhat[] = {"payload byte", "manifest byte", "truncated payload",
                          "missing payload", "empty manifest", "half a manifest"};
  for (int k = 0; k < 6; k++) {
    CHECK(save_one(zRun, 2, 1, 0) == BT_OK, "%s", bt_err_msg());
    CHECK(tu_first_payload(zD2, zP, sizeof zP) == 0, "no payload in %s", zD2);
    snprintf(zF, sizeof zF, "%s/manifest.json", zD2);
    if (k == 0) tu_flip_byte(zP, 1000);
    if (k == 1) {
      /* a digit inside the step number: still JSON, wrong content */
      char *z = bt_file_read_all(zF, NULL);
      char *at = strstr(z, "\"xxh64\":");
      CHECK(at != NULL, "manifest has xxh64");
      tu_flip_byte(zF, (long)(at - z) + 10);
      free(z);
    }
    if (k == 2) tu_truncate(zP, 100);
    if (k == 3) unlink(zP);
    if (k == 4) tu_truncate(zF, 0);
    if (k == 5) {
      struct stat st;
      stat(zF, &st);
      tu_truncate(zF, (long)st.st_size / 2);
    }
    char zFound[512] = "";
    cap_begin();
    int rc = bt_ckpt_find_latest(zRun, zFound, sizeof zFound);
    char *zWarn = cap_end();
    CHECK(rc == 0 && strcmp(zFound, zD1) == 0, "%s: find_latest chose '%s'", azWhat[k], zFound);
    CHECK(strstr(zWarn, "warning") && strstr(zWarn, "ckpt-00000002"),
          "%s: no warning naming ckpt-2: %s", azWhat[k], zWarn);
    printf("%s -> %s", azWhat[k], zWarn);
    free(zWarn);
    FILE *f = fopen("/dev/null", "w");
    CHECK(bt_ckpt_inspect(zD2, f) == BT_ERR, "%s: inspect passed a damaged checkpoint", azWhat[k]);
    fclose(f);
    if (k == 0) {
      bt_ckpt *pC;
      CHECK(bt_ckpt_open(&pC, zD2, 0) == BT_OK, "open without verify");
      float *p = malloc(N_PARAM * 4);
      const char *zItem = strstr(zP, "adam_m") ? "adam_m" : "params";
      CHECK(bt_ckpt_read_range(pC, zItem, 0, 10, p) == BT_ERR &&
                strstr(bt_err_msg(), "checksum"), "read of damaged file: %s", bt_err_msg());
      free(p);
      bt_ckpt_close(pC);
    }
    tu_rm(zD2);
  }
  CHECK(content_ok(zD1, 1), "ckpt-1 intact");
  tu_rm(zRun);
}

/* Crafted manifests: each edit of a valid manifest must be rejected by the
 * parser with a message, never crash (run under ASan in the sanitize CI). */
static void test_crafted(void) {
  char zRun[256], zDir[512], zF[700];
  tu_tmpdir(zRun, sizeof zRun, "craft");
  CHECK(save_one(zRun, 3, 0, 64 << 10) == BT_OK, "%s", bt_err_msg());
  snprintf(zDir, sizeof zDir, "%s/ckpt-00000003", zRun);
  snprintf(zF, sizeof zF, "%s/manifest.json", zDir);
  char *zGood = bt_file_read_all(zF, NULL);
  /* Version 2's manifest checksum would reject every edit below by itself;
   * made into a version-1 manifest (no checksum, still read), each edit
   * reaches the validator it is aimed at. */
  {
    cJSON *p1 = cJSON_Parse(zGood);
    cJSON_DeleteItemFromObject(p1, "manifest_xxh64");
    cJSON_ReplaceItemInObject(p1, "format_version", cJSON_CreateNumber(1));
    free(zGood);
    zGood = cJSON_Print(p1);
    cJSON_Delete(p1);
    bt_ckpt *pC = NULL;
    CHECK(bt_ckpt_open_text(&pC, zDir, zGood, strlen(zGood), 1) == BT_OK,
          "version 1 manifest refused: %s", bt_err_msg());
    bt_ckpt_close(pC);
  }
  struct {
    const char *zPath; /* "files.0.lo" style, or "" for whole-text cases */
    const char *zJson; /* replacement value as JSON */
  } aCase[] = {
      {"format_version", "2"},       {"format_version", "3"},
      {"format_version", "0"},       {"format_version", "\"1\""},
      {"meta.step", "4"},            {"meta.step", "\"3\""},
      {"format", "\"other\""},       {"step", "-1"},
      {"step", "1.5"},               {"step", "1e300"},
      {"world_size", "0"},           {"items", "{}"},
      {"items.0.total", "1000000000000000"},
      {"items.0.total", "18446744073709551615"},
      {"items.0.dtype", "\"f64\""},  {"items.0.name", "\"../x\""},
      {"items.1.name", "\"params\""},
      {"files.0.lo", "-1"},          {"files.0.hi", "0"},
      {"files.0.hi", "1e15"},        {"files.0.raw_bytes", "1"},
      {"files.0.stored_bytes", "0"}, {"files.0.stored_bytes", "1e12"},
      {"files.0.file", "\"../../etc/passwd\""},
      {"files.0.file", "\"/etc/passwd\""},
      {"files.0.file", "\"..\""},    {"files.0.file", "\"manifest.json\""},
      {"files.0.file", "\"a\\u0000b\""},
      {"files.0.item", "\"nothing\""},
      {"files.0.codec", "\"lz4\""},  {"files.0.xxh64", "\"xyz\""},
      {"files.0.xxh64", "12"},       {"files.1.lo", "0"},
      {"files.1.file", "\"@0\""},
      {"files", "[]"},               {"meta", NULL},
  };
  int nCase = (int)(sizeof aCase / sizeof aCase[0]);
  for (int k = 0; k < nCase; k++) {
    cJSON *pRoot = cJSON_Parse(zGood);
    /* walk the dotted path */
    char zPath[128];
    snprintf(zPath, sizeof zPath, "%s", aCase[k].zPath);
    cJSON *pParent = pRoot;
    char *save = NULL, *tok = strtok_r(zPath, ".", &save), *last = tok;
    while ((tok = strtok_r(NULL, ".", &save)) != NULL) {
      pParent = (last[0] >= '0' && last[0] <= '9') ? cJSON_GetArrayItem(pParent, atoi(last))
                                                   : cJSON_GetObjectItem(pParent, last);
      last = tok;
    }
    cJSON *pNew = NULL;
    if (strcmp(aCase[k].zPath, "files.1.file") == 0)
      pNew = cJSON_CreateString(cJSON_GetArrayItem(cJSON_GetObjectItem(pRoot, "files"), 0)
                                    ->child->valuestring); /* duplicate name */
    else if (aCase[k].zJson)
      pNew = cJSON_Parse(aCase[k].zJson);
    if (last[0] >= '0' && last[0] <= '9') {
      if (pNew) cJSON_ReplaceItemInArray(pParent, atoi(last), pNew);
    } else if (pNew) {
      cJSON_ReplaceItemInObject(pParent, last, pNew);
    } else {
      cJSON_DeleteItemFromObject(pParent, last);
    }
    char *zBad = cJSON_Print(pRoot);
    bt_ckpt *pC = NULL;
    int rc = bt_ckpt_open_text(&pC, zDir, zBad, strlen(zBad), 1);
    CHECK(rc == BT_ERR && pC == NULL, "crafted %s=%s accepted", aCase[k].zPath,
          aCase[k].zJson ? aCase[k].zJson : "(deleted)");
    if (rc == BT_ERR && k < 40) printf("  %s=%s -> %s\n", aCase[k].zPath,
                                      aCase[k].zJson ? aCase[k].zJson : "(deleted)", bt_err_msg());
    bt_ckpt_close(pC);
    free(zBad);
    cJSON_Delete(pRoot);
  }
  /* whole-text cases */
  const char *azText[] = {"", "[]", "null", "{", "{\"format\":\"baton-checkpoint\"}",
                          "\xff\xfe{}"};
  for (size_t k = 0; k < sizeof azText / sizeof azText[0]; k++) {
    bt_ckpt *pC = NULL;
    CHECK(bt_ckpt_open_text(&pC, zDir, azText[k], strlen(azText[k]), 0) == BT_ERR,
          "text %zu accepted", k);
  }
  /* deep nesting in meta */
  size_t nDeep = 200000;
  char *zDeep = malloc(2 * nDeep + 300);
  char *w = zDeep;
  w += sprintf(w, "{\"meta\":");
  for (size_t i = 0; i < nDeep; i++) *w++ = '[';
  for (size_t i = 0; i < nDeep; i++) *w++ = ']';
  sprintf(w, "}");
  bt_ckpt *pC = NULL;
  CHECK(bt_ckpt_open_text(&pC, zDir, zDeep, strlen(zDeep), 0) == BT_ERR, "deep nesting accepted");
  free(zDeep);
  /* the untouched text still opens: the cases above failed for their edit */
  CHECK(bt_ckpt_open_text(&pC, zDir, zGood, strlen(zGood), 1) == BT_OK, "%s", bt_err_msg());
  bt_ckpt_close(pC);
  free(zGood);
  tu_rm(zRun);
}

static void test_crash_points(void) {
  const char *azPoint[] = {"ckpt.write", "ckpt.before_manifest", "ckpt.before_rename",
                           "ckpt.before_latest"};
  for (int k = 0; k < 4; k++) {
    char zRun[256], zD1[512], zD2[512], zFound[512], zErr[600], zFault[64];
    tu_tmpdir(zRun, sizeof zRun, "crash");
    snprintf(zD1, sizeof zD1, "%s/ckpt-00000001", zRun);
    snprintf(zD2, sizeof zD2, "%s/ckpt-00000002", zRun);
    snprintf(zErr, sizeof zErr, "%s.stderr", zRun);
    int st = run_child(zRun, 1, NULL, zErr);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child save of step 1 failed");
    snprintf(zFault, sizeof zFault, "%s:1", azPoint[k]);
    st = run_child(zRun, 2, zFault, zErr);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: child not killed (status %d)",
          azPoint[k], st);
    char zL[64] = "";
    read_latest(zRun, zL, sizeof zL);
    CHECK(strcmp(zL, "ckpt-00000001") == 0, "%s: latest names '%s'", azPoint[k], zL);
    cap_begin();
    int rc = bt_ckpt_find_latest(zRun, zFound, sizeof zFound);
    free(cap_end());
    /* Killed after the rename, the new checkpoint is complete and used. */
    const char *zWant = k == 3 ? zD2 : zD1;
    CHECK(rc == 0 && strcmp(zFound, zWant) == 0, "%s: find_latest chose '%s'", azPoint[k], zFound);
    CHECK(content_ok(zD1, 1), "%s: ckpt-1 damaged", azPoint[k]);
    if (k == 3) CHECK(content_ok(zD2, 2), "%s: ckpt-2 incomplete", azPoint[k]);
    char zTmp[512];
    snprintf(zTmp, sizeof zTmp, "%s/.tmp-ckpt-00000002", zRun);
    CHECK(bt_path_exists(zTmp) == (k < 3), "%s: temp directory %s", azPoint[k],
          bt_path_exists(zTmp) ? "left" : "missing");
    /* Restart: a new writer removes the stale temp directory; saving works. */
    cap_begin();
    int ok = save_one(zRun, 3, 1, 0) == BT_OK;
    free(cap_end());
    CHECK(ok, "%s: save after crash: %s", azPoint[k], bt_err_msg());
    CHECK(!bt_path_exists(zTmp), "%s: stale temp directory not removed", azPoint[k]);
    CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 && strstr(zFound, "ckpt-00000003"),
          "%s: after restart: %s", azPoint[k], zFound);
    unlink(zErr);
    tu_rm(zRun);
  }
  /* An I/O error (not a crash): clear message, previous checkpoint kept. */
  char zRun[256], zErr[600], zFound[512];
  tu_tmpdir(zRun, sizeof zRun, "eio");
  snprintf(zErr, sizeof zErr, "%s.stderr", zRun);
  run_child(zRun, 1, NULL, zErr);
  int st = run_child(zRun, 2, "ckpt.eio:1", zErr);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "eio child status %d", st);
  char *z = bt_file_read_all(zErr, NULL);
  CHECK(z && strstr(z, "checkpoint write failed: ") && strstr(z, ".tmp-ckpt-00000002/") &&
            strstr(z, "Input/output error (errno 5)"), "eio message: %s", z ? z : "");
  printf("injected EIO -> %s", z ? z : "");
  free(z);
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 && strstr(zFound, "ckpt-00000001"),
        "after eio: %s", zFound);
  char zTmp[512];
  snprintf(zTmp, sizeof zTmp, "%s/.tmp-ckpt-00000002", zRun);
  CHECK(!bt_path_exists(zTmp), "temp directory left after a failed save");
  unlink(zErr);
  tu_rm(zRun);
}

static void test_disk_full(void) {
  char zRun[256], zFound[512];
  tu_tmpdir(zRun, sizeof zRun, "full");
  int mounted = mount("tmpfs", zRun, "tmpfs", 0, "size=1m") == 0;
  printf("disk full via %s\n", mounted ? "a 1 MiB tmpfs" : "RLIMIT_FSIZE (mount refused)");
  /* step 1 small enough to fit */
  float small[1000];
  tu_fill_normal(small, 0, 1000, 9, 0.02);
  bt_ckpt_item it = {"params", BT_CKPT_F32, small, 1000, 0, 1000, 0};
  bt_ckpt_writer *pW;
  bt_ckpt_options o = opts(zRun, 1);
  CHECK(bt_ckpt_writer_create(&pW, NULL, &o) == BT_OK, "%s", bt_err_msg());
  CHECK(bt_ckpt_save_begin(pW, 1, "{}", &it, 1) == BT_OK && bt_ckpt_finish(pW) == BT_OK,
        "%s", bt_err_msg());
  /* step 2: 2 MiB of incompressible bytes */
  size_t n = 2 << 20;
  uint8_t *pBig = malloc(n);
  for (size_t i = 0; i < n; i++) pBig[i] = (uint8_t)(bt_rng_u64(3, i) >> 7);
  bt_ckpt_item it2 = {"blob", BT_CKPT_BYTES, pBig, n, 0, n, 0};
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  if (!mounted) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit r = {512 << 10, old.rlim_max};
    setrlimit(RLIMIT_FSIZE, &r);
  }
  int rc = bt_ckpt_save_begin(pW, 2, "{}", &it2, 1);
  if (rc == BT_OK) rc = bt_ckpt_finish(pW);
  if (!mounted) setrlimit(RLIMIT_FSIZE, &old);
  CHECK(rc == BT_ERR, "save into a full disk succeeded");
  const char *zWant = mounted ? "No space left on device (errno 28)" : "(errno 27)";
  CHECK(strstr(bt_err_msg(), zWant) && strstr(bt_err_msg(), "blob.r0.0-") &&
            strstr(bt_err_msg(), "previous checkpoint kept"), "message: %s", bt_err_msg());
  printf("disk full -> %s\n", bt_err_msg());
  bt_ckpt_writer_free(pW);
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 && strstr(zFound, "ckpt-00000001"),
        "after disk full: %s", zFound);
  char zTmp[512];
  snprintf(zTmp, sizeof zTmp, "%s/.tmp-ckpt-00000002", zRun);
  CHECK(!bt_path_exists(zTmp), "temp directory left after disk full");
  free(pBig);
  if (mounted) umount(zRun);
  tu_rm(zRun);
}

static void test_bad_args(void) {
  char zRun[256];
  tu_tmpdir(zRun, sizeof zRun, "args");
  bt_ckpt_writer *pW;
  bt_ckpt_options o = opts(zRun, 1);
  CHECK(bt_ckpt_writer_create(&pW, NULL, &o) == BT_OK, "%s", bt_err_msg());
  float x[4] = {0};
  bt_ckpt_item a[2] = {{"w", BT_CKPT_F32, x, 4, 0, 4, 0}, {"w", BT_CKPT_F32, x, 4, 0, 4, 0}};
  CHECK(bt_ckpt_save_begin(pW, 1, "{}", a, 2) == BT_ERR, "duplicate names accepted");
  a[1].zName = "../evil";
  CHECK(bt_ckpt_save_begin(pW, 1, "{}", a, 2) == BT_ERR, "bad name accepted");
  CHECK(bt_ckpt_save_begin(pW, 1, "{not json", a, 1) == BT_ERR, "bad meta accepted");
  a[1] = (bt_ckpt_item){"s", BT_CKPT_F32, x, 4, 0, 2, 1}; /* shard that does not tile */
  CHECK(bt_ckpt_save_begin(pW, 1, "{}", a, 2) == BT_OK, "%s", bt_err_msg());
  CHECK(bt_ckpt_finish(pW) == BT_ERR && strstr(bt_err_msg(), "cover"), "untiled shard: %s",
        bt_err_msg());
  char zFound[512];
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 1, "a checkpoint appeared");
  bt_ckpt_writer_free(pW);
  char *argv[] = {"inspect", "--help", NULL};
  CHECK(bt_inspect_main(2, argv) == 0, "--help");
  char *argv2[] = {"inspect", NULL};
  CHECK(bt_inspect_main(1, argv2) == 2, "no argument");
  /* Usage errors name the option (base/cli.h); a parse that stopped inside
   * "-xh" leaves no getopt state behind for the next call. */
  char *argv3[] = {"inspect", "--frob", zRun, NULL};
  CHECK(bt_inspect_main(3, argv3) == 2 &&
            strstr(bt_err_msg(), "unknown option '--frob'"),
        "unknown option: '%s'", bt_err_msg());
  char *argv4[] = {"inspect", "-xh", NULL};
  CHECK(bt_inspect_main(2, argv4) == 2 &&
            strstr(bt_err_msg(), "unknown option '-x'"),
        "unknown short option: '%s'", bt_err_msg());
  CHECK(bt_inspect_main(2, argv) == 0, "--help after a usage error");
  char *argv5[] = {"inspect", zRun, "extra", NULL};
  CHECK(bt_inspect_main(3, argv5) == 2 &&
            strstr(bt_err_msg(), "unexpected argument 'extra'"),
        "extra argument: '%s'", bt_err_msg());
  tu_rm(zRun);
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "child") == 0)
    return child_main(argv[2], atol(argv[3]), argc > 4 ? atoi(argv[4]) : 1);
  bt_log_set_level(1);
  test_round_trip(0);
  test_round_trip(1);
  test_snapshot();
  test_load_items();
  test_retention();
  test_corruption();
  test_crafted();
  test_crash_points();
  test_disk_full();
  test_bad_args();
  return CHECK_DONE();
}
