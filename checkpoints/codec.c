/*
 * codec.c: payload encoding of checkpoints: byte-shuffle + zstd.
 *
 * Why shuffle: a float32 is sign+exponent in its high byte and noisy
 * mantissa bits below. Trained weights share a few exponents, so grouping
 * all byte-3s together (then byte-2s ...) gives zstd long runs of similar
 * bytes, while the low mantissa bytes stay incompressible whatever we do.
 * This is the HDF5/Blosc "shuffle" filter for 4-byte elements.
 *
 * Why bounded decompression: a payload file is untrusted input. Its zstd
 * frame header declares the content size; we require it to be present and
 * equal to the raw size the manifest computed from the element range, and
 * we decode into a buffer of exactly that size, so a hostile frame cannot
 * make us allocate or write more than the manifest already bounds.
 *
 * Also here: small name and directory helpers shared by writer and reader.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "base/util.h"
#include "checkpoints/ckpt_impl.h"

/* ---- shuffle ------------------------------------------------------------ */

void bt_ckpt_shuffle4(const void *pSrc, void *pDst, size_t nByte) {
  const uint8_t *s = pSrc;
  uint8_t *d = pDst;
  size_t n = nByte / 4;
  uint8_t *d0 = d, *d1 = d + n, *d2 = d + 2 * n, *d3 = d + 3 * n;
  for (size_t i = 0; i < n; i++) {
    d0[i] = s[4 * i];
    d1[i] = s[4 * i + 1];
    d2[i] = s[4 * i + 2];
    d3[i] = s[4 * i + 3];
  }
  /* A tail that is not a whole element is copied as is (not used for F32
   * payloads, whose size is always a multiple of 4). */
  memcpy(d + 4 * n, s + 4 * n, nByte - 4 * n);
}

void bt_ckpt_unshuffle4(const void *pSrc, void *pDst, size_t nByte) {
  const uint8_t *s = pSrc;
  uint8_t *d = pDst;
  size_t n = nByte / 4;
  const uint8_t *s0 = s, *s1 = s + n, *s2 = s + 2 * n, *s3 = s + 3 * n;
  for (size_t i = 0; i < n; i++) {
    d[4 * i] = s0[i];
    d[4 * i + 1] = s1[i];
    d[4 * i + 2] = s2[i];
    d[4 * i + 3] = s3[i];
  }
  memcpy(d + 4 * n, s + 4 * n, nByte - 4 * n);
}

/* ---- zstd --------------------------------------------------------------- */

size_t bt_ckpt_compress_bound(size_t nByte) { return ZSTD_compressBound(nByte); }

int bt_ckpt_compress(void *pCctx, const void *pSrc, size_t nSrc, int level,
                     void *pDst, size_t nDstCap, size_t *pnOut) {
  ZSTD_CCtx *cctx = pCctx ? (ZSTD_CCtx *)pCctx : ZSTD_createCCtx();
  if (!cctx) return bt_err_set("zstd: cannot create a compression context");
  if (level < 1) level = 3;
  if (level > ZSTD_maxCLevel()) level = ZSTD_maxCLevel();
  /* ZSTD_compressCCtx writes the content size into the frame header, which
   * the reader requires. */
  size_t r = ZSTD_compressCCtx(cctx, pDst, nDstCap, pSrc, nSrc, level);
  if (!pCctx) ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(r))
    return bt_err_set("zstd compression of %zu bytes failed: %s", nSrc,
                      ZSTD_getErrorName(r));
  *pnOut = r;
  return BT_OK;
}

int bt_ckpt_decompress(void *pDctx, const void *pSrc, size_t nSrc,
                       void *pDst, size_t nRaw, const char *zWhat) {
  unsigned long long declared = ZSTD_getFrameContentSize(pSrc, nSrc);
  if (declared == ZSTD_CONTENTSIZE_ERROR)
    return bt_err_set("'%s': not a zstd frame", zWhat);
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN)
    return bt_err_set("'%s': zstd frame does not declare its size", zWhat);
  if (declared != (unsigned long long)nRaw)
    return bt_err_set("'%s': zstd frame declares %llu bytes, manifest says "
                      "%zu",
                      zWhat, declared, nRaw);
  size_t frame = ZSTD_findFrameCompressedSize(pSrc, nSrc);
  if (ZSTD_isError(frame))
    return bt_err_set("'%s': damaged zstd frame: %s", zWhat,
                      ZSTD_getErrorName(frame));
  if (frame != nSrc)
    return bt_err_set("'%s': %zu trailing bytes after the zstd frame", zWhat,
                      nSrc - frame);
  ZSTD_DCtx *dctx = pDctx ? (ZSTD_DCtx *)pDctx : ZSTD_createDCtx();
  if (!dctx) return bt_err_set("zstd: cannot create a decompression context");
  size_t r = ZSTD_decompressDCtx(dctx, pDst, nRaw, pSrc, nSrc);
  if (!pDctx) ZSTD_freeDCtx(dctx);
  if (ZSTD_isError(r))
    return bt_err_set("'%s': zstd decompression failed: %s", zWhat,
                      ZSTD_getErrorName(r));
  if (r != nRaw)
    return bt_err_set("'%s': decoded %zu bytes, expected %zu", zWhat, r, nRaw);
  return BT_OK;
}

/* ---- names -------------------------------------------------------------- */

static int name_chars_ok(const char *z, size_t nMax, int allowPlus) {
  size_t n = 0;
  if (!z || !z[0] || z[0] == '.') return 0;
  for (; z[n]; n++) {
    char c = z[n];
    if (n >= nMax) return 0;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')
      continue;
    if (allowPlus && c == '+') continue;
    return 0;
  }
  return 1;
}

int bt_ckpt_name_ok(const char *z) {
  return name_chars_ok(z, BT_CKPT_MAX_NAME, 0);
}

int bt_ckpt_filename_ok(const char *z) {
  /* '/' is not in the allowed set and a leading '.' is refused, so neither
   * "..", "../x" nor an absolute path can get through. */
  if (!name_chars_ok(z, BT_CKPT_MAX_FILENAME, 1)) return 0;
  if (strcmp(z, BT_CKPT_MANIFEST) == 0 || strcmp(z, BT_CKPT_LATEST) == 0)
    return 0;
  return 1;
}

size_t bt_ckpt_dtype_size(bt_ckpt_dtype e) {
  switch (e) {
  case BT_CKPT_F32: return 4;
  case BT_CKPT_BYTES: return 1;
  }
  return 0;
}

const char *bt_ckpt_dtype_name(bt_ckpt_dtype e) {
  switch (e) {
  case BT_CKPT_F32: return "f32";
  case BT_CKPT_BYTES: return "bytes";
  }
  return "?";
}

int bt_ckpt_parse_dirname(const char *zName, long *pStep) {
  size_t nPre = strlen(BT_CKPT_DIR_PREFIX);
  if (strncmp(zName, BT_CKPT_DIR_PREFIX, nPre) != 0) return 0;
  const char *z = zName + nPre;
  if (!*z) return 0;
  long v = 0;
  for (; *z; z++) {
    if (*z < '0' || *z > '9') return 0;
    if (v > (long)((BT_CKPT_MAX_COUNT - 9) / 10)) return 0;
    v = v * 10 + (*z - '0');
  }
  *pStep = v;
  return 1;
}

static int rm_one(const char *zPath, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)ftw;
  int rc = (flag == FTW_DP) ? rmdir(zPath) : unlink(zPath);
  if (rc != 0 && errno != ENOENT) {
    bt_err_set("cannot remove '%s': %s (errno %d)", zPath, strerror(errno),
               errno);
    return -1;
  }
  return 0;
}

int bt_ckpt_rmtree(const char *zPath) {
  struct stat st;
  if (lstat(zPath, &st) != 0) {
    if (errno == ENOENT) return BT_OK;
    return bt_err_set("cannot stat '%s': %s (errno %d)", zPath,
                      strerror(errno), errno);
  }
  if (nftw(zPath, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) return BT_ERR;
  return BT_OK;
}
