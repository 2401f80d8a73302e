/*
 * emit_seeds.c: writes the generated seed inputs of fuzz_ckpt.c into DIR
 * (usage: ckpt_fuzz_emit_seeds DIR): the fixture's valid manifest and three
 * payload frames. The seed corpus tests/ckpt/fuzz/corpus started from these
 * plus what libFuzzer found; rerun this after the fixture or the payload
 * format changes, add the files to the corpus, and raise the replay floor
 * (--min-accepted of ckpt_fuzz_replay in tests/ckpt/CMakeLists.txt) by the
 * number that are accepted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_impl.h"

const char *fuzz_ckpt_fixture_manifest(void); /* fuzz_ckpt.c */

/* One input: the mode bytes pHead, then the body p. */
static int emit(const char *zDir, const char *zName, const void *pHead, size_t nHead,
                const void *p, size_t n) {
  char z[4096];
  snprintf(z, sizeof z, "%s/%s", zDir, zName);
  FILE *f = fopen(z, "wb");
  if (!f) {
    perror(z);
    return 1;
  }
  int ok = fwrite(pHead, 1, nHead, f) == nHead && fwrite(p, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : 1;
}

/* A payload-mode input: a zstd frame of nRaw low-entropy bytes. */
static int emit_frame(const char *zDir, const char *zName, int shuffled, size_t nRaw) {
  uint8_t *pRaw = calloc(1, nRaw), *pC = malloc(bt_ckpt_compress_bound(nRaw));
  for (size_t i = 0; i < nRaw; i++) pRaw[i] = (uint8_t)(bt_rng_u64(5, i / 3) & 0x0f);
  size_t nC = 0;
  bt_ckpt_compress(NULL, pRaw, nRaw, 3, pC, bt_ckpt_compress_bound(nRaw), &nC);
  uint8_t head[2] = {1, (uint8_t)shuffled};
  int rc = emit(zDir, zName, head, 2, pC, nC);
  free(pRaw);
  free(pC);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ckpt_fuzz_emit_seeds DIR\n");
    return BT_EXIT_USAGE;
  }
  const char *zMan = fuzz_ckpt_fixture_manifest();
  int rc = emit(argv[1], "manifest-valid", "\x00", 1, zMan, strlen(zMan));
  rc |= emit_frame(argv[1], "payload-f32-valid", 1, 16384);
  rc |= emit_frame(argv[1], "payload-bytes-valid", 0, 4096);
  rc |= emit_frame(argv[1], "payload-wrong-size", 1, 1000);
  if (rc == 0) printf("wrote seeds to %s\n", argv[1]);
  return rc ? BT_EXIT_ERROR : BT_EXIT_OK;
}
