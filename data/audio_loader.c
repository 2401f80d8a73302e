/*
 * audio_loader.c: the epoch plan and the length-bucketed stream of
 * audio_loader.h over the ragged layout of prepare_audio.c.
 *
 * Invariants of a bt_audio_loader (between calls):
 *   1. (epoch, consumed, micro) is the position of the next micro-step
 *      bt_audio_loader_next() returns; consumed is the plan batch at which
 *      the current optimizer step starts. It need not be a multiple of
 *      world * accum: a resume on another world size keeps it as it was.
 *   2. plan is the plan of `epoch` (planEpoch == epoch) whenever a batch is
 *      read; it is rebuilt when the epoch rolls and on seek.
 *   3. aFrameOff and aLabOff were validated at open: both start at 0, never
 *      decrease, end at the datasets' lengths, and every utterance has at
 *      least one frame, so a read can trust the rows it selects.
 *   4. nPadSum / nCellSum cover every batch of every rank of every
 *      micro-step returned so far (each rank knows the whole plan).
 */
#include "data/audio_loader.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/util.h"
#include "data/audio_features.h"
#include "data/loader_impl.h"

/* bt_rng_key() purpose of the batch-order permutation (loader_impl.h keeps
 * the other purposes of the data module; this one is private to this file). */
#define BT_PURPOSE_AUDIO_BATCH 0x41424154 /* "ABAT" */

/* ---- the plan ------------------------------------------------------------- */

typedef struct len_idx {
  int32_t nFrame;
  int64_t i;
} len_idx;

static int cmp_len_desc(const void *a, const void *b) {
  const len_idx *x = a, *y = b;
  if (x->nFrame != y->nFrame) return x->nFrame > y->nFrame ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

/* Greedy fill of the sorted order aLi into batches (step 3): writes batch
 * starts into aStart (capacity n + 1) and returns the batch count. */
static int64_t plan_fill(const len_idx *aLi, int64_t n, int64_t window,
                         int64_t maxFrames, int64_t *aStart) {
  int64_t nBatch = 0, B = 0, T = 0;
  for (int64_t p = 0; p < n; p++) {
    int bNewWindow = p % window == 0;
    if (B > 0 && !bNewWindow && (B + 1) * T <= maxFrames) {
      B++;
      continue;
    }
    aStart[nBatch++] = p;
    B = 1;
    T = aLi[p].nFrame;
  }
  aStart[nBatch] = n;
  return nBatch;
}

int bt_audio_plan_make(const int32_t *aFrames, int64_t n, uint64_t seed,
                       int64_t epoch, int64_t maxFrames, int64_t window,
                       int shuffle, bt_audio_plan *pPlan) {
  memset(pPlan, 0, sizeof *pPlan);
  BT_ASSERT(n > 0 && maxFrames > 0);
  if (window <= 0 || window > n) window = n;
  for (int64_t i = 0; i < n; i++) {
    BT_ASSERT(aFrames[i] > 0);
    if (aFrames[i] > maxFrames)
      return bt_err_set("utterance %lld has %d frames, more than "
                        "data.max_frames = %lld (raise it, or drop the "
                        "utterance from the manifest)",
                        (long long)i, aFrames[i], (long long)maxFrames);
  }
  len_idx *aLi = bt_malloc((size_t)n * sizeof *aLi, "audio plan");
  int64_t *aStart = bt_malloc((size_t)(n + 1) * sizeof *aStart, "audio plan");
  pPlan->aStart = bt_malloc((size_t)(n + 1) * sizeof(int64_t), "audio plan");
  pPlan->aUtt = bt_malloc((size_t)n * sizeof(int64_t), "audio plan");
  if (!aLi || !aStart || !pPlan->aStart || !pPlan->aUtt) {
    free(aLi);
    free(aStart);
    bt_audio_plan_free(pPlan);
    return BT_ERR;
  }
  for (int64_t p = 0; p < n; p++) { /* step 1 */
    int64_t i = shuffle ? bt_perm_index(seed, epoch, n, p) : p;
    aLi[p].i = i;
    aLi[p].nFrame = aFrames[i];
  }
  for (int64_t lo = 0; lo < n; lo += window) { /* step 2 */
    int64_t m = n - lo < window ? n - lo : window;
    qsort(aLi + lo, (size_t)m, sizeof *aLi, cmp_len_desc);
  }
  int64_t nBatch = plan_fill(aLi, n, window, maxFrames, aStart); /* step 3 */
  uint64_t seedB = bt_rng_key(seed, BT_PURPOSE_AUDIO_BATCH, 0, 0);
  int64_t q = 0;
  for (int64_t b = 0; b < nBatch; b++) { /* step 4 */
    int64_t src = shuffle ? bt_perm_index(seedB, epoch, nBatch, b) : b;
    pPlan->aStart[b] = q;
    for (int64_t p = aStart[src]; p < aStart[src + 1]; p++)
      pPlan->aUtt[q++] = aLi[p].i;
  }
  pPlan->aStart[nBatch] = q;
  pPlan->nBatch = nBatch;
  BT_ASSERT(q == n);
  free(aLi);
  free(aStart);
  return BT_OK;
}

void bt_audio_plan_free(bt_audio_plan *pPlan) {
  free(pPlan->aStart);
  free(pPlan->aUtt);
  memset(pPlan, 0, sizeof *pPlan);
}

int64_t bt_audio_plan_batch(int64_t consumed, int world, int micro, int rank) {
  BT_ASSERT(world > 0 && rank >= 0 && rank < world && micro >= 0);
  return consumed + (int64_t)micro * world + rank;
}

/* ---- the file ------------------------------------------------------------- */

struct bt_audio_loader {
  bt_audio_loader_config cfg; /* defaults filled; zPath points at our copy */
  char *zPath;
  hid_t hFile, hFeat, hLab;
  int64_t n, nFrameAll, nLabAll;
  int64_t *aFrameOff, *aLabOff; /* [n + 1] */
  int32_t *aFrames;             /* [n] */
  int V;
  bt_audio_plan plan;
  int64_t planEpoch;
  int64_t epoch, consumed;
  int micro;
  /* batch buffers, grown on demand */
  float *aFeat;
  int64_t nFeatCap; /* floats */
  int32_t *aLab;
  int64_t nLabCap;
  int32_t *aFr, *aLL, *aTmp;
  int64_t *aIdx;
  int64_t nBCap, nTmpCap;
  int64_t nPadSum, nCellSum;
  uint64_t nByteRead; /* features and labels selected, 4 bytes each */
};

#define AL_TRY(call, zDset)                                                    \
  do {                                                                         \
    if ((call) < 0) {                                                          \
      rc = bt_h5_fail(zPath, (zDset), #call, __LINE__);                        \
      goto out;                                                                \
    }                                                                          \
  } while (0)

/* Length of the 1-D (or, for features, 2-D [*, 80]) dataset zName. */
static int ds_len(const char *zPath, hid_t h, const char *zName, int rankWant,
                  int64_t *pn) {
  int rc = BT_OK;
  hid_t sp = H5Dget_space(h);
  AL_TRY(sp, zName);
  hsize_t aDim[2] = {0, 0};
  int rank = H5Sget_simple_extent_ndims(sp);
  if (rank != rankWant) {
    rc = bt_err_set("%s:%s: %d dimensions, expected %d (not a file of "
                    "`baton prepare audio`?)",
                    zPath, zName, rank, rankWant);
    goto out;
  }
  H5Sget_simple_extent_dims(sp, aDim, NULL);
  if (rank == 2 && aDim[1] != BT_AUDIO_N_MEL) {
    rc = bt_err_set("%s:%s: rows of %llu values, expected %d mel bins",
                    zPath, zName, (unsigned long long)aDim[1], BT_AUDIO_N_MEL);
    goto out;
  }
  *pn = (int64_t)aDim[0];
out:
  if (sp >= 0) H5Sclose(sp);
  return rc;
}

/* Reads a whole int64 offsets dataset [n + 1] and validates it against the
 * length nData of the dataset it indexes (invariant 3). */
static int read_offsets(const char *zPath, hid_t hFile, const char *zName,
                        int64_t nData, int64_t *pn, int64_t **paOff) {
  int rc = BT_OK;
  int64_t nOff = 0;
  *paOff = NULL;
  hid_t d = H5Dopen2(hFile, zName, H5P_DEFAULT);
  AL_TRY(d, zName);
  if ((rc = ds_len(zPath, d, zName, 1, &nOff)) != BT_OK) goto out;
  if (nOff < 2 || (*pn >= 0 && nOff != *pn + 1)) {
    rc = bt_err_set("%s:%s: %lld entries, expected %s", zPath, zName,
                    (long long)nOff,
                    *pn >= 0 ? "one more than the utterances" : "at least 2");
    goto out;
  }
  *paOff = bt_malloc((size_t)nOff * sizeof(int64_t), zName);
  if (!*paOff) {
    rc = BT_ERR;
    goto out;
  }
  AL_TRY(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *paOff),
         zName);
  *pn = nOff - 1;
  int64_t *a = *paOff;
  if (a[0] != 0 || a[nOff - 1] != nData)
    rc = bt_err_set("%s:%s: runs from %lld to %lld, expected 0 to %lld",
                    zPath, zName, (long long)a[0], (long long)a[nOff - 1],
                    (long long)nData);
  for (int64_t i = 0; rc == BT_OK && i + 1 < nOff; i++)
    if (a[i + 1] < a[i])
      rc = bt_err_set("%s:%s: entry %lld (%lld) is below entry %lld (%lld)",
                      zPath, zName, (long long)i + 1, (long long)a[i + 1],
                      (long long)i, (long long)a[i]);
out:
  if (d >= 0) H5Dclose(d);
  if (rc != BT_OK) {
    free(*paOff);
    *paOff = NULL;
  }
  return rc;
}

/* Decodes the vocabulary strings: entry 0 is "" (the blank), every other
 * entry exactly one code point, strictly increasing. */
static int vocab_decode(const char *zPath, char **az, int64_t nV,
                        int32_t *aCp) {
  if (!az[0] || az[0][0])
    return bt_err_set("%s:%s: entry 0 must be \"\" (the CTC blank)", zPath,
                      BT_AUDIO_DS_VOCAB);
  for (int64_t v = 1; v < nV; v++) {
    const char *z = az[v] ? az[v] : "";
    utf8proc_int32_t cp = -1;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)z, -1, &cp);
    if (k <= 0 || z[k] != 0 || cp <= 0)
      return bt_err_set("%s:%s: entry %lld ('%s') is not one UTF-8 "
                        "character",
                        zPath, BT_AUDIO_DS_VOCAB, (long long)v, z);
    if (v > 1 && cp <= aCp[v - 2])
      return bt_err_set("%s:%s: entry %lld (U+%04X) does not follow entry "
                        "%lld in code point order",
                        zPath, BT_AUDIO_DS_VOCAB, (long long)v, (unsigned)cp,
                        (long long)v - 1);
    aCp[v - 1] = cp;
  }
  return BT_OK;
}

static int vocab_read_h(const char *zPath, hid_t hFile, int32_t **paCp,
                        int *pn) {
  int rc = BT_OK;
  hid_t d = -1, t = -1, sp = -1;
  char **az = NULL;
  int64_t nV = 0;
  *paCp = NULL;
  d = H5Dopen2(hFile, BT_AUDIO_DS_VOCAB, H5P_DEFAULT);
  AL_TRY(d, BT_AUDIO_DS_VOCAB);
  if ((rc = ds_len(zPath, d, BT_AUDIO_DS_VOCAB, 1, &nV)) != BT_OK) goto out;
  if (nV < 2 || nV > (1 << 24)) {
    rc = bt_err_set("%s:%s: %lld entries, expected 2 to 2^24", zPath,
                    BT_AUDIO_DS_VOCAB, (long long)nV);
    goto out;
  }
  t = H5Tcopy(H5T_C_S1);
  AL_TRY(t, BT_AUDIO_DS_VOCAB);
  AL_TRY(H5Tset_size(t, H5T_VARIABLE), BT_AUDIO_DS_VOCAB);
  AL_TRY(H5Tset_cset(t, H5T_CSET_UTF8), BT_AUDIO_DS_VOCAB);
  az = bt_calloc((size_t)nV, sizeof *az, "vocabulary");
  *paCp = bt_malloc((size_t)nV * sizeof(int32_t), "vocabulary");
  if (!az || !*paCp) {
    rc = BT_ERR;
    goto out;
  }
  AL_TRY(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, az), BT_AUDIO_DS_VOCAB);
  rc = vocab_decode(zPath, az, nV, *paCp);
  sp = H5Dget_space(d);
  if (sp >= 0) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, az);
  *pn = (int)(nV - 1);
out:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  free(az);
  if (rc != BT_OK) {
    free(*paCp);
    *paCp = NULL;
  }
  return rc;
}

int bt_audio_vocab_read(const char *zPath, int32_t **paCp, int *pn) {
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int rc = BT_OK;
  hid_t f = H5Fopen(zPath, H5F_ACC_RDONLY, H5P_DEFAULT);
  AL_TRY(f, "/");
  rc = vocab_read_h(zPath, f, paCp, pn);
out:
  if (f >= 0) H5Fclose(f);
  bt_h5_unlock();
  return rc;
}

/* ---- open and close ------------------------------------------------------- */

static int check_attrs(const char *zPath, hid_t hFile) {
  static const struct { const char *zName; int v; } aWant[] = {
      {"format_version", BT_AUDIO_FORMAT_VERSION},
      {"n_mel", BT_AUDIO_N_MEL},
  };
  for (size_t i = 0; i < sizeof aWant / sizeof aWant[0]; i++) {
    int v = -1;
    hid_t a = H5Aopen_by_name(hFile, "/audio", aWant[i].zName, H5P_DEFAULT,
                              H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, H5T_NATIVE_INT, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    if (!ok)
      return bt_err_set("%s: /audio has no integer attribute %s (not a file "
                        "of `baton prepare audio`?)",
                        zPath, aWant[i].zName);
    if (v != aWant[i].v)
      return bt_err_set("%s: /audio attribute %s is %d, this build reads %d",
                        zPath, aWant[i].zName, v, aWant[i].v);
  }
  return BT_OK;
}

/* Opens the datasets and reads and validates the offsets (invariant 3). */
static int open_file(bt_audio_loader *p) {
  const char *zPath = p->zPath;
  int rc = BT_OK;
  int32_t *aCp = NULL;
  int nCp = 0;
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  p->hFile = H5Fopen(zPath, H5F_ACC_RDONLY, H5P_DEFAULT);
  AL_TRY(p->hFile, "/");
  if ((rc = check_attrs(zPath, p->hFile)) != BT_OK) goto out;
  p->hFeat = H5Dopen2(p->hFile, BT_AUDIO_DS_FEATURES, H5P_DEFAULT);
  AL_TRY(p->hFeat, BT_AUDIO_DS_FEATURES);
  p->hLab = H5Dopen2(p->hFile, BT_AUDIO_DS_LABELS, H5P_DEFAULT);
  AL_TRY(p->hLab, BT_AUDIO_DS_LABELS);
  rc = ds_len(zPath, p->hFeat, BT_AUDIO_DS_FEATURES, 2, &p->nFrameAll);
  if (rc == BT_OK)
    rc = ds_len(zPath, p->hLab, BT_AUDIO_DS_LABELS, 1, &p->nLabAll);
  p->n = -1;
  if (rc == BT_OK)
    rc = read_offsets(zPath, p->hFile, BT_AUDIO_DS_FRAME_OFFSETS,
                      p->nFrameAll, &p->n, &p->aFrameOff);
  if (rc == BT_OK)
    rc = read_offsets(zPath, p->hFile, BT_AUDIO_DS_LABEL_OFFSETS, p->nLabAll,
                      &p->n, &p->aLabOff);
  if (rc == BT_OK) rc = vocab_read_h(zPath, p->hFile, &aCp, &nCp);
  p->V = nCp + 1;
out:
  free(aCp);
  bt_h5_unlock();
  return rc;
}

/* Frame counts per utterance; an utterance without frames or over 2^31
 * frames is corrupt (prepare never writes one). */
static int frames_fill(bt_audio_loader *p) {
  p->aFrames = bt_malloc((size_t)p->n * sizeof(int32_t), "frame counts");
  if (!p->aFrames) return BT_ERR;
  for (int64_t i = 0; i < p->n; i++) {
    int64_t f = p->aFrameOff[i + 1] - p->aFrameOff[i];
    if (f <= 0 || f > INT32_MAX)
      return bt_err_set("%s:%s: utterance %lld has %lld frames", p->zPath,
                        BT_AUDIO_DS_FRAME_OFFSETS, (long long)i, (long long)f);
    p->aFrames[i] = (int32_t)f;
  }
  return BT_OK;
}

int bt_audio_loader_open(bt_audio_loader **ppLoader,
                         const bt_audio_loader_config *pCfg) {
  *ppLoader = NULL;
  bt_audio_loader *p = bt_calloc(1, sizeof *p, "audio loader");
  if (!p) return BT_ERR;
  p->cfg = *pCfg;
  p->hFile = p->hFeat = p->hLab = -1;
  p->planEpoch = -1;
  if (p->cfg.accum <= 0) p->cfg.accum = 1;
  if (p->cfg.world <= 0) p->cfg.world = 1;
  BT_ASSERT(p->cfg.rank >= 0 && p->cfg.rank < p->cfg.world);
  int rc = BT_OK;
  if (!pCfg->zPath || !pCfg->zPath[0])
    rc = bt_err_set("audio loader: no file (data.path)");
  else if (pCfg->maxFrames <= 0)
    rc = bt_err_set("audio loader: data.max_frames must be > 0 (got %lld)",
                    (long long)pCfg->maxFrames);
  if (rc == BT_OK) {
    p->zPath = strdup(pCfg->zPath);
    p->cfg.zPath = p->zPath;
    if (!p->zPath) rc = bt_err_set("audio loader: out of memory");
  }
  if (rc == BT_OK) rc = open_file(p);
  if (rc == BT_OK) rc = frames_fill(p);
  bt_loader_state st = {0, 0};
  if (rc == BT_OK) rc = bt_audio_loader_seek(p, &st);
  if (rc != BT_OK) {
    bt_audio_loader_free(p);
    return BT_ERR;
  }
  *ppLoader = p;
  return BT_OK;
}

void bt_audio_loader_free(bt_audio_loader *p) {
  if (!p) return;
  bt_h5_lock();
  if (p->hLab >= 0) H5Dclose(p->hLab);
  if (p->hFeat >= 0) H5Dclose(p->hFeat);
  if (p->hFile >= 0) H5Fclose(p->hFile);
  bt_h5_unlock();
  bt_audio_plan_free(&p->plan);
  free(p->aFrameOff);
  free(p->aLabOff);
  free(p->aFrames);
  free(p->aFeat);
  free(p->aLab);
  free(p->aFr);
  free(p->aLL);
  free(p->aTmp);
  free(p->aIdx);
  free(p->zPath);
  free(p);
}

int64_t bt_audio_loader_size(const bt_audio_loader *p) { return p->n; }
int bt_audio_loader_vocab(const bt_audio_loader *p) { return p->V; }
int64_t bt_audio_loader_max_batch(const bt_audio_loader *p) {
  int64_t minFr = INT64_MAX;
  for (int64_t i = 0; i < p->n; i++)
    if (p->aFrames[i] < minFr) minFr = p->aFrames[i];
  if (p->n == 0 || minFr <= 0) return 1;
  int64_t b = p->cfg.maxFrames / minFr;
  return b < 1 ? 1 : b > p->n ? p->n : b;
}
int64_t bt_audio_loader_epoch_batches(const bt_audio_loader *p) {
  return p->plan.nBatch;
}

/* ---- the stream ------------------------------------------------------------ */

/* Invariant 2: the plan of p->epoch. */
static int ensure_plan(bt_audio_loader *p) {
  if (p->planEpoch == p->epoch) return BT_OK;
  bt_audio_plan_free(&p->plan);
  p->planEpoch = -1;
  if (bt_audio_plan_make(p->aFrames, p->n, p->cfg.seed, p->epoch,
                         p->cfg.maxFrames, p->cfg.window, p->cfg.shuffle,
                         &p->plan) != BT_OK)
    return bt_err_prefix("%s: ", p->zPath);
  p->planEpoch = p->epoch;
  return BT_OK;
}

int bt_audio_loader_seek(bt_audio_loader *p, const bt_loader_state *pState) {
  if (pState->epoch < 0 || pState->consumed < 0)
    return bt_err_set("%s: cannot seek to epoch %lld, batch %lld", p->zPath,
                      (long long)pState->epoch, (long long)pState->consumed);
  p->epoch = pState->epoch;
  p->consumed = pState->consumed;
  p->micro = 0;
  if (ensure_plan(p) != BT_OK) return BT_ERR;
  if (p->consumed > p->plan.nBatch)
    return bt_err_set("%s: loader state (epoch %lld, %lld batches consumed) "
                      "lies past the epoch's %lld batches (was the data or "
                      "data.max_frames / data.sort_window changed?)",
                      p->zPath, (long long)p->epoch, (long long)p->consumed,
                      (long long)p->plan.nBatch);
  if (p->consumed == p->plan.nBatch) {
    p->epoch++;
    p->consumed = 0;
  }
  return BT_OK;
}

bt_loader_state bt_audio_loader_get_state(const bt_audio_loader *p) {
  bt_loader_state st = {p->epoch, p->consumed};
  return st;
}

/* Grows *pp to hold n elements of nSize bytes. */
static int grow(void **pp, int64_t *pCap, int64_t n, size_t nSize,
                const char *zWhat) {
  if (n <= *pCap) return BT_OK;
  int64_t nNew = n > 2 * *pCap ? n : 2 * *pCap;
  void *pNew = realloc(*pp, (size_t)nNew * nSize);
  if (!pNew) return bt_err_set("audio loader: out of memory (%s)", zWhat);
  *pp = pNew;
  *pCap = nNew;
  return BT_OK;
}

/* Sizes the batch buffers for B utterances of T frames and L labels. */
static int bufs_size(bt_audio_loader *p, int64_t B, int64_t T, int64_t L) {
  int64_t nB = p->nBCap;
  int rc = grow((void **)&p->aFeat, &p->nFeatCap,
                (B * T > 0 ? B * T : 1) * BT_AUDIO_N_MEL, sizeof(float),
                "features");
  if (rc == BT_OK)
    rc = grow((void **)&p->aLab, &p->nLabCap, B * L > 0 ? B * L : 1,
              sizeof(int32_t), "labels");
  if (rc == BT_OK && B > nB) {
    int64_t c1 = nB, c2 = nB, c3 = nB;
    rc = grow((void **)&p->aFr, &c1, B, sizeof(int32_t), "frames");
    if (rc == BT_OK) rc = grow((void **)&p->aLL, &c2, B, sizeof(int32_t), "lengths");
    if (rc == BT_OK) rc = grow((void **)&p->aIdx, &c3, B, sizeof(int64_t), "index");
    if (rc == BT_OK) p->nBCap = c1;
  }
  return rc;
}

/* Reads rows [lo, lo + n) of a dataset (2-D features when nCol > 0, else
 * 1-D labels) into pBuf. */
static int read_rows(bt_audio_loader *p, hid_t h, const char *zName,
                     int64_t lo, int64_t n, hid_t tMem, int nCol, void *pBuf) {
  const char *zPath = p->zPath;
  int rc = BT_OK;
  hid_t fs = -1, ms = -1;
  hsize_t aStart[2] = {(hsize_t)lo, 0};
  hsize_t aCount[2] = {(hsize_t)n, (hsize_t)nCol};
  int rank = nCol > 0 ? 2 : 1;
  if (n == 0) return BT_OK;
  bt_h5_lock();
  fs = H5Dget_space(h);
  AL_TRY(fs, zName);
  AL_TRY(H5Sselect_hyperslab(fs, H5S_SELECT_SET, aStart, NULL, aCount, NULL),
         zName);
  ms = H5Screate_simple(rank, aCount, NULL);
  AL_TRY(ms, zName);
  AL_TRY(H5Dread(h, tMem, ms, fs, H5P_DEFAULT, pBuf), zName);
  p->nByteRead += (uint64_t)n * (uint64_t)(nCol > 0 ? nCol : 1) * 4;
out:
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  bt_h5_unlock();
  return rc;
}

/* Reads utterance u into row b of a batch padded to T frames, L labels. */
static int read_utt(bt_audio_loader *p, int64_t u, int64_t b, int64_t T,
                    int64_t L) {
  int64_t f = p->aFrames[u], lo = p->aFrameOff[u];
  int64_t nL = p->aLabOff[u + 1] - p->aLabOff[u];
  float *x = p->aFeat + b * T * BT_AUDIO_N_MEL;
  int rc = read_rows(p, p->hFeat, BT_AUDIO_DS_FEATURES, lo, f,
                     H5T_NATIVE_FLOAT, BT_AUDIO_N_MEL, x);
  for (int64_t i = 0; rc == BT_OK && i < f * BT_AUDIO_N_MEL; i++)
    if (!isfinite(x[i]))
      return bt_err_set("%s:%s: utterance %lld: row %lld holds a non-finite "
                        "value",
                        p->zPath, BT_AUDIO_DS_FEATURES, (long long)u,
                        (long long)(lo + i / BT_AUDIO_N_MEL));
  memset(x + f * BT_AUDIO_N_MEL, 0,
         (size_t)((T - f) * BT_AUDIO_N_MEL) * sizeof(float));
  int32_t *y = p->aLab + b * L;
  if (rc == BT_OK)
    rc = read_rows(p, p->hLab, BT_AUDIO_DS_LABELS, p->aLabOff[u], nL,
                   H5T_NATIVE_INT32, 0, y);
  for (int64_t i = 0; rc == BT_OK && i < nL; i++)
    if (y[i] < 1 || y[i] >= p->V)
      return bt_err_set("%s:%s: utterance %lld: label %lld is %d, outside "
                        "1..%d (the vocabulary)",
                        p->zPath, BT_AUDIO_DS_LABELS, (long long)u,
                        (long long)(p->aLabOff[u] + i), y[i], p->V - 1);
  for (int64_t i = nL; i < L; i++) y[i] = -1;
  p->aFr[b] = (int32_t)f;
  p->aLL[b] = (int32_t)nL;
  p->aIdx[b] = u;
  return rc;
}

/* B, T (longest first) and sum of frames of plan batch iB; 0s past the end. */
static void batch_shape(const bt_audio_loader *p, int64_t iB, int64_t *pB,
                        int64_t *pT, int64_t *pSum) {
  *pB = *pT = *pSum = 0;
  if (iB >= p->plan.nBatch) return;
  for (int64_t q = p->plan.aStart[iB]; q < p->plan.aStart[iB + 1]; q++) {
    int32_t f = p->aFrames[p->plan.aUtt[q]];
    if (f > *pT) *pT = f;
    *pSum += f;
    (*pB)++;
  }
}

/* Global counts of the current micro-step and step, and the padding of
 * every rank's batch of this micro-step (invariant 4). */
static void batch_globals(bt_audio_loader *p, bt_speech_batch *pb) {
  int W = p->cfg.world;
  pb->global_B = pb->step_global_B = 0;
  for (int m = 0; m < p->cfg.accum; m++)
    for (int r = 0; r < W; r++) {
      int64_t B, T, sum;
      batch_shape(p, bt_audio_plan_batch(p->consumed, W, m, r), &B, &T, &sum);
      pb->step_global_B += B;
      if (m != p->micro) continue;
      pb->global_B += B;
      p->nCellSum += B * T;
      p->nPadSum += B * T - sum;
    }
}

/* Moves to the next micro-step; rolls the epoch at the plan's end. */
static void pos_advance(bt_audio_loader *p) {
  if (++p->micro < p->cfg.accum) return;
  p->micro = 0;
  p->consumed += (int64_t)p->cfg.world * p->cfg.accum;
  if (p->consumed >= p->plan.nBatch) {
    p->epoch++;
    p->consumed = 0;
  }
}

int bt_audio_loader_next(bt_audio_loader *p, bt_speech_batch *pb) {
  memset(pb, 0, sizeof *pb);
  if (ensure_plan(p) != BT_OK) return BT_ERR;
  int64_t iB = bt_audio_plan_batch(p->consumed, p->cfg.world, p->micro,
                                   p->cfg.rank);
  int64_t B, T, sum, L = 0;
  batch_shape(p, iB, &B, &T, &sum);
  for (int64_t b = 0; b < B; b++) {
    int64_t u = p->plan.aUtt[p->plan.aStart[iB] + b];
    int64_t nL = p->aLabOff[u + 1] - p->aLabOff[u];
    if (nL > L) L = nL;
  }
  if (L > INT32_MAX || B * T > INT32_MAX)
    return bt_err_set("%s: batch %lld is too large (%lld labels)", p->zPath,
                      (long long)iB, (long long)L);
  int rc = bufs_size(p, B, T, L);
  for (int64_t b = 0; rc == BT_OK && b < B; b++)
    rc = read_utt(p, p->plan.aUtt[p->plan.aStart[iB] + b], b, T, L);
  if (rc != BT_OK) return BT_ERR;
  pb->B = (int)B;
  pb->T = (int)T;
  pb->nMel = BT_AUDIO_N_MEL;
  pb->L = (int)L;
  pb->feats = p->aFeat;
  pb->aFrames = p->aFr;
  pb->labels = p->aLab;
  pb->aLabelLen = p->aLL;
  pb->aIndex = p->aIdx;
  pb->nPadFrame = B * T - sum;
  pb->epoch = p->epoch;
  batch_globals(p, pb);
  pos_advance(p);
  return BT_OK;
}

double bt_audio_loader_pad_fraction(const bt_audio_loader *p) {
  return p->nCellSum > 0 ? (double)p->nPadSum / (double)p->nCellSum : 0.0;
}

uint64_t bt_audio_loader_bytes_read(const bt_audio_loader *p) {
  return p->nByteRead;
}
