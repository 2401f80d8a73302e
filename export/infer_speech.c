/*
 * infer_speech.c: `baton infer DIR --wav FILE [FILE ...]`, speech
 * recognition with a speech export (or, with --checkpoint, a speech
 * checkpoint or run directory).
 *
 * Per file, in the order given: the audio read and checked as `prepare
 * audio` reads it (bt_audio_read: 16 kHz, mono, not truncated, at least
 * one 25 ms window), its log-mel features (data/audio_features.h, the
 * function `prepare audio` calls, so training and inference see the
 * same numbers for the same file), the model's forward (bt_speech_forward,
 * the trainer's code, one utterance unpadded), greedy CTC decoding
 * (trainer/ctc_decode.h, what validation and `baton eval` decode with),
 * ids -> characters through the export's "characters". One line
 * `path<TAB>transcript` per file on stdout.
 *
 * Why every file is read before the model is built: the model is sized
 * for the longest one (bt_export_load's maxFrames), so a file longer
 * than model.max_utterance_frames is transcribed rather than refused
 * (the positions are computed, not learnt), and a bad file stops the
 * command before any line is printed, naming the file (exit 1).
 * Memory: the features of every file are held, 320 bytes per 10 ms
 * frame (1.9 MB per minute of audio).
 */
#include "base/util.h"
#include "data/audio_features.h"
#include "data/audio_loader.h"
#include "export/export.h"
#include "trainer/ctc_decode.h"
#include "trainer/speech_model.h"

#include <stdlib.h>
#include <string.h>

typedef struct speech_inputs {
  int n;
  float **apFeat;   /* [n] features [aFrames[i], 80] */
  int32_t *aFrames; /* [n] */
  int maxFrames;
  double seconds; /* audio in all */
} speech_inputs;

static void inputs_free(speech_inputs *p) {
  for (int i = 0; p->apFeat && i < p->n; i++) free(p->apFeat[i]);
  free(p->apFeat);
  free(p->aFrames);
  memset(p, 0, sizeof *p);
}

/* Reads every file and computes its features; the first bad file is the
 * error, named by its path. */
static int inputs_read(speech_inputs *p, const char *const *azWav, int n) {
  memset(p, 0, sizeof *p);
  p->apFeat = bt_calloc((size_t)n, sizeof *p->apFeat, "features");
  p->aFrames = bt_calloc((size_t)n, sizeof *p->aFrames, "frame counts");
  if (!p->apFeat || !p->aFrames) return BT_ERR;
  p->n = n;
  bt_audio_features *pFe = NULL;
  if (bt_audio_features_open(&pFe) != BT_OK) return BT_ERR;
  int rc = BT_OK;
  for (int i = 0; rc == BT_OK && i < n; i++) {
    float *aS = NULL;
    int64_t nS = 0;
    rc = bt_audio_read(azWav[i], azWav[i], &aS, &nS);
    int64_t nF = rc == BT_OK ? bt_audio_features_frames(nS) : 0;
    if (rc == BT_OK && nF > (1 << 24))
      rc = bt_err_set("%s: %lld frames (%.0f s): longer than baton infers "
                      "in one piece",
                      azWav[i], (long long)nF, nS / 16000.0);
    if (rc == BT_OK) {
      p->apFeat[i] = bt_malloc((size_t)nF * BT_AUDIO_N_MEL * sizeof(float),
                               "features");
      rc = p->apFeat[i] ? BT_OK : BT_ERR;
    }
    if (rc == BT_OK) {
      bt_audio_features_compute(pFe, aS, nS, p->apFeat[i]);
      p->aFrames[i] = (int32_t)nF;
      if (nF > p->maxFrames) p->maxFrames = (int)nF;
      p->seconds += (double)nS / BT_AUDIO_SAMPLE_RATE;
    }
    free(aS);
  }
  bt_audio_features_free(pFe);
  return rc;
}

/* Host buffers of one transcription: logits, decoded ids, the text. */
typedef struct speech_out {
  float *logits; /* [T2max, V] */
  int32_t *aHyp;
  char *zText;
  float *allLogits; /* every file's, for --logits-out (or NULL) */
  size_t nAll;
} speech_out;

/* File i through the model, decoded and printed. */
static int transcribe(bt_export_model *x, const speech_inputs *in, int i,
                      const char *zWav, speech_out *o) {
  bt_model *m = &x->m;
  int32_t nF = in->aFrames[i], nLabel = 0;
  bt_speech_batch b = {.B = 1,
                       .T = nF,
                       .nMel = BT_AUDIO_N_MEL,
                       .L = 0,
                       .feats = in->apFeat[i],
                       .aFrames = &nF,
                       .labels = NULL,
                       .aLabelLen = &nLabel};
  if (bt_speech_forward(m, &b, NULL, NULL) != BT_OK)
    return bt_err_prefix("%s: ", zWav);
  const int32_t *aLen;
  int T2 = bt_speech_frames(m, &aLen), V = m->V;
  BT_ASSERT(bt_model_logits_stride(m) == V && aLen[0] == T2);
  bt_act_to_host(m->be, o->logits, bt_model_logits(m), (size_t)T2 * V);
  int nHyp = bt_ctc_greedy(o->logits, T2, V, o->aHyp);
  bt_speech_ids_to_utf8(o->aHyp, nHyp, x->aVocab, x->nVocab, o->zText);
  printf("%s\t%s\n", zWav, o->zText);
  if (o->allLogits) {
    memcpy(o->allLogits + o->nAll, o->logits, (size_t)T2 * V * sizeof(float));
    o->nAll += (size_t)T2 * V;
  }
  return BT_OK;
}

/* The model at zPath must be a speech model whose characters are known
 * and whose input is the 80 log-mel bins computed here. */
static int check_model(bt_export_model *x, const char *zPath, int isCkpt) {
  if (x->m.eKind != BT_MODEL_SPEECH)
    return bt_err_set("%s is %s model, not a speech model: --wav needs an "
                      "export of a model.type = speech run",
                      zPath,
                      x->m.eKind == BT_MODEL_GPT ? "a GPT" : "an MLP");
  if (isCkpt && bt_speech_export_vocab(x, NULL) != BT_OK) return BT_ERR;
  if (x->m.nMel != BT_AUDIO_N_MEL)
    return bt_err_set("%s: model.n_mel = %d, but baton's features have %d "
                      "mel bins",
                      zPath, x->m.nMel, BT_AUDIO_N_MEL);
  return BT_OK;
}

static int run_all(bt_export_model *x, const speech_inputs *in,
                   const char *const *azWav, const char *zLogitsOut) {
  size_t T2max = (size_t)x->m.T, V = (size_t)x->m.V, nAll = 0;
  for (int i = 0; i < in->n; i++)
    nAll += (size_t)((in->aFrames[i] - 1) / 2 / 2 + 1) * V;
  speech_out o = {0};
  o.logits = bt_malloc(T2max * V * sizeof(float), "logits");
  o.aHyp = bt_malloc(T2max * sizeof(int32_t), "decoded ids");
  o.zText = bt_malloc(4 * T2max + 1, "transcript");
  if (zLogitsOut) o.allLogits = bt_malloc(nAll * sizeof(float), "logits");
  int rc = o.logits && o.aHyp && o.zText && (o.allLogits || !zLogitsOut)
               ? BT_OK
               : BT_ERR;
  for (int i = 0; rc == BT_OK && i < in->n; i++)
    rc = transcribe(x, in, i, azWav[i], &o);
  fflush(stdout);
  if (rc == BT_OK && zLogitsOut) {
    BT_ASSERT(o.nAll == nAll);
    rc = bt_file_write_atomic(zLogitsOut, o.allLogits, nAll * sizeof(float));
  }
  free(o.logits);
  free(o.aHyp);
  free(o.zText);
  free(o.allLogits);
  return rc;
}

int bt_infer_speech(const char *zPath, int isCkpt, bt_backend *be,
                    const char *const *azWav, int nWav,
                    const char *zLogitsOut) {
  speech_inputs in;
  bt_export_model x;
  memset(&x, 0, sizeof x);
  double t0 = bt_time_now();
  int rc = inputs_read(&in, azWav, nWav);
  if (rc == BT_OK) {
    rc = bt_export_load(&x, zPath, isCkpt, 1, in.maxFrames, be);
    be = NULL; /* x owns it now, loaded or not */
  }
  if (rc == BT_OK) rc = check_model(&x, zPath, isCkpt);
  double t1 = bt_time_now();
  if (rc == BT_OK) rc = run_all(&x, &in, azWav, zLogitsOut);
  if (rc == BT_OK)
    fprintf(stderr, "transcribed %d file(s) (%.2f s of audio) in %.3f s "
                    "(features and model load %.3f s)\n",
            nWav, in.seconds, bt_time_now() - t0, t1 - t0);
  if (be) bt_backend_free(be);
  bt_export_model_free(&x);
  inputs_free(&in);
  return rc;
}
