/*
 * export.c: `baton export CHECKPOINT [--format safetensors|onnx] -o DIR`.
 *
 * Safetensors exports are laid out for Hugging Face: GPT tensors carry
 * GPT2LMHeadModel's names ("transformer.h.0.attn.c_attn.weight"), wte
 * loses its padded rows, lm_head is NOT written (GPT2LMHeadModel ties it
 * to wte when tie_word_embeddings is true, and from_pretrained does not
 * report it missing). config.json is a GPT2Config that from_pretrained
 * reads as is; baton adds "baton_vocab_pad_to" so `baton infer` rebuilds
 * the exact padded model the trainer ran (transformers keeps unknown keys
 * as attributes and ignores them).
 *
 * Only inference weights go out: the optimizer moments never leave the
 * checkpoint.
 *
 * Tokenizer: when the run's data file (config data.path) was made by
 * `prepare text --tokenizer`, its /tokenizer/ files (tokenizer.json, or
 * vocab.json + merges.txt) are written into DIR with a
 * tokenizer_config.json, so AutoTokenizer.from_pretrained(DIR) and
 * `baton infer DIR --prompt` use the tokenizer the model was trained
 * with; config.json's bos/eos ids are then its <|endoftext|>, if any.
 *
 * Speech (model.type = speech): baton's tensor names as they are
 * (conv.0.weight, h.N.*, ln_f.*, head.*; speech_model.h), and a
 * config.json of model_type "baton_speech" that carries the character
 * vocabulary, read from the run's audio file (or --vocab), so the
 * directory alone transcribes (speech_export.c).
 */
#include "base/cli.h"
#include "base/util.h"
#include "export/export.h"
#include "checkpoints/safetensors.h"
#include "data/tokenizer.h"
#include "trainer/trainer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: baton export CHECKPOINT -o DIR [--format safetensors|onnx] "
          "[--dtype fp32|bf16|fp16]\n"
          "\n"
          "Exports the weights of a checkpoint for inference.\n"
          "  CHECKPOINT        a checkpoint directory (RUN/ckpt-00000100) or "
          "a run directory\n"
          "                    (its newest checkpoint that verifies)\n"
          "  --format F        safetensors (default): DIR/model.safetensors + "
          "DIR/config.json\n"
          "                    (Hugging Face GPT2LMHeadModel layout for GPT; "
          "layers.N.weight/bias\n"
          "                    for MLP; conv.N.*, h.N.*, ln_f.*, head.* for "
          "speech, with the\n"
          "                    characters in config.json)\n"
          "                    onnx: DIR/model.onnx (opset 17, dynamic "
          "batch and sequence) + config.json\n"
          "  -o, --out DIR     output directory (created if needed)\n"
          "  --dtype D         safetensors tensor type: fp32 (default), bf16 "
          "or fp16\n"
          "                    (round to nearest even); ONNX is always fp32\n"
          "  --with-past       ONNX, GPT: also write DIR/model_with_past.onnx "
          "with KV-cache\n"
          "                    inputs/outputs (past_key_values.N.key/value -> "
          "present.N.*)\n"
          "  --vocab FILE.h5   speech: take the characters from this audio "
          "file of `prepare\n"
          "                    audio` (default: the run's data.path)\n"
          "\n"
          "docs/export.md describes the formats and what loads them.\n");
}

/* config.json for the model (HF GPT2Config, or baton's MLP description). */
static int write_config_json(const bt_export_model *x, const char *zDir,
                             bt_st_dtype eType, int eotId) {
  const bt_model *m = &x->m;
  cJSON *o = cJSON_CreateObject();
  if (!o) return bt_err_set("out of memory");
  if (m->eKind == BT_MODEL_SPEECH) {
    if (bt_speech_config_to_json(x, o) != BT_OK) {
      cJSON_Delete(o);
      return BT_ERR;
    }
  } else if (m->eKind == BT_MODEL_GPT) {
    cJSON *pA = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(pA, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(o, "model_type", "gpt2");
    cJSON_AddNumberToObject(o, "vocab_size", m->V);
    cJSON_AddNumberToObject(o, "n_positions", m->T);
    cJSON_AddNumberToObject(o, "n_ctx", m->T);
    cJSON_AddNumberToObject(o, "n_embd", m->C);
    cJSON_AddNumberToObject(o, "n_layer", m->L);
    cJSON_AddNumberToObject(o, "n_head", m->NH);
    cJSON_AddNullToObject(o, "n_inner"); /* 4 * n_embd */
    cJSON_AddStringToObject(o, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", 1e-5);
    cJSON_AddNumberToObject(o, "resid_pdrop", 0);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0);
    cJSON_AddNumberToObject(o, "attn_pdrop", 0);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddBoolToObject(o, "scale_attn_weights", 1);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 1);
    cJSON_AddBoolToObject(o, "use_cache", 1);
    cJSON_AddNumberToObject(o, "bos_token_id",
                            eotId >= 0 ? eotId : BT_EXPORT_BOS_ID);
    cJSON_AddNumberToObject(o, "eos_token_id",
                            eotId >= 0 ? eotId : BT_EXPORT_EOS_ID);
    cJSON_AddNumberToObject(o, "baton_vocab_pad_to", x->cfg.vocab_pad_to);
  } else {
    cJSON_AddStringToObject(o, "model_type", "baton_mlp");
    cJSON *pW = cJSON_AddArrayToObject(o, "widths");
    for (int l = 0; l <= m->nLayer; l++)
      cJSON_AddItemToArray(pW, cJSON_CreateNumber(m->aWidth[l]));
    cJSON_AddStringToObject(o, "activation", "gelu_tanh");
    cJSON_AddStringToObject(o, "weight_layout", "torch.nn.Linear [out, in]");
  }
  cJSON_AddStringToObject(o, "torch_dtype",
                          eType == BT_ST_F32    ? "float32"
                          : eType == BT_ST_BF16 ? "bfloat16"
                                                : "float16");
  cJSON_AddStringToObject(o, "baton_version", BATON_VERSION);
  cJSON_AddNumberToObject(o, "baton_step", (double)x->step);
  char *z = cJSON_Print(o);
  cJSON_Delete(o);
  if (!z) return bt_err_set("out of memory printing config.json");
  char zPath[4096];
  snprintf(zPath, sizeof zPath, "%s/config.json", zDir);
  int rc = bt_file_write_atomic(zPath, z, strlen(z));
  free(z);
  return rc;
}

/* The id of "<|endoftext|>" if it is one added token of p, else -1. */
static int eot_id(bt_tok *p) {
  static const char zEot[] = "<|endoftext|>";
  bt_tok_ids ids = {0};
  int id = -1;
  if (bt_tok_encode(p, zEot, sizeof zEot - 1, 1, &ids, NULL) == BT_OK &&
      ids.n == 1) {
    size_t n = 0;
    const char *z = bt_tok_bytes(p, ids.a[0], &n);
    if (z && n == sizeof zEot - 1 && !memcmp(z, zEot, n)) id = (int)ids.a[0];
  }
  bt_tok_ids_free(&ids);
  return id;
}

/* Copies the data file's tokenizer files (if any) into zDir with a
 * tokenizer_config.json; *pEot gets the <|endoftext|> id or -1. A data
 * file that cannot be read is a warning, not an error: the weights are
 * still worth exporting, and infer refuses a BPE model's --prompt
 * without a tokenizer anyway. */
static int write_tokenizer(const bt_export_model *x, const char *zDir,
                           int *pEot) {
  *pEot = -1;
  const char *zData = x->cfg.data_path;
  if (x->m.eKind != BT_MODEL_GPT || !zData[0] ||
      !strncmp(zData, "synthetic:", 10))
    return BT_OK;
  bt_tok_file aFile[2];
  int nFile = 0;
  if (bt_tok_h5_read(zData, aFile, &nFile) != BT_OK) {
    bt_log_warn("export: no tokenizer copied: %s", bt_err_msg());
    return BT_OK;
  }
  if (nFile == 0) return BT_OK; /* byte-level data */
  bt_tok *p = NULL;
  int rc = bt_tok_from_files(&p, aFile, nFile, zData);
  for (int i = 0; i < nFile && rc == BT_OK; i++) {
    char zPath[4200];
    snprintf(zPath, sizeof zPath, "%s/%s", zDir, aFile[i].zName);
    rc = bt_file_write_atomic(zPath, aFile[i].z, aFile[i].n);
  }
  if (rc == BT_OK) {
    *pEot = eot_id(p);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tokenizer_class", "GPT2TokenizerFast");
    cJSON_AddNumberToObject(o, "model_max_length", x->m.T);
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    if (*pEot >= 0) {
      cJSON_AddStringToObject(o, "bos_token", "<|endoftext|>");
      cJSON_AddStringToObject(o, "eos_token", "<|endoftext|>");
      cJSON_AddStringToObject(o, "unk_token", "<|endoftext|>");
    }
    char *z = cJSON_Print(o);
    cJSON_Delete(o);
    char zPath[4200];
    snprintf(zPath, sizeof zPath, "%s/tokenizer_config.json", zDir);
    rc = z ? bt_file_write_atomic(zPath, z, strlen(z))
           : bt_err_set("out of memory printing tokenizer_config.json");
    free(z);
  }
  bt_tok_free(p);
  bt_tok_files_free(aFile, nFile);
  return rc;
}

static int write_safetensors(const bt_export_model *x, const char *zDir,
                             bt_st_dtype eType) {
  const bt_model *m = &x->m;
  bt_st_wtensor *aT = bt_calloc((size_t)m->nTensor, sizeof *aT, "tensors");
  char (*azName)[BT_TENSOR_NAME_MAX + 32] =
      bt_calloc((size_t)m->nTensor, sizeof *azName, "tensor names");
  if (!aT || !azName) {
    free(aT);
    free(azName);
    return BT_ERR;
  }
  for (int i = 0; i < m->nTensor; i++) {
    const bt_tensor *t = &m->aTensor[i];
    aT[i].ndim = bt_export_tensor_info(m, t, azName[i], sizeof azName[i],
                                       aT[i].shape);
    aT[i].zName = azName[i];
    aT[i].pData = x->hostParams + t->offset;
  }
  char zStep[32], zHash[32];
  snprintf(zStep, sizeof zStep, "%ld", x->step);
  const char *zText = x->zCfgText ? x->zCfgText : "";
  snprintf(zHash, sizeof zHash, "%016llx",
           (unsigned long long)bt_hash64(zText, strlen(zText), 0));
  const char *azMeta[] = {"format",          "pt",
                          "baton_version",   BATON_VERSION,
                          "step",            zStep,
                          "source",          x->zSource,
                          "config_xxh64",    zHash,
                          "baton_model",     m->eKind == BT_MODEL_GPT ? "gpt"
                                             : m->eKind == BT_MODEL_MLP
                                                 ? "mlp"
                                                 : "speech"};
  char zPath[4096];
  snprintf(zPath, sizeof zPath, "%s/model.safetensors", zDir);
  int rc = bt_st_write(zPath, aT, m->nTensor, eType, azMeta,
                       (int)(sizeof azMeta / sizeof azMeta[0] / 2));
  free(aT);
  free(azName);
  return rc;
}

static int write_onnx(const bt_export_model *x, const char *zOut,
                      int withPast) {
  char zPath[4096];
  snprintf(zPath, sizeof zPath, "%s/model.onnx", zOut);
  if (bt_onnx_export(x, zPath, 0) != BT_OK) return BT_ERR;
  if (!withPast) return BT_OK;
  if (x->m.eKind != BT_MODEL_GPT)
    return bt_err_set("--with-past applies to GPT models only");
  snprintf(zPath, sizeof zPath, "%s/model_with_past.onnx", zOut);
  return bt_onnx_export(x, zPath, 1);
}

int bt_export_main(int argc, char **argv) {
  const char *zCkpt = NULL, *zFormat = "safetensors", *zOut = NULL,
             *zDtype = "fp32", *zVocab = NULL;
  int withPast = 0;
  static const struct option aOpt[] = {{"format", required_argument, 0, 'f'},
                                       {"out", required_argument, 0, 'o'},
                                       {"dtype", required_argument, 0, 'd'},
                                       {"with-past", no_argument, 0, 'p'},
                                       {"vocab", required_argument, 0, 'v'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "export", argc, argv, "ho:", aOpt, usage);
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    switch (ch) {
    case 'h': usage(stdout); return BT_EXIT_OK;
    case 'f': zFormat = c.zArg; break;
    case 'o': zOut = c.zArg; break;
    case 'd': zDtype = c.zArg; break;
    case 'p': withPast = 1; break;
    case 'v': zVocab = c.zArg; break;
    case BT_CLI_ARG:
      if (zCkpt) return bt_cli_fail(&c, "unexpected argument '%s'", c.zArg);
      zCkpt = c.zArg;
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (!zCkpt || !zOut)
    return bt_cli_fail(&c, "CHECKPOINT and -o are required");
  int onnx = 0;
  if (!strcmp(zFormat, "onnx")) onnx = 1;
  else if (strcmp(zFormat, "safetensors")) {
    fprintf(stderr, "baton export: unknown format '%s' (safetensors, onnx)\n",
            zFormat);
    return BT_EXIT_USAGE;
  }
  bt_st_dtype eType;
  if (bt_st_dtype_parse(zDtype, &eType) != BT_OK) {
    fprintf(stderr, "baton export: %s\n", bt_err_msg());
    return BT_EXIT_USAGE;
  }
  if (onnx && eType != BT_ST_F32) {
    fprintf(stderr, "baton export: ONNX export is fp32 only (convert with "
                    "onnxconverter-common or TensorRT for half precision)\n");
    return BT_EXIT_USAGE;
  }
  bt_export_model x;
  int rc = BT_EXIT_ERROR;
  double t0 = bt_time_now();
  if (bt_export_load_ckpt(&x, zCkpt, 1, NULL) != BT_OK) goto done;
  if (x.m.eKind == BT_MODEL_SPEECH) {
    if (bt_speech_export_vocab(&x, zVocab) != BT_OK) goto done;
  } else if (zVocab) {
    bt_err_set("--vocab applies to speech models only");
    goto done;
  }
  if (bt_mkdir_p(zOut) != BT_OK) goto done;
  int eot = -1;
  if (write_tokenizer(&x, zOut, &eot) != BT_OK) goto done;
  if (write_config_json(&x, zOut, eType, eot) != BT_OK) goto done;
  if (onnx) {
    if (write_onnx(&x, zOut, withPast) != BT_OK) goto done;
    fprintf(stderr, "exported %s (step %ld) -> %s/model.onnx%s (ONNX opset "
                    "17, fp32) in %.2f s\n",
            x.zSource, x.step, zOut, withPast ? " + model_with_past.onnx" : "",
            bt_time_now() - t0);
  } else {
    if (write_safetensors(&x, zOut, eType) != BT_OK) goto done;
    fprintf(stderr, "exported %s (step %ld) -> %s/model.safetensors (%s) + "
                    "config.json in %.2f s\n",
            x.zSource, x.step, zOut, bt_st_dtype_name(eType),
            bt_time_now() - t0);
  }
  rc = BT_EXIT_OK;
done:
  if (rc != BT_EXIT_OK) fprintf(stderr, "baton export: %s\n", bt_err_msg());
  bt_export_model_free(&x);
  return rc;
}
