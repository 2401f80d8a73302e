/*
 * h5.c: the HDF5 sample source (layouts in docs/data.md).
 *
 *   tokens:   /<split>/tokens  1-D, any integer type (int8..int64,
 *             uint8..uint64), any chunking/filters; sample i = elements
 *             [i*(T+1), (i+1)*(T+1)).
 *   features: /<split>/x float or integer [N, D...] (trailing dims
 *             flattened), /<split>/y integer [N] (or [N, 1]).
 *   root attributes, all optional (files written by users' own tools
 *             rarely have them): baton_format_version (1 if absent; a
 *             note is logged once); vocab_size (tokens); num_classes
 *             (features); tokenizer (string, informational). A limit the
 *             file does not give comes from the config, or from the data
 *             through the start-up check (check.c).
 *
 * Thread rule (HDF5 is not thread-safe in every build):
 *   1. Every HDF5 call in the process happens under bt_h5_lock(), a
 *      process-wide recursive mutex; other modules that use HDF5 take it
 *      too. Two loaders (train and val) in one process are then safe.
 *   2. The file is opened and validated on the caller's thread inside
 *      bt_loader_open(); afterwards a source is read by one thread at a time
 *      (loader_impl.h): the prefetch thread while it runs. Handles are never
 *      shared between processes: each rank opens its own.
 *   3. HDF5's automatic error printing is switched off on every entry
 *      (error stacks are per thread in thread-safe builds); failures are
 *      reported by h5_fail() with the call, file, dataset, the innermost
 *      HDF5 message and the source line.
 *
 *   4. Contiguous unfiltered token streams are read with pread() on the
 *      source's own file descriptor (see "pread fast path"); those reads
 *      make no HDF5 call and take no lock.
 *
 *   5. Every HDF5 call that reads or opens is checked (H5_TRY, bt_h5_fail).
 *      Closing ids on cleanup paths of a read-only file is not: it cannot
 *      lose data and an earlier error is already being reported.
 *
 * Reading: a rank's indices are sorted and coalesced into runs of
 * consecutive samples; each run is one contiguous hyperslab read into a
 * scratch buffer (tokens through H5T_NATIVE_INT64 whatever the file's
 * integer type: every value of every type is then exact, except uint64
 * values above 2^63, which HDF5 clips to INT64_MAX and the range check
 * rejects all the same; a negative id is never converted silently),
 * validated, and scattered back into the caller's order. No rank
 * ever selects more than its own samples; nByteRead counts the selected
 * elements times their size in the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "data/h5_impl.h"
#include "data/loader_impl.h"

static pthread_mutex_t g_h5Lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
void bt_h5_lock(void) { pthread_mutex_lock(&g_h5Lock); }
void bt_h5_unlock(void) { pthread_mutex_unlock(&g_h5Lock); }

typedef struct h5_src {
  bt_source base;
  char zPath[4096];
  char zDset[80];  /* /split/tokens or /split/x */
  char zDsetY[80]; /* /split/y */
  int bTokens;
  hid_t hFile, hDset, hDsetY, hSpace, hSpaceY;
  int T;
  int64_t nElem;        /* tokens: elements in the stream */
  int elemSize;         /* bytes per element of hDset in the file */
  int bSigned;          /* tokens: the file's integer type is signed */
  int elemSizeY;
  int vocabLimit;       /* tokens must be < this */
  int nClassLimit;      /* labels must be < this */
  int rankX, rankY;
  hsize_t aDimX[H5S_MAX_RANK];
  /* pread fast path for contiguous, unfiltered, little-endian token
   * streams: fd >= 0 and the data starts at file offset offData. */
  int fd;
  int64_t offData;
  size_t nRaw;
  unsigned char *aRaw;
  /* scratch, grown on demand by the reading thread */
  size_t nOrd;
  int64_t *aOrd; /* pairs (index, position in caller's order) */
  size_t nTok;
  int64_t *aTok;
  size_t nXTmp, nYTmp;
  float *aXTmp;
  int32_t *aYTmp;
} h5_src;

/* ---- errors --------------------------------------------------------------- */

static herr_t err_walk(unsigned n, const H5E_error2_t *pErr, void *pData) {
  char *z = pData;
  if (n == 0 && pErr->desc) snprintf(z, 256, "%s", pErr->desc);
  return 0;
}

/* Records "<file>:<dataset>: <what> failed: <HDF5's innermost message>". */
int bt_h5_fail(const char *zPath, const char *zDset, const char *zWhat,
                   int line) {
  char zDesc[256] = "";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, err_walk, zDesc);
  H5Eclear2(H5E_DEFAULT);
  return bt_err_set("%s:%s: %s failed%s%s (data/h5.c:%d)", zPath,
                    zDset && zDset[0] ? zDset : "/", zWhat,
                    zDesc[0] ? ": " : "", zDesc, line);
}

/* Checks an HDF5 return value; on failure records the call, file and
 * dataset and jumps to the function's `out` label with rc = BT_ERR. */
#define H5_TRY(call, zDsetName)                                                \
  do {                                                                         \
    if ((call) < 0) {                                                          \
      rc = bt_h5_fail(s->zPath, (zDsetName), #call, __LINE__);                    \
      goto out;                                                                \
    }                                                                          \
  } while (0)

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

const char *bt_h5_type_name(hid_t t, char *z, size_t nz) {
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  const char *zc = "other";
  if (cls == H5T_INTEGER)
    zc = H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int";
  else if (cls == H5T_FLOAT)
    zc = "float";
  else if (cls == H5T_STRING)
    zc = "string";
  else if (cls == H5T_COMPOUND)
    zc = "compound";
  snprintf(z, nz, "%s%zu", zc, sz * 8);
  return z;
}

/* ---- attributes ----------------------------------------------------------- */

/* Reads integer attribute zName of the root group of hFile; 0 = absent
 * (*pv kept), 1 = read, BT_ERR = present but unreadable. */
int bt_h5_attr_int(hid_t hFile, const char *zPath, const char *zName,
                   int64_t *pv) {
  int rc = 0;
  hid_t a = -1, t = -1;
  htri_t ex = H5Aexists_by_name(hFile, "/", zName, H5P_DEFAULT);
  if (ex < 0) return bt_h5_fail(zPath, "/", "H5Aexists_by_name", __LINE__);
  if (ex == 0) return 0;
  a = H5Aopen_by_name(hFile, "/", zName, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) return bt_h5_fail(zPath, "/", "H5Aopen_by_name", __LINE__);
  t = H5Aget_type(a);
  long long v = 0;
  if (t < 0) {
    rc = bt_h5_fail(zPath, "/", "H5Aget_type", __LINE__);
  } else if (H5Tget_class(t) != H5T_INTEGER) {
    rc = bt_err_set("%s: attribute %s is not an integer", zPath, zName);
  } else if (H5Aread(a, H5T_NATIVE_LLONG, &v) < 0) {
    rc = bt_h5_fail(zPath, "/", "H5Aread", __LINE__);
  } else {
    *pv = v;
    rc = 1;
  }
  if (t >= 0) H5Tclose(t);
  H5Aclose(a);
  return rc;
}

/* The format version: absent is version 1, noted once per process (files
 * written with h5py rarely carry baton's attributes); any other value than
 * 1 is an error. Called with bt_h5_lock() held, which guards the flag. */
int bt_h5_check_version(hid_t hFile, const char *zPath, int bNote) {
  static int bNoted = 0;
  int64_t ver = -1;
  int rc = bt_h5_attr_int(hFile, zPath, "baton_format_version", &ver);
  if (rc < 0) return BT_ERR;
  if (rc == 0) {
    if (!bNoted && bNote)
      bt_log_info("note: %s has no baton_format_version attribute; reading "
                  "it as version 1 (docs/data.md)",
                  zPath);
    bNoted |= bNote;
    return BT_OK;
  }
  if (ver != 1)
    return bt_err_set("%s: baton_format_version is %lld; this baton reads "
                      "version 1",
                      zPath, (long long)ver);
  return BT_OK;
}

/* The limit (vocabulary, classes) that values are checked against, from
 * the file's attribute zAttr (attr, <= 0 absent) and the config key zKey
 * (cfg, 0 unset): the attribute if present (the model may be larger than
 * the data needs, never smaller), else the config. */
int bt_h5_limit(const char *zPath, const char *zAttr, int64_t attr, int cfg,
                const char *zKey, int *pLimit) {
  if (attr <= 0 && cfg <= 0)
    return bt_err_set("%s: %s is not set and the file has no %s attribute; "
                      "set %s (or leave data.check on to take it from the "
                      "data)",
                      zPath, zKey, zAttr, zKey);
  if (attr > 0 && cfg > 0 && attr > cfg)
    return bt_err_set("%s: the file's %s %lld is larger than %s = %d; set "
                      "%s = %lld, or leave it unset (0) to take it from the "
                      "file",
                      zPath, zAttr, (long long)attr, zKey, cfg, zKey,
                      (long long)attr);
  if (attr > (1 << 24))
    return bt_err_set("%s: attribute %s %lld is out of range (at most %d)",
                      zPath, zAttr, (long long)attr, 1 << 24);
  *pLimit = attr > 0 ? (int)attr : cfg;
  return BT_OK;
}

int bt_h5_token_error(const char *zPath, const char *zDset, int64_t v,
                      int64_t idx, int limit) {
  if (v < 0)
    return bt_err_set("%s:%s: token id %lld at index %lld is negative",
                      zPath, zDset, (long long)v, (long long)idx);
  return bt_err_set("%s:%s: token id %lld at index %lld is >= vocab size %d",
                    zPath, zDset, (long long)v, (long long)idx, limit);
}

int bt_h5_label_error(const char *zPath, const char *zDset, int64_t v,
                      int64_t idx, int limit) {
  if (v < 0)
    return bt_err_set("%s:%s: label %lld at index %lld is negative", zPath,
                      zDset, (long long)v, (long long)idx);
  return bt_err_set("%s:%s: label %lld at index %lld is >= num_classes %d",
                    zPath, zDset, (long long)v, (long long)idx, limit);
}

int bt_h5_feature_error(const char *zPath, const char *zDset, double v,
                        int64_t row, int64_t col, int64_t D) {
  return bt_err_set("%s:%s: non-finite value %g at index %lld (row %lld, "
                    "column %lld)",
                    zPath, zDset, v, (long long)(row * D + col),
                    (long long)row, (long long)col);
}

/* ---- open ----------------------------------------------------------------- */

static void h5_close_handles(h5_src *s) {
  if (s->hSpaceY >= 0) H5Sclose(s->hSpaceY);
  if (s->hSpace >= 0) H5Sclose(s->hSpace);
  if (s->hDsetY >= 0) H5Dclose(s->hDsetY);
  if (s->hDset >= 0) H5Dclose(s->hDset);
  if (s->hFile >= 0) H5Fclose(s->hFile);
  s->hSpaceY = s->hSpace = s->hDsetY = s->hDset = s->hFile = -1;
}

static void h5_close(bt_source *pSrc) {
  h5_src *s = (h5_src *)pSrc;
  bt_h5_lock();
  h5_quiet();
  h5_close_handles(s);
  bt_h5_unlock();
  if (s->fd >= 0) close(s->fd);
  free(s->aRaw);
  free(s->aOrd);
  free(s->aTok);
  free(s->aXTmp);
  free(s->aYTmp);
  free(s);
}

/* Opens dataset zDset after checking each path component exists, with a
 * larger chunk cache (random windows of compressed chunks re-read them). */
static int open_dset(h5_src *s, const char *zDset, hid_t *ph) {
  int rc = BT_OK;
  hid_t dapl = -1;
  char z[80];
  snprintf(z, sizeof z, "%s", zDset);
  for (char *slash = strchr(z + 1, '/');; slash = strchr(slash + 1, '/')) {
    if (slash) *slash = 0;
    htri_t ex = H5Lexists(s->hFile, z, H5P_DEFAULT);
    if (ex < 0) return bt_h5_fail(s->zPath, z, "H5Lexists", __LINE__);
    if (ex == 0)
      return bt_err_set("%s:%s: dataset not found (no '%s' in the file; "
                        "see docs/data.md for the layout)",
                        s->zPath, zDset, z);
    if (!slash) break;
    *slash = '/';
  }
  dapl = H5Pcreate(H5P_DATASET_ACCESS);
  H5_TRY(dapl, zDset);
  H5_TRY(H5Pset_chunk_cache(dapl, 12421, 64u << 20, 1.0), zDset);
  *ph = H5Dopen2(s->hFile, zDset, dapl);
  H5_TRY(*ph, zDset);
out:
  if (dapl >= 0) H5Pclose(dapl);
  return rc;
}

/* The file's attribute zAttr (vocab_size, num_classes) against the
 * config's value cfg (key zKey): bt_h5_limit. */
static int attr_limit(h5_src *s, const char *zAttr, int cfg, const char *zKey,
                      int *pv) {
  int64_t v = -1;
  if (bt_h5_attr_int(s->hFile, s->zPath, zAttr, &v) < 0) return BT_ERR;
  return bt_h5_limit(s->zPath, zAttr, v, cfg, zKey, pv);
}

static int open_tokens(h5_src *s, const bt_loader_config *pCfg) {
  int rc = BT_OK;
  hid_t t = -1;
  char zt[32];
  if (open_dset(s, s->zDset, &s->hDset) != BT_OK) return BT_ERR;
  if (attr_limit(s, "vocab_size", pCfg->vocab, "model.vocab_size",
                 &s->base.vocab) !=
      BT_OK)
    return BT_ERR;
  s->vocabLimit = s->base.vocab;
  t = H5Dget_type(s->hDset);
  H5_TRY(t, s->zDset);
  size_t nSize = H5Tget_size(t);
  if (H5Tget_class(t) != H5T_INTEGER ||
      (nSize != 1 && nSize != 2 && nSize != 4 && nSize != 8)) {
    rc = bt_err_set("%s:%s: token dtype is %s; expected an integer type "
                    "(uint16, uint32, int32, int64, ...)",
                    s->zPath, s->zDset, bt_h5_type_name(t, zt, sizeof zt));
    goto out;
  }
  s->elemSize = (int)nSize;
  s->bSigned = H5Tget_sign(t) != H5T_SGN_NONE;
  s->hSpace = H5Dget_space(s->hDset);
  H5_TRY(s->hSpace, s->zDset);
  int nd = H5Sget_simple_extent_ndims(s->hSpace);
  H5_TRY(nd, s->zDset);
  if (nd != 1) {
    rc = bt_err_set("%s:%s: token dataset has %d dimensions; expected a 1-D "
                    "token stream",
                    s->zPath, s->zDset, nd);
    goto out;
  }
  hsize_t dim = 0;
  H5_TRY(H5Sget_simple_extent_dims(s->hSpace, &dim, NULL), s->zDset);
  s->nElem = (int64_t)dim;
  if (s->nElem == 0) {
    rc = bt_err_set("%s:%s: dataset is empty (0 tokens)", s->zPath, s->zDset);
    goto out;
  }
  s->base.n = s->nElem / (pCfg->T + 1);
  if (s->base.n == 0) {
    rc = bt_err_set("%s:%s: dataset is empty: %lld tokens are fewer than one "
                    "window of T+1 = %d",
                    s->zPath, s->zDset, (long long)s->nElem, pCfg->T + 1);
    goto out;
  }
out:
  if (t >= 0) H5Tclose(t);
  return rc;
}

/* Features float or integer (read as float32), labels integer. */
static int features_check_types(h5_src *s) {
  int rc = BT_OK;
  hid_t t = -1, ty = -1;
  char zt[32];
  t = H5Dget_type(s->hDset);
  H5_TRY(t, s->zDset);
  if (H5Tget_class(t) != H5T_FLOAT && H5Tget_class(t) != H5T_INTEGER) {
    rc = bt_err_set("%s:%s: feature dtype is %s; expected float32, float64 "
                    "or an integer type",
                    s->zPath, s->zDset, bt_h5_type_name(t, zt, sizeof zt));
    goto out;
  }
  s->elemSize = (int)H5Tget_size(t);
  ty = H5Dget_type(s->hDsetY);
  H5_TRY(ty, s->zDsetY);
  if (H5Tget_class(ty) != H5T_INTEGER) {
    rc = bt_err_set("%s:%s: label dtype is %s; expected an integer type",
                    s->zPath,
                    s->zDsetY, bt_h5_type_name(ty, zt, sizeof zt));
    goto out;
  }
  s->elemSizeY = (int)H5Tget_size(ty);
out:
  if (t >= 0) H5Tclose(t);
  if (ty >= 0) H5Tclose(ty);
  return rc;
}

/* x [N, D...] with 0 < D <= 2^24, y [N] or [N, 1], N > 0 and the same. */
static int features_check_shapes(h5_src *s) {
  int rc = BT_OK;
  s->hSpace = H5Dget_space(s->hDset);
  H5_TRY(s->hSpace, s->zDset);
  s->hSpaceY = H5Dget_space(s->hDsetY);
  H5_TRY(s->hSpaceY, s->zDsetY);
  s->rankX = H5Sget_simple_extent_ndims(s->hSpace);
  H5_TRY(s->rankX, s->zDset);
  if (s->rankX < 1)
    return bt_err_set("%s:%s: is a scalar; expected [N, D...]", s->zPath,
                      s->zDset);
  H5_TRY(H5Sget_simple_extent_dims(s->hSpace, s->aDimX, NULL), s->zDset);
  int64_t D = 1;
  for (int i = 1; i < s->rankX; i++) D *= (int64_t)s->aDimX[i];
  if (D <= 0 || D > (1 << 24))
    return bt_err_set("%s:%s: feature width %lld is out of range", s->zPath,
                      s->zDset, (long long)D);
  s->base.D = (int)D;
  s->rankY = H5Sget_simple_extent_ndims(s->hSpaceY);
  H5_TRY(s->rankY, s->zDsetY);
  hsize_t aDimY[H5S_MAX_RANK];
  H5_TRY(H5Sget_simple_extent_dims(s->hSpaceY, aDimY, NULL), s->zDsetY);
  if (s->rankY < 1 || s->rankY > 2 || (s->rankY == 2 && aDimY[1] != 1))
    return bt_err_set("%s:%s: labels have %d dimensions; expected [N]",
                      s->zPath, s->zDsetY, s->rankY);
  if (aDimY[0] != s->aDimX[0])
    return bt_err_set("%s: %s has %llu rows but %s has %llu", s->zPath,
                      s->zDset, (unsigned long long)s->aDimX[0], s->zDsetY,
                      (unsigned long long)aDimY[0]);
  s->base.n = (int64_t)s->aDimX[0];
  if (s->base.n == 0)
    return bt_err_set("%s:%s: dataset is empty (0 rows)", s->zPath, s->zDset);
out:
  return rc;
}

static int open_features(h5_src *s, const bt_loader_config *pCfg) {
  if (open_dset(s, s->zDset, &s->hDset) != BT_OK) return BT_ERR;
  if (open_dset(s, s->zDsetY, &s->hDsetY) != BT_OK) return BT_ERR;
  if (attr_limit(s, "num_classes", pCfg->nClass, "model.n_classes",
                 &s->base.nClass) !=
      BT_OK)
    return BT_ERR;
  s->nClassLimit = s->base.nClass;
  if (features_check_types(s) != BT_OK) return BT_ERR;
  return features_check_shapes(s);
}

/* ---- pread fast path ------------------------------------------------------
 * A token window is T+1 consecutive elements. For a contiguous dataset
 * without filters, HDF5's per-call overhead (about 20 us per H5Dread)
 * dominates a shuffled epoch, so such files are read with pread() at
 * H5Dget_offset() + element offset instead. Enabled only when: layout is
 * contiguous, no filters, no external storage, little-endian integers, the
 * whole stream lies inside the file, and the first elements read both ways
 * agree. BATON_DATA_PREAD=0 turns it off (tests cover both paths).
 */
/* Little-endian integers of the file's size and sign, as int64 (uint64
 * values above INT64_MAX clip to it, as HDF5's conversion does, so both
 * read paths return the same numbers). */
static void raw_to_i64(const h5_src *s, const unsigned char *pRaw, size_t n,
                       int64_t *pOut) {
  const int nb = s->elemSize;
  for (size_t i = 0; i < n; i++) {
    const unsigned char *q = pRaw + i * (size_t)nb;
    uint64_t u = 0;
    for (int k = nb - 1; k >= 0; k--) u = (u << 8) | q[k];
    if (s->bSigned && nb < 8 && (u >> (8 * nb - 1)) & 1)
      u |= ~0ULL << (8 * nb); /* sign-extend */
    if (!s->bSigned && u > (uint64_t)INT64_MAX) u = (uint64_t)INT64_MAX;
    pOut[i] = (int64_t)u;
  }
}

static int fast_pread(const h5_src *s, int64_t start, int64_t count,
                      unsigned char *pRaw) {
  size_t nByte = (size_t)count * (size_t)s->elemSize, got = 0;
  off_t off = (off_t)(s->offData + start * s->elemSize);
  while (got < nByte) {
    ssize_t r = pread(s->fd, pRaw + got, nByte - got, off + (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return bt_err_set("%s:%s: read of tokens [%lld, %lld) failed: %s",
                        s->zPath, s->zDset, (long long)start,
                        (long long)(start + count),
                        r < 0 ? strerror(errno)
                              : "unexpected end of file (truncated?)");
    got += (size_t)r;
  }
  return BT_OK;
}

/* Called with bt_h5_lock() held, after open_tokens(). Never fails the open
 * for a reason that plain HDF5 reading would survive. */
static int fast_path_open(h5_src *s, int64_t fileSize) {
  const char *zEnv = getenv("BATON_DATA_PREAD");
  if (zEnv && zEnv[0] == '0') return BT_OK;
  int ok = 0;
  hid_t dcpl = H5Dget_create_plist(s->hDset), t = H5Dget_type(s->hDset);
  if (dcpl >= 0 && t >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
      H5Pget_nfilters(dcpl) == 0 && H5Pget_external_count(dcpl) == 0 &&
      H5Tget_order(t) == H5T_ORDER_LE) {
    haddr_t off = H5Dget_offset(s->hDset);
    if (off != HADDR_UNDEF &&
        (int64_t)off + s->nElem * s->elemSize <= fileSize) {
      s->offData = (int64_t)off;
      ok = 1;
    }
  }
  if (dcpl >= 0) H5Pclose(dcpl);
  if (t >= 0) H5Tclose(t);
  H5Eclear2(H5E_DEFAULT);
  if (!ok) return BT_OK;
  s->fd = open(s->zPath, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) return BT_OK;
  /* Cross-check the first elements against HDF5 itself. */
  hsize_t start = 0, count = (hsize_t)(s->nElem < 64 ? s->nElem : 64);
  int64_t a[64], b[64];
  unsigned char raw[64 * 8];
  hid_t ms = H5Screate_simple(1, &count, NULL);
  int same = ms >= 0 &&
             H5Sselect_hyperslab(s->hSpace, H5S_SELECT_SET, &start, NULL,
                                 &count, NULL) >= 0 &&
             H5Dread(s->hDset, H5T_NATIVE_INT64, ms, s->hSpace, H5P_DEFAULT,
                     a) >= 0 &&
             fast_pread(s, 0, (int64_t)count, raw) == BT_OK;
  if (same) {
    raw_to_i64(s, raw, count, b);
    same = memcmp(a, b, count * sizeof(int64_t)) == 0;
  }
  if (ms >= 0) H5Sclose(ms);
  H5Eclear2(H5E_DEFAULT);
  bt_err_clear();
  if (!same) {
    close(s->fd);
    s->fd = -1;
  }
  return BT_OK;
}

static int h5_read(bt_source *pSrc, const int64_t *aIdx, int n, int32_t *aIn,
                   int32_t *aTgt, float *aX);

int bt_h5_open(bt_source **ppSrc, const bt_loader_config *pCfg) {
  *ppSrc = NULL;
  struct stat st;
  if (stat(pCfg->zPath, &st) != 0)
    return bt_err_set("%s: cannot open dataset file: %s", pCfg->zPath,
                      strerror(errno));
  if (!S_ISREG(st.st_mode))
    return bt_err_set("%s: not a regular file", pCfg->zPath);
  h5_src *s = bt_calloc(1, sizeof *s, "HDF5 source");
  if (!s) return BT_ERR;
  s->hFile = s->hDset = s->hDsetY = s->hSpace = s->hSpaceY = -1;
  s->fd = -1;
  snprintf(s->zPath, sizeof s->zPath, "%s", pCfg->zPath);
  s->bTokens = pCfg->eKind == BT_SAMPLE_TOKENS;
  s->T = pCfg->T;
  snprintf(s->zDset, sizeof s->zDset, "/%s/%s", pCfg->zSplit,
           s->bTokens ? "tokens" : "x");
  snprintf(s->zDsetY, sizeof s->zDsetY, "/%s/y", pCfg->zSplit);
  s->base.xRead = h5_read;
  s->base.xClose = h5_close;

  int rc = BT_OK;
  bt_h5_lock();
  h5_quiet();
  htri_t is = H5Fis_hdf5(s->zPath);
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    rc = bt_err_set("%s: not an HDF5 file, or the file is truncated or "
                    "corrupt (%lld bytes)",
                    s->zPath, (long long)st.st_size);
    goto out;
  }
  s->hFile = H5Fopen(s->zPath, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (s->hFile < 0) {
    rc = bt_h5_fail(s->zPath, "/",
                 "H5Fopen (the file may be truncated or corrupt)", __LINE__);
    goto out;
  }
  rc = bt_h5_check_version(s->hFile, s->zPath, 1);
  if (rc != BT_OK) goto out;
  rc = s->bTokens ? open_tokens(s, pCfg) : open_features(s, pCfg);
  if (rc == BT_OK && s->bTokens) rc = fast_path_open(s, st.st_size);
out:
  bt_h5_unlock();
  if (rc != BT_OK) {
    h5_close(&s->base);
    return BT_ERR;
  }
  *ppSrc = &s->base;
  return BT_OK;
}

/* ---- read ----------------------------------------------------------------- */

static int cmp_pair(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int grow(void **pp, size_t *pCap, size_t nNeed, size_t elem,
                const char *zWhat) {
  if (nNeed <= *pCap) return BT_OK;
  void *p = realloc(*pp, nNeed * elem);
  if (!p)
    return bt_err_set("out of memory: %zu bytes for %s", nNeed * elem, zWhat);
  *pp = p;
  *pCap = nNeed;
  return BT_OK;
}

/* Reads the hyperslab aStart/aCount of dataset hDset (file space hSpace)
 * as eMemType into nMem elements at pDst; zWhat names the read in the
 * error ("H5Dread of rows [i, j)"). Called with bt_h5_lock() held. */
static int read_slab(h5_src *s, hid_t hDset, hid_t hSpace, const char *zDset,
                     hid_t eMemType, hsize_t nMem, const hsize_t *aStart,
                     const hsize_t *aCount, void *pDst, const char *zWhat) {
  int rc = BT_OK;
  hid_t ms = H5Screate_simple(1, &nMem, NULL);
  H5_TRY(ms, zDset);
  H5_TRY(H5Sselect_hyperslab(hSpace, H5S_SELECT_SET, aStart, NULL, aCount,
                             NULL),
         zDset);
  if (H5Dread(hDset, eMemType, ms, hSpace, H5P_DEFAULT, pDst) < 0)
    rc = bt_h5_fail(s->zPath, zDset, zWhat, __LINE__);
out:
  if (ms >= 0) H5Sclose(ms);
  return rc;
}

/* Token windows [i0, i0+len) into pDst as uint32: pread on the fast path,
 * else one HDF5 read. */
static int read_tokens_run(h5_src *s, int64_t i0, int64_t len, void *pDst) {
  hsize_t w = (hsize_t)s->T + 1;
  hsize_t start = (hsize_t)i0 * w, count = (hsize_t)len * w;
  if ((int64_t)(start + count) > s->nElem)
    return bt_err_set("%s:%s: window %lld is past the end (%lld tokens)",
                      s->zPath, s->zDset, (long long)(i0 + len - 1),
                      (long long)s->nElem);
  int rc;
  if (s->fd >= 0) {
    size_t nRawCap = s->nRaw;
    rc = grow((void **)&s->aRaw, &nRawCap, (size_t)count * s->elemSize, 1,
              "raw token scratch");
    s->nRaw = nRawCap;
    if (rc == BT_OK)
      rc = fast_pread(s, (int64_t)start, (int64_t)count, s->aRaw);
    if (rc == BT_OK) raw_to_i64(s, s->aRaw, (size_t)count, pDst);
  } else {
    char z[160];
    snprintf(z, sizeof z, "H5Dread of tokens [%llu, %llu)",
             (unsigned long long)start, (unsigned long long)(start + count));
    rc = read_slab(s, s->hDset, s->hSpace, s->zDset, H5T_NATIVE_INT64, count,
                   &start, &count, pDst, z);
  }
  if (rc == BT_OK)
    __atomic_add_fetch(&s->base.nByteRead, (uint64_t)count * s->elemSize,
                       __ATOMIC_RELAXED);
  return rc;
}

/* Feature rows [i0, i0+len) into pDst (float) and their labels into pDstY
 * (int32). */
static int read_features_run(h5_src *s, int64_t i0, int64_t len, void *pDst,
                             void *pDstY) {
  hsize_t start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
  for (int i = 0; i < s->rankX; i++) count[i] = s->aDimX[i];
  start[0] = (hsize_t)i0;
  count[0] = (hsize_t)len;
  hsize_t nx = (hsize_t)len * (hsize_t)s->base.D;
  char z[160];
  snprintf(z, sizeof z, "H5Dread of rows [%lld, %lld)", (long long)i0,
           (long long)(i0 + len));
  if (read_slab(s, s->hDset, s->hSpace, s->zDset, H5T_NATIVE_FLOAT, nx, start,
                count, pDst, z) != BT_OK)
    return BT_ERR;
  hsize_t ys[2] = {(hsize_t)i0, 0}, yc[2] = {(hsize_t)len, 1};
  snprintf(z, sizeof z, "H5Dread of labels [%lld, %lld)", (long long)i0,
           (long long)(i0 + len));
  if (read_slab(s, s->hDsetY, s->hSpaceY, s->zDsetY, H5T_NATIVE_INT32,
                (hsize_t)len, ys, yc, pDstY, z) != BT_OK)
    return BT_ERR;
  __atomic_add_fetch(&s->base.nByteRead,
                     (uint64_t)nx * s->elemSize + (uint64_t)len * s->elemSizeY,
                     __ATOMIC_RELAXED);
  return BT_OK;
}

/* Scratch for n samples of width w: the read order and the run buffers. */
static int h5_scratch(h5_src *s, int n, size_t w) {
  size_t nOrdCap = s->nOrd, nTokCap = s->nTok, nXCap = s->nXTmp;
  if (grow((void **)&s->aOrd, &nOrdCap, 2 * (size_t)n, sizeof(int64_t),
           "read order") != BT_OK)
    return BT_ERR;
  s->nOrd = nOrdCap;
  if (s->bTokens) {
    if (grow((void **)&s->aTok, &nTokCap, (size_t)n * w, sizeof(int64_t),
             "token scratch") != BT_OK)
      return BT_ERR;
    s->nTok = nTokCap;
  } else {
    size_t nYCap = s->nYTmp;
    if (grow((void **)&s->aXTmp, &nXCap, (size_t)n * w, sizeof(float),
             "feature scratch") != BT_OK ||
        grow((void **)&s->aYTmp, &nYCap, (size_t)n, sizeof(int32_t),
             "label scratch") != BT_OK)
      return BT_ERR;
    s->nXTmp = nXCap;
    s->nYTmp = nYCap;
  }
  return BT_OK;
}

/* The sorted samples in s->aOrd, read run by run into the scratch. */
static int h5_read_runs(h5_src *s, int n, size_t w) {
  int rc = BT_OK;
  int bLock = s->fd < 0; /* the pread fast path makes no HDF5 call */
  if (bLock) {
    bt_h5_lock();
    h5_quiet();
  }
  for (int j = 0; j < n && rc == BT_OK;) {
    int k = j + 1;
    while (k < n && s->aOrd[2 * k] == s->aOrd[2 * (k - 1)] + 1) k++;
    int64_t i0 = s->aOrd[2 * j];
    if (i0 < 0 || s->aOrd[2 * (k - 1)] >= s->base.n) {
      rc = bt_err_set("%s:%s: sample %lld is out of range [0, %lld)", s->zPath,
                      s->zDset, (long long)s->aOrd[2 * (k - 1)],
                      (long long)s->base.n);
      break;
    }
    rc = s->bTokens
             ? read_tokens_run(s, i0, k - j, s->aTok + (size_t)j * w)
             : read_features_run(s, i0, k - j, s->aXTmp + (size_t)j * w,
                                 s->aYTmp + j);
    j = k;
  }
  if (bLock) bt_h5_unlock();
  return rc;
}

/* Window j of the scratch (sample idx) checked against the vocabulary and
 * split into inputs and targets at the caller's position o. */
static int scatter_tokens(const h5_src *s, int j, int64_t idx, size_t o,
                          int32_t *aIn, int32_t *aTgt) {
  const int T = s->T;
  const int64_t *src = s->aTok + (size_t)j * (size_t)(T + 1);
  for (int t = 0; t <= T; t++)
    if (src[t] < 0 || src[t] >= s->vocabLimit)
      return bt_h5_token_error(s->zPath, s->zDset, src[t],
                               idx * (int64_t)(T + 1) + t, s->vocabLimit);
  int32_t *in = aIn + o * (size_t)T, *tg = aTgt + o * (size_t)T;
  for (int t = 0; t < T; t++) {
    in[t] = (int32_t)src[t];
    tg[t] = (int32_t)src[t + 1];
  }
  return BT_OK;
}

/* Row j of the scratch (sample idx) checked (finite features, label in
 * [0, num_classes)) and copied to the caller's position o. */
static int scatter_features(const h5_src *s, int j, int64_t idx, size_t o,
                            int32_t *aTgt, float *aX) {
  const size_t w = (size_t)s->base.D;
  const float *src = s->aXTmp + (size_t)j * w;
  for (size_t d = 0; d < w; d++)
    if (!isfinite(src[d]))
      return bt_h5_feature_error(s->zPath, s->zDset, src[d], idx,
                                 (int64_t)d, (int64_t)w);
  int32_t y = s->aYTmp[j];
  if (y < 0 || y >= s->nClassLimit)
    return bt_h5_label_error(s->zPath, s->zDsetY, y, idx, s->nClassLimit);
  memcpy(aX + o * w, src, w * sizeof(float));
  aTgt[o] = y;
  return BT_OK;
}

static int h5_read(bt_source *pSrc, const int64_t *aIdx, int n, int32_t *aIn,
                   int32_t *aTgt, float *aX) {
  h5_src *s = (h5_src *)pSrc;
  size_t w = s->bTokens ? (size_t)s->T + 1 : (size_t)s->base.D;
  if (h5_scratch(s, n, w) != BT_OK) return BT_ERR;
  for (int i = 0; i < n; i++) {
    s->aOrd[2 * i] = aIdx[i];
    s->aOrd[2 * i + 1] = i;
  }
  qsort(s->aOrd, (size_t)n, 2 * sizeof(int64_t), cmp_pair);
  if (h5_read_runs(s, n, w) != BT_OK) return BT_ERR;

  /* Validate and scatter into the caller's order. */
  for (int j = 0; j < n; j++) {
    int64_t idx = s->aOrd[2 * j];
    size_t o = (size_t)s->aOrd[2 * j + 1];
    int rc = s->bTokens ? scatter_tokens(s, j, idx, o, aIn, aTgt)
                        : scatter_features(s, j, idx, o, aTgt, aX);
    if (rc != BT_OK) return rc;
  }
  return BT_OK;
}
