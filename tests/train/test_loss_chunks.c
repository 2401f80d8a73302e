/*
 * test_loss_chunks.c: the GPT's loss in chunks of model.loss_chunk_rows
 * (trainer/model.c, "GPT loss in chunks") against the loss in one chunk,
 * on the CPU backend, fp32 and bf16.
 *
 * One forward + backward of a small GPT (B = 8, T = 16: 128 rows, vocab
 * 1000 padded to 1024) with one chunk and with chunks of 32 rows (4):
 *   - losses: the same bits (every op on the loss path is row-wise);
 *   - every parameter gradient except wte's: the same bits (d(lnf) is
 *     row-wise, chunk starts are multiples of 32);
 *   - wte's gradient: the chunks' products are summed in chunk order, a
 *     different rounding of the same sum. Limit 1e-5 relative to the
 *     tensor's norm: fp32 sums of 128 terms reordered into 4 partial sums
 *     differ by a few ulps (6e-8 each) of the larger partial sums;
 *     measured values are printed (~1e-7). A chunk that dropped, doubled or
 *     misplaced rows is off by O(1e-1);
 *   - bt_model_forward + bt_model_backward (the backward recomputes each
 *     chunk's logits) and bt_model_forward_train + bt_model_backward give
 *     the same bits, chunked or not;
 *   - the chunked model's logits buffer holds 32 rows: a forward without
 *     targets over 128 rows is refused with an error naming the key;
 *   - model.loss_chunk_rows must be a multiple of 32 (error names it).
 */
#include "base/util.h"
#include "kernels/ops.h"
#include "tests/check.h"
#include "trainer/config.h"
#include "trainer/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 8, T = 16, N = B * T, V = 1000 };

typedef struct run {
  float *grads;
  double lossSum;
  int64_t count;
} run;

static int build(bt_model *m, bt_backend **pBe, const char *zChunk,
                 const char *zPrec) {
  char zC[64], zP[64];
  bt_snprintf(zC, sizeof zC, "model.loss_chunk_rows=%s", zChunk);
  bt_snprintf(zP, sizeof zP, "train.precision=%s", zPrec);
  const char *az[] = {"model.type=gpt", "model.n_layer=2", "model.n_head=2",
                      "model.n_embd=32", "model.context=16",
                      "model.vocab_size=1000", zC, zP};
  bt_config c;
  if (bt_config_load(&c, NULL, az, 8) != BT_OK) return BT_ERR;
  *pBe = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  if (!*pBe) return BT_ERR;
  if (bt_model_build(m, &c, *pBe, B, 1) != BT_OK) return BT_ERR;
  return bt_model_init_weights(m, 42);
}

/* One forward + backward; bTrain: bt_model_forward_train. */
static int step(const char *zChunk, const char *zPrec, int bTrain,
                const int32_t *in, const int32_t *tg, run *r) {
  bt_model m;
  bt_backend *be = NULL;
  if (build(&m, &be, zChunk, zPrec) != BT_OK) {
    fprintf(stderr, "build: %s\n", bt_err_msg());
    return BT_ERR;
  }
  bt_mem_zero(be, m.grads, m.nFlat);
  float scale = 1.0f / 117.0f;
  int rc = bTrain ? bt_model_forward_train(&m, B, in, NULL, tg, scale,
                                           &r->lossSum, &r->count)
                  : bt_model_forward(&m, B, in, NULL, tg, &r->lossSum,
                                     &r->count);
  if (rc == BT_OK) {
    bt_model_backward(&m, scale, NULL, NULL);
    r->grads = malloc(m.nFlat * sizeof(float));
    memcpy(r->grads, m.grads, m.nFlat * sizeof(float));
  }
  bt_model_free(&m);
  bt_backend_free(be);
  return rc;
}

static void compare(const char *zPrec, const int32_t *in, const int32_t *tg) {
  run one, four, oneFwd, fourFwd;
  if (step("0", zPrec, 1, in, tg, &one) || step("32", zPrec, 1, in, tg, &four) ||
      step("0", zPrec, 0, in, tg, &oneFwd) ||
      step("32", zPrec, 0, in, tg, &fourFwd)) {
    CHECK(0, "%s: a step failed: %s", zPrec, bt_err_msg());
    return;
  }
  bt_model m;
  bt_backend *be;
  CHECK(build(&m, &be, "0", zPrec) == BT_OK, "%s", bt_err_msg());
  const bt_tensor *wte = bt_model_find(&m, "wte.weight");
  size_t w0 = wte->offset, w1 = wte->offset + wte->numel, nFlat = m.nFlat;
  bt_model_free(&m);
  bt_backend_free(be);

  CHECK(memcmp(&one.lossSum, &four.lossSum, sizeof(double)) == 0 &&
            one.count == four.count,
        "%s: loss sum %.17g (one chunk) vs %.17g (4 chunks)", zPrec,
        one.lossSum, four.lossSum);
  long nOther = 0;
  for (size_t i = 0; i < nFlat; i++)
    if ((i < w0 || i >= w1) &&
        memcmp(&one.grads[i], &four.grads[i], sizeof(float)) != 0)
      nOther++;
  double num = 0, den = 0, maxAbs = 0;
  long nWte = 0;
  for (size_t i = w0; i < w1; i++) {
    double d = (double)one.grads[i] - four.grads[i];
    num += d * d;
    den += (double)one.grads[i] * one.grads[i];
    nWte += d != 0;
    maxAbs = fabs(d) > maxAbs ? fabs(d) : maxAbs;
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  printf("%s: loss %.9g over %lld targets, the same bits in 1 and 4 chunks; "
         "%ld gradient elements outside wte differ; wte: %ld of %zu elements "
         "differ, relerr %.2e (limit 1e-5), max |diff| %.2e\n",
         zPrec, one.lossSum / (double)one.count, (long long)one.count, nOther,
         nWte, w1 - w0, rel, maxAbs);
  CHECK(nOther == 0, "%s: %ld gradient elements outside wte differ", zPrec,
        nOther);
  CHECK(rel <= 1e-5, "%s: wte gradient 4 chunks vs 1: relerr %.3e", zPrec,
        rel);
  CHECK(den > 0, "%s: wte gradient is zero: the comparison proves nothing",
        zPrec);
  CHECK(!memcmp(one.grads, oneFwd.grads, nFlat * sizeof(float)) &&
            !memcmp(&one.lossSum, &oneFwd.lossSum, sizeof(double)),
        "%s, one chunk: forward_train and forward + backward differ", zPrec);
  CHECK(!memcmp(four.grads, fourFwd.grads, nFlat * sizeof(float)) &&
            !memcmp(&four.lossSum, &fourFwd.lossSum, sizeof(double)),
        "%s, 4 chunks: forward_train and forward + backward differ", zPrec);
  free(one.grads), free(four.grads), free(oneFwd.grads), free(fourFwd.grads);
}

int main(void) {
  int32_t in[N], tg[N];
  uint64_t key = bt_rng_key(11, 3, 0, 0);
  for (int i = 0; i < N; i++) {
    in[i] = (int32_t)(bt_rng_u64(key, (uint64_t)i) % V);
    tg[i] = i % 11 == 5 ? -1 : (int32_t)(bt_rng_u64(key, (uint64_t)(N + i)) % V);
  }
  compare("fp32", in, tg);
  compare("bf16", in, tg);

  /* The chunked model keeps 32 rows of logits: a forward that would need
   * all 128 (no targets) is refused, naming the key. */
  bt_model m;
  bt_backend *be;
  CHECK(build(&m, &be, "32", "fp32") == BT_OK, "%s", bt_err_msg());
  int rc = bt_model_forward(&m, B, in, NULL, NULL, NULL, NULL);
  printf("forward without targets over %d rows, 32-row chunks: %s\n", N,
         rc ? bt_err_msg() : "accepted");
  CHECK(rc == BT_ERR && strstr(bt_err_msg(), "model.loss_chunk_rows"),
        "a forward without targets beyond the logits buffer was not refused");
  CHECK(bt_model_forward(&m, 2, in, NULL, NULL, NULL, NULL) == BT_OK,
        "a forward without targets of 32 rows: %s", bt_err_msg());
  bt_model_free(&m);
  bt_backend_free(be);

  bt_config c;
  const char *azBad[] = {"model.type=gpt", "model.loss_chunk_rows=33"};
  CHECK(bt_config_load(&c, NULL, azBad, 2) == BT_ERR &&
            strstr(bt_err_msg(), "model.loss_chunk_rows (33)"),
        "loss_chunk_rows = 33 accepted or the error does not name it: %s",
        bt_err_msg());
  printf("model.loss_chunk_rows=33: %s\n", bt_err_msg());
  return CHECK_DONE();
}
