/*
 * features.c: see features.h for the contract.
 *
 * Invariants of an open handle:
 *   - nRow >= 1 and nCol >= 1;
 *   - CSV: aVal holds nRow * nCol finite doubles and aLine the file line of
 *     each row; azName is NULL or holds nCol header names;
 *   - .npy: pBuf is the whole file and pData points at nRow * nCol values
 *     of (kind, size) inside it (the header's promise was checked);
 *   - HDF5: hFile and hDset stay open until bt_features_close.
 * Values of .npy and HDF5 files are checked for finiteness when read,
 * CSV values when parsed (so the message can name the line).
 */
#include "data/features.h"

#include <ctype.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader.h"

struct bt_features {
  bt_features_kind eKind;
  char zPath[4096];
  int64_t nRow, nCol;
  /* CSV */
  double *aVal;
  int64_t *aLine;
  char **azName;
  /* .npy */
  char *pBuf;
  const unsigned char *pData;
  char kind; /* 'f', 'i', 'u' */
  int size;
  /* HDF5 */
  char zDset[256];
  hid_t hFile, hDset;
};

/* ---- CSV -------------------------------------------------------------- */

/* Splits zLine in place at each ','; az (nMax entries) gets the fields.
 * Returns the field count. */
static int64_t csv_split(char *zLine, char **az, int64_t nMax) {
  int64_t n = 0;
  for (char *p = zLine;;) {
    if (n < nMax) az[n] = p;
    n++;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = 0;
    p = c + 1;
  }
  return n;
}

/* 1 if z (spaces around it allowed) is one whole number. */
static int csv_number(const char *z, double *pv) {
  while (isspace((unsigned char)*z)) z++;
  if (!*z) return 0;
  char *end;
  *pv = strtod(z, &end);
  while (isspace((unsigned char)*end)) end++;
  return *end == 0;
}

/* Keeps the header's names, trimmed of spaces and quotes. */
static int csv_header(bt_features *p, char **az, int64_t nf) {
  p->azName = bt_calloc((size_t)nf, sizeof(char *), "CSV header");
  if (!p->azName) return BT_ERR;
  for (int64_t i = 0; i < nf; i++) {
    const char *h = az[i];
    while (isspace((unsigned char)*h) || *h == '"') h++;
    size_t n = strlen(h);
    while (n && (isspace((unsigned char)h[n - 1]) || h[n - 1] == '"')) n--;
    p->azName[i] = strndup(h, n);
    if (!p->azName[i]) return bt_err_set("out of memory reading %s", p->zPath);
  }
  return BT_OK;
}

/* Appends one data row (nf == nCol fields) from line lineNo. */
static int csv_row(bt_features *p, char **az, int64_t lineNo, int64_t *pCap) {
  if (p->nRow == *pCap) {
    *pCap = *pCap ? 2 * *pCap : 1024;
    double *aVal = realloc(p->aVal, (size_t)(*pCap * p->nCol) * sizeof(double));
    if (aVal) p->aVal = aVal;
    int64_t *aLine = realloc(p->aLine, (size_t)*pCap * sizeof(int64_t));
    if (aLine) p->aLine = aLine;
    if (!aVal || !aLine)
      return bt_err_set("out of memory reading %s", p->zPath);
  }
  double *aRow = p->aVal + p->nRow * p->nCol;
  for (int64_t i = 0; i < p->nCol; i++)
    if (!csv_number(az[i], &aRow[i]) || !isfinite(aRow[i]))
      return bt_err_set("%s: line %lld column %lld: '%s' is not a number",
                        p->zPath, (long long)lineNo, (long long)i + 1, az[i]);
  p->aLine[p->nRow++] = lineNo;
  return BT_OK;
}

/* Parses the CSV text z (modified in place). */
static int csv_parse(bt_features *p, char *z) {
  int64_t nAz = 0, cap = 0, lineNo = 0;
  char **az = NULL;
  int rc = BT_OK;
  p->nCol = -1;
  for (char *line = z; line && *line && rc == BT_OK;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    char *next = nl ? nl + 1 : NULL;
    lineNo++;
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r') line[len - 1] = 0;
    const char *q = line;
    while (isspace((unsigned char)*q)) q++;
    if (*q && *q != '#') {
      int64_t nf = 1;
      for (const char *c = line; (c = strchr(c, ',')); c++) nf++;
      if (nf > nAz) {
        char **b = realloc(az, (size_t)nf * sizeof(char *));
        if (!b) {
          rc = bt_err_set("out of memory reading %s", p->zPath);
          break;
        }
        az = b;
        nAz = nf;
      }
      csv_split(line, az, nAz);
      double v;
      int bHdr = 0;
      if (p->nCol < 0) /* the first line: a header or data? */
        for (int64_t i = 0; i < nf; i++) bHdr |= !csv_number(az[i], &v);
      if (p->nCol < 0) p->nCol = nf;
      if (bHdr) rc = csv_header(p, az, nf);
      else if (nf != p->nCol)
        rc = bt_err_set("%s: line %lld has %lld columns, expected %lld",
                        p->zPath, (long long)lineNo, (long long)nf,
                        (long long)p->nCol);
      else rc = csv_row(p, az, lineNo, &cap);
    }
    line = next;
  }
  free(az);
  return rc;
}

static int csv_open(bt_features *p) {
  size_t nByte;
  char *z = bt_file_read_all(p->zPath, &nByte);
  if (!z) return BT_ERR;
  int rc = csv_parse(p, z);
  free(z);
  return rc;
}

/* ---- .npy ------------------------------------------------------------- */

/* Finds key zKey ('k' or "k") in the header dict; returns a pointer just
 * after its ':' (spaces skipped), or NULL. */
static const char *npy_key(const char *zHdr, const char *zKey) {
  char z1[64], z2[64];
  snprintf(z1, sizeof z1, "'%s'", zKey);
  snprintf(z2, sizeof z2, "\"%s\"", zKey);
  const char *p = strstr(zHdr, z1);
  if (!p) p = strstr(zHdr, z2);
  if (!p) return NULL;
  p = strchr(p + strlen(z1), ':');
  if (!p) return NULL;
  p++;
  while (*p == ' ') p++;
  return p;
}

/* The 'descr' entry: sets kind and size. */
static int npy_descr(bt_features *p, const char *zHdr) {
  const char *q = npy_key(zHdr, "descr");
  if (!q || (*q != '\'' && *q != '"'))
    return bt_err_set("%s: .npy header has no simple 'descr' (structured "
                      "arrays are not supported): %s",
                      p->zPath, zHdr);
  char zDescr[16] = "";
  char cQuote = *q++;
  size_t n = 0;
  while (*q && *q != cQuote && n + 1 < sizeof zDescr) zDescr[n++] = *q++;
  zDescr[n] = 0;
  if (strlen(zDescr) < 3 || !strchr("<|=", zDescr[0]))
    return bt_err_set("%s: dtype '%s' is not supported (big-endian or "
                      "unknown); use little-endian f4, f8, i4, i8 or u1",
                      p->zPath, zDescr);
  p->kind = zDescr[1];
  p->size = atoi(zDescr + 2);
  if (!((p->kind == 'f' && (p->size == 4 || p->size == 8)) ||
        (p->kind == 'i' && (p->size == 4 || p->size == 8)) ||
        (p->kind == 'u' && p->size == 1)))
    return bt_err_set("%s: dtype '%s' is not supported; use f4, f8, i4, i8 "
                      "or u1",
                      p->zPath, zDescr);
  return BT_OK;
}

/* The 'fortran_order' and 'shape' entries: sets nRow and nCol (the
 * trailing axes flattened); *pCount gets the element count. */
static int npy_shape(bt_features *p, const char *zHdr, int64_t *pCount) {
  const char *q = npy_key(zHdr, "fortran_order");
  if (!q || strncmp(q, "False", 5) != 0)
    return bt_err_set("%s: only C-order arrays are supported (fortran_order "
                      "must be False; save with np.ascontiguousarray)",
                      p->zPath);
  q = npy_key(zHdr, "shape");
  if (!q || *q != '(')
    return bt_err_set("%s: .npy header has no shape", p->zPath);
  q++;
  int rank = 0;
  int64_t count = 1;
  for (;;) {
    while (*q == ' ' || *q == ',') q++;
    if (*q == ')') break;
    char *end;
    long long v = strtoll(q, &end, 10);
    if (end == q || v < 0 || rank >= 16)
      return bt_err_set("%s: cannot parse the shape in the .npy header",
                        p->zPath);
    if (rank++ == 0) p->nRow = v;
    if (v > 0 && count > INT64_MAX / v)
      return bt_err_set("%s: shape is too large", p->zPath);
    count *= v;
    q = end;
    while (*q == ' ' || *q == 'L') q++;
  }
  if (rank == 0) return bt_err_set("%s: is a scalar; expected rows", p->zPath);
  p->nCol = p->nRow > 0 ? count / p->nRow : 1;
  *pCount = count;
  return BT_OK;
}

static int npy_open(bt_features *p) {
  size_t nBuf;
  p->pBuf = bt_file_read_all(p->zPath, &nBuf);
  if (!p->pBuf) return BT_ERR;
  const unsigned char *u = (const unsigned char *)p->pBuf;
  if (nBuf < 10 || memcmp(u, "\x93NUMPY", 6) != 0)
    return bt_err_set("%s: not a .npy file (bad magic)", p->zPath);
  size_t hlen, hoff;
  if (u[6] == 1) {
    hlen = (size_t)u[8] | ((size_t)u[9] << 8);
    hoff = 10;
  } else if (u[6] == 2 || u[6] == 3) {
    if (nBuf < 12) return bt_err_set("%s: truncated .npy header", p->zPath);
    hlen = (size_t)u[8] | ((size_t)u[9] << 8) | ((size_t)u[10] << 16) |
           ((size_t)u[11] << 24);
    hoff = 12;
  } else {
    return bt_err_set("%s: .npy format version %d is not supported (1, 2, 3)",
                      p->zPath, u[6]);
  }
  if (hoff + hlen > nBuf)
    return bt_err_set("%s: truncated .npy header", p->zPath);
  char *zHdr = bt_malloc(hlen + 1, "npy header");
  if (!zHdr) return BT_ERR;
  memcpy(zHdr, u + hoff, hlen);
  zHdr[hlen] = 0;
  int64_t count = 0;
  int rc = npy_descr(p, zHdr);
  if (rc == BT_OK) rc = npy_shape(p, zHdr, &count);
  free(zHdr);
  if (rc != BT_OK) return rc;
  size_t need = (size_t)count * (size_t)p->size;
  if (nBuf - hoff - hlen < need)
    return bt_err_set("%s: truncated: the header promises %zu data bytes, the "
                      "file has %zu",
                      p->zPath, need, nBuf - hoff - hlen);
  p->pData = u + hoff + hlen;
  return BT_OK;
}

/* Element i (row-major) as a double. */
static double npy_get(const bt_features *p, int64_t i) {
  const unsigned char *q = p->pData + (size_t)i * (size_t)p->size;
  if (p->kind == 'f' && p->size == 4) {
    float f;
    memcpy(&f, q, 4);
    return f;
  } else if (p->kind == 'f') {
    double d;
    memcpy(&d, q, 8);
    return d;
  } else if (p->kind == 'i' && p->size == 4) {
    int32_t v;
    memcpy(&v, q, 4);
    return v;
  } else if (p->kind == 'i') {
    int64_t v;
    memcpy(&v, q, 8);
    return (double)v;
  }
  return q[0];
}

/* ---- HDF5 ------------------------------------------------------------- */

static int h5_open(bt_features *p, const char *zDataset) {
  int rc = BT_ERR;
  hid_t sp = -1;
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  p->hFile = H5Fopen(p->zPath, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (p->hFile < 0) {
    bt_err_set("%s: cannot open as HDF5", p->zPath);
    goto out;
  }
  if (!zDataset)
    zDataset = H5Lexists(p->hFile, "/val", H5P_DEFAULT) > 0 &&
                       H5Lexists(p->hFile, "/val/x", H5P_DEFAULT) > 0
                   ? "/val/x"
                   : "/train/x";
  snprintf(p->zDset, sizeof p->zDset, "%s", zDataset);
  p->hDset = H5Dopen2(p->hFile, zDataset, H5P_DEFAULT);
  if (p->hDset < 0) {
    bt_err_set("%s: no dataset %s", p->zPath, zDataset);
    goto out;
  }
  sp = H5Dget_space(p->hDset);
  int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
  hsize_t dims[8];
  if (nd < 1 || nd > 8 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
    bt_err_set("%s:%s: unsupported dataspace", p->zPath, p->zDset);
    goto out;
  }
  hid_t t = H5Dget_type(p->hDset);
  H5T_class_t eClass = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  if (t >= 0) H5Tclose(t);
  if (eClass != H5T_INTEGER && eClass != H5T_FLOAT) {
    bt_err_set("%s:%s: not a numeric dataset", p->zPath, p->zDset);
    goto out;
  }
  p->nRow = (int64_t)dims[0];
  p->nCol = 1;
  for (int i = 1; i < nd; i++) p->nCol *= (int64_t)dims[i];
  rc = BT_OK;
out:
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

/* Rows [iRow, iRow + nRow) as memType into pOut. */
static int h5_read(bt_features *p, int64_t iRow, int64_t nRow, hid_t memType,
                   void *pOut) {
  int rc = BT_OK;
  hid_t fs = -1, ms = -1;
  hsize_t nMem = (hsize_t)(nRow * p->nCol);
  bt_h5_lock();
  fs = H5Dget_space(p->hDset);
  int nd = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
  hsize_t aStart[8] = {0}, aCount[8];
  if (nd >= 1 && nd <= 8) H5Sget_simple_extent_dims(fs, aCount, NULL);
  aStart[0] = (hsize_t)iRow;
  aCount[0] = (hsize_t)nRow;
  ms = H5Screate_simple(1, &nMem, NULL);
  if (nd < 1 || nd > 8 || ms < 0 ||
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, aStart, NULL, aCount, NULL) < 0 ||
      H5Dread(p->hDset, memType, ms, fs, H5P_DEFAULT, pOut) < 0)
    rc = bt_err_set("%s:%s: reading rows %lld-%lld failed (not a numeric "
                    "dataset?)",
                    p->zPath, p->zDset, (long long)iRow + 1,
                    (long long)(iRow + nRow));
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  bt_h5_unlock();
  return rc;
}

/* ---- the handle ------------------------------------------------------- */

static bt_features_kind kind_of(const char *zPath) {
  size_t n = strlen(zPath);
  if ((n > 3 && !strcmp(zPath + n - 3, ".h5")) ||
      (n > 5 && !strcmp(zPath + n - 5, ".hdf5")))
    return BT_FEATURES_HDF5;
  if (n > 4 && !strcmp(zPath + n - 4, ".npy")) return BT_FEATURES_NPY;
  return BT_FEATURES_CSV;
}

int bt_features_open(bt_features **pp, const char *zPath,
                     bt_features_kind eKind, const char *zDataset) {
  *pp = NULL;
  bt_features *p = bt_calloc(1, sizeof *p, "feature file");
  if (!p) return BT_ERR;
  p->hFile = p->hDset = -1;
  p->eKind = eKind == BT_FEATURES_AUTO ? kind_of(zPath) : eKind;
  snprintf(p->zPath, sizeof p->zPath, "%s", zPath);
  int rc = p->eKind == BT_FEATURES_CSV   ? csv_open(p)
           : p->eKind == BT_FEATURES_NPY ? npy_open(p)
                                         : h5_open(p, zDataset);
  if (rc == BT_OK && (p->nRow < 1 || p->nCol < 1))
    rc = bt_err_set("%s: has no rows", zPath);
  if (rc != BT_OK) {
    bt_features_close(p);
    return BT_ERR;
  }
  *pp = p;
  return BT_OK;
}

void bt_features_close(bt_features *p) {
  if (!p) return;
  if (p->azName)
    for (int64_t i = 0; i < p->nCol; i++) free(p->azName[i]);
  free(p->azName);
  free(p->aVal);
  free(p->aLine);
  free(p->pBuf);
  if (p->hDset >= 0 || p->hFile >= 0) {
    bt_h5_lock();
    if (p->hDset >= 0) H5Dclose(p->hDset);
    if (p->hFile >= 0) H5Fclose(p->hFile);
    bt_h5_unlock();
  }
  free(p);
}

int64_t bt_features_rows(const bt_features *p) { return p->nRow; }
int64_t bt_features_cols(const bt_features *p) { return p->nCol; }

const char *bt_features_col_name(const bt_features *p, int64_t i) {
  BT_ASSERT(i >= 0 && i < p->nCol);
  return p->azName ? p->azName[i] : NULL;
}

const char *bt_features_where(const bt_features *p, int64_t iRow,
                              char *zBuf, size_t nBuf) {
  if (p->eKind == BT_FEATURES_CSV)
    snprintf(zBuf, nBuf, "%s: line %lld", p->zPath, (long long)p->aLine[iRow]);
  else if (p->eKind == BT_FEATURES_NPY)
    snprintf(zBuf, nBuf, "%s: row %lld", p->zPath, (long long)iRow + 1);
  else
    snprintf(zBuf, nBuf, "%s:%s: row %lld", p->zPath, p->zDset,
             (long long)iRow + 1);
  return zBuf;
}

/* The first non-finite value of a block just read, named by row and
 * column; BT_OK if there is none. */
static int check_finite(const bt_features *p, int64_t iRow, int64_t n,
                        const float *aF, const double *aD) {
  for (int64_t i = 0; i < n; i++) {
    double v = aF ? (double)aF[i] : aD[i];
    if (isfinite(v)) continue;
    char zWhere[4400];
    return bt_err_set("%s column %lld: value %g is not finite",
                      bt_features_where(p, iRow + i / p->nCol, zWhere,
                                        sizeof zWhere),
                      (long long)(i % p->nCol) + 1, v);
  }
  return BT_OK;
}

/* Rows [iRow, iRow + nRow) into aF (float) or aD (double). */
static int features_read(bt_features *p, int64_t iRow, int64_t nRow,
                         float *aF, double *aD) {
  BT_ASSERT(iRow >= 0 && nRow >= 0 && iRow + nRow <= p->nRow);
  int64_t i0 = iRow * p->nCol, n = nRow * p->nCol;
  if (p->eKind == BT_FEATURES_HDF5) {
    int rc = aF ? h5_read(p, iRow, nRow, H5T_NATIVE_FLOAT, aF)
                : h5_read(p, iRow, nRow, H5T_NATIVE_DOUBLE, aD);
    return rc == BT_OK ? check_finite(p, iRow, n, aF, aD) : rc;
  }
  for (int64_t i = 0; i < n; i++) {
    double v = p->eKind == BT_FEATURES_CSV ? p->aVal[i0 + i]
                                           : npy_get(p, i0 + i);
    if (aF) aF[i] = (float)v;
    else aD[i] = v;
  }
  /* CSV values were checked when parsed (as doubles), but a double can
   * overflow float32; .npy values are checked here. */
  return check_finite(p, iRow, n, aF, aD);
}

int bt_features_read(bt_features *p, int64_t iRow, int64_t nRow,
                     float *aOut) {
  return features_read(p, iRow, nRow, aOut, NULL);
}

int bt_features_read_f64(bt_features *p, int64_t iRow, int64_t nRow,
                         double *aOut) {
  return features_read(p, iRow, nRow, NULL, aOut);
}
