/*
 * safetensors.h: writing and (hardened) reading of .safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors):
 *   [8 bytes: N, little-endian u64][N bytes: JSON header][data section]
 * The header is a JSON object: tensor name -> {"dtype", "shape",
 * "data_offsets": [begin, end]} with offsets relative to the data section,
 * plus an optional "__metadata__" object of string -> string.
 *
 * Reader invariants (bt_st_parse checks ALL of them before any tensor byte
 * is touched; a file that passes can be indexed without further checks):
 *   1. 8 <= file size; N <= file size - 8 and N <= BT_ST_HEADER_MAX.
 *   2. The header bytes are valid UTF-8 (checked byte by byte here, not
 *      left to the JSON parser), parse as JSON and form an object.
 *   3. Every entry except __metadata__ is an object with a known dtype
 *      (F32, F16, BF16; any other is rejected by name), a shape of at most
 *      BT_ST_MAX_DIM non-negative integers whose product times the dtype
 *      size does not overflow and equals end - begin, and data_offsets of
 *      two integers with begin <= end.
 *   4. Names are unique and at most BT_ST_NAME_MAX bytes.
 *   5. Sorted by begin, the tensors tile the data section exactly: the
 *      first begins at 0, each begins where the previous ended (an earlier
 *      end means an overlap, a later one a hole), and the last ends at the
 *      end of the file. This is what the reference implementation requires.
 *   6. __metadata__, if present, is an object of strings.
 * Every error names the file and, where there is one, the tensor.
 *
 * The writer produces exactly such files: tensors in the given order,
 * contiguous, the header padded with spaces so that the data section
 * starts at an 8-byte aligned offset (as the reference writer does).
 */
#ifndef BATON_SAFETENSORS_H
#define BATON_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/bf16.h" /* bt_f32_to_bf16, bt_bf16_to_f32 */

#define BT_ST_HEADER_MAX (100u * 1024u * 1024u) /* 100 MB */
#define BT_ST_MAX_DIM 8
#define BT_ST_NAME_MAX 255

typedef enum bt_st_dtype {
  BT_ST_F32 = 0,
  BT_ST_F16 = 1,
  BT_ST_BF16 = 2,
} bt_st_dtype;

const char *bt_st_dtype_name(bt_st_dtype e);
size_t bt_st_dtype_size(bt_st_dtype e);
/* Parses "fp32"/"f32"/"float32", "fp16"/"f16"/"float16", "bf16"/"bfloat16"
 * (case-insensitive); BT_ERR with a message otherwise. */
int bt_st_dtype_parse(const char *z, bt_st_dtype *pe);

/* float -> half precision, round to nearest even (NaN stays NaN, overflow
 * becomes infinity). bf16: base/bf16.h (bt_f32_to_bf16, bt_bf16_to_f32),
 * the one definition that training's bf16 mode uses too. */
uint16_t bt_f32_to_f16(float x);
float bt_f16_to_f32(uint16_t h);

/* ---- writing ---------------------------------------------------------- */

typedef struct bt_st_wtensor {
  const char *zName;
  int ndim;
  int64_t shape[4];
  const float *pData; /* host fp32, prod(shape) elements */
} bt_st_wtensor;

/* Writes zPath (atomically: temporary name, fsync, rename) with every
 * tensor converted to eType. azMeta holds nMeta key/value pairs
 * (azMeta[2i], azMeta[2i+1]) for __metadata__. */
int bt_st_write(const char *zPath, const bt_st_wtensor *aT, int nT,
                bt_st_dtype eType, const char *const *azMeta, int nMeta);

/* ---- reading ---------------------------------------------------------- */

typedef struct bt_st_tensor {
  char zName[BT_ST_NAME_MAX + 1];
  bt_st_dtype eType;
  int ndim;
  int64_t shape[BT_ST_MAX_DIM];
  uint64_t begin, end; /* relative to the data section */
} bt_st_tensor;

typedef struct bt_st_file {
  char *zPath;                /* for messages */
  unsigned char *pBuf;        /* whole file (owned when opened by path) */
  size_t nBuf;
  int ownsBuf;
  size_t dataStart;           /* 8 + N */
  int nTensor;
  bt_st_tensor *aTensor;      /* header order */
  int nMeta;
  char **azMeta;              /* key, value, key, value... */
} bt_st_file;

/* Validates a file image (invariants above). pBuf must outlive f; it is
 * not copied. Returns BT_OK, or BT_ERR with a message naming zPath. On
 * error f holds nothing that needs freeing beyond bt_st_close(). */
int bt_st_parse(bt_st_file *f, const unsigned char *pBuf, size_t nBuf,
                const char *zPath);
/* Reads and validates zPath. */
int bt_st_open(bt_st_file *f, const char *zPath);
void bt_st_close(bt_st_file *f);

const bt_st_tensor *bt_st_find(const bt_st_file *f, const char *zName);
/* Value of a __metadata__ key, or NULL. */
const char *bt_st_meta(const bt_st_file *f, const char *zKey);
/* Copies tensor zName into dst as fp32 after checking that it exists and
 * has exactly the shape aShape[0..ndim). Errors name the file, the
 * tensor, and the expected and found shapes. */
int bt_st_read_f32(const bt_st_file *f, const char *zName, int ndim,
                   const int64_t *aShape, float *dst);

#endif /* BATON_SAFETENSORS_H */
