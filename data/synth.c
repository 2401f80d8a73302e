/*
 * synth.c: the built-in synthetic datasets ("synthetic:NAME", data.md), so
 * the trainer runs before any file exists. Every sample is a pure function
 * of (seed, split, sample index): they obey the same stream semantics as a
 * file and resume exactly on any world size.
 *
 * synthetic:arith (tokens). A virtual byte stream made of 1024-byte
 * blocks; block b holds lines "A+B=C\n" or "A-B=C\n" (operands of 1 to 3
 * digits, drawn from bt_rng_key(seed, ARITH, split, b)) until the next line
 * would not fit, then '\n' padding to the block end. Sample i is stream
 * bytes [i*(T+1), (i+1)*(T+1)); inputs are the first T, targets the last T.
 * 2^20 train windows, 2^14 val windows (val uses its own blocks). Byte
 * vocabulary: 256 (only '\n', '+', '-', '=', '0'..'9' occur). The digits
 * after '=' are a function of the line, so a small model's loss falls well
 * below the byte entropy of the stream.
 *
 * synthetic:clusters (features). nClass (default 4) Gaussian clusters in
 * D (default 16) dimensions. Class means are drawn from the seed alone
 * (shared by train and val) with per-coordinate std max(1, 3/sqrt(D)), so
 * the mean distance is about 4 noise std or more; noise std is 1. Label of
 * sample i is uniform over classes. 65536 train samples, 8192 val.
 *
 * Thread rule: one source is used by one thread at a time (loader_impl.h);
 * the block cache below is per source.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader_impl.h"

#define ARITH_BLOCK 1024

typedef struct synth_src {
  bt_source base;
  int bArith;
  int split; /* 0 train, 1 val */
  uint64_t seed;
  int T, vocabLimit, D, nClass;
  char zName[64];
  float *aMean; /* [nClass, D] */
  int64_t cachedBlock;
  unsigned char aBlock[ARITH_BLOCK];
} synth_src;

/* ---- arith ---------------------------------------------------------------- */

static int64_t arith_operand(uint64_t key, uint64_t *pCtr) {
  int len = 1 + (int)(bt_rng_u64(key, (*pCtr)++) % 3);
  int64_t lo = len == 1 ? 0 : (len == 2 ? 10 : 100);
  int64_t hi = len == 1 ? 9 : (len == 2 ? 99 : 999);
  return lo + (int64_t)(bt_rng_u64(key, (*pCtr)++) % (uint64_t)(hi - lo + 1));
}

static void arith_block(synth_src *s, int64_t b) {
  if (s->cachedBlock == b) return;
  uint64_t key = bt_rng_key(s->seed, BT_PURPOSE_ARITH, (uint64_t)s->split,
                            (uint64_t)b);
  uint64_t ctr = 0;
  int at = 0;
  char zLine[32];
  for (;;) {
    int64_t a = arith_operand(key, &ctr);
    int64_t c = arith_operand(key, &ctr);
    int minus = (int)(bt_rng_u64(key, ctr++) & 1);
    int len = snprintf(zLine, sizeof zLine, "%lld%c%lld=%lld\n", (long long)a,
                       minus ? '-' : '+', (long long)c,
                       (long long)(minus ? a - c : a + c));
    if (at + len > ARITH_BLOCK) break;
    memcpy(s->aBlock + at, zLine, (size_t)len);
    at += len;
  }
  memset(s->aBlock + at, '\n', (size_t)(ARITH_BLOCK - at));
  s->cachedBlock = b;
}

static int arith_read(bt_source *pSrc, const int64_t *aIdx, int n,
                      int32_t *aIn, int32_t *aTgt, float *aX) {
  (void)aX;
  synth_src *s = (synth_src *)pSrc;
  int T = s->T;
  for (int i = 0; i < n; i++) {
    int64_t first = aIdx[i] * (int64_t)(T + 1);
    for (int t = 0; t <= T; t++) {
      int64_t q = first + t;
      arith_block(s, q / ARITH_BLOCK);
      int32_t tok = s->aBlock[q % ARITH_BLOCK];
      if (tok >= s->vocabLimit)
        return bt_err_set("%s: token id %d at index %lld is >= vocab size %d",
                          s->zName, tok, (long long)q, s->vocabLimit);
      if (t < T) aIn[(size_t)i * T + t] = tok;
      if (t > 0) aTgt[(size_t)i * T + t - 1] = tok;
    }
  }
  __atomic_add_fetch(&pSrc->nByteRead, (uint64_t)n * (uint64_t)(T + 1),
                     __ATOMIC_RELAXED);
  return BT_OK;
}

/* ---- clusters ------------------------------------------------------------- */

static int clusters_read(bt_source *pSrc, const int64_t *aIdx, int n,
                         int32_t *aIn, int32_t *aTgt, float *aX) {
  (void)aIn;
  synth_src *s = (synth_src *)pSrc;
  int D = s->D;
  for (int i = 0; i < n; i++) {
    uint64_t key = bt_rng_key(s->seed, BT_PURPOSE_CSAMPLE, (uint64_t)s->split,
                              (uint64_t)aIdx[i]);
    int c = (int)(bt_rng_u64(key, 1ULL << 40) % (uint64_t)s->nClass);
    aTgt[i] = c;
    for (int d = 0; d < D; d++)
      aX[(size_t)i * D + d] =
          s->aMean[(size_t)c * D + d] + (float)bt_rng_normal(key, (uint64_t)d);
  }
  __atomic_add_fetch(&pSrc->nByteRead, (uint64_t)n * (uint64_t)(4 * D + 4),
                     __ATOMIC_RELAXED);
  return BT_OK;
}

static void synth_close(bt_source *pSrc) {
  synth_src *s = (synth_src *)pSrc;
  free(s->aMean);
  free(s);
}

int bt_synth_open(bt_source **ppSrc, const bt_loader_config *pCfg) {
  *ppSrc = NULL;
  const char *zName = pCfg->zPath + strlen("synthetic:");
  int bArith = strcmp(zName, "arith") == 0;
  if (!bArith && strcmp(zName, "clusters") != 0)
    return bt_err_set("%s: unknown synthetic dataset '%s' (known: "
                      "synthetic:arith, synthetic:clusters)",
                      pCfg->zPath, zName);
  if (bArith && pCfg->eKind != BT_SAMPLE_TOKENS)
    return bt_err_set("%s: gives tokens, but the model wants features",
                      pCfg->zPath);
  if (!bArith && pCfg->eKind != BT_SAMPLE_FEATURES)
    return bt_err_set("%s: gives features, but the model wants tokens",
                      pCfg->zPath);
  synth_src *s = bt_calloc(1, sizeof *s, "synthetic source");
  if (!s) return BT_ERR;
  snprintf(s->zName, sizeof s->zName, "%s", pCfg->zPath);
  s->bArith = bArith;
  s->split = strcmp(pCfg->zSplit, "val") == 0;
  s->seed = pCfg->seed;
  s->base.xClose = synth_close;
  s->cachedBlock = -1;
  if (bArith) {
    s->T = pCfg->T;
    s->base.vocab = 256;
    s->vocabLimit = pCfg->vocab > 0 ? pCfg->vocab : 256;
    s->base.n = s->split ? (1 << 14) : (1 << 20);
    s->base.xRead = arith_read;
  } else {
    s->D = pCfg->D > 0 ? pCfg->D : 16;
    s->nClass = pCfg->nClass > 0 ? pCfg->nClass : 4;
    if (s->nClass < 2 || s->D > (1 << 20)) {
      synth_close(&s->base);
      return bt_err_set("%s: needs nClass >= 2 and D <= 2^20 (got %d, %d)",
                        pCfg->zPath, pCfg->nClass, pCfg->D);
    }
    s->base.D = s->D;
    s->base.nClass = s->nClass;
    s->base.n = s->split ? 8192 : 65536;
    s->base.xRead = clusters_read;
    s->aMean = bt_malloc((size_t)s->nClass * s->D * sizeof(float),
                         "cluster means");
    if (!s->aMean) {
      synth_close(&s->base);
      return BT_ERR;
    }
    double sd = 3.0 / __builtin_sqrt((double)s->D);
    if (sd < 1.0) sd = 1.0;
    for (int c = 0; c < s->nClass; c++) {
      uint64_t key = bt_rng_key(s->seed, BT_PURPOSE_CMEAN, (uint64_t)c, 0);
      for (int d = 0; d < s->D; d++)
        s->aMean[(size_t)c * s->D + d] =
            (float)(sd * bt_rng_normal(key, (uint64_t)d));
    }
  }
  *ppSrc = &s->base;
  return BT_OK;
}
