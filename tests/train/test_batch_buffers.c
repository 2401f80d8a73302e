/*
 * test_batch_buffers.c: the model's two batch buffers used in turn
 * (trainer/model.c "batch buffers", issue 12 item 4), on the CPU backend:
 * GPT (fp32, bf16) and MLP (fp32, bf16, whose uploaded pair is the fp32
 * staging xIn).
 *
 * Three micro-steps with gradient accumulation, three different batches
 * (a backward that read the other micro-step's buffer, or a forward whose
 * upload landed in the buffer its ops do not read, would mix batches):
 *   - against a reference that does not depend on the buffering: each
 *     micro-step alone on a fresh model, the three gradients summed in
 *     double; limit 1e-4 relative to the norm (accumulating inside the
 *     ops rounds differently from summing afterwards, ~1e-7 measured and
 *     printed; a micro-step computed on another batch is off by O(1));
 *   - bit for bit against the same three micro-steps after an evaluation
 *     forward (bt_model_forward on a fourth batch, no backward) that flips
 *     which member of each pair every micro-step takes, and leaves the
 *     fourth batch in the member the first micro-step does NOT use;
 *   - the loss sums of the micro-steps: the same bits in both orders.
 */
#include "base/util.h"
#include "kernels/ops.h"
#include "tests/check.h"
#include "trainer/config.h"
#include "trainer/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 4, T = 16, N = B * T, V = 97, D = 12, K = 5, NSTEP = 3 };

/* Batch j (0..3): GPT token ids and targets, MLP features and labels. */
typedef struct batch {
  int32_t in[N], tg[N];
  float x[B * D];
  int32_t lab[B];
} batch;
static batch g_aBatch[NSTEP + 1];

static void make_batches(void) {
  for (int j = 0; j <= NSTEP; j++) {
    uint64_t key = bt_rng_key(23, (uint64_t)j, 0, 0);
    batch *b = &g_aBatch[j];
    for (int i = 0; i < N; i++) {
      b->in[i] = (int32_t)(bt_rng_u64(key, (uint64_t)i) % V);
      b->tg[i] = i % 7 == 3 ? -1
                            : (int32_t)(bt_rng_u64(key, (uint64_t)(N + i)) % V);
    }
    for (int i = 0; i < B * D; i++)
      b->x[i] = (float)bt_rng_normal(key, (uint64_t)(2 * N + i));
    for (int i = 0; i < B; i++)
      b->lab[i] = (int32_t)(bt_rng_u64(key, (uint64_t)(3 * N + i)) % K);
  }
}

static int build(bt_model *m, bt_backend **pBe, int bGpt, const char *zPrec) {
  char zP[64];
  bt_snprintf(zP, sizeof zP, "train.precision=%s", zPrec);
  const char *azGpt[] = {"model.type=gpt", "model.n_layer=2",
                         "model.n_head=2", "model.n_embd=32",
                         "model.context=16", "model.vocab_size=97", zP};
  const char *azMlp[] = {"model.type=mlp", "model.mlp_hidden=16,8",
                         "model.n_features=12", "model.n_classes=5", zP};
  bt_config c;
  if (bt_config_load(&c, NULL, bGpt ? azGpt : azMlp, bGpt ? 7 : 5) != BT_OK)
    return BT_ERR;
  *pBe = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  if (!*pBe) return BT_ERR;
  if (bt_model_build(m, &c, *pBe, B, 1) != BT_OK) return BT_ERR;
  return bt_model_init_weights(m, 42);
}

/* Micro-steps on batches aj[0..n) accumulated into one gradient (copied to
 * *pGrads, malloc'd), after an evaluation forward on batch iEval unless it
 * is < 0. aLoss[k]: micro-step k's loss sum. */
static int run(int bGpt, const char *zPrec, int iEval, const int *aj, int n,
               float **pGrads, double *aLoss, size_t *pnFlat) {
  bt_model m;
  bt_backend *be = NULL;
  if (build(&m, &be, bGpt, zPrec) != BT_OK) return BT_ERR;
  bt_mem_zero(be, m.grads, m.nFlat);
  float scale = 1.0f / 37.0f;
  int rc = BT_OK;
  double s;
  int64_t c;
  if (iEval >= 0) {
    batch *e = &g_aBatch[iEval];
    rc = bt_model_forward(&m, B, e->in, e->x, bGpt ? e->tg : e->lab, &s, &c);
  }
  for (int k = 0; k < n && rc == BT_OK; k++) {
    batch *b = &g_aBatch[aj[k]];
    rc = bt_model_forward_train(&m, B, b->in, b->x, bGpt ? b->tg : b->lab,
                                scale, &aLoss[k], &c);
    if (rc == BT_OK) bt_model_backward(&m, scale, NULL, NULL);
  }
  if (rc == BT_OK) {
    *pnFlat = m.nFlat;
    *pGrads = malloc(m.nFlat * sizeof(float));
    memcpy(*pGrads, m.grads, m.nFlat * sizeof(float));
  }
  bt_model_free(&m);
  bt_backend_free(be);
  return rc;
}

static void compare(int bGpt, const char *zPrec) {
  const char *zModel = bGpt ? "gpt" : "mlp";
  int aj[NSTEP] = {0, 1, 2};
  float *acc = NULL, *flip = NULL, *aOne[NSTEP] = {0};
  double aLossAcc[NSTEP], aLossFlip[NSTEP], aLossOne[NSTEP];
  size_t nFlat = 0;
  int rc = run(bGpt, zPrec, -1, aj, NSTEP, &acc, aLossAcc, &nFlat);
  rc = rc ? rc : run(bGpt, zPrec, NSTEP, aj, NSTEP, &flip, aLossFlip, &nFlat);
  for (int k = 0; k < NSTEP && rc == BT_OK; k++)
    rc = run(bGpt, zPrec, -1, &aj[k], 1, &aOne[k], &aLossOne[k], &nFlat);
  if (rc != BT_OK) {
    CHECK(0, "%s %s: a run failed: %s", zModel, zPrec, bt_err_msg());
    return;
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < nFlat; i++) {
    double ref = 0;
    for (int k = 0; k < NSTEP; k++) ref += aOne[k][i];
    num += (acc[i] - ref) * (acc[i] - ref);
    den += ref * ref;
  }
  double rel = den > 0 ? sqrt(num / den) : 1;
  long nFlip = 0;
  for (size_t i = 0; i < nFlat; i++)
    nFlip += memcmp(&acc[i], &flip[i], sizeof(float)) != 0;
  int bLoss = !memcmp(aLossAcc, aLossFlip, sizeof aLossAcc);
  for (int k = 0; k < NSTEP; k++)
    bLoss &= !memcmp(&aLossAcc[k], &aLossOne[k], sizeof(double));
  printf("%s %s: %d micro-steps accumulated vs the sum of single steps: "
         "relerr %.2e (limit 1e-4); after an evaluation forward: %ld of %zu "
         "gradient elements differ; loss sums %s\n",
         zModel, zPrec, NSTEP, rel, nFlip, nFlat,
         bLoss ? "the same bits" : "DIFFER");
  CHECK(den > 0, "%s %s: zero gradient: the comparison proves nothing",
        zModel, zPrec);
  CHECK(rel <= 1e-4, "%s %s: accumulated gradient relerr %.3e", zModel,
        zPrec, rel);
  CHECK(nFlip == 0, "%s %s: %ld gradient elements change with the buffer "
        "parity", zModel, zPrec, nFlip);
  CHECK(bLoss, "%s %s: a micro-step's loss sum depends on the buffer order",
        zModel, zPrec);
  free(acc), free(flip);
  for (int k = 0; k < NSTEP; k++) free(aOne[k]);
}

int main(void) {
  make_batches();
  compare(1, "fp32");
  compare(1, "bf16");
  compare(0, "fp32");
  compare(0, "bf16");
  return CHECK_DONE();
}
