/*
 * tok_tool.c: the C tokenizer (data/tokenizer.h) as a program, for the
 * reference test (test_data_bpe.py) and the benchmark (bench/tokenizer).
 *
 *   tok_tool encode TOKENIZER TEXT OUT.u32   ids of TEXT (one call, whole
 *       text) as little-endian uint32; also checks, and fails unless,
 *       (a) decoding the ids gives TEXT back byte for byte and (b) encoding
 *       TEXT as a stream of pieces of varying sizes (bFinal = 0, as
 *       `prepare text` does) gives the same ids.
 *   tok_tool bench TOKENIZER TEXT RUNS [OUT.u32]   encode throughput:
 *       each line (ending with its '\n') is encoded by its own call, as
 *       the package's encode_batch(lines) does, so the two are comparable
 *       id for id; prints one JSON line {"mb_s": [...], "tokens": N}. Each
 *       run uses a fresh tokenizer, so the piece cache starts cold. OUT
 *       gets the last run's ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/tokenizer.h"

static int fail(const char *zWhat) {
  fprintf(stderr, "tok_tool: %s: %s\n", zWhat, bt_err_msg());
  return 1;
}

/* Encodes z as a stream: pieces of 1..4096 bytes (a fixed, varied
 * sequence), each call seeing what is left of the previous ones. */
static int encode_stream(bt_tok *p, const char *z, size_t n, bt_tok_ids *pOut) {
  size_t done = 0, vis = 0, k = 0;
  static const size_t aStep[] = {1, 7, 64, 4096, 3, 513, 2, 1000, 31};
  while (vis < n) {
    vis += aStep[k++ % (sizeof aStep / sizeof aStep[0])];
    if (vis > n) vis = n;
    size_t used = 0;
    if (bt_tok_encode(p, z + done, vis - done, vis == n, pOut, &used) != BT_OK)
      return BT_ERR;
    done += used;
  }
  return done == n ? BT_OK : bt_err_set("stream left %zu bytes", n - done);
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6 ||
      (strcmp(argv[1], "encode") && strcmp(argv[1], "bench"))) {
    fprintf(stderr, "usage: tok_tool encode TOKENIZER TEXT OUT.u32\n"
                    "       tok_tool bench TOKENIZER TEXT RUNS [OUT.u32]\n");
    return 2;
  }
  size_t n = 0;
  char *z = bt_file_read_all(argv[3], &n);
  if (!z) return fail(argv[3]);
  bt_tok *p = NULL;
  if (!strcmp(argv[1], "bench")) {
    int nRun = atoi(argv[4]);
    printf("{\"mb_s\": [");
    size_t nTok = 0;
    for (int r = 0; r < nRun; r++) {
      if (bt_tok_open(&p, argv[2]) != BT_OK) return fail(argv[2]);
      bt_tok_ids ids = {0};
      double t0 = bt_time_now();
      for (size_t i = 0; i < n;) {
        const char *zNl = memchr(z + i, '\n', n - i);
        size_t k = zNl ? (size_t)(zNl - (z + i)) + 1 : n - i;
        if (bt_tok_encode(p, z + i, k, 1, &ids, NULL) != BT_OK)
          return fail("encode");
        i += k;
      }
      double dt = bt_time_now() - t0;
      printf("%s%.2f", r ? ", " : "", n / 1e6 / dt);
      nTok = ids.n;
      if (r + 1 == nRun && argc == 6 &&
          bt_file_write_atomic(argv[5], ids.a, ids.n * 4) != BT_OK)
        return fail(argv[5]);
      bt_tok_ids_free(&ids);
      bt_tok_free(p);
    }
    printf("], \"tokens\": %zu, \"bytes\": %zu}\n", nTok, n);
    free(z);
    return 0;
  }
  double t0 = bt_time_now();
  if (bt_tok_open(&p, argv[2]) != BT_OK) return fail(argv[2]);
  double t1 = bt_time_now();
  bt_tok_ids ids = {0}, ids2 = {0};
  if (bt_tok_encode(p, z, n, 1, &ids, NULL) != BT_OK) return fail("encode");
  double t2 = bt_time_now();
  int rc = 0;
  size_t nDec = 0;
  char *zDec = bt_tok_decode(p, ids.a, ids.n, &nDec);
  if (!zDec) return fail("decode");
  if (nDec != n || memcmp(zDec, z, n)) {
    size_t i = 0;
    while (i < n && i < nDec && zDec[i] == z[i]) i++;
    fprintf(stderr, "tok_tool: decode(encode(text)) differs at byte %zu\n", i);
    rc = 1;
  }
  if (encode_stream(p, z, n, &ids2) != BT_OK) return fail("stream encode");
  if (ids2.n != ids.n || memcmp(ids2.a, ids.a, ids.n * sizeof(uint32_t))) {
    size_t i = 0;
    while (i < ids.n && i < ids2.n && ids.a[i] == ids2.a[i]) i++;
    fprintf(stderr, "tok_tool: streamed encode differs at token %zu (%zu vs "
                    "%zu tokens)\n", i, ids2.n, ids.n);
    rc = 1;
  }
  if (bt_file_write_atomic(argv[4], ids.a, ids.n * sizeof(uint32_t)) != BT_OK)
    return fail(argv[4]);
  fprintf(stderr, "tok_tool: %s: vocab %d, loaded in %.3f s; %zu bytes -> "
                  "%zu tokens in %.3f s (%.1f MB/s)\n",
          argv[2], bt_tok_vocab_size(p), t1 - t0, n, ids.n, t2 - t1,
          n / 1e6 / (t2 - t1));
  free(zDec);
  bt_tok_ids_free(&ids);
  bt_tok_ids_free(&ids2);
  bt_tok_free(p);
  free(z);
  return rc;
}
