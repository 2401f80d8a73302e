/*
 * fuzz_ckpt.c: libFuzzer target for the checkpoint reader.
 *
 * The first input byte picks the mode:
 *   even: MANIFEST mode. The rest is manifest.json for a fixed, valid
 *         checkpoint directory (made once at start-up: item "a" f32 of 3000
 *         elements in 3 shuffled files, item "b" bytes of 500 in 1 file).
 *         The reader parses it (bt_ckpt_open_text, verify=1) and, if it is
 *         accepted, reads every item whole and in two partial ranges.
 *   odd:  PAYLOAD mode. The rest is the stored bytes of one payload file
 *         for a fixed manifest (item "p": 4096 f32 shuffled, or 4096 bytes
 *         plain, chosen by the second byte) whose size and xxh64 are set to
 *         match the input, so the zstd decoder sees hostile frames.
 * Anything the reader does must end in BT_OK or BT_ERR: no crash, no
 * out-of-bounds access (AddressSanitizer), no huge allocation. An input
 * counts as accepted (bt_fuzz_last_accepted, tests/fuzz/fuzz.h) when the
 * manifest opens, or when the payload reads back whole.
 *
 * Built two ways: with -fsanitize=fuzzer (tests/ckpt/fuzz.sh) and, for the
 * seed-corpus replay that runs on every build, with tests/fuzz/replay.c's
 * main() (ctest ckpt_fuzz_replay). emit_seeds.c writes the seed inputs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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

static char g_zFix[256];    /* fixture checkpoint (manifest mode) */
static char g_zPay[256];    /* payload-mode directory */
static char *g_zManifest;   /* the fixture's valid manifest text */
int bt_fuzz_last_accepted = 0;

static void fixture_cleanup(void) { bt_ckpt_rmtree(g_zFix); }

static int put_file(const char *zDir, const char *zName, const void *p, size_t n) {
  char z[600];
  snprintf(z, sizeof z, "%s/%s", zDir, zName);
  FILE *f = fopen(z, "wb");
  if (!f) return -1;
  int ok = fwrite(p, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Encodes raw bytes as one payload file and returns its manifest entry. */
static void add_file(char *zJson, size_t nJson, const char *zItem, uint64_t lo,
                     uint64_t hi, const void *pRaw, size_t nRaw, int shuffle) {
  uint8_t *pS = malloc(nRaw + 1), *pC = malloc(bt_ckpt_compress_bound(nRaw));
  if (shuffle) bt_ckpt_shuffle4(pRaw, pS, nRaw);
  else memcpy(pS, pRaw, nRaw);
  size_t nC = 0;
  bt_ckpt_compress(NULL, pS, nRaw, 3, pC, bt_ckpt_compress_bound(nRaw), &nC);
  char zName[128];
  snprintf(zName, sizeof zName, "%s.r0.%llu-%llu.zst", zItem, (unsigned long long)lo,
           (unsigned long long)hi);
  put_file(g_zFix, zName, pC, nC);
  size_t at = strlen(zJson);
  snprintf(zJson + at, nJson - at,
           "%s{\"file\":\"%s\",\"item\":\"%s\",\"lo\":%llu,\"hi\":%llu,\"raw_bytes\":%zu,"
           "\"stored_bytes\":%zu,\"codec\":\"%s\",\"xxh64\":\"%016llx\","
           "\"raw_xxh64\":\"%016llx\"}",
           at && zJson[at - 1] != '[' ? "," : "", zName, zItem, (unsigned long long)lo,
           (unsigned long long)hi, nRaw, nC, shuffle ? "shuffle4+zstd" : "zstd",
           (unsigned long long)bt_hash64(pC, nC, 0),
           (unsigned long long)bt_hash64(pRaw, nRaw, 0));
  free(pS);
  free(pC);
}

static void fixture_init(void) {
  if (g_zManifest) return;
  bt_log_set_level(0);
  snprintf(g_zFix, sizeof g_zFix, "/tmp/baton-fuzz-%d", (int)getpid());
  mkdir(g_zFix, 0755);
  atexit(fixture_cleanup);
  snprintf(g_zPay, sizeof g_zPay, "/tmp/baton-fuzz-%d/pay", (int)getpid());
  mkdir(g_zPay, 0755);
  float a[3000];
  for (int i = 0; i < 3000; i++) a[i] = (float)(0.02 * bt_rng_normal(11, (uint64_t)i));
  char b[500];
  for (int i = 0; i < 500; i++) b[i] = (char)('a' + i % 26);
  size_t nJson = 1 << 16;
  char *zFiles = calloc(1, nJson);
  strcat(zFiles, "[");
  for (int k = 0; k < 3; k++)
    add_file(zFiles, nJson, "a", (uint64_t)k * 1000, (uint64_t)(k + 1) * 1000, a + k * 1000,
             4000, 1);
  add_file(zFiles, nJson, "b", 0, 500, b, 500, 0);
  strcat(zFiles, "]");
  g_zManifest = calloc(1, nJson + 1024);
  snprintf(g_zManifest, nJson + 1024,
           "{\"format\":\"baton-checkpoint\",\"format_version\":1,\"baton_version\":\"0.1.0\","
           "\"step\":5,\"world_size\":1,\"created\":\"2026-01-01T00:00:00Z\","
           "\"meta\":{\"lr\":0.001,\"loader\":{\"epoch\":1}},"
           "\"items\":[{\"name\":\"a\",\"dtype\":\"f32\",\"total\":3000},"
           "{\"name\":\"b\",\"dtype\":\"bytes\",\"total\":500}],\"files\":%s}",
           zFiles);
  free(zFiles);
}

/* For emit_seeds.c: the valid manifest of the fixture. */
const char *fuzz_ckpt_fixture_manifest(void) {
  fixture_init();
  return g_zManifest;
}

static void read_all(bt_ckpt *pC) {
  static uint8_t buf[3000 * 4 + 64];
  const char *az[] = {"a", "b"};
  for (int k = 0; k < 2; k++) {
    uint64_t n = bt_ckpt_item_total(pC, az[k]);
    bt_ckpt_dtype e;
    if (bt_ckpt_item_dtype(pC, az[k], &e) != BT_OK) continue;
    uint64_t nMax = sizeof buf / bt_ckpt_dtype_size(e);
    if (n > nMax) n = nMax;
    bt_ckpt_read_range(pC, az[k], 0, n, buf);
    if (n > 10) bt_ckpt_read_range(pC, az[k], n / 3, n / 3 + 7, buf);
    if (n > 1) bt_ckpt_read_range(pC, az[k], n - 1, n, buf);
  }
  (void)bt_ckpt_meta_json(pC);
  /* The resume path: the fixture's shapes, one sharded slice. */
  static float fa[3000];
  static char fb[500];
  bt_ckpt_item aItem[2] = {{"a", BT_CKPT_F32, fa + 100, 3000, 100, 2500, 1},
                           {"b", BT_CKPT_BYTES, fb, 500, 0, 500, 0}};
  bt_ckpt_load_items(pC, aItem, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData) {
  bt_fuzz_last_accepted = 0;
  fixture_init();
  if (nData < 1) return 0;
  bt_ckpt *pC = NULL;
  if ((pData[0] & 1) == 0) {
    if (bt_ckpt_open_text(&pC, g_zFix, (const char *)pData + 1, nData - 1, 1) == BT_OK) {
      bt_fuzz_last_accepted = 1;
      read_all(pC);
      bt_ckpt_close(pC);
    }
    return 0;
  }
  if (nData < 2) return 0;
  int shuffled = pData[1] & 1;
  const uint8_t *p = pData + 2;
  size_t n = nData - 2;
  put_file(g_zPay, "p.r0.0-4096.zst", p, n);
  char zMan[1024];
  snprintf(zMan, sizeof zMan,
           "{\"format\":\"baton-checkpoint\",\"format_version\":1,\"baton_version\":\"x\","
           "\"step\":1,\"world_size\":1,\"created\":\"x\",\"meta\":null,"
           "\"items\":[{\"name\":\"p\",\"dtype\":\"%s\",\"total\":4096}],"
           "\"files\":[{\"file\":\"p.r0.0-4096.zst\",\"item\":\"p\",\"lo\":0,\"hi\":4096,"
           "\"raw_bytes\":%d,\"stored_bytes\":%zu,\"codec\":\"%s\",\"xxh64\":\"%016llx\"}]}",
           shuffled ? "f32" : "bytes", shuffled ? 16384 : 4096, n,
           shuffled ? "shuffle4+zstd" : "zstd", (unsigned long long)bt_hash64(p, n, 0));
  if (bt_ckpt_open_text(&pC, g_zPay, zMan, strlen(zMan), 1) == BT_OK) {
    static uint8_t buf[16384];
    if (bt_ckpt_read_range(pC, "p", 0, 4096, buf) == BT_OK) bt_fuzz_last_accepted = 1;
    bt_ckpt_read_range(pC, "p", 100, 200, buf);
    bt_ckpt_close(pC);
  }
  return 0;
}
