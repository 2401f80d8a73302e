/*
 * test_data_h5.c: the HDF5 source against files written by h5py
 * (make_fixture.py --all DIR): contents equal what numpy wrote for uint16,
 * uint32, chunked, gzip+shuffle and contiguous token files and for feature
 * files; bytes read per rank are exactly the rank's share; every bad-input
 * case fails with a message naming file, dataset and index. Files as users'
 * own h5py scripts write them (user_*.h5: no attributes, every integer
 * token type, float64 or integer features) read back exactly; the start-up
 * check (data/check.h), merged over 1-3 simulated ranks, finds the first
 * bad value with the loader's own message and fills a vocabulary or class
 * count that neither the config nor the file gives.
 * Usage: test_data_h5 FIXTURE_DIR
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/check.h"
#include "data/loader.h"
#include "tests/check.h"

static const char *g_zDir;

static char *fx(const char *zName) {
  static char z[8][4096];
  static int i;
  char *r = z[i++ % 8];
  snprintf(r, 4096, "%s/%s", g_zDir, zName);
  return r;
}

static void *read_bin(const char *zFile, const char *zSuffix, size_t *pn) {
  char z[4096];
  snprintf(z, sizeof z, "%s.%s.bin", zFile, zSuffix);
  return bt_file_read_all(z, pn);
}

static bt_loader_config cfg(const char *zPath, int kind, int64_t gb, int W,
                            int r) {
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = zPath;
  c.zSplit = "train";
  c.eKind = kind;
  c.T = 63;
  c.global_batch = gb;
  c.accum = 1;
  c.world = W;
  c.rank = r;
  c.seed = 99;
  return c;
}

/* The trainer's start-up check with W simulated ranks: each rank's part,
 * then the merge over all of them (as bt_data_check_run after its
 * all-gather). Fills c->vocab / c->nClass like the trainer's. */
static int check_sim(bt_loader_config *c, int W, bt_data_part **paPart) {
  bt_data_part *a = calloc((size_t)W, sizeof *a);
  for (int r = 0; r < W; r++) {
    bt_loader_config cr = *c;
    cr.rank = r;
    cr.world = W;
    bt_data_check_part(&cr, &a[r]);
  }
  int rc = bt_data_check_merge(a, W, c);
  if (paPart) *paPart = a;
  else free(a);
  return rc;
}

/* rc is BT_ERR and the message is exactly zWant (after the fixture dir). */
static void check_msg(int rc, const char *zWhat, const char *zWant) {
  char z[4096];
  snprintf(z, sizeof z, "%s/%s", g_zDir, zWant);
  CHECK(rc == BT_ERR && strcmp(bt_err_msg(), z) == 0,
        "%s: rc=%d\n  got  '%s'\n  want '%s'", zWhat, rc,
        rc == BT_ERR ? bt_err_msg() : "", z);
}

/* Bytes per token in the file, from the fixture's name. */
static int elem_size(const char *zName) {
  if (strstr(zName, "int8")) return 1;
  if (strstr(zName, "int16") || strstr(zName, "tok16")) return 2;
  if (strstr(zName, "int64")) return 8;
  return 4;
}

/* One epoch over W simulated ranks; every window compared with the .bin. */
static void check_tokens(const char *zName, int W, int shuffle, int accum) {
  const char *zPath = fx(zName);
  size_t nb = 0;
  uint32_t *aRef = read_bin(zPath, "train.tokens", &nb);
  CHECK(aRef != NULL, "reference for %s: %s", zName, bt_err_msg());
  if (!aRef) return;
  int64_t nTok = (int64_t)(nb / 4);
  bt_loader **ap = calloc((size_t)W, sizeof *ap);
  int64_t gb = 48;
  bt_loader_config base = cfg(zPath, BT_SAMPLE_TOKENS, gb, W, 0);
  CHECK(check_sim(&base, W, NULL) == BT_OK, "check %s: %s", zName,
        bt_err_msg());
  for (int r = 0; r < W; r++) {
    bt_loader_config c = base;
    c.rank = r;
    c.shuffle = shuffle;
    c.accum = accum;
    if (bt_loader_open(&ap[r], &c) != BT_OK) {
      CHECK(0, "open %s: %s", zName, bt_err_msg());
      return;
    }
  }
  int64_t n = bt_loader_size(ap[0]);
  CHECK(n == nTok / 64, "%s: %lld windows, want %lld", zName, (long long)n,
        (long long)(nTok / 64));
  char *seen = calloc((size_t)n, 1);
  int bad = 0, nErr = 0;
  int64_t nStep = (n + gb - 1) / gb;
  for (int64_t s = 0; s < nStep * accum; s++)
    for (int r = 0; r < W; r++) {
      bt_batch b;
      if (bt_loader_next(ap[r], &b) != BT_OK) {
        if (nErr++ == 0) CHECK(0, "next %s: %s", zName, bt_err_msg());
        continue;
      }
      for (int i = 0; i < b.n; i++) {
        int64_t w = b.index[i];
        if (w < 0 || w >= n || seen[w]++) {
          bad++;
          continue;
        }
        const uint32_t *ref = aRef + w * 64;
        for (int t = 0; t < 63; t++) {
          bad += b.inputs[(size_t)i * 63 + t] != (int32_t)ref[t];
          bad += b.targets[(size_t)i * 63 + t] != (int32_t)ref[t + 1];
        }
      }
    }
  int64_t nSeen = 0;
  for (int64_t i = 0; i < n; i++) nSeen += seen[i];
  CHECK(bad == 0 && nSeen == n, "%s W=%d shuffle=%d: %d mismatches, %lld of "
        "%lld windows seen", zName, W, shuffle, bad, (long long)nSeen,
        (long long)n);
  /* Bytes read: exactly the epoch's windows, about 1/W each. */
  uint64_t total = 0, mx = 0;
  int elem = elem_size(zName);
  for (int r = 0; r < W; r++) {
    uint64_t br = bt_loader_bytes_read(ap[r]);
    total += br;
    if (br > mx) mx = br;
  }
  /* Prefetch may have read ahead into epoch 1 by up to 2 micro-steps. */
  uint64_t epochBytes = (uint64_t)n * 64 * elem;
  uint64_t slack = (uint64_t)W * 3 * ((gb / accum + W - 1) / W) * 64 * elem;
  CHECK(total >= epochBytes && total <= epochBytes + slack,
        "%s: %llu bytes read for an epoch of %llu", zName,
        (unsigned long long)total, (unsigned long long)epochBytes);
  /* bt_split gives a rank at most one extra sample per micro-step. */
  uint64_t share = (uint64_t)nStep * accum * ((gb / accum + W - 1) / W) * 64 *
                   elem;
  CHECK(mx <= share + slack / W,
        "%s: one rank read %llu bytes, share is %llu", zName,
        (unsigned long long)mx, (unsigned long long)(epochBytes / W));
  for (int r = 0; r < W; r++) bt_loader_free(ap[r]);
  free(ap);
  free(seen);
  free(aRef);
}

static void check_val_tokens(const char *zName) {
  const char *zPath = fx(zName);
  size_t nb = 0;
  uint32_t *aRef = read_bin(zPath, "val.tokens", &nb);
  bt_loader_config c = cfg(zPath, BT_SAMPLE_TOKENS, 8, 2, 1);
  c.zSplit = "val";
  CHECK(check_sim(&c, 2, NULL) == BT_OK, "check %s", zName);
  bt_loader *p;
  if (!aRef || bt_loader_open(&p, &c) != BT_OK) {
    CHECK(0, "open val %s: %s", zName, bt_err_msg());
    free(aRef);
    return;
  }
  int64_t n = bt_loader_size(p);
  CHECK(n == (int64_t)(nb / 4 / 64), "val windows %lld", (long long)n);
  bt_loader_val_begin(p, 0, 10);
  int bad = 0;
  int64_t got = 0;
  bt_batch b;
  while (bt_loader_val_next(p, &b) == BT_OK && b.global_n > 0) {
    for (int i = 0; i < b.n; i++) {
      const uint32_t *ref = aRef + b.index[i] * 64;
      for (int t = 0; t < 63; t++)
        bad += b.inputs[(size_t)i * 63 + t] != (int32_t)ref[t];
    }
    got += b.n;
  }
  CHECK(bad == 0 && got > 0, "val %s: %d mismatches, %lld samples", zName, bad,
        (long long)got);
  bt_loader_free(p);
  free(aRef);
}

static void check_classes(const char *zName, int D, int nClass) {
  const char *zPath = fx(zName);
  size_t nx = 0, ny = 0;
  float *aX = read_bin(zPath, "train.x", &nx);
  int32_t *aY = read_bin(zPath, "train.y", &ny);
  bt_loader_config c = cfg(zPath, BT_SAMPLE_FEATURES, 100, 3, 2);
  c.shuffle = 1;
  c.accum = 2;
  CHECK(check_sim(&c, 3, NULL) == BT_OK, "check %s: %s", zName,
        bt_err_msg());
  bt_loader *p;
  if (!aX || !aY || bt_loader_open(&p, &c) != BT_OK) {
    CHECK(0, "open %s: %s", zName, bt_err_msg());
    return;
  }
  CHECK(bt_loader_feature_dim(p) == D && bt_loader_num_classes(p) == nClass &&
            bt_loader_size(p) == (int64_t)(ny / 4),
        "%s: D=%d nClass=%d n=%lld", zName, bt_loader_feature_dim(p),
        bt_loader_num_classes(p), (long long)bt_loader_size(p));
  int bad = 0;
  int64_t got = 0;
  for (int s = 0; s < 60; s++) {
    bt_batch b;
    if (bt_loader_next(p, &b) != BT_OK) {
      CHECK(0, "next %s: %s", zName, bt_err_msg());
      break;
    }
    for (int i = 0; i < b.n; i++) {
      int64_t k = b.index[i];
      bad += b.targets[i] != aY[k];
      bad += memcmp(b.x + (size_t)i * D, aX + k * D, sizeof(float) * D) != 0;
    }
    got += b.n;
  }
  CHECK(bad == 0 && got > 0, "%s: %d mismatches in %lld samples", zName, bad,
        (long long)got);
  bt_loader_free(p);
  free(aX);
  free(aY);
}

/* Opens (and if that works, reads one epoch of) a bad file; the error must
 * contain every fragment. */
static void check_bad(const char *zName, int kind, int T, const char *z1,
                      const char *z2, const char *z3) {
  const char *zPath = fx(zName);
  bt_loader_config c = cfg(zPath, kind, 16, 1, 0);
  c.T = T;
  c.shuffle = 1;
  bt_loader *p = NULL;
  int rc = bt_loader_open(&p, &c);
  if (rc == BT_OK) {
    int64_t nStep = (bt_loader_size(p) + 15) / 16;
    bt_batch b;
    for (int64_t s = 0; s < nStep && rc == BT_OK; s++)
      rc = bt_loader_next(p, &b);
    bt_loader_free(p);
  }
  const char *zMsg = bt_err_msg();
  CHECK(rc == BT_ERR && strstr(zMsg, zName) && (!z1 || strstr(zMsg, z1)) &&
            (!z2 || strstr(zMsg, z2)) && (!z3 || strstr(zMsg, z3)),
        "%s: rc=%d message '%s' lacks '%s' '%s' '%s'", zName, rc, zMsg,
        z1 ? z1 : "", z2 ? z2 : "", z3 ? z3 : "");
  printf("%-26s -> %s\n", zName, zMsg);
}

/* Reads every window of a token file through the loader (vocab given,
 * no check): the error the first bad window gives at training time. */
static int read_all(const char *zName, int vocab) {
  bt_loader_config c = cfg(fx(zName), BT_SAMPLE_TOKENS, 16, 1, 0);
  c.vocab = vocab;
  c.prefetch = -1;
  bt_loader *p = NULL;
  int rc = bt_loader_open(&p, &c);
  bt_batch b;
  for (int64_t s = 0; rc == BT_OK && s < (bt_loader_size(p) + 15) / 16; s++)
    rc = bt_loader_next(p, &b);
  bt_loader_free(p);
  return rc;
}

/* Largest value of a .bin of uint32 (tokens) or int32 (labels). */
static int64_t bin_max(const char *zName, const char *zSuffix) {
  size_t nb = 0;
  uint32_t *a = read_bin(fx(zName), zSuffix, &nb);
  int64_t m = -1;
  for (size_t i = 0; a && i < nb / 4; i++)
    if ((int64_t)a[i] > m) m = a[i];
  free(a);
  return m;
}

static void check_user(void) {
  static const char *az[] = {"int8",  "int16",  "int32",  "int64",
                             "uint8", "uint16", "uint32", "uint64"};
  /* Every integer type, no attributes: read back exactly, over the pread
   * path and over HDF5; the vocabulary is the largest id + 1. */
  for (int i = 0; i < 8; i++) {
    char zName[64];
    snprintf(zName, sizeof zName, "user_%s.h5", az[i]);
    check_tokens(zName, 2, 1, 1);
    setenv("BATON_DATA_PREAD", "0", 1);
    check_tokens(zName, 1, 0, 1);
    unsetenv("BATON_DATA_PREAD");
    check_val_tokens(zName);
    bt_loader_config c = cfg(fx(zName), BT_SAMPLE_TOKENS, 16, 1, 0);
    int64_t m = bin_max(zName, "train.tokens"), mv = bin_max(zName,
                                                             "val.tokens");
    CHECK(check_sim(&c, 1, NULL) == BT_OK && c.vocab == (m > mv ? m : mv) + 1,
          "%s: vocab %d from the data, want %lld", zName, c.vocab,
          (long long)(m > mv ? m : mv) + 1);
  }
  check_tokens("user_chunked_int64.h5", 3, 1, 2);
  check_classes("user_classes.h5", 7, 3);
  check_classes("user_classes_int.h5", 5, 4);

  /* The first bad value, found by the check whatever the world size (the
   * bad token lies in rank 1's half for 2 ranks), in the loader's words. */
  for (int W = 1; W <= 3; W++) {
    bt_loader_config c = cfg(fx("user_late_token.h5"), BT_SAMPLE_TOKENS, 16,
                             W, 0);
    c.vocab = 256;
    bt_data_part *a = NULL;
    int rc = check_sim(&c, W, &a);
    check_msg(rc, "late token",
              "user_late_token.h5:/train/tokens: token id 300 at index "
              "45678 is >= vocab size 256");
    if (W == 2)
      CHECK(a[0].aSplit[0].iBad < 0 && a[1].aSplit[0].iBad == 45678 &&
                a[0].aSplit[0].nRead + a[1].aSplit[0].nRead == 60000 / 64 * 64,
            "2 ranks: rank 0 bad %lld, rank 1 bad %lld, read %lld + %lld",
            (long long)a[0].aSplit[0].iBad, (long long)a[1].aSplit[0].iBad,
            (long long)a[0].aSplit[0].nRead, (long long)a[1].aSplit[0].nRead);
    free(a);
  }
  check_msg(read_all("user_late_token.h5", 256), "late token, loader",
            "user_late_token.h5:/train/tokens: token id 300 at index 45678 "
            "is >= vocab size 256");
  bt_loader_config c = cfg(fx("user_val_token.h5"), BT_SAMPLE_TOKENS, 16, 2,
                           0);
  c.vocab = 256;
  check_msg(check_sim(&c, 2, NULL), "val token",
            "user_val_token.h5:/val/tokens: token id 256 at index 2048 is >= "
            "vocab size 256");
  c = cfg(fx("user_negative.h5"), BT_SAMPLE_TOKENS, 16, 2, 0);
  check_msg(check_sim(&c, 2, NULL), "negative token",
            "user_negative.h5:/train/tokens: token id -5 at index 777 is "
            "negative");
  check_msg(read_all("user_negative.h5", 100), "negative token, loader",
            "user_negative.h5:/train/tokens: token id -5 at index 777 is "
            "negative");
  c = cfg(fx("user_u64big.h5"), BT_SAMPLE_TOKENS, 16, 1, 0);
  c.vocab = 256;
  check_msg(check_sim(&c, 1, NULL), "uint64 token",
            "user_u64big.h5:/train/tokens: token id 1099511627776 at index "
            "999 is >= vocab size 256");
  check_msg(read_all("user_u64big.h5", 256), "uint64 token, pread",
            "user_u64big.h5:/train/tokens: token id 1099511627776 at index "
            "999 is >= vocab size 256");
  setenv("BATON_DATA_PREAD", "0", 1);
  check_msg(read_all("user_u64big.h5", 256), "uint64 token, HDF5",
            "user_u64big.h5:/train/tokens: token id 1099511627776 at index "
            "999 is >= vocab size 256");
  unsetenv("BATON_DATA_PREAD");
  c = cfg(fx("user_nan.h5"), BT_SAMPLE_FEATURES, 16, 3, 0);
  check_msg(check_sim(&c, 3, NULL), "NaN feature",
            "user_nan.h5:/train/x: non-finite value nan at index 865 (row "
            "123, column 4)");

  /* A config value that the file contradicts names the key and both
   * values; a limit that neither gives (and no check) names the key. */
  bt_loader *p = NULL;
  c = cfg(fx("tok16_contig.h5"), BT_SAMPLE_TOKENS, 16, 1, 0);
  c.vocab = 256;
  check_msg(bt_loader_open(&p, &c), "vocab mismatch",
            "tok16_contig.h5: the file's vocab_size 50257 is larger than "
            "model.vocab_size = 256; set model.vocab_size = 50257, or leave "
            "it unset (0) to take it from the file");
  c = cfg(fx("classes.h5"), BT_SAMPLE_FEATURES, 16, 1, 0);
  c.D = 8;
  check_msg(bt_loader_open(&p, &c), "width mismatch",
            "classes.h5:/train/x: feature width 6 does not match "
            "model.n_features = 8; set model.n_features = 6, or leave it "
            "unset (0) to take it from the file");
  c.D = 0;
  c.nClass = 3;
  check_msg(bt_loader_open(&p, &c), "classes mismatch",
            "classes.h5: the file's num_classes 5 is larger than "
            "model.n_classes = 3; set model.n_classes = 5, or leave it unset "
            "(0) to take it from the file");
  c = cfg(fx("user_int32.h5"), BT_SAMPLE_TOKENS, 16, 1, 0);
  check_msg(bt_loader_open(&p, &c), "no vocab anywhere",
            "user_int32.h5: model.vocab_size is not set and the file has no "
            "vocab_size attribute; set model.vocab_size (or leave data.check "
            "on to take it from the data)");
  /* No baton_format_version: read as version 1. */
  c = cfg(fx("bad_no-version.h5"), BT_SAMPLE_TOKENS, 16, 1, 0);
  int rc = bt_loader_open(&p, &c);
  CHECK(rc == BT_OK && bt_loader_vocab(p) == 256,
        "a file without baton_format_version: %s", bt_err_msg());
  if (rc == BT_OK) bt_loader_free(p);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  g_zDir = argv[1];
  check_tokens("tok16_gzip_shuffle.h5", 1, 0, 1);
  check_tokens("tok16_gzip_shuffle.h5", 4, 1, 2);
  check_tokens("tok32_chunked.h5", 3, 1, 1);
  check_tokens("tok32_chunked.h5", 1, 0, 3);
  check_tokens("tok16_contig.h5", 5, 1, 1); /* pread fast path */
  setenv("BATON_DATA_PREAD", "0", 1);
  check_tokens("tok16_contig.h5", 2, 1, 2); /* the same through HDF5 */
  unsetenv("BATON_DATA_PREAD");
  check_val_tokens("tok16_gzip_shuffle.h5");
  check_val_tokens("tok32_chunked.h5");
  check_classes("classes.h5", 6, 5);
  check_classes("classes_2d.h5", 6, 5);
  check_user();

  check_bad("nonexistent.h5", BT_SAMPLE_TOKENS, 63, "No such file", NULL,
            NULL);
  check_bad("bad_garbage.h5", BT_SAMPLE_TOKENS, 63, "not an HDF5 file", NULL,
            NULL);
  check_bad("bad_truncated.h5", BT_SAMPLE_TOKENS, 63, "truncated", NULL, NULL);
  check_bad("bad_missing-dataset.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens",
            "not found", NULL);
  check_bad("bad_float-tokens.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens",
            "float32", "expected an integer type");
  check_bad("bad_2d-tokens.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens",
            "2 dimensions", NULL);
  check_bad("bad_big-token.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens",
            "token id 300 at index 12345 is >= vocab size 256", NULL);
  check_bad("bad_empty.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens", "empty",
            NULL);
  check_bad("bad_small.h5", BT_SAMPLE_TOKENS, 15, "/train/tokens",
            "fewer than one global batch", NULL);
  check_bad("bad_big-label.h5", BT_SAMPLE_FEATURES, 0, "/train/y",
            "label 9 at index 777", ">= num_classes 4");
  check_bad("bad_xy-mismatch.h5", BT_SAMPLE_FEATURES, 0, "/train/x",
            "/train/y", "1000 rows but /train/y has 999");
  check_bad("bad_corrupt-chunk.h5", BT_SAMPLE_TOKENS, 63, "/train/tokens",
            "H5Dread of tokens [", "failed");
  check_bad("tok16_contig.h5", BT_SAMPLE_FEATURES, 0, "/train/x", "not found",
            NULL);
  return CHECK_DONE();
}
