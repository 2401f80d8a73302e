/*
 * prepare.c: `baton prepare`, which turns text or arrays into the HDF5
 * layout of docs/data.md that the loader reads.
 *
 *   baton prepare text   -o OUT.h5 [--val-fraction F] [--seed S]
 *                        [--chunk N] [--gzip L] [--tokenizer TOK] FILE...
 *   baton prepare arrays -o OUT.h5 (--x X.npy --y Y.npy |
 *                        --csv FILE.csv --label-column K)
 *                        [--val-fraction F] [--seed S] [--gzip L]
 *
 * text: byte-level tokens (vocab 256, tokenizer "bytes", uint16). The files
 * are concatenated in the order given (nothing inserted between them) and
 * cut into blocks of --chunk bytes (default 65536; the last block may be
 * short). nVal = round(F * nBlock) blocks go to /val (at least 1 when
 * F > 0 and there are >= 2 blocks; never all of them): block b is a val
 * block iff bt_perm_index(seed, 0, nBlock, b) < nVal. Each split keeps its
 * blocks in input order. Without --gzip the datasets are contiguous
 * (the loader then reads windows with pread); with --gzip they are chunked
 * (--chunk elements) with shuffle + deflate.
 * text --tokenizer TOK: byte-level BPE (data/tokenizer.h) over the same
 * concatenated stream, encoded in one pass as a stream (so the ids are
 * those of encoding the whole text at once) and held in memory (4 bytes
 * per token) until the split is known; blocks are then --chunk tokens,
 * split by the same rule. uint16 when the vocabulary fits, else uint32;
 * vocab_size and tokenizer = "bpe" as attributes, and the tokenizer's
 * files copied into /tokenizer/ (plus tokenizer_path, tokenizer_xxh64)
 * so that export and infer find the tokenizer the data was made with.
 * arrays: rows of X (any trailing shape, flattened) and labels Y; the same
 * rule with rows instead of blocks picks the val rows.
 *
 * Crash safety (docs/design.md, decision 7: crash-safe files; the code is
 * prepare_common.c, shared with prepare_audio.c): everything is written to
 * OUT.h5.tmp.<pid>, closed, fsync'ed, renamed to OUT.h5 and the directory
 * fsync'ed. An error removes the temporary file; SIGINT/SIGTERM remove it
 * and then die with the signal; SIGKILL leaves only the .tmp.<pid> file.
 * So OUT.h5 is either absent (or the previous version) or complete.
 * Fault points: prepare.block (fail the Nth block/split write with an
 * error), prepare.kill (SIGKILL itself at the Nth), prepare.term (SIGTERM
 * itself at the Nth).
 *
 * Threads: single-threaded; HDF5 calls hold bt_h5_lock() like every other
 * HDF5 user in the process. No exit(): bt_prepare_main returns the code.
 */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/util.h"
#include "data/features.h"
#include "data/loader.h"
#include "data/loader_impl.h"
#include "data/prepare_common.h"
#include "data/tokenizer.h"

/* ---- fault points --------------------------------------------------------
 * The temporary file and its signal handlers: prepare_common.h. */

static void fault_points(void) {
  if (bt_fault_hit("prepare.kill")) raise(SIGKILL);
  if (bt_fault_hit("prepare.term")) raise(SIGTERM);
}

/* ---- HDF5 output -----------------------------------------------------------
 * Every HDF5 call that can lose data is checked through H5_TRY or
 * bt_h5_fail (call, file, dataset). Closing property lists, dataspaces,
 * types and attributes on cleanup paths is not checked: it touches no data
 * and an earlier error is already being reported. */

typedef struct out_file {
  char zOut[4096];
  hid_t hFile;
  int gzip;
} out_file;

typedef struct out_ds {
  const char *zName;
  hid_t hDset;
  int rank;  /* 1 or 2 */
  hsize_t D; /* columns when rank 2 */
  int64_t n;      /* rows written */
  int64_t nTotal; /* rows the dataset holds */
} out_ds;

#define H5_TRY(call, zDsetName)                                                \
  do {                                                                         \
    if ((call) < 0) {                                                          \
      rc = bt_h5_fail(bt_prep_tmp_path(), (zDsetName), #call, __LINE__);       \
      goto out;                                                                \
    }                                                                          \
  } while (0)

static int out_open(out_file *o, const char *zOut, int gzip) {
  memset(o, 0, sizeof *o);
  o->hFile = -1;
  o->gzip = gzip;
  snprintf(o->zOut, sizeof o->zOut, "%s", zOut);
  if (bt_prep_tmp_begin(zOut) != BT_OK) return BT_ERR;
  int rc = BT_OK;
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  o->hFile =
      H5Fcreate(bt_prep_tmp_path(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5_TRY(o->hFile, "/");
out:
  bt_h5_unlock();
  if (rc != BT_OK) bt_prep_tmp_end(zOut, 0); /* the probe's empty file */
  return rc;
}

static int out_attr_int(out_file *o, const char *zName, int v) {
  int rc = BT_OK;
  hid_t sp = -1, a = -1;
  bt_h5_lock();
  sp = H5Screate(H5S_SCALAR);
  H5_TRY(sp, "/");
  a = H5Acreate2(o->hFile, zName, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5_TRY(a, "/");
  H5_TRY(H5Awrite(a, H5T_NATIVE_INT, &v), "/");
out:
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

static int out_attr_str(out_file *o, const char *zName, const char *zVal) {
  int rc = BT_OK;
  hid_t sp = -1, a = -1, t = -1;
  bt_h5_lock();
  t = H5Tcopy(H5T_C_S1);
  H5_TRY(t, "/");
  H5_TRY(H5Tset_size(t, strlen(zVal) + 1), "/");
  H5_TRY(H5Tset_strpad(t, H5T_STR_NULLTERM), "/");
  sp = H5Screate(H5S_SCALAR);
  H5_TRY(sp, "/");
  a = H5Acreate2(o->hFile, zName, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5_TRY(a, "/");
  H5_TRY(H5Awrite(a, t, zVal), "/");
out:
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  bt_h5_unlock();
  return rc;
}

/* Creates a dataset of nRow rows. Without compression it is contiguous
 * (so the loader can pread() token windows directly, see h5.c); with
 * --gzip it is chunked (chunkRows) with shuffle + deflate. */
static int ds_create(out_file *o, out_ds *d, const char *zName, hid_t type,
                     int rank, hsize_t D, hsize_t chunkRows, int64_t nRow) {
  memset(d, 0, sizeof *d);
  d->zName = zName;
  d->rank = rank;
  d->D = D;
  d->hDset = -1;
  d->nTotal = nRow;
  int rc = BT_OK;
  hid_t sp = -1, dcpl = -1, lcpl = -1;
  hsize_t dims[2] = {(hsize_t)nRow, D};
  hsize_t chunk[2] = {chunkRows ? chunkRows : 1, D};
  if (chunk[0] > dims[0] && dims[0] > 0) chunk[0] = dims[0];
  bt_h5_lock();
  sp = H5Screate_simple(rank, dims, NULL);
  H5_TRY(sp, zName);
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5_TRY(dcpl, zName);
  if (o->gzip > 0 && nRow > 0) {
    H5_TRY(H5Pset_chunk(dcpl, rank, chunk), zName);
    H5_TRY(H5Pset_shuffle(dcpl), zName);
    H5_TRY(H5Pset_deflate(dcpl, (unsigned)o->gzip), zName);
  }
  lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5_TRY(lcpl, zName);
  H5_TRY(H5Pset_create_intermediate_group(lcpl, 1), zName);
  d->hDset = H5Dcreate2(o->hFile, zName, type, sp, lcpl, dcpl, H5P_DEFAULT);
  H5_TRY(d->hDset, zName);
out:
  if (lcpl >= 0) H5Pclose(lcpl);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

/* Appends nRow rows (memory type memType) to d. */
static int ds_append(out_ds *d, const void *pBuf, hid_t memType, int64_t nRow) {
  if (nRow <= 0) return BT_OK;
  if (bt_fault_hit("prepare.block"))
    return bt_err_set("%s:%s: injected write fault (BATON_FAULT "
                      "prepare.block)",
                      bt_prep_tmp_path(), d->zName);
  fault_points();
  int rc = BT_OK;
  hid_t fs = -1, ms = -1;
  if (d->n + nRow > d->nTotal)
    return bt_err_set("%s:%s: internal: %lld rows do not fit in %lld",
                      bt_prep_tmp_path(), d->zName, (long long)(d->n + nRow),
                      (long long)d->nTotal);
  hsize_t start[2] = {(hsize_t)d->n, 0}, count[2] = {(hsize_t)nRow, d->D};
  bt_h5_lock();
  fs = H5Dget_space(d->hDset);
  H5_TRY(fs, d->zName);
  H5_TRY(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL),
         d->zName);
  ms = H5Screate_simple(d->rank, count, NULL);
  H5_TRY(ms, d->zName);
  H5_TRY(H5Dwrite(d->hDset, memType, ms, fs, H5P_DEFAULT, pBuf), d->zName);
  d->n += nRow;
out:
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  bt_h5_unlock();
  return rc;
}

/* Closes d; a failure (HDF5 may flush data here) is an error. */
static int ds_close(out_ds *d) {
  int rc = BT_OK;
  if (d->hDset >= 0) {
    bt_h5_lock();
    if (H5Dclose(d->hDset) < 0)
      rc = bt_h5_fail(bt_prep_tmp_path(), d->zName, "H5Dclose", __LINE__);
    bt_h5_unlock();
  }
  d->hDset = -1;
  return rc;
}

/* Closes the file; on success fsyncs and renames it into place, otherwise
 * removes the temporary file. */
static int out_finish(out_file *o, int ok) {
  int rc = ok ? BT_OK : BT_ERR;
  if (o->hFile >= 0) {
    bt_h5_lock();
    if (H5Fclose(o->hFile) < 0 && ok)
      rc = bt_h5_fail(bt_prep_tmp_path(), "/", "H5Fclose", __LINE__);
    bt_h5_unlock();
    o->hFile = -1;
  }
  return bt_prep_tmp_end(o->zOut, rc == BT_OK);
}

/* ---- split rule ----------------------------------------------------------- */

static int64_t split_nval(double frac, int64_t n) {
  int64_t v = (int64_t)llround(frac * (double)n);
  if (frac > 0 && v == 0 && n >= 2) v = 1;
  if (v >= n) v = n >= 2 ? n - 1 : 0;
  if (v < 0) v = 0;
  return v;
}

static int is_val(uint64_t seed, int64_t n, int64_t nVal, int64_t i) {
  return nVal > 0 && bt_perm_index(seed, 0, n, i) < nVal;
}

/* ---- options -------------------------------------------------------------- */

typedef struct prep_opts {
  const char *zMode, *zOut, *zX, *zY, *zCsv, *zLabel, *zTok;
  double valFrac;
  uint64_t seed;
  int64_t chunk;
  int gzip;
  int nFile;
  char **azFile;
} prep_opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: baton prepare text -o OUT.h5 [--val-fraction F] [--seed S]\n"
          "                          [--chunk N] [--gzip L] [--tokenizer TOK] "
          "FILE...\n"
          "       baton prepare arrays -o OUT.h5 --x X.npy --y Y.npy\n"
          "                          [--val-fraction F] [--seed S] [--gzip L]\n"
          "       baton prepare arrays -o OUT.h5 --csv FILE.csv "
          "--label-column K\n"
          "                          [--val-fraction F] [--seed S] [--gzip L]\n"
          "       baton prepare audio -o OUT.h5 [--vocab VOCAB.h5] [--gzip L] "
          "MANIFEST\n"
          "\n"
          "Writes an HDF5 dataset in the layout of docs/data.md.\n"
          "  text    byte-level tokens (vocab 256): files are concatenated,\n"
          "          cut into blocks of --chunk bytes (default 65536), and a\n"
          "          seeded choice of round(F * blocks) blocks goes to /val.\n"
          "          With --tokenizer: byte-level BPE tokens, blocks of\n"
          "          --chunk tokens; the tokenizer is copied into OUT.h5.\n"
          "  arrays  features X (.npy float/int, any trailing shape) and\n"
          "          integer labels Y (.npy), or a CSV of numbers whose\n"
          "          label column K is a 0-based index or a header name.\n"
          "          A seeded choice of round(F * rows) rows goes to /val.\n"
          "  audio   log-mel features and character labels of the WAV files\n"
          "          of a manifest (PATH<TAB>TRANSCRIPT lines, or JSON\n"
          "          Lines); `baton prepare audio --help` lists its options.\n"
          "  -o OUT.h5            output (written to OUT.h5.tmp.<pid>, fsync'ed\n"
          "                       and renamed: never left half-written)\n"
          "  --val-fraction F     fraction for /val (default 0.1)\n"
          "  --seed S             seed of the train/val choice (default 1)\n"
          "  --chunk N            text: block and HDF5 chunk length (65536)\n"
          "  --gzip L             gzip level 1-9 with shuffle (default: none)\n"
          "  --tokenizer TOK      text: a Hugging Face tokenizer.json, GPT-2's\n"
          "                       vocab.json (merges.txt beside it), or a\n"
          "                       directory holding either (byte-level BPE)\n");
}

/* Parses argv into o. Returns -1 to go on, or the exit code to return now:
 * 0 after --help, BT_EXIT_USAGE after a usage error (reported by bt_cli).
 * The caller frees o->azFile either way. */
static int parse_opts(int argc, char **argv, prep_opts *o) {
  memset(o, 0, sizeof *o);
  o->valFrac = 0.1;
  o->seed = 1;
  o->chunk = 65536;
  o->azFile = calloc((size_t)argc + 1, sizeof(char *));
  if (!o->azFile) {
    bt_log_error("prepare: out of memory");
    return BT_EXIT_ERROR;
  }
  static const struct option aOpt[] = {
      {"output", required_argument, 0, 'o'},
      {"x", required_argument, 0, 'x'},
      {"y", required_argument, 0, 'y'},
      {"csv", required_argument, 0, 'c'},
      {"label-column", required_argument, 0, 'l'},
      {"val-fraction", required_argument, 0, 'v'},
      {"seed", required_argument, 0, 's'},
      {"chunk", required_argument, 0, 'k'},
      {"gzip", required_argument, 0, 'g'},
      {"tokenizer", required_argument, 0, 't'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "prepare", argc, argv, "ho:", aOpt, usage);
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    const char *v = c.zArg;
    char *end = NULL;
    switch (ch) {
    case 'h': usage(stdout); return BT_EXIT_OK;
    case 'o': o->zOut = v; break;
    case 't': o->zTok = v; break;
    case 'x': o->zX = v; break;
    case 'y': o->zY = v; break;
    case 'c': o->zCsv = v; break;
    case 'l': o->zLabel = v; break;
    case 'v':
      o->valFrac = strtod(v, &end);
      if (end == v || *end || !(o->valFrac >= 0 && o->valFrac < 1))
        return bt_cli_fail(&c, "--val-fraction '%s' is not in [0, 1)", v);
      break;
    case 's':
      o->seed = strtoull(v, &end, 10);
      if (end == v || *end)
        return bt_cli_fail(&c, "--seed '%s' is not a number", v);
      break;
    case 'k':
      o->chunk = strtoll(v, &end, 10);
      if (end == v || *end || o->chunk < 16 || o->chunk > (1 << 26))
        return bt_cli_fail(&c, "--chunk '%s' is not in [16, 2^26]", v);
      break;
    case 'g':
      o->gzip = (int)strtol(v, &end, 10);
      if (end == v || *end || o->gzip < 0 || o->gzip > 9)
        return bt_cli_fail(&c, "--gzip '%s' is not in [0, 9]", v);
      break;
    case BT_CLI_ARG:
      if (!o->zMode) o->zMode = v;
      else o->azFile[o->nFile++] = (char *)v;
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (!o->zMode)
    return bt_cli_fail(&c, "give a mode: text, arrays or audio");
  if (!o->zOut) return bt_cli_fail(&c, "-o OUT.h5 is required");
  if (o->zTok && strcmp(o->zMode, "text"))
    return bt_cli_fail(&c, "--tokenizer applies to `prepare text` only");
  return -1;
}

/* ---- text ----------------------------------------------------------------- */

static void progress(const char *zOut, int64_t done, int64_t total, double t0,
                     int bFinal) {
  static double tLast;
  double now = bt_time_now();
  if (!bFinal && now - tLast < 0.5) return;
  tLast = now;
  char za[32], zb[32];
  double mbs = done / 1e6 / (now - t0 > 1e-9 ? now - t0 : 1e-9);
  fprintf(stderr, "\rprepare %s: %s / %s (%3.0f%%), %.1f MB/s%s", zOut,
          bt_fmt_bytes((double)done, za, sizeof za),
          bt_fmt_bytes((double)total, zb, sizeof zb),
          total ? 100.0 * done / total : 100.0, mbs, bFinal ? "\n" : "");
  fflush(stderr);
}

/* Total bytes of the input files, which must be regular files. */
static int text_total(const prep_opts *o, int64_t *pTotal) {
  int64_t total = 0;
  for (int i = 0; i < o->nFile; i++) {
    struct stat st;
    if (stat(o->azFile[i], &st) != 0)
      return bt_err_set("prepare text: cannot read '%s': %s", o->azFile[i],
                        strerror(errno));
    if (!S_ISREG(st.st_mode))
      return bt_err_set("prepare text: '%s' is not a regular file",
                        o->azFile[i]);
    total += st.st_size;
  }
  if (total == 0) return bt_err_set("prepare text: the input files are empty");
  *pTotal = total;
  return BT_OK;
}

/* The input files read as one stream: the file being read and its fd. */
typedef struct text_src {
  const prep_opts *o;
  int iFile;
  int fd; /* -1 between files */
} text_src;

/* Reads exactly `want` bytes of the stream into aByte, crossing files. */
static int text_read(text_src *s, unsigned char *aByte, int64_t want) {
  int64_t got = 0;
  while (got < want) {
    if (s->fd < 0) {
      if (s->iFile >= s->o->nFile)
        return bt_err_set("prepare text: input shrank while reading");
      s->fd = open(s->o->azFile[s->iFile], O_RDONLY | O_CLOEXEC);
      if (s->fd < 0)
        return bt_err_set("prepare text: cannot open '%s': %s",
                          s->o->azFile[s->iFile], strerror(errno));
    }
    ssize_t r = read(s->fd, aByte + got, (size_t)(want - got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return bt_err_set("prepare text: read error in '%s': %s",
                        s->o->azFile[s->iFile], strerror(errno));
    if (r == 0) {
      close(s->fd);
      s->fd = -1;
      s->iFile++;
      continue;
    }
    got += r;
  }
  return BT_OK;
}

/* Warns (stderr) when a split came out empty or tiny, which the loader
 * would otherwise report only when training starts (docs/data.md, "baton
 * prepare"). Empty: /train with no item, or /val with none although
 * --val-fraction asked for some. Tiny: fewer than nFloor items (text: 1025
 * tokens, one window at context 1024; arrays: 64 rows, a small batch) or
 * fewer than 1% of the other split's. zHint says what to change. */
static void split_warn(const prep_opts *o, const char *zUnit, int64_t nTrain,
                       int64_t nVal, int64_t nFloor, const char *zHint) {
  const int64_t an[2] = {nTrain, nVal};
  const char *az[2] = {"train", "val"};
  for (int s = 0; s < 2; s++) {
    int64_t n = an[s], nOther = an[1 - s];
    if (n == 0 && (s == 0 || o->valFrac > 0))
      bt_log_warn("prepare: %s: /%s is empty (%lld %s in all, "
                  "--val-fraction %g); %s",
                  o->zOut, az[s], (long long)(n + nOther), zUnit, o->valFrac,
                  zHint);
    else if (n > 0 && (n < nFloor || n * 100 < nOther))
      bt_log_warn("prepare: %s: /%s is tiny: %lld %s against %lld in /%s "
                  "(fewer than %lld, or under 1%% of the other split); %s",
                  o->zOut, az[s], (long long)n, zUnit, (long long)nOther,
                  az[1 - s], (long long)nFloor, zHint);
  }
}
static int prepare_text_bpe(const prep_opts *o);

static int prepare_text(const prep_opts *o) {
  if (o->zTok) return prepare_text_bpe(o);
  if (o->nFile == 0) return bt_err_set("prepare text: no input files given");
  int64_t total = 0;
  if (text_total(o, &total) != BT_OK) return BT_ERR;
  int64_t B = o->chunk;
  int64_t nBlock = (total + B - 1) / B;
  int64_t nVal = split_nval(o->valFrac, nBlock);
  int bProgress = total > (8 << 20) || isatty(2);
  int64_t nValTok = 0;
  for (int64_t b = 0; b < nBlock; b++)
    if (is_val(o->seed, nBlock, nVal, b))
      nValTok += total - b * B < B ? total - b * B : B;

  unsigned char *aByte = bt_malloc((size_t)B, "text block");
  uint16_t *aTok = bt_malloc((size_t)B * 2, "token block");
  if (!aByte || !aTok) {
    free(aByte);
    free(aTok);
    return BT_ERR;
  }
  out_file of;
  out_ds dTr, dVa;
  memset(&dTr, 0, sizeof dTr);
  memset(&dVa, 0, sizeof dVa);
  dTr.hDset = dVa.hDset = -1;
  int rc = out_open(&of, o->zOut, o->gzip);
  if (rc == BT_OK)
    rc = ds_create(&of, &dTr, "/train/tokens", H5T_STD_U16LE, 1, 1,
                   (hsize_t)B, total - nValTok);
  if (rc == BT_OK)
    rc = ds_create(&of, &dVa, "/val/tokens", H5T_STD_U16LE, 1, 1, (hsize_t)B,
                   nValTok);
  text_src src = {o, 0, -1};
  int64_t done = 0;
  double t0 = bt_time_now();
  for (int64_t b = 0; b < nBlock && rc == BT_OK; b++) {
    int64_t got = total - done < B ? total - done : B;
    rc = text_read(&src, aByte, got);
    if (rc != BT_OK) break;
    for (int64_t i = 0; i < got; i++) aTok[i] = aByte[i];
    out_ds *d = is_val(o->seed, nBlock, nVal, b) ? &dVa : &dTr;
    rc = ds_append(d, aTok, H5T_NATIVE_UINT16, got);
    done += got;
    if (bProgress) progress(o->zOut, done, total, t0, b + 1 == nBlock);
  }
  if (src.fd >= 0) close(src.fd);
  free(aByte);
  free(aTok);
  if (ds_close(&dTr) != BT_OK) rc = BT_ERR;
  if (ds_close(&dVa) != BT_OK) rc = BT_ERR;
  if (rc == BT_OK) rc = out_attr_int(&of, "baton_format_version", 1);
  if (rc == BT_OK) rc = out_attr_int(&of, "vocab_size", 256);
  if (rc == BT_OK) rc = out_attr_str(&of, "tokenizer", "bytes");
  char zErr[2048];
  snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
  int rc2 = out_finish(&of, rc == BT_OK);
  if (rc != BT_OK) return bt_err_set("%s", zErr);
  if (rc2 != BT_OK) return rc2;
  printf("prepare: wrote %s: %lld train tokens, %lld val tokens (%lld of %lld "
         "blocks of %lld bytes in val)\n",
         o->zOut, (long long)dTr.n, (long long)dVa.n, (long long)nVal,
         (long long)nBlock, (long long)B);
  split_warn(o, "tokens", dTr.n, dVa.n, 1025,
             "the split is made of --chunk blocks: use a smaller --chunk, "
             "or more input");
  return BT_OK;
}

/* ---- text with a BPE tokenizer ------------------------------------------- */

/* Writes the tokenizer's files (as bt_tok_resolve names them) into
 * /tokenizer/<name> and the attributes naming where they came from. */
static int store_tokenizer(out_file *of, const char *zTok) {
  char zJson[4096], zMerges[4096];
  if (bt_tok_resolve(zTok, zJson, sizeof zJson, zMerges, sizeof zMerges) !=
      BT_OK)
    return BT_ERR;
  const char *azPath[2] = {zJson, zMerges[0] ? zMerges : NULL};
  uint64_t hash = 0;
  int rc = BT_OK;
  for (int i = 0; i < 2 && azPath[i] && rc == BT_OK; i++) {
    size_t n = 0;
    char *z = bt_file_read_all(azPath[i], &n);
    if (!z) return bt_err_prefix("prepare text: ");
    /* The stored name is the file's role, whatever it was called. */
    const char *zName = i == 1 ? "merges.txt"
                        : zMerges[0] ? "vocab.json"
                                     : "tokenizer.json";
    char zDset[64];
    snprintf(zDset, sizeof zDset, "/tokenizer/%s", zName);
    out_ds d;
    rc = ds_create(of, &d, zDset, H5T_STD_U8LE, 1, 1, 1 << 16, (int64_t)n);
    if (rc == BT_OK) rc = ds_append(&d, z, H5T_NATIVE_UCHAR, (int64_t)n);
    if (ds_close(&d) != BT_OK) rc = BT_ERR;
    hash = bt_hash64(z, n, hash);
    free(z);
  }
  char zAbs[PATH_MAX], zHash[32];
  snprintf(zHash, sizeof zHash, "%016llx", (unsigned long long)hash);
  if (rc == BT_OK) rc = out_attr_str(of, "tokenizer", "bpe");
  if (rc == BT_OK)
    rc = out_attr_str(of, "tokenizer_path", realpath(zTok, zAbs) ? zAbs : zTok);
  if (rc == BT_OK) rc = out_attr_str(of, "tokenizer_xxh64", zHash);
  return rc;
}

/* Encodes the input files (one stream, as text_read reads it) into *pIds. */
static int text_encode_all(const prep_opts *o, bt_tok *pTok, int64_t total,
                           bt_tok_ids *pIds) {
  size_t nBuf = 1 << 20, nHeld = 0;
  char *zBuf = bt_malloc(nBuf, "text buffer");
  if (!zBuf) return BT_ERR;
  text_src src = {o, 0, -1};
  int64_t done = 0;
  int rc = BT_OK;
  int bProgress = total > (8 << 20) || isatty(2);
  double t0 = bt_time_now();
  while (rc == BT_OK && (done < total || nHeld > 0)) {
    if (nHeld == nBuf) { /* one piece longer than the buffer: grow it */
      char *z = realloc(zBuf, nBuf * 2);
      if (!z) {
        rc = bt_err_set("prepare text: out of memory for a %zu-byte piece",
                        nBuf * 2);
        break;
      }
      zBuf = z;
      nBuf *= 2;
    }
    int64_t want = (int64_t)(nBuf - nHeld);
    if (want > total - done) want = total - done;
    rc = text_read(&src, (unsigned char *)zBuf + nHeld, want);
    if (rc != BT_OK) break;
    nHeld += (size_t)want;
    done += want;
    size_t used = 0;
    rc = bt_tok_encode(pTok, zBuf, nHeld, done == total, pIds, &used);
    memmove(zBuf, zBuf + used, nHeld - used);
    nHeld -= used;
    if (bProgress) progress(o->zOut, done, total, t0, done == total);
  }
  if (src.fd >= 0) close(src.fd);
  free(zBuf);
  return rc;
}

static int prepare_text_bpe(const prep_opts *o) {
  if (o->nFile == 0) return bt_err_set("prepare text: no input files given");
  int64_t total = 0;
  if (text_total(o, &total) != BT_OK) return BT_ERR;
  bt_tok *pTok = NULL;
  if (bt_tok_open(&pTok, o->zTok) != BT_OK)
    return bt_err_prefix("prepare text --tokenizer: ");
  int V = bt_tok_vocab_size(pTok);
  bt_tok_ids ids = {0};
  double t0 = bt_time_now();
  int rc = text_encode_all(o, pTok, total, &ids);
  double dt = bt_time_now() - t0;
  bt_tok_free(pTok);
  if (rc != BT_OK) {
    bt_tok_ids_free(&ids);
    return BT_ERR;
  }
  int64_t nTok = (int64_t)ids.n;
  int64_t B = o->chunk;
  int64_t nBlock = (nTok + B - 1) / B;
  int64_t nVal = split_nval(o->valFrac, nBlock);
  int64_t nValTok = 0;
  for (int64_t b = 0; b < nBlock; b++)
    if (is_val(o->seed, nBlock, nVal, b))
      nValTok += nTok - b * B < B ? nTok - b * B : B;
  /* The loader reads uint16 and uint32 (data/h5.c); HDF5 converts the
   * uint32 ids on write. */
  hid_t eType = V <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
  out_file of;
  out_ds dTr, dVa;
  memset(&dTr, 0, sizeof dTr);
  memset(&dVa, 0, sizeof dVa);
  dTr.hDset = dVa.hDset = -1;
  rc = out_open(&of, o->zOut, o->gzip);
  if (rc == BT_OK)
    rc = ds_create(&of, &dTr, "/train/tokens", eType, 1, 1, (hsize_t)B,
                   nTok - nValTok);
  if (rc == BT_OK)
    rc = ds_create(&of, &dVa, "/val/tokens", eType, 1, 1, (hsize_t)B,
                   nValTok);
  for (int64_t b = 0; b < nBlock && rc == BT_OK; b++) {
    int64_t n = nTok - b * B < B ? nTok - b * B : B;
    out_ds *d = is_val(o->seed, nBlock, nVal, b) ? &dVa : &dTr;
    rc = ds_append(d, ids.a + b * B, H5T_NATIVE_UINT32, n);
  }
  bt_tok_ids_free(&ids);
  if (ds_close(&dTr) != BT_OK) rc = BT_ERR;
  if (ds_close(&dVa) != BT_OK) rc = BT_ERR;
  if (rc == BT_OK) rc = out_attr_int(&of, "baton_format_version", 1);
  if (rc == BT_OK) rc = out_attr_int(&of, "vocab_size", V);
  if (rc == BT_OK) rc = store_tokenizer(&of, o->zTok);
  char zErr[2048];
  snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
  int rc2 = out_finish(&of, rc == BT_OK);
  if (rc != BT_OK) return bt_err_set("%s", zErr);
  if (rc2 != BT_OK) return rc2;
  printf("prepare: wrote %s: %lld train tokens, %lld val tokens (%lld of %lld "
         "blocks of %lld tokens in val); BPE vocab %d (%s), %.2f bytes/token, "
         "encoded at %.1f MB/s\n",
         o->zOut, (long long)dTr.n, (long long)dVa.n, (long long)nVal,
         (long long)nBlock, (long long)B, V, V <= 65536 ? "uint16" : "uint32",
         nTok ? (double)total / nTok : 0.0, dt > 0 ? total / 1e6 / dt : 0.0);
  return BT_OK;
}

/* ---- arrays (npy or csv, read by data/features.c) ------------------------ */

typedef struct table {
  int64_t n;
  int64_t D;
  float *aX;   /* [n, D] */
  int32_t *aY; /* [n] */
  int64_t nClass;
} table;

/* Checks label v of the row at zWhere and adds it to t. */
static int label_add(table *t, int64_t i, double v, const char *zWhere) {
  if (!(v >= 0) || v != floor(v) || v > 1e9)
    return bt_err_set("%s: label %g is not a non-negative integer", zWhere,
                      v);
  t->aY[i] = (int32_t)v;
  if (t->aY[i] + 1 > t->nClass) t->nClass = t->aY[i] + 1;
  return BT_OK;
}

static int load_npy(const prep_opts *o, table *t) {
  bt_features *x = NULL, *y = NULL;
  double *aV = NULL;
  int rc = bt_features_open(&x, o->zX, BT_FEATURES_NPY, NULL);
  if (rc == BT_OK) rc = bt_features_open(&y, o->zY, BT_FEATURES_NPY, NULL);
  if (rc == BT_OK && bt_features_cols(y) != 1)
    rc = bt_err_set("%s: labels must have shape (N,) or (N, 1)", o->zY);
  if (rc == BT_OK && bt_features_rows(x) != bt_features_rows(y))
    rc = bt_err_set("%s has %lld rows but %s has %lld", o->zX,
                    (long long)bt_features_rows(x), o->zY,
                    (long long)bt_features_rows(y));
  if (rc == BT_OK) {
    t->n = bt_features_rows(x);
    t->D = bt_features_cols(x);
    t->aX = bt_malloc((size_t)(t->n * t->D) * sizeof(float), "features");
    t->aY = bt_malloc((size_t)t->n * sizeof(int32_t), "labels");
    aV = bt_malloc((size_t)t->n * sizeof(double), "labels");
    if (!t->aX || !t->aY || !aV) rc = BT_ERR;
  }
  if (rc == BT_OK) rc = bt_features_read(x, 0, t->n, t->aX);
  if (rc == BT_OK) rc = bt_features_read_f64(y, 0, t->n, aV);
  for (int64_t i = 0; rc == BT_OK && i < t->n; i++) {
    char zWhere[4400];
    rc = label_add(t, i, aV[i],
                   bt_features_where(y, i, zWhere, sizeof zWhere));
  }
  free(aV);
  bt_features_close(x);
  bt_features_close(y);
  return rc;
}

/* The 0-based label column of a CSV: an index (negative from the end)
 * or a header name. -1 after bt_err_set. */
static int64_t csv_label_column(const bt_features *f, const char *zCsv,
                                const char *zLabel) {
  int64_t nCol = bt_features_cols(f), iLabel = -1;
  int bHdr = bt_features_col_name(f, 0) != NULL;
  char *end;
  long k = strtol(zLabel, &end, 10);
  if (*end == 0 && zLabel[0]) iLabel = k < 0 ? nCol + k : k;
  else
    for (int64_t i = 0; bHdr && i < nCol; i++)
      if (!strcmp(bt_features_col_name(f, i), zLabel)) iLabel = i;
  if (iLabel < 0 || iLabel >= nCol) {
    bt_err_set("%s: label column '%s' not found (%lld columns%s)", zCsv,
               zLabel, (long long)nCol, bHdr ? "" : ", no header line");
    return -1;
  }
  return iLabel;
}

static int load_csv(const prep_opts *o, table *t) {
  bt_features *f = NULL;
  double *aRow = NULL;
  int64_t iLabel = -1;
  int rc = bt_features_open(&f, o->zCsv, BT_FEATURES_CSV, NULL);
  if (rc == BT_OK && bt_features_cols(f) < 2)
    rc = bt_err_set("%s: needs at least 2 columns (features and a label)",
                    o->zCsv);
  if (rc == BT_OK && (iLabel = csv_label_column(f, o->zCsv, o->zLabel)) < 0)
    rc = BT_ERR;
  if (rc == BT_OK) {
    t->n = bt_features_rows(f);
    t->D = bt_features_cols(f) - 1;
    t->aX = bt_malloc((size_t)(t->n * t->D) * sizeof(float), "features");
    t->aY = bt_malloc((size_t)t->n * sizeof(int32_t), "labels");
    aRow = bt_malloc((size_t)(t->D + 1) * sizeof(double), "CSV row");
    if (!t->aX || !t->aY || !aRow) rc = BT_ERR;
  }
  for (int64_t i = 0; rc == BT_OK && i < t->n; i++) {
    rc = bt_features_read_f64(f, i, 1, aRow);
    float *x = t->aX + i * t->D;
    for (int64_t c = 0; rc == BT_OK && c <= t->D; c++) {
      if (c != iLabel) {
        *x++ = (float)aRow[c];
        continue;
      }
      char zWhere[4400], zCol[4500];
      bt_features_where(f, i, zWhere, sizeof zWhere);
      snprintf(zCol, sizeof zCol, "%s column %lld", zWhere, (long long)c + 1);
      rc = label_add(t, i, aRow[c], zCol);
    }
  }
  free(aRow);
  bt_features_close(f);
  return rc;
}

static int prepare_arrays(const prep_opts *o) {
  table t;
  memset(&t, 0, sizeof t);
  int rc;
  if (o->zCsv) {
    if (!o->zLabel)
      return bt_err_set("prepare arrays: --csv needs --label-column K");
    rc = load_csv(o, &t);
  } else {
    if (!o->zX || !o->zY)
      return bt_err_set("prepare arrays: give --x X.npy and --y Y.npy, or "
                        "--csv FILE.csv --label-column K");
    rc = load_npy(o, &t);
  }
  int64_t nVal = split_nval(o->valFrac, t.n);
  float *aXs = NULL;
  int32_t *aYs = NULL;
  out_file of;
  memset(&of, 0, sizeof of);
  of.hFile = -1;
  out_ds d[4];
  memset(d, 0, sizeof d);
  for (int i = 0; i < 4; i++) d[i].hDset = -1;
  int bOpen = 0;
  if (rc == BT_OK) {
    aXs = bt_malloc((size_t)(t.n * t.D) * sizeof(float), "split features");
    aYs = bt_malloc((size_t)t.n * sizeof(int32_t), "split labels");
    if (!aXs || !aYs) rc = BT_ERR;
  }
  if (rc == BT_OK) {
    rc = out_open(&of, o->zOut, o->gzip);
    bOpen = rc == BT_OK;
  }
  hsize_t chunkRows = (hsize_t)((1 << 20) / (4 * (t.D > 0 ? t.D : 1)) + 1);
  const char *azName[4] = {"/train/x", "/train/y", "/val/x", "/val/y"};
  for (int s = 0; s < 2 && rc == BT_OK; s++) { /* 0 train, 1 val */
    int64_t m = 0;
    for (int64_t i = 0; i < t.n; i++) {
      if (is_val(o->seed, t.n, nVal, i) != s) continue;
      memcpy(aXs + m * t.D, t.aX + i * t.D, (size_t)t.D * sizeof(float));
      aYs[m++] = t.aY[i];
    }
    rc = ds_create(&of, &d[2 * s], azName[2 * s], H5T_IEEE_F32LE, 2,
                   (hsize_t)t.D, chunkRows, m);
    if (rc == BT_OK)
      rc = ds_create(&of, &d[2 * s + 1], azName[2 * s + 1], H5T_STD_I32LE, 1,
                     1, 65536, m);
    if (rc == BT_OK) rc = ds_append(&d[2 * s], aXs, H5T_NATIVE_FLOAT, m);
    if (rc == BT_OK) rc = ds_append(&d[2 * s + 1], aYs, H5T_NATIVE_INT32, m);
  }
  for (int i = 0; i < 4; i++)
    if (ds_close(&d[i]) != BT_OK) rc = BT_ERR;
  if (rc == BT_OK) rc = out_attr_int(&of, "baton_format_version", 1);
  if (rc == BT_OK) rc = out_attr_int(&of, "num_classes", (int)t.nClass);
  char zErr[2048];
  snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
  int rc2 = bOpen ? out_finish(&of, rc == BT_OK) : BT_OK;
  free(aXs);
  free(aYs);
  free(t.aX);
  free(t.aY);
  if (rc != BT_OK) return bt_err_set("%s", zErr);
  if (rc2 != BT_OK) return rc2;
  printf("prepare: wrote %s: %lld train rows, %lld val rows, D=%lld, %lld "
         "classes\n",
         o->zOut, (long long)d[0].n, (long long)d[2].n, (long long)t.D,
         (long long)t.nClass);
  split_warn(o, "rows", d[0].n, d[2].n, 64,
             "change --val-fraction, or use more rows");
  return BT_OK;
}

/* ---- entry ---------------------------------------------------------------- */

/* BT_OK if the command line names a mode and its inputs, else BT_ERR with
 * the message (prepare_text and prepare_arrays keep their own guards). */
static int prepare_check_usage(const prep_opts *o) {
  if (!strcmp(o->zMode, "text")) {
    if (o->nFile == 0) return bt_err_set("prepare text: no input files given");
    return BT_OK;
  }
  if (strcmp(o->zMode, "arrays"))
    return bt_err_set("prepare: unknown mode '%s' (text, arrays or audio; see "
                      "--help)",
                      o->zMode);
  if (o->nFile > 0)
    return bt_err_set("prepare arrays: unexpected argument '%s'", o->azFile[0]);
  if (o->zCsv && !o->zLabel)
    return bt_err_set("prepare arrays: --csv needs --label-column K");
  if (!o->zCsv && (!o->zX || !o->zY))
    return bt_err_set("prepare arrays: give --x X.npy and --y Y.npy, or "
                      "--csv FILE.csv --label-column K");
  return BT_OK;
}

int bt_prepare_main(int argc, char **argv) {
  prep_opts o;
  int code = parse_opts(argc, argv, &o);
  if (code >= 0) {
    free(o.azFile);
    return code;
  }
  int rc;
  /* An unknown mode or missing inputs is a usage error: exit 2 like every
   * other command's (docs/operations.md), so a supervisor does not retry. */
  if (prepare_check_usage(&o) != BT_OK) {
    free(o.azFile);
    bt_log_error("%s", bt_err_msg());
    return BT_EXIT_USAGE;
  }
  (void)bt_fault_hit("prepare.start");
  if (!strcmp(o.zMode, "text")) rc = prepare_text(&o);
  else rc = prepare_arrays(&o);
  free(o.azFile);
  if (rc != BT_OK) {
    bt_log_error("%s", bt_err_msg());
    return BT_EXIT_ERROR;
  }
  return BT_EXIT_OK;
}
