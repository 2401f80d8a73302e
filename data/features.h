/*
 * features.h: the one reader for files of feature rows, used by
 * `baton prepare arrays` (data/prepare.c) and `baton infer` on MLP
 * classifiers (export/infer.c).
 *
 * A feature file is a table of nRow rows of nCol numbers:
 *   - CSV: one row per line, fields separated by ','; blank lines and
 *     lines whose first non-space character is '#' are skipped. The first
 *     remaining line is a header when any of its fields is not a number
 *     (bt_features_col_name() then gives the names, trimmed of spaces and
 *     quotes). Every row has the header's (or the first row's) field count.
 *   - .npy (NumPy format 1, 2, 3): little-endian f4, f8, i4, i8 or u1, C
 *     order; the first axis is the rows, any trailing shape is flattened.
 *   - HDF5: a numeric dataset (default /val/x, else /train/x); the first
 *     dimension is the rows, the others are flattened.
 * Every value must be finite. Errors name the file and the line (CSV) or
 * row (.npy, HDF5) and the 1-based column, so a bad cell in a million-row
 * file can be found.
 *
 * CSV and .npy files are read into memory by bt_features_open (CSV values
 * parsed once, as double); HDF5 rows are read from the file on each
 * bt_features_read, under bt_h5_lock(). A handle is used by one thread.
 */
#ifndef BATON_FEATURES_H
#define BATON_FEATURES_H

#include <stddef.h>
#include <stdint.h>

typedef enum bt_features_kind {
  BT_FEATURES_AUTO, /* by the name: .h5/.hdf5 HDF5, .npy NumPy, else CSV */
  BT_FEATURES_CSV,
  BT_FEATURES_NPY,
  BT_FEATURES_HDF5
} bt_features_kind;

typedef struct bt_features bt_features;

/* Opens zPath as eKind. zDataset names the HDF5 dataset (NULL: /val/x if
 * the file has one, else /train/x); other kinds ignore it. A file without
 * a row is an error. On error *pp is NULL and the message names zPath. */
int bt_features_open(bt_features **pp, const char *zPath,
                     bt_features_kind eKind, const char *zDataset);
void bt_features_close(bt_features *p); /* NULL is fine */

int64_t bt_features_rows(const bt_features *p);
int64_t bt_features_cols(const bt_features *p);
/* The name of column i (0-based) from a CSV header; NULL without one. */
const char *bt_features_col_name(const bt_features *p, int64_t i);
/* Where row iRow lives, for messages: "f.csv: line 7", "x.npy: row 6",
 * "f.h5:/val/x: row 6" (1-based, like an editor's line numbers). */
const char *bt_features_where(const bt_features *p, int64_t iRow,
                              char *zBuf, size_t nBuf);

/* Reads rows [iRow, iRow + nRow) into aOut, row-major [nRow, nCol], as
 * float32 or as double. The range must lie inside the file (asserted). */
int bt_features_read(bt_features *p, int64_t iRow, int64_t nRow,
                     float *aOut);
int bt_features_read_f64(bt_features *p, int64_t iRow, int64_t nRow,
                         double *aOut);

#endif /* BATON_FEATURES_H */
