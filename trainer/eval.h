/*
 * eval.h: one evaluation pass of a model over a fixed subset of a split,
 * shared by validation during training (train.c) and `baton eval`
 * (export/eval.c), so that both report the same numbers.
 *
 * Invariants:
 *   1. Every rank reads its contiguous part of each chunk of the subset
 *      (bt_loader_val_begin/next: the sharding of training's validation),
 *      and the per-rank sums are reduced in double: loss sum, item count,
 *      and (MLP) correct predictions. The result therefore does not depend
 *      on the number of ranks beyond the summation order of doubles.
 *   2. GPT items are tokens: loss is the mean cross-entropy per token and
 *      perplexity exp(loss). MLP items are samples: loss is the mean
 *      cross-entropy per sample and accuracy the fraction whose arg-max
 *      logit (first one on ties) is the label.
 *   3. Speech items are utterances (bt_eval_speech): loss is the CTC
 *      'mean' of training (per-utterance loss over its label count,
 *      averaged); metric is the CER and wer the WER of greedy decoding
 *      (ctc_decode.h), edits and reference lengths summed over every
 *      utterance of the file exactly once (the audio loader's validation
 *      protocol: each plan batch goes to one rank) and reduced in double.
 */
#ifndef BATON_EVAL_H
#define BATON_EVAL_H

#include <stdint.h>

#include "comm/comm.h"
#include "data/audio_loader.h"
#include "data/loader.h"
#include "trainer/model.h"

typedef struct bt_eval_result {
  double lossSum;  /* sum of per-item losses, all ranks */
  double count;    /* items (GPT: tokens, MLP: samples), all ranks */
  double correct;  /* MLP: samples predicted right; GPT: 0 */
  double loss;     /* lossSum / count (NAN when count is 0) */
  double wer;      /* speech: word error rate (metric is the CER) */
  double metric;   /* GPT: perplexity exp(loss); MLP: accuracy */
} bt_eval_result;

/* Runs the model over samples [0, nSample) of pVal's split (nSample <= 0:
 * the whole split), perCall samples per forward over all ranks (at most
 * m->maxB per rank). pComm may be NULL for one process. Returns BT_ERR with
 * bt_err_msg() naming the read or forward failure. */
int bt_eval_pass(bt_model *m, bt_loader *pVal, bt_comm *pComm,
                 int64_t nSample, int perCall, bt_eval_result *pOut);

/* "perplexity" for GPT, "accuracy" for MLP: the metric's name in the val
 * line, metrics.jsonl (val_<name>), TensorBoard and `baton eval --json`. */
/* Speech: one pass over every utterance of pVal (opened with shuffle = 0,
 * accum = 1, this rank and world), from its start. aCp[0..nCp) are the
 * code points of ids 1..nCp (bt_audio_vocab_read) for the transcripts. */
int bt_eval_speech(bt_model *m, bt_audio_loader *pVal, bt_comm *pComm,
                   int world, const int32_t *aCp, int nCp,
                   bt_eval_result *pOut);

/* "perplexity" (GPT), "accuracy" (MLP), "cer" (speech). */
const char *bt_eval_metric_name(const bt_model *m);

#endif /* BATON_EVAL_H */
