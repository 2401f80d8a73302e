/*
 * reader.c: the verifying checkpoint reader (ckpt.h "reading").
 *
 * Everything in a checkpoint directory is untrusted input: it may be
 * truncated by a crash of an older baton, damaged by a disk, or crafted.
 * The reader keeps these invariants before it touches memory:
 *
 *   R1. manifest.json is at most BT_CKPT_MAX_MANIFEST bytes and valid JSON;
 *       every field has the expected type; format and format_version are
 *       known; counts are integers in [0, 2^53].
 *   R2. Item names and payload file names are plain names from a small
 *       character set (no '/', no leading '.'), so a manifest cannot name
 *       a file outside its directory; file names are unique.
 *   R3. For every file: lo < hi <= total of its item, raw_bytes ==
 *       (hi - lo) * element size <= BT_CKPT_MAX_FILE_RAW, and 1 <=
 *       stored_bytes <= ZSTD_compressBound(raw_bytes). The files of one
 *       item tile [0, total) exactly: no gap, no overlap.
 *   R4. Before a payload is decoded, the real file size equals
 *       stored_bytes and the XXH64 of the stored bytes equals the manifest's;
 *       the zstd frame declares exactly raw_bytes; after decoding, the raw
 *       XXH64 (when present) matches too. Reading a range checks every file
 *       it touches, every time.
 *   R5. Nothing that decides where training resumes is outside a checksum
 *       or unchecked: a version-2 manifest's own XXH64 (manifest_xxh64)
 *       covers every byte of it; its step equals meta.step (when the meta
 *       has one) and the number in a ckpt-<N> directory name. Version 1
 *       (no manifest checksum) is still read, with the cross-checks.
 *
 * The reader never writes into a checkpoint directory. Opening, reading
 * and closing leave nothing behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <xxhash.h>
#include <zstd.h>

#include "base/cli.h"
#include "base/util.h"
#include "checkpoints/ckpt_impl.h"

struct bt_ckpt {
  char *zDir;
  bt_ckpt_manifest m;
  void *pDctx;      /* ZSTD_DCtx, reused */
  uint8_t *pStored; /* scratch for one stored file */
  size_t nStoredCap;
  uint8_t *pRaw;    /* scratch for one decoded file */
  size_t nRawCap;
  uint8_t *pRaw2;   /* scratch for unshuffling a partly used file */
  size_t nRaw2Cap;
};

/* ---- manifest parsing -------------------------------------------------- */

/* Manifest errors name the field: "manifest: files[3].hi: ..." */
static int json_uint(const cJSON *pObj, const char *zKey, uint64_t nMax,
                     const char *zCtx, uint64_t *pOut) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(pObj, zKey);
  if (!p) return bt_err_set("manifest: %s%s missing", zCtx, zKey);
  if (!cJSON_IsNumber(p))
    return bt_err_set("manifest: %s%s is not a number", zCtx, zKey);
  double d = p->valuedouble;
  if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)nMax)
    return bt_err_set("manifest: %s%s = %g is not an integer in [0, %llu]",
                      zCtx, zKey, d, (unsigned long long)nMax);
  *pOut = (uint64_t)d;
  return BT_OK;
}

static const char *json_str(const cJSON *pObj, const char *zKey,
                            const char *zCtx) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(pObj, zKey);
  if (!p) {
    bt_err_set("manifest: %s%s missing", zCtx, zKey);
    return NULL;
  }
  if (!cJSON_IsString(p) || !p->valuestring) {
    bt_err_set("manifest: %s%s is not a string", zCtx, zKey);
    return NULL;
  }
  return p->valuestring;
}

static int parse_hex64(const char *z, uint64_t *pOut) {
  uint64_t v = 0;
  int n = 0;
  for (; z[n]; n++) {
    char c = z[n];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return 0;
    if (n >= 16) return 0;
    v = (v << 4) | (uint64_t)d;
  }
  if (n != 16) return 0;
  *pOut = v;
  return 1;
}

static char *dup_str(const char *z) {
  size_t n = strlen(z);
  char *p = bt_malloc(n + 1, "checkpoint manifest string");
  if (p) memcpy(p, z, n + 1);
  return p;
}

void bt_ckpt_manifest_clear(bt_ckpt_manifest *pM) {
  for (int i = 0; i < pM->nItem; i++) {
    free(pM->aItem[i].zName);
    free(pM->aItem[i].aiFile);
  }
  for (int i = 0; i < pM->nFile; i++) free(pM->aFile[i].zFile);
  free(pM->aItem);
  free(pM->aByName);
  free(pM->aFile);
  free(pM->zMeta);
  free(pM->zCreated);
  free(pM->zBatonVersion);
  memset(pM, 0, sizeof *pM);
}

typedef struct sort_key {
  uint64_t lo;
  int idx;
} sort_key;

static int cmp_key(const void *a, const void *b) {
  const sort_key *x = a, *y = b;
  if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
  return x->idx - y->idx;
}

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_name_idx(const void *a, const void *b) {
  return strcmp(((const bt_ckpt_name_idx *)a)->zName,
                ((const bt_ckpt_name_idx *)b)->zName);
}

/* Index of item zName, or -1. Binary search once aByName exists (hostile
 * manifests may list thousands of items and millions of files). */
static int find_item(const bt_ckpt_manifest *pM, const char *zName, int hint) {
  if (hint >= 0 && hint < pM->nItem && strcmp(pM->aItem[hint].zName, zName) == 0)
    return hint;
  if (!pM->aByName) return -1;
  bt_ckpt_name_idx key = {zName, -1};
  const bt_ckpt_name_idx *p = bsearch(&key, pM->aByName, (size_t)pM->nItem,
                                      sizeof key, cmp_name_idx);
  return p ? p->idx : -1;
}

static int parse_items(bt_ckpt_manifest *pM, const cJSON *pItems) {
  if (!cJSON_IsArray(pItems)) return bt_err_set("manifest: items is not an array");
  int n = cJSON_GetArraySize(pItems);
  if (n < 0 || n > BT_CKPT_MAX_ITEMS)
    return bt_err_set("manifest: %d items (at most %d)", n, BT_CKPT_MAX_ITEMS);
  pM->aItem = bt_calloc((size_t)n + 1, sizeof *pM->aItem, "checkpoint items");
  if (!pM->aItem) return BT_ERR;
  const cJSON *p;
  int i = 0;
  cJSON_ArrayForEach(p, pItems) {
    char zCtx[64];
    snprintf(zCtx, sizeof zCtx, "items[%d].", i);
    if (i >= n) break; /* cannot happen: n counted the same list */
    if (!cJSON_IsObject(p)) return bt_err_set("manifest: items[%d] is not an object", i);
    const char *zName = json_str(p, "name", zCtx);
    if (!zName) return BT_ERR;
    if (!bt_ckpt_name_ok(zName))
      return bt_err_set("manifest: items[%d].name is not a valid item name", i);
    const char *zType = json_str(p, "dtype", zCtx);
    if (!zType) return BT_ERR;
    bt_ckpt_item_info *pI = &pM->aItem[i];
    if (strcmp(zType, "f32") == 0) pI->eType = BT_CKPT_F32;
    else if (strcmp(zType, "bytes") == 0) pI->eType = BT_CKPT_BYTES;
    else return bt_err_set("manifest: items[%d].dtype '%.32s' unknown", i, zType);
    if (json_uint(p, "total", BT_CKPT_MAX_COUNT, zCtx, &pI->total)) return BT_ERR;
    pI->zName = dup_str(zName);
    if (!pI->zName) return BT_ERR;
    pM->nItem = ++i;
  }
  pM->aByName = bt_malloc(((size_t)pM->nItem + 1) * sizeof *pM->aByName,
                          "checkpoint item index");
  if (!pM->aByName) return BT_ERR;
  for (int k = 0; k < pM->nItem; k++)
    pM->aByName[k] = (bt_ckpt_name_idx){pM->aItem[k].zName, k};
  qsort(pM->aByName, (size_t)pM->nItem, sizeof *pM->aByName, cmp_name_idx);
  for (int k = 1; k < pM->nItem; k++)
    if (strcmp(pM->aByName[k - 1].zName, pM->aByName[k].zName) == 0)
      return bt_err_set("manifest: item '%s' listed twice", pM->aByName[k].zName);
  return BT_OK;
}

static int parse_files(bt_ckpt_manifest *pM, const cJSON *pFiles) {
  if (!cJSON_IsArray(pFiles)) return bt_err_set("manifest: files is not an array");
  int n = cJSON_GetArraySize(pFiles);
  if (n < 0 || n > BT_CKPT_MAX_FILES)
    return bt_err_set("manifest: %d files (at most %d)", n, BT_CKPT_MAX_FILES);
  pM->aFile = bt_calloc((size_t)n + 1, sizeof *pM->aFile, "checkpoint files");
  if (!pM->aFile) return BT_ERR;
  const cJSON *p;
  int i = 0, hint = 0;
  cJSON_ArrayForEach(p, pFiles) {
    char zCtx[64];
    snprintf(zCtx, sizeof zCtx, "files[%d].", i);
    if (!cJSON_IsObject(p)) return bt_err_set("manifest: files[%d] is not an object", i);
    bt_ckpt_file *pF = &pM->aFile[i];
    const char *zFile = json_str(p, "file", zCtx);
    if (!zFile) return BT_ERR;
    if (!bt_ckpt_filename_ok(zFile))
      return bt_err_set("manifest: files[%d].file is not a plain file name "
                        "(no '/', no leading '.', [A-Za-z0-9_.+-] only)", i);
    const char *zItem = json_str(p, "item", zCtx);
    if (!zItem) return BT_ERR;
    int iItem = find_item(pM, zItem, hint);
    if (iItem < 0)
      return bt_err_set("manifest: files[%d] belongs to an unlisted item", i);
    hint = iItem;
    const bt_ckpt_item_info *pI = &pM->aItem[iItem];
    if (json_uint(p, "lo", BT_CKPT_MAX_COUNT, zCtx, &pF->lo) ||
        json_uint(p, "hi", BT_CKPT_MAX_COUNT, zCtx, &pF->hi) ||
        json_uint(p, "raw_bytes", BT_CKPT_MAX_COUNT, zCtx, &pF->raw_bytes) ||
        json_uint(p, "stored_bytes", BT_CKPT_MAX_COUNT, zCtx, &pF->stored_bytes))
      return BT_ERR;
    if (!(pF->lo < pF->hi && pF->hi <= pI->total))
      return bt_err_set("manifest: files[%d] range [%llu, %llu) is empty or "
                        "outside item '%s' of %llu elements",
                        i, (unsigned long long)pF->lo, (unsigned long long)pF->hi,
                        pI->zName, (unsigned long long)pI->total);
    uint64_t want = (pF->hi - pF->lo) * bt_ckpt_dtype_size(pI->eType);
    if (pF->raw_bytes != want)
      return bt_err_set("manifest: files[%d].raw_bytes = %llu, range implies %llu",
                        i, (unsigned long long)pF->raw_bytes,
                        (unsigned long long)want);
    if (pF->raw_bytes > BT_CKPT_MAX_FILE_RAW)
      return bt_err_set("manifest: files[%d].raw_bytes = %llu exceeds the "
                        "format limit %llu", i, (unsigned long long)pF->raw_bytes,
                        (unsigned long long)BT_CKPT_MAX_FILE_RAW);
    if (pF->stored_bytes < 1 ||
        pF->stored_bytes > (uint64_t)ZSTD_compressBound((size_t)pF->raw_bytes))
      return bt_err_set("manifest: files[%d].stored_bytes = %llu impossible for "
                        "%llu raw bytes", i, (unsigned long long)pF->stored_bytes,
                        (unsigned long long)pF->raw_bytes);
    const char *zCodec = json_str(p, "codec", zCtx);
    if (!zCodec) return BT_ERR;
    if (strcmp(zCodec, BT_CKPT_CODEC_SHUF) == 0) {
      if (pI->eType != BT_CKPT_F32)
        return bt_err_set("manifest: files[%d]: codec %s needs dtype f32", i,
                          BT_CKPT_CODEC_SHUF);
      pF->shuffled = 1;
    } else if (strcmp(zCodec, BT_CKPT_CODEC_ZSTD) == 0) {
      pF->shuffled = 0;
    } else {
      return bt_err_set("manifest: files[%d].codec '%.32s' unknown", i, zCodec);
    }
    const char *zHash = json_str(p, "xxh64", zCtx);
    if (!zHash) return BT_ERR;
    if (!parse_hex64(zHash, &pF->xxh64))
      return bt_err_set("manifest: files[%d].xxh64 is not 16 hex digits", i);
    if (cJSON_GetObjectItemCaseSensitive(p, "raw_xxh64")) {
      const char *zRaw = json_str(p, "raw_xxh64", zCtx);
      if (!zRaw) return BT_ERR;
      if (!parse_hex64(zRaw, &pF->raw_xxh64))
        return bt_err_set("manifest: files[%d].raw_xxh64 is not 16 hex digits", i);
      pF->has_raw_xxh64 = 1;
    }
    pF->iItem = iItem;
    pF->zFile = dup_str(zFile);
    if (!pF->zFile) return BT_ERR;
    pM->nFile = ++i;
  }
  return BT_OK;
}

/* R2 uniqueness of file names and R3 tiling. */
static int check_layout(bt_ckpt_manifest *pM) {
  int rc = BT_OK;
  if (pM->nFile > 1) {
    char **az = bt_malloc((size_t)pM->nFile * sizeof *az, "file name check");
    if (!az) return BT_ERR;
    for (int i = 0; i < pM->nFile; i++) az[i] = pM->aFile[i].zFile;
    qsort(az, (size_t)pM->nFile, sizeof *az, cmp_strp);
    for (int i = 1; i < pM->nFile && rc == BT_OK; i++)
      if (strcmp(az[i - 1], az[i]) == 0)
        rc = bt_err_set("manifest: file '%s' listed twice", az[i]);
    free(az);
    if (rc) return rc;
  }
  /* Bucket the files by item (one pass), then sort each bucket by lo. */
  for (int i = 0; i < pM->nFile; i++) pM->aItem[pM->aFile[i].iItem].nFile++;
  for (int it = 0; it < pM->nItem; it++) {
    pM->aItem[it].aiFile = bt_malloc(((size_t)pM->aItem[it].nFile + 1) * sizeof(int),
                                     "item file list");
    if (!pM->aItem[it].aiFile) return BT_ERR;
    pM->aItem[it].nFile = 0;
  }
  for (int i = 0; i < pM->nFile; i++) {
    bt_ckpt_item_info *pI = &pM->aItem[pM->aFile[i].iItem];
    pI->aiFile[pI->nFile++] = i;
  }
  sort_key *aKey = bt_malloc(((size_t)pM->nFile + 1) * sizeof *aKey, "tiling check");
  if (!aKey) return BT_ERR;
  for (int it = 0; it < pM->nItem && rc == BT_OK; it++) {
    bt_ckpt_item_info *pI = &pM->aItem[it];
    int n = pI->nFile;
    for (int k = 0; k < n; k++) aKey[k] = (sort_key){pM->aFile[pI->aiFile[k]].lo, pI->aiFile[k]};
    qsort(aKey, (size_t)n, sizeof *aKey, cmp_key);
    uint64_t at = 0;
    for (int k = 0; k < n && rc == BT_OK; k++) {
      const bt_ckpt_file *pF = &pM->aFile[aKey[k].idx];
      if (pF->lo != at)
        rc = bt_err_set("manifest: item '%s': %s at element %llu (file '%s' "
                        "starts at %llu)", pI->zName,
                        pF->lo > at ? "gap" : "overlap", (unsigned long long)at,
                        pF->zFile, (unsigned long long)pF->lo);
      at = pF->hi;
    }
    if (rc == BT_OK && at != pI->total)
      rc = bt_err_set("manifest: item '%s': files cover [0, %llu) of %llu "
                      "elements", pI->zName, (unsigned long long)at,
                      (unsigned long long)pI->total);
    for (int k = 0; k < n; k++) pI->aiFile[k] = aKey[k].idx;
  }
  free(aKey);
  return rc;
}

/* ---- the manifest's own checksum (format version 2) --------------------- */

static int is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int bt_ckpt_manifest_sum_find(const char *zText, size_t n, size_t *pAt) {
  static const char zKey[] = "\"" BT_CKPT_SUM_KEY "\"";
  size_t nKey = sizeof zKey - 1;
  for (size_t i = n >= nKey ? n - nKey + 1 : 0; i-- > 0;) {
    if (memcmp(zText + i, zKey, nKey) != 0) continue;
    size_t k = i + nKey;
    while (k < n && is_json_space(zText[k])) k++;
    if (k >= n || zText[k++] != ':') return 0;
    while (k < n && is_json_space(zText[k])) k++;
    if (k >= n || zText[k++] != '"' || n - k < 17 || zText[k + 16] != '"')
      return 0;
    *pAt = k;
    return 1;
  }
  return 0;
}

int bt_ckpt_manifest_sum(const char *zText, size_t n, size_t at,
                         uint64_t *pOut) {
  XXH64_state_t *pSt = XXH64_createState();
  if (!pSt) return bt_err_set("out of memory checksumming a manifest");
  XXH64_reset(pSt, 0);
  XXH64_update(pSt, zText, at);
  XXH64_update(pSt, "0000000000000000", 16);
  XXH64_update(pSt, zText + at + 16, n - at - 16);
  *pOut = (uint64_t)XXH64_digest(pSt);
  XXH64_freeState(pSt);
  return BT_OK;
}

/* Every byte of manifest.json is covered: the step, the meta (loader
 * state, config), the payloads' checksums, even the whitespace. Lowercase
 * digits only, so that a flipped case bit cannot leave the value equal. */
static int check_sum(const cJSON *pRoot, const char *zText, size_t nByte) {
  const char *z = json_str(pRoot, BT_CKPT_SUM_KEY, "");
  if (!z) return BT_ERR;
  uint64_t want;
  size_t at;
  int lower = strspn(z, "0123456789abcdef") == 16;
  if (!lower || !parse_hex64(z, &want))
    return bt_err_set("manifest: %s is not 16 lowercase hex digits",
                      BT_CKPT_SUM_KEY);
  if (!bt_ckpt_manifest_sum_find(zText, nByte, &at) ||
      memcmp(zText + at, z, 16) != 0)
    return bt_err_set("manifest: %s is not the last member written as "
                      "\"%s\": \"<16 digits>\"", BT_CKPT_SUM_KEY,
                      BT_CKPT_SUM_KEY);
  uint64_t got = 0;
  if (bt_ckpt_manifest_sum(zText, nByte, at, &got)) return BT_ERR;
  if (got != want)
    return bt_err_set("manifest.json fails its checksum (xxh64 %016llx, "
                      "recorded %016llx): the manifest is damaged",
                      (unsigned long long)got, (unsigned long long)want);
  return BT_OK;
}

/* The trainer's meta repeats the step (trainer/state.c); when it does, the
 * two must agree, or a resume would restart at a step the payloads were
 * not saved at. Checked for every format version. */
static int check_meta_step(const cJSON *pMeta, long step) {
  const cJSON *p = cJSON_IsObject(pMeta)
                       ? cJSON_GetObjectItemCaseSensitive(pMeta, "step")
                       : NULL;
  if (!p) return BT_OK;
  if (!cJSON_IsNumber(p))
    return bt_err_set("manifest: meta.step is not a number");
  if (p->valuedouble != (double)step)
    return bt_err_set("manifest: meta.step = %.17g but step = %ld",
                      p->valuedouble, step);
  return BT_OK;
}

int bt_ckpt_manifest_parse(bt_ckpt_manifest *pM, const char *zText,
                           size_t nByte) {
  memset(pM, 0, sizeof *pM);
  if (nByte > BT_CKPT_MAX_MANIFEST)
    return bt_err_set("manifest: %zu bytes exceeds the limit %zu", nByte,
                      BT_CKPT_MAX_MANIFEST);
  cJSON *pRoot = cJSON_ParseWithLength(zText, nByte);
  if (!pRoot) return bt_err_set("manifest: not valid JSON");
  int rc = BT_ERR;
  uint64_t v;
  const char *z;
  if (!cJSON_IsObject(pRoot)) {
    bt_err_set("manifest: top level is not an object");
    goto done;
  }
  if (!(z = json_str(pRoot, "format", ""))) goto done;
  if (strcmp(z, BT_CKPT_FORMAT_NAME) != 0) {
    bt_err_set("manifest: format is not \"%s\"", BT_CKPT_FORMAT_NAME);
    goto done;
  }
  if (json_uint(pRoot, "format_version", 1u << 30, "", &v)) goto done;
  if (v < BT_CKPT_FORMAT_MIN_VERSION || v > BT_CKPT_FORMAT_VERSION) {
    bt_err_set("manifest: format_version %llu; this baton reads versions %d "
               "to %d%s",
               (unsigned long long)v, BT_CKPT_FORMAT_MIN_VERSION,
               BT_CKPT_FORMAT_VERSION,
               v > BT_CKPT_FORMAT_VERSION ? " (written by a newer baton)" : "");
    goto done;
  }
  pM->version = (int)v;
  if (pM->version >= 2 && check_sum(pRoot, zText, nByte)) goto done;
  if (!(z = json_str(pRoot, "baton_version", ""))) goto done;
  if (!(pM->zBatonVersion = dup_str(z))) goto done;
  if (!(z = json_str(pRoot, "created", ""))) goto done;
  if (!(pM->zCreated = dup_str(z))) goto done;
  if (json_uint(pRoot, "step", BT_CKPT_MAX_COUNT, "", &v)) goto done;
  pM->step = (long)v;
  if (json_uint(pRoot, "world_size", BT_CKPT_MAX_WORLD, "", &v)) goto done;
  if (v < 1) {
    bt_err_set("manifest: world_size is 0");
    goto done;
  }
  pM->world = (int)v;
  const cJSON *pMeta = cJSON_GetObjectItemCaseSensitive(pRoot, "meta");
  if (!pMeta) {
    bt_err_set("manifest: meta missing");
    goto done;
  }
  if (check_meta_step(pMeta, pM->step)) goto done;
  pM->zMeta = cJSON_PrintUnformatted(pMeta);
  if (!pM->zMeta) {
    bt_err_set("manifest: cannot print meta");
    goto done;
  }
  if (parse_items(pM, cJSON_GetObjectItemCaseSensitive(pRoot, "items"))) goto done;
  if (parse_files(pM, cJSON_GetObjectItemCaseSensitive(pRoot, "files"))) goto done;
  if (check_layout(pM)) goto done;
  rc = BT_OK;
done:
  cJSON_Delete(pRoot);
  if (rc != BT_OK) {
    /* cJSON_PrintUnformatted allocates with malloc; clear frees it. */
    char zSave[2048];
    snprintf(zSave, sizeof zSave, "%s", bt_err_msg());
    bt_ckpt_manifest_clear(pM);
    bt_err_set("%s", zSave);
  }
  return rc;
}

/* ---- files ------------------------------------------------------------- */

static int grow(uint8_t **pp, size_t *pCap, size_t n, const char *zWhat) {
  if (*pCap >= n && *pp) return BT_OK;
  free(*pp);
  *pp = bt_malloc_aligned(n ? n : 1, zWhat);
  *pCap = *pp ? n : 0;
  return *pp ? BT_OK : BT_ERR;
}

static void file_path(const bt_ckpt *pC, const bt_ckpt_file *pF, char *z,
                      size_t n) {
  snprintf(z, n, "%s/%s", pC->zDir, pF->zFile);
}

/* Opens a payload, refusing symlinks and non-regular files, and checks its
 * size against the manifest (R4). */
static int open_payload(const bt_ckpt *pC, const bt_ckpt_file *pF,
                        const char *zPath) {
  (void)pC;
  int fd = open(zPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    bt_err_set("cannot open '%s': %s (errno %d)", zPath, strerror(errno),
               errno);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    bt_err_set("'%s' is not a regular file", zPath);
    return -1;
  }
  if ((uint64_t)st.st_size != pF->stored_bytes) {
    close(fd);
    bt_err_set("'%s' has %lld bytes, manifest says %llu (truncated or "
               "replaced)", zPath, (long long)st.st_size,
               (unsigned long long)pF->stored_bytes);
    return -1;
  }
  return fd;
}

static int read_exact(int fd, uint8_t *p, size_t n, const char *zPath) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got > ((size_t)1 << 30) ? (size_t)1 << 30 : n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return bt_err_set("cannot read '%s' at byte %zu: %s (errno %d)", zPath,
                        got, strerror(errno), errno);
    if (r == 0)
      return bt_err_set("'%s' ended at byte %zu, expected %zu", zPath, got, n);
    got += (size_t)r;
  }
  return BT_OK;
}

/* Streams a payload through XXH64 without keeping it (verify = 1). */
static int verify_file(bt_ckpt *pC, int iFile) {
  bt_ckpt_file *pF = &pC->m.aFile[iFile];
  char zPath[4096];
  file_path(pC, pF, zPath, sizeof zPath);
  int fd = open_payload(pC, pF, zPath);
  if (fd < 0) return BT_ERR;
  XXH64_state_t *pState = XXH64_createState();
  size_t nBuf = (size_t)1 << 20;
  uint8_t *pBuf = bt_malloc(nBuf, "checksum buffer");
  int rc = BT_OK;
  if (!pState || !pBuf) {
    rc = bt_err_set("out of memory verifying '%s'", zPath);
    goto done;
  }
  XXH64_reset(pState, 0);
  uint64_t left = pF->stored_bytes;
  while (left > 0 && rc == BT_OK) {
    size_t n = left < nBuf ? (size_t)left : nBuf;
    rc = read_exact(fd, pBuf, n, zPath);
    if (rc == BT_OK) XXH64_update(pState, pBuf, n);
    left -= n;
  }
  if (rc == BT_OK && (uint64_t)XXH64_digest(pState) != pF->xxh64)
    rc = bt_err_set("checksum mismatch in '%s' (xxh64 %016llx, manifest "
                    "%016llx): the file is damaged",
                    zPath, (unsigned long long)XXH64_digest(pState),
                    (unsigned long long)pF->xxh64);
  if (rc == BT_OK) pF->verified = 1;
done:
  free(pBuf);
  if (pState) XXH64_freeState(pState);
  close(fd);
  return rc;
}

/* Loads, checks and decodes file iFile; the raw (unshuffled) elements
 * [lo, hi) of the file land in pDst if the caller wants the whole file
 * (pDst != NULL), else in pC->pRaw / pRaw2 and *ppRaw points at them. */
static int load_file(bt_ckpt *pC, int iFile, uint8_t *pDst,
                     const uint8_t **ppRaw) {
  bt_ckpt_file *pF = &pC->m.aFile[iFile];
  char zPath[4096];
  file_path(pC, pF, zPath, sizeof zPath);
  size_t nStored = (size_t)pF->stored_bytes;
  size_t nRaw = (size_t)pF->raw_bytes;
  int fd = open_payload(pC, pF, zPath);
  if (fd < 0) return BT_ERR;
  int rc = grow(&pC->pStored, &pC->nStoredCap, nStored, "checkpoint read buffer");
  if (rc == BT_OK) rc = read_exact(fd, pC->pStored, nStored, zPath);
  close(fd);
  if (rc) return rc;
  uint64_t h = bt_hash64(pC->pStored, nStored, 0);
  if (h != pF->xxh64)
    return bt_err_set("checksum mismatch in '%s' (xxh64 %016llx, manifest "
                      "%016llx): the file is damaged",
                      zPath, (unsigned long long)h, (unsigned long long)pF->xxh64);
  pF->verified = 1;
  if (!pC->pDctx) {
    pC->pDctx = ZSTD_createDCtx();
    if (!pC->pDctx) return bt_err_set("zstd: cannot create a decompression context");
  }
  uint8_t *pOut;
  if (!pF->shuffled && pDst) {
    pOut = pDst;
    if (bt_ckpt_decompress(pC->pDctx, pC->pStored, nStored, pOut, nRaw, zPath))
      return BT_ERR;
  } else {
    if (grow(&pC->pRaw, &pC->nRawCap, nRaw, "checkpoint decode buffer")) return BT_ERR;
    if (bt_ckpt_decompress(pC->pDctx, pC->pStored, nStored, pC->pRaw, nRaw, zPath))
      return BT_ERR;
    pOut = pC->pRaw;
    if (pF->shuffled) {
      if (pDst) pOut = pDst;
      else {
        if (grow(&pC->pRaw2, &pC->nRaw2Cap, nRaw, "checkpoint unshuffle buffer"))
          return BT_ERR;
        pOut = pC->pRaw2;
      }
      bt_ckpt_unshuffle4(pC->pRaw, pOut, nRaw);
    } else if (pDst) {
      memcpy(pDst, pC->pRaw, nRaw);
      pOut = pDst;
    }
  }
  if (pF->has_raw_xxh64) {
    uint64_t hr = bt_hash64(pOut, nRaw, 0);
    if (hr != pF->raw_xxh64)
      return bt_err_set("'%s': decoded data fails its checksum (xxh64 %016llx, "
                        "manifest %016llx)", zPath, (unsigned long long)hr,
                        (unsigned long long)pF->raw_xxh64);
  }
  if (ppRaw) *ppRaw = pOut;
  return BT_OK;
}

/* ---- public API -------------------------------------------------------- */

/* A directory named ckpt-<N> must hold the manifest of step N: the name
 * is what bt_ckpt_find_latest orders by, the manifest what a resume
 * restarts at. Other names (a checkpoint copied elsewhere) are not
 * checked. */
static int check_dir_step(const char *zDir, long step) {
  size_t n = strlen(zDir);
  while (n > 1 && zDir[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && zDir[b - 1] != '/') b--;
  char zBase[256];
  long dirStep;
  if (n - b >= sizeof zBase) return BT_OK;
  memcpy(zBase, zDir + b, n - b);
  zBase[n - b] = 0;
  if (!bt_ckpt_parse_dirname(zBase, &dirStep) || dirStep == step) return BT_OK;
  return bt_err_set("directory name %s says step %ld but its manifest says "
                    "step %ld", zBase, dirStep, step);
}

static int open_parsed(bt_ckpt **ppC, const char *zDir, const char *zText,
                       size_t n, int verify) {
  bt_ckpt *pC = bt_calloc(1, sizeof *pC, "checkpoint reader");
  if (!pC) return BT_ERR;
  int rc = bt_ckpt_manifest_parse(&pC->m, zText, n);
  if (rc == BT_OK) rc = check_dir_step(zDir, pC->m.step);
  if (rc == BT_OK) {
    pC->zDir = dup_str(zDir);
    if (!pC->zDir) rc = BT_ERR;
  }
  for (int i = 0; rc == BT_OK && verify && i < pC->m.nFile; i++)
    rc = verify_file(pC, i);
  if (rc != BT_OK) {
    bt_ckpt_close(pC);
    return BT_ERR;
  }
  *ppC = pC;
  return BT_OK;
}

static int open_impl(bt_ckpt **ppC, const char *zDir, int verify) {
  char zPath[4096];
  if (strlen(zDir) + 32 > sizeof zPath)
    return bt_err_set("checkpoint path too long: '%.100s...'", zDir);
  snprintf(zPath, sizeof zPath, "%s/%s", zDir, BT_CKPT_MANIFEST);
  struct stat st;
  if (stat(zPath, &st) != 0)
    return bt_err_set("cannot open '%s': %s (errno %d)", zPath, strerror(errno),
                      errno);
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > BT_CKPT_MAX_MANIFEST)
    return bt_err_set("'%s' is not a regular file of at most %zu bytes", zPath,
                      BT_CKPT_MAX_MANIFEST);
  size_t n = 0;
  char *zText = bt_file_read_all(zPath, &n);
  if (!zText) return BT_ERR;
  int rc = open_parsed(ppC, zDir, zText, n, verify);
  free(zText);
  return rc;
}

int bt_ckpt_open_text(bt_ckpt **ppC, const char *zDir, const char *zText,
                      size_t nByte, int verify) {
  *ppC = NULL;
  if (open_parsed(ppC, zDir, zText, nByte, verify) != BT_OK)
    return bt_err_prefix("checkpoint '%s': ", zDir);
  return BT_OK;
}

int bt_ckpt_open(bt_ckpt **ppC, const char *zDir, int verify) {
  *ppC = NULL;
  if (open_impl(ppC, zDir, verify) != BT_OK)
    return bt_err_prefix("checkpoint '%s': ", zDir);
  return BT_OK;
}

void bt_ckpt_close(bt_ckpt *pC) {
  if (!pC) return;
  bt_ckpt_manifest_clear(&pC->m);
  if (pC->pDctx) ZSTD_freeDCtx(pC->pDctx);
  free(pC->pStored);
  free(pC->pRaw);
  free(pC->pRaw2);
  free(pC->zDir);
  free(pC);
}

long bt_ckpt_step(const bt_ckpt *pC) { return pC->m.step; }
int bt_ckpt_world(const bt_ckpt *pC) { return pC->m.world; }
const char *bt_ckpt_meta_json(const bt_ckpt *pC) { return pC->m.zMeta; }

uint64_t bt_ckpt_item_total(const bt_ckpt *pC, const char *zName) {
  int i = find_item(&pC->m, zName, -1);
  return i < 0 ? 0 : pC->m.aItem[i].total;
}

int bt_ckpt_item_dtype(const bt_ckpt *pC, const char *zName,
                       bt_ckpt_dtype *peType) {
  int i = find_item(&pC->m, zName, -1);
  if (i < 0) return bt_err_set("checkpoint '%s' has no item '%s'", pC->zDir, zName);
  *peType = pC->m.aItem[i].eType;
  return BT_OK;
}

int bt_ckpt_read_range(bt_ckpt *pC, const char *zName, uint64_t lo,
                       uint64_t hi, void *pDst) {
  int it = find_item(&pC->m, zName, -1);
  if (it < 0)
    return bt_err_set("checkpoint '%s' has no item '%s'", pC->zDir, zName);
  const bt_ckpt_item_info *pI = &pC->m.aItem[it];
  if (lo > hi || hi > pI->total)
    return bt_err_set("checkpoint '%s': range [%llu, %llu) outside item '%s' "
                      "of %llu elements", pC->zDir, (unsigned long long)lo,
                      (unsigned long long)hi, zName,
                      (unsigned long long)pI->total);
  size_t es = bt_ckpt_dtype_size(pI->eType);
  uint8_t *pOut = pDst;
  /* Files are sorted by lo and tile [0,total): binary search the first one
   * that ends after lo, then walk. */
  int a = 0, b = pI->nFile;
  while (a < b) {
    int mid = a + (b - a) / 2;
    if (pC->m.aFile[pI->aiFile[mid]].hi <= lo) a = mid + 1;
    else b = mid;
  }
  for (int k = a; k < pI->nFile && lo < hi; k++) {
    int iFile = pI->aiFile[k];
    const bt_ckpt_file *pF = &pC->m.aFile[iFile];
    if (pF->lo >= hi) break;
    uint64_t s = lo > pF->lo ? lo : pF->lo;
    uint64_t e = hi < pF->hi ? hi : pF->hi;
    uint8_t *pAt = pOut + (s - lo) * es;
    if (s == pF->lo && e == pF->hi) {
      if (load_file(pC, iFile, pAt, NULL)) return bt_err_prefix("checkpoint '%s': ", pC->zDir);
    } else {
      const uint8_t *pRaw = NULL;
      if (load_file(pC, iFile, NULL, &pRaw)) return bt_err_prefix("checkpoint '%s': ", pC->zDir);
      memcpy(pAt, pRaw + (s - pF->lo) * es, (size_t)((e - s) * es));
    }
    pOut = pAt + (e - s) * es;
    lo = e;
  }
  BT_ASSERT(lo == hi); /* tiling was checked at open */
  return BT_OK;
}

int bt_ckpt_load_items(bt_ckpt *pC, const bt_ckpt_item *aItem, int nItem) {
  for (int i = 0; i < nItem; i++) {
    const bt_ckpt_item *p = &aItem[i];
    int it = p->zName ? find_item(&pC->m, p->zName, -1) : -1;
    if (it < 0)
      return bt_err_set("checkpoint '%s' has no item '%s'", pC->zDir,
                        p->zName ? p->zName : "(null)");
    const bt_ckpt_item_info *pI = &pC->m.aItem[it];
    if (pI->eType != p->eType || pI->total != p->total)
      return bt_err_set("checkpoint '%s': item '%s' is %s of %llu elements, the "
                        "trainer expects %s of %llu (different model or config?)",
                        pC->zDir, p->zName, bt_ckpt_dtype_name(pI->eType),
                        (unsigned long long)pI->total, bt_ckpt_dtype_name(p->eType),
                        (unsigned long long)p->total);
    uint64_t lo = p->sharded ? p->lo : 0, hi = p->sharded ? p->hi : p->total;
    if (lo > hi || hi > p->total)
      return bt_err_set("item '%s': range [%llu, %llu) outside [0, %llu)",
                        p->zName, (unsigned long long)lo, (unsigned long long)hi,
                        (unsigned long long)p->total);
    if (hi > lo && !p->pData)
      return bt_err_set("item '%s': no destination pointer", p->zName);
    if (hi > lo && bt_ckpt_read_range(pC, p->zName, lo, hi, p->pData) != BT_OK)
      return BT_ERR;
  }
  return BT_OK;
}

/* ---- finding the newest usable checkpoint ------------------------------ */

typedef struct step_name {
  long step;
  char zName[256];
} step_name;

static int cmp_step_desc(const void *a, const void *b) {
  const step_name *x = a, *y = b;
  if (x->step != y->step) return x->step > y->step ? -1 : 1;
  return strcmp(x->zName, y->zName);
}

int bt_ckpt_list(const char *zRunDir, long **paStep, char ***pazName, int *pn) {
  *paStep = NULL;
  *pazName = NULL;
  *pn = 0;
  DIR *d = opendir(zRunDir);
  if (!d) {
    if (errno == ENOENT) return BT_OK;
    return bt_err_set("cannot list '%s': %s (errno %d)", zRunDir,
                      strerror(errno), errno);
  }
  step_name *a = NULL;
  int n = 0, cap = 0, rc = BT_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long step;
    if (!bt_ckpt_parse_dirname(e->d_name, &step)) continue;
    if (strlen(e->d_name) >= sizeof a[0].zName) continue;
    /* A file that only looks like a checkpoint is not one: resume must
     * not choose it, retention must not delete it. */
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, 0) != 0 || !S_ISDIR(st.st_mode))
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      step_name *p = realloc(a, (size_t)cap * sizeof *a);
      if (!p) {
        rc = bt_err_set("out of memory listing '%s'", zRunDir);
        break;
      }
      a = p;
    }
    a[n].step = step;
    snprintf(a[n].zName, sizeof a[n].zName, "%s", e->d_name);
    n++;
  }
  closedir(d);
  if (rc == BT_OK && n > 0) {
    qsort(a, (size_t)n, sizeof *a, cmp_step_desc);
    *paStep = bt_malloc((size_t)n * sizeof(long), "checkpoint list");
    *pazName = bt_calloc((size_t)n, sizeof(char *), "checkpoint list");
    if (!*paStep || !*pazName) rc = BT_ERR;
    for (int i = 0; rc == BT_OK && i < n; i++) {
      (*paStep)[i] = a[i].step;
      if (!((*pazName)[i] = dup_str(a[i].zName))) rc = BT_ERR;
    }
    if (rc == BT_OK) *pn = n;
    else {
      for (int i = 0; *pazName && i < n; i++) free((*pazName)[i]);
      free(*paStep);
      free(*pazName);
      *paStep = NULL;
      *pazName = NULL;
    }
  }
  free(a);
  return rc;
}

void bt_ckpt_list_free(long *aStep, char **azName, int n) {
  for (int i = 0; azName && i < n; i++) free(azName[i]);
  free(azName);
  free(aStep);
}

/* Appends "name: reason; " to zWhy (bounded; "..." once it is full). */
static void why_add(char *zWhy, size_t nWhy, const char *zName,
                    const char *zReason) {
  if (!zWhy || nWhy < 8) return;
  size_t at = strlen(zWhy);
  if (at + 4 >= nWhy) return;
  int n = snprintf(zWhy + at, nWhy - at, "%s%s: %s", at ? "; " : "", zName,
                   zReason);
  if (n < 0 || (size_t)n >= nWhy - at) memcpy(zWhy + nWhy - 4, "...", 4);
}

int bt_ckpt_find_before(const char *zRunDir, long before, char *zOut,
                        size_t nOut, long *pStep, char *zWhy, size_t nWhy) {
  long *aStep;
  char **azName;
  int n;
  if (zWhy && nWhy) zWhy[0] = 0;
  if (bt_ckpt_list(zRunDir, &aStep, &azName, &n)) return BT_ERR;
  int found = 1;
  for (int i = 0; i < n; i++) {
    if (before >= 0 && aStep[i] >= before) continue;
    char zPath[4096];
    snprintf(zPath, sizeof zPath, "%s/%s", zRunDir, azName[i]);
    bt_ckpt *pC = NULL;
    /* verify = 1: the manifest's checksum and cross-checks, and every
     * payload's size and stored checksum, before anything is trusted. */
    if (bt_ckpt_open(&pC, zPath, 1) != BT_OK) {
      bt_log_warn("skipping checkpoint %s: %s", zPath, bt_err_msg());
      why_add(zWhy, nWhy, azName[i], bt_err_msg());
      continue;
    }
    bt_ckpt_close(pC);
    if (strlen(zPath) + 1 > nOut) {
      bt_ckpt_list_free(aStep, azName, n);
      return bt_err_set("checkpoint path '%s' does not fit in %zu bytes", zPath,
                        nOut);
    }
    memcpy(zOut, zPath, strlen(zPath) + 1);
    if (pStep) *pStep = aStep[i];
    found = 0;
    break;
  }
  bt_ckpt_list_free(aStep, azName, n);
  return found;
}

int bt_ckpt_find_latest(const char *zRunDir, char *zOut, size_t nOut) {
  return bt_ckpt_find_before(zRunDir, -1, zOut, nOut, NULL, NULL, 0);
}

/* ---- inspect ----------------------------------------------------------- */

static void print_meta(FILE *f, const char *zMeta) {
  cJSON *p = cJSON_Parse(zMeta);
  char *z = p ? cJSON_Print(p) : NULL;
  fprintf(f, "meta:\n");
  const char *s = z ? z : zMeta;
  /* Indent every line by two spaces. */
  fputs("  ", f);
  for (; *s; s++) {
    fputc(*s, f);
    if (*s == '\n') fputs("  ", f);
  }
  fputc('\n', f);
  free(z);
  cJSON_Delete(p);
}

int bt_ckpt_inspect(const char *zDir, FILE *pOut) {
  bt_ckpt *pC = NULL;
  fprintf(pOut, "checkpoint: %s\n", zDir);
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK) {
    fprintf(pOut, "verify: FAIL (%s)\n", bt_err_msg());
    return BT_ERR;
  }
  const bt_ckpt_manifest *pM = &pC->m;
  char zA[32], zB[32];
  fprintf(pOut, "format: %s version %d, written by baton %s at %s\n",
          BT_CKPT_FORMAT_NAME, pM->version, pM->zBatonVersion, pM->zCreated);
  fprintf(pOut, "step: %ld\n", pM->step);
  fprintf(pOut, "world size at save: %d\n", pM->world);
  print_meta(pOut, pM->zMeta);
  double rawAll = 0, storedAll = 0;
  fprintf(pOut, "items: %d, files: %d\n", pM->nItem, pM->nFile);
  for (int it = 0; it < pM->nItem; it++) {
    const bt_ckpt_item_info *pI = &pM->aItem[it];
    double raw = 0, stored = 0;
    for (int k = 0; k < pI->nFile; k++) {
      raw += (double)pM->aFile[pI->aiFile[k]].raw_bytes;
      stored += (double)pM->aFile[pI->aiFile[k]].stored_bytes;
    }
    fprintf(pOut, "  %-20s %-5s %14llu elements  raw %10s  stored %10s  "
            "ratio %.3f  files %d\n", pI->zName, bt_ckpt_dtype_name(pI->eType),
            (unsigned long long)pI->total, bt_fmt_bytes(raw, zA, sizeof zA),
            bt_fmt_bytes(stored, zB, sizeof zB), stored > 0 ? raw / stored : 0.0,
            pI->nFile);
    for (int k = 0; k < pI->nFile; k++) {
      const bt_ckpt_file *pF = &pM->aFile[pI->aiFile[k]];
      char zRange[64];
      snprintf(zRange, sizeof zRange, "[%llu, %llu)", (unsigned long long)pF->lo,
               (unsigned long long)pF->hi);
      fprintf(pOut, "    %-40s %-24s raw %10s  stored %10s  %s\n", pF->zFile, zRange,
              bt_fmt_bytes((double)pF->raw_bytes, zA, sizeof zA),
              bt_fmt_bytes((double)pF->stored_bytes, zB, sizeof zB),
              pF->shuffled ? BT_CKPT_CODEC_SHUF : BT_CKPT_CODEC_ZSTD);
    }
    rawAll += raw;
    storedAll += stored;
  }
  fprintf(pOut, "total: raw %s, stored %s, compression ratio %.3f\n",
          bt_fmt_bytes(rawAll, zA, sizeof zA),
          bt_fmt_bytes(storedAll, zB, sizeof zB),
          storedAll > 0 ? rawAll / storedAll : 0.0);
  int rc = BT_OK;
  for (int i = 0; i < pM->nFile && rc == BT_OK; i++) {
    /* Full check: size, stored checksum, frame, decode, raw checksum. */
    rc = load_file(pC, i, NULL, NULL);
  }
  if (rc == BT_OK)
    fprintf(pOut, "verify: PASS (%d files, every checksum matches)\n", pM->nFile);
  else
    fprintf(pOut, "verify: FAIL (%s)\n", bt_err_msg());
  bt_ckpt_close(pC);
  return rc;
}

static void inspect_usage(FILE *f) {
  fprintf(f,
          "usage: baton inspect CHECKPOINT_DIR | RUN_DIR\n"
          "\n"
          "Prints a checkpoint's step, world size at save, trainer metadata,\n"
          "items and per-file sizes and compression ratio, then decodes every\n"
          "payload and checks every checksum. Given a run directory, inspects\n"
          "its newest ckpt-* directory. (`baton inspect DATA.h5` checks a\n"
          "dataset file instead: docs/data.md.)\n"
          "Exit status: 0 verify PASS, 1 verify FAIL, 2 usage error.\n");
}

int bt_inspect_main(int argc, char **argv) {
  const char *zPath = NULL;
  static const struct option aOpt[] = {{"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "inspect", argc, argv, "h", aOpt, inspect_usage);
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    switch (ch) {
    case 'h': inspect_usage(stdout); return BT_EXIT_OK;
    case BT_CLI_ARG:
      if (zPath) return bt_cli_fail(&c, "unexpected argument '%s'", c.zArg);
      zPath = c.zArg;
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (!zPath) return bt_cli_fail(&c, "CHECKPOINT_DIR or RUN_DIR is required");
  char zMan[4096];
  snprintf(zMan, sizeof zMan, "%s/%s", zPath, BT_CKPT_MANIFEST);
  char zDir[4096];
  snprintf(zDir, sizeof zDir, "%s", zPath);
  if (!bt_path_exists(zMan)) {
    long *aStep;
    char **azName;
    int n;
    if (bt_ckpt_list(zPath, &aStep, &azName, &n) == BT_OK && n > 0) {
      snprintf(zDir, sizeof zDir, "%s/%s", zPath, azName[0]);
      printf("run directory %s: newest checkpoint is %s (%d in all)\n", zPath,
             azName[0], n);
    }
    if (aStep || azName) bt_ckpt_list_free(aStep, azName, n);
  }
  return bt_ckpt_inspect(zDir, stdout) == BT_OK ? 0 : 1;
}
