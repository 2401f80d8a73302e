/*
 * tokenizer_h5.c: reads the tokenizer files that `prepare text
 * --tokenizer` stored in a prepared HDF5 file (layout in
 * data/tokenizer.h and docs/data.md), and loads a tokenizer from them.
 *
 * Every HDF5 call holds bt_h5_lock() (data/h5.c, thread rule 1) and is
 * checked; a file without /tokenizer is byte-level data, not an error.
 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader.h"
#include "data/loader_impl.h"
#include "data/tokenizer.h"

/* Reads the 1-D uint8 dataset zDset of open file h into *pz (NUL-terminated). */
static int read_bytes(hid_t h, const char *zH5, const char *zDset, char **pz,
                      size_t *pn) {
  int rc = BT_OK;
  hid_t d = -1, sp = -1;
  d = H5Dopen2(h, zDset, H5P_DEFAULT);
  if (d < 0) return bt_h5_fail(zH5, zDset, "H5Dopen2", __LINE__);
  sp = H5Dget_space(d);
  hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (n < 0) rc = bt_h5_fail(zH5, zDset, "H5Sget_simple_extent_npoints",
                             __LINE__);
  char *z = rc == BT_OK ? bt_malloc((size_t)n + 1, "tokenizer file") : NULL;
  if (rc == BT_OK && !z) rc = BT_ERR;
  if (rc == BT_OK && n > 0 &&
      H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) < 0)
    rc = bt_h5_fail(zH5, zDset, "H5Dread", __LINE__);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  if (rc != BT_OK) {
    free(z);
    return rc;
  }
  z[n] = 0;
  *pz = z;
  *pn = (size_t)n;
  return BT_OK;
}

int bt_tok_h5_read(const char *zH5, bt_tok_file aFile[2], int *pnFile) {
  static const char *const azName[] = {"tokenizer.json", "vocab.json",
                                       "merges.txt"};
  *pnFile = 0;
  memset(aFile, 0, 2 * sizeof *aFile);
  int rc = BT_OK;
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t h = H5Fopen(zH5, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (h < 0) {
    rc = bt_h5_fail(zH5, "/", "H5Fopen", __LINE__);
    goto out;
  }
  if (H5Lexists(h, "/tokenizer", H5P_DEFAULT) <= 0) goto out;
  for (int i = 0; i < 3 && rc == BT_OK && *pnFile < 2; i++) {
    char zDset[64];
    snprintf(zDset, sizeof zDset, "/tokenizer/%s", azName[i]);
    if (H5Lexists(h, zDset, H5P_DEFAULT) <= 0) continue;
    bt_tok_file *f = &aFile[*pnFile];
    snprintf(f->zName, sizeof f->zName, "%s", azName[i]);
    rc = read_bytes(h, zH5, zDset, &f->z, &f->n);
    if (rc == BT_OK) ++*pnFile;
    if (i == 0) break; /* tokenizer.json is the whole tokenizer */
  }
  if (rc == BT_OK && *pnFile == 1 && !strcmp(aFile[0].zName, "vocab.json"))
    rc = bt_err_set("%s: /tokenizer holds vocab.json without merges.txt",
                    zH5);
  if (rc == BT_OK && *pnFile == 0)
    rc = bt_err_set("%s: /tokenizer holds neither tokenizer.json nor "
                    "vocab.json + merges.txt",
                    zH5);
out:
  if (h >= 0) H5Fclose(h);
  bt_h5_unlock();
  if (rc != BT_OK) {
    bt_tok_files_free(aFile, 2);
    *pnFile = 0;
  }
  return rc;
}

void bt_tok_files_free(bt_tok_file *aFile, int nFile) {
  for (int i = 0; i < nFile; i++) {
    free(aFile[i].z);
    aFile[i].z = NULL;
    aFile[i].n = 0;
  }
}

int bt_tok_from_files(bt_tok **pp, const bt_tok_file *aFile, int nFile,
                      const char *zSource) {
  char zJ[4200], zM[4200];
  snprintf(zJ, sizeof zJ, "%s:/tokenizer/%s", zSource, aFile[0].zName);
  snprintf(zM, sizeof zM, "%s:/tokenizer/%s", zSource,
           nFile > 1 ? aFile[1].zName : "");
  return bt_tok_load(pp, aFile[0].z, aFile[0].n, zJ,
                     nFile > 1 ? aFile[1].z : NULL,
                     nFile > 1 ? aFile[1].n : 0, zM);
}
