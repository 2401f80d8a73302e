/*
 * config.h: the run configuration.
 *
 * One table (bt_config_keys in config.c) lists every key: section, name,
 * type, default, range, help text and whether changing it on resume is
 * safe. Parsing, `--set` overrides, the generated reference in
 * docs/config.md (`baton config --markdown`), the start-up agreement check
 * between ranks and the resume compatibility check all walk that table, so
 * they cannot drift apart.
 *
 * Files are INI (parsed by libinih): `[section]` then `key = value`.
 * Errors name the file, the line and the key:
 *   configs/tiny.ini:7: unknown key 'stpes' in section [train]
 *   configs/tiny.ini:9: bad value 'abc' for train.steps: expected an integer
 *   configs/tiny.ini: missing required key model.type
 *
 * A key whose value is one of a fixed set of words (model.type,
 * train.backend, ...) is a C enum in bt_config, parsed once here: the rest
 * of the tree switches on the enum and never compares strings. The table
 * maps each word to its enum value (bt_cfg_choice), so the canonical text
 * (`baton config`, the config saved inside a checkpoint and compared on
 * resume) prints the same words that were parsed.
 */
#ifndef BATON_CONFIG_H
#define BATON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"   /* bt_comm_kind: dist.comm */
#include "kernels/ops.h" /* bt_backend_kind: train.backend */

#define BT_CFG_STR_MAX 512

/* model.type */
typedef enum bt_model_kind {
  BT_MODEL_GPT = 0,
  BT_MODEL_MLP = 1,
  BT_MODEL_SPEECH = 2, /* conv front end + encoder + CTC (speech_model.h) */
} bt_model_kind;

/* train.nan_policy: what a NaN/Inf loss or gradient norm does. */
typedef enum bt_nan_policy {
  BT_NAN_POLICY_STOP = 0, /* exit with BT_EXIT_NAN before the update */
  BT_NAN_POLICY_SKIP = 1, /* drop this step's update, keep training */
} bt_nan_policy;

/* optim.schedule: the decay after warm-up. */
typedef enum bt_lr_schedule {
  BT_LR_SCHEDULE_COSINE = 0,
  BT_LR_SCHEDULE_LINEAR = 1,
  BT_LR_SCHEDULE_CONSTANT = 2,
} bt_lr_schedule;

/* checkpoint.on_error: what a failed save does. */
typedef enum bt_ckpt_on_error {
  BT_CKPT_ON_ERROR_STOP = 0,
  BT_CKPT_ON_ERROR_CONTINUE = 1,
} bt_ckpt_on_error;

typedef struct bt_config {
  /* [model] */
  bt_model_kind model_type; /* -1 until set: the key is required */
  int n_layer, n_head, n_embd, context, vocab_size;
  int vocab_pad_to;            /* padded vocab = round up to this multiple */
  char mlp_hidden[BT_CFG_STR_MAX]; /* "64,64" */
  int n_features, n_classes;   /* mlp */
  int n_mel, conv_channels, max_utt_frames; /* speech */
  int loss_chunk_rows; /* GPT: logits rows at once (0: derived) */
  /* [data] */
  char data_path[BT_CFG_STR_MAX];
  char val_path[BT_CFG_STR_MAX]; /* speech: validation HDF5 ("": none) */
  int data_check; /* scan the file at start-up (data/check.h) */
  int shuffle, prefetch;
  int val_every, val_samples;
  int max_frames;  /* speech: padded frames B*T per rank-batch (audio_loader.h) */
  int sort_window; /* speech: utterances sorted by length together */
  /* [train] */
  int steps;
  int batch_size; /* global samples per optimizer step */
  int grad_accum;
  int64_t seed;
  bt_backend_kind backend;
  bt_act_dtype precision; /* activation dtype: fp32 | bf16 (kernels/ops.h) */
  int threads;
  int log_every;
  double straggler_factor; /* 0: straggler detection off */
  int straggler_intervals;
  double straggler_min_ms; /* gaps under this are never named */
  bt_nan_policy nan_policy;
  char init_from[BT_CFG_STR_MAX]; /* "": random initialisation (init.h) */
  int early_stop; /* stop after N validations without improvement (0: off) */
  /* [optim] */
  double lr, min_lr_ratio;
  int warmup_steps;
  int decay_steps; /* 0: the decay ends at train.steps (optim.c) */
  bt_lr_schedule schedule;
  double beta1, beta2, eps, weight_decay, grad_clip;
  /* [dist] */
  int zero;
  double bucket_mb;
  int overlap;
  double watchdog_seconds;
  bt_comm_kind comm;
  /* [checkpoint] */
  int ckpt_every, keep_last, keep_every, ckpt_async, zstd_level;
  int keep_best; /* checkpoint at each best val loss; RUN/best keeps it */
  bt_ckpt_on_error ckpt_on_error;
  /* [log] */
  int jsonl, tensorboard, trace;
} bt_config;

typedef enum bt_cfg_type {
  BT_CFG_INT = 0,
  BT_CFG_INT64,
  BT_CFG_FLOAT,
  BT_CFG_BOOL,
  BT_CFG_STR,
  BT_CFG_ENUM, /* an enum field (int-sized) named by one of aChoice */
} bt_cfg_type;

/* One word of an enum key and the value it stands for. */
typedef struct bt_cfg_choice {
  const char *zName;
  int value;
} bt_cfg_choice;

/* Resume policy of a key. */
typedef enum bt_cfg_resume {
  BT_CFG_SHAPE = 0, /* changes the model or the data stream: refuse */
  BT_CFG_SAFE = 1,  /* safe to change on resume: allowed and logged */
} bt_cfg_resume;

typedef struct bt_cfg_key {
  const char *zSection;
  const char *zName;
  bt_cfg_type eType;
  size_t offset;         /* into bt_config */
  size_t size;           /* field size (strings) */
  const char *zDefault;  /* NULL: required */
  const bt_cfg_choice *aChoice; /* enums: ends with {NULL, 0} */
  double min, max;       /* numeric range, inclusive */
  bt_cfg_resume eResume;
  const char *zHelp;
} bt_cfg_key;

extern const bt_cfg_key bt_config_keys[];
extern const int bt_config_nkeys;

/* Loads defaults, then zPath (may be NULL: defaults only), then each
 * "section.key=value" override, then (train.init_from set) the shape keys
 * the source decides and the run left unset (trainer/init.h). Validates
 * ranges and cross-key rules.
 * On error returns BT_ERR with bt_err_msg() naming file, line and key. */
int bt_config_load(bt_config *pCfg, const char *zPath, const char *const *azSet,
                   int nSet);
/* Every key at its default (required keys empty: "" for strings, -1 for
 * enums, which prints as ""); no validation. */
void bt_config_defaults(bt_config *pCfg);
/* Rebuilds a config from bt_config_to_text() output (checkpoints):
 * defaults, then each "section.key = value" line. zSource names the
 * origin in errors. Unknown keys (from another version) are warned about. */
int bt_config_from_text(bt_config *pCfg, const char *zText,
                        const char *zSource);
/* Applies one "section.key=value" (source names it in errors). */
int bt_config_set(bt_config *pCfg, const char *zKeyValue, const char *zSource);
/* Canonical text of the whole config: "section.key = value" lines in table
 * order. Used for checkpoints, agreement checks and `baton config`. */
char *bt_config_to_text(const bt_config *pCfg);
/* Value of one key as text into zOut. */
void bt_config_value_text(const bt_config *pCfg, const bt_cfg_key *pKey,
                          char *zOut, size_t nOut);
/* The word of enum key pKey for value v ("" if none: an unset required
 * key). */
const char *bt_config_choice_name(const bt_cfg_key *pKey, int v);
/* model.type as its config word ("gpt", "mlp"). */
const char *bt_config_model_name(bt_model_kind e);
/* Writes the key reference as Markdown (docs/config.md is generated). */
void bt_config_write_markdown(FILE *pOut);
/* Compares two configs; for the first differing key writes its
 * "section.key" into zKey and returns 1 (0 if equal). If onlyShape, only
 * BT_CFG_SHAPE keys are compared. */
int bt_config_first_diff(const bt_config *a, const bt_config *b, int onlyShape,
                         char *zKey, size_t nKey);

/* Derived values. */
int bt_config_vocab_padded(const bt_config *pCfg);
/* Parses mlp_hidden into aOut (max nMax); returns count or BT_ERR. */
int bt_config_mlp_hidden(const bt_config *pCfg, int *aOut, int nMax);

#endif /* BATON_CONFIG_H */
