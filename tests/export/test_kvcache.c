/*
 * test_kvcache.c: the KV-cache decoder (export/export_kv.c) against the
 * trainer's full forward (bt_model_forward) at EVERY position.
 *
 * Weights are the seeded GPT-2 initialisation scaled up (x8, layernorm
 * gains kept at 1) so that attention is far from uniform and the logits
 * spread over several units: with the raw 0.02-std init every position
 * would look alike and a wrong cache index could go unnoticed. A second
 * case uses two heads and a context that is not a power of two.
 *
 * Limit: max |kv - full| < 1e-4 per logit (fp32; both paths run the same
 * CPU ops, but the decoder's products are one-row sgemm / sgemv calls
 * (matmul_fwd with N = 1, attention_decode) whose summation order differs
 * from the full forward's sgemm over all rows; measured ~2e-6).
 */
#include "base/util.h"
#include "export/export.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void run_case(int L, int NH, int C, int T, int V, uint64_t seed) {
  bt_config c;
  const char *azSet[] = {"model.type=gpt"};
  CHECK(bt_config_load(&c, NULL, azSet, 1) == BT_OK, "%s", bt_err_msg());
  char z[64];
  snprintf(z, sizeof z, "model.n_layer=%d", L);
  bt_config_set(&c, z, "test");
  snprintf(z, sizeof z, "model.n_head=%d", NH);
  bt_config_set(&c, z, "test");
  snprintf(z, sizeof z, "model.n_embd=%d", C);
  bt_config_set(&c, z, "test");
  snprintf(z, sizeof z, "model.context=%d", T);
  bt_config_set(&c, z, "test");
  snprintf(z, sizeof z, "model.vocab_size=%d", V);
  bt_config_set(&c, z, "test");
  bt_backend *be = bt_backend_create(BT_BACKEND_CPU, 0, 0);
  CHECK(be != NULL, "%s", bt_err_msg());
  bt_model m;
  CHECK(bt_model_build(&m, &c, be, 1, 1) == BT_OK, "%s", bt_err_msg());
  CHECK(bt_model_init_weights(&m, seed) == BT_OK, "%s", bt_err_msg());
  for (int i = 0; i < m.nTensor; i++) {
    const bt_tensor *t = &m.aTensor[i];
    if (strstr(t->zName, "ln_") && strstr(t->zName, ".weight")) continue;
    for (size_t j = 0; j < t->numel; j++) m.params[t->offset + j] *= 8.0f;
  }
  int32_t *tok = calloc((size_t)T, sizeof(int32_t));
  for (int t = 0; t < T; t++)
    tok[t] = (int32_t)(bt_rng_u64(bt_rng_key(seed, 9, 0, 0), (uint64_t)t) %
                       (uint64_t)V);
  CHECK(bt_model_forward(&m, 1, tok, NULL, NULL, NULL, NULL) == BT_OK, "%s",
        bt_err_msg());
  const float *full = bt_model_logits(&m);
  bt_kv_decoder *d = NULL;
  CHECK(bt_kv_create(&d, &m, m.params) == BT_OK, "%s", bt_err_msg());
  float *lg = calloc((size_t)V, sizeof(float));
  double worst = 0, spread = 0;
  int worstPos = -1;
  for (int t = 0; d && t < T; t++) {
    CHECK(bt_kv_step(d, tok[t], lg) == BT_OK, "%s", bt_err_msg());
    CHECK(bt_kv_pos(d) == t + 1, "pos %d after step %d", bt_kv_pos(d), t);
    float lo = INFINITY, hi = -INFINITY;
    for (int v = 0; v < V; v++) {
      double e = fabs((double)lg[v] - full[(size_t)t * m.Vp + v]);
      if (!(e <= worst)) {
        worst = e;
        worstPos = t;
      }
      lo = fminf(lo, lg[v]);
      hi = fmaxf(hi, lg[v]);
    }
    spread = fmax(spread, hi - lo);
  }
  printf("L=%d NH=%d C=%d T=%d V=%d: max |kv - full| = %.3g at position %d "
         "(logit spread %.2f)\n",
         L, NH, C, T, V, worst, worstPos, spread);
  CHECK(worst < 1e-4, "KV-cache logits differ from the full forward by %g",
        worst);
  CHECK(spread > 1.0, "logits too flat (%g) for a meaningful test", spread);
  /* A full cache refuses more tokens instead of writing past it. */
  if (d) {
    CHECK(bt_kv_step(d, 0, lg) == BT_ERR, "step beyond the context accepted");
    CHECK(strstr(bt_err_msg(), "context") != NULL, "message: %s",
          bt_err_msg());
    bt_kv_reset(d);
    CHECK(bt_kv_step(d, V, lg) == BT_ERR, "out-of-vocabulary token accepted");
  }
  bt_kv_free(d);
  free(lg);
  free(tok);
  bt_model_free(&m);
  bt_backend_free(be);
}

int main(void) {
  run_case(2, 4, 64, 64, 256, 7);
  run_case(3, 2, 48, 37, 300, 11);
  return CHECK_DONE();
}
