/*
 * safetensors.c: see safetensors.h for the format and the invariants the
 * reader enforces. The reader is fuzzed (tests/export/fuzz_safetensors.c):
 * nothing here may read outside pBuf[0, nBuf) whatever the bytes are.
 */
#include "base/util.h"
#include "checkpoints/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- dtypes and conversions ------------------------------------------- */

static const char *const azDtype[] = {"F32", "F16", "BF16"};

const char *bt_st_dtype_name(bt_st_dtype e) {
  return (unsigned)e < 3 ? azDtype[e] : "?";
}

size_t bt_st_dtype_size(bt_st_dtype e) { return e == BT_ST_F32 ? 4 : 2; }

int bt_st_dtype_parse(const char *z, bt_st_dtype *pe) {
  if (!strcasecmp(z, "fp32") || !strcasecmp(z, "f32") ||
      !strcasecmp(z, "float32"))
    *pe = BT_ST_F32;
  else if (!strcasecmp(z, "fp16") || !strcasecmp(z, "f16") ||
           !strcasecmp(z, "float16"))
    *pe = BT_ST_F16;
  else if (!strcasecmp(z, "bf16") || !strcasecmp(z, "bfloat16"))
    *pe = BT_ST_BF16;
  else
    return bt_err_set("unknown dtype '%s': expected fp32, bf16 or fp16", z);
  return BT_OK;
}

static uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* bt_f32_to_bf16 / bt_bf16_to_f32: base/bf16.h, the one definition the
 * CPU backend's bf16 mode shares. */

uint16_t bt_f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
  if (a < 0x38800000u) {
    /* subnormal half (or zero): value = m * 2^-24 */
    if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
    uint32_t e = a >> 23;             /* biased exponent, 102..112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  /* normal: rebias exponent 127 -> 15, round the 13 dropped bits */
  uint32_t r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

float bt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float v = (float)m * 5.9604644775390625e-8f; /* 2^-24 */
    return sign ? -v : v;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* ---- writing ---------------------------------------------------------- */

static void put_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* The JSON header: __metadata__, then each tensor's dtype, shape and
 * data_offsets in order; *pnData receives the data section's size.
 * Returns the printed header (the caller frees it), NULL with the error
 * set. */
static char *st_header_json(const char *zPath, const bt_st_wtensor *aT, int nT,
                            bt_st_dtype eType, const char *const *azMeta,
                            int nMeta, uint64_t *pnData) {
  size_t es = bt_st_dtype_size(eType);
  cJSON *pHdr = cJSON_CreateObject();
  if (!pHdr) {
    bt_err_set("%s: out of memory building the header", zPath);
    return NULL;
  }
  if (nMeta > 0) {
    cJSON *pM = cJSON_AddObjectToObject(pHdr, "__metadata__");
    for (int i = 0; pM && i < nMeta; i++)
      cJSON_AddStringToObject(pM, azMeta[2 * i], azMeta[2 * i + 1]);
  }
  uint64_t off = 0;
  for (int i = 0; i < nT; i++) {
    uint64_t n = 1;
    cJSON *pT = cJSON_AddObjectToObject(pHdr, aT[i].zName);
    if (!pT) {
      cJSON_Delete(pHdr);
      bt_err_set("%s: out of memory building the header", zPath);
      return NULL;
    }
    cJSON_AddStringToObject(pT, "dtype", bt_st_dtype_name(eType));
    cJSON *pS = cJSON_AddArrayToObject(pT, "shape");
    for (int d = 0; d < aT[i].ndim; d++) {
      n *= (uint64_t)aT[i].shape[d];
      cJSON_AddItemToArray(pS, cJSON_CreateNumber((double)aT[i].shape[d]));
    }
    cJSON *pO = cJSON_AddArrayToObject(pT, "data_offsets");
    cJSON_AddItemToArray(pO, cJSON_CreateNumber((double)off));
    off += n * es;
    cJSON_AddItemToArray(pO, cJSON_CreateNumber((double)off));
  }
  char *zHdr = cJSON_PrintUnformatted(pHdr);
  cJSON_Delete(pHdr);
  if (!zHdr) bt_err_set("%s: out of memory printing the header", zPath);
  *pnData = off;
  return zHdr;
}

enum { ST_BUF = 1 << 20 };

/* The data section: every tensor converted to eType, little-endian,
 * through pBuf (ST_BUF bytes). Returns the first write error; *pnWritten
 * counts the bytes written. */
static int st_write_data(int fd, const char *zTmp, const bt_st_wtensor *aT,
                         int nT, bt_st_dtype eType, unsigned char *pBuf,
                         uint64_t *pnWritten) {
  int rc = BT_OK;
  for (int i = 0; rc == BT_OK && i < nT; i++) {
    size_t n = 1;
    for (int d = 0; d < aT[i].ndim; d++) n *= (size_t)aT[i].shape[d];
    const float *x = aT[i].pData;
    size_t j = 0;
    while (rc == BT_OK && j < n) {
      unsigned char *p = pBuf;
      size_t k = 0;
      for (; j < n && k + 4 <= ST_BUF; j++) {
        uint32_t v;
        if (eType == BT_ST_F32) {
          v = f32_bits(x[j]);
          for (int b = 0; b < 4; b++) p[k++] = (unsigned char)(v >> (8 * b));
        } else {
          v = eType == BT_ST_BF16 ? bt_f32_to_bf16(x[j]) : bt_f32_to_f16(x[j]);
          p[k++] = (unsigned char)v;
          p[k++] = (unsigned char)(v >> 8);
        }
      }
      rc = bt_file_write_full(fd, pBuf, k, zTmp);
      *pnWritten += k;
    }
  }
  return rc;
}

/* fsync, close and rename zTmp over zPath, then fsync the directory; on
 * an earlier error (rc) or a failure here the temporary file is removed. */
static int st_commit(int fd, int rc, const char *zTmp, const char *zPath) {
  if (rc == BT_OK && fsync(fd) != 0)
    rc = bt_err_set("fsync of '%s' failed: %s", zTmp, strerror(errno));
  if (close(fd) != 0 && rc == BT_OK)
    rc = bt_err_set("closing '%s' failed: %s", zTmp, strerror(errno));
  if (rc == BT_OK && rename(zTmp, zPath) != 0)
    rc = bt_err_set("cannot rename '%s' to '%s': %s", zTmp, zPath,
                    strerror(errno));
  if (rc != BT_OK) {
    unlink(zTmp);
    return rc;
  }
  char zDir[4096];
  snprintf(zDir, sizeof zDir, "%s", zPath);
  return bt_fsync_dir(dirname(zDir));
}

int bt_st_write(const char *zPath, const bt_st_wtensor *aT, int nT,
                bt_st_dtype eType, const char *const *azMeta, int nMeta) {
  uint64_t nData = 0;
  char *zHdr = st_header_json(zPath, aT, nT, eType, azMeta, nMeta, &nData);
  if (!zHdr) return BT_ERR;
  size_t nHdr = strlen(zHdr);
  size_t nPad = (8 - (8 + nHdr) % 8) % 8; /* data section 8-byte aligned */
  /* Streamed through a 1 MiB buffer into a temporary file, so exporting a
   * large model needs no second copy of it in memory; fsync + rename make
   * the file appear complete or not at all. */
  unsigned char *pBuf = bt_malloc(ST_BUF, "safetensors write buffer");
  char zTmp[4096];
  snprintf(zTmp, sizeof zTmp, "%s.tmp.%d", zPath, (int)getpid());
  int fd = pBuf ? open(zTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                : -1;
  if (fd < 0) {
    int e = errno;
    free(zHdr);
    free(pBuf);
    return pBuf ? bt_err_set("cannot create '%s': %s", zTmp, strerror(e))
                : bt_err_prefix("%s: ", zPath);
  }
  unsigned char aLen[8];
  put_u64le(aLen, (uint64_t)(nHdr + nPad));
  int rc = bt_file_write_full(fd, aLen, 8, zTmp);
  if (rc == BT_OK) rc = bt_file_write_full(fd, zHdr, nHdr, zTmp);
  if (rc == BT_OK) rc = bt_file_write_full(fd, "       ", nPad, zTmp);
  free(zHdr);
  uint64_t nWritten = 0;
  if (rc == BT_OK)
    rc = st_write_data(fd, zTmp, aT, nT, eType, pBuf, &nWritten);
  free(pBuf);
  BT_ASSERT(rc != BT_OK || nWritten == nData);
  return st_commit(fd, rc, zTmp, zPath);
}

/* ---- reading ---------------------------------------------------------- */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Also rejects NUL, which would cut names short. Returns the
 * offset of the first bad byte, or n if all are good. */
static size_t utf8_check(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c == 0) return i;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else
      return i;
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
    i += len;
  }
  return n;
}

/* A JSON number that is an exact non-negative integer <= 2^53. */
static int json_u64(const cJSON *p, uint64_t *pv) {
  if (!cJSON_IsNumber(p)) return 0;
  double d = p->valuedouble;
  if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
  *pv = (uint64_t)d;
  return 1;
}

void bt_st_close(bt_st_file *f) {
  if (f->ownsBuf) free(f->pBuf);
  free(f->zPath);
  free(f->aTensor);
  for (int i = 0; i < 2 * f->nMeta; i++) free(f->azMeta[i]);
  free(f->azMeta);
  memset(f, 0, sizeof *f);
}

static int cmp_begin(const void *a, const void *b) {
  const bt_st_tensor *x = *(const bt_st_tensor *const *)a;
  const bt_st_tensor *y = *(const bt_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
  const bt_st_tensor *x = *(const bt_st_tensor *const *)a;
  const bt_st_tensor *y = *(const bt_st_tensor *const *)b;
  return strcmp(x->zName, y->zName);
}

static int parse_meta(bt_st_file *f, const cJSON *pM) {
  const char *zF = f->zPath;
  if (!cJSON_IsObject(pM))
    return bt_err_set("%s: __metadata__ is not a JSON object", zF);
  int n = cJSON_GetArraySize(pM);
  f->azMeta = bt_calloc((size_t)n * 2 + 1, sizeof(char *), "metadata");
  if (!f->azMeta) return BT_ERR;
  const cJSON *e;
  cJSON_ArrayForEach(e, pM) {
    if (!cJSON_IsString(e))
      return bt_err_set("%s: __metadata__ value of '%s' is not a string", zF,
                        e->string);
    f->azMeta[2 * f->nMeta] = strdup(e->string);
    f->azMeta[2 * f->nMeta + 1] = strdup(e->valuestring);
    f->nMeta++;
    if (!f->azMeta[2 * f->nMeta - 2] || !f->azMeta[2 * f->nMeta - 1])
      return bt_err_set("%s: out of memory", zF);
  }
  return BT_OK;
}

static int parse_tensor(bt_st_file *f, const cJSON *e, bt_st_tensor *t) {
  const char *zF = f->zPath, *zN = e->string;
  if (strlen(zN) > BT_ST_NAME_MAX)
    return bt_err_set("%s: tensor name of %zu bytes is longer than %d", zF,
                      strlen(zN), BT_ST_NAME_MAX);
  if (!zN[0]) return bt_err_set("%s: a tensor has an empty name", zF);
  memcpy(t->zName, zN, strlen(zN) + 1);
  if (!cJSON_IsObject(e))
    return bt_err_set("%s: tensor '%s': entry is not a JSON object", zF, zN);
  const cJSON *pD = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *pS = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *pO = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(pD))
    return bt_err_set("%s: tensor '%s': missing or non-string dtype", zF, zN);
  if (!strcmp(pD->valuestring, "F32")) t->eType = BT_ST_F32;
  else if (!strcmp(pD->valuestring, "F16")) t->eType = BT_ST_F16;
  else if (!strcmp(pD->valuestring, "BF16")) t->eType = BT_ST_BF16;
  else
    return bt_err_set("%s: tensor '%s': unsupported dtype '%.32s' (baton "
                      "reads F32, F16 and BF16)",
                      zF, zN, pD->valuestring);
  if (!cJSON_IsArray(pS))
    return bt_err_set("%s: tensor '%s': missing or non-array shape", zF, zN);
  int nd = cJSON_GetArraySize(pS);
  if (nd > BT_ST_MAX_DIM)
    return bt_err_set("%s: tensor '%s': %d dimensions (at most %d)", zF, zN,
                      nd, BT_ST_MAX_DIM);
  t->ndim = nd;
  uint64_t numel = 1;
  int d = 0;
  const cJSON *x;
  cJSON_ArrayForEach(x, pS) {
    uint64_t v;
    if (!json_u64(x, &v))
      return bt_err_set("%s: tensor '%s': shape[%d] is not a non-negative "
                        "integer",
                        zF, zN, d);
    t->shape[d++] = (int64_t)v;
    if (__builtin_mul_overflow(numel, v, &numel))
      return bt_err_set("%s: tensor '%s': shape product overflows", zF, zN);
  }
  if (!cJSON_IsArray(pO) || cJSON_GetArraySize(pO) != 2 ||
      !json_u64(cJSON_GetArrayItem(pO, 0), &t->begin) ||
      !json_u64(cJSON_GetArrayItem(pO, 1), &t->end))
    return bt_err_set("%s: tensor '%s': data_offsets must be two "
                      "non-negative integers [begin, end]",
                      zF, zN);
  if (t->end < t->begin)
    return bt_err_set("%s: tensor '%s': data_offsets end %llu is before "
                      "begin %llu",
                      zF, zN, (unsigned long long)t->end,
                      (unsigned long long)t->begin);
  uint64_t nByte;
  if (__builtin_mul_overflow(numel, (uint64_t)bt_st_dtype_size(t->eType),
                             &nByte))
    return bt_err_set("%s: tensor '%s': byte size overflows", zF, zN);
  if (nByte != t->end - t->begin)
    return bt_err_set("%s: tensor '%s': shape and dtype need %llu bytes but "
                      "data_offsets span %llu",
                      zF, zN, (unsigned long long)nByte,
                      (unsigned long long)(t->end - t->begin));
  return BT_OK;
}

/* The 8-byte length and the header bytes it announces: in the file,
 * under the limit, valid UTF-8. Sets *pnHdr. */
static int st_check_header(const char *zF, const unsigned char *pBuf,
                           size_t nBuf, uint64_t *pnHdr) {
  if (nBuf < 8)
    return bt_err_set("%s: file of %zu bytes is too short for a safetensors "
                      "header length (8 bytes)",
                      zF, nBuf);
  uint64_t nHdr = 0;
  for (int i = 0; i < 8; i++) nHdr |= (uint64_t)pBuf[i] << (8 * i);
  if (nHdr > nBuf - 8)
    return bt_err_set("%s: header length %llu runs beyond the end of the "
                      "file (%zu bytes; truncated or not a safetensors file)",
                      zF, (unsigned long long)nHdr, nBuf);
  if (nHdr > BT_ST_HEADER_MAX)
    return bt_err_set("%s: header length %llu exceeds the limit of %u bytes",
                      zF, (unsigned long long)nHdr, BT_ST_HEADER_MAX);
  if (nHdr < 2) return bt_err_set("%s: header of %llu bytes cannot hold a "
                                  "JSON object", zF, (unsigned long long)nHdr);
  const unsigned char *h = pBuf + 8;
  size_t bad = utf8_check(h, (size_t)nHdr);
  if (bad != nHdr)
    return bt_err_set("%s: header is not valid UTF-8 (byte 0x%02x at header "
                      "offset %zu)",
                      zF, h[bad], bad);
  *pnHdr = nHdr;
  return BT_OK;
}

/* The root object's members: __metadata__ at most once, tensors into
 * f->aTensor with ap[i] pointing at each. */
static int st_parse_entries(bt_st_file *f, const cJSON *pRoot,
                            bt_st_tensor **ap) {
  const cJSON *e;
  int seenMeta = 0;
  cJSON_ArrayForEach(e, pRoot) {
    if (!strcmp(e->string, "__metadata__")) {
      if (seenMeta++) return bt_err_set("%s: duplicate __metadata__", f->zPath);
      if (parse_meta(f, e) != BT_OK) return BT_ERR;
      continue;
    }
    bt_st_tensor *t = &f->aTensor[f->nTensor];
    if (parse_tensor(f, e, t) != BT_OK) return BT_ERR;
    ap[f->nTensor++] = t;
  }
  return BT_OK;
}

/* Unique names, and tensors that tile the data section exactly (no
 * overlap, no hole, nothing past its end or after the last tensor). */
static int st_check_layout(const bt_st_file *f, bt_st_tensor **ap) {
  const char *zF = f->zPath;
  qsort(ap, (size_t)f->nTensor, sizeof *ap, cmp_name);
  for (int i = 1; i < f->nTensor; i++)
    if (!strcmp(ap[i - 1]->zName, ap[i]->zName))
      return bt_err_set("%s: tensor '%s' appears twice in the header", zF,
                        ap[i]->zName);
  uint64_t nData = (uint64_t)(f->nBuf - f->dataStart);
  qsort(ap, (size_t)f->nTensor, sizeof *ap, cmp_begin);
  uint64_t pos = 0;
  for (int i = 0; i < f->nTensor; i++) {
    const bt_st_tensor *t = ap[i];
    if (t->end > nData)
      return bt_err_set("%s: tensor '%s': data_offsets [%llu, %llu) lie "
                        "beyond the data section (%llu bytes; file "
                        "truncated?)",
                        zF, t->zName, (unsigned long long)t->begin,
                        (unsigned long long)t->end, (unsigned long long)nData);
    if (t->begin < pos)
      return bt_err_set("%s: tensor '%s': data_offsets [%llu, %llu) overlap "
                        "tensor '%s' (which ends at %llu)",
                        zF, t->zName, (unsigned long long)t->begin,
                        (unsigned long long)t->end, ap[i - 1]->zName,
                        (unsigned long long)pos);
    if (t->begin > pos)
      return bt_err_set("%s: tensor '%s': data_offsets begin at %llu, leaving "
                        "a hole after byte %llu of the data section",
                        zF, t->zName, (unsigned long long)t->begin,
                        (unsigned long long)pos);
    pos = t->end;
  }
  if (pos != nData)
    return bt_err_set("%s: tensors cover %llu bytes but the data section has "
                      "%llu (trailing bytes)",
                      zF, (unsigned long long)pos, (unsigned long long)nData);
  return BT_OK;
}

/* The parsed header's checks and index, once the JSON is read. */
static int st_parse_root(bt_st_file *f, const cJSON *pRoot, const char *zEnd,
                         uint64_t nHdr) {
  const char *zF = f->zPath, *h = (const char *)f->pBuf + 8;
  /* Only spaces (the writer's padding) may follow the JSON value. */
  for (const char *q = zEnd; q && q < h + nHdr; q++)
    if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
      return bt_err_set("%s: trailing bytes after the JSON header at offset "
                        "%zu",
                        zF, (size_t)(q - h));
  if (!cJSON_IsObject(pRoot))
    return bt_err_set("%s: header is JSON but not an object", zF);
  int n = cJSON_GetArraySize(pRoot);
  f->aTensor = bt_calloc((size_t)n + 1, sizeof(bt_st_tensor), "tensor index");
  bt_st_tensor **ap = bt_calloc((size_t)n + 1, sizeof(*ap), "tensor index");
  int rc = f->aTensor && ap ? BT_OK : BT_ERR;
  if (rc == BT_OK) rc = st_parse_entries(f, pRoot, ap);
  if (rc == BT_OK) rc = st_check_layout(f, ap);
  free(ap);
  return rc;
}

int bt_st_parse(bt_st_file *f, const unsigned char *pBuf, size_t nBuf,
                const char *zPath) {
  memset(f, 0, sizeof *f);
  f->zPath = strdup(zPath ? zPath : "(memory)");
  if (!f->zPath) return bt_err_set("out of memory");
  f->pBuf = (unsigned char *)pBuf;
  f->nBuf = nBuf;
  const char *zF = f->zPath;
  uint64_t nHdr = 0;
  if (st_check_header(zF, pBuf, nBuf, &nHdr) != BT_OK) return BT_ERR;
  const unsigned char *h = pBuf + 8;
  f->dataStart = 8 + (size_t)nHdr;
  const char *zEnd = NULL;
  cJSON *pRoot = cJSON_ParseWithLengthOpts((const char *)h, (size_t)nHdr,
                                           &zEnd, 0);
  if (!pRoot) {
    size_t at = zEnd ? (size_t)(zEnd - (const char *)h) : 0;
    return bt_err_set("%s: header is not valid JSON (error near header "
                      "offset %zu of %llu)",
                      zF, at, (unsigned long long)nHdr);
  }
  int rc = st_parse_root(f, pRoot, zEnd, nHdr);
  cJSON_Delete(pRoot);
  return rc;
}

int bt_st_open(bt_st_file *f, const char *zPath) {
  memset(f, 0, sizeof *f);
  size_t n = 0;
  char *p = bt_file_read_all(zPath, &n);
  if (!p) return bt_err_prefix("reading safetensors: ");
  if (bt_st_parse(f, (const unsigned char *)p, n, zPath) != BT_OK) {
    f->pBuf = (unsigned char *)p;
    f->ownsBuf = 1;
    return BT_ERR;
  }
  f->ownsBuf = 1;
  return BT_OK;
}

const bt_st_tensor *bt_st_find(const bt_st_file *f, const char *zName) {
  for (int i = 0; i < f->nTensor; i++)
    if (!strcmp(f->aTensor[i].zName, zName)) return &f->aTensor[i];
  return NULL;
}

const char *bt_st_meta(const bt_st_file *f, const char *zKey) {
  for (int i = 0; i < f->nMeta; i++)
    if (!strcmp(f->azMeta[2 * i], zKey)) return f->azMeta[2 * i + 1];
  return NULL;
}

static void shape_text(char *z, size_t n, int nd, const int64_t *a) {
  size_t k = 0;
  k += (size_t)snprintf(z + k, n - k, "[");
  for (int i = 0; i < nd && k < n; i++)
    k += (size_t)snprintf(z + k, n - k, "%s%lld", i ? ", " : "",
                          (long long)a[i]);
  if (k < n) snprintf(z + k, n - k, "]");
}

int bt_st_read_f32(const bt_st_file *f, const char *zName, int ndim,
                   const int64_t *aShape, float *dst) {
  const bt_st_tensor *t = bt_st_find(f, zName);
  if (!t)
    return bt_err_set("%s: tensor '%s' is missing", f->zPath, zName);
  int same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == aShape[i];
  if (!same) {
    char za[128], zb[128];
    shape_text(za, sizeof za, ndim, aShape);
    shape_text(zb, sizeof zb, t->ndim, t->shape);
    return bt_err_set("%s: tensor '%s' has shape %s, expected %s", f->zPath,
                      zName, zb, za);
  }
  const unsigned char *p = f->pBuf + f->dataStart + t->begin;
  size_t n = (size_t)(t->end - t->begin) / bt_st_dtype_size(t->eType);
  for (size_t i = 0; i < n; i++) {
    if (t->eType == BT_ST_F32) {
      uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                   (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
      dst[i] = bits_f32(u);
    } else {
      uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
      dst[i] = t->eType == BT_ST_BF16 ? bt_bf16_to_f32(h) : bt_f16_to_f32(h);
    }
  }
  return BT_OK;
}
