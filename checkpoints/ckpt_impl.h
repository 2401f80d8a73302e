/*
 * ckpt_impl.h: private to checkpoints/: the codec and the manifest model
 * shared by the writer (writer.c), the reader (reader.c) and the fuzz
 * driver. Nothing outside checkpoints/ and tests/ckpt/ includes it.
 *
 * Limits below are part of the on-disk format (docs/checkpoints.md): a
 * reader rejects a manifest that exceeds them instead of allocating what a
 * hostile file asks for.
 */
#ifndef BATON_CKPT_IMPL_H
#define BATON_CKPT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

#define BT_CKPT_FORMAT_NAME "baton-checkpoint"
#define BT_CKPT_MANIFEST "manifest.json"
#define BT_CKPT_LATEST "latest"
/* checkpoint.keep_best: "ckpt-<step>\n" of the best checkpoint, which
 * retention never deletes. */
#define BT_CKPT_BEST "best"
#define BT_CKPT_TMP_PREFIX ".tmp-ckpt-"
#define BT_CKPT_DIR_PREFIX "ckpt-"
/* A checkpoint that a resume rejected is renamed to this prefix + its name
 * (bt_ckpt_set_aside), so that no later save or retention deletes it. */
#define BT_CKPT_REJECTED_PREFIX "rejected-"
/* Oldest format version this reader still reads (version 1 has no
 * manifest checksum; docs/checkpoints.md). */
#define BT_CKPT_FORMAT_MIN_VERSION 1
/* The manifest's own checksum (format version 2): the last member of the
 * top-level object, 16 lowercase hex digits of the XXH64 (seed 0) of the
 * whole manifest.json with those 16 digits read as '0' characters. */
#define BT_CKPT_SUM_KEY "manifest_xxh64"

#define BT_CKPT_MAX_MANIFEST ((size_t)256 << 20) /* bytes of manifest.json */
#define BT_CKPT_MAX_ITEMS 4096
#define BT_CKPT_MAX_FILES (1 << 22)
#define BT_CKPT_MAX_NAME 64          /* item name, characters */
#define BT_CKPT_MAX_FILENAME 200     /* payload file name, characters */
#define BT_CKPT_MAX_WORLD (1 << 20)
/* Largest element count, offset or step: below 10^15 cJSON prints an
 * integral double exactly (it uses %1.15g), and 10^15 floats is 4 PB. */
#define BT_CKPT_MAX_COUNT ((uint64_t)999999999999999)
/* Raw bytes of one payload file. The writer cuts chunks far smaller
 * (BT_CKPT_CHUNK_DEFAULT); the bound stops a hostile manifest from making
 * the reader allocate terabytes. */
#ifndef BT_CKPT_MAX_FILE_RAW
#define BT_CKPT_MAX_FILE_RAW ((uint64_t)1 << 32)
#endif
#define BT_CKPT_CHUNK_DEFAULT ((size_t)64 << 20)

#define BT_CKPT_CODEC_ZSTD "zstd"
#define BT_CKPT_CODEC_SHUF "shuffle4+zstd"

/* ---- codec (codec.c) --------------------------------------------------- */

/* Byte-grouping filter for 4-byte elements: dst holds every element's byte
 * 0, then every byte 1, byte 2, byte 3. nByte must be a multiple of 4;
 * src and dst must not overlap. */
void bt_ckpt_shuffle4(const void *pSrc, void *pDst, size_t nByte);
void bt_ckpt_unshuffle4(const void *pSrc, void *pDst, size_t nByte);

/* Worst-case compressed size of nByte raw bytes (ZSTD_compressBound). */
size_t bt_ckpt_compress_bound(size_t nByte);

/* Compresses src (already shuffled if wanted) into dst (capacity nDstCap
 * >= bt_ckpt_compress_bound(nSrc)) as one zstd frame that records its
 * content size. pCctx is a ZSTD_CCtx* reused across calls (NULL: a
 * temporary one). *pnOut gets the frame size. */
int bt_ckpt_compress(void *pCctx, const void *pSrc, size_t nSrc, int level,
                     void *pDst, size_t nDstCap, size_t *pnOut);

/* Decompresses one zstd frame of nSrc bytes into dst, which must receive
 * exactly nRaw bytes: the frame's declared content size must equal nRaw
 * (unknown or different sizes are rejected before anything is written),
 * the frame must be the only thing in src, and the decoded size must equal
 * nRaw. zWhat names the file in error messages. pDctx: ZSTD_DCtx* or NULL. */
int bt_ckpt_decompress(void *pDctx, const void *pSrc, size_t nSrc,
                       void *pDst, size_t nRaw, const char *zWhat);

/* ---- names ------------------------------------------------------------- */

/* 1 if z is a safe item name: 1..BT_CKPT_MAX_NAME of [A-Za-z0-9_.-], not
 * starting with '.'. */
int bt_ckpt_name_ok(const char *z);
/* 1 if z is a safe payload file name: 1..BT_CKPT_MAX_FILENAME of
 * [A-Za-z0-9_.+-], no '/', not starting with '.', not "manifest.json". */
int bt_ckpt_filename_ok(const char *z);
/* Element size of a dtype: 4 (F32) or 1 (BYTES); 0 if unknown. */
size_t bt_ckpt_dtype_size(bt_ckpt_dtype e);
const char *bt_ckpt_dtype_name(bt_ckpt_dtype e);
/* Parses "ckpt-<digits>" (at least one digit, nothing else); 1 and *pStep
 * on success. */
int bt_ckpt_parse_dirname(const char *zName, long *pStep);
/* Removes a directory tree (no symlinks followed). */
int bt_ckpt_rmtree(const char *zPath);
/* Lists RUN/ckpt-<digits> directories (anything else of that name, such
 * as a regular file, is not a checkpoint: never read, never deleted),
 * newest step first (steps and names in
 * two arrays of *pn; free with bt_ckpt_list_free). A missing RUN is an
 * empty list. */
int bt_ckpt_list(const char *zRunDir, long **paStep, char ***pazName, int *pn);
void bt_ckpt_list_free(long *aStep, char **azName, int n);
/* Renames RUN/zName to RUN/rejected-zName (or the first free
 * rejected-zName.<k>: never over another one), fsync left to the caller,
 * and warns "RUN/zName <zWhy>; kept as ...". */
int bt_ckpt_set_aside_one(const char *zRunDir, const char *zName,
                          const char *zWhy);

/* ---- the manifest's own checksum ---------------------------------------- */

/* Offset in zText (n bytes) of the 16 characters of the value of the last
 * "manifest_xxh64" key: 1 found (*pAt set), 0 not found. */
int bt_ckpt_manifest_sum_find(const char *zText, size_t n, size_t *pAt);
/* *pOut = XXH64 of zText with the 16 characters at `at` read as '0'. */
int bt_ckpt_manifest_sum(const char *zText, size_t n, size_t at,
                         uint64_t *pOut);

/* ---- the manifest, parsed --------------------------------------------- */

typedef struct bt_ckpt_file {
  char *zFile;         /* payload file name inside the directory */
  int iItem;           /* index into aItem */
  uint64_t lo, hi;     /* element range it holds */
  uint64_t raw_bytes;  /* (hi - lo) * element size */
  uint64_t stored_bytes;
  int shuffled;        /* codec "shuffle4+zstd" */
  uint64_t xxh64;      /* of the stored bytes */
  int has_raw_xxh64;
  uint64_t raw_xxh64;  /* of the raw (unshuffled) bytes */
  int verified;        /* stored checksum already checked */
} bt_ckpt_file;

typedef struct bt_ckpt_item_info {
  char *zName;
  bt_ckpt_dtype eType;
  uint64_t total;
  int *aiFile;         /* files of this item, sorted by lo (they tile) */
  int nFile;
} bt_ckpt_item_info;

/* Parses and validates manifest text (nByte bytes, need not be
 * NUL-terminated). On success fills the reader's manifest fields; on
 * failure returns BT_ERR with a message naming the offending field. Used
 * by bt_ckpt_open and the fuzz driver. */
typedef struct bt_ckpt_name_idx {
  const char *zName; /* points into aItem[idx].zName */
  int idx;
} bt_ckpt_name_idx;

typedef struct bt_ckpt_manifest {
  int version;         /* format_version */
  long step;
  int world;
  char *zMeta;         /* compact JSON text of "meta" */
  char *zCreated;
  char *zBatonVersion;
  bt_ckpt_item_info *aItem;
  int nItem;
  bt_ckpt_name_idx *aByName; /* items sorted by name (lookup in log n) */
  bt_ckpt_file *aFile;
  int nFile;
} bt_ckpt_manifest;

int bt_ckpt_manifest_parse(bt_ckpt_manifest *pM, const char *zText,
                           size_t nByte);
/* bt_ckpt_open with the manifest text given instead of read from
 * zDir/manifest.json (fuzz driver: no file write per input). */
int bt_ckpt_open_text(bt_ckpt **ppC, const char *zDir, const char *zText,
                      size_t nByte, int verify);
void bt_ckpt_manifest_clear(bt_ckpt_manifest *pM);

#endif /* BATON_CKPT_IMPL_H */
