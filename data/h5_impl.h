/*
 * h5_impl.h: HDF5 helpers shared by the loader's source (h5.c) and the
 * dataset check (check.c), so that the start-up check, `baton inspect
 * DATA.h5` and the reads during training report the same problem with the
 * same words. Private to data/. Every function is called with bt_h5_lock()
 * held (loader.h) and records its error with bt_err_set().
 */
#ifndef BATON_H5_IMPL_H
#define BATON_H5_IMPL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* "uint16", "int64", "float32", "string", ... for messages. */
const char *bt_h5_type_name(hid_t t, char *z, size_t nz);

/* Integer attribute zName of the root group: 0 absent (*pv kept), 1 read,
 * BT_ERR unreadable or not an integer. */
int bt_h5_attr_int(hid_t hFile, const char *zPath, const char *zName,
                   int64_t *pv);

/* baton_format_version: absent reads as 1 (with bNote, a note logged once
 * per process; inspect prints its own line); any value but 1 is an error. */
int bt_h5_check_version(hid_t hFile, const char *zPath, int bNote);

/* The limit values are checked against (vocabulary, classes) from the
 * file's attribute zAttr (attr <= 0: absent) and config key zKey (cfg 0:
 * unset): the attribute when present, which must not exceed a set config
 * value; else the config. Neither is an error naming both. */
int bt_h5_limit(const char *zPath, const char *zAttr, int64_t attr, int cfg,
                const char *zKey, int *pLimit);

/* The messages of a bad value (each returns BT_ERR): token id v at element
 * idx negative or >= limit; label v of row idx negative or >= limit; a
 * non-finite feature v at (row, col) of a width-D dataset. */
int bt_h5_token_error(const char *zPath, const char *zDset, int64_t v,
                      int64_t idx, int limit);
int bt_h5_label_error(const char *zPath, const char *zDset, int64_t v,
                      int64_t idx, int limit);
int bt_h5_feature_error(const char *zPath, const char *zDset, double v,
                        int64_t row, int64_t col, int64_t D);

#endif /* BATON_H5_IMPL_H */
