/*
 * test_ckpt_bitflip.c: no single-bit change in a checkpoint goes unseen
 * (issue 17, "nothing silent").
 *
 * Two checkpoints of a trainer-like state (meta with step, loader state and
 * config text, as trainer/state.c writes it). Every bit of the newer one's
 * manifest.json is flipped in turn, then a sample of bits of each payload
 * file; after each flip
 *   - bt_ckpt_inspect (`baton inspect`) must report FAIL, and
 *   - bt_ckpt_find_latest (what a resume uses to choose) must skip the
 *     damaged checkpoint and return the older one,
 * and the flip is undone before the next. Also: a directory whose name
 * disagrees with its manifest's step is rejected by both, and a version-1
 * manifest (no manifest checksum) is still read.
 *
 * Version 1 of the format left the manifest outside every checksum: a flip
 * in "step" or in meta's loader fields passed both checks (the test fails
 * on that code with thousands of undetected flips).
 */
#include <cjson/cJSON.h>

#include "tests/check.h"
#include "tests/ckpt/ckpt_testutil.h"

#define N_ELEM 3000

static int save_step(const char *zRun, long step, float *pParam) {
  bt_ckpt_writer *pW = NULL;
  bt_ckpt_options o = {zRun, 0, 0, 3, 0, 1};
  if (bt_ckpt_writer_create(&pW, NULL, &o) != BT_OK) return BT_ERR;
  bt_ckpt_writer_set_chunk_bytes(pW, 4096); /* several payload files */
  tu_fill_normal(pParam, 0, N_ELEM, 100 + (uint64_t)step, 0.02);
  char zState[] = "{\"note\":\"bytes item\"}";
  bt_ckpt_item a[2] = {
      {"params", BT_CKPT_F32, pParam, N_ELEM, 0, N_ELEM, 0},
      {"blob", BT_CKPT_BYTES, zState, sizeof zState, 0, sizeof zState, 0}};
  char zMeta[512];
  snprintf(zMeta, sizeof zMeta,
           "{\"step\":%ld,\"loader\":{\"epoch\":%ld,\"consumed\":%ld},"
           "\"running\":{\"loss_ema\":3.25},\"config\":\"model.type = gpt\\n"
           "model.n_layer = 2\\ntrain.batch_size = 16\\n\"}",
           step, step / 2, 16 * step);
  int rc = bt_ckpt_save_begin(pW, step, zMeta, a, 2);
  if (rc == BT_OK) rc = bt_ckpt_finish(pW);
  bt_ckpt_writer_free(pW);
  return rc;
}

/* 1 if the damaged checkpoint zBad is detected both ways. */
static int detected(const char *zRun, const char *zBad, const char *zGood,
                    FILE *pNull) {
  char zFound[1024] = "";
  int inspectFails = bt_ckpt_inspect(zBad, pNull) != BT_OK;
  int rc = bt_ckpt_find_latest(zRun, zFound, sizeof zFound);
  return inspectFails && rc == 0 && strcmp(zFound, zGood) == 0;
}

static int flip_bit(const char *zPath, long at, int bit) {
  int fd = open(zPath, O_RDWR);
  if (fd < 0) return -1;
  unsigned char c;
  int ok = pread(fd, &c, 1, at) == 1;
  c ^= (unsigned char)(1u << bit);
  ok = ok && pwrite(fd, &c, 1, at) == 1;
  close(fd);
  return ok ? 0 : -1;
}

static long file_size(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0 ? (long)st.st_size : -1;
}

static void test_manifest_bits(const char *zRun, const char *zBad,
                               const char *zGood, FILE *pNull) {
  char zMan[1200];
  snprintf(zMan, sizeof zMan, "%s/manifest.json", zBad);
  long n = file_size(zMan);
  CHECK(n > 0, "no manifest at %s", zMan);
  int nMissed = 0, nFlip = 0;
  double t0 = bt_time_now();
  for (long at = 0; at < n; at++)
    for (int bit = 0; bit < 8; bit++) {
      CHECK(flip_bit(zMan, at, bit) == 0, "flip %s", zMan);
      int ok = detected(zRun, zBad, zGood, pNull);
      flip_bit(zMan, at, bit);
      nFlip++;
      if (!ok && ++nMissed <= 12) {
        char *z = bt_file_read_all(zMan, NULL);
        printf("  undetected: manifest byte %ld ('%c') bit %d, near \"%.30s\"\n",
               at, z ? z[at] : '?', bit, z ? z + (at > 10 ? at - 10 : 0) : "");
        free(z);
      }
    }
  CHECK(nMissed == 0, "%d of %d manifest bit flips undetected", nMissed, nFlip);
  printf("manifest: %d bit flips (%ld bytes), %d undetected by inspect or not "
         "skipped by find_latest (%.2f s)\n",
         nFlip, n, nMissed, bt_time_now() - t0);
  char zFound[1024];
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 &&
            strcmp(zFound, zBad) == 0,
        "restored manifest not chosen again: %s", zFound);
}

static void test_payload_bits(const char *zRun, const char *zBad,
                              const char *zGood, FILE *pNull) {
  bt_ckpt *pC = NULL;
  CHECK(bt_ckpt_open(&pC, zBad, 1) == BT_OK, "%s", bt_err_msg());
  if (!pC) return;
  /* The payload names from the manifest model (ckpt_impl.h). */
  char zMan[1200];
  snprintf(zMan, sizeof zMan, "%s/manifest.json", zBad);
  size_t nText = 0;
  char *zText = bt_file_read_all(zMan, &nText);
  bt_ckpt_manifest m;
  CHECK(zText && bt_ckpt_manifest_parse(&m, zText, nText) == BT_OK, "%s", bt_err_msg());
  bt_ckpt_close(pC);
  int nMissed = 0, nFlip = 0;
  for (int f = 0; f < m.nFile; f++) {
    char zPath[1400];
    snprintf(zPath, sizeof zPath, "%s/%s", zBad, m.aFile[f].zFile);
    long nBit = 8 * (long)m.aFile[f].stored_bytes;
    /* 48 bits spread over the file, first and last included */
    for (int k = 0; k < 48; k++) {
      long b = k == 47 ? nBit - 1 : (long)((double)k * (double)nBit / 47.0);
      flip_bit(zPath, b / 8, (int)(b % 8));
      int ok = detected(zRun, zBad, zGood, pNull);
      flip_bit(zPath, b / 8, (int)(b % 8));
      nFlip++;
      if (!ok && ++nMissed <= 5)
        printf("  undetected: %s bit %ld\n", m.aFile[f].zFile, b);
    }
  }
  CHECK(nMissed == 0, "%d of %d payload bit flips undetected", nMissed, nFlip);
  printf("payloads: %d bit flips in %d files, %d undetected\n", nFlip, m.nFile,
         nMissed);
  bt_ckpt_manifest_clear(&m);
  free(zText);
}

/* The directory name decides the order; the manifest the restart step. */
static void test_dir_name(const char *zRun, const char *zBad,
                          const char *zGood, FILE *pNull) {
  char zOther[1200];
  snprintf(zOther, sizeof zOther, "%s/ckpt-00000007", zRun);
  CHECK(rename(zBad, zOther) == 0, "rename");
  CHECK(bt_ckpt_inspect(zOther, pNull) == BT_ERR, "ckpt-7 holding step 2 passes inspect");
  printf("ckpt-00000007 holding step 2 -> %s\n", bt_err_msg());
  char zFound[1024];
  CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 &&
            strcmp(zFound, zGood) == 0,
        "find_latest chose %s", zFound);
  CHECK(rename(zOther, zBad) == 0, "rename back");
}

/* Old checkpoints stay readable: version 1 had no manifest checksum. */
static void test_version1(const char *zBad) {
  char zMan[1200];
  snprintf(zMan, sizeof zMan, "%s/manifest.json", zBad);
  char *zText = bt_file_read_all(zMan, NULL);
  cJSON *p = zText ? cJSON_Parse(zText) : NULL;
  CHECK(p != NULL, "manifest");
  if (!p) return;
  cJSON_DeleteItemFromObject(p, "manifest_xxh64");
  cJSON_ReplaceItemInObject(p, "format_version", cJSON_CreateNumber(1));
  char *zV1 = cJSON_Print(p);
  bt_ckpt *pC = NULL;
  CHECK(bt_ckpt_open_text(&pC, zBad, zV1, strlen(zV1), 1) == BT_OK,
        "version 1 refused: %s", bt_err_msg());
  CHECK(pC && bt_ckpt_step(pC) == 2, "version 1 step");
  bt_ckpt_close(pC);
  /* ...but a version-2 manifest without its checksum is damaged. */
  cJSON_ReplaceItemInObject(p, "format_version", cJSON_CreateNumber(2));
  free(zV1);
  zV1 = cJSON_Print(p);
  CHECK(bt_ckpt_open_text(&pC, zBad, zV1, strlen(zV1), 1) == BT_ERR,
        "version 2 without manifest_xxh64 accepted");
  free(zV1);
  cJSON_Delete(p);
  free(zText);
}

int main(void) {
  char zRun[256], zGood[512], zBad[512];
  tu_tmpdir(zRun, sizeof zRun, "bitflip");
  float *pParam = malloc(N_ELEM * sizeof(float));
  CHECK(save_step(zRun, 1, pParam) == BT_OK && save_step(zRun, 2, pParam) == BT_OK,
        "save: %s", bt_err_msg());
  free(pParam);
  snprintf(zGood, sizeof zGood, "%s/ckpt-00000001", zRun);
  snprintf(zBad, sizeof zBad, "%s/ckpt-00000002", zRun);
  FILE *pNull = fopen("/dev/null", "w");
  CHECK(pNull && bt_ckpt_inspect(zBad, pNull) == BT_OK, "intact checkpoint fails: %s",
        bt_err_msg());
  /* find_latest warns once per flip: thousands of lines, not wanted. */
  fflush(stderr);
  int fdErr = dup(2), fdNull = open("/dev/null", O_WRONLY);
  dup2(fdNull, 2);
  test_manifest_bits(zRun, zBad, zGood, pNull);
  test_payload_bits(zRun, zBad, zGood, pNull);
  fflush(stderr);
  dup2(fdErr, 2);
  close(fdErr);
  close(fdNull);
  test_dir_name(zRun, zBad, zGood, pNull);
  test_version1(zBad);
  if (pNull) fclose(pNull);
  tu_rm(zRun);
  return CHECK_DONE();
}
