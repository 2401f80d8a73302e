/*
 * speech_dump.c: one forward and backward of a small speech model
 * (model.type = speech) on the CPU backend, written out for an
 * independent PyTorch re-implementation (tests/ref/speech_check.py): the
 * tensor table (JSON), parameters, the batch (features, frame counts,
 * labels), the loss and every gradient, as raw float32 / int32 files.
 *
 * The batch has unequal utterance lengths (37, 22 and 9 frames, padded to
 * 37) so that the padding masks matter: the PyTorch side runs each
 * utterance unpadded on its own, so any padded frame leaking into a valid
 * one shows up as a mismatch.
 *
 * usage: speech_dump OUTDIR
 */
#include "base/util.h"
#include "data/speech_batch.h"
#include "kernels/ops.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/speech_model.h"

#include <stdlib.h>
#include <string.h>

static int dump(const char *zDir, const char *zName, const void *p, size_t n) {
  char zPath[1024];
  bt_snprintf(zPath, sizeof zPath, "%s/%s", zDir, zName);
  return bt_file_write_atomic(zPath, p, n);
}

enum { B = 3, T = 37, NMEL = 6, L = 5 };

static void fill_batch(bt_speech_batch *pb, float *feats, int32_t *frames,
                       int32_t *labels, int32_t *labelLen, int V) {
  static const int32_t aF[B] = {37, 22, 9}, aL[B] = {5, 3, 1};
  uint64_t key = bt_rng_key(11, 97, 0, 0);
  memset(feats, 0, sizeof(float) * B * T * NMEL);
  for (int b = 0; b < B; b++) {
    frames[b] = aF[b];
    labelLen[b] = aL[b];
    for (int t = 0; t < aF[b]; t++)
      for (int k = 0; k < NMEL; k++)
        feats[((size_t)b * T + t) * NMEL + k] =
            (float)bt_rng_normal(key, ((size_t)b * T + t) * NMEL + k);
    for (int j = 0; j < L; j++)
      labels[b * L + j] =
          j < aL[b] ? 1 + (int32_t)(bt_rng_u64(key, 100000 + b * L + j) %
                                    (uint64_t)(V - 1))
                    : -1;
  }
  labels[1] = labels[0]; /* a repeated label: CTC needs a blank between */
  memset(pb, 0, sizeof *pb);
  pb->B = B, pb->T = T, pb->nMel = NMEL, pb->L = L;
  pb->feats = feats, pb->aFrames = frames, pb->labels = labels;
  pb->aLabelLen = labelLen;
}

static size_t meta_json(char *z, size_t n, const bt_model *m, double loss) {
  size_t u = (size_t)snprintf(z, n,
                              "{\"B\":%d,\"T\":%d,\"n_mel\":%d,\"L\":%d,"
                              "\"layers\":%d,\"NH\":%d,\"C\":%d,\"V\":%d,"
                              "\"loss\":%.9g,\"tensors\":[",
                              B, T, NMEL, L, m->L, m->NH, m->C, m->V, loss);
  for (int i = 0; i < m->nTensor; i++) {
    const bt_tensor *t = &m->aTensor[i];
    u += (size_t)snprintf(z + u, n - u,
                          "%s{\"name\":\"%s\",\"offset\":%zu,\"shape\":[%d",
                          i ? "," : "", t->zName, t->offset, t->shape[0]);
    for (int d = 1; d < t->ndim; d++)
      u += (size_t)snprintf(z + u, n - u, ",%d", t->shape[d]);
    u += (size_t)snprintf(z + u, n - u, "]}");
  }
  u += (size_t)snprintf(z + u, n - u, "]}\n");
  return u;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: speech_dump OUTDIR\n");
    return 2;
  }
  const char *zDir = argv[1];
  /* head size 4, odd channel counts, 7 symbols (blank + 6) */
  const char *azSet[] = {"model.type=speech", "model.n_layer=2",
                         "model.n_head=2",    "model.n_embd=8",
                         "model.n_mel=6",     "model.conv_channels=5",
                         "model.vocab_size=7", "model.max_utterance_frames=40"};
  bt_config c;
  bt_backend *be = NULL;
  bt_model m;
  if (bt_config_load(&c, NULL, azSet, 8) ||
      !(be = bt_backend_create(BT_BACKEND_CPU, 1, 0)) ||
      bt_model_build(&m, &c, be, B, 16) || bt_model_init_weights(&m, 42)) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  /* Non-default LN weights and biases: their gradients get real values. */
  uint64_t key = bt_rng_key(7, 99, 0, 0);
  for (size_t i = 0; i < m.nParam; i++)
    m.params[i] += (float)(0.05 * bt_rng_normal(key, i));

  static float feats[B * T * NMEL];
  static int32_t frames[B], labels[B * L], labelLen[B];
  bt_speech_batch sb;
  fill_batch(&sb, feats, frames, labels, labelLen, m.V);
  double lossSum = 0;
  int64_t count = 0;
  if (bt_speech_forward(&m, &sb, &lossSum, &count)) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  bt_mem_zero(be, m.grads, m.nFlat);
  bt_model_backward(&m, (float)(1.0 / (double)count), NULL, NULL);
  double loss = lossSum / (double)count;

  static char zJson[65536];
  size_t u = meta_json(zJson, sizeof zJson, &m, loss);
  int rc = dump(zDir, "meta.json", zJson, u) ||
           dump(zDir, "params.f32", m.params, m.nParam * 4) ||
           dump(zDir, "grads.f32", m.grads, m.nParam * 4) ||
           dump(zDir, "feats.f32", feats, sizeof feats) ||
           dump(zDir, "frames.i32", frames, sizeof frames) ||
           dump(zDir, "labels.i32", labels, sizeof labels) ||
           dump(zDir, "label_len.i32", labelLen, sizeof labelLen);
  if (rc) fprintf(stderr, "%s\n", bt_err_msg());
  printf("speech: %zu parameters, loss %.6f over %lld utterances\n",
         m.nParam, loss, (long long)count);
  bt_model_free(&m);
  bt_backend_free(be);
  return rc ? 1 : 0;
}
