/*
 * writer.c: the crash-safe, asynchronous checkpoint writer (ckpt.h).
 *
 * States of one writer (main thread view):
 *
 *   IDLE --save_begin--> WRITING --poll: all done--> COMMITTING
 *        --poll: rank 0 done--> IDLE
 *
 *   save_begin (collective): validates items, rank 0 creates
 *     RUN/.tmp-ckpt-<step> (removing a stale one of the same step), the
 *     ranks agree on success and on the step (one all-reduce), each rank
 *     copies the items it writes into its snapshot buffers (allocated once,
 *     reused), then starts the background thread (async) or writes inline
 *     (sync).
 *   WRITING: the thread shuffles, compresses, checksums and writes this
 *     rank's payload files, fsyncs each, then the directory. Background
 *     threads do file I/O only: no MPI call is ever made off the main
 *     thread.
 *   poll (collective, every step): all-reduce MIN of "my part is done";
 *     returns at once until everyone is done. Then:
 *       1. every rank all-gathers a fixed record {error, message, length of
 *          its file list}; any error -> rank 0 removes the temp directory,
 *          every rank returns BT_ERR naming the first failing rank, path
 *          and errno;
 *       2. otherwise the file lists (JSON text) are all-gathered to rank 0,
 *          which enters COMMITTING: in its background thread (async) it
 *          builds the manifest, checks it with the READER's validator (so a
 *          trainer bug such as ranges that do not tile cannot produce a
 *          directory the reader rejects; the manifest ends with its own
 *          checksum, manifest_xxh64), writes manifest.json, fsyncs it
 *          and the temp directory, renames it to RUN/ckpt-<step:08>, fsyncs
 *          RUN, replaces RUN/latest atomically and applies retention. The
 *          fsyncs therefore never stall the training loop.
 *       3. a later poll finds rank 0 done (all-reduce MIN); rank 0
 *          broadcasts its status; every rank returns it and *pnDone = step.
 *     With async = 0 all of this happens inside one poll.
 *
 * What a crash leaves behind, by instant:
 *   - before the rename: RUN/.tmp-ckpt-<step> (partial files, perhaps a
 *     manifest); every ckpt-* untouched. The next writer_create() on rank 0
 *     deletes .tmp-ckpt-* and stale latest.tmp.* files.
 *   - after the rename, before latest: a complete ckpt-<step>; latest names
 *     the previous one. Readers pick the highest step that verifies
 *     (bt_ckpt_find_latest), so the new one is used; latest is advisory.
 *   - during retention: some old complete checkpoints deleted, others not
 *     yet; all remaining ones are complete or partly deleted. A partly
 *     deleted one fails verification and find_latest skips it with a
 *     warning; it is older than the newest one anyway.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zstd.h>

#include "base/util.h"
#include "checkpoints/ckpt_impl.h"

#define WR_MSG 1000

typedef struct wr_item {
  char zName[BT_CKPT_MAX_NAME + 1];
  bt_ckpt_dtype eType;
  uint64_t total, lo, hi; /* the range this rank writes (mine) */
  int sharded;
  int mine;               /* this rank writes [lo, hi) */
  uint64_t srcOff;        /* element of pData that holds element lo */
  uint8_t *pSnap;         /* snapshot of [lo, hi); reused across saves */
  size_t nSnapCap;
} wr_item;

typedef struct wr_entry {
  char zFile[BT_CKPT_MAX_FILENAME + 1];
  int iItem;
  uint64_t lo, hi, raw, stored;
  int shuffled;
  uint64_t xxh, rawXxh;
} wr_entry;

/* The record every rank contributes to the commit all-gather. */
typedef struct wr_record {
  int32_t err;
  int32_t pad;
  uint64_t nList; /* bytes of this rank's file list JSON, with its NUL */
  char zMsg[WR_MSG];
} wr_record;

struct bt_ckpt_writer {
  bt_comm *pComm;
  int rank, world;
  char *zRunDir;
  bt_ckpt_options opt;
  size_t nChunk;

  wr_item *aItem;
  int nItem, nItemCap;
  char *zMeta;
  long step;
  int inflight;
  int seenNewer; /* warned about ckpt-* newer than what we save */
  int bBestNext; /* bt_ckpt_writer_mark_best: the next save is the best */
  int bBest;     /* the save in flight is the best: commit writes RUN/best */
  int splitReplicated; /* replicated f32 items written by all ranks */
  char zTmp[4096];

  int phase;            /* 1 writing, 2 committing (while inflight) */
  char *pLists;         /* rank 0, phase 2: every rank's file list */
  size_t nListMax;
  pthread_t thread;
  int threadRunning;
  atomic_int done;
  int err;              /* thread result; read after join */
  char zErr[WR_MSG];

  wr_entry *aEnt;
  int nEnt, nEntCap;

  void *pCctx;
  uint8_t *pShuf;
  size_t nShufCap;
  uint8_t *pComp;
  size_t nCompCap;

  double tBlock, tLastBlock;
};

/* snprintf that truncates long paths silently: messages are bounded
 * records (WR_MSG) exchanged between ranks. */
static void msgf(char *z, size_t n, const char *zFmt, ...) BT_PRINTF(3, 4);
static void msgf(char *z, size_t n, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(z, n, zFmt, ap);
  va_end(ap);
}

/* ---- collectives (NULL communicator: single process) ------------------- */

static int wr_allreduce_int(bt_ckpt_writer *pW, int *pV, bt_redop eOp) {
  if (!pW->pComm || pW->world == 1) return BT_OK;
  return bt_comm_host_allreduce(pW->pComm, pV, 1, BT_I32, eOp);
}

static int wr_allgather(bt_ckpt_writer *pW, const void *pSend, void *pRecv,
                        size_t nByte) {
  if (!pW->pComm || pW->world == 1) {
    memcpy(pRecv, pSend, nByte);
    return BT_OK;
  }
  return bt_comm_host_allgather(pW->pComm, pSend, pRecv, nByte);
}

static int wr_broadcast(bt_ckpt_writer *pW, void *pBuf, size_t nByte) {
  if (!pW->pComm || pW->world == 1) return BT_OK;
  return bt_comm_host_broadcast(pW->pComm, pBuf, nByte, 0);
}

/* ---- helpers ------------------------------------------------------------ */

static void wr_path(const bt_ckpt_writer *pW, char *z, size_t n, long step,
                    int tmp) {
  snprintf(z, n, "%s/%s%08ld", pW->zRunDir,
           tmp ? BT_CKPT_TMP_PREFIX : BT_CKPT_DIR_PREFIX, step);
}

/* Removes stale temporaries of crashed saves: .tmp-ckpt-* directories and
 * latest.tmp.* files (bt_file_write_atomic's temporaries). Rank 0 only. */
static void wr_clean_stale(bt_ckpt_writer *pW) {
  DIR *d = opendir(pW->zRunDir);
  if (!d) return;
  struct dirent *e;
  size_t nTmp = strlen(BT_CKPT_TMP_PREFIX);
  while ((e = readdir(d)) != NULL) {
    int stale = strncmp(e->d_name, BT_CKPT_TMP_PREFIX, nTmp) == 0 ||
                strncmp(e->d_name, "latest.tmp.", 11) == 0 ||
                strncmp(e->d_name, "best.tmp.", 9) == 0;
    if (!stale) continue;
    char z[4096];
    msgf(z, sizeof z, "%s/%s", pW->zRunDir, e->d_name);
    bt_log_warn("removing %s left by an interrupted checkpoint save", z);
    if (bt_ckpt_rmtree(z) != BT_OK) bt_log_warn("%s", bt_err_msg());
  }
  closedir(d);
}

int bt_ckpt_writer_create(bt_ckpt_writer **ppW, bt_comm *pComm,
                          const bt_ckpt_options *pOpt) {
  *ppW = NULL;
  if (!pOpt || !pOpt->zRunDir || !pOpt->zRunDir[0])
    return bt_err_set("checkpoint writer: no run directory given");
  if (strlen(pOpt->zRunDir) > 3000)
    return bt_err_set("checkpoint writer: run directory path too long");
  bt_ckpt_writer *pW = bt_calloc(1, sizeof *pW, "checkpoint writer");
  if (!pW) return BT_ERR;
  pW->pComm = pComm;
  pW->rank = pComm ? bt_comm_rank(pComm) : 0;
  pW->world = pComm ? bt_comm_world(pComm) : 1;
  pW->opt = *pOpt;
  if (pW->opt.zstd_level <= 0) pW->opt.zstd_level = 3;
  if (pW->opt.zstd_level > 19) pW->opt.zstd_level = 19;
  pW->nChunk = BT_CKPT_CHUNK_DEFAULT;
  pW->splitReplicated = 1;
  pW->zRunDir = strdup(pOpt->zRunDir);
  pW->pCctx = ZSTD_createCCtx();
  atomic_store(&pW->done, 1);
  int err = 0;
  char zMsg[WR_MSG] = "";
  if (!pW->zRunDir || !pW->pCctx) {
    err = 1;
    msgf(zMsg, sizeof zMsg, "checkpoint writer: out of memory");
  } else if (pW->rank == 0) {
    if (bt_mkdir_p(pW->zRunDir) != BT_OK) {
      err = 1;
      msgf(zMsg, sizeof zMsg, "%s", bt_err_msg());
    } else {
      wr_clean_stale(pW);
    }
  }
  int any = err;
  if (wr_allreduce_int(pW, &any, BT_MAX) != BT_OK) {
    any = 1;
    msgf(zMsg, sizeof zMsg, "%s", bt_err_msg());
  }
  if (any) {
    if (!err && !zMsg[0])
      msgf(zMsg, sizeof zMsg, "rank 0 could not prepare run directory %s",
               pW->zRunDir);
    bt_ckpt_writer_free(pW);
    return bt_err_set("checkpoint writer: %s", zMsg);
  }
  *ppW = pW;
  return BT_OK;
}

static void wr_join(bt_ckpt_writer *pW) {
  if (pW->threadRunning) {
    pthread_join(pW->thread, NULL);
    pW->threadRunning = 0;
  }
}

void bt_ckpt_writer_free(bt_ckpt_writer *pW) {
  if (!pW) return;
  wr_join(pW);
  for (int i = 0; i < pW->nItemCap; i++) free(pW->aItem[i].pSnap);
  free(pW->aItem);
  free(pW->aEnt);
  free(pW->pLists);
  free(pW->zMeta);
  free(pW->zRunDir);
  if (pW->pCctx) ZSTD_freeCCtx(pW->pCctx);
  free(pW->pShuf);
  free(pW->pComp);
  free(pW);
}

void bt_ckpt_writer_mark_best(bt_ckpt_writer *pW) { pW->bBestNext = 1; }

int bt_ckpt_writer_set_chunk_bytes(bt_ckpt_writer *pW, size_t nByte) {
  if (pW->inflight)
    return bt_err_set("checkpoint writer: cannot change chunk size during a save");
  if (nByte < 4 || (uint64_t)nByte > BT_CKPT_MAX_FILE_RAW)
    return bt_err_set("checkpoint writer: chunk size %zu outside [4, %llu]",
                      nByte, (unsigned long long)BT_CKPT_MAX_FILE_RAW);
  pW->nChunk = nByte;
  return BT_OK;
}

int bt_ckpt_writer_set_split_replicated(bt_ckpt_writer *pW, int on) {
  if (pW->inflight)
    return bt_err_set("checkpoint writer: cannot change this during a save");
  pW->splitReplicated = on != 0;
  return BT_OK;
}

/* Whether a replicated item is cut into world slices, slice r written by
 * rank r. Every rank holds the whole (that is what replicated means), so
 * the work of compressing and writing e.g. the parameters is spread over
 * all ranks instead of falling on rank 0 alone. Only f32 items with at
 * least BT_CKPT_SPLIT_MIN elements per rank; small ones and bytes items
 * stay whole on rank 0. */
#define BT_CKPT_SPLIT_MIN 1024
static int wr_split(const bt_ckpt_writer *pW, const bt_ckpt_item *p) {
  return pW->splitReplicated && !p->sharded && p->eType == BT_CKPT_F32 &&
         pW->world > 1 &&
         p->total >= (uint64_t)pW->world * BT_CKPT_SPLIT_MIN;
}

double bt_ckpt_last_blocking_seconds(const bt_ckpt_writer *pW) {
  return pW->tLastBlock;
}

/* ---- the background thread: this rank's payload files ----------------- */

/* Errors of the thread are kept in pW->zErr (bt_err_* is per thread). */
static int wr_fail(bt_ckpt_writer *pW, const char *zPath, int e) {
  msgf(pW->zErr, sizeof pW->zErr,
           "checkpoint write failed: %s: %s (errno %d)", zPath, strerror(e), e);
  pW->err = 1;
  return BT_ERR;
}

static int wr_write_part(bt_ckpt_writer *pW, int fd, const uint8_t *p,
                         size_t n, const char *zPath) {
  size_t done = 0;
  while (done < n) {
    size_t want = n - done;
    if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
    ssize_t w = write(fd, p + done, want);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return wr_fail(pW, zPath, errno);
    if (w == 0) return wr_fail(pW, zPath, EIO);
    done += (size_t)w;
  }
  return BT_OK;
}

/* Writes n bytes in two halves; the fault points sit between them so a
 * test can crash (or fail) with a half-written payload on disk. */
static int wr_write_all(bt_ckpt_writer *pW, int fd, const uint8_t *p,
                        size_t n, const char *zPath) {
  size_t nHalf = n / 2;
  if (wr_write_part(pW, fd, p, nHalf, zPath) != BT_OK) return BT_ERR;
  if (bt_fault_hit("ckpt.write")) raise(SIGKILL);
  if (bt_fault_hit("ckpt.eio")) return wr_fail(pW, zPath, EIO);
  return wr_write_part(pW, fd, p + nHalf, n - nHalf, zPath);
}

static int wr_grow(uint8_t **pp, size_t *pCap, size_t n) {
  if (*pCap >= n && *pp) return BT_OK;
  free(*pp);
  *pp = bt_malloc_aligned(n, "checkpoint writer buffer");
  *pCap = *pp ? n : 0;
  return *pp ? BT_OK : BT_ERR;
}

static int wr_add_entry(bt_ckpt_writer *pW, const wr_entry *pE) {
  if (pW->nEnt == pW->nEntCap) {
    int cap = pW->nEntCap ? 2 * pW->nEntCap : 16;
    wr_entry *p = realloc(pW->aEnt, (size_t)cap * sizeof *p);
    if (!p) return BT_ERR;
    pW->aEnt = p;
    pW->nEntCap = cap;
  }
  pW->aEnt[pW->nEnt++] = *pE;
  return BT_OK;
}

static int wr_one_file(bt_ckpt_writer *pW, int iItem, uint64_t lo,
                       uint64_t hi) {
  wr_item *pI = &pW->aItem[iItem];
  size_t es = bt_ckpt_dtype_size(pI->eType);
  size_t nRaw = (size_t)((hi - lo) * es);
  const uint8_t *pRaw = pI->pSnap + (size_t)(lo - pI->lo) * es;
  wr_entry e;
  memset(&e, 0, sizeof e);
  msgf(e.zFile, sizeof e.zFile, "%s.r%d.%llu-%llu.zst", pI->zName, pW->rank,
           (unsigned long long)lo, (unsigned long long)hi);
  char zPath[4400];
  msgf(zPath, sizeof zPath, "%s/%s", pW->zTmp, e.zFile);
  e.iItem = iItem;
  e.lo = lo;
  e.hi = hi;
  e.raw = nRaw;
  e.shuffled = pI->eType == BT_CKPT_F32 && pW->opt.shuffle;
  e.rawXxh = bt_hash64(pRaw, nRaw, 0);
  const uint8_t *pIn = pRaw;
  if (e.shuffled) {
    if (wr_grow(&pW->pShuf, &pW->nShufCap, nRaw)) return wr_fail(pW, zPath, ENOMEM);
    bt_ckpt_shuffle4(pRaw, pW->pShuf, nRaw);
    pIn = pW->pShuf;
  }
  size_t nBound = bt_ckpt_compress_bound(nRaw);
  if (wr_grow(&pW->pComp, &pW->nCompCap, nBound)) return wr_fail(pW, zPath, ENOMEM);
  size_t nOut = 0;
  if (bt_ckpt_compress(pW->pCctx, pIn, nRaw, pW->opt.zstd_level, pW->pComp,
                       pW->nCompCap, &nOut) != BT_OK) {
    msgf(pW->zErr, sizeof pW->zErr, "checkpoint write failed: %s: %s",
             zPath, bt_err_msg());
    pW->err = 1;
    return BT_ERR;
  }
  e.stored = nOut;
  e.xxh = bt_hash64(pW->pComp, nOut, 0);
  int fd = open(zPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return wr_fail(pW, zPath, errno);
  if (wr_write_all(pW, fd, pW->pComp, nOut, zPath) != BT_OK) {
    close(fd);
    return BT_ERR;
  }
  if (fsync(fd) != 0) {
    int err = errno;
    close(fd);
    return wr_fail(pW, zPath, err);
  }
  /* close() reports deferred write errors on network filesystems. */
  if (close(fd) != 0) return wr_fail(pW, zPath, errno);
  if (wr_add_entry(pW, &e) != BT_OK) return wr_fail(pW, zPath, ENOMEM);
  return BT_OK;
}

/* Writes every payload file of this rank; sets pW->err/zErr on failure. */
static void wr_write_rank(bt_ckpt_writer *pW) {
  pW->nEnt = 0;
  pW->err = 0;
  pW->zErr[0] = 0;
  int any = 0;
  for (int i = 0; i < pW->nItem && !pW->err; i++) {
    wr_item *pI = &pW->aItem[i];
    if (!pI->mine || pI->hi == pI->lo) continue;
    uint64_t per = pW->nChunk / bt_ckpt_dtype_size(pI->eType);
    if (per < 1) per = 1;
    for (uint64_t lo = pI->lo; lo < pI->hi && !pW->err; lo += per) {
      uint64_t hi = pI->hi - lo > per ? lo + per : pI->hi;
      wr_one_file(pW, i, lo, hi);
      any = 1;
    }
  }
  if (!pW->err && any) {
    int fd = open(pW->zTmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) wr_fail(pW, pW->zTmp, errno);
    else {
      if (fsync(fd) != 0 && errno != EINVAL) wr_fail(pW, pW->zTmp, errno);
      close(fd);
    }
  }
}

static void *wr_thread_main(void *pArg) {
  bt_ckpt_writer *pW = pArg;
  wr_write_rank(pW);
  atomic_store(&pW->done, 1);
  return NULL;
}

/* ---- save_begin --------------------------------------------------------- */

static int wr_check_items(bt_ckpt_writer *pW, long step, const char *zMeta,
                          const bt_ckpt_item *aItem, int nItem) {
  if (step < 0 || (uint64_t)step > BT_CKPT_MAX_COUNT)
    return bt_err_set("step %ld outside [0, 10^15)", step);
  if (nItem < 0 || nItem > BT_CKPT_MAX_ITEMS)
    return bt_err_set("%d items (at most %d)", nItem, BT_CKPT_MAX_ITEMS);
  for (int i = 0; i < nItem; i++) {
    const bt_ckpt_item *p = &aItem[i];
    if (!bt_ckpt_name_ok(p->zName))
      return bt_err_set("item %d: bad name '%.80s' (1..%d of [A-Za-z0-9_.-], "
                        "not starting with '.')", i, p->zName ? p->zName : "(null)",
                        BT_CKPT_MAX_NAME);
    for (int j = 0; j < i; j++)
      if (strcmp(aItem[j].zName, p->zName) == 0)
        return bt_err_set("item '%s' given twice", p->zName);
    if (bt_ckpt_dtype_size(p->eType) == 0)
      return bt_err_set("item '%s': unknown dtype %d", p->zName, (int)p->eType);
    if (p->total > BT_CKPT_MAX_COUNT)
      return bt_err_set("item '%s': %llu elements exceed 10^15", p->zName,
                        (unsigned long long)p->total);
    if (p->sharded && !(p->lo <= p->hi && p->hi <= p->total))
      return bt_err_set("item '%s': range [%llu, %llu) outside [0, %llu)",
                        p->zName, (unsigned long long)p->lo,
                        (unsigned long long)p->hi, (unsigned long long)p->total);
    uint64_t n = p->sharded ? p->hi - p->lo : p->total;
    if (n * bt_ckpt_dtype_size(p->eType) > (uint64_t)SIZE_MAX / 2)
      return bt_err_set("item '%s' too large for this machine", p->zName);
    int writes = p->sharded || pW->rank == 0 || wr_split(pW, p);
    if (n > 0 && !p->pData && writes)
      return bt_err_set("item '%s': no data pointer%s", p->zName,
                        p->sharded ? "" : " (replicated items are read on "
                                          "every rank)");
  }
  cJSON *pMeta = cJSON_Parse(zMeta ? zMeta : "null");
  if (!pMeta) return bt_err_set("meta is not valid JSON");
  cJSON_Delete(pMeta);
  return BT_OK;
}

static int wr_set_items(bt_ckpt_writer *pW, const bt_ckpt_item *aItem,
                        int nItem) {
  if (nItem > pW->nItemCap) {
    wr_item *p = realloc(pW->aItem, (size_t)nItem * sizeof *p);
    if (!p) return bt_err_set("out of memory for checkpoint items");
    memset(p + pW->nItemCap, 0, (size_t)(nItem - pW->nItemCap) * sizeof *p);
    pW->aItem = p;
    pW->nItemCap = nItem;
  }
  pW->nItem = nItem;
  for (int i = 0; i < nItem; i++) {
    const bt_ckpt_item *pS = &aItem[i];
    wr_item *pI = &pW->aItem[i];
    snprintf(pI->zName, sizeof pI->zName, "%s", pS->zName);
    pI->eType = pS->eType;
    pI->total = pS->total;
    pI->sharded = pS->sharded;
    pI->lo = pS->sharded ? pS->lo : 0;
    pI->hi = pS->sharded ? pS->hi : pS->total;
    pI->srcOff = 0;
    pI->mine = pS->sharded || pW->rank == 0;
    if (wr_split(pW, pS)) {
      pI->lo = pS->total * (uint64_t)pW->rank / (uint64_t)pW->world;
      pI->hi = pS->total * (uint64_t)(pW->rank + 1) / (uint64_t)pW->world;
      pI->srcOff = pI->lo;
      pI->mine = 1;
    }
    if (!pI->mine) continue;
    size_t n = (size_t)(pI->hi - pI->lo) * bt_ckpt_dtype_size(pI->eType);
    /* Snapshot buffers are allocated on the first save and reused: the
     * state has the same shape every time, so steady state allocates
     * nothing. */
    if (wr_grow(&pI->pSnap, &pI->nSnapCap, n ? n : 1) != BT_OK)
      return bt_err_set("out of memory for a %zu-byte snapshot of '%s'", n,
                        pI->zName);
  }
  return BT_OK;
}

static void wr_snapshot(bt_ckpt_writer *pW, const bt_ckpt_item *aItem) {
  for (int i = 0; i < pW->nItem; i++) {
    wr_item *pI = &pW->aItem[i];
    if (!pI->mine || pI->hi == pI->lo) continue;
    size_t es = bt_ckpt_dtype_size(pI->eType);
    /* pData points at this rank's range for sharded items (ckpt.h: "rank r
     * holds elements [lo, hi)"), at the whole for replicated ones. */
    memcpy(pI->pSnap, (const uint8_t *)aItem[i].pData + pI->srcOff * es,
           (size_t)(pI->hi - pI->lo) * es);
  }
}

int bt_ckpt_save_begin(bt_ckpt_writer *pW, long step, const char *zMetaJson,
                       const bt_ckpt_item *aItem, int nItem) {
  double t0 = bt_time_now();
  if (pW->inflight) {
    int rc = bt_ckpt_finish(pW);
    if (rc != BT_OK) return rc;
  }
  pW->tBlock = 0;
  pW->bBest = pW->bBestNext;
  pW->bBestNext = 0;
  int err = 0;
  char zMsg[WR_MSG] = "";
  if (wr_check_items(pW, step, zMetaJson, aItem, nItem) != BT_OK ||
      wr_set_items(pW, aItem, nItem) != BT_OK) {
    err = 1;
    msgf(zMsg, sizeof zMsg, "%s", bt_err_msg());
  }
  if (!err) {
    free(pW->zMeta);
    pW->zMeta = strdup(zMetaJson ? zMetaJson : "null");
    if (!pW->zMeta) {
      err = 1;
      msgf(zMsg, sizeof zMsg, "out of memory");
    }
  }
  wr_path(pW, pW->zTmp, sizeof pW->zTmp, step, 1);
  if (!err && pW->rank == 0) {
    if (bt_ckpt_rmtree(pW->zTmp) != BT_OK || bt_mkdir_p(pW->zTmp) != BT_OK) {
      err = 1;
      msgf(zMsg, sizeof zMsg, "%s", bt_err_msg());
    }
  }
  /* One all-reduce (MAX) agrees on: any rank failed, and the step (max of
   * step and of -step: every rank must pass the same one, or they would
   * write into different temporary directories). */
  int64_t agree[3] = {err, step, -(int64_t)step};
  if (pW->pComm && pW->world > 1 &&
      bt_comm_host_allreduce(pW->pComm, agree, 3, BT_I64, BT_MAX) != BT_OK) {
    err = 1;
    agree[0] = 1;
    msgf(zMsg, sizeof zMsg, "%s", bt_err_msg());
  }
  if (!agree[0] && agree[1] != -agree[2]) {
    err = 1;
    agree[0] = 1;
    msgf(zMsg, sizeof zMsg, "ranks disagree on the step (%lld to %lld)",
         (long long)-agree[2], (long long)agree[1]);
  }
  if (agree[0]) {
    if (pW->rank == 0) bt_ckpt_rmtree(pW->zTmp);
    if (!err) msgf(zMsg, sizeof zMsg, "another rank failed (see its log)");
    return bt_err_set("checkpoint step %ld not started: %s", step, zMsg);
  }
  pW->step = step;
  wr_snapshot(pW, aItem);
  pW->inflight = 1;
  pW->phase = 1;
  atomic_store(&pW->done, 0);
  if (pW->opt.async) {
    if (pthread_create(&pW->thread, NULL, wr_thread_main, pW) != 0) {
      /* Could not start a thread: write inline rather than fail. */
      wr_thread_main(pW);
    } else {
      pW->threadRunning = 1;
    }
  } else {
    wr_thread_main(pW);
  }
  pW->tBlock += bt_time_now() - t0;
  pW->tLastBlock = pW->tBlock;
  return BT_OK;
}

/* ---- commit ------------------------------------------------------------- */

static char *wr_list_json(const bt_ckpt_writer *pW) {
  cJSON *pArr = cJSON_CreateArray();
  if (!pArr) return NULL;
  for (int i = 0; i < pW->nEnt; i++) {
    const wr_entry *e = &pW->aEnt[i];
    char zH[20], zR[20];
    snprintf(zH, sizeof zH, "%016llx", (unsigned long long)e->xxh);
    snprintf(zR, sizeof zR, "%016llx", (unsigned long long)e->rawXxh);
    cJSON *p = cJSON_CreateObject();
    if (!p) break;
    cJSON_AddItemToArray(pArr, p);
    cJSON_AddStringToObject(p, "file", e->zFile);
    cJSON_AddStringToObject(p, "item", pW->aItem[e->iItem].zName);
    cJSON_AddNumberToObject(p, "lo", (double)e->lo);
    cJSON_AddNumberToObject(p, "hi", (double)e->hi);
    cJSON_AddNumberToObject(p, "raw_bytes", (double)e->raw);
    cJSON_AddNumberToObject(p, "stored_bytes", (double)e->stored);
    cJSON_AddStringToObject(p, "codec",
                            e->shuffled ? BT_CKPT_CODEC_SHUF : BT_CKPT_CODEC_ZSTD);
    cJSON_AddStringToObject(p, "xxh64", zH);
    cJSON_AddStringToObject(p, "raw_xxh64", zR);
  }
  char *z = cJSON_PrintUnformatted(pArr);
  cJSON_Delete(pArr);
  return z;
}

static int wr_write_file_sync(const char *zPath, const char *zText) {
  int fd = open(zPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return bt_err_set("checkpoint write failed: %s: %s (errno %d)", zPath,
                      strerror(errno), errno);
  size_t n = strlen(zText), done = 0;
  while (done < n) {
    ssize_t w = write(fd, zText + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : EIO;
      close(fd);
      return bt_err_set("checkpoint write failed: %s: %s (errno %d)", zPath,
                        strerror(e), e);
    }
    done += (size_t)w;
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    return bt_err_set("checkpoint write failed: %s: %s (errno %d)", zPath,
                      strerror(e), e);
  }
  if (close(fd) != 0)
    return bt_err_set("checkpoint write failed: %s: %s (errno %d)", zPath,
                      strerror(errno), errno);
  return BT_OK;
}

/* The step RUN/best names (checkpoint.keep_best), or -1 when there is no
 * such file or it does not parse: then retention keeps no extra one. */
static long wr_read_best(const char *zRunDir) {
  char z[4400];
  msgf(z, sizeof z, "%s/%s", zRunDir, BT_CKPT_BEST);
  FILE *f = fopen(z, "r");
  if (!f) return -1;
  long step = -1;
  if (fscanf(f, BT_CKPT_DIR_PREFIX "%ld", &step) != 1) step = -1;
  fclose(f);
  return step;
}

/* Retention (rank 0, after latest and best): among checkpoints with step
 * <= the new one, keep the newest keep_last, those with step % keep_every
 * == 0 and the one RUN/best names (not counted in keep_last); delete the
 * rest. Newer ones (a run restarted from an older checkpoint)
 * are left alone with a warning. Failures only warn: the new checkpoint is
 * already committed. */
static void wr_retention(bt_ckpt_writer *pW) {
  long *aStep;
  char **azName;
  int n;
  if (bt_ckpt_list(pW->zRunDir, &aStep, &azName, &n) != BT_OK) {
    bt_log_warn("checkpoint retention skipped: %s", bt_err_msg());
    return;
  }
  long bestStep = wr_read_best(pW->zRunDir);
  int kept = 0;
  for (int i = 0; i < n; i++) {
    if (aStep[i] > pW->step) {
      if (!pW->seenNewer)
        bt_log_warn("%s/%s is newer than the checkpoint just saved (step %ld): "
                    "left alone; bt_ckpt_find_latest prefers it while it "
                    "verifies", pW->zRunDir, azName[i], pW->step);
      pW->seenNewer = 1;
      continue;
    }
    int keep = pW->opt.keep_last <= 0 || kept < pW->opt.keep_last ||
               (pW->opt.keep_every > 0 && aStep[i] % pW->opt.keep_every == 0);
    if (i > 0 && aStep[i] == aStep[i - 1]) keep = 1; /* ckpt-1 vs ckpt-001 */
    if (keep) {
      kept++;
      continue;
    }
    if (aStep[i] == bestStep) continue; /* checkpoint.keep_best: never */
    char z[4400];
    msgf(z, sizeof z, "%s/%s", pW->zRunDir, azName[i]);
    /* Rename first so a crash mid-delete leaves a .tmp-* that the next
     * writer removes, never a half-deleted ckpt-*. */
    char zTrash[4400];
    msgf(zTrash, sizeof zTrash, "%s/%sdel-%s", pW->zRunDir,
             BT_CKPT_TMP_PREFIX, azName[i]);
    if (rename(z, zTrash) != 0) {
      bt_log_warn("cannot retire old checkpoint %s: %s (errno %d)", z,
                  strerror(errno), errno);
      continue;
    }
    if (bt_ckpt_rmtree(zTrash) != BT_OK)
      bt_log_warn("cannot delete old checkpoint %s: %s", zTrash, bt_err_msg());
    else
      bt_log_debug("deleted old checkpoint %s", z);
  }
  bt_ckpt_list_free(aStep, azName, n);
}

/* Rank 0: builds, validates and writes the manifest from every rank's file
 * list (aList: world strings), renames the directory, updates latest. */
static int wr_commit_rank0(bt_ckpt_writer *pW, char **azList) {
  int rc = BT_ERR;
  char *zText = NULL;
  cJSON *pRoot = cJSON_CreateObject();
  if (!pRoot) return bt_err_set("out of memory building the manifest");
  char zTime[64];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(zTime, sizeof zTime, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(pRoot, "format", BT_CKPT_FORMAT_NAME);
  cJSON_AddNumberToObject(pRoot, "format_version", BT_CKPT_FORMAT_VERSION);
  cJSON_AddStringToObject(pRoot, "baton_version", BATON_VERSION);
  cJSON_AddNumberToObject(pRoot, "step", (double)pW->step);
  cJSON_AddNumberToObject(pRoot, "world_size", pW->world);
  cJSON_AddStringToObject(pRoot, "created", zTime);
  cJSON *pMeta = cJSON_Parse(pW->zMeta);
  if (!pMeta) {
    bt_err_set("meta is not valid JSON");
    goto done;
  }
  cJSON_AddItemToObject(pRoot, "meta", pMeta);
  cJSON *pItems = cJSON_AddArrayToObject(pRoot, "items");
  for (int i = 0; pItems && i < pW->nItem; i++) {
    cJSON *p = cJSON_CreateObject();
    if (!p) break;
    cJSON_AddItemToArray(pItems, p);
    cJSON_AddStringToObject(p, "name", pW->aItem[i].zName);
    cJSON_AddStringToObject(p, "dtype", bt_ckpt_dtype_name(pW->aItem[i].eType));
    cJSON_AddNumberToObject(p, "total", (double)pW->aItem[i].total);
  }
  cJSON *pFiles = cJSON_AddArrayToObject(pRoot, "files");
  for (int r = 0; pFiles && r < pW->world; r++) {
    cJSON *pArr = cJSON_Parse(azList[r]);
    if (!cJSON_IsArray(pArr)) {
      cJSON_Delete(pArr);
      bt_err_set("rank %d sent an unreadable file list", r);
      goto done;
    }
    while (cJSON_GetArraySize(pArr) > 0)
      cJSON_AddItemToArray(pFiles, cJSON_DetachItemFromArray(pArr, 0));
    cJSON_Delete(pArr);
  }
  /* Last member: the manifest's own checksum, so that no byte of the
   * checkpoint (step, loader state, config, payload checksums) is outside
   * every checksum. Printed as zeros, then filled in. */
  cJSON_AddStringToObject(pRoot, BT_CKPT_SUM_KEY, "0000000000000000");
  zText = cJSON_Print(pRoot);
  if (!zText || !pItems || !pFiles) {
    bt_err_set("out of memory printing the manifest");
    goto done;
  }
  size_t nText = strlen(zText), at;
  uint64_t sum;
  BT_ASSERT(bt_ckpt_manifest_sum_find(zText, nText, &at)); /* just added */
  if (bt_ckpt_manifest_sum(zText, nText, at, &sum) != BT_OK) goto done;
  char zSum[20];
  snprintf(zSum, sizeof zSum, "%016llx", (unsigned long long)sum);
  memcpy(zText + at, zSum, 16);
  /* Self-check with the reader's validator: never commit what the reader
   * would reject (ranges that do not tile, mismatched item lists...). */
  bt_ckpt_manifest m;
  if (bt_ckpt_manifest_parse(&m, zText, strlen(zText)) != BT_OK) {
    bt_err_prefix("the ranks' items do not form a valid checkpoint: ");
    goto done;
  }
  bt_ckpt_manifest_clear(&m);

  char zPath[4400], zFinal[4096], zLatest[4096];
  msgf(zPath, sizeof zPath, "%s/%s", pW->zTmp, BT_CKPT_MANIFEST);
  wr_path(pW, zFinal, sizeof zFinal, pW->step, 0);
  if (bt_fault_hit("ckpt.before_manifest")) raise(SIGKILL);
  if (wr_write_file_sync(zPath, zText) != BT_OK) goto done;
  if (bt_fsync_dir(pW->zTmp) != BT_OK) goto done;
  if (bt_fault_hit("ckpt.before_rename")) raise(SIGKILL);
  struct stat st;
  if (lstat(zFinal, &st) == 0 && !S_ISDIR(st.st_mode)) {
    /* Something that is not a checkpoint holds the name (a stray file):
     * renaming over it fails with ENOTDIR at every save of this step. It
     * is not ours to delete; move it aside. */
    char zName[64];
    snprintf(zName, sizeof zName, "%s%08ld", BT_CKPT_DIR_PREFIX, pW->step);
    if (bt_ckpt_set_aside_one(pW->zRunDir, zName,
                              "is not a checkpoint directory but has the "
                              "name of this save") != BT_OK)
      goto done;
  }
  if (rename(pW->zTmp, zFinal) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      bt_err_set("cannot rename '%s' to '%s': %s (errno %d)", pW->zTmp, zFinal,
                 strerror(errno), errno);
      goto done;
    }
    /* The same step was saved before (a run resumed from it): swap the
     * two directories atomically, then delete the old one. */
    if (renameat2(AT_FDCWD, pW->zTmp, AT_FDCWD, zFinal, RENAME_EXCHANGE) != 0) {
      bt_err_set("'%s' already exists and cannot be replaced atomically: %s "
                 "(errno %d)", zFinal, strerror(errno), errno);
      goto done;
    }
    bt_log_warn("replaced existing checkpoint %s", zFinal);
    bt_ckpt_rmtree(pW->zTmp);
  }
  if (bt_fsync_dir(pW->zRunDir) != BT_OK) goto done;
  if (bt_fault_hit("ckpt.before_latest")) raise(SIGKILL);
  snprintf(zLatest, sizeof zLatest, "%s/%s", pW->zRunDir, BT_CKPT_LATEST);
  char zName[64];
  snprintf(zName, sizeof zName, "%s%08ld\n", BT_CKPT_DIR_PREFIX, pW->step);
  if (bt_file_write_atomic(zLatest, zName, strlen(zName)) != BT_OK) {
    /* The checkpoint itself is committed and findable; latest is advisory. */
    bt_log_warn("checkpoint %s saved but %s not updated: %s", zFinal, zLatest,
                bt_err_msg());
  }
  /* RUN/best before retention, so the old best may go and the new one
   * stays; a crash in between leaves best naming a complete checkpoint. */
  if (pW->bBest) {
    char zBest[4400];
    msgf(zBest, sizeof zBest, "%s/%s", pW->zRunDir, BT_CKPT_BEST);
    if (bt_file_write_atomic(zBest, zName, strlen(zName)) != BT_OK)
      bt_log_warn("checkpoint %s saved but %s not updated: %s", zFinal, zBest,
                  bt_err_msg());
  }
  wr_retention(pW);
  bt_log_debug("checkpoint committed: %s", zFinal);
  rc = BT_OK;
done:
  free(zText);
  cJSON_Delete(pRoot);
  return rc;
}

/* End of phase WRITING (all ranks' threads done): every rank contributes
 * its status and file list. On success rank 0 keeps all lists in
 * pW->pLists (world strings of pW->nListMax bytes) for the commit. */
static int wr_gather(bt_ckpt_writer *pW) {
  wr_join(pW);
  wr_record rec;
  memset(&rec, 0, sizeof rec);
  char *zList = NULL;
  if (pW->err) {
    rec.err = 1;
    msgf(rec.zMsg, sizeof rec.zMsg, "%s", pW->zErr);
    bt_log_error("%s", pW->zErr);
  } else {
    zList = wr_list_json(pW);
    if (!zList) {
      rec.err = 1;
      msgf(rec.zMsg, sizeof rec.zMsg, "out of memory listing payload files");
    } else {
      rec.nList = strlen(zList) + 1;
    }
  }
  size_t W = (size_t)pW->world;
  wr_record *aRec = bt_calloc(W, sizeof *aRec, "checkpoint commit records");
  /* Without it this rank cannot take part in the exchange and every rank
   * would hang: a broken invariant, not an expected failure. */
  BT_ASSERT(aRec);
  int rc = wr_allgather(pW, &rec, aRec, sizeof rec);
  int firstBad = -1;
  uint64_t nMax = 1;
  for (size_t r = 0; rc == BT_OK && r < W; r++) {
    if (aRec[r].err && firstBad < 0) firstBad = (int)r;
    if (aRec[r].nList > nMax) nMax = aRec[r].nList;
  }
  if (rc != BT_OK) {
    free(aRec);
    free(zList);
    return bt_err_prefix("checkpoint step %ld: ", pW->step);
  }
  if (firstBad >= 0) {
    if (pW->rank == 0) bt_ckpt_rmtree(pW->zTmp);
    aRec[firstBad].zMsg[WR_MSG - 1] = 0;
    bt_err_set("checkpoint step %ld failed on rank %d: %s; previous "
               "checkpoint kept", pW->step, firstBad, aRec[firstBad].zMsg);
    free(aRec);
    free(zList);
    return BT_ERR;
  }
  free(aRec);
  /* Every rank's file list, padded to the longest. */
  char *pSend = bt_calloc(1, (size_t)nMax, "checkpoint file list");
  char *pAll = bt_calloc(W, (size_t)nMax, "checkpoint file lists");
  BT_ASSERT(pSend && pAll);
  memcpy(pSend, zList, strlen(zList) + 1);
  free(zList);
  rc = wr_allgather(pW, pSend, pAll, (size_t)nMax);
  free(pSend);
  if (rc != BT_OK) {
    free(pAll);
    return bt_err_prefix("checkpoint step %ld: ", pW->step);
  }
  free(pW->pLists);
  pW->pLists = NULL;
  if (pW->rank == 0) {
    pW->pLists = pAll;
    pW->nListMax = (size_t)nMax;
  } else {
    free(pAll);
  }
  return BT_OK;
}

/* Phase COMMITTING, rank 0, in the background thread (async) or inline:
 * file operations only. The result goes to pW->err / pW->zErr. */
static void wr_commit_files(bt_ckpt_writer *pW) {
  pW->err = 0;
  pW->zErr[0] = 0;
  size_t W = (size_t)pW->world;
  char **az = bt_calloc(W, sizeof *az, "checkpoint file lists");
  int rc = BT_ERR;
  if (az) {
    for (size_t r = 0; r < W; r++) {
      az[r] = pW->pLists + r * pW->nListMax;
      az[r][pW->nListMax - 1] = 0;
    }
    rc = wr_commit_rank0(pW, az);
    free(az);
  }
  if (rc != BT_OK) {
    pW->err = 1;
    msgf(pW->zErr, sizeof pW->zErr, "%s", bt_err_msg());
    bt_ckpt_rmtree(pW->zTmp);
  }
  free(pW->pLists);
  pW->pLists = NULL;
}

static void *wr_commit_main(void *pArg) {
  bt_ckpt_writer *pW = pArg;
  wr_commit_files(pW);
  atomic_store(&pW->done, 1);
  return NULL;
}

/* Starts phase COMMITTING after a successful gather. */
static void wr_commit_start(bt_ckpt_writer *pW) {
  pW->phase = 2;
  pW->err = 0;
  if (pW->rank != 0) {
    atomic_store(&pW->done, 1);
    return;
  }
  atomic_store(&pW->done, 0);
  if (pW->opt.async &&
      pthread_create(&pW->thread, NULL, wr_commit_main, pW) == 0) {
    pW->threadRunning = 1;
    return;
  }
  wr_commit_main(pW);
}

/* End of phase COMMITTING: rank 0 tells everyone how it went. */
static int wr_conclude(bt_ckpt_writer *pW) {
  wr_join(pW);
  wr_record st;
  memset(&st, 0, sizeof st);
  if (pW->rank == 0 && pW->err) {
    st.err = 1;
    msgf(st.zMsg, sizeof st.zMsg, "%s", pW->zErr);
  }
  if (wr_broadcast(pW, &st, sizeof st) != BT_OK)
    return bt_err_prefix("checkpoint step %ld: ", pW->step);
  if (st.err) {
    st.zMsg[WR_MSG - 1] = 0;
    return bt_err_set("checkpoint step %ld failed on rank 0: %s; previous "
                      "checkpoint kept", pW->step, st.zMsg);
  }
  return BT_OK;
}

/* Collective. Phases of a save in flight:
 *   1 WRITING     every rank's thread writes its payloads;
 *   2 COMMITTING  rank 0's thread writes the manifest, renames, updates
 *                 latest and applies retention.
 * Each poll all-reduces (MIN) "my part of this phase is done" and moves on
 * when everyone is done; with async = 0 both phases finish in one call. */
int bt_ckpt_poll(bt_ckpt_writer *pW, long *pnDone) {
  if (pnDone) *pnDone = -1;
  if (!pW->inflight) return BT_OK;
  double t0 = bt_time_now();
  int rc = BT_OK;
  for (;;) {
    int allDone = atomic_load(&pW->done);
    if (wr_allreduce_int(pW, &allDone, BT_MIN) != BT_OK) {
      rc = bt_err_prefix("checkpoint step %ld: ", pW->step);
      break;
    }
    if (!allDone) break;
    if (pW->phase == 1) {
      rc = wr_gather(pW);
      if (rc != BT_OK) {
        pW->inflight = 0;
        break;
      }
      wr_commit_start(pW);
      if (pW->opt.async) break; /* rank 0 commits in the background */
      continue;                 /* sync: finished already; conclude now */
    }
    rc = wr_conclude(pW);
    pW->inflight = 0;
    if (rc == BT_OK && pnDone) *pnDone = pW->step;
    break;
  }
  pW->tBlock += bt_time_now() - t0;
  pW->tLastBlock = pW->tBlock;
  return rc;
}

int bt_ckpt_finish(bt_ckpt_writer *pW) {
  int rc = BT_OK;
  while (pW->inflight && rc == BT_OK) {
    /* Our own thread first; then poll's all-reduce sees every rank done.
     * Every rank goes round this loop the same number of times. */
    double t0 = bt_time_now();
    wr_join(pW);
    pW->tBlock += bt_time_now() - t0;
    rc = bt_ckpt_poll(pW, NULL);
  }
  return rc;
}
