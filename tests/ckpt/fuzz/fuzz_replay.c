/*
 * fuzz_replay.c: runs fuzz_ckpt.c's LLVMFuzzerTestOneInput on every file of
 * the given files or directories (the seed corpus, or crash reproducers),
 * without libFuzzer: this is the ctest that replays the corpus on every
 * build. `--emit-seeds DIR` writes the generated seed inputs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData);
const char *fuzz_ckpt_fixture_manifest(void);

static int g_nRun = 0;
extern int fuzz_ckpt_accepted;

static int run_file(const char *zPath) {
  size_t n = 0;
  char *p = bt_file_read_all(zPath, &n);
  if (!p) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  LLVMFuzzerTestOneInput((const uint8_t *)p, n);
  free(p);
  g_nRun++;
  return 0;
}

static int run_path(const char *zPath) {
  struct stat st;
  if (stat(zPath, &st) != 0) {
    perror(zPath);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(zPath);
  DIR *d = opendir(zPath);
  if (!d) return 1;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char z[4096];
    snprintf(z, sizeof z, "%s/%s", zPath, e->d_name);
    rc |= run_path(z);
  }
  closedir(d);
  return rc;
}

static void emit(const char *zDir, const char *zName, const void *pHead,
                 size_t nHead, const void *p, size_t n) {
  char z[4096];
  snprintf(z, sizeof z, "%s/%s", zDir, zName);
  FILE *f = fopen(z, "wb");
  if (!f) return;
  fwrite(pHead, 1, nHead, f);
  fwrite(p, 1, n, f);
  fclose(f);
}

static void emit_frame(const char *zDir, const char *zName, int shuffled,
                       size_t nRaw) {
  uint8_t *pRaw = calloc(1, nRaw), *pC = malloc(bt_ckpt_compress_bound(nRaw));
  for (size_t i = 0; i < nRaw; i++) pRaw[i] = (uint8_t)(bt_rng_u64(5, i / 3) & 0x0f);
  size_t nC = 0;
  bt_ckpt_compress(NULL, pRaw, nRaw, 3, pC, bt_ckpt_compress_bound(nRaw), &nC);
  uint8_t head[2] = {1, (uint8_t)shuffled};
  emit(zDir, zName, head, 2, pC, nC);
  free(pRaw);
  free(pC);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--emit-seeds") == 0) {
    const char *zMan = fuzz_ckpt_fixture_manifest();
    emit(argv[2], "manifest-valid", "\x00", 1, zMan, strlen(zMan));
    emit_frame(argv[2], "payload-f32-valid", 1, 16384);
    emit_frame(argv[2], "payload-bytes-valid", 0, 4096);
    emit_frame(argv[2], "payload-wrong-size", 1, 1000);
    printf("wrote seeds to %s\n", argv[2]);
    return 0;
  }
  int rc = 0;
  for (int i = 1; i < argc; i++) rc |= run_path(argv[i]);
  printf("replayed %d inputs without a crash; %d accepted as valid\n", g_nRun,
         fuzz_ckpt_accepted);
  /* The valid seeds must pass, or the fixture is broken and the fuzzer
   * would only ever see rejections. */
  return rc || g_nRun == 0 || fuzz_ckpt_accepted < 3;
}
