/*
 * ref_dump.c: runs one forward and backward of a small model on the CPU
 * backend and writes everything an independent implementation needs to
 * recompute it: the tensor table (JSON), the parameters, the inputs, the
 * logits, the loss and every gradient (raw float32 / int32 files).
 * tests/ref/torch_check.py rebuilds the same model in PyTorch from these
 * files and compares.
 *
 * usage: ref_dump OUTDIR gpt|mlp
 */
#include "base/util.h"
#include "kernels/ops.h"
#include "trainer/config.h"
#include "trainer/model.h"

#include <stdlib.h>
#include <string.h>

static int dump(const char *zDir, const char *zName, const void *p, size_t n) {
  char zPath[1024];
  bt_snprintf(zPath, sizeof zPath, "%s/%s", zDir, zName);
  return bt_file_write_atomic(zPath, p, n);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: ref_dump OUTDIR gpt|mlp\n");
    return 2;
  }
  const char *zDir = argv[1];
  int isGpt = !strcmp(argv[2], "gpt");
  bt_config c;
  /* Shapes chosen to exercise every corner: vocab padding (50 -> 64),
   * head size not a power of two, a masked target. */
  const char *azGpt[] = {"model.type=gpt", "model.n_layer=2",
                         "model.n_head=3", "model.n_embd=24",
                         "model.context=13", "model.vocab_size=50"};
  const char *azMlp[] = {"model.type=mlp", "model.mlp_hidden=32,16",
                         "model.n_features=10", "model.n_classes=5"};
  if (bt_config_load(&c, NULL, isGpt ? azGpt : azMlp, isGpt ? 6 : 4)) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  bt_backend *be = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  if (!be) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  int B = 3;
  bt_model m;
  if (bt_model_build(&m, &c, be, B, 16) || bt_model_init_weights(&m, 42)) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  /* Random (non-default) LN weights and biases so their gradients and
   * the bias paths are exercised with real values. */
  uint64_t key = bt_rng_key(7, 99, 0, 0);
  for (size_t i = 0; i < m.nParam; i++)
    m.params[i] += (float)(0.01 * bt_rng_normal(key, i));
  for (int i = 0; i < m.nTensor; i++)
    if (!strcmp(m.aTensor[i].zName, "wte.weight"))
      for (size_t j = (size_t)m.V * m.C; j < m.aTensor[i].numel; j++)
        m.params[m.aTensor[i].offset + j] = 0; /* padding rows stay 0 */

  int T = isGpt ? m.T : 1, N = B * T;
  int32_t *in = calloc((size_t)N, sizeof(int32_t));
  int32_t *tg = calloc((size_t)N, sizeof(int32_t));
  int D = isGpt ? 0 : m.aWidth[0];
  float *x = calloc((size_t)B * (D ? D : 1), sizeof(float));
  uint64_t k2 = bt_rng_key(5, 98, 0, 0);
  int K = isGpt ? m.V : m.aWidth[m.nLayer];
  for (int i = 0; i < N; i++) {
    if (isGpt) in[i] = (int32_t)(bt_rng_u64(k2, (uint64_t)i) % (uint64_t)m.V);
    tg[i] = (int32_t)(bt_rng_u64(k2, (uint64_t)(i + N)) % (uint64_t)K);
  }
  tg[N / 2] = -1; /* masked */
  for (int i = 0; i < B * D; i++) x[i] = (float)bt_rng_normal(k2, 1000 + i);

  double lossSum = 0;
  int64_t count = 0;
  if (bt_model_forward(&m, B, in, x, tg, &lossSum, &count)) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  int Vs = bt_model_logits_stride(&m);
  float *logits = malloc((size_t)N * Vs * sizeof(float));
  memcpy(logits, bt_model_logits(&m), (size_t)N * Vs * sizeof(float));
  /* The inference build (one shared activation slice, no gradients) must
   * compute the same bits as the training build. */
  {
    bt_model mi;
    if (bt_model_build_infer(&mi, &c, be, B)) {
      fprintf(stderr, "%s\n", bt_err_msg());
      return 1;
    }
    memcpy(mi.params, m.params, m.nParam * sizeof(float));
    if (bt_model_forward(&mi, B, in, x, NULL, NULL, NULL)) {
      fprintf(stderr, "%s\n", bt_err_msg());
      return 1;
    }
    int same = !memcmp(bt_model_logits(&mi), logits,
                       (size_t)N * Vs * sizeof(float));
    printf("inference build: logits %s the training build's\n",
           same ? "bitwise equal to" : "DIFFER from");
    bt_model_free(&mi);
    if (!same) return 1;
  }
  bt_mem_zero(be, m.grads, m.nFlat);
  bt_model_backward(&m, (float)(1.0 / (double)count), NULL, NULL);
  float loss = (float)(lossSum / (double)count);

  char zJson[65536];
  size_t u = 0;
  u += (size_t)snprintf(zJson + u, sizeof zJson - u,
                        "{\"kind\":\"%s\",\"B\":%d,\"T\":%d,\"L\":%d,"
                        "\"NH\":%d,\"C\":%d,\"V\":%d,\"Vp\":%d,\"D\":%d,"
                        "\"loss\":%.9g,\"count\":%lld,\"tensors\":[",
                        argv[2], B, T, m.L, m.NH, m.C, m.V, Vs, D, loss,
                        (long long)count);
  for (int i = 0; i < m.nTensor; i++) {
    const bt_tensor *t = &m.aTensor[i];
    u += (size_t)snprintf(zJson + u, sizeof zJson - u,
                          "%s{\"name\":\"%s\",\"offset\":%zu,\"shape\":[%d",
                          i ? "," : "", t->zName, t->offset, t->shape[0]);
    if (t->ndim > 1)
      u += (size_t)snprintf(zJson + u, sizeof zJson - u, ",%d", t->shape[1]);
    u += (size_t)snprintf(zJson + u, sizeof zJson - u, "]}");
  }
  u += (size_t)snprintf(zJson + u, sizeof zJson - u, "]}\n");
  int rc = dump(zDir, "meta.json", zJson, u) ||
           dump(zDir, "params.f32", m.params, m.nParam * 4) ||
           dump(zDir, "grads.f32", m.grads, m.nParam * 4) ||
           dump(zDir, "logits.f32", logits, (size_t)N * Vs * 4) ||
           dump(zDir, "inputs.i32", in, (size_t)N * 4) ||
           dump(zDir, "targets.i32", tg, (size_t)N * 4) ||
           dump(zDir, "x.f32", x, (size_t)B * D * 4 + 4);
  if (rc) fprintf(stderr, "%s\n", bt_err_msg());
  printf("%s: %zu parameters, loss %.6f over %lld targets\n", argv[2],
         m.nParam, loss, (long long)count);
  free(in);
  free(tg);
  free(x);
  free(logits);
  bt_model_free(&m);
  bt_backend_free(be);
  return rc ? 1 : 0;
}
