/*
 * test_data_features.c: the feature-file reader (data/features.h) shared
 * by `baton prepare arrays` and `baton infer`.
 *   CSV:  header detection and trimmed names, '#' comments, blank lines,
 *         CRLF; values read as float32 and double; every error names the
 *         file, the line and the column (bad number, ragged row, no rows).
 *   .npy: trailing shape flattened into columns; a row range; a
 *         non-finite value named by row and column.
 *   HDF5: the default dataset (/val/x, else /train/x) and --dataset;
 *         a row range; missing dataset, string dataset, non-finite value.
 *   AUTO: the kind follows the file name.
 * Usage: test_data_features WORKDIR
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/features.h"
#include "tests/check.h"

static const char *g_zWork;

static char *wpath(const char *zName) {
  static char z[8][4096];
  static int i;
  char *r = z[i++ % 8];
  snprintf(r, 4096, "%s/%s", g_zWork, zName);
  return r;
}

static void put(const char *zName, const char *zText) {
  bt_file_write_atomic(wpath(zName), zText, strlen(zText));
}

/* Opens zName expecting failure with every zWant in the message. */
static void open_fails(const char *zName, bt_features_kind e,
                       const char *zDset, const char *zWant1,
                       const char *zWant2) {
  bt_features *f = (bt_features *)1;
  int rc = bt_features_open(&f, wpath(zName), e, zDset);
  CHECK(rc == BT_ERR && f == NULL && strstr(bt_err_msg(), zName) &&
            strstr(bt_err_msg(), zWant1) &&
            (!zWant2 || strstr(bt_err_msg(), zWant2)),
        "%s: rc %d, message '%s', want '%s'", zName, rc, bt_err_msg(), zWant1);
  if (rc == BT_OK) bt_features_close(f);
}

static void test_csv(void) {
  put("a.csv", "# written by hand\r\n"
               " x0 , \"x1\",label\r\n"
               "\r\n"
               "1.5, -2 ,0\r\n"
               "# a comment between rows\n"
               "   \n"
               "3e2,4,1\n"
               "5,6.25,2");
  bt_features *f = NULL;
  CHECK(bt_features_open(&f, wpath("a.csv"), BT_FEATURES_AUTO, NULL) == BT_OK,
        "%s", bt_err_msg());
  if (!f) return;
  CHECK(bt_features_rows(f) == 3 && bt_features_cols(f) == 3,
        "%lld x %lld", (long long)bt_features_rows(f),
        (long long)bt_features_cols(f));
  CHECK(!strcmp(bt_features_col_name(f, 0), "x0") &&
            !strcmp(bt_features_col_name(f, 1), "x1") &&
            !strcmp(bt_features_col_name(f, 2), "label"),
        "header names '%s' '%s' '%s'", bt_features_col_name(f, 0),
        bt_features_col_name(f, 1), bt_features_col_name(f, 2));
  float x[9];
  double d[3];
  const float want[9] = {1.5f, -2, 0, 300, 4, 1, 5, 6.25f, 2};
  CHECK(bt_features_read(f, 0, 3, x) == BT_OK, "%s", bt_err_msg());
  CHECK(!memcmp(x, want, sizeof x), "values differ");
  CHECK(bt_features_read_f64(f, 2, 1, d) == BT_OK && d[0] == 5 &&
            d[1] == 6.25 && d[2] == 2,
        "row 3 as double: %g %g %g", d[0], d[1], d[2]);
  char z[4400];
  CHECK(strstr(bt_features_where(f, 1, z, sizeof z), "a.csv: line 7"),
        "where: '%s'", z);
  bt_features_close(f);

  put("nohdr.csv", "1,2\n3,4\n");
  CHECK(bt_features_open(&f, wpath("nohdr.csv"), BT_FEATURES_CSV, NULL) ==
                BT_OK &&
            bt_features_col_name(f, 0) == NULL && bt_features_rows(f) == 2,
        "headerless CSV: %s", bt_err_msg());
  bt_features_close(f);

  put("bad.csv", "1,2,3\n4,5,6\n7,x8,9\n");
  open_fails("bad.csv", BT_FEATURES_CSV, NULL, "line 3 column 2", "'x8'");
  put("ragged.csv", "a,b,c\n1,2,3\n4,5\n");
  open_fails("ragged.csv", BT_FEATURES_CSV, NULL,
             "line 3 has 2 columns, expected 3", NULL);
  put("nan.csv", "1,2\n3,nan\n");
  open_fails("nan.csv", BT_FEATURES_CSV, NULL, "line 2 column 2", NULL);
  put("empty.csv", "a,b\n# nothing\n\n");
  open_fails("empty.csv", BT_FEATURES_CSV, NULL, "has no rows", NULL);
  open_fails("missing.csv", BT_FEATURES_CSV, NULL, "missing.csv", NULL);
  /* A value that is finite as double but not as float32. */
  put("big.csv", "1,1e300\n");
  CHECK(bt_features_open(&f, wpath("big.csv"), BT_FEATURES_CSV, NULL) ==
            BT_OK,
        "%s", bt_err_msg());
  CHECK(f && bt_features_read(f, 0, 1, x) == BT_ERR &&
            strstr(bt_err_msg(), "big.csv: line 1 column 2") &&
            strstr(bt_err_msg(), "not finite"),
        "float overflow: '%s'", bt_err_msg());
  bt_features_close(f);
}

/* A v1 .npy of f8 values with the given shape text. */
static void put_npy(const char *zName, const char *zShape, const double *a,
                    size_t n) {
  char zHdr[128];
  int nH = snprintf(zHdr, sizeof zHdr,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }",
                    zShape);
  int pad = 64 - (10 + nH + 1) % 64;
  size_t nAll = 10 + (size_t)nH + (size_t)pad + 1 + n * 8;
  unsigned char *p = calloc(1, nAll);
  memcpy(p, "\x93NUMPY\x01\x00", 8);
  p[8] = (unsigned char)((nH + pad + 1) & 0xff);
  p[9] = (unsigned char)((nH + pad + 1) >> 8);
  memcpy(p + 10, zHdr, (size_t)nH);
  memset(p + 10 + nH, ' ', (size_t)pad);
  p[10 + nH + pad] = '\n';
  memcpy(p + 10 + nH + pad + 1, a, n * 8);
  bt_file_write_atomic(wpath(zName), p, nAll);
  free(p);
}

static void test_npy(void) {
  double a[24];
  for (int i = 0; i < 24; i++) a[i] = i * 0.5;
  put_npy("x.npy", "(4, 2, 3)", a, 24);
  bt_features *f = NULL;
  CHECK(bt_features_open(&f, wpath("x.npy"), BT_FEATURES_AUTO, NULL) == BT_OK,
        "%s", bt_err_msg());
  if (!f) return;
  CHECK(bt_features_rows(f) == 4 && bt_features_cols(f) == 6, "shape");
  float x[12];
  CHECK(bt_features_read(f, 1, 2, x) == BT_OK && x[0] == 3.0f &&
            x[11] == 8.5f,
        "rows 2-3: %g .. %g", x[0], x[11]);
  bt_features_close(f);
  a[2 * 6 + 4] = NAN; /* row 3, column 5 */
  put_npy("nan.npy", "(4, 6)", a, 24);
  CHECK(bt_features_open(&f, wpath("nan.npy"), BT_FEATURES_NPY, NULL) ==
            BT_OK,
        "%s", bt_err_msg());
  CHECK(f && bt_features_read(f, 0, 4, (float[24]){0}) == BT_ERR &&
            strstr(bt_err_msg(), "nan.npy: row 3 column 5"),
        "non-finite: '%s'", bt_err_msg());
  bt_features_close(f);
  put("notnpy.npy", "1,2\n");
  open_fails("notnpy.npy", BT_FEATURES_AUTO, NULL, "bad magic", NULL);
}

static void h5_put(hid_t h, const char *zName, hid_t type, int rank,
                   const hsize_t *dims, const void *p) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t ds = H5Dcreate2(h, zName, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, p);
  H5Dclose(ds);
  H5Pclose(lcpl);
  H5Sclose(sp);
}

static void test_h5(void) {
  double a[15];
  for (int i = 0; i < 15; i++) a[i] = i + 0.25;
  int32_t t[10];
  for (int i = 0; i < 10; i++) t[i] = 100 + i;
  hid_t h = H5Fcreate(wpath("x.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  h5_put(h, "/val/x", H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 3}, a);
  h5_put(h, "/train/x", H5T_NATIVE_INT32, 3, (hsize_t[]){5, 1, 2}, t);
  a[7] = INFINITY; /* row 3, column 2 */
  h5_put(h, "/inf", H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 3}, a);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 4);
  h5_put(h, "/names", st, 1, (hsize_t[]){2}, "abcdefgh");
  H5Tclose(st);
  H5Fclose(h);

  bt_features *f = NULL;
  CHECK(bt_features_open(&f, wpath("x.h5"), BT_FEATURES_AUTO, NULL) == BT_OK,
        "%s", bt_err_msg());
  if (!f) return;
  float x[15];
  CHECK(bt_features_rows(f) == 5 && bt_features_cols(f) == 3 &&
            bt_features_read(f, 3, 2, x) == BT_OK && x[0] == 9.25f &&
            x[5] == 14.25f,
        "/val/x rows 4-5: %s", bt_err_msg());
  bt_features_close(f);
  double d[4];
  CHECK(bt_features_open(&f, wpath("x.h5"), BT_FEATURES_HDF5, "/train/x") ==
                BT_OK &&
            bt_features_cols(f) == 2 && bt_features_read_f64(f, 1, 2, d) ==
                BT_OK && d[0] == 102 && d[3] == 105,
        "/train/x: %s", bt_err_msg());
  bt_features_close(f);
  CHECK(bt_features_open(&f, wpath("x.h5"), BT_FEATURES_HDF5, "/inf") ==
            BT_OK,
        "%s", bt_err_msg());
  CHECK(f && bt_features_read(f, 0, 5, x) == BT_ERR &&
            strstr(bt_err_msg(), "x.h5:/inf: row 3 column 2"),
        "non-finite: '%s'", bt_err_msg());
  bt_features_close(f);
  open_fails("x.h5", BT_FEATURES_HDF5, "/nope", "no dataset /nope", NULL);
  open_fails("x.h5", BT_FEATURES_HDF5, "/names", "not a numeric dataset",
             NULL);
  open_fails("a.csv", BT_FEATURES_HDF5, NULL, "cannot open as HDF5", NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  g_zWork = argv[1];
  bt_mkdir_p(g_zWork);
  test_csv();
  test_npy();
  test_h5();
  return CHECK_DONE();
}
