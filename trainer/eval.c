/*
 * eval.c: the evaluation pass (eval.h): loss and perplexity or accuracy
 * over a fixed subset of a split, reduced exactly over ranks.
 *
 * Accuracy needs the logits on the host: they are copied after each MLP
 * forward (n x classes floats, small next to the forward itself). GPT
 * needs only the loss sum the forward already returns.
 */
#include "trainer/eval.h"

#include <math.h>
#include <stdlib.h>

#include "base/util.h"

const char *bt_eval_metric_name(const bt_model *m) {
  return m->eKind == BT_MODEL_GPT ? "perplexity" : "accuracy";
}

/* Samples of this batch whose first arg-max logit is the label. */
static double count_correct(const float *pLogit, int n, int nClass,
                            const int32_t *aLabel) {
  double nRight = 0;
  for (int i = 0; i < n; i++) {
    const float *p = pLogit + (size_t)i * nClass;
    int iBest = 0;
    for (int k = 1; k < nClass; k++)
      if (p[k] > p[iBest]) iBest = k;
    if (aLabel[i] >= 0 && iBest == aLabel[i]) nRight += 1;
  }
  return nRight;
}

int bt_eval_pass(bt_model *m, bt_loader *pVal, bt_comm *pComm,
                 int64_t nSample, int perCall, bt_eval_result *pOut) {
  int isMlp = m->eKind == BT_MODEL_MLP;
  int nClass = isMlp ? bt_model_logits_stride(m) : 0;
  float *pHost = NULL;
  if (isMlp) {
    pHost = bt_malloc((size_t)m->maxB * (size_t)nClass * sizeof(float),
                      "evaluation logits");
    if (!pHost) return BT_ERR;
  }
  int rc = bt_loader_val_begin(pVal, nSample, perCall);
  double red[3] = {0, 0, 0}; /* loss sum, count, correct */
  while (rc == BT_OK) {
    bt_batch b;
    if ((rc = bt_loader_val_next(pVal, &b)) != BT_OK) break;
    if (b.global_n == 0) break;
    if (b.n == 0) continue; /* a chunk smaller than the world */
    double s = 0;
    int64_t n = 0;
    rc = bt_model_forward(m, b.n, b.inputs, b.x, b.targets, &s, &n);
    if (rc != BT_OK) break;
    red[0] += s;
    red[1] += (double)n;
    if (isMlp) {
      bt_mem_to_host(m->be, pHost, bt_model_logits(m),
                     (size_t)b.n * (size_t)nClass);
      red[2] += count_correct(pHost, b.n, nClass, b.targets);
    }
  }
  free(pHost);
  if (rc != BT_OK) return BT_ERR;
  if (pComm && bt_comm_host_allreduce(pComm, red, 3, BT_F64, BT_SUM) != BT_OK)
    return BT_ERR;
  pOut->lossSum = red[0];
  pOut->count = red[1];
  pOut->correct = red[2];
  pOut->loss = red[1] > 0 ? red[0] / red[1] : NAN;
  pOut->metric = isMlp ? (red[1] > 0 ? red[2] / red[1] : NAN) : exp(pOut->loss);
  return BT_OK;
}
