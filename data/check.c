/*
 * check.c: the dataset check and `baton inspect DATA.h5` (contract in
 * check.h; user view in docs/data.md, "Checking a dataset").
 *
 * Reading plan: a split's values (token elements, or rows of x and y) are
 * divided among the ranks with bt_split; each rank reads its range in
 * blocks of about 2^20 elements whose boundaries are multiples of the
 * block size (a multiple of the chunk size for chunked datasets), so a
 * compressed chunk is decoded once per rank, not once per block. Blocks
 * are read with H5Dread in the loader's memory types. One pass, no seeks
 * back: the cost is that of reading the file once (docs/data.md gives the
 * measured seconds per GB).
 *
 * "First bad value": a rank scans its range in order and keeps the first
 * bad value; ranges are increasing in rank, so the merge keeps the lowest
 * index over ranks, which is the first in the file, whatever the world
 * size. For features the order is row by row, x before y within a row.
 */
#include "data/check.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "base/util.h"
#include "data/audio_features.h"
#include "data/audio_loader.h"
#include "data/h5_impl.h"
#include "data/loader_impl.h"

#define CHECK_BLOCK (1 << 20) /* elements per read */

static const char *const azSplit[2] = {"train", "val"};

/* Set by `baton inspect`, which reports a missing version in its own
 * words instead of the loader's note. */
static int g_bInspect = 0;

/* ---- helpers ------------------------------------------------------------ */

/* 1 if zDset (an absolute path) exists with every group on the way. */
static int dset_exists(hid_t hFile, const char *zDset) {
  char z[128];
  snprintf(z, sizeof z, "%s", zDset);
  for (char *slash = strchr(z + 1, '/');; slash = strchr(slash + 1, '/')) {
    if (slash) *slash = 0;
    if (H5Lexists(hFile, z, H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return 0;
    }
    if (!slash) return 1;
    *slash = '/';
  }
}

/* Elements per block: a multiple of the chunk's elements when chunked. */
static int64_t block_elems(hid_t hDset, int64_t nRowElem) {
  int64_t B = CHECK_BLOCK;
  hid_t dcpl = H5Dget_create_plist(hDset);
  if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
    hsize_t aDim[H5S_MAX_RANK];
    int nd = H5Pget_chunk(dcpl, H5S_MAX_RANK, aDim);
    int64_t nChunk = nd > 0 ? (int64_t)aDim[0] * nRowElem : 0;
    if (nChunk > 0) B = nChunk >= B ? nChunk : B / nChunk * nChunk;
  }
  if (dcpl >= 0) H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  return B;
}

/* Rows [r0, r0 + n) of a dataset of rank nd (other dims whole) as eMem. */
static int read_rows(const char *zPath, const char *zDset, hid_t hDset,
                     hid_t hSpace, int nd, const hsize_t *aDim, int64_t r0,
                     int64_t n, int64_t nRowElem, hid_t eMem, void *pOut) {
  hsize_t aStart[H5S_MAX_RANK] = {0}, aCount[H5S_MAX_RANK];
  for (int i = 0; i < nd; i++) aCount[i] = aDim[i];
  aStart[0] = (hsize_t)r0;
  aCount[0] = (hsize_t)n;
  hsize_t nMem = (hsize_t)(n * nRowElem);
  hid_t ms = H5Screate_simple(1, &nMem, NULL);
  int rc = BT_OK;
  if (ms < 0 ||
      H5Sselect_hyperslab(hSpace, H5S_SELECT_SET, aStart, NULL, aCount,
                          NULL) < 0 ||
      H5Dread(hDset, eMem, ms, hSpace, H5P_DEFAULT, pOut) < 0) {
    char z[96];
    snprintf(z, sizeof z, "H5Dread of [%lld, %lld)", (long long)r0,
             (long long)(r0 + n));
    rc = bt_h5_fail(zPath, zDset, z, __LINE__);
  }
  if (ms >= 0) H5Sclose(ms);
  return rc;
}

static void scan_init(bt_data_scan *pS) {
  memset(pS, 0, sizeof *pS);
  pS->vMin = INT64_MAX;
  pS->vMax = INT64_MIN;
  pS->iBad = -1;
  pS->iBadCol = -1;
}

static void scan_value(bt_data_scan *pS, int64_t v, int64_t limit,
                       int64_t idx) {
  if (v < pS->vMin) pS->vMin = v;
  if (v > pS->vMax) pS->vMax = v;
  if (pS->iBad < 0 && (v < 0 || (limit > 0 && v >= limit))) {
    pS->iBad = idx;
    pS->bad = v;
    pS->iBadCol = -1;
  }
}

/* ---- one split ---------------------------------------------------------- */

/* Token stream /split/tokens: this rank's share of the first nUse
 * elements (complete windows of T+1 when T > 0). */
static int scan_tokens(const char *zPath, hid_t hFile, const char *zSplit,
                       const bt_loader_config *pCfg, int64_t limit,
                       bt_data_scan *pS) {
  char zDset[64];
  snprintf(zDset, sizeof zDset, "/%s/tokens", zSplit);
  if (!dset_exists(hFile, zDset)) {
    snprintf(pS->zNote, sizeof pS->zNote, "no %s", zDset);
    return BT_OK;
  }
  int rc = BT_OK;
  hid_t d = H5Dopen2(hFile, zDset, H5P_DEFAULT), sp = -1, t = -1;
  int64_t *aBuf = NULL;
  if (d < 0) return bt_h5_fail(zPath, zDset, "H5Dopen2", __LINE__);
  t = H5Dget_type(d);
  sp = H5Dget_space(d);
  size_t nSize = t >= 0 ? H5Tget_size(t) : 0;
  hsize_t dim = 0;
  if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_INTEGER ||
      (nSize != 1 && nSize != 2 && nSize != 4 && nSize != 8) ||
      H5Sget_simple_extent_ndims(sp) != 1 ||
      H5Sget_simple_extent_dims(sp, &dim, NULL) < 0) {
    H5Eclear2(H5E_DEFAULT);
    snprintf(pS->zNote, sizeof pS->zNote,
             "%s is not a 1-D integer dataset (training refuses it)", zDset);
    goto out;
  }
  pS->nItem = (int64_t)dim;
  int64_t nUse = pS->nItem;
  if (pCfg->T > 0) nUse = nUse / (pCfg->T + 1) * (pCfg->T + 1);
  int64_t lo, hi;
  bt_split(nUse, pCfg->world, pCfg->rank, &lo, &hi);
  int64_t B = block_elems(d, 1);
  aBuf = bt_malloc((size_t)B * sizeof(int64_t), "check buffer");
  if (!aBuf) {
    rc = BT_ERR;
    goto out;
  }
  pS->bScanned = 1;
  for (int64_t a = lo; a < hi && rc == BT_OK;) {
    int64_t b = (a / B + 1) * B;
    if (b > hi) b = hi;
    rc = read_rows(zPath, zDset, d, sp, 1, &dim, a, b - a, 1,
                   H5T_NATIVE_INT64, aBuf);
    for (int64_t i = 0; rc == BT_OK && i < b - a; i++)
      scan_value(pS, aBuf[i], limit, a + i);
    pS->nRead += b - a;
    pS->nByte += (b - a) * (int64_t)nSize;
    a = b;
  }
out:
  free(aBuf);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  return rc;
}

/* Opens /split/x and /split/y and checks they can be scanned (else a note
 * and *pOk 0): x float or integer [N, D...], y integer [N] or [N, 1]. */
static int feat_open(const char *zPath, hid_t hFile, const char *zSplit,
                     hid_t *ph, hid_t *phSp, int *pnd, hsize_t aDim[2][8],
                     int64_t *pD, int *pOk, bt_data_scan *pS) {
  (void)zPath;
  const char *az[2] = {"x", "y"};
  *pOk = 0;
  for (int i = 0; i < 2; i++) {
    char zDset[64];
    snprintf(zDset, sizeof zDset, "/%s/%s", zSplit, az[i]);
    if (!dset_exists(hFile, zDset)) {
      snprintf(pS->zNote, sizeof pS->zNote, "no %s", zDset);
      return BT_OK;
    }
    ph[i] = H5Dopen2(hFile, zDset, H5P_DEFAULT);
    if (ph[i] < 0) return bt_h5_fail(zPath, zDset, "H5Dopen2", __LINE__);
    phSp[i] = H5Dget_space(ph[i]);
    hid_t t = H5Dget_type(ph[i]);
    H5T_class_t e = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    pnd[i] = phSp[i] >= 0 ? H5Sget_simple_extent_ndims(phSp[i]) : -1;
    int okType = i == 0 ? (e == H5T_FLOAT || e == H5T_INTEGER)
                        : e == H5T_INTEGER;
    if (!okType || pnd[i] < 1 || pnd[i] > 8 ||
        H5Sget_simple_extent_dims(phSp[i], aDim[i], NULL) < 0) {
      H5Eclear2(H5E_DEFAULT);
      snprintf(pS->zNote, sizeof pS->zNote,
               "%s has a type or shape training refuses", zDset);
      return BT_OK;
    }
  }
  *pD = 1;
  for (int i = 1; i < pnd[0]; i++) *pD *= (int64_t)aDim[0][i];
  if (pnd[1] > 2 || (pnd[1] == 2 && aDim[1][1] != 1) ||
      aDim[0][0] != aDim[1][0] || *pD <= 0 || *pD > (1 << 24)) {
    snprintf(pS->zNote, sizeof pS->zNote,
             "/%s/x and /%s/y do not fit together (training refuses them)",
             zSplit, zSplit);
    return BT_OK;
  }
  *pOk = 1;
  return BT_OK;
}

/* Features /split/x and labels /split/y: this rank's rows. */
static int scan_features(const char *zPath, hid_t hFile, const char *zSplit,
                         const bt_loader_config *pCfg, int64_t limit,
                         bt_data_scan *pS, int64_t *pD) {
  hid_t ah[2] = {-1, -1}, aSp[2] = {-1, -1};
  int and[2] = {0, 0}, ok = 0;
  hsize_t aDim[2][8];
  float *aX = NULL;
  int32_t *aY = NULL;
  int64_t D = 0;
  int rc = feat_open(zPath, hFile, zSplit, ah, aSp, and, aDim, &D, &ok, pS);
  if (rc != BT_OK || !ok) goto out;
  *pD = D;
  char zX[64], zY[64];
  snprintf(zX, sizeof zX, "/%s/x", zSplit);
  snprintf(zY, sizeof zY, "/%s/y", zSplit);
  hid_t tx = H5Dget_type(ah[0]), ty = H5Dget_type(ah[1]);
  int64_t sizeX = (int64_t)H5Tget_size(tx), sizeY = (int64_t)H5Tget_size(ty);
  H5Tclose(tx);
  H5Tclose(ty);
  pS->nItem = (int64_t)aDim[0][0];
  int64_t lo, hi;
  bt_split(pS->nItem, pCfg->world, pCfg->rank, &lo, &hi);
  int64_t R = block_elems(ah[0], D) / D;
  if (R < 1) R = 1;
  aX = bt_malloc((size_t)(R * D) * sizeof(float), "check buffer");
  aY = bt_malloc((size_t)R * sizeof(int32_t), "check buffer");
  if (!aX || !aY) {
    rc = BT_ERR;
    goto out;
  }
  pS->bScanned = 1;
  for (int64_t a = lo; a < hi && rc == BT_OK;) {
    int64_t b = (a / R + 1) * R;
    if (b > hi) b = hi;
    rc = read_rows(zPath, zX, ah[0], aSp[0], and[0], aDim[0], a, b - a, D,
                   H5T_NATIVE_FLOAT, aX);
    if (rc == BT_OK)
      rc = read_rows(zPath, zY, ah[1], aSp[1], and[1], aDim[1], a, b - a, 1,
                     H5T_NATIVE_INT32, aY);
    for (int64_t r = 0; rc == BT_OK && r < b - a; r++) {
      if (pS->iBad < 0)
        for (int64_t c = 0; c < D; c++)
          if (!isfinite(aX[r * D + c])) {
            pS->iBad = a + r;
            pS->iBadCol = c;
            pS->badX = aX[r * D + c];
            break;
          }
      scan_value(pS, aY[r], limit, a + r);
    }
    pS->nRead += b - a;
    pS->nByte += (b - a) * (D * sizeX + sizeY);
    a = b;
  }
out:
  free(aX);
  free(aY);
  for (int i = 0; i < 2; i++) {
    if (aSp[i] >= 0) H5Sclose(aSp[i]);
    if (ah[i] >= 0) H5Dclose(ah[i]);
  }
  return rc;
}

/* ---- part, merge, run --------------------------------------------------- */

static int check_part(const bt_loader_config *pCfg, bt_data_part *pPart) {
  int bTok = pCfg->eKind == BT_SAMPLE_TOKENS;
  const char *zAttr = bTok ? "vocab_size" : "num_classes";
  int cfg = bTok ? pCfg->vocab : pCfg->nClass;
  int rc = BT_OK;
  hid_t hFile = -1;
  struct stat st;
  if (stat(pCfg->zPath, &st) != 0 || !S_ISREG(st.st_mode))
    return BT_OK; /* bt_loader_open reports it */
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5Fis_hdf5(pCfg->zPath) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    goto out; /* bt_loader_open reports it */
  }
  hFile = H5Fopen(pCfg->zPath, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (hFile < 0) {
    rc = bt_h5_fail(pCfg->zPath, "/", "H5Fopen", __LINE__);
    goto out;
  }
  rc = bt_h5_check_version(hFile, pCfg->zPath, !g_bInspect);
  if (rc == BT_OK &&
      bt_h5_attr_int(hFile, pCfg->zPath, zAttr, &pPart->attrLimit) < 0)
    rc = BT_ERR;
  if (rc != BT_OK) goto out;
  pPart->limit = pPart->attrLimit > 0 ? pPart->attrLimit : cfg;
  pPart->bScan = 1;
  for (int s = 0; s < 2 && rc == BT_OK; s++)
    rc = bTok ? scan_tokens(pCfg->zPath, hFile, azSplit[s], pCfg,
                            pPart->limit, &pPart->aSplit[s])
              : scan_features(pCfg->zPath, hFile, azSplit[s], pCfg,
                              pPart->limit, &pPart->aSplit[s], &pPart->D);
out:
  if (hFile >= 0) H5Fclose(hFile);
  bt_h5_unlock();
  return rc;
}

void bt_data_check_part(const bt_loader_config *pCfg, bt_data_part *pPart) {
  memset(pPart, 0, sizeof *pPart);
  pPart->attrLimit = -1;
  for (int s = 0; s < 2; s++) scan_init(&pPart->aSplit[s]);
  double t0 = bt_time_now();
  pPart->rc = check_part(pCfg, pPart);
  if (pPart->rc != BT_OK)
    snprintf(pPart->zErr, sizeof pPart->zErr, "%s", bt_err_msg());
  pPart->seconds = bt_time_now() - t0;
}

/* The message of split s's first bad value over all parts (BT_ERR), or
 * BT_OK if there is none. */
static int merge_bad(const bt_data_part *aPart, int nPart, int s,
                     const bt_loader_config *pCfg) {
  const bt_data_scan *pB = NULL;
  for (int r = 0; r < nPart; r++) {
    const bt_data_scan *p = &aPart[r].aSplit[s];
    if (p->iBad >= 0 && (!pB || p->iBad < pB->iBad)) pB = p;
  }
  if (!pB) return BT_OK;
  int limit = (int)aPart[0].limit;
  char zDset[64];
  if (pCfg->eKind == BT_SAMPLE_TOKENS) {
    snprintf(zDset, sizeof zDset, "/%s/tokens", azSplit[s]);
    return bt_h5_token_error(pCfg->zPath, zDset, pB->bad, pB->iBad, limit);
  }
  snprintf(zDset, sizeof zDset, "/%s/%s", azSplit[s],
           pB->iBadCol >= 0 ? "x" : "y");
  if (pB->iBadCol >= 0)
    return bt_h5_feature_error(pCfg->zPath, zDset, pB->badX, pB->iBad,
                               pB->iBadCol, aPart[0].D);
  return bt_h5_label_error(pCfg->zPath, zDset, pB->bad, pB->iBad, limit);
}

int bt_data_check_merge(const bt_data_part *aPart, int nPart,
                        bt_loader_config *pCfg) {
  for (int r = 0; r < nPart; r++)
    if (aPart[r].rc != BT_OK) return bt_err_set("%s", aPart[r].zErr);
  for (int s = 0; s < 2; s++)
    if (merge_bad(aPart, nPart, s, pCfg) != BT_OK) return BT_ERR;
  if (!aPart[0].bScan) return BT_OK;
  int bTok = pCfg->eKind == BT_SAMPLE_TOKENS;
  int *pLimit = bTok ? &pCfg->vocab : &pCfg->nClass;
  if (aPart[0].attrLimit > 0 || *pLimit > 0) return BT_OK;
  /* Neither the config nor the file gives it: the largest value + 1. */
  int64_t vMax = -1;
  for (int r = 0; r < nPart; r++)
    for (int s = 0; s < 2; s++)
      if (aPart[r].aSplit[s].vMax > vMax) vMax = aPart[r].aSplit[s].vMax;
  if (vMax < 0) return BT_OK; /* nothing read: bt_loader_open reports it */
  if (vMax + 1 > (1 << 24))
    return bt_err_set("%s: the largest %s is %lld; %s supports at most %d",
                      pCfg->zPath, bTok ? "token id" : "label",
                      (long long)vMax,
                      bTok ? "model.vocab_size" : "model.n_classes", 1 << 24);
  *pLimit = (int)(vMax + 1);
  bt_log_info("note: %s has no %s attribute and %s is 0: using %d, the "
              "largest %s + 1 (set %s if the %s is larger)",
              pCfg->zPath, bTok ? "vocab_size" : "num_classes",
              bTok ? "model.vocab_size" : "model.n_classes", *pLimit,
              bTok ? "token id" : "label",
              bTok ? "model.vocab_size" : "model.n_classes",
              bTok ? "tokenizer's vocabulary" : "number of classes");
  return BT_OK;
}

int bt_data_check_run(bt_loader_config *pCfg, int bScan,
                      bt_data_gather_fn xGather, void *pCtx) {
  if (!bScan || !pCfg->zPath || !strncmp(pCfg->zPath, "synthetic:", 10))
    return BT_OK;
  int world = pCfg->world > 0 ? pCfg->world : 1;
  bt_data_part me;
  bt_data_part *aAll =
      bt_calloc((size_t)world, sizeof(bt_data_part), "check parts");
  if (!aAll) return BT_ERR;
  double t0 = bt_time_now();
  bt_data_check_part(pCfg, &me);
  int rc = BT_OK;
  if (world == 1 || !xGather) aAll[0] = me;
  else if (xGather(pCtx, &me, aAll, sizeof me) != BT_OK)
    rc = bt_err_prefix("data check: ");
  if (rc == BT_OK) rc = bt_data_check_merge(aAll, xGather ? world : 1, pCfg);
  if (rc == BT_OK && aAll[0].bScan) {
    int64_t nByte = 0, nItem = 0;
    double tMax = 0;
    for (int r = 0; r < (xGather ? world : 1); r++) {
      for (int s = 0; s < 2; s++) nByte += aAll[r].aSplit[s].nByte;
      if (aAll[r].seconds > tMax) tMax = aAll[r].seconds;
    }
    for (int s = 0; s < 2; s++) nItem += aAll[0].aSplit[s].nItem;
    char zB[32];
    bt_log_info("data check: %s: %lld %s, %s read by %d rank%s in %.2f s "
                "(slowest rank %.2f s): no bad value (data.check = false "
                "skips this)",
                pCfg->zPath, (long long)nItem,
                pCfg->eKind == BT_SAMPLE_TOKENS ? "tokens" : "rows",
                bt_fmt_bytes((double)nByte, zB, sizeof zB), world,
                world > 1 ? "s" : "", bt_time_now() - t0, tMax);
  }
  free(aAll);
  return rc;
}

/* ---- inspect ------------------------------------------------------------ */

typedef struct insp {
  const char *zPath;
  hid_t hFile;
  int nDset;
  int nProblem;
  int64_t nTokDset, nXDset;
} insp;

/* Attributes printed so far, and what comes before the first. */
typedef struct attr_list {
  int n;
  const char *zPrefix;
} attr_list;

static herr_t attr_print(hid_t loc, const char *zName, const H5A_info_t *pI,
                         void *pArg) {
  (void)pI;
  attr_list *pL = pArg;
  hid_t a = H5Aopen(loc, zName, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
  char zVal[160] = "?", zt[32] = "";
  if (t >= 0) bt_h5_type_name(t, zt, sizeof zt);
  hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (t >= 0 && n == 1 && H5Tget_class(t) == H5T_INTEGER) {
    long long v = 0;
    if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0)
      snprintf(zVal, sizeof zVal, "%lld", v);
  } else if (t >= 0 && n == 1 && H5Tget_class(t) == H5T_FLOAT) {
    double v = 0;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0)
      snprintf(zVal, sizeof zVal, "%g", v);
  } else if (t >= 0 && n == 1 && H5Tget_class(t) == H5T_STRING) {
    if (H5Tis_variable_str(t) > 0) {
      char *z = NULL;
      hid_t mt = H5Tcopy(t);
      if (H5Aread(a, mt, &z) >= 0 && z)
        snprintf(zVal, sizeof zVal, "\"%.120s\"", z);
      if (z) H5free_memory(z);
      H5Tclose(mt);
    } else {
      size_t sz = H5Tget_size(t);
      char *z = calloc(1, sz + 1);
      if (z && H5Aread(a, t, z) >= 0)
        snprintf(zVal, sizeof zVal, "\"%.120s\"", z);
      free(z);
    }
  } else if (n > 1) {
    snprintf(zVal, sizeof zVal, "(%s, %lld values)", zt, (long long)n);
  }
  printf("%s%s = %s", pL->n ? ", " : pL->zPrefix, zName, zVal);
  pL->n++;
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return 0;
}

/* "[N, D]", the layout, the filters and the stored size of one dataset. */
static void dset_print(insp *p, const char *zName, hid_t d) {
  hid_t t = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
  char zt[32] = "?", zShape[128] = "[", zLay[256] = "";
  if (t >= 0) bt_h5_type_name(t, zt, sizeof zt);
  hsize_t aDim[H5S_MAX_RANK];
  int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, aDim, NULL) : -1;
  double nLogical = t >= 0 ? (double)H5Tget_size(t) : 0;
  for (int i = 0; i < nd; i++) {
    size_t k = strlen(zShape);
    snprintf(zShape + k, sizeof zShape - k, "%s%llu", i ? ", " : "",
             (unsigned long long)aDim[i]);
    nLogical *= (double)aDim[i];
  }
  strncat(zShape, "]", sizeof zShape - strlen(zShape) - 1);
  H5D_layout_t eLay = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
  if (eLay == H5D_CHUNKED) {
    hsize_t aC[H5S_MAX_RANK];
    int nc = H5Pget_chunk(dcpl, H5S_MAX_RANK, aC);
    snprintf(zLay, sizeof zLay, "chunked (");
    for (int i = 0; i < nc; i++) {
      size_t k = strlen(zLay);
      snprintf(zLay + k, sizeof zLay - k, "%s%llu", i ? ", " : "",
               (unsigned long long)aC[i]);
    }
    strncat(zLay, ")", sizeof zLay - strlen(zLay) - 1);
  } else {
    snprintf(zLay, sizeof zLay, "%s",
             eLay == H5D_CONTIGUOUS ? "contiguous"
             : eLay == H5D_COMPACT  ? "compact"
                                    : "other layout");
  }
  int nf = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
  for (int i = 0; i < nf; i++) {
    unsigned flags = 0, aCd[8];
    size_t nCd = 8;
    char zf[64] = "";
    H5Z_filter_t f = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nCd, aCd,
                                    sizeof zf, zf, NULL);
    size_t k = strlen(zLay);
    if (f == H5Z_FILTER_DEFLATE && nCd > 0)
      snprintf(zLay + k, sizeof zLay - k, ", gzip %u", aCd[0]);
    else if (f == H5Z_FILTER_SHUFFLE)
      snprintf(zLay + k, sizeof zLay - k, ", shuffle");
    else
      snprintf(zLay + k, sizeof zLay - k, ", filter %d (%s)", (int)f, zf);
  }
  char zB[32], zL[32];
  double nStored = (double)H5Dget_storage_size(d);
  printf("  %-16s %-8s %-16s %s; %s stored", zName, zt, zShape, zLay,
         bt_fmt_bytes(nStored, zB, sizeof zB));
  if (nStored > 0 && nLogical > nStored * 1.01)
    printf(" (%s raw, %.2fx)", bt_fmt_bytes(nLogical, zL, sizeof zL),
           nLogical / nStored);
  printf("\n");
  attr_list al = {0, "    attributes: "};
  hsize_t idx = 0;
  H5Aiterate2(d, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_print, &al);
  if (al.n) printf("\n");
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  if (dcpl >= 0) H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  p->nDset++;
}

/* Every dataset under group zGroup, depth first, in name order. */
static void group_walk(insp *p, const char *zGroup, int depth) {
  hid_t g = H5Gopen2(p->hFile, zGroup, H5P_DEFAULT);
  H5G_info_t gi;
  if (g < 0 || H5Gget_info(g, &gi) < 0 || depth > 16) {
    if (g >= 0) H5Gclose(g);
    H5Eclear2(H5E_DEFAULT);
    return;
  }
  for (hsize_t i = 0; i < gi.nlinks; i++) {
    char zName[256], zFull[512];
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, zName,
                           sizeof zName, H5P_DEFAULT) < 0)
      continue;
    snprintf(zFull, sizeof zFull, "%s%s%s", zGroup,
             strcmp(zGroup, "/") ? "/" : "", zName);
    hid_t o = H5Oopen(p->hFile, zFull, H5P_DEFAULT);
    if (o < 0) {
      printf("  %-16s (cannot be opened: a dangling or external link)\n",
             zFull);
      continue;
    }
    H5I_type_t e = H5Iget_type(o);
    if (e == H5I_GROUP) group_walk(p, zFull, depth + 1);
    else if (e == H5I_DATASET) dset_print(p, zFull, o);
    H5Oclose(o);
  }
  H5Gclose(g);
  H5Eclear2(H5E_DEFAULT);
}

static void scan_print(const char *zPath, const bt_data_part *pPart,
                       const bt_loader_config *c, int s, insp *p) {
  const bt_data_scan *pS = &pPart->aSplit[s];
  int bTok = c->eKind == BT_SAMPLE_TOKENS;
  if (!pS->bScanned) {
    /* A split that is absent is a problem for /train only; one that is
     * present but cannot be read is always one. */
    int bAbsent = strncmp(pS->zNote, "no ", 3) == 0;
    if (bAbsent && s == 1) return;
    printf("  /%s: %s%s\n", azSplit[s], bAbsent ? "" : "not scanned: ",
           pS->zNote);
    p->nProblem++;
    return;
  }
  printf("  /%s/%s: %lld %s", azSplit[s], bTok ? "tokens" : "x, y",
         (long long)pS->nItem, bTok ? "tokens" : "rows");
  if (!bTok) printf(" of %lld features", (long long)pPart->D);
  if (pS->vMax >= pS->vMin)
    printf(", %s %lld..%lld", bTok ? "ids" : "labels", (long long)pS->vMin,
           (long long)pS->vMax);
  if (pS->iBad < 0) {
    printf(": OK\n");
    return;
  }
  bt_loader_config c2 = *c;
  c2.zPath = zPath;
  bt_data_check_merge(pPart, 1, &c2); /* records the first bad value */
  printf(": BAD\n    %s\n", bt_err_msg());
  p->nProblem++;
}

/* ---- audio files ----------------------------------------------------------
 * A file of `baton prepare audio` (docs/data.md, "Audio data") is read
 * through the audio loader itself: its open validates the layout
 * (attributes, offsets, vocabulary) and each batch it returns has every
 * feature checked finite and every label in 1..V-1, so inspect reports a
 * bad file in the words training would (invariant 1). One epoch of
 * length-sorted batches, unshuffled, reads every utterance once. */

/* The longest utterance in frames from /audio/frame_offsets (called with
 * bt_h5_lock() held), so that the loader's frame budget fits every
 * utterance; 0 when the offsets cannot be read (the loader says why). */
static int64_t audio_longest(hid_t hFile) {
  int64_t longest = 0;
  hid_t d = H5Dopen2(hFile, BT_AUDIO_DS_FRAME_OFFSETS, H5P_DEFAULT);
  hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t n = 0;
  if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
      H5Sget_simple_extent_dims(sp, &n, NULL) == 1 && n >= 2 &&
      n < ((hsize_t)1 << 40)) {
    int64_t *a = malloc((size_t)n * sizeof *a);
    if (a && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     a) >= 0) {
      for (hsize_t i = 0; i + 1 < n; i++)
        if (a[i + 1] - a[i] > longest) longest = a[i + 1] - a[i];
    }
    free(a);
  }
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return longest;
}

typedef struct audio_sum {
  int64_t nUtt, nFrame, nLabel, nEmpty; /* nEmpty: no transcript */
  int64_t fMin, fMax;                   /* frames of an utterance */
  int V;                                /* vocabulary with the blank */
  uint64_t nByte;
  double seconds;
} audio_sum;

/* Reads every utterance once; BT_ERR with the loader's message. */
static int audio_scan(const char *zPath, int64_t longest, audio_sum *pS) {
  memset(pS, 0, sizeof *pS);
  pS->fMin = INT64_MAX;
  bt_audio_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = zPath;
  c.maxFrames = longest > (1 << 16) ? longest : (1 << 16); /* ~21 MB */
  c.world = 1;
  c.seed = 1;
  double t0 = bt_time_now();
  bt_audio_loader *pL = NULL;
  if (bt_audio_loader_open(&pL, &c) != BT_OK) return BT_ERR;
  pS->V = bt_audio_loader_vocab(pL);
  int rc = BT_OK;
  int64_t nBatch = bt_audio_loader_epoch_batches(pL);
  for (int64_t b = 0; b < nBatch && rc == BT_OK; b++) {
    bt_speech_batch sb;
    rc = bt_audio_loader_next(pL, &sb);
    for (int i = 0; rc == BT_OK && i < sb.B; i++) {
      int64_t f = sb.aFrames[i];
      pS->nUtt++;
      pS->nFrame += f;
      pS->nLabel += sb.aLabelLen[i];
      pS->nEmpty += sb.aLabelLen[i] == 0;
      if (f < pS->fMin) pS->fMin = f;
      if (f > pS->fMax) pS->fMax = f;
    }
  }
  pS->nByte = bt_audio_loader_bytes_read(pL);
  pS->seconds = bt_time_now() - t0;
  /* The plan holds every utterance exactly once (audio_loader.h). */
  BT_ASSERT(rc != BT_OK || pS->nUtt == bt_audio_loader_size(pL));
  bt_audio_loader_free(pL);
  return rc;
}

/* "vocabulary: 28 (blank + 27 characters): " abc..."": the characters as
 * UTF-8, a control character as U+XXXX. */
static void audio_vocab_print(const char *zPath) {
  int32_t *aCp = NULL;
  int n = 0;
  if (bt_audio_vocab_read(zPath, &aCp, &n) != BT_OK) return;
  printf("  vocabulary: %d (blank + %d characters): \"", n + 1, n);
  for (int i = 0; i < n; i++) {
    int32_t cp = aCp[i];
    if (cp < 0x20 || cp == 0x7f) printf("U+%04X", (unsigned)cp);
    else if (cp < 0x80) putchar((int)cp);
    else if (cp < 0x800)
      printf("%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000)
      printf("%c%c%c", 0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f),
             0x80 | (cp & 0x3f));
    else
      printf("%c%c%c%c", 0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f),
             0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  printf("\"\n");
  free(aCp);
}

/* The summary of an audio file and the verdict of reading all of it. */
static void inspect_audio(insp *p, int64_t longest) {
  audio_sum s;
  const double frameS = (double)BT_AUDIO_HOP / BT_AUDIO_SAMPLE_RATE;
  if (audio_scan(p->zPath, longest, &s) != BT_OK) {
    printf("audio: BAD\n    %s\n", bt_err_msg());
    p->nProblem++;
    return;
  }
  printf("audio: %lld utterances, %lld frames (%.1f s), %lld labels\n",
         (long long)s.nUtt, (long long)s.nFrame, (double)s.nFrame * frameS,
         (long long)s.nLabel);
  if (s.nUtt > 0)
    printf("  utterances: %.2f s .. %.2f s, mean %.2f s; %lld without a "
           "transcript\n",
           (double)s.fMin * frameS, (double)s.fMax * frameS,
           (double)s.nFrame * frameS / (double)s.nUtt, (long long)s.nEmpty);
  audio_vocab_print(p->zPath);
  printf("  /audio: every feature finite, every label in 1..%d: OK\n",
         s.V - 1);
  char zB[32];
  printf("  read %s in %.2f s (%.0f MB/s)\n",
         bt_fmt_bytes((double)s.nByte, zB, sizeof zB), s.seconds,
         s.seconds > 0 ? (double)s.nByte / s.seconds / 1e6 : 0.0);
}

static void inspect_usage(FILE *f) {
  fprintf(f,
          "usage: baton inspect DATA.h5 [--vocab V] [--num-classes K]\n"
          "\n"
          "Prints a dataset file's attributes and datasets (type, shape,\n"
          "chunking, compression, stored size), then reads every value once\n"
          "and reports the first token id outside [0, V) (V: --vocab, else\n"
          "the file's vocab_size), the first non-finite feature (row,\n"
          "column) and the first label outside [0, K), each with its index.\n"
          "A file of `baton prepare audio`: utterances, frames, duration,\n"
          "vocabulary, and every feature and label read once.\n"
          "(`baton inspect CHECKPOINT_DIR` inspects a checkpoint instead.)\n"
          "Exit status: 0 no problem found, 1 a problem, 2 usage error.\n");
}

int bt_data_inspect_wants(int argc, char **argv) {
  struct stat st;
  for (int i = 1; i < argc; i++)
    if (argv[i][0] != '-' && stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
      return 1;
  return 0;
}

/* Scans kind eKind (both splits) and prints the findings. */
static int inspect_scan(insp *p, bt_sample_kind eKind, int limit) {
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = p->zPath;
  c.eKind = eKind;
  c.world = 1;
  if (eKind == BT_SAMPLE_TOKENS) c.vocab = limit;
  else c.nClass = limit;
  bt_data_part part;
  bt_data_check_part(&c, &part);
  if (part.rc != BT_OK) {
    printf("  %s\n", part.zErr);
    p->nProblem++;
    return BT_ERR;
  }
  const char *zAttr = eKind == BT_SAMPLE_TOKENS ? "vocab_size" : "num_classes";
  printf("%s: ", eKind == BT_SAMPLE_TOKENS ? "tokens" : "features");
  if (limit > 0 && part.attrLimit > 0 && part.attrLimit > limit) {
    printf("the file's %s %lld is larger than %s %d\n", zAttr,
           (long long)part.attrLimit,
           eKind == BT_SAMPLE_TOKENS ? "--vocab" : "--num-classes", limit);
    p->nProblem++;
  } else if (part.limit > 0) {
    printf("%s checked against %lld (%s)\n",
           eKind == BT_SAMPLE_TOKENS ? "ids" : "labels",
           (long long)part.limit,
           part.attrLimit > 0 ? zAttr
           : eKind == BT_SAMPLE_TOKENS ? "--vocab" : "--num-classes");
  } else {
    printf("no %s attribute: training takes the largest %s + 1 unless %s "
           "is set\n",
           zAttr, eKind == BT_SAMPLE_TOKENS ? "token id" : "label",
           eKind == BT_SAMPLE_TOKENS ? "model.vocab_size" : "model.n_classes");
  }
  double nByte = 0;
  for (int s = 0; s < 2; s++) {
    scan_print(p->zPath, &part, &c, s, p);
    nByte += (double)part.aSplit[s].nByte;
  }
  char zB[32];
  printf("  read %s in %.2f s (%.0f MB/s)\n",
         bt_fmt_bytes(nByte, zB, sizeof zB), part.seconds,
         part.seconds > 0 ? nByte / part.seconds / 1e6 : 0.0);
  return BT_OK;
}

/* Parses inspect's command line: -1 to go on, or the exit code to return
 * now (0 after --help, BT_EXIT_USAGE after a usage error). */
static int inspect_parse(int argc, char **argv, const char **pzPath,
                         int *pVocab, int *pnClass) {
  static const struct option aOpt[] = {
      {"vocab", required_argument, 0, 'v'},
      {"num-classes", required_argument, 0, 'k'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *zPath = NULL;
  int vocab = 0, nClass = 0;
  bt_cli cli;
  bt_cli_init(&cli, "inspect", argc, argv, "h", aOpt, inspect_usage);
  for (int ch; (ch = bt_cli_next(&cli)) != -1;) {
    char *end = NULL;
    long v = 0;
    switch (ch) {
    case 'v':
    case 'k':
      v = strtol(cli.zArg, &end, 10);
      if (*end || v < 1 || v > (1 << 24))
        return bt_cli_fail(&cli, "--%s expects an integer in [1, %d], got "
                           "'%s'",
                           ch == 'v' ? "vocab" : "num-classes", 1 << 24,
                           cli.zArg);
      if (ch == 'v') vocab = (int)v;
      else nClass = (int)v;
      break;
    case 'h': inspect_usage(stdout); return BT_EXIT_OK;
    case BT_CLI_ARG:
      if (zPath)
        return bt_cli_fail(&cli, "unexpected argument '%s'", cli.zArg);
      zPath = cli.zArg;
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (!zPath) return bt_cli_fail(&cli, "DATA.h5 is required");
  *pzPath = zPath;
  *pVocab = vocab;
  *pnClass = nClass;
  return -1;
}

int bt_data_inspect_main(int argc, char **argv) {
  const char *zPath = NULL;
  int vocab = 0, nClass = 0;
  int code = inspect_parse(argc, argv, &zPath, &vocab, &nClass);
  if (code >= 0) return code;
  struct stat st;
  if (stat(zPath, &st) != 0) {
    bt_log_error("%s: cannot open dataset file: %s", zPath, strerror(errno));
    return BT_EXIT_ERROR;
  }
  insp in;
  memset(&in, 0, sizeof in);
  g_bInspect = 1;
  in.zPath = zPath;
  char zB[32];
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  in.hFile = H5Fis_hdf5(zPath) > 0
                 ? H5Fopen(zPath, H5F_ACC_RDONLY, H5P_DEFAULT)
                 : -1;
  if (in.hFile < 0) {
    H5Eclear2(H5E_DEFAULT);
    bt_h5_unlock();
    bt_log_error("%s: not an HDF5 file, or the file is truncated or corrupt "
                 "(%lld bytes)",
                 zPath, (long long)st.st_size);
    return BT_EXIT_ERROR;
  }
  printf("%s: HDF5 dataset file, %s\n", zPath,
         bt_fmt_bytes((double)st.st_size, zB, sizeof zB));
  attr_list al = {0, "attributes: "};
  hsize_t idx = 0;
  H5Aiterate2(in.hFile, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_print, &al);
  int64_t ver = -1;
  bt_h5_attr_int(in.hFile, zPath, "baton_format_version", &ver);
  /* An audio file keeps its version on /audio (the loader checks it). */
  int bAudio = dset_exists(in.hFile, BT_AUDIO_DS_FEATURES);
  printf("%s%s\n", al.n ? "" : "attributes: none",
         ver < 0 && !bAudio ? " (no baton_format_version: read as version 1)"
                            : "");
  printf("datasets:\n");
  group_walk(&in, "/", 0);
  int bTok = dset_exists(in.hFile, "/train/tokens") ||
             dset_exists(in.hFile, "/val/tokens");
  int bX = dset_exists(in.hFile, "/train/x") || dset_exists(in.hFile, "/val/x");
  int64_t longest = bAudio ? audio_longest(in.hFile) : 0;
  H5Fclose(in.hFile);
  bt_h5_unlock();
  if (ver >= 0 && ver != 1) {
    printf("baton_format_version %lld: this baton reads version 1\n",
           (long long)ver);
    in.nProblem++;
  }
  if (!bTok && !bX && !bAudio) {
    printf("no /train/tokens, /val/tokens, /train/x, /val/x or "
           "/audio/features: not a dataset baton trains on (docs/data.md, "
           "\"HDF5 layouts\" and \"Audio data\")\n");
    in.nProblem++;
  }
  if (bTok) inspect_scan(&in, BT_SAMPLE_TOKENS, vocab);
  if (bX) inspect_scan(&in, BT_SAMPLE_FEATURES, nClass);
  if (bAudio) inspect_audio(&in, longest);
  if (in.nProblem) printf("result: %d problem%s found\n", in.nProblem,
                          in.nProblem > 1 ? "s" : "");
  else printf("result: OK\n");
  return in.nProblem ? BT_EXIT_ERROR : BT_EXIT_OK;
}
