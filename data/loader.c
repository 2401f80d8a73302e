/*
 * loader.c: the sharded deterministic stream of loader.h, its prefetch
 * thread and validation mode. Sources (synthetic, HDF5) live in synth.c and
 * h5.c behind loader_impl.h.
 *
 * Stream positions. A position is (epoch, consumed, micro): the optimizer
 * step that starts at sample `consumed` of epoch `epoch`, micro-step
 * `micro` of it. The step takes stepN = min(global_batch, n - consumed)
 * samples; micro-step m takes bt_split(stepN, accum, m) of them; rank r
 * takes bt_split(microN, world, r) of those; stream position q maps to
 * sample perm(seed, epoch, n, q) (or q when shuffle is off). pos_advance()
 * moves to the next micro-step and rolls the epoch when consumed == n.
 *
 * Invariants (between calls):
 *   1. `cons` is the position of the next micro-step bt_loader_next()
 *      returns; bt_loader_get_state() is (cons.epoch, cons.consumed), i.e.
 *      only fully returned optimizer steps count as consumed: a checkpoint
 *      taken mid-step repeats that step's micro-steps after resume.
 *   2. Prefetch ring: nSlot = prefetch + 1 slots. Counters nFilled >=
 *      nTaken >= nReleased; slots [nReleased, nTaken) are held by the caller
 *      (at most one: the last batch returned stays valid until the next
 *      call), [nTaken, nFilled) are ready, and the producer fills slot
 *      nFilled % nSlot only while nFilled - nReleased < nSlot. Slots are
 *      written only by their owner of the moment, so a slot's contents need
 *      no lock; the counters are guarded by `mu`.
 *   3. `prod` is the position of slot nFilled; when no thread runs,
 *      prod == cons and the ring is empty.
 *   4. A failed fill publishes its slot with rc = BT_ERR and the message
 *      copied (bt_err_msg is per thread); the producer then stops, and every
 *      later bt_loader_next() returns that error until a seek.
 *
 * Thread rule: the source is used by the prefetch thread while it runs and
 * by the caller's thread otherwise. seek, val_begin and free stop (join)
 * the thread first; bt_loader_next() starts it again lazily from `cons`.
 * HDF5 calls are additionally serialised process-wide by bt_h5_lock().
 */
#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader_impl.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime.h>
#endif

typedef struct bt_pos {
  int64_t epoch;
  int64_t consumed;
  int micro;
} bt_pos;

typedef struct bt_slot {
  int64_t *aIndex;
  int32_t *aIn, *aTgt;
  float *aX;
  int n;
  int64_t global_n, step_global_n, epoch;
  int rc;
  char zErr[1024];
  int pinned; /* buffers came from cudaHostAlloc */
} bt_slot;

struct bt_loader {
  bt_loader_config cfg; /* defaults filled; strings point at our copies */
  char *zPath, *zSplit;
  bt_source *pSrc;
  int64_t n;  /* samples in use (after limit) */
  int nCap;   /* max samples of one rank in one micro-step */
  int nSlot;
  bt_slot *aSlot;
  bt_pos cons, prod;
  /* prefetch thread */
  int bThread, bStop, bHeld;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cvReady, cvSpace;
  uint64_t nFilled, nTaken, nReleased;
  /* validation mode */
  int64_t valN;
  int valPer;
  int64_t valChunk;
  int valCap;
  bt_slot valSlot;
};

/* ---- slots --------------------------------------------------------------- */

/* Batch buffers: page-locked when the trainer asks for it (GPU builds), so
 * the host-to-device copy of a batch runs at full bus speed; ordinary
 * 64-byte aligned memory otherwise, or when pinned memory cannot be had
 * (no device, locked-memory limit): then once a warning, never an error. */
static void *buf_alloc(bt_slot *s, size_t nByte, const char *zWhat) {
#ifdef BATON_HAVE_CUDA
  if (s->pinned) {
    void *p = NULL;
    if (cudaHostAlloc(&p, nByte ? nByte : 64, cudaHostAllocDefault) ==
        cudaSuccess)
      return p;
    (void)cudaGetLastError();
    static int warned = 0;
    if (!warned) {
      warned = 1;
      bt_log_warn("loader: pinned host memory unavailable (%s); using "
                  "ordinary memory for batches",
                  zWhat);
    }
    return NULL;
  }
#endif
  (void)s; /* only CUDA builds pin */
  return bt_malloc_aligned(nByte, zWhat);
}

static void buf_free(const bt_slot *s, void *p) {
  if (!p) return;
#ifdef BATON_HAVE_CUDA
  if (s->pinned) {
    cudaFreeHost(p);
    return;
  }
#endif
  (void)s;
  free(p);
}

static void slot_free(bt_slot *s) {
  free(s->aIndex);
  buf_free(s, s->aIn);
  buf_free(s, s->aTgt);
  buf_free(s, s->aX);
  memset(s, 0, sizeof *s);
}

static int slot_alloc_bufs(bt_loader *p, bt_slot *s, size_t n) {
  if (p->cfg.eKind == BT_SAMPLE_TOKENS) {
    s->aIn = buf_alloc(s, n * (size_t)p->cfg.T * sizeof(int32_t),
                       "loader input buffer");
    s->aTgt = buf_alloc(s, n * (size_t)p->cfg.T * sizeof(int32_t),
                        "loader target buffer");
    return s->aIn && s->aTgt ? BT_OK : BT_ERR;
  }
  s->aX = buf_alloc(s, n * (size_t)p->cfg.D * sizeof(float),
                    "loader feature buffer");
  s->aTgt = buf_alloc(s, n * sizeof(int32_t), "loader label buffer");
  return s->aX && s->aTgt ? BT_OK : BT_ERR;
}

static int slot_alloc(bt_loader *p, bt_slot *s, int nCap) {
  memset(s, 0, sizeof *s);
  size_t n = (size_t)(nCap > 0 ? nCap : 1);
  s->aIndex = bt_malloc(n * sizeof(int64_t), "loader index buffer");
  if (!s->aIndex) return BT_ERR;
  s->pinned = p->cfg.pinned;
  if (slot_alloc_bufs(p, s, n) == BT_OK) return BT_OK;
  if (!s->pinned) return BT_ERR;
  /* pinned allocation failed: release what was pinned, go ordinary */
  buf_free(s, s->aIn);
  buf_free(s, s->aTgt);
  buf_free(s, s->aX);
  s->aIn = s->aTgt = NULL;
  s->aX = NULL;
  s->pinned = 0;
  return slot_alloc_bufs(p, s, n);
}

static void slot_to_batch(const bt_slot *s, bt_batch *b) {
  b->n = s->n;
  b->global_n = s->global_n;
  b->step_global_n = s->step_global_n;
  b->inputs = s->aIn;
  b->targets = s->aTgt;
  b->x = s->aX;
  b->index = s->aIndex;
  b->epoch = s->epoch;
}

/* ---- stream plan --------------------------------------------------------- */

static int64_t pos_step_n(const bt_loader *p, const bt_pos *pos) {
  int64_t left = p->n - pos->consumed;
  return left < p->cfg.global_batch ? left : p->cfg.global_batch;
}

static void pos_advance(const bt_loader *p, bt_pos *pos) {
  if (++pos->micro < p->cfg.accum) return;
  pos->micro = 0;
  pos->consumed += pos_step_n(p, pos);
  if (pos->consumed >= p->n) {
    pos->epoch++;
    pos->consumed = 0;
  }
}

/* Fills slot s with this rank's part of the micro-step at pos. Runs on the
 * prefetch thread, or on the caller's thread when there is none. */
static int fill_slot(bt_loader *p, bt_slot *s, const bt_pos *pos) {
  int64_t stepN = pos_step_n(p, pos), mLo, mHi, rLo, rHi;
  bt_split(stepN, p->cfg.accum, pos->micro, &mLo, &mHi);
  bt_split(mHi - mLo, p->cfg.world, p->cfg.rank, &rLo, &rHi);
  BT_ASSERT(rHi - rLo <= p->nCap);
  int n = (int)(rHi - rLo);
  int64_t q0 = pos->consumed + mLo + rLo;
  for (int i = 0; i < n; i++) {
    int64_t q = q0 + i;
    s->aIndex[i] =
        p->cfg.shuffle ? bt_perm_index(p->cfg.seed, pos->epoch, p->n, q) : q;
  }
  s->n = n;
  s->global_n = mHi - mLo;
  s->step_global_n = stepN;
  s->epoch = pos->epoch;
  s->rc = BT_OK;
  s->zErr[0] = 0;
  if (bt_fault_hit("loader.read")) {
    return bt_err_set("%s: injected read fault (BATON_FAULT loader.read)",
                      p->zPath);
  }
  if (n == 0) return BT_OK;
  return p->pSrc->xRead(p->pSrc, s->aIndex, n, s->aIn, s->aTgt, s->aX);
}

/* ---- prefetch thread ----------------------------------------------------- */

static void *prefetch_main(void *pArg) {
  bt_loader *p = pArg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->bStop && p->nFilled - p->nReleased >= (uint64_t)p->nSlot)
      pthread_cond_wait(&p->cvSpace, &p->mu);
    if (p->bStop) break;
    bt_slot *s = &p->aSlot[p->nFilled % (uint64_t)p->nSlot];
    bt_pos pos = p->prod;
    pthread_mutex_unlock(&p->mu);
    int rc = fill_slot(p, s, &pos);
    if (rc != BT_OK) {
      s->rc = rc;
      snprintf(s->zErr, sizeof s->zErr, "%s", bt_err_msg());
    }
    pthread_mutex_lock(&p->mu);
    if (rc == BT_OK) pos_advance(p, &p->prod);
    p->nFilled++;
    pthread_cond_broadcast(&p->cvReady);
    if (rc != BT_OK) {
      while (!p->bStop) pthread_cond_wait(&p->cvSpace, &p->mu);
      break;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void prefetch_stop(bt_loader *p) {
  if (p->bThread) {
    pthread_mutex_lock(&p->mu);
    p->bStop = 1;
    pthread_cond_broadcast(&p->cvSpace);
    pthread_cond_broadcast(&p->cvReady);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->bThread = 0;
  }
  p->bStop = 0;
  p->nFilled = p->nTaken = p->nReleased = 0;
  p->bHeld = 0;
  p->prod = p->cons;
}

static int prefetch_start(bt_loader *p) {
  prefetch_stop(p);
  int rc = pthread_create(&p->thread, NULL, prefetch_main, p);
  if (rc != 0)
    return bt_err_set("%s: cannot start the prefetch thread: %s", p->zPath,
                      strerror(rc));
  p->bThread = 1;
  return BT_OK;
}

/* ---- open / free --------------------------------------------------------- */

static char *str_dup(const char *z) {
  size_t n = strlen(z);
  char *r = bt_malloc(n + 1, "string");
  if (r) memcpy(r, z, n + 1);
  return r;
}

/* Defaults filled into c (accum, world, prefetch, a val loader's batch),
 * then the checks that need no data. */
static int loader_check_config(bt_loader_config *c) {
  if (c->accum <= 0) c->accum = 1;
  if (c->world <= 0) c->world = 1;
  if (c->prefetch == 0) c->prefetch = 2;
  if (strcmp(c->zSplit, "train") != 0 && strcmp(c->zSplit, "val") != 0)
    return bt_err_set("%s: split '%s' is not 'train' or 'val'", c->zPath,
                      c->zSplit);
  if (c->rank < 0 || c->rank >= c->world)
    return bt_err_set("%s: rank %d is outside world size %d", c->zPath,
                      c->rank, c->world);
  if (c->global_batch <= 0 && strcmp(c->zSplit, "val") == 0)
    c->global_batch = 1; /* a val loader may serve only val_begin/next */
  if (c->global_batch <= 0)
    return bt_err_set("%s: global batch %lld must be positive", c->zPath,
                      (long long)c->global_batch);
  if (c->eKind == BT_SAMPLE_TOKENS && (c->T <= 0 || c->T > (1 << 24)))
    return bt_err_set("%s: context length T=%d is out of range", c->zPath,
                      c->T);
  if (c->eKind != BT_SAMPLE_TOKENS && c->eKind != BT_SAMPLE_FEATURES)
    return bt_err_set("%s: unknown sample kind %d", c->zPath, (int)c->eKind);
  return BT_OK;
}

/* The opened source against the config: enough samples, the configured
 * feature width; copies what the data decides (D, nClass, vocab) into
 * p->cfg. */
static int loader_check_source(bt_loader *p) {
  bt_loader_config *c = &p->cfg;
  const char *zWhat = c->eKind == BT_SAMPLE_TOKENS ? "tokens" : "x";
  p->n = p->pSrc->n;
  if (c->limit > 0 && c->limit < p->n) p->n = c->limit;
  if (p->n <= 0)
    return bt_err_set("%s:/%s/%s: dataset is empty (no complete sample)",
                      c->zPath, c->zSplit, zWhat);
  if (strcmp(c->zSplit, "train") == 0 && p->n < c->global_batch)
    return bt_err_set("%s:/%s/%s: %lld samples are fewer than one global "
                      "batch (%lld)",
                      c->zPath, c->zSplit, zWhat, (long long)p->n,
                      (long long)c->global_batch);
  if (c->eKind == BT_SAMPLE_FEATURES) {
    if (c->D > 0 && c->D != p->pSrc->D)
      return bt_err_set("%s:/%s/x: feature width %d does not match "
                        "model.n_features = %d; set model.n_features = %d, "
                        "or leave it unset (0) to take it from the file",
                        c->zPath, c->zSplit, p->pSrc->D, c->D, p->pSrc->D);
    c->D = p->pSrc->D;
    c->nClass = p->pSrc->nClass;
  } else {
    c->vocab = p->pSrc->vocab;
  }
  return BT_OK;
}

/* The prefetch ring: prefetch + 1 slots (1 without a thread), each for
 * this rank's share of one micro-step. */
static int loader_alloc_slots(bt_loader *p) {
  const bt_loader_config *c = &p->cfg;
  int64_t micro = (c->global_batch + c->accum - 1) / c->accum;
  int64_t cap = (micro + c->world - 1) / c->world;
  if (cap > (1 << 28))
    return bt_err_set("%s: %lld samples per rank per micro-step is too many",
                      c->zPath, (long long)cap);
  p->nCap = (int)cap;
  p->nSlot = c->prefetch > 0 ? c->prefetch + 1 : 1;
  p->aSlot = bt_calloc((size_t)p->nSlot, sizeof(bt_slot), "loader slots");
  if (!p->aSlot) return BT_ERR;
  for (int i = 0; i < p->nSlot; i++)
    if (slot_alloc(p, &p->aSlot[i], p->nCap) != BT_OK) return BT_ERR;
  return BT_OK;
}

int bt_loader_open(bt_loader **ppLoader, const bt_loader_config *pCfg) {
  *ppLoader = NULL;
  if (!pCfg || !pCfg->zPath || !pCfg->zPath[0])
    return bt_err_set("loader: no dataset path given");
  bt_loader *p = bt_calloc(1, sizeof *p, "loader");
  if (!p) return BT_ERR;
  p->cfg = *pCfg;
  p->zPath = str_dup(pCfg->zPath);
  p->zSplit = str_dup(pCfg->zSplit && pCfg->zSplit[0] ? pCfg->zSplit : "train");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cvReady, NULL);
  pthread_cond_init(&p->cvSpace, NULL);
  if (!p->zPath || !p->zSplit) goto fail;
  bt_loader_config *c = &p->cfg;
  c->zPath = p->zPath;
  c->zSplit = p->zSplit;
  if (loader_check_config(c) != BT_OK) goto fail;
  /* Make sure the fault table is parsed on this thread before the
   * prefetch thread can race to parse it. */
  (void)bt_fault_hit("loader.open");

  int rc = strncmp(c->zPath, "synthetic:", 10) == 0 ? bt_synth_open(&p->pSrc, c)
                                                    : bt_h5_open(&p->pSrc, c);
  if (rc != BT_OK || loader_check_source(p) != BT_OK ||
      loader_alloc_slots(p) != BT_OK)
    goto fail;
  *ppLoader = p;
  return BT_OK;
fail:
  bt_loader_free(p);
  return BT_ERR;
}

void bt_loader_free(bt_loader *p) {
  if (!p) return;
  prefetch_stop(p);
  if (p->aSlot)
    for (int i = 0; i < p->nSlot; i++) slot_free(&p->aSlot[i]);
  free(p->aSlot);
  slot_free(&p->valSlot);
  if (p->pSrc) p->pSrc->xClose(p->pSrc);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cvReady);
  pthread_cond_destroy(&p->cvSpace);
  free(p->zPath);
  free(p->zSplit);
  free(p);
}

/* ---- queries ------------------------------------------------------------- */

int64_t bt_loader_size(const bt_loader *p) { return p->n; }
int bt_loader_feature_dim(const bt_loader *p) { return p->cfg.D; }
int bt_loader_num_classes(const bt_loader *p) { return p->cfg.nClass; }
int bt_loader_vocab(const bt_loader *p) { return p->pSrc->vocab; }
uint64_t bt_loader_bytes_read(const bt_loader *p) {
  return __atomic_load_n(&p->pSrc->nByteRead, __ATOMIC_RELAXED);
}

int bt_loader_seek(bt_loader *p, const bt_loader_state *pState) {
  if (pState->epoch < 0 || pState->consumed < 0 || pState->consumed > p->n)
    return bt_err_set("%s: cannot seek to epoch %lld, consumed %lld: the "
                      "split has %lld samples",
                      p->zPath, (long long)pState->epoch,
                      (long long)pState->consumed, (long long)p->n);
  prefetch_stop(p);
  p->cons.epoch = pState->epoch;
  p->cons.consumed = pState->consumed;
  p->cons.micro = 0;
  if (p->cons.consumed == p->n) {
    p->cons.epoch++;
    p->cons.consumed = 0;
  }
  p->prod = p->cons;
  return BT_OK;
}

bt_loader_state bt_loader_get_state(const bt_loader *p) {
  bt_loader_state s = {p->cons.epoch, p->cons.consumed};
  return s;
}

/* ---- the stream ---------------------------------------------------------- */

int bt_loader_next(bt_loader *p, bt_batch *pBatch) {
  memset(pBatch, 0, sizeof *pBatch);
  if (p->nSlot == 1) { /* synchronous: prefetch < 0 */
    bt_slot *s = &p->aSlot[0];
    double t0 = bt_time_now();
    if (fill_slot(p, s, &p->cons) != BT_OK) return BT_ERR;
    pos_advance(p, &p->cons);
    slot_to_batch(s, pBatch);
    pBatch->wait_seconds = bt_time_now() - t0;
    return BT_OK;
  }
  if (!p->bThread && prefetch_start(p) != BT_OK) return BT_ERR;
  pthread_mutex_lock(&p->mu);
  if (p->bHeld) {
    p->nReleased++;
    p->bHeld = 0;
    pthread_cond_broadcast(&p->cvSpace);
  }
  double t0 = bt_time_now();
  while (p->nFilled == p->nTaken) pthread_cond_wait(&p->cvReady, &p->mu);
  double wait = bt_time_now() - t0;
  bt_slot *s = &p->aSlot[p->nTaken % (uint64_t)p->nSlot];
  if (s->rc != BT_OK) {
    pthread_mutex_unlock(&p->mu);
    return bt_err_set("%s", s->zErr);
  }
  p->nTaken++;
  p->bHeld = 1;
  pos_advance(p, &p->cons);
  pthread_mutex_unlock(&p->mu);
  slot_to_batch(s, pBatch);
  pBatch->wait_seconds = wait;
  return BT_OK;
}

/* ---- validation mode ----------------------------------------------------- */

int bt_loader_val_begin(bt_loader *p, int64_t nSample, int per_call) {
  if (per_call <= 0)
    return bt_err_set("%s: validation batch %d must be positive", p->zPath,
                      per_call);
  prefetch_stop(p); /* the caller's thread now owns the source */
  if (nSample <= 0 || nSample > p->n) nSample = p->n;
  int cap = (per_call + p->cfg.world - 1) / p->cfg.world;
  if (cap > p->valCap) {
    slot_free(&p->valSlot);
    p->valCap = 0;
    if (slot_alloc(p, &p->valSlot, cap) != BT_OK) return BT_ERR;
    p->valCap = cap;
  }
  p->valN = nSample;
  p->valPer = per_call;
  p->valChunk = 0;
  return BT_OK;
}

int bt_loader_val_next(bt_loader *p, bt_batch *pBatch) {
  memset(pBatch, 0, sizeof *pBatch);
  if (p->valPer <= 0)
    return bt_err_set("%s: bt_loader_val_next() without val_begin()",
                      p->zPath);
  bt_slot *s = &p->valSlot;
  int64_t lo = p->valChunk * p->valPer;
  if (lo >= p->valN) {
    s->n = 0;
    s->global_n = s->step_global_n = 0;
    slot_to_batch(s, pBatch);
    return BT_OK;
  }
  int64_t hi = lo + p->valPer < p->valN ? lo + p->valPer : p->valN;
  int64_t rLo, rHi;
  bt_split(hi - lo, p->cfg.world, p->cfg.rank, &rLo, &rHi);
  int n = (int)(rHi - rLo);
  for (int i = 0; i < n; i++) s->aIndex[i] = lo + rLo + i;
  s->n = n;
  s->global_n = s->step_global_n = hi - lo;
  s->epoch = 0;
  double t0 = bt_time_now();
  if (n > 0 &&
      p->pSrc->xRead(p->pSrc, s->aIndex, n, s->aIn, s->aTgt, s->aX) != BT_OK)
    return BT_ERR;
  p->valChunk++;
  slot_to_batch(s, pBatch);
  pBatch->wait_seconds = bt_time_now() - t0;
  return BT_OK;
}
