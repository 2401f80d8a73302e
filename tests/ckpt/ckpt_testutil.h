/*
 * ckpt_testutil.h: helpers for the checkpoint tests (scratch directories,
 * realistic float data, file surgery). Header-only, static functions.
 */
#ifndef BATON_CKPT_TESTUTIL_H
#define BATON_CKPT_TESTUTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_impl.h"

/* A fresh scratch directory under $TMPDIR (or /tmp); removed by rm_tree. */
static inline void tu_tmpdir(char *z, size_t n, const char *zTag) {
  const char *zBase = getenv("TMPDIR");
  snprintf(z, n, "%s/baton-%s-XXXXXX", zBase && zBase[0] ? zBase : "/tmp", zTag);
  if (!mkdtemp(z)) {
    perror("mkdtemp");
    abort();
  }
}

static inline void tu_rm(const char *z) { bt_ckpt_rmtree(z); }

/* "Trained-like" float32 weights: normal(0, scale), keyed so any rank can
 * regenerate element i of a named buffer. */
static inline void tu_fill_normal(float *p, uint64_t lo, uint64_t hi,
                                  uint64_t key, double scale) {
  for (uint64_t i = lo; i < hi; i++)
    p[i - lo] = (float)(scale * bt_rng_normal(key, i));
}

static inline float tu_val(uint64_t key, uint64_t i, double scale) {
  return (float)(scale * bt_rng_normal(key, i));
}

/* Flips one bit of byte `at` (negative: from the end) of a file. */
static inline int tu_flip_byte(const char *zPath, long at) {
  int fd = open(zPath, O_RDWR);
  if (fd < 0) return -1;
  struct stat st;
  fstat(fd, &st);
  off_t off = at >= 0 ? at : st.st_size + at;
  unsigned char c;
  if (pread(fd, &c, 1, off) != 1) { close(fd); return -1; }
  c ^= 0x10;
  int ok = pwrite(fd, &c, 1, off) == 1;
  close(fd);
  return ok ? 0 : -1;
}

static inline int tu_truncate(const char *zPath, long nKeep) {
  return truncate(zPath, nKeep);
}

/* Writes a text file (not atomically: test fixtures only). */
static inline int tu_write_text(const char *zPath, const char *zText) {
  FILE *f = fopen(zPath, "wb");
  if (!f) return -1;
  size_t n = strlen(zText);
  int ok = fwrite(zText, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* First payload file (*.zst) in a checkpoint directory; 0 if found. */
static inline int tu_first_payload(const char *zDir, char *zOut, size_t n) {
  char zCmd[4400];
  snprintf(zCmd, sizeof zCmd, "ls %s/*.zst 2>/dev/null | head -1", zDir);
  FILE *p = popen(zCmd, "r");
  if (!p) return -1;
  int ok = fgets(zOut, (int)n, p) != NULL;
  pclose(p);
  if (!ok) return -1;
  zOut[strcspn(zOut, "\n")] = 0;
  return 0;
}

#endif
