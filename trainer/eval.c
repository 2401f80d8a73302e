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
#include <string.h>

#include "base/util.h"
#include "trainer/ctc_decode.h"
#include "trainer/speech_model.h"

const char *bt_eval_metric_name(const bt_model *m) {
  return m->eKind == BT_MODEL_GPT      ? "perplexity"
         : m->eKind == BT_MODEL_SPEECH ? "cer"
                                       : "accuracy";
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
      bt_act_to_host(m->be, pHost, bt_model_logits(m),
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
  pOut->wer = NAN;
  return BT_OK;
}

/* ---- speech ------------------------------------------------------------ */

/* ids 1..nCp -> UTF-8 of their code points into z (room for 4n + 1). */
static void ids_to_utf8(const int32_t *aId, int n, const int32_t *aCp,
                        int nCp, char *z) {
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    BT_ASSERT(aId[i] >= 1 && aId[i] <= nCp);
    uint32_t c = (uint32_t)aCp[aId[i] - 1];
    if (c < 0x80) {
      z[k++] = (char)c;
    } else if (c < 0x800) {
      z[k++] = (char)(0xC0 | (c >> 6));
      z[k++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      z[k++] = (char)(0xE0 | (c >> 12));
      z[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
      z[k++] = (char)(0x80 | (c & 0x3F));
    } else {
      z[k++] = (char)(0xF0 | (c >> 18));
      z[k++] = (char)(0x80 | ((c >> 12) & 0x3F));
      z[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
      z[k++] = (char)(0x80 | (c & 0x3F));
    }
  }
  z[k] = 0;
}

/* Scratch of one pass: host logits, decoded ids, two strings. */
typedef struct speech_scratch {
  float *logits;
  int32_t *aHyp;
  char *zRef, *zHyp;
  const int32_t *aCp;
  int nCp;
} speech_scratch;

/* Decodes the last forward's utterances and adds their edits to red[2..5]
 * (char edits, chars, word edits, words). */
static int speech_score(bt_model *m, const bt_speech_batch *pb,
                        speech_scratch *x, double *red) {
  const int32_t *aLen;
  int T2 = bt_speech_frames(m, &aLen), V = m->V;
  BT_ASSERT(bt_model_logits_stride(m) == V);
  bt_act_to_host(m->be, x->logits, bt_model_logits(m),
                 (size_t)pb->B * (size_t)T2 * (size_t)V);
  for (int b = 0; b < pb->B; b++) {
    int nHyp = bt_ctc_greedy(x->logits + (size_t)b * T2 * V, aLen[b], V,
                             x->aHyp);
    ids_to_utf8(pb->labels + (size_t)b * pb->L, pb->aLabelLen[b], x->aCp,
                x->nCp, x->zRef);
    ids_to_utf8(x->aHyp, nHyp, x->aCp, x->nCp, x->zHyp);
    bt_error_count ch = {0, 0}, wd = {0, 0};
    if (bt_error_add(x->zRef, x->zHyp, &ch, &wd) != BT_OK)
      return bt_err_prefix("utterance %lld: ", (long long)pb->aIndex[b]);
    red[2] += (double)ch.nEdit;
    red[3] += (double)ch.nRef;
    red[4] += (double)wd.nEdit;
    red[5] += (double)wd.nRef;
  }
  return BT_OK;
}

static int speech_pass(bt_model *m, bt_audio_loader *pVal, int world,
                       speech_scratch *x, double *red) {
  bt_loader_state st = {0, 0};
  if (bt_audio_loader_seek(pVal, &st) != BT_OK) return BT_ERR;
  /* the same number of calls on every rank (audio_loader.h, validation) */
  int64_t nCall = (bt_audio_loader_epoch_batches(pVal) + world - 1) / world;
  for (int64_t i = 0; i < nCall; i++) {
    bt_speech_batch b;
    if (bt_audio_loader_next(pVal, &b) != BT_OK) return BT_ERR;
    if (b.B == 0) continue;
    double s = 0;
    int64_t n = 0;
    if (bt_speech_forward(m, &b, &s, &n) != BT_OK) return BT_ERR;
    red[0] += s;
    red[1] += (double)n;
    if (speech_score(m, &b, x, red) != BT_OK) return BT_ERR;
  }
  return BT_OK;
}

int bt_eval_speech(bt_model *m, bt_audio_loader *pVal, bt_comm *pComm,
                   int world, const int32_t *aCp, int nCp,
                   bt_eval_result *pOut) {
  size_t nT = (size_t)m->T;
  speech_scratch x = {.aCp = aCp, .nCp = nCp};
  x.logits = bt_malloc((size_t)m->maxB * nT * (size_t)m->V * sizeof(float),
                       "evaluation logits");
  x.aHyp = bt_malloc(nT * sizeof(int32_t), "decoded ids");
  x.zRef = bt_malloc(4 * nT + 1, "transcript");
  x.zHyp = bt_malloc(4 * nT + 1, "transcript");
  double red[6] = {0, 0, 0, 0, 0, 0};
  int rc = x.logits && x.aHyp && x.zRef && x.zHyp ? BT_OK : BT_ERR;
  if (rc == BT_OK) rc = speech_pass(m, pVal, world < 1 ? 1 : world, &x, red);
  free(x.logits);
  free(x.aHyp);
  free(x.zRef);
  free(x.zHyp);
  if (rc != BT_OK) return BT_ERR;
  if (pComm && bt_comm_host_allreduce(pComm, red, 6, BT_F64, BT_SUM) != BT_OK)
    return BT_ERR;
  pOut->lossSum = red[0];
  pOut->count = red[1];
  pOut->correct = 0;
  pOut->loss = red[1] > 0 ? red[0] / red[1] : NAN;
  pOut->metric = red[3] > 0 ? red[2] / red[3] : NAN;
  pOut->wer = red[5] > 0 ? red[4] / red[5] : NAN;
  return BT_OK;
}
