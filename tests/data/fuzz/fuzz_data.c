/*
 * fuzz_data.c: libFuzzer target for the dataset-side byte formats that a
 * user hands to baton: the tokenizer files (data/tokenizer.c: a Hugging
 * Face tokenizer.json, or GPT-2's vocab.json + merges.txt) and the feature
 * files (data/features.c: CSV and .npy, read by `prepare arrays` and
 * `baton infer --input`).
 *
 * The first input byte picks the mode (mod 4), the rest is the file:
 *   0  tokenizer.json, loaded from memory (bt_tok_load); if accepted, a
 *      fixed text is encoded, decoded back and compared (byte-level BPE
 *      round-trips every byte string), and the vocabulary size queried.
 *   1  vocab.json and merges.txt: the rest is split at its first NUL byte
 *      (vocab before, merges after; no NUL: empty merges). Then as 0.
 *   2  a CSV file (written to a temporary file: the reader takes a path),
 *      opened with bt_features_open, every row read as float and double.
 *   3  a .npy file, the same way.
 * Anything must end in BT_OK or BT_ERR: no crash, no sanitizer report, no
 * huge allocation (libFuzzer's -malloc_limit_mb). Accepted
 * (tests/fuzz/fuzz.h): the tokenizer loaded, or the file opened with at
 * least one row.
 *
 * Built with -fsanitize=fuzzer by tests/data/fuzz/fuzz_data.sh and with
 * tests/fuzz/replay.c for the seed-corpus replay (ctest data_fuzz_replay).
 * emit_seeds.py wrote the seed corpus.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "data/features.h"
#include "data/tokenizer.h"
#include "tests/fuzz/fuzz.h"

int bt_fuzz_last_accepted = 0;
static char g_zCsv[128], g_zNpy[128];

static void files_cleanup(void) {
  unlink(g_zCsv);
  unlink(g_zNpy);
}

static void tok_exercise(bt_tok *p) {
  static const char z[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 \xff\xfe tabs\t\n";
  (void)bt_tok_vocab_size(p);
  bt_tok_ids ids = {0};
  size_t nUsed = 0;
  if (bt_tok_encode(p, z, sizeof z - 1, 1, &ids, &nUsed) == BT_OK) {
    size_t n = 0;
    char *zBack = bt_tok_decode(p, ids.a, ids.n, &n);
    /* A loaded tokenizer may lack a byte (not every vocab is complete);
     * when it decodes, it must give the text back. */
    if (zBack && (n != sizeof z - 1 || memcmp(zBack, z, n))) {
      fprintf(stderr, "fuzz_data: encode/decode does not round-trip\n");
      abort();
    }
    free(zBack);
  }
  bt_tok_ids_free(&ids);
}

static void features_exercise(const char *zPath, bt_features_kind e) {
  bt_features *f = NULL;
  if (bt_features_open(&f, zPath, e, NULL) != BT_OK) return;
  int64_t nRow = bt_features_rows(f), nCol = bt_features_cols(f);
  if (nRow > 0) bt_fuzz_last_accepted = 1;
  /* read in pieces of at most 64 rows, bounded in total */
  if (nCol > 0 && nCol <= 1 << 16) {
    int64_t nStep = 64;
    float *a = malloc((size_t)(nStep * nCol) * sizeof(float));
    double *d = malloc((size_t)(nStep * nCol) * sizeof(double));
    for (int64_t i = 0; a && d && i < nRow && i < 4096; i += nStep) {
      int64_t n = nRow - i < nStep ? nRow - i : nStep;
      bt_features_read(f, i, n, a);
      bt_features_read_f64(f, i, n, d);
      char zWhere[256];
      (void)bt_features_where(f, i, zWhere, sizeof zWhere);
    }
    for (int64_t i = 0; i < nCol && i < 64; i++) (void)bt_features_col_name(f, i);
    free(a);
    free(d);
  }
  bt_features_close(f);
}

static int put_file(const char *zPath, const uint8_t *p, size_t n) {
  FILE *f = fopen(zPath, "wb");
  if (!f) return -1;
  int ok = fwrite(p, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData) {
  bt_fuzz_last_accepted = 0;
  if (!g_zCsv[0]) {
    bt_log_set_level(0);
    snprintf(g_zCsv, sizeof g_zCsv, "/tmp/baton-fuzz-data-%d.csv", (int)getpid());
    snprintf(g_zNpy, sizeof g_zNpy, "/tmp/baton-fuzz-data-%d.npy", (int)getpid());
    atexit(files_cleanup);
  }
  if (nData < 1) return 0;
  int eMode = pData[0] & 3;
  const char *z = (const char *)pData + 1;
  size_t n = nData - 1;
  bt_tok *pTok = NULL;
  switch (eMode) {
    case 0:
      if (bt_tok_load(&pTok, z, n, "tokenizer.json", NULL, 0, NULL) == BT_OK) {
        bt_fuzz_last_accepted = 1;
        tok_exercise(pTok);
        bt_tok_free(pTok);
      }
      break;
    case 1: {
      const char *zNul = memchr(z, 0, n);
      size_t nV = zNul ? (size_t)(zNul - z) : n;
      const char *zM = zNul ? zNul + 1 : "";
      size_t nM = zNul ? n - nV - 1 : 0;
      if (bt_tok_load(&pTok, z, nV, "vocab.json", zM, nM, "merges.txt") == BT_OK) {
        bt_fuzz_last_accepted = 1;
        tok_exercise(pTok);
        bt_tok_free(pTok);
      }
      break;
    }
    case 2:
      if (put_file(g_zCsv, (const uint8_t *)z, n) == 0)
        features_exercise(g_zCsv, BT_FEATURES_CSV);
      break;
    default:
      if (put_file(g_zNpy, (const uint8_t *)z, n) == 0)
        features_exercise(g_zNpy, BT_FEATURES_NPY);
      break;
  }
  return 0;
}
