/*
 * init.h: starting a run from existing weights (`train.init_from`), and
 * the Hugging Face config.json <-> bt_config mapping that `baton infer`
 * shares (export/export_common.c loads export directories with it).
 *
 * A source is one of
 *   - a model directory in the Hugging Face GPT-2 layout: model.safetensors
 *     + config.json, as transformers' save_pretrained(safe_serialization=
 *     True) or `baton export --format safetensors` write it (an MLP export
 *     with model_type "baton_mlp" works too);
 *   - a baton checkpoint directory (RUN/ckpt-N), or a run directory, whose
 *     newest valid checkpoint is used.
 *
 * The two halves run at different times, and the split keeps these true:
 *   1. Shapes come first. bt_config_load() calls bt_init_merge_config()
 *      after the file and every --set, before the required-key and cross-
 *      key checks: each shape key the source describes fills the run's
 *      config where the run left it unset, and a key the run set to
 *      another value is an error naming the key and both values. So the
 *      model is built once, already of the source's shape, and the config
 *      saved in every checkpoint holds the resolved shapes.
 *   2. Weights come after resume. bt_init_load_params() runs once the
 *      trainer has resumed or found nothing to resume: a run that resumed
 *      (tr->step > 0) keeps its own weights and says so; only a new run is
 *      initialised from the source, with fresh optimizer state, step 0 and
 *      its own data and schedule.
 *   3. Every rank reads the source itself (the same bytes on a shared
 *      file system), so parameters are identical on all ranks without a
 *      broadcast; the start-up agreement compares the configs anyway.
 *   4. Nothing is converted silently: every tensor the model needs must
 *      exist with exactly the shape the config implies (errors name the
 *      tensor and both shapes); extra tensors (attention-mask buffers) are
 *      ignored, except an untied lm_head.weight, which baton cannot
 *      represent and refuses.
 */
#ifndef BATON_INIT_H
#define BATON_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/config.h"
#include "trainer/model.h"

struct bt_trainer;

/* config.json of a model directory -> pCfg: defaults, then the model
 * section (model_type "gpt2": GPT2Config; "baton_mlp": baton's MLP).
 * GPT2Config switches baton does not implement are refused by name. */
int bt_init_config_from_json(bt_config *pCfg, const char *zFile);

/* Hugging Face tensor name of model tensor t ("transformer.h.0.ln_1.weight")
 * and its shape outside baton (wte without its padded rows). Returns the
 * number of dims. */
int bt_init_tensor_info(const bt_model *m, const bt_tensor *t, char *zName,
                        size_t nName, int64_t *aShape);

/* Reads every tensor of model m from safetensors file zFile into the host
 * image pHost of m's flat buffer (nFlat floats; rows and elements the file
 * does not hold are left as they are). Accepts the GPT2LMHeadModel names
 * ("transformer.h.0...") and bare GPT2Model ones ("h.0..."). *pStep gets
 * the file's "step" metadata, or -1. */
int bt_init_read_safetensors(const bt_model *m, const char *zFile,
                             float *pHost, long *pStep);

/* Invariant 1: called by bt_config_load() when train.init_from is set.
 * aSeen[i] says whether bt_config_keys[i] was set by the file or --set;
 * keys filled from the source are marked seen. zSource names the run's
 * config in errors. */
int bt_init_merge_config(bt_config *pCfg, unsigned char *aSeen,
                         const char *zSource);

/* Invariant 2: after resume, before the first step. */
int bt_init_load_params(struct bt_trainer *tr);

#endif /* BATON_INIT_H */
