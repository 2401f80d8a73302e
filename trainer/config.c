/*
 * config.c: the table of keys and everything that walks it (see config.h).
 */
#include "base/util.h"
#include "trainer/config.h"
#include "trainer/init.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OFF(f) offsetof(bt_config, f), sizeof(((bt_config *)0)->f)
#define NOLIM -1e300, 1e300

/* Enum keys are read and written as int (value_parse, value_text). */
_Static_assert(sizeof(bt_model_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_backend_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_act_dtype) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_nan_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_lr_schedule) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_comm_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(bt_ckpt_on_error) == sizeof(int), "enum size");

/* The words of each enum key, in the order the docs and errors list them. */
static const bt_cfg_choice aModelType[] = {
    {"gpt", BT_MODEL_GPT}, {"mlp", BT_MODEL_MLP}, {"speech", BT_MODEL_SPEECH},
    {NULL, 0}};
static const bt_cfg_choice aBackend[] = {
    {"cpu", BT_BACKEND_CPU}, {"cuda", BT_BACKEND_CUDA}, {NULL, 0}};
static const bt_cfg_choice aPrecision[] = {
    {"fp32", BT_ACT_F32}, {"bf16", BT_ACT_BF16}, {NULL, 0}};
static const bt_cfg_choice aNanPolicy[] = {{"stop", BT_NAN_POLICY_STOP},
                                           {"skip", BT_NAN_POLICY_SKIP},
                                           {NULL, 0}};
static const bt_cfg_choice aSchedule[] = {
    {"cosine", BT_LR_SCHEDULE_COSINE},
    {"linear", BT_LR_SCHEDULE_LINEAR},
    {"constant", BT_LR_SCHEDULE_CONSTANT},
    {NULL, 0}};
static const bt_cfg_choice aComm[] = {{"auto", BT_COMM_AUTO},
                                      {"mpi", BT_COMM_MPI},
                                      {"nccl", BT_COMM_NCCL},
                                      {NULL, 0}};
static const bt_cfg_choice aOnError[] = {
    {"stop", BT_CKPT_ON_ERROR_STOP},
    {"continue", BT_CKPT_ON_ERROR_CONTINUE},
    {NULL, 0}};

/* Every key baton reads. Order is the order of docs/config.md and of the
 * canonical text form. */
const bt_cfg_key bt_config_keys[] = {
    /* [model] */
    {"model", "type", BT_CFG_ENUM, OFF(model_type), NULL, aModelType, NOLIM,
     BT_CFG_SHAPE, "Model family: a GPT-2-style decoder, an MLP classifier, or a speech "
     "recogniser (convolutions + transformer encoder + CTC)."},
    {"model", "n_layer", BT_CFG_INT, OFF(n_layer), "2", NULL, 1, 256,
     BT_CFG_SHAPE, "GPT, speech: number of transformer blocks."},
    {"model", "n_head", BT_CFG_INT, OFF(n_head), "2", NULL, 1, 256,
     BT_CFG_SHAPE, "GPT, speech: attention heads; must divide n_embd."},
    {"model", "n_embd", BT_CFG_INT, OFF(n_embd), "64", NULL, 1, 65536,
     BT_CFG_SHAPE, "GPT, speech: model width (channels, d_model)."},
    {"model", "context", BT_CFG_INT, OFF(context), "64", NULL, 1, 1 << 20,
     BT_CFG_SHAPE, "GPT: context length T (tokens per sample)."},
    {"model", "vocab_size", BT_CFG_INT, OFF(vocab_size), "0", NULL, 0,
     1 << 24, BT_CFG_SHAPE,
     "GPT: vocabulary size (token ids are below it); speech: characters "
     "including the CTC blank 0. 0: from the data (the "
     "file's vocab_size attribute, else the largest token id + 1; 256 for "
     "synthetic:arith)."},
    {"model", "vocab_pad_to", BT_CFG_INT, OFF(vocab_pad_to), "64", NULL, 1,
     4096, BT_CFG_SHAPE,
     "GPT: the embedding/logit rows are padded to a multiple of this "
     "(50257 -> 50304 with 64) for faster matrix products; padding is never "
     "a target and is dropped on export."},
    {"model", "loss_chunk_rows", BT_CFG_INT, OFF(loss_chunk_rows), "0", NULL,
     0, 1 << 24, BT_CFG_SAFE,
     "GPT: the classifier and cross-entropy run over this many rows "
     "(tokens) at a time, so only one chunk's logits [rows, padded vocab] "
     "exist; a multiple of 32. 0: as many as fit in 512 MiB of fp32 "
     "logits (2656 rows at 50304), at most the batch's B*T. One chunk "
     "gives the unchunked bits; more change wte's gradient by rounding "
     "only (docs/gpu.md, \"Fused kernels\")."},
    {"model", "mlp_hidden", BT_CFG_STR, OFF(mlp_hidden), "64,64", NULL, NOLIM,
     BT_CFG_SHAPE, "MLP: comma-separated hidden layer widths (GELU between)."},
    {"model", "n_features", BT_CFG_INT, OFF(n_features), "0", NULL, 0,
     1 << 24, BT_CFG_SHAPE,
     "MLP: input features per sample. 0: from the data (the width of x; 16 "
     "for synthetic:clusters)."},
    {"model", "n_classes", BT_CFG_INT, OFF(n_classes), "0", NULL, 0, 1 << 24,
     BT_CFG_SHAPE,
     "MLP: number of classes. 0: from the data (the file's num_classes "
     "attribute, else the largest label + 1; 4 for synthetic:clusters)."},
    {"model", "n_mel", BT_CFG_INT, OFF(n_mel), "80", NULL, 1, 1024,
     BT_CFG_SHAPE, "Speech: log-mel bins per input frame."},
    {"model", "conv_channels", BT_CFG_INT, OFF(conv_channels), "64", NULL, 1,
     65536, BT_CFG_SHAPE,
     "Speech: output channels of the first stride-2 convolution (the "
     "second outputs model.n_embd)."},
    {"model", "max_utterance_frames", BT_CFG_INT, OFF(max_utt_frames), "1600", NULL, 4,
     1 << 20, BT_CFG_SHAPE,
     "Speech: longest utterance in input frames (16 s at a 10 ms hop); "
     "activations are sized for it, a longer one is an error."},
    /* [data] */
    {"data", "path", BT_CFG_STR, OFF(data_path), "synthetic:arith", NULL, NOLIM,
     BT_CFG_SHAPE,
     "HDF5 dataset (docs/data.md) or a built-in synthetic one: "
     "synthetic:arith (tokens) or synthetic:clusters (features)."},
    {"data", "check", BT_CFG_BOOL, OFF(data_check), "true", NULL, NOLIM,
     BT_CFG_SAFE,
     "Read the whole HDF5 file once at start-up (each rank 1/N of it) and "
     "stop if a token id, label or feature is out of range, naming its "
     "index (docs/data.md); false for files already checked."},
    {"data", "shuffle", BT_CFG_BOOL, OFF(shuffle), "true", NULL, NOLIM,
     BT_CFG_SHAPE, "Visit samples in a seeded permutation each epoch."},
    {"data", "prefetch", BT_CFG_INT, OFF(prefetch), "2", NULL, 1, 64,
     BT_CFG_SAFE, "Batches the loader thread prepares ahead."},
    {"data", "val_every", BT_CFG_INT, OFF(val_every), "0", NULL, 0, 1 << 30,
     BT_CFG_SAFE, "Run a validation pass every N steps (0: never)."},
    {"data", "val_path", BT_CFG_STR, OFF(val_path), "", NULL, NOLIM,
     BT_CFG_SAFE,
     "speech: the validation HDF5 (`baton prepare audio --vocab TRAIN.h5`: "
     "the training file's vocabulary); every utterance of it is "
     "validated. Other models use the val split of data.path."},
    {"data", "val_samples", BT_CFG_INT, OFF(val_samples), "64", NULL, 0,
     1 << 30, BT_CFG_SAFE,
     "Samples in the fixed validation subset: the first N of the val "
     "split (0: the whole split)."},
    {"data", "max_frames", BT_CFG_INT, OFF(max_frames), "4000", NULL, 1,
     1 << 30, BT_CFG_SHAPE,
     "Speech: frame budget of one rank's batch: utterances of similar "
     "length are batched while utterances x longest <= this (10 ms "
     "frames; docs/data.md, \"Audio data\")."},
    {"data", "sort_window", BT_CFG_INT, OFF(sort_window), "1024", NULL, 0,
     1 << 30, BT_CFG_SHAPE,
     "Speech: utterances of the epoch's permutation sorted by length "
     "together before batching (0: the whole epoch; larger: less "
     "padding, less randomness)."},
    /* [train] */
    {"train", "steps", BT_CFG_INT, OFF(steps), "100", NULL, 1, 1 << 30,
     BT_CFG_SAFE, "Total optimizer steps of the run."},
    {"train", "batch_size", BT_CFG_INT, OFF(batch_size), "8", NULL, 1, 1 << 24,
     BT_CFG_SHAPE,
     "Global batch: samples per optimizer step over all ranks and "
     "micro-steps. Split across ranks as evenly as possible."},
    {"train", "grad_accum", BT_CFG_INT, OFF(grad_accum), "1", NULL, 1, 4096,
     BT_CFG_SAFE, "Micro-steps per optimizer step (gradient accumulation)."},
    {"train", "seed", BT_CFG_INT64, OFF(seed), "1337", NULL, 0, 9.0e15,
     BT_CFG_SHAPE, "Seed of initialisation and data order."},
    {"train", "backend", BT_CFG_ENUM, OFF(backend), "cpu", aBackend, NOLIM,
     BT_CFG_SAFE, "Compute backend."},
    {"train", "precision", BT_CFG_ENUM, OFF(precision), "fp32", aPrecision,
     NOLIM, BT_CFG_SAFE,
     "Activation dtype. bf16: activations, their gradients and a working "
     "copy of the weights in bf16 (the cpu backend rounds to bf16 where a "
     "GPU would store it); master weights, gradients, their all-reduce, "
     "AdamW moments, loss and norms stay fp32, so checkpoints are the same "
     "either way and a resume may change it (logged). The cuda backend "
     "stores bf16 (attention through cuDNN), not yet run on a GPU; the "
     "speech model refuses bf16 (docs/design.md, Precision)."},
    {"train", "threads", BT_CFG_INT, OFF(threads), "0", NULL, 0, 1024,
     BT_CFG_SAFE, "CPU threads per rank (0: OMP_NUM_THREADS or all cores)."},
    {"train", "log_every", BT_CFG_INT, OFF(log_every), "10", NULL, 1, 1 << 30,
     BT_CFG_SAFE, "Print a progress line every N steps."},
    {"train", "straggler_factor", BT_CFG_FLOAT, OFF(straggler_factor), "1.5",
     NULL, 0, 1e6, BT_CFG_SAFE,
     "Name the slowest rank and its host on the progress line and in "
     "metrics.jsonl (straggler/*) when its busy time per step (data + "
     "forward/backward) is at least this many times the median rank's "
     "(0: off); likewise a host whose round trip to rank 0 is this many "
     "times the median host's (slow link). Measured once per log interval "
     "(train.log_every)."},
    {"train", "straggler_intervals", BT_CFG_INT, OFF(straggler_intervals), "3",
     NULL, 1, 1 << 20, BT_CFG_SAFE,
     "Consecutive log intervals the same rank must be over "
     "train.straggler_factor before it is named."},
    {"train", "straggler_min_ms", BT_CFG_FLOAT, OFF(straggler_min_ms), "5",
     NULL, 0, 1e9, BT_CFG_SAFE,
     "A rank is never named when its busy time per step exceeds the "
     "median's by less than this many milliseconds, whatever the ratio "
     "(on short steps the OS scheduler alone moves ranks that far apart)."},
    {"train", "nan_policy", BT_CFG_ENUM, OFF(nan_policy), "stop", aNanPolicy,
     NOLIM, BT_CFG_SAFE,
     "On NaN/Inf loss or grad-norm: stop the run, or skip the update."},
    {"train", "init_from", BT_CFG_STR, OFF(init_from), "", NULL, NOLIM,
     BT_CFG_SAFE,
     "Start a new run from existing weights: a Hugging Face GPT-2 model "
     "directory (model.safetensors + config.json, from save_pretrained or "
     "`baton export`) or a baton checkpoint or run directory. Model shape "
     "keys left unset are taken from it; fresh optimizer state, step 0. "
     "Ignored (and logged) when the run resumes from its own checkpoint "
     "(docs/guide.md, \"Start from pretrained weights\")."},
    {"train", "early_stop", BT_CFG_INT, OFF(early_stop), "0", NULL, 0,
     1 << 30, BT_CFG_SAFE,
     "Stop after N validations in a row without a new lowest validation "
     "loss (0: never); the final checkpoint is written and the exit code "
     "is 0. Needs data.val_every."},
    /* [optim] */
    {"optim", "lr", BT_CFG_FLOAT, OFF(lr), "1e-3", NULL, 0, 10, BT_CFG_SAFE,
     "Peak learning rate (AdamW)."},
    {"optim", "min_lr_ratio", BT_CFG_FLOAT, OFF(min_lr_ratio), "0.1", NULL, 0,
     1, BT_CFG_SAFE, "Final learning rate as a fraction of lr."},
    {"optim", "warmup_steps", BT_CFG_INT, OFF(warmup_steps), "10", NULL, 0,
     1 << 30, BT_CFG_SAFE, "Linear warm-up steps."},
    {"optim", "decay_steps", BT_CFG_INT, OFF(decay_steps), "0", NULL, 0,
     1 << 30, BT_CFG_SAFE,
     "Step at which the decay reaches lr*min_lr_ratio (0: train.steps); "
     "later steps run at that rate. Raising train.steps on resume "
     "stretches the decay unless this keeps its old end (docs/guide.md)."},
    {"optim", "schedule", BT_CFG_ENUM, OFF(schedule), "cosine",
     aSchedule, NOLIM, BT_CFG_SAFE,
     "Decay after warm-up, from lr to lr*min_lr_ratio at the last step "
     "(or at optim.decay_steps)."},
    {"optim", "beta1", BT_CFG_FLOAT, OFF(beta1), "0.9", NULL, 0, 0.999999,
     BT_CFG_SAFE, "AdamW beta1."},
    {"optim", "beta2", BT_CFG_FLOAT, OFF(beta2), "0.95", NULL, 0, 0.999999999,
     BT_CFG_SAFE, "AdamW beta2."},
    {"optim", "eps", BT_CFG_FLOAT, OFF(eps), "1e-8", NULL, 0, 1, BT_CFG_SAFE,
     "AdamW epsilon."},
    {"optim", "weight_decay", BT_CFG_FLOAT, OFF(weight_decay), "0.1", NULL, 0,
     10, BT_CFG_SAFE,
     "Decoupled weight decay, applied to matrices and embeddings only."},
    {"optim", "grad_clip", BT_CFG_FLOAT, OFF(grad_clip), "1.0", NULL, 0, 1e30,
     BT_CFG_SAFE, "Clip the global gradient norm to this (0: off)."},
    /* [dist] */
    {"dist", "zero", BT_CFG_BOOL, OFF(zero), "false", NULL, NOLIM, BT_CFG_SAFE,
     "ZeRO-1: shard optimizer state across ranks."},
    {"dist", "bucket_mb", BT_CFG_FLOAT, OFF(bucket_mb), "25", NULL, 0.001,
     4096, BT_CFG_SAFE, "Gradient bucket size in MB (reduced as one)."},
    {"dist", "overlap", BT_CFG_BOOL, OFF(overlap), "true", NULL, NOLIM,
     BT_CFG_SAFE,
     "Start each bucket's reduction as soon as backward has written it."},
    {"dist", "watchdog_seconds", BT_CFG_FLOAT, OFF(watchdog_seconds), "600",
     NULL, 0, 1e9, BT_CFG_SAFE,
     "Abort the job if a collective or a step makes no progress this long "
     "(0: off)."},
    {"dist", "comm", BT_CFG_ENUM, OFF(comm), "auto", aComm, NOLIM,
     BT_CFG_SAFE, "Communicator: NCCL on CUDA, MPI otherwise (auto)."},
    /* [checkpoint] */
    {"checkpoint", "every", BT_CFG_INT, OFF(ckpt_every), "0", NULL, 0, 1 << 30,
     BT_CFG_SAFE, "Save a checkpoint every N steps (0: only at the end)."},
    {"checkpoint", "keep_last", BT_CFG_INT, OFF(keep_last), "3", NULL, 1,
     1 << 20, BT_CFG_SAFE, "Keep the newest K checkpoints."},
    {"checkpoint", "keep_every", BT_CFG_INT, OFF(keep_every), "0", NULL, 0,
     1 << 30, BT_CFG_SAFE, "Also keep every checkpoint whose step is a "
                           "multiple of M (0: none)."},
    {"checkpoint", "keep_best", BT_CFG_BOOL, OFF(keep_best), "false", NULL,
     NOLIM, BT_CFG_SAFE,
     "Save a checkpoint at each new lowest validation loss and keep it: "
     "RUN/best names it, and retention never deletes it. Needs "
     "data.val_every."},
    {"checkpoint", "async", BT_CFG_BOOL, OFF(ckpt_async), "true", NULL, NOLIM,
     BT_CFG_SAFE, "Compress and write in a background thread."},
    {"checkpoint", "zstd_level", BT_CFG_INT, OFF(zstd_level), "1", NULL, 1, 19,
     BT_CFG_SAFE, "zstd compression level."},
    {"checkpoint", "on_error", BT_CFG_ENUM, OFF(ckpt_on_error), "stop",
     aOnError, NOLIM, BT_CFG_SAFE,
     "On a failed save (disk full, I/O error): stop, or continue training "
     "(the previous checkpoint stays)."},
    /* [log] */
    {"log", "jsonl", BT_CFG_BOOL, OFF(jsonl), "true", NULL, NOLIM, BT_CFG_SAFE,
     "Write RUN/metrics.jsonl."},
    {"log", "tensorboard", BT_CFG_BOOL, OFF(tensorboard), "true", NULL, NOLIM,
     BT_CFG_SAFE, "Write TensorBoard event files under RUN/tb."},
    {"log", "trace", BT_CFG_BOOL, OFF(trace), "false", NULL, NOLIM,
     BT_CFG_SAFE, "Write a Chrome-trace timeline per rank under RUN/trace."},
};
const int bt_config_nkeys = (int)(sizeof bt_config_keys / sizeof bt_config_keys[0]);

/* ---- value parsing ---------------------------------------------------- */

static const bt_cfg_key *key_find(const char *zSection, const char *zName) {
  for (int i = 0; i < bt_config_nkeys; i++)
    if (!strcmp(bt_config_keys[i].zSection, zSection) &&
        !strcmp(bt_config_keys[i].zName, zName))
      return &bt_config_keys[i];
  return NULL;
}

static const bt_cfg_choice *choice_find(const bt_cfg_key *pKey,
                                        const char *zVal) {
  for (const bt_cfg_choice *p = pKey->aChoice; p->zName; p++)
    if (!strcmp(p->zName, zVal)) return p;
  return NULL;
}

/* "a|b|c" (cSep '|'): the words of an enum key, as errors and the docs
 * list them. */
static void choice_list(const bt_cfg_key *pKey, char cSep, char *zOut,
                        size_t nOut) {
  size_t k = 0;
  zOut[0] = 0;
  for (const bt_cfg_choice *p = pKey->aChoice; p->zName; p++) {
    if (p != pKey->aChoice && k + 1 < nOut) zOut[k++] = cSep;
    k += (size_t)snprintf(zOut + k, nOut - k, "%s", p->zName);
    if (k >= nOut) break; /* truncated: the lists are short, never here */
  }
}

const char *bt_config_choice_name(const bt_cfg_key *pKey, int v) {
  BT_ASSERT(pKey->eType == BT_CFG_ENUM);
  for (const bt_cfg_choice *p = pKey->aChoice; p->zName; p++)
    if (p->value == v) return p->zName;
  return "";
}

const char *bt_config_model_name(bt_model_kind e) {
  return bt_config_choice_name(key_find("model", "type"), (int)e);
}

/* Parses zVal into the field of pKey; on error fills zWhy. */
static int value_parse(bt_config *pCfg, const bt_cfg_key *pKey,
                       const char *zVal, char *zWhy, size_t nWhy) {
  char *pField = (char *)pCfg + pKey->offset;
  char *end = NULL;
  switch (pKey->eType) {
  case BT_CFG_INT:
  case BT_CFG_INT64: {
    errno = 0;
    long long v = strtoll(zVal, &end, 10);
    while (end && isspace((unsigned char)*end)) end++;
    if (errno || end == zVal || *end) {
      snprintf(zWhy, nWhy, "expected an integer");
      return BT_ERR;
    }
    if ((double)v < pKey->min || (double)v > pKey->max) {
      snprintf(zWhy, nWhy, "must be between %.0f and %.0f", pKey->min,
               pKey->max);
      return BT_ERR;
    }
    if (pKey->eType == BT_CFG_INT) *(int *)pField = (int)v;
    else *(int64_t *)pField = (int64_t)v;
    return BT_OK;
  }
  case BT_CFG_FLOAT: {
    errno = 0;
    double v = strtod(zVal, &end);
    while (end && isspace((unsigned char)*end)) end++;
    if (errno || end == zVal || *end || !isfinite(v)) {
      snprintf(zWhy, nWhy, "expected a number");
      return BT_ERR;
    }
    if (v < pKey->min || v > pKey->max) {
      snprintf(zWhy, nWhy, "must be between %g and %g", pKey->min, pKey->max);
      return BT_ERR;
    }
    *(double *)pField = v;
    return BT_OK;
  }
  case BT_CFG_BOOL:
    if (!strcmp(zVal, "true") || !strcmp(zVal, "1") || !strcmp(zVal, "yes") ||
        !strcmp(zVal, "on")) {
      *(int *)pField = 1;
      return BT_OK;
    }
    if (!strcmp(zVal, "false") || !strcmp(zVal, "0") || !strcmp(zVal, "no") ||
        !strcmp(zVal, "off")) {
      *(int *)pField = 0;
      return BT_OK;
    }
    snprintf(zWhy, nWhy, "expected true or false");
    return BT_ERR;
  case BT_CFG_ENUM: {
    const bt_cfg_choice *pC = choice_find(pKey, zVal);
    if (!pC) {
      char zList[128]; /* zWhy holds 256: room for the words */
      choice_list(pKey, '|', zList, sizeof zList);
      snprintf(zWhy, nWhy, "expected one of %s", zList);
      return BT_ERR;
    }
    *(int *)pField = pC->value;
    return BT_OK;
  }
  case BT_CFG_STR:
    if (strlen(zVal) >= pKey->size) {
      snprintf(zWhy, nWhy, "longer than %zu characters", pKey->size - 1);
      return BT_ERR;
    }
    snprintf(pField, pKey->size, "%s", zVal);
    return BT_OK;
  }
  snprintf(zWhy, nWhy, "internal: unknown type");
  return BT_ERR;
}

/* ---- INI file --------------------------------------------------------- */

/* The parse of one config file. inih gives its handler no line number, so
 * the file is read whole and served to ini_parse_stream() line by line by
 * ini_next_line(), which counts lines: a duplicate key can then name the
 * line of its first occurrence, and inih's error line and ours agree. */
typedef struct ini_ctx {
  bt_config *pCfg;
  unsigned char *aSeen; /* per key: set by the file */
  int *aLine;           /* per key: the line that set it (0: none yet) */
  const char *zPath;
  const char *zText;    /* the whole file, NUL-free (checked first) */
  size_t nText, at;     /* bytes, next byte to serve */
  int line, nextLine;   /* line of the last chunk served, of the next one */
  char zErr[1024];      /* first error (without file:line) */
  int nErr;
  int errLine;          /* the line of zErr */
} ini_ctx;

/* ini_reader over ctx->zText with fgets() semantics: at most num - 1 bytes,
 * up to and including a newline; NULL at the end. */
static char *ini_next_line(char *zOut, int num, void *pStream) {
  ini_ctx *p = pStream;
  if (p->at >= p->nText || num < 2) return NULL;
  const char *zStart = p->zText + p->at;
  size_t room = (size_t)num - 1, left = p->nText - p->at;
  const char *e = memchr(zStart, '\n', left < room ? left : room);
  size_t n = e ? (size_t)(e - zStart) + 1 : (left < room ? left : room);
  memcpy(zOut, zStart, n);
  zOut[n] = 0;
  p->at += n;
  p->line = p->nextLine;
  if (e) p->nextLine++;
  return zOut;
}

static int config_ini_handler(void *user, const char *zSection, const char *zName,
                       const char *zValue) {
  ini_ctx *p = user;
  if (p->nErr) return 1; /* report only the first error */
  const bt_cfg_key *pKey = key_find(zSection, zName);
  if (!pKey) {
    if (!zSection[0])
      snprintf(p->zErr, sizeof p->zErr,
               "key '%s' outside any [section]", zName);
    else {
      int known = 0;
      for (int i = 0; i < bt_config_nkeys; i++)
        if (!strcmp(bt_config_keys[i].zSection, zSection)) known = 1;
      if (known)
        snprintf(p->zErr, sizeof p->zErr, "unknown key '%s' in section [%s]",
                 zName, zSection);
      else
        snprintf(p->zErr, sizeof p->zErr,
                 "unknown section [%s] (key '%s')", zSection, zName);
    }
    p->nErr++;
    p->errLine = p->line;
    return 0;
  }
  char zWhy[256];
  if (value_parse(p->pCfg, pKey, zValue, zWhy, sizeof zWhy) != BT_OK) {
    snprintf(p->zErr, sizeof p->zErr, "bad value '%s' for %s.%s: %s", zValue,
             zSection, zName, zWhy);
    p->nErr++;
    p->errLine = p->line;
    return 0;
  }
  int iKey = (int)(pKey - bt_config_keys);
  if (p->aLine[iKey]) { /* last-wins would hide one of the two silently */
    snprintf(p->zErr, sizeof p->zErr,
             "duplicate key %s.%s (first set at %s:%d)", zSection, zName,
             p->zPath, p->aLine[iKey]);
    p->nErr++;
    p->errLine = p->line;
    return 0;
  }
  p->aLine[iKey] = p->line;
  p->aSeen[iKey] = 1;
  return 1;
}

static int config_check(const bt_config *c, const char *zSource) {
  if (c->model_type == BT_MODEL_GPT || c->model_type == BT_MODEL_SPEECH) {
    if (c->n_embd % c->n_head != 0)
      return bt_err_set("%s: model.n_embd (%d) must be a multiple of "
                        "model.n_head (%d)",
                        zSource, c->n_embd, c->n_head);
  } else {
    int a[64];
    if (bt_config_mlp_hidden(c, a, 64) < 0)
      return bt_err_prefix("%s: ", zSource);
  }
  if (c->loss_chunk_rows % 32 != 0)
    return bt_err_set("%s: model.loss_chunk_rows (%d) must be a multiple of "
                      "32 (0: derived from the vocabulary)",
                      zSource, c->loss_chunk_rows);
  if (c->batch_size < c->grad_accum)
    return bt_err_set("%s: train.batch_size (%d) must be at least "
                      "train.grad_accum (%d)",
                      zSource, c->batch_size, c->grad_accum);
  /* Both act on validation results: without validations they would
   * silently do nothing. */
  if (c->val_every == 0 && (c->early_stop > 0 || c->keep_best))
    return bt_err_set("%s: %s needs validation: set data.val_every", zSource,
                      c->early_stop > 0 ? "train.early_stop"
                                        : "checkpoint.keep_best");
  return BT_OK;
}

void bt_config_defaults(bt_config *pCfg) {
  memset(pCfg, 0, sizeof *pCfg);
  char zWhy[256];
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    /* An unset required enum is -1, not 0: 0 is a valid choice, and the
     * text form of an unset key stays "" as for strings. */
    if (!k->zDefault && k->eType == BT_CFG_ENUM)
      *(int *)((char *)pCfg + k->offset) = -1;
    if (k->zDefault && value_parse(pCfg, k, k->zDefault, zWhy, sizeof zWhy))
      bt_assert_fail(k->zName, __FILE__, __LINE__); /* a bad table entry */
  }
}

int bt_config_from_text(bt_config *pCfg, const char *zText,
                        const char *zSource) {
  bt_config_defaults(pCfg);
  const char *p = zText;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char zLine[BT_CFG_STR_MAX + 128];
    if (n >= sizeof zLine)
      return bt_err_set("%s: config line too long", zSource);
    memcpy(zLine, p, n);
    zLine[n] = 0;
    char *eq = strstr(zLine, " = ");
    if (eq) {
      *eq = '='; /* "a.b = v" -> "a.b=v" */
      memmove(eq + 1, eq + 3, strlen(eq + 3) + 1);
      if (bt_config_set(pCfg, zLine, zSource) != BT_OK)
        bt_log_warn("%s", bt_err_msg()); /* e.g. a key of another version */
    }
    p += n + (e ? 1 : 0);
  }
  return BT_OK;
}

int bt_config_load(bt_config *pCfg, const char *zPath, const char *const *azSet,
                   int nSet) {
  bt_config_defaults(pCfg);
  unsigned char aSeen[256] = {0};
  BT_ASSERT(bt_config_nkeys <= 256);
  const char *zSource = zPath ? zPath : "(defaults)";
  if (zPath) {
    struct stat st;
    if (stat(zPath, &st) != 0)
      return bt_err_set("cannot open config file '%s': %s", zPath,
                        strerror(errno));
    if (S_ISDIR(st.st_mode)) /* fopen() would succeed and read nothing */
      return bt_err_set("config file '%s' is a directory", zPath);
    size_t nText = 0;
    char *zText = bt_file_read_all(zPath, &nText);
    if (!zText)
      return bt_err_prefix("config file: ");
    const char *zNul = memchr(zText, 0, nText);
    if (zNul) { /* inih would stop at it and ignore the rest silently */
      int nulLine = 1;
      for (const char *q = zText; q < zNul; q++) nulLine += *q == '\n';
      free(zText);
      return bt_err_set("%s:%d: NUL byte in config file (not a text file?)",
                        zPath, nulLine);
    }
    int aLine[256] = {0};
    ini_ctx ctx = {.pCfg = pCfg, .aSeen = aSeen, .aLine = aLine,
                   .zPath = zPath, .zText = zText, .nText = nText,
                   .nextLine = 1};
    int line = ini_parse_stream(ini_next_line, &ctx, config_ini_handler, &ctx);
    free(zText);
    if (line != 0) {
      /* inih reports the first error's line; a syntax error ("[train"
       * unclosed) may come before the handler's first error. */
      if (ctx.nErr && ctx.errLine == line)
        return bt_err_set("%s:%d: %s", zPath, line, ctx.zErr);
      return bt_err_set("%s:%d: syntax error (expected [section] or "
                        "key = value)",
                        zPath, line);
    }
  }
  for (int i = 0; i < nSet; i++) {
    if (bt_config_set(pCfg, azSet[i], "--set") != BT_OK) return BT_ERR;
    const char *eq = strchr(azSet[i], '=');
    char zKey[128];
    snprintf(zKey, sizeof zKey, "%.*s", (int)(eq - azSet[i]), azSet[i]);
    char *dot = strchr(zKey, '.');
    *dot = 0;
    aSeen[key_find(zKey, dot + 1) - bt_config_keys] = 1;
  }
  /* After every explicit value, before the checks: the source's shapes
   * fill only what the run left unset (trainer/init.h, invariant 1). */
  if (pCfg->init_from[0] && bt_init_merge_config(pCfg, aSeen, zSource) != BT_OK)
    return BT_ERR;
  for (int i = 0; i < bt_config_nkeys; i++)
    if (!bt_config_keys[i].zDefault && !aSeen[i])
      return bt_err_set("%s: missing required key %s.%s", zSource,
                        bt_config_keys[i].zSection, bt_config_keys[i].zName);
  return config_check(pCfg, zSource);
}

int bt_config_set(bt_config *pCfg, const char *zKeyValue, const char *zSource) {
  const char *eq = strchr(zKeyValue, '=');
  const char *dot = strchr(zKeyValue, '.');
  if (!eq || !dot || dot > eq)
    return bt_err_set("%s '%s': expected section.key=value", zSource,
                      zKeyValue);
  char zSec[64], zName[64];
  if ((size_t)(dot - zKeyValue) >= sizeof zSec ||
      (size_t)(eq - dot - 1) >= sizeof zName)
    return bt_err_set("%s '%s': key too long", zSource, zKeyValue);
  snprintf(zSec, sizeof zSec, "%.*s", (int)(dot - zKeyValue), zKeyValue);
  snprintf(zName, sizeof zName, "%.*s", (int)(eq - dot - 1), dot + 1);
  const bt_cfg_key *pKey = key_find(zSec, zName);
  if (!pKey)
    return bt_err_set("%s: unknown key '%s.%s'", zSource, zSec, zName);
  char zWhy[256];
  if (value_parse(pCfg, pKey, eq + 1, zWhy, sizeof zWhy) != BT_OK)
    return bt_err_set("%s: bad value '%s' for %s.%s: %s", zSource, eq + 1, zSec,
                      zName, zWhy);
  return BT_OK;
}

void bt_config_value_text(const bt_config *pCfg, const bt_cfg_key *pKey,
                          char *zOut, size_t nOut) {
  const char *pField = (const char *)pCfg + pKey->offset;
  switch (pKey->eType) {
  case BT_CFG_INT: snprintf(zOut, nOut, "%d", *(const int *)pField); break;
  case BT_CFG_INT64:
    snprintf(zOut, nOut, "%lld", (long long)*(const int64_t *)pField);
    break;
  case BT_CFG_FLOAT:
    snprintf(zOut, nOut, "%.17g", *(const double *)pField);
    break;
  case BT_CFG_BOOL:
    snprintf(zOut, nOut, "%s", *(const int *)pField ? "true" : "false");
    break;
  case BT_CFG_STR: snprintf(zOut, nOut, "%s", pField); break;
  case BT_CFG_ENUM:
    snprintf(zOut, nOut, "%s",
             bt_config_choice_name(pKey, *(const int *)pField));
    break;
  }
}

char *bt_config_to_text(const bt_config *pCfg) {
  size_t n = (size_t)bt_config_nkeys * (BT_CFG_STR_MAX + 64) + 1;
  char *z = bt_malloc(n, "config text");
  if (!z) return NULL;
  size_t used = 0;
  z[0] = 0;
  for (int i = 0; i < bt_config_nkeys; i++) {
    char zVal[BT_CFG_STR_MAX + 8];
    bt_config_value_text(pCfg, &bt_config_keys[i], zVal, sizeof zVal);
    used += (size_t)snprintf(z + used, n - used, "%s.%s = %s\n",
                             bt_config_keys[i].zSection,
                             bt_config_keys[i].zName, zVal);
  }
  return z;
}

int bt_config_first_diff(const bt_config *a, const bt_config *b, int onlyShape,
                         char *zKey, size_t nKey) {
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    if (onlyShape && k->eResume != BT_CFG_SHAPE) continue;
    char va[BT_CFG_STR_MAX + 8], vb[BT_CFG_STR_MAX + 8];
    bt_config_value_text(a, k, va, sizeof va);
    bt_config_value_text(b, k, vb, sizeof vb);
    if (strcmp(va, vb)) {
      snprintf(zKey, nKey, "%s.%s", k->zSection, k->zName);
      return 1;
    }
  }
  return 0;
}

void bt_config_write_markdown(FILE *f) {
  fprintf(f, "# Configuration reference\n\n"
             "Generated from the key table in trainer/config.c by "
             "`baton config --markdown`; `make test` fails if this file "
             "and the table differ.\n\n"
             "A config file is INI: `[section]` headers and `key = value` "
             "lines. Any key can be overridden on the command line with "
             "`--set section.key=value`. Keys marked *safe on resume* may "
             "change when a run resumes from a checkpoint (the change is "
             "logged); changing any other key stops the resume with an "
             "error naming the key.\n");
  const char *zSec = "";
  for (int i = 0; i < bt_config_nkeys; i++) {
    const bt_cfg_key *k = &bt_config_keys[i];
    if (strcmp(zSec, k->zSection)) {
      zSec = k->zSection;
      fprintf(f, "\n## [%s]\n\n| key | type | default | resume | meaning |\n"
                 "|---|---|---|---|---|\n",
              zSec);
    }
    const char *zType = "";
    char zBuf[128];
    switch (k->eType) {
    case BT_CFG_INT:
    case BT_CFG_INT64:
      snprintf(zBuf, sizeof zBuf, "integer %.0f..%.0f", k->min, k->max);
      zType = zBuf;
      break;
    case BT_CFG_FLOAT:
      snprintf(zBuf, sizeof zBuf, "number %g..%g", k->min, k->max);
      zType = zBuf;
      break;
    case BT_CFG_BOOL: zType = "true/false"; break;
    case BT_CFG_STR: zType = "string"; break;
    case BT_CFG_ENUM: {
      char zList[96];
      choice_list(k, ',', zList, sizeof zList);
      snprintf(zBuf, sizeof zBuf, "one of `%s`", zList);
      zType = zBuf;
      break;
    }
    }
    fprintf(f, "| `%s` | %s | %s%s%s | %s | %s |\n", k->zName, zType,
            k->zDefault ? "`" : "", k->zDefault ? k->zDefault : "**required**",
            k->zDefault ? "`" : "",
            k->eResume == BT_CFG_SAFE ? "safe" : "fixed", k->zHelp);
  }
}

int bt_config_vocab_padded(const bt_config *c) {
  int m = c->vocab_pad_to;
  return (c->vocab_size + m - 1) / m * m;
}

int bt_config_mlp_hidden(const bt_config *c, int *aOut, int nMax) {
  int n = 0;
  const char *p = c->mlp_hidden;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v > (1 << 24))
      return bt_err_set("bad value '%s' for model.mlp_hidden: expected "
                        "comma-separated positive widths like 64,64",
                        c->mlp_hidden);
    if (n >= nMax)
      return bt_err_set("model.mlp_hidden: more than %d layers", nMax);
    aOut[n++] = (int)v;
    p = end;
    while (*p == ' ') p++;
    if (*p == ',') p++;
    else if (*p)
      return bt_err_set("bad value '%s' for model.mlp_hidden: expected "
                        "comma-separated positive widths like 64,64",
                        c->mlp_hidden);
  }
  return n;
}
