/*
 * test_ckpt_codec.c: byte-shuffle and bounded zstd (checkpoints/codec.c).
 *   - shuffle/unshuffle round trip, odd tails included;
 *   - compress/decompress round trip; the decoder rejects a frame whose
 *     declared size differs from the expected one, trailing bytes, a
 *     truncated frame and garbage, without writing past the buffer;
 *   - on trained-like weights (normal * 0.02) shuffling raises the zstd
 *     ratio (the reason it exists).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <zstd.h>

#include "tests/check.h"
#include "tests/ckpt/ckpt_testutil.h"

static double ratio(const float *p, size_t n, int shuffle, int level) {
  size_t nByte = n * 4;
  uint8_t *pS = malloc(nByte);
  uint8_t *pC = malloc(bt_ckpt_compress_bound(nByte));
  const void *pIn = p;
  if (shuffle) {
    bt_ckpt_shuffle4(p, pS, nByte);
    pIn = pS;
  }
  size_t nOut = 0;
  int rc = bt_ckpt_compress(NULL, pIn, nByte, level, pC,
                            bt_ckpt_compress_bound(nByte), &nOut);
  free(pS);
  free(pC);
  return rc == BT_OK ? (double)nByte / (double)nOut : 0;
}

int main(void) {
  /* shuffle round trip, including sizes that are not multiples of 4 */
  for (size_t n = 0; n < 70; n += 7) {
    uint8_t a[80] = {0}, b[80] = {0}, c[80] = {0};
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)(i * 37 + 1);
    bt_ckpt_shuffle4(a, b, n);
    bt_ckpt_unshuffle4(b, c, n);
    CHECK(memcmp(a, c, n) == 0, "shuffle round trip n=%zu", n);
    if (n >= 8) CHECK(b[1] == a[4], "byte 0 of element 1 is second: %d", b[1]);
  }

  size_t n = 1 << 18;
  float *pW = malloc(n * 4);
  tu_fill_normal(pW, 0, n, bt_rng_key(1, 2, 3, 4), 0.02);

  /* zstd round trip through the bounded decoder */
  size_t nB = bt_ckpt_compress_bound(n * 4);
  uint8_t *pC = malloc(nB);
  size_t nC = 0;
  CHECK(bt_ckpt_compress(NULL, pW, n * 4, 3, pC, nB, &nC) == BT_OK, "%s", bt_err_msg());
  float *pD = malloc(n * 4 + 64);
  memset(pD, 0xAB, n * 4 + 64);
  CHECK(bt_ckpt_decompress(NULL, pC, nC, pD, n * 4, "x") == BT_OK, "%s", bt_err_msg());
  CHECK(memcmp(pD, pW, n * 4) == 0, "decoded data differs");
  CHECK(((uint8_t *)pD)[n * 4] == 0xAB, "wrote past the expected size");

  /* wrong expected size: rejected before decoding */
  CHECK(bt_ckpt_decompress(NULL, pC, nC, pD, n * 4 - 4, "x") == BT_ERR, "smaller size accepted");
  CHECK(strstr(bt_err_msg(), "declares") != NULL, "message: %s", bt_err_msg());
  CHECK(bt_ckpt_decompress(NULL, pC, nC, pD, n * 4 + 4, "x") == BT_ERR, "larger size accepted");
  /* truncated frame, trailing garbage, not zstd at all */
  CHECK(bt_ckpt_decompress(NULL, pC, nC / 2, pD, n * 4, "x") == BT_ERR, "truncated accepted");
  uint8_t *pC2 = malloc(nC + 8);
  memcpy(pC2, pC, nC);
  memset(pC2 + nC, 0, 8);
  CHECK(bt_ckpt_decompress(NULL, pC2, nC + 8, pD, n * 4, "x") == BT_ERR, "trailing bytes accepted");
  CHECK(bt_ckpt_decompress(NULL, "hello world", 11, pD, 11, "x") == BT_ERR, "garbage accepted");
  CHECK(bt_ckpt_decompress(NULL, pC, 3, pD, n * 4, "x") == BT_ERR, "3-byte input accepted");
  /* a frame without a content size (streaming) is refused */
  {
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_outBuffer out = {pC2, nC + 8, 0};
    ZSTD_inBuffer in = {pW, 100, 0};
    ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
    ZSTD_freeCCtx(cc);
    CHECK(bt_ckpt_decompress(NULL, pC2, out.pos, pD, 100, "x") == BT_ERR,
          "frame without size accepted");
    CHECK(strstr(bt_err_msg(), "size") != NULL, "message: %s", bt_err_msg());
  }

  /* shuffle helps on trained-like weights */
  double r0 = ratio(pW, n, 0, 3), r1 = ratio(pW, n, 1, 3);
  printf("normal(0,0.02) float32: zstd-3 ratio %.3f, shuffle4+zstd-3 ratio %.3f\n", r0, r1);
  CHECK(r1 > r0 * 1.05, "shuffle gains less than 5%%: %.3f vs %.3f", r1, r0);
  CHECK(r1 > 1.10, "shuffled ratio %.3f too low", r1);

  free(pC2);
  free(pW);
  free(pC);
  free(pD);
  return CHECK_DONE();
}
