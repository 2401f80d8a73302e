/*
 * export.h: pieces shared by `baton export` (export.c, onnx_export.c,
 * speech_export.c) and `baton infer` (infer.c, infer_speech.c,
 * export_kv.c).
 *
 * An export directory holds model.safetensors + config.json (Hugging Face
 * layout; docs/export.md) and optionally model.onnx. It is self-contained:
 * `baton infer` rebuilds the model from config.json alone.
 *
 * A loaded model (bt_export_model) is a bt_model built from the config on
 * the CPU backend (or the one asked for) with its parameters filled in,
 * either from a checkpoint or from an export directory. Inference needs
 * only one sample (maxB = 1 unless asked otherwise).
 */
#ifndef BATON_EXPORT_H
#define BATON_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/config.h"
#include "trainer/model.h"

/* Special tokens written into config.json for GPT exports. Byte 0 (NUL)
 * never occurs in text prompts, so using it as BOS/EOS cannot cut a
 * generation of ordinary text short. */
#define BT_EXPORT_BOS_ID 0
#define BT_EXPORT_EOS_ID 0

typedef struct bt_export_model {
  bt_config cfg;
  bt_backend *be;
  bt_model m;
  float *hostParams; /* nParam host floats (a copy on CUDA; = m.params on CPU) */
  long step;         /* checkpoint step (-1 if unknown) */
  char zSource[1024];
  char *zCfgText;    /* canonical config text (checkpoint) or NULL */
  /* Speech (model.type = speech): the code points of character ids
   * 1..nVocab (id 0 is the CTC blank; nVocab + 1 = m.V), from config.json
   * "characters" (export directory) or the run's data file (checkpoint;
   * see bt_speech_export_vocab). NULL otherwise. */
  int32_t *aVocab;
  int nVocab;
} bt_export_model;

/* Resolves zPath (a checkpoint directory, or a run directory: its newest
 * valid checkpoint) into zOut. */
int bt_export_resolve_ckpt(const char *zPath, char *zOut, size_t nOut);

/* Loads a checkpoint's config and parameters into a model of maxB samples
 * (maxB <= 0: 1 for GPT, 256 for MLP)
 * on backend be (NULL: a CPU backend is created). Either way x owns the
 * backend from the call on: bt_export_model_free() frees it, also after
 * a failed load. */
int bt_export_load_ckpt(bt_export_model *x, const char *zPath, int maxB,
                        bt_backend *be);
/* Loads an export directory (config.json + model.safetensors). */
int bt_export_load_dir(bt_export_model *x, const char *zDir, int maxB,
                       bt_backend *be);
/* Either of the two (isCkpt), a speech model sized for utterances of up
 * to maxFrames feature frames (0: its model.max_utterance_frames): the
 * positions are computed, not learnt, so inference is not bound to the
 * training length. maxFrames is ignored for other models. */
int bt_export_load(bt_export_model *x, const char *zPath, int isCkpt,
                   int maxB, int maxFrames, bt_backend *be);
void bt_export_model_free(bt_export_model *x);

/* Hugging Face tensor name of model tensor t ("transformer.h.0.ln_1.weight")
 * and its exported shape (wte loses its padded rows). Returns the number
 * of dims. */
int bt_export_tensor_info(const bt_model *m, const bt_tensor *t, char *zName,
                          size_t nName, int64_t *aShape);

/* Writes an ONNX model (opset 17) to zPath. withPast (GPT only): the
 * graph also takes past_key_values.N.{key,value} [batch, n_head, past_seq,
 * head_size] and returns present.N.{key,value} with the new tokens
 * appended (transformers/optimum naming), for cached generation. */
int bt_onnx_export(const bt_export_model *x, const char *zPath, int withPast);

/* ---- speech (speech_export.c) ------------------------------------------ */

struct cJSON;

/* x->aVocab from the audio HDF5 zH5 (NULL: the run's data.path), which
 * must hold m.V - 1 characters; errors name the file. */
int bt_speech_export_vocab(bt_export_model *x, const char *zH5);
/* Adds the speech model's keys (model_type "baton_speech", shapes, the
 * characters, the feature parameters) to config.json's object o. */
int bt_speech_config_to_json(const bt_export_model *x, struct cJSON *o);
/* 1 if config.json object o describes a speech model. */
int bt_speech_config_is(const struct cJSON *o);
/* config.json object o (from zFile) of a speech export -> pCfg (defaults,
 * then the model keys) and its characters (*paVocab, malloc'ed). */
int bt_speech_config_from_json(bt_config *pCfg, const struct cJSON *o,
                               const char *zFile, int32_t **paVocab,
                               int *pnVocab);
/* Character ids (1..nVocab) -> UTF-8 into z (room for 4 n + 1 bytes). */
void bt_speech_ids_to_utf8(const int32_t *aId, int n, const int32_t *aVocab,
                           int nVocab, char *z);

/* `baton infer DIR --wav FILE ...` (infer_speech.c): transcribes nWav
 * audio files with the speech model of zPath (an export directory, or a
 * checkpoint or run directory with isCkpt), one line `path<TAB>text` per
 * file on stdout; zLogitsOut (or NULL) gets the raw fp32 logits of every
 * file, [encoder frames, V] each, concatenated. Backend be is owned from
 * the call on. BT_ERR names the file or the directory. */
int bt_infer_speech(const char *zPath, int isCkpt, bt_backend *be,
                    const char *const *azWav, int nWav,
                    const char *zLogitsOut);

/* ---- KV-cache incremental decoder (GPT, CPU, host memory) ------------- */

typedef struct bt_kv_decoder bt_kv_decoder;

/* Decoder over the host parameters of a GPT model (not copied: hostParams
 * must outlive it). Cache of m->T positions. It runs the ops of
 * kernels/ops.h (attention_decode for the cached attention) on a CPU
 * backend of its own, whatever backend m was built on. */
int bt_kv_create(bt_kv_decoder **pp, const bt_model *m,
                 const float *hostParams);
void bt_kv_free(bt_kv_decoder *d);
void bt_kv_reset(bt_kv_decoder *d);
int bt_kv_pos(const bt_kv_decoder *d);
/* Feeds one token at the next position; writes vocab_size logits. BT_ERR
 * when the cache is full (context reached) or the token is out of range. */
int bt_kv_step(bt_kv_decoder *d, int token, float *logits);

/* `baton export CKPT ...` and `baton infer DIR ...`. Each prints its own
 * --help and returns the process exit code. */
int bt_export_main(int argc, char **argv);
int bt_infer_main(int argc, char **argv);
/* `baton eval` (eval.c); pComm: the job's communicator (world 1 without
 * a launcher). */
int bt_eval_main(int argc, char **argv, bt_comm *pComm);

#endif /* BATON_EXPORT_H */
