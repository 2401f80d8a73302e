/*
 * test_data_prepare.c: `baton prepare` round trips and crash safety.
 *   text:   three files -> tokens; train/val contents equal the input blocks
 *           chosen by the documented rule; plain and gzip.
 *   arrays: .npy v1/v2/v3 (f8, f4, i8, u1), CSV with and without a header;
 *           rows land in the documented split; bad inputs are rejected with
 *           the file named.
 *   crash:  prepare killed (SIGKILL, SIGTERM) or failing mid-way leaves no
 *           OUT.h5 (and keeps an older complete OUT.h5 intact).
 * Usage: test_data_prepare PREPARE_DRIVER WORKDIR
 */
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "data/loader.h"
#include "tests/check.h"

static const char *g_zDriver, *g_zWork;

static char *wpath(const char *zName) {
  static char z[8][4096];
  static int i;
  char *r = z[i++ % 8];
  snprintf(r, 4096, "%s/%s", g_zWork, zName);
  return r;
}

static int prep(int n, const char **az) {
  char *argv[32];
  argv[0] = "prepare";
  for (int i = 0; i < n; i++) argv[i + 1] = (char *)az[i];
  argv[n + 1] = NULL;
  return bt_prepare_main(n + 1, argv);
}

/* Runs the driver in a child with BATON_FAULT set; returns wait status. */
static int prep_child(const char *zFault, int n, const char **az) {
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[32];
    argv[0] = (char *)g_zDriver;
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)az[i];
    argv[n + 1] = NULL;
    setenv("BATON_FAULT", zFault, 1);
    execv(g_zDriver, argv);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

/* Reads a whole 1-D or 2-D dataset converted to memType; NULL if absent. */
static void *h5_read_all(const char *zFile, const char *zDset, hid_t memType,
                         size_t elem, int64_t *pn) {
  void *p = NULL;
  *pn = -1;
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(zFile, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f >= 0) {
    hid_t d = H5Dopen2(f, zDset, H5P_DEFAULT);
    if (d >= 0) {
      hid_t s = H5Dget_space(d);
      hsize_t n = (hsize_t)H5Sget_simple_extent_npoints(s);
      p = malloc(n * elem + 1);
      if (n == 0 || H5Dread(d, memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0)
        *pn = (int64_t)n;
      H5Sclose(s);
      H5Dclose(d);
    }
    H5Fclose(f);
  }
  bt_h5_unlock();
  return p;
}

static int count_tmp(const char *zPrefix) {
  DIR *d = opendir(g_zWork);
  int n = 0;
  struct dirent *e;
  char z[512];
  snprintf(z, sizeof z, "%s.tmp.", zPrefix);
  while (d && (e = readdir(d)))
    if (!strncmp(e->d_name, z, strlen(z))) n++;
  if (d) closedir(d);
  return n;
}

static void rm_tmp(const char *zPrefix) {
  DIR *d = opendir(g_zWork);
  struct dirent *e;
  char z[512];
  snprintf(z, sizeof z, "%s.tmp.", zPrefix);
  while (d && (e = readdir(d)))
    if (!strncmp(e->d_name, z, strlen(z))) unlink(wpath(e->d_name));
  if (d) closedir(d);
}

/* ---- text ----------------------------------------------------------------- */

static unsigned char *g_aText;
static int64_t g_nText;

static void make_text(void) {
  int64_t aSize[3] = {10000, 3333, 20000};
  g_nText = 33333;
  g_aText = malloc((size_t)g_nText);
  for (int64_t i = 0; i < g_nText; i++)
    g_aText[i] = (unsigned char)(bt_rng_u64(42, (uint64_t)i) & 255);
  int64_t at = 0;
  for (int f = 0; f < 3; f++) {
    char z[32];
    snprintf(z, sizeof z, "text%d.txt", f);
    bt_file_write_atomic(wpath(z), g_aText + at, (size_t)aSize[f]);
    at += aSize[f];
  }
}

static void check_text_file(const char *zOut, int64_t B, uint64_t seed,
                            int64_t nVal) {
  int64_t nTr, nVa;
  uint32_t *aTr = h5_read_all(zOut, "/train/tokens", H5T_NATIVE_UINT32, 4,
                              &nTr);
  uint32_t *aVa = h5_read_all(zOut, "/val/tokens", H5T_NATIVE_UINT32, 4, &nVa);
  CHECK(nTr >= 0 && nVa >= 0 && nTr + nVa == g_nText,
        "%s: %lld + %lld tokens, want %lld", zOut, (long long)nTr,
        (long long)nVa, (long long)g_nText);
  int64_t nBlock = (g_nText + B - 1) / B, iTr = 0, iVa = 0, bad = 0, vb = 0;
  for (int64_t b = 0; b < nBlock && nTr >= 0 && nVa >= 0; b++) {
    int isVal = bt_perm_index(seed, 0, nBlock, b) < nVal;
    vb += isVal;
    for (int64_t i = b * B; i < (b + 1) * B && i < g_nText; i++) {
      if (isVal) bad += iVa >= nVa || aVa[iVa++] != g_aText[i];
      else bad += iTr >= nTr || aTr[iTr++] != g_aText[i];
    }
  }
  CHECK(bad == 0 && vb == nVal, "%s: %lld tokens differ, %lld val blocks",
        zOut, (long long)bad, (long long)vb);
  free(aTr);
  free(aVa);
  /* The loader reads it back. */
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = zOut;
  c.eKind = BT_SAMPLE_TOKENS;
  c.T = 31;
  c.global_batch = 8;
  bt_loader *p;
  CHECK(bt_loader_open(&p, &c) == BT_OK, "loader on %s: %s", zOut,
        bt_err_msg());
  if (p) {
    CHECK(bt_loader_vocab(p) == 256, "vocab");
    bt_batch b;
    CHECK(bt_loader_next(p, &b) == BT_OK && b.n == 8, "read");
    bt_loader_free(p);
  }
}

static void test_text(void) {
  make_text();
  const char *zOut = wpath("text.h5");
  const char *a[] = {"text", "-o", zOut, "--val-fraction", "0.2", "--seed",
                     "5", "--chunk", "1024", wpath("text0.txt"),
                     wpath("text1.txt"), wpath("text2.txt")};
  CHECK(prep(12, a) == 0, "prepare text: %s", bt_err_msg());
  check_text_file(zOut, 1024, 5, 7); /* round(0.2 * 33) = 7 */
  CHECK(count_tmp("text.h5") == 0, "temporary file left behind");

  const char *zGz = wpath("text_gz.h5");
  const char *b[] = {"text", "-o", zGz, "--seed", "11", "--chunk", "4096",
                     "--gzip", "3", wpath("text0.txt"), wpath("text1.txt"),
                     wpath("text2.txt")};
  CHECK(prep(12, b) == 0, "prepare text gzip: %s", bt_err_msg());
  check_text_file(zGz, 4096, 11, 1); /* round(0.1 * 9) = 1 */

  const char *c[] = {"text", "-o", wpath("x.h5"), wpath("missing.txt")};
  CHECK(prep(4, c) == 1 && strstr(bt_err_msg(), "missing.txt"),
        "missing input: %s", bt_err_msg());
  const char *d[] = {"bogus", "-o", wpath("x.h5")};
  CHECK(prep(3, d) == 2 && strstr(bt_err_msg(), "unknown mode"),
        "bad mode: %s", bt_err_msg());
  const char *e[] = {"--help"};
  CHECK(prep(1, e) == 0, "--help");
  /* Usage errors are exit 2 and name the option (base/cli.h). */
  const char *f[] = {"text", "-o", wpath("x.h5"), "--frob", wpath("text0.txt")};
  CHECK(prep(5, f) == 2 && strstr(bt_err_msg(), "unknown option '--frob'"),
        "unknown option: %s", bt_err_msg());
  const char *g[] = {"text", "-o", wpath("x.h5"), wpath("text0.txt"), "--seed"};
  CHECK(prep(5, g) == 2 && strstr(bt_err_msg(), "'--seed' needs a value"),
        "missing value: %s", bt_err_msg());
  const char *h[] = {"text", wpath("text0.txt"), "--gzip", "10"};
  CHECK(prep(4, h) == 2 && strstr(bt_err_msg(), "--gzip '10'"),
        "bad value: %s", bt_err_msg());
  const char *i[] = {"text", wpath("text0.txt")};
  CHECK(prep(2, i) == 2 && strstr(bt_err_msg(), "-o OUT.h5 is required"),
        "no -o: %s", bt_err_msg());
  CHECK(!bt_path_exists(wpath("x.h5")), "a usage error wrote a file");
}

/* ---- crash safety --------------------------------------------------------- */

static void test_interrupt(void) {
  const char *zOut = wpath("crash.h5");
  const char *a[] = {"text", "-o", zOut, "--chunk", "1024",
                     wpath("text0.txt"), wpath("text1.txt"),
                     wpath("text2.txt")};
  unlink(zOut);
  int st = prep_child("prepare.kill:5", 8, a);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child was not killed");
  CHECK(!bt_path_exists(zOut), "SIGKILL mid-way left %s", zOut);
  CHECK(count_tmp("crash.h5") == 1, "SIGKILL leaves only the .tmp.<pid>");
  rm_tmp("crash.h5");

  st = prep_child("prepare.term:5", 8, a);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child not terminated");
  CHECK(!bt_path_exists(zOut) && count_tmp("crash.h5") == 0,
        "SIGTERM mid-way left a file");

  st = prep_child("prepare.block:5", 8, a);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "write fault exit %d", st);
  CHECK(!bt_path_exists(zOut) && count_tmp("crash.h5") == 0,
        "failed prepare left a file");

  /* A complete older file survives an interrupted rewrite. */
  st = prep_child("none:1", 8, a);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean run failed");
  st = prep_child("prepare.kill:3", 8, a);
  rm_tmp("crash.h5");
  int64_t n1, n2;
  void *p1 = h5_read_all(zOut, "/train/tokens", H5T_NATIVE_UINT32, 4, &n1);
  void *p2 = h5_read_all(zOut, "/val/tokens", H5T_NATIVE_UINT32, 4, &n2);
  CHECK(n1 + n2 == g_nText, "older file damaged: %lld + %lld tokens",
        (long long)n1, (long long)n2);
  free(p1);
  free(p2);
}

/* ---- arrays --------------------------------------------------------------- */

static void write_npy(const char *zPath, int ver, const char *zDescr,
                      const char *zShape, const char *zOrder,
                      const void *pData, size_t nData) {
  char zDict[256];
  snprintf(zDict, sizeof zDict,
           "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", zDescr,
           zOrder, zShape);
  size_t pre = ver == 1 ? 10 : 12;
  size_t hl = strlen(zDict) + 1;
  while ((pre + hl) % 64) hl++;
  unsigned char *buf = calloc(1, pre + hl + nData);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)ver;
  if (ver == 1) {
    buf[8] = (unsigned char)(hl & 255);
    buf[9] = (unsigned char)(hl >> 8);
  } else {
    for (int i = 0; i < 4; i++) buf[8 + i] = (unsigned char)(hl >> (8 * i));
  }
  memset(buf + pre, ' ', hl);
  memcpy(buf + pre, zDict, strlen(zDict));
  buf[pre + hl - 1] = '\n';
  memcpy(buf + pre + hl, pData, nData);
  bt_file_write_atomic(zPath, buf, pre + hl + nData);
  free(buf);
}

/* Checks OUT.h5 against x[n, D], y[n] under the documented row split. */
static void check_arrays(const char *zOut, const float *x, const int32_t *y,
                         int64_t n, int64_t D, uint64_t seed, int64_t nVal,
                         int nClass) {
  int64_t nx[2], ny[2];
  float *ax[2];
  int32_t *ay[2];
  ax[0] = h5_read_all(zOut, "/train/x", H5T_NATIVE_FLOAT, 4, &nx[0]);
  ay[0] = h5_read_all(zOut, "/train/y", H5T_NATIVE_INT32, 4, &ny[0]);
  ax[1] = h5_read_all(zOut, "/val/x", H5T_NATIVE_FLOAT, 4, &nx[1]);
  ay[1] = h5_read_all(zOut, "/val/y", H5T_NATIVE_INT32, 4, &ny[1]);
  CHECK(ny[0] + ny[1] == n && ny[1] == nVal && nx[0] == ny[0] * D &&
            nx[1] == ny[1] * D,
        "%s: rows %lld + %lld, want %lld with %lld val", zOut,
        (long long)ny[0], (long long)ny[1], (long long)n, (long long)nVal);
  int64_t at[2] = {0, 0}, bad = 0;
  for (int64_t i = 0; i < n && ny[0] >= 0 && ny[1] >= 0; i++) {
    int s = bt_perm_index(seed, 0, n, i) < nVal;
    if (at[s] >= ny[s]) {
      bad++;
      continue;
    }
    bad += ay[s][at[s]] != y[i];
    bad += memcmp(ax[s] + at[s] * D, x + i * D, sizeof(float) * D) != 0;
    at[s]++;
  }
  CHECK(bad == 0, "%s: %lld rows differ", zOut, (long long)bad);
  for (int s = 0; s < 2; s++) {
    free(ax[s]);
    free(ay[s]);
  }
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = zOut;
  c.eKind = BT_SAMPLE_FEATURES;
  c.global_batch = 16;
  bt_loader *p;
  CHECK(bt_loader_open(&p, &c) == BT_OK, "loader on %s: %s", zOut,
        bt_err_msg());
  if (p) {
    CHECK(bt_loader_feature_dim(p) == D && bt_loader_num_classes(p) == nClass,
          "%s: D %d classes %d", zOut, bt_loader_feature_dim(p),
          bt_loader_num_classes(p));
    bt_loader_free(p);
  }
}

static void test_npy(void) {
  enum { N = 200, D = 6 };
  static double xd[N * D];
  static float xf[N * D];
  static int64_t y8[N];
  static unsigned char yu[N];
  static int32_t y[N];
  for (int i = 0; i < N * D; i++) {
    xd[i] = (double)(float)bt_rng_normal(3, (uint64_t)i);
    xf[i] = (float)xd[i];
  }
  for (int i = 0; i < N; i++) y8[i] = yu[i] = (unsigned char)(y[i] = i % 5);
  write_npy(wpath("x1.npy"), 1, "<f8", "(200, 3, 2)", "False", xd, sizeof xd);
  write_npy(wpath("y2.npy"), 2, "<i8", "(200,)", "False", y8, sizeof y8);
  const char *zOut = wpath("arr.h5");
  const char *a[] = {"arrays", "-o", zOut, "--x", wpath("x1.npy"), "--y",
                     wpath("y2.npy"), "--val-fraction", "0.25", "--seed", "9"};
  CHECK(prep(11, a) == 0, "prepare arrays npy: %s", bt_err_msg());
  check_arrays(zOut, xf, y, N, D, 9, 50, 5);

  write_npy(wpath("x3.npy"), 3, "<f4", "(200, 6)", "False", xf, sizeof xf);
  write_npy(wpath("y3.npy"), 3, "|u1", "(200, 1)", "False", yu, sizeof yu);
  const char *b[] = {"arrays", "-o", zOut, "--x", wpath("x3.npy"), "--y",
                     wpath("y3.npy"), "--gzip", "2"};
  CHECK(prep(9, b) == 0, "prepare arrays npy v3: %s", bt_err_msg());
  check_arrays(zOut, xf, y, N, D, 1, 20, 5);

  struct {
    const char *zName, *zDescr, *zShape, *zOrder;
    size_t nData;
    const char *zWant;
  } aBad[] = {
      {"x_be.npy", ">f4", "(200, 6)", "False", sizeof xf, "big-endian"},
      {"x_f.npy", "<f4", "(200, 6)", "True", sizeof xf, "C-order"},
      {"x_short.npy", "<f4", "(200, 6)", "False", sizeof xf / 2, "truncated"},
      {"x_c8.npy", "<c8", "(200, 6)", "False", sizeof xf, "not supported"},
      {"x_rows.npy", "<f4", "(100, 12)", "False", sizeof xf, "has 100 rows"},
  };
  for (size_t i = 0; i < sizeof aBad / sizeof aBad[0]; i++) {
    write_npy(wpath(aBad[i].zName), 1, aBad[i].zDescr, aBad[i].zShape,
              aBad[i].zOrder, xf, aBad[i].nData);
    const char *c[] = {"arrays", "-o", wpath("bad.h5"), "--x",
                       wpath(aBad[i].zName), "--y", wpath("y2.npy")};
    int rc = prep(7, c);
    CHECK(rc == 1 && strstr(bt_err_msg(), aBad[i].zName) &&
              strstr(bt_err_msg(), aBad[i].zWant),
          "bad npy %s: '%s'", aBad[i].zName, bt_err_msg());
  }
  CHECK(!bt_path_exists(wpath("bad.h5")) && count_tmp("bad.h5") == 0,
        "rejected input left a file");
}

static void test_csv(void) {
  enum { N = 120, D = 3 };
  float x[N * D];
  int32_t y[N];
  char *z = malloc(N * 80 + 100), *p = z;
  p += sprintf(p, "a, b ,label,\"c\"\r\n");
  for (int i = 0; i < N; i++) {
    for (int d = 0; d < D; d++) x[i * D + d] = (float)(i * 0.5 + d * 0.25 - 7);
    y[i] = i % 3;
    p += sprintf(p, "%g,%g,%d,%g\r\n", x[i * D], x[i * D + 1], y[i],
                 x[i * D + 2]);
  }
  bt_file_write_atomic(wpath("h.csv"), z, (size_t)(p - z));
  const char *zOut = wpath("csv.h5");
  const char *a[] = {"arrays", "-o", zOut, "--csv", wpath("h.csv"),
                     "--label-column", "label", "--val-fraction", "0.1"};
  CHECK(prep(9, a) == 0, "prepare csv with header: %s", bt_err_msg());
  check_arrays(zOut, x, y, N, D, 1, 12, 3);

  p = z; /* no header, label first */
  for (int i = 0; i < N; i++)
    p += sprintf(p, "%d,%g,%g,%g\n", y[i], x[i * D], x[i * D + 1],
                 x[i * D + 2]);
  bt_file_write_atomic(wpath("n.csv"), z, (size_t)(p - z));
  const char *b[] = {"arrays", "-o", zOut, "--csv", wpath("n.csv"),
                     "--label-column", "0", "--seed", "4"};
  CHECK(prep(9, b) == 0, "prepare csv without header: %s", bt_err_msg());
  check_arrays(zOut, x, y, N, D, 4, 12, 3);

  p = z;
  p += sprintf(p, "1,2,3\n4,5,6\n7,x8,9\n");
  bt_file_write_atomic(wpath("bad.csv"), z, (size_t)(p - z));
  const char *c[] = {"arrays", "-o", wpath("bad.h5"), "--csv", wpath("bad.csv"),
                     "--label-column", "2"};
  CHECK(prep(7, c) == 1 && strstr(bt_err_msg(), "bad.csv") &&
            strstr(bt_err_msg(), "line 3 column 2"),
        "bad csv: '%s'", bt_err_msg());
  p = z;
  p += sprintf(p, "1,2,3\n4,5\n");
  bt_file_write_atomic(wpath("ragged.csv"), z, (size_t)(p - z));
  const char *d[] = {"arrays", "-o", wpath("bad.h5"), "--csv",
                     wpath("ragged.csv"), "--label-column", "2"};
  CHECK(prep(7, d) == 1 && strstr(bt_err_msg(), "line 2 has 2 columns"),
        "ragged csv: '%s'", bt_err_msg());
  free(z);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PREPARE_DRIVER WORKDIR\n", argv[0]);
    return 2;
  }
  g_zDriver = argv[1];
  g_zWork = argv[2];
  bt_mkdir_p(g_zWork);
  test_text();
  test_interrupt();
  test_npy();
  test_csv();
  free(g_aText);
  return CHECK_DONE();
}
