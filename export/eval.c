/*
 * eval.c: `baton eval PATH [--split val|train] [--data FILE]
 *         [--max-samples N] [--batch-size B] [--json]`.
 *
 * Evaluates a checkpoint (or a run directory: its newest valid
 * checkpoint; the same resolution as `baton export`) or an export
 * directory (config.json + model.safetensors) over a dataset split, and
 * reports loss and perplexity (GPT) or loss and accuracy (MLP), as one
 * line or as one JSON object on stdout (rank 0).
 *
 * Invariants:
 *   1. The numbers are those of validation during training: both run
 *      bt_eval_pass (trainer/eval.h) over the first N samples of the
 *      split in file order, each rank its contiguous part of each chunk,
 *      sums reduced in double. Under mpirun the result equals the
 *      1-rank result up to the summation order of doubles (test
 *      export_eval: 1 vs 2 ranks within 1e-6 relative).
 *   2. The data file defaults to the checkpoint's data.path; an export
 *      directory carries no data path, so --data is required there.
 *   3. The model's sizes (vocab, features, classes) are passed to the
 *      loader, so a token or label out of the model's range is an error
 *      naming its index, never a silent wrong number.
 *   4. A speech checkpoint (model.type = speech) is evaluated over every
 *      utterance of an audio HDF5 (default: the run's data.val_path for
 *      --split val, data.path for train) with bt_eval_speech, the
 *      validation of training: loss, CER, WER; the file's vocabulary
 *      must be the training file's. --batch-size is then the padded
 *      frame budget per forward (default: the run's data.max_frames).
 *      A speech export directory takes --data (required) and checks the
 *      file's vocabulary against the characters of its config.json; its
 *      frame budget defaults to data.max_frames' default.
 */
#include "base/cli.h"
#include "base/json.h"
#include "base/util.h"
#include "data/audio_loader.h"
#include "data/loader.h"
#include "export/export.h"
#include "trainer/eval.h"
#include "trainer/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct eval_opts {
  const char *zPath;
  const char *zSplit;
  const char *zData;
  int64_t maxSamples; /* 0: the whole split */
  int batch;          /* samples per forward and rank; 0: 8 */
  int threads;
  int json;
} eval_opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: baton eval PATH [--split val|train] [--data FILE] "
          "[--max-samples N]\n"
          "                  [--batch-size B] [--threads N] [--json]\n\n"
          "Runs a checkpoint (or a run directory: its newest valid "
          "checkpoint) or an\nexport directory over a dataset split and "
          "prints the loss and perplexity\n(GPT), loss and accuracy (MLP) "
          "or loss, CER and WER (speech). Under mpirun\neach rank evaluates "
          "its part of the split, as validation during training\ndoes, and "
          "rank 0 prints. Speech: every utterance of --data (default: the\n"
          "run's data.val_path, or data.path with --split train); "
          "--batch-size is then\npadded frames per forward.\n\n"
          "  --split S        val (default) or train\n"
          "  --data FILE      HDF5 dataset (default: the checkpoint's "
          "data.path; required\n                   for an export "
          "directory)\n"
          "  --max-samples N  the first N samples of the split (default: "
          "all)\n"
          "  --batch-size B   samples per forward on each rank (default "
          "8)\n"
          "  --threads N      CPU threads per rank (0: OMP_NUM_THREADS or "
          "all cores)\n"
          "  --json           one JSON object instead of the line (stdout "
          "holds only it)\n");
}

static int parse_i64(const bt_cli *c, const char *zOpt, const char *z,
                     int64_t lo, int64_t *pv) {
  char *e;
  errno = 0;
  long long v = strtoll(z, &e, 10);
  if (errno || *e || e == z || v < lo)
    return bt_cli_fail(c, "%s: expected an integer >= %lld, got '%s'", zOpt,
                       (long long)lo, z);
  *pv = v;
  return BT_EXIT_OK;
}

static int is_export_dir(const char *zPath) {
  char z[4096];
  snprintf(z, sizeof z, "%s/config.json", zPath);
  if (!bt_path_exists(z)) return 0;
  snprintf(z, sizeof z, "%s/model.safetensors", zPath);
  return bt_path_exists(z);
}

/* ---- speech (model.type = speech) -------------------------------------- */

/* The vocabulary the model was trained with (its data.path) must be the
 * evaluated file's: ids would otherwise name other characters and the
 * CER would be wrong without any error. When the training file is no
 * longer readable, the check is skipped with a warning. */
static int speech_vocab(const bt_export_model *x, const char *zData,
                        int32_t **paCp, int *pn) {
  if (bt_audio_vocab_read(zData, paCp, pn) != BT_OK) return BT_ERR;
  if (*pn + 1 != x->m.V)
    return bt_err_set("%s: vocabulary of %d characters + blank, but the "
                      "model has %d outputs (model.vocab_size)",
                      zData, *pn, x->m.V);
  if (x->aVocab) /* an export: its config.json's characters */
    return memcmp(x->aVocab, *paCp, (size_t)*pn * sizeof **paCp) == 0
               ? BT_OK
               : bt_err_set("%s: its vocabulary differs from the characters "
                            "of %s/config.json",
                            zData, x->zSource);
  int32_t *aTrain = NULL;
  int nTrain = 0;
  if (bt_audio_vocab_read(x->cfg.data_path, &aTrain, &nTrain) != BT_OK) {
    bt_log_warn("cannot read the training data %s (%s): the vocabulary of "
                "%s is not checked against it", x->cfg.data_path,
                bt_err_msg(), zData);
    bt_err_clear();
    return BT_OK;
  }
  int bSame = nTrain == *pn &&
              memcmp(aTrain, *paCp, (size_t)nTrain * sizeof *aTrain) == 0;
  free(aTrain);
  if (bSame) return BT_OK;
  return bt_err_set("%s: its vocabulary differs from the training data %s's "
                    "(prepare it with `baton prepare audio --vocab %s`)",
                    zData, x->cfg.data_path, x->cfg.data_path);
}

static void print_speech(const eval_opts *o, const bt_export_model *x,
                         const char *zData, int world,
                         const bt_eval_result *r) {
  if (!o->json) {
    printf("eval %s (step %ld) on %s: %.0f utterances, loss %.6f, cer "
           "%.6f, wer %.6f\n",
           x->zSource, x->step, zData, r->count, r->loss, r->metric, r->wer);
    return;
  }
  char zSrc[4096], zDat[4096];
  bt_json_escape(zSrc, sizeof zSrc, x->zSource, strlen(x->zSource));
  bt_json_escape(zDat, sizeof zDat, zData, strlen(zData));
  printf("{\"source\": \"%s\", \"step\": %ld, \"data\": \"%s\", "
         "\"model\": \"speech\", \"world\": %d, \"utterances\": %.0f, "
         "\"loss_sum\": %.17g, \"loss\": %.17g, \"cer\": %.17g, "
         "\"wer\": %.17g}\n",
         zSrc, x->step, zDat, world, r->count, r->lossSum, r->loss, r->metric,
         r->wer);
}

/* The audio file to evaluate: --data, or the run's data.val_path
 * (--split val) or data.path (--split train). */
static int speech_data(const eval_opts *o, const bt_export_model *x,
                       int isExport, char *zData, size_t nData) {
  if (isExport && !o->zData)
    return bt_err_set("%s is an export directory, which names no dataset: "
                      "give --data FILE (an audio file of `prepare audio`)",
                      o->zPath);
  if (o->maxSamples)
    return bt_err_set("--max-samples: a speech model is evaluated over "
                      "every utterance of its data file");
  bt_snprintf(zData, nData, "%s",
              o->zData                    ? o->zData
              : !strcmp(o->zSplit, "val") ? x->cfg.val_path
                                          : x->cfg.data_path);
  if (!zData[0])
    return bt_err_set("%s: the run has no data.val_path: give --data FILE",
                      o->zPath);
  return BT_OK;
}

/* A speech checkpoint over every utterance of an audio HDF5: the numbers
 * of validation during training (bt_eval_speech). x, loaded for a few
 * utterances, is rebuilt for the largest batch the file gives at the
 * frame budget (--batch-size, default the run's data.max_frames). */
static int eval_speech(const eval_opts *o, bt_export_model *x, bt_comm *pComm,
                       int isExport, int rank, int world) {
  char zData[BT_CFG_STR_MAX + 1];
  if (speech_data(o, x, isExport, zData, sizeof zData) != BT_OK) return BT_ERR;
  int32_t *aCp = NULL;
  int nCp = 0;
  bt_audio_loader_config ac = {.zPath = zData,
                               .maxFrames = o->batch > 0 ? o->batch
                                                         : x->cfg.max_frames,
                               .window = x->cfg.sort_window,
                               .accum = 1,
                               .rank = rank,
                               .world = world,
                               .seed = 1,
                               .shuffle = 0};
  bt_audio_loader *pA = NULL;
  bt_eval_result r;
  int rc = speech_vocab(x, zData, &aCp, &nCp);
  if (rc == BT_OK) rc = bt_audio_loader_open(&pA, &ac);
  if (rc == BT_OK) {
    int maxB = (int)bt_audio_loader_max_batch(pA);
    bt_export_model_free(x); /* x owned its backend: a new one */
    bt_backend *be = bt_backend_create(BT_BACKEND_CPU, o->threads, 0);
    rc = be ? bt_export_load(x, o->zPath, !isExport, maxB, 0, be) : BT_ERR;
  }
  if (rc == BT_OK) rc = bt_eval_speech(&x->m, pA, pComm, world, aCp, nCp, &r);
  if (rc == BT_OK && rank == 0) print_speech(o, x, zData, world, &r);
  if (pA) bt_audio_loader_free(pA);
  free(aCp);
  return rc;
}

static void print_result(const eval_opts *o, const bt_export_model *x,
                         const char *zData, int world,
                         const bt_eval_result *r) {
  int gpt = x->m.eKind == BT_MODEL_GPT;
  const char *zMetric = bt_eval_metric_name(&x->m);
  const char *zItems = gpt ? "tokens" : "samples";
  if (!o->json) {
    printf("eval %s (step %ld) on %s [%s]: %.0f %s, loss %.6f, %s %.6f\n",
           x->zSource, x->step, zData, o->zSplit, r->count, zItems, r->loss,
           zMetric, r->metric);
    return;
  }
  char zSrc[4096], zDat[4096];
  bt_json_escape(zSrc, sizeof zSrc, x->zSource, strlen(x->zSource));
  bt_json_escape(zDat, sizeof zDat, zData, strlen(zData));
  /* %.17g: the exact doubles, so tools can compare runs bit for bit */
  printf("{\"source\": \"%s\", \"step\": %ld, \"data\": \"%s\", "
         "\"split\": \"%s\", \"model\": \"%s\", \"world\": %d, "
         "\"%s\": %.0f, \"loss_sum\": %.17g, \"loss\": %.17g, "
         "\"%s\": %.17g",
         zSrc, x->step, zDat, o->zSplit, gpt ? "gpt" : "mlp", world, zItems,
         r->count, r->lossSum, r->loss, zMetric, r->metric);
  if (!gpt) printf(", \"correct\": %.0f", r->correct);
  printf("}\n");
}

/* Loads the model, opens the split and runs the pass; rank 0 prints. */
static int eval_run(const eval_opts *o, bt_comm *pComm) {
  int rank = pComm ? bt_comm_rank(pComm) : 0;
  int world = pComm ? bt_comm_world(pComm) : 1;
  int isExport = is_export_dir(o->zPath);
  bt_backend *be = bt_backend_create(BT_BACKEND_CPU, o->threads, 0);
  if (!be) return BT_ERR;
  bt_export_model x;
  /* Activations are sized for the batch before the model type is known:
   * one small default, whatever the type (a 124M GPT at 1024 tokens
   * needs ~1 GB per 8 samples). */
  int batch = o->batch > 0 ? o->batch : 8;
  int rc = isExport ? bt_export_load_dir(&x, o->zPath, batch, be)
                    : bt_export_load_ckpt(&x, o->zPath, batch, be);
  if (rc != BT_OK) {
    bt_export_model_free(&x);
    return BT_ERR;
  }
  if (x.m.eKind == BT_MODEL_SPEECH) {
    rc = eval_speech(o, &x, pComm, isExport, rank, world);
    bt_export_model_free(&x);
    return rc;
  }
  int gpt = x.m.eKind == BT_MODEL_GPT;
  const char *zData = o->zData ? o->zData : x.cfg.data_path;
  if (isExport && !o->zData) {
    bt_err_set("%s is an export directory, which names no dataset: give "
               "--data FILE",
               o->zPath);
    bt_export_model_free(&x);
    return BT_ERR;
  }
  bt_loader_config lc = {
      .zPath = zData,
      .zSplit = o->zSplit,
      .eKind = gpt ? BT_SAMPLE_TOKENS : BT_SAMPLE_FEATURES,
      .T = x.cfg.context,
      .vocab = gpt ? x.m.V : 0,
      .D = gpt ? 0 : x.cfg.n_features,
      .nClass = gpt ? 0 : x.cfg.n_classes,
      .global_batch = world,
      .accum = 1,
      .rank = rank,
      .world = world,
      .seed = 1,
      .shuffle = 0,
      .prefetch = -1,
  };
  bt_loader *pL = NULL;
  bt_eval_result r;
  rc = bt_loader_open(&pL, &lc);
  if (rc == BT_OK) {
    int64_t n = bt_loader_size(pL);
    if (n == 0)
      rc = bt_err_set("%s: the %s split is empty", zData, o->zSplit);
    else
      rc = bt_eval_pass(&x.m, pL, pComm, o->maxSamples, batch * world, &r);
  }
  if (rc == BT_OK && rank == 0) print_result(o, &x, zData, world, &r);
  bt_loader_free(pL);
  bt_export_model_free(&x);
  return rc;
}

int bt_eval_main(int argc, char **argv, bt_comm *pComm) {
  eval_opts o = {.zSplit = "val"};
  int rank = pComm ? bt_comm_rank(pComm) : 0;
  static const struct option aOpt[] = {
      {"split", required_argument, 0, 's'},
      {"data", required_argument, 0, 'd'},
      {"max-samples", required_argument, 0, 'n'},
      {"batch-size", required_argument, 0, 'b'},
      {"threads", required_argument, 0, 'T'},
      {"json", no_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "eval", argc, argv, "h", aOpt, usage);
  c.bQuiet = rank != 0;
  int64_t v = 0;
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    switch (ch) {
    case 'h':
      if (rank == 0) usage(stdout);
      return BT_EXIT_OK;
    case 's': o.zSplit = c.zArg; break;
    case 'd': o.zData = c.zArg; break;
    case 'n':
      if (parse_i64(&c, "--max-samples", c.zArg, 1, &v)) return BT_EXIT_USAGE;
      o.maxSamples = v;
      break;
    case 'b':
      if (parse_i64(&c, "--batch-size", c.zArg, 1, &v)) return BT_EXIT_USAGE;
      if (v > (1 << 20))
        return bt_cli_fail(&c, "--batch-size: expected 1..%d", 1 << 20);
      o.batch = (int)v;
      break;
    case 'T':
      if (parse_i64(&c, "--threads", c.zArg, 0, &v)) return BT_EXIT_USAGE;
      if (v > 1024) return bt_cli_fail(&c, "--threads: expected 0..1024");
      o.threads = (int)v;
      break;
    case 'j': o.json = 1; break;
    case BT_CLI_ARG:
      if (o.zPath) return bt_cli_fail(&c, "unexpected argument '%s'", c.zArg);
      o.zPath = c.zArg;
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (!o.zPath) return bt_cli_fail(&c, "PATH is required");
  if (strcmp(o.zSplit, "val") && strcmp(o.zSplit, "train"))
    return bt_cli_fail(&c, "--split: expected val or train, got '%s'",
                       o.zSplit);
  /* --json: stdout carries the object alone, for tools to parse; notes
   * (info lines) are dropped, warnings and errors still go to stderr. */
  if (o.json) bt_log_set_level(0);
  if (eval_run(&o, pComm) != BT_OK) {
    bt_log_error("baton eval: %s", bt_err_msg());
    /* The other ranks may be waiting in the reduction: end the job. */
    if (pComm && bt_comm_world(pComm) > 1)
      bt_comm_abort(pComm, BT_EXIT_ERROR);
    return BT_EXIT_ERROR;
  }
  return BT_EXIT_OK;
}
