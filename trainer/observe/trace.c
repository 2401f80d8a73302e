/*
 * trace.c: see trace.h for the contract.
 *
 * Invariants (between calls, under the mutex):
 *   - the file holds the header and every event flushed so far, each event
 *     after the first preceded by ",\n" (never a trailing comma, so closing
 *     only needs "\n],...}");
 *   - aBuf[0..nBuf) holds formatted events not yet written; nBuf + one
 *     event's worst case (EVENT_MAX) always fits;
 *   - aStack[0..depth) are the open begin() spans; depth may exceed
 *     BT_TRACE_MAX_DEPTH by nOverflow spans that were not recorded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "trainer/observe/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/util.h"

/* A formatted event: fixed keys + two escaped names (<= 6x each) + numbers. */
#define EVENT_MAX (256 + 2 * 6 * BT_TRACE_NAME_MAX)

typedef struct trace_span {
  char zName[BT_TRACE_NAME_MAX + 1];
  char zCat[BT_TRACE_NAME_MAX + 1];
  double tStart;
} trace_span;

struct bt_trace {
  pthread_mutex_t mu;
  int fd;
  int rank;
  int bFailed;
  long nEvent; /* events written (decides the separator) */
  long nDropped;
  char zPath[4096];
  int depth;
  int nOverflow;
  trace_span aStack[BT_TRACE_MAX_DEPTH];
  size_t nBuf;
  char aBuf[BT_TRACE_BUF_BYTES];
};

static void copy_name(char *zDst, const char *zSrc) {
  size_t n = strnlen(zSrc ? zSrc : "", BT_TRACE_NAME_MAX);
  memcpy(zDst, zSrc ? zSrc : "", n);
  zDst[n] = 0;
}

/* Writes aBuf to the file. Caller holds the mutex. */
static int flush_locked(bt_trace *pT) {
  if (pT->nBuf == 0) return BT_OK;
  if (!pT->bFailed &&
      bt_file_write_full(pT->fd, pT->aBuf, pT->nBuf, pT->zPath) != BT_OK)
    pT->bFailed = 1;
  pT->nBuf = 0;
  return pT->bFailed ? BT_ERR : BT_OK;
}

/* Appends one already-formatted event (no separator). Caller holds mutex. */
static void append_locked(bt_trace *pT, const char *zEv, size_t nEv) {
  if (pT->bFailed) {
    pT->nDropped++;
    return;
  }
  if (pT->nBuf + nEv + 2 > sizeof pT->aBuf) flush_locked(pT);
  if (pT->nEvent > 0) {
    pT->aBuf[pT->nBuf++] = ',';
    pT->aBuf[pT->nBuf++] = '\n';
  }
  memcpy(pT->aBuf + pT->nBuf, zEv, nEv);
  pT->nBuf += nEv;
  pT->nEvent++;
}

static void emit_locked(bt_trace *pT, const char *zName, const char *zCat,
                        int tid, double tStart, double tEnd) {
  char zN[BT_JSON_ESCAPE_MAX(BT_TRACE_NAME_MAX)];
  char zC[BT_JSON_ESCAPE_MAX(BT_TRACE_NAME_MAX)];
  char zEv[EVENT_MAX];
  bt_json_escape(zN, sizeof zN, zName ? zName : "", BT_TRACE_NAME_MAX);
  bt_json_escape(zC, sizeof zC, zCat ? zCat : "", BT_TRACE_NAME_MAX);
  double dur = tEnd > tStart ? (tEnd - tStart) * 1e6 : 0.0;
  int n = snprintf(zEv, sizeof zEv,
                   "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,"
                   "\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f}",
                   zN, zC, pT->rank, tid, tStart * 1e6, dur);
  if (n < 0 || (size_t)n >= sizeof zEv) {
    pT->nDropped++; /* absurd timestamps only: names are bounded */
    return;
  }
  append_locked(pT, zEv, (size_t)n);
}

static void meta_locked(bt_trace *pT, const char *zWhat, int tid,
                        const char *zName) {
  char zN[BT_JSON_ESCAPE_MAX(BT_TRACE_NAME_MAX)];
  char zEv[EVENT_MAX];
  bt_json_escape(zN, sizeof zN, zName, BT_TRACE_NAME_MAX);
  int n = snprintf(zEv, sizeof zEv,
                   "{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                   "\"args\":{\"name\":\"%s\"}}",
                   zWhat, pT->rank, tid, zN);
  BT_ASSERT(n > 0 && (size_t)n < sizeof zEv);
  append_locked(pT, zEv, (size_t)n);
}

/* A resumed run reopens the same path; the previous attempt's trace is the
 * one that shows the crash, so it is kept as <stem>.prev.json (replacing an
 * older .prev) instead of being truncated. */
static void keep_previous(const char *zPath) {
  if (!bt_path_exists(zPath)) return;
  char zPrev[4096 + 8];
  size_t n = strlen(zPath);
  if (n > 5 && !strcmp(zPath + n - 5, ".json"))
    snprintf(zPrev, sizeof zPrev, "%.*s.prev.json", (int)(n - 5), zPath);
  else
    snprintf(zPrev, sizeof zPrev, "%s.prev", zPath);
  if (rename(zPath, zPrev) != 0)
    bt_log_warn("trace: could not keep the previous trace %s as %s: %s "
                "(overwriting it)", zPath, zPrev, strerror(errno));
}

int bt_trace_open(bt_trace **ppT, const char *zPath, int rank) {
  *ppT = NULL;
  bt_trace *pT = bt_calloc(1, sizeof *pT, "trace writer");
  if (!pT) return BT_ERR;
  int n = snprintf(pT->zPath, sizeof pT->zPath, "%s", zPath);
  if (n < 0 || (size_t)n >= sizeof pT->zPath) {
    free(pT);
    return bt_err_set("trace: path too long: %.80s...", zPath);
  }
  char zDir[4096];
  memcpy(zDir, pT->zPath, (size_t)n + 1);
  char *zSlash = strrchr(zDir, '/');
  if (zSlash && zSlash != zDir) {
    *zSlash = 0;
    if (bt_mkdir_p(zDir) != BT_OK) {
      free(pT);
      return bt_err_prefix("trace: creating %s: ", zDir);
    }
  }
  keep_previous(pT->zPath);
  pT->fd = open(pT->zPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (pT->fd < 0) {
    int e = errno;
    free(pT);
    return bt_err_set("trace: creating %s: %s", zPath, strerror(e));
  }
  pthread_mutex_init(&pT->mu, NULL);
  pT->rank = rank;
  static const char zHead[] = "{\"traceEvents\":[\n";
  if (bt_file_write_full(pT->fd, zHead, sizeof zHead - 1, pT->zPath) != BT_OK) {
    close(pT->fd);
    pthread_mutex_destroy(&pT->mu);
    free(pT);
    return BT_ERR;
  }
  char zProc[BT_TRACE_NAME_MAX + 1];
  snprintf(zProc, sizeof zProc, "rank %d (%s)", rank, bt_log_host());
  pthread_mutex_lock(&pT->mu);
  meta_locked(pT, "process_name", 0, zProc);
  meta_locked(pT, "thread_name", 0, "main");
  flush_locked(pT);
  pthread_mutex_unlock(&pT->mu);
  *ppT = pT;
  return BT_OK;
}

void bt_trace_begin(bt_trace *pT, const char *zName, const char *zCat) {
  if (!pT) return;
  double t = bt_time_now();
  pthread_mutex_lock(&pT->mu);
  if (pT->depth >= BT_TRACE_MAX_DEPTH) {
    pT->nOverflow++;
    pT->nDropped++;
  } else {
    trace_span *pS = &pT->aStack[pT->depth++];
    copy_name(pS->zName, zName);
    copy_name(pS->zCat, zCat);
    pS->tStart = t;
  }
  pthread_mutex_unlock(&pT->mu);
}

void bt_trace_end(bt_trace *pT) {
  if (!pT) return;
  double t = bt_time_now();
  pthread_mutex_lock(&pT->mu);
  if (pT->nOverflow > 0) {
    pT->nOverflow--;
  } else if (pT->depth == 0) {
    pT->nDropped++; /* end without begin */
  } else {
    trace_span *pS = &pT->aStack[--pT->depth];
    emit_locked(pT, pS->zName, pS->zCat, 0, pS->tStart, t);
    if (pT->depth == 0) flush_locked(pT); /* once per outermost span */
  }
  pthread_mutex_unlock(&pT->mu);
}

void bt_trace_span(bt_trace *pT, const char *zName, const char *zCat, int tid,
                   double tStart, double tEnd) {
  if (!pT) return;
  pthread_mutex_lock(&pT->mu);
  emit_locked(pT, zName, zCat, tid < 0 ? 0 : tid, tStart, tEnd);
  pthread_mutex_unlock(&pT->mu);
}

void bt_trace_thread_name(bt_trace *pT, int tid, const char *zName) {
  if (!pT) return;
  pthread_mutex_lock(&pT->mu);
  meta_locked(pT, "thread_name", tid < 0 ? 0 : tid, zName ? zName : "");
  pthread_mutex_unlock(&pT->mu);
}

int bt_trace_flush(bt_trace *pT) {
  if (!pT) return BT_OK;
  pthread_mutex_lock(&pT->mu);
  int rc = flush_locked(pT);
  pthread_mutex_unlock(&pT->mu);
  return rc;
}

long bt_trace_dropped(const bt_trace *pT) { return pT ? pT->nDropped : 0; }

int bt_trace_close(bt_trace *pT) {
  if (!pT) return BT_OK;
  double t = bt_time_now();
  pthread_mutex_lock(&pT->mu);
  pT->nOverflow = 0;
  while (pT->depth > 0) { /* a run stopped mid-span: end the spans now */
    trace_span *pS = &pT->aStack[--pT->depth];
    emit_locked(pT, pS->zName, pS->zCat, 0, pS->tStart, t);
  }
  flush_locked(pT);
  static const char zTail[] = "\n],\"displayTimeUnit\":\"ms\"}\n";
  int rc = BT_OK;
  if (pT->bFailed ||
      bt_file_write_full(pT->fd, zTail, sizeof zTail - 1, pT->zPath) != BT_OK) {
    if (pT->bFailed) bt_err_set("trace: an earlier write to %s failed", pT->zPath);
    rc = BT_ERR;
  }
  if (fsync(pT->fd) != 0 && rc == BT_OK)
    rc = bt_err_set("trace: syncing %s: %s", pT->zPath, strerror(errno));
  if (close(pT->fd) != 0 && rc == BT_OK)
    rc = bt_err_set("trace: closing %s: %s", pT->zPath, strerror(errno));
  pthread_mutex_unlock(&pT->mu);
  pthread_mutex_destroy(&pT->mu);
  free(pT);
  return rc;
}
