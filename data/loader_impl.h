/*
 * loader_impl.h: private interface between the loader (loader.c) and its
 * sample sources (synth.c, h5.c). Not for use outside data/.
 *
 * A source is a random-access table of samples 0..n-1 of one split. The
 * loader decides which indices a rank needs and in which order; the source
 * only reads them. Thread rule: a source is used by one thread at a time
 * (the prefetch thread while it runs, the caller's thread otherwise: the
 * loader joins the thread before it touches the source itself).
 */
#ifndef BATON_LOADER_IMPL_H
#define BATON_LOADER_IMPL_H

#include <stdint.h>

#include "data/loader.h"

/* bt_rng_key() purposes used by the data module. */
enum {
  BT_PURPOSE_PERM = 0x5045524d,     /* epoch permutation */
  BT_PURPOSE_ARITH = 0x41524954,    /* synthetic:arith lines */
  BT_PURPOSE_CMEAN = 0x434d4541,    /* synthetic:clusters class means */
  BT_PURPOSE_CSAMPLE = 0x43534d50,  /* synthetic:clusters samples */
  BT_PURPOSE_SPLIT = 0x53504c54,    /* prepare: train/val split */
};

typedef struct bt_source bt_source;
struct bt_source {
  int64_t n;         /* samples in the split (before the loader's limit) */
  int D;             /* features: flattened width */
  int nClass;        /* features: labels are < nClass */
  int vocab;         /* tokens: ids are < vocab */
  uint64_t nByteRead; /* bytes requested from storage (atomic) */
  /* Reads samples aIdx[0..n) in that order: tokens into aIn/aTgt ([n, T]
   * each), features into aX ([n, D]) and aTgt ([n] labels). Validates every
   * value it returns; on error records a message naming file, dataset and
   * index and returns BT_ERR. */
  int (*xRead)(bt_source *pSrc, const int64_t *aIdx, int n, int32_t *aIn,
               int32_t *aTgt, float *aX);
  void (*xClose)(bt_source *pSrc);
};

/* pCfg has its defaults filled in (D, nClass may still be 0 = from data). */
int bt_synth_open(bt_source **ppSrc, const bt_loader_config *pCfg);
int bt_h5_open(bt_source **ppSrc, const bt_loader_config *pCfg);

/* h5.c: records "<file>:<dataset>: <what> failed: <HDF5's innermost error
 * message> (data/h5.c:<line>)", clears HDF5's error stack, returns BT_ERR.
 * Call with bt_h5_lock() held. */
int bt_h5_fail(const char *zPath, const char *zDset, const char *zWhat,
               int line);

#endif
