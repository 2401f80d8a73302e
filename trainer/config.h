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
 */
#ifndef BATON_CONFIG_H
#define BATON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BT_CFG_STR_MAX 512

typedef struct bt_config {
  /* [model] */
  char model_type[16]; /* gpt | mlp */
  int n_layer, n_head, n_embd, context, vocab_size;
  int vocab_pad_to;            /* padded vocab = round up to this multiple */
  char mlp_hidden[BT_CFG_STR_MAX]; /* "64,64" */
  int n_features, n_classes;   /* mlp */
  /* [data] */
  char data_path[BT_CFG_STR_MAX];
  int shuffle, prefetch;
  int val_every, val_samples;
  /* [train] */
  int steps;
  int batch_size; /* global samples per optimizer step */
  int grad_accum;
  int64_t seed;
  char backend[16]; /* cpu | cuda */
  int threads;
  int log_every;
  char nan_policy[16]; /* stop | skip */
  /* [optim] */
  double lr, min_lr_ratio;
  int warmup_steps;
  char schedule[16]; /* cosine | constant | linear */
  double beta1, beta2, eps, weight_decay, grad_clip;
  /* [dist] */
  int zero;
  double bucket_mb;
  int overlap;
  double watchdog_seconds;
  char comm[16]; /* auto | mpi | nccl */
  /* [checkpoint] */
  int ckpt_every, keep_last, keep_every, ckpt_async, zstd_level;
  char ckpt_on_error[16]; /* stop | continue */
  /* [log] */
  int jsonl, tensorboard, trace;
} bt_config;

typedef enum bt_cfg_type {
  BT_CFG_INT = 0,
  BT_CFG_INT64,
  BT_CFG_FLOAT,
  BT_CFG_BOOL,
  BT_CFG_STR,
  BT_CFG_ENUM,
} bt_cfg_type;

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
  const char *zChoices;  /* enums: "a|b|c" */
  double min, max;       /* numeric range, inclusive */
  bt_cfg_resume eResume;
  const char *zHelp;
} bt_cfg_key;

extern const bt_cfg_key bt_config_keys[];
extern const int bt_config_nkeys;

/* Loads defaults, then zPath (may be NULL: defaults only), then each
 * "section.key=value" override. Validates ranges and cross-key rules.
 * On error returns BT_ERR with bt_err_msg() naming file, line and key. */
int bt_config_load(bt_config *pCfg, const char *zPath, const char *const *azSet,
                   int nSet);
/* Every key at its default (required keys empty); no validation. */
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
