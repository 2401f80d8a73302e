/*
 * metrics.c: see metrics.h for the contract.
 *
 * State between calls: at most one step is buffered (nVal scalars of
 * bufStep). A JSONL line is formatted into a fixed buffer and handed to the
 * kernel with one write() on an O_APPEND descriptor, so lines from a crashed
 * and a resumed process never interleave; the worst a crash leaves is a torn
 * final line, which open() terminates with '\n' before appending.
 *
 * A write that fails (a full disk: ENOSPC, EIO) is not retried: the file is
 * truncated back to where the line began, so no torn line is left behind
 * by a living process, the sink is closed, and the call returns BT_ERR
 * naming the file and errno. Every later call skips that sink, so each
 * sink reports its failure exactly once, when it happens; the caller
 * (trainer/outputs.c) decides whether training stops. Fault points
 * "metrics.enospc" and "tboard.enospc" (BATON_FAULT) fail the Nth write
 * with ENOSPC after writing half of it, the torn case.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "trainer/observe/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/util.h"
#include "trainer/observe/tboard.h"

/* Worst case per tag: 6 bytes per escaped byte + quotes, colon, comma and a
 * number (at most 24 chars for %.17g). */
#define LINE_MAX_BYTES \
  (64 + BT_METRICS_MAX_TAGS * (6 * BT_METRICS_MAX_TAG + 32))

struct bt_metrics {
  int bActive; /* rank 0 and at least one sink: otherwise calls are no-ops */
  int fdJsonl; /* -1 when disabled */
  char zJsonl[4096];
  bt_tboard *pTb; /* NULL when disabled */
  int bHaveStep;
  int64_t bufStep;
  int nVal;
  char azTag[BT_METRICS_MAX_TAGS][BT_METRICS_MAX_TAG + 1];
  double aValue[BT_METRICS_MAX_TAGS];
  char zLine[LINE_MAX_BYTES];
};

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Opens zPath for appending; if a crash left it without a final newline,
 * writes one so the next record starts on its own line. */
static int jsonl_open(bt_metrics *pM, const char *zRunDir) {
  int n = snprintf(pM->zJsonl, sizeof pM->zJsonl, "%s/metrics.jsonl", zRunDir);
  if (n < 0 || (size_t)n >= sizeof pM->zJsonl)
    return bt_err_set("metrics: run directory path too long: %s", zRunDir);
  int fd = open(pM->zJsonl, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return bt_err_set("metrics: opening %s: %s", pM->zJsonl, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    char c = '\n';
    int rfd = open(pM->zJsonl, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
      if (pread(rfd, &c, 1, st.st_size - 1) != 1) c = '\n';
      close(rfd);
    }
    if (c != '\n' && bt_file_write_full(fd, "\n", 1, pM->zJsonl) != BT_OK) {
      close(fd);
      return BT_ERR;
    }
  }
  pM->fdJsonl = fd;
  return BT_OK;
}

int bt_metrics_open(bt_metrics **ppM, const char *zRunDir, int enable_jsonl,
                    int enable_tboard) {
  *ppM = NULL;
  bt_metrics *pM = bt_calloc(1, sizeof *pM, "metrics sink");
  if (!pM) return BT_ERR;
  pM->fdJsonl = -1;
  if (bt_log_rank() != 0 || (!enable_jsonl && !enable_tboard)) {
    *ppM = pM; /* inactive: every call is a no-op */
    return BT_OK;
  }
  if (bt_mkdir_p(zRunDir) != BT_OK) {
    free(pM);
    return bt_err_prefix("metrics: creating run directory %s: ", zRunDir);
  }
  if (enable_jsonl && jsonl_open(pM, zRunDir) != BT_OK) {
    free(pM);
    return BT_ERR;
  }
  if (enable_tboard) {
    char zTb[4096];
    int n = snprintf(zTb, sizeof zTb, "%s/tb", zRunDir);
    if (n < 0 || (size_t)n >= sizeof zTb || bt_tboard_open(&pM->pTb, zTb) != BT_OK) {
      if (n < 0 || (size_t)n >= sizeof zTb)
        bt_err_set("metrics: run directory path too long: %s", zRunDir);
      if (pM->fdJsonl >= 0) close(pM->fdJsonl);
      free(pM);
      return BT_ERR;
    }
  }
  pM->bActive = 1;
  *ppM = pM;
  return BT_OK;
}

/* ---- JSONL formatting -------------------------------------------------- */

typedef struct line_buf {
  char *z;
  size_t n, cap;
  int bOverflow;
} line_buf;

static void lb_put(line_buf *b, const char *z, size_t n) {
  if (b->bOverflow || n >= b->cap - b->n) {
    b->bOverflow = 1;
    return;
  }
  memcpy(b->z + b->n, z, n);
  b->n += n;
  b->z[b->n] = 0;
}

static void lb_printf(line_buf *b, const char *zFmt, ...) BT_PRINTF(2, 3);
static void lb_printf(line_buf *b, const char *zFmt, ...) {
  char zTmp[64];
  va_list ap;
  va_start(ap, zFmt);
  int n = vsnprintf(zTmp, sizeof zTmp, zFmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof zTmp) {
    b->bOverflow = 1;
    return;
  }
  lb_put(b, zTmp, (size_t)n);
}

static void lb_json_string(line_buf *b, const char *z) {
  /* Tags are at most BT_METRICS_MAX_TAG bytes (checked when recorded), so
   * the escaped copy always fits whole. */
  char zEsc[BT_JSON_ESCAPE_MAX(BT_METRICS_MAX_TAG)];
  BT_ASSERT(strlen(z) <= BT_METRICS_MAX_TAG);
  size_t n = bt_json_escape(zEsc, sizeof zEsc, z, BT_METRICS_MAX_TAG);
  lb_put(b, "\"", 1);
  lb_put(b, zEsc, n);
  lb_put(b, "\"", 1);
}

/* Shortest of %.15g/%.17g that reads back to the same double, so values are
 * exact without 0.30000000000000004 noise where 15 digits suffice. */
static void lb_json_number(line_buf *b, double v) {
  if (!isfinite(v)) {
    lb_put(b, "null", 4);
    return;
  }
  char z[40];
  snprintf(z, sizeof z, "%.15g", v);
  if (strtod(z, NULL) != v) snprintf(z, sizeof z, "%.17g", v);
  lb_put(b, z, strlen(z));
}

/* The TensorBoard sink failed (its writer cut the torn record off): close
 * it and append its message to zErr ("A; B" when the JSONL sink failed in
 * the same step). */
static void metrics_tb_failed(bt_metrics *pM, char *zErr, size_t nErr) {
  char zTb[1200];
  snprintf(zTb, sizeof zTb, "metrics: %s; %s is not written from here on",
           bt_err_msg(), bt_tboard_path(pM->pTb));
  bt_tboard_close(pM->pTb); /* reports the same failure again: ignored */
  pM->pTb = NULL;
  size_t n = strlen(zErr);
  snprintf(zErr + n, nErr - n, "%s%s", n ? "; " : "", zTb);
}

/* One line with one write(); on failure cut the file back to where the
 * line began and close the sink (see the file's comment). */
static int jsonl_write(bt_metrics *pM, const char *z, size_t n) {
  int fd = pM->fdJsonl;
  off_t off = lseek(fd, 0, SEEK_END); /* O_APPEND: where the line goes */
  int rc;
  if (bt_fault_hit("metrics.enospc")) {
    rc = bt_file_write_full(fd, z, n / 2, pM->zJsonl);
    errno = ENOSPC;
    if (rc == BT_OK)
      rc = bt_err_set("write to '%s' failed at byte %zu: %s (errno %d) "
                      "(fault injection metrics.enospc)",
                      pM->zJsonl, n / 2, strerror(ENOSPC), ENOSPC);
  } else {
    rc = bt_file_write_full(fd, z, n, pM->zJsonl);
  }
  if (rc == BT_OK) return BT_OK;
  char zWhy[1200];
  snprintf(zWhy, sizeof zWhy, "%s", bt_err_msg());
  const char *zCut = "";
  struct stat st;
  if (off >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      st.st_size > off)
    zCut = ftruncate(fd, off) == 0 ? "; the partial line was cut off"
                                   : "; a partial line may remain";
  close(fd);
  pM->fdJsonl = -1;
  return bt_err_set("metrics: %s%s; %s is not written from here on", zWhy,
                    zCut, pM->zJsonl);
}

static int write_step(bt_metrics *pM) {
  int rc = BT_OK;
  if (!pM->bHaveStep) return BT_OK;
  char zErr[2048] = ""; /* both sinks may fail in one step: report both */
  if (pM->fdJsonl >= 0) {
    line_buf b = {pM->zLine, 0, sizeof pM->zLine, 0};
    lb_printf(&b, "{\"step\":%lld,\"time\":%.3f", (long long)pM->bufStep,
              wall_now());
    for (int i = 0; i < pM->nVal; i++) {
      lb_put(&b, ",", 1);
      lb_json_string(&b, pM->azTag[i]);
      lb_put(&b, ":", 1);
      lb_json_number(&b, pM->aValue[i]);
    }
    lb_put(&b, "}\n", 2);
    BT_ASSERT(!b.bOverflow); /* LINE_MAX_BYTES covers the worst case */
    if (jsonl_write(pM, b.z, b.n) != BT_OK) {
      rc = BT_ERR;
      snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
    }
  }
  if (pM->pTb) {
    const char *azTag[BT_METRICS_MAX_TAGS];
    for (int i = 0; i < pM->nVal; i++) azTag[i] = pM->azTag[i];
    if (bt_tboard_scalars(pM->pTb, pM->bufStep, pM->nVal, azTag, pM->aValue) !=
        BT_OK) {
      rc = BT_ERR;
      metrics_tb_failed(pM, zErr, sizeof zErr);
    }
  }
  pM->bHaveStep = 0;
  pM->nVal = 0;
  if (rc != BT_OK) bt_err_set("%s", zErr);
  return rc;
}

int bt_metrics_scalar(bt_metrics *pM, int64_t step, const char *zTag,
                      double value) {
  if (!pM || !pM->bActive) return BT_OK;
  size_t nTag = strlen(zTag);
  if (nTag == 0 || nTag > BT_METRICS_MAX_TAG)
    return bt_err_set("metrics: tag '%.40s' must be 1..%d bytes", zTag,
                      BT_METRICS_MAX_TAG);
  if (!strcmp(zTag, "step") || !strcmp(zTag, "time"))
    return bt_err_set("metrics: tag '%s' is reserved", zTag);
  int rc = BT_OK;
  if (pM->bHaveStep && pM->bufStep != step) rc = write_step(pM);
  if (!pM->bHaveStep) {
    pM->bHaveStep = 1;
    pM->bufStep = step;
    pM->nVal = 0;
  }
  for (int i = 0; i < pM->nVal; i++) {
    if (!strcmp(pM->azTag[i], zTag)) {
      pM->aValue[i] = value;
      return rc;
    }
  }
  if (pM->nVal >= BT_METRICS_MAX_TAGS)
    return bt_err_set("metrics: more than %d tags in step %lld (dropped '%s')",
                      BT_METRICS_MAX_TAGS, (long long)step, zTag);
  memcpy(pM->azTag[pM->nVal], zTag, nTag + 1);
  pM->aValue[pM->nVal] = value;
  pM->nVal++;
  return rc;
}

int bt_metrics_flush_step(bt_metrics *pM, int64_t step) {
  if (!pM || !pM->bActive || !pM->bHaveStep) return BT_OK;
  int64_t had = pM->bufStep;
  int rc = write_step(pM);
  if (rc == BT_OK && had != step)
    rc = bt_err_set("metrics: flush of step %lld, but step %lld was buffered "
                    "(written under its own step)",
                    (long long)step, (long long)had);
  return rc;
}

int bt_metrics_mark_start(bt_metrics *pM, int64_t step) {
  if (!pM || !pM->bActive) return BT_OK;
  int rc = write_step(pM);
  if (pM->pTb && bt_tboard_session_start(pM->pTb, step) != BT_OK) {
    char zErr[2048] = "";
    metrics_tb_failed(pM, zErr, sizeof zErr);
    rc = bt_err_set("%s", zErr);
  }
  return rc;
}

int bt_metrics_close(bt_metrics *pM) {
  if (!pM) return BT_OK;
  int rc = BT_OK;
  if (pM->bActive) rc = write_step(pM);
  if (pM->fdJsonl >= 0) {
    if (fsync(pM->fdJsonl) != 0 && rc == BT_OK)
      rc = bt_err_set("metrics: syncing %s: %s", pM->zJsonl, strerror(errno));
    if (close(pM->fdJsonl) != 0 && rc == BT_OK)
      rc = bt_err_set("metrics: closing %s: %s", pM->zJsonl, strerror(errno));
  }
  if (pM->pTb && bt_tboard_close(pM->pTb) != BT_OK && rc == BT_OK)
    rc = bt_err_prefix("metrics: ");
  free(pM);
  return rc;
}
