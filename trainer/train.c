/*
 * train.c: `baton train`: the data-parallel training loop.
 *
 * One optimizer step on every rank:
 *   zero grads
 *   for each micro-step: loader batch -> forward -> backward (scaled by
 *       1 / global item count of the step; on the last micro-step the
 *       grad-ready hook launches bucket reductions during backward)
 *   finish reductions -> one small host all-reduce of [loss sum, item
 *       count, stop request] -> global grad-norm -> NaN policy -> clip ->
 *       AdamW on this rank's range -> (ZeRO) all-gather params
 *   log (rank 0) -> validation -> checkpoint (async) -> pre-emption exit
 *
 * Everything that decides the numbers (data order, initialisation, loss
 * averaging, the optimizer) depends only on the config and the global
 * sample stream, never on the world size or on timing, so a killed and
 * resumed run reproduces the uninterrupted one bit for bit on the CPU
 * backend (tests/train/).
 */
#include "base/util.h"
#include "trainer/observe/metrics.h"
#include "trainer/observe/progress.h"
#include "trainer/trainer.h"
#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- pre-emption ------------------------------------------------------ */

static volatile sig_atomic_t g_stopRequested = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  g_stopRequested = 1;
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
}

/* ---- start-up agreement ---------------------------------------------- */

/* What every rank must agree on, compared key by key so a mismatch names
 * the first differing key and the rank. */
typedef struct agree_rec {
  char zVersion[32];
  char zBuild[32];
  char zHost[64];
  uint64_t nParam;
  uint64_t aKeyHash[128];
} agree_rec;

static int startup_agreement(bt_trainer *tr) {
  if (tr->world == 1) return BT_OK;
  agree_rec me;
  memset(&me, 0, sizeof me);
  bt_snprintf(me.zVersion, sizeof me.zVersion, "%s", BATON_VERSION);
  bt_snprintf(me.zBuild, sizeof me.zBuild, "%s %s", __DATE__, __TIME__);
  snprintf(me.zHost, sizeof me.zHost, "%s", bt_log_host());
  me.nParam = tr->model.nParam;
  BT_ASSERT(bt_config_nkeys <= 128);
  for (int i = 0; i < bt_config_nkeys; i++) {
    char z[BT_CFG_STR_MAX + 8];
    bt_config_value_text(&tr->cfg, &bt_config_keys[i], z, sizeof z);
    me.aKeyHash[i] = bt_hash64(z, strlen(z), 0);
  }
  agree_rec *all = bt_calloc((size_t)tr->world, sizeof me, "agreement");
  if (!all) return BT_ERR;
  int rc = bt_comm_host_allgather(tr->pComm, &me, all, sizeof me);
  if (rc != BT_OK) {
    free(all);
    return bt_err_prefix("start-up agreement: ");
  }
  for (int r = 1; r < tr->world && rc == BT_OK; r++) {
    const agree_rec *a = &all[0], *b = &all[r];
    if (strcmp(a->zVersion, b->zVersion) || strcmp(a->zBuild, b->zBuild)) {
      rc = bt_err_set("start-up agreement: rank %d on %s runs baton %s "
                      "(built %s) but rank 0 on %s runs %s (built %s)",
                      r, b->zHost, b->zVersion, b->zBuild, a->zHost,
                      a->zVersion, a->zBuild);
      break;
    }
    for (int i = 0; i < bt_config_nkeys; i++)
      if (a->aKeyHash[i] != b->aKeyHash[i]) {
        rc = bt_err_set("start-up agreement: rank %d on %s has a different "
                        "config from rank 0: first differing key %s.%s",
                        r, b->zHost, bt_config_keys[i].zSection,
                        bt_config_keys[i].zName);
        break;
      }
    if (rc == BT_OK && a->nParam != b->nParam)
      rc = bt_err_set("start-up agreement: rank %d on %s built a model of "
                      "%llu parameters, rank 0 one of %llu",
                      r, b->zHost, (unsigned long long)b->nParam,
                      (unsigned long long)a->nParam);
  }
  free(all);
  return rc;
}

/* ---- set-up ---------------------------------------------------------- */

static int trainer_setup(bt_trainer *tr, const bt_train_opts *o) {
  bt_config *c = &tr->cfg;
  tr->run.bestVal = INFINITY;
  if (o->zRunDir) {
    bt_snprintf(tr->zRunDir, sizeof tr->zRunDir, "%s", o->zRunDir);
  } else {
    const char *zBase = strrchr(o->zConfig, '/');
    zBase = zBase ? zBase + 1 : o->zConfig;
    bt_snprintf(tr->zRunDir, sizeof tr->zRunDir, "runs/%.*s",
                (int)strcspn(zBase, "."), zBase);
  }
  if (tr->rank == 0 && bt_mkdir_p(tr->zRunDir) != BT_OK) return BT_ERR;

  tr->be = bt_backend_create(!strcmp(c->backend, "cuda") ? BT_BACKEND_CUDA
                                                          : BT_BACKEND_CPU,
                             c->threads, bt_comm_local_rank(tr->pComm));
  if (!tr->be) return BT_ERR;
  bt_comm_kind eComm = !strcmp(c->comm, "mpi")    ? BT_COMM_MPI
                       : !strcmp(c->comm, "nccl") ? BT_COMM_NCCL
                                                  : BT_COMM_AUTO;
  if (bt_backend_kind_of(tr->be) == BT_BACKEND_CPU && eComm == BT_COMM_NCCL)
    return bt_err_set("dist.comm = nccl needs train.backend = cuda");
  /* NCCL collectives are ordered after the backend's compute stream. */
  void *pStream = NULL;
#ifdef BATON_HAVE_CUDA
  if (bt_backend_kind_of(tr->be) == BT_BACKEND_CUDA)
    pStream = bt_cuda_stream(tr->be);
#endif
  if (bt_comm_attach_backend(tr->pComm,
                             bt_backend_kind_of(tr->be) == BT_BACKEND_CUDA
                                 ? eComm
                                 : BT_COMM_MPI,
                             pStream) != BT_OK)
    return BT_ERR;
  bt_comm_set_timeout(tr->pComm, c->watchdog_seconds);

  /* Largest per-rank micro-batch: ceil(ceil(G/A)/W). */
  int perMicro = (c->batch_size + c->grad_accum - 1) / c->grad_accum;
  tr->maxMicro = (perMicro + tr->world - 1) / tr->world;

  int isGpt = !strcmp(c->model_type, "gpt");
  bt_loader_config lc = {
      .zPath = c->data_path,
      .zSplit = "train",
      .eKind = isGpt ? BT_SAMPLE_TOKENS : BT_SAMPLE_FEATURES,
      .T = c->context,
      .vocab = c->vocab_size,
      .D = c->n_features,
      .nClass = c->n_classes,
      .global_batch = c->batch_size,
      .accum = c->grad_accum,
      .rank = tr->rank,
      .world = tr->world,
      .seed = (uint64_t)c->seed,
      .shuffle = c->shuffle,
      .prefetch = c->prefetch,
      .limit = 0,
      .pinned = !strcmp(c->backend, "cuda"),
  };
  if (bt_loader_open(&tr->pLoader, &lc) != BT_OK) return BT_ERR;
  if (!isGpt && bt_loader_feature_dim(tr->pLoader) != c->n_features)
    return bt_err_set("%s: samples have %d features but model.n_features "
                      "is %d",
                      c->data_path, bt_loader_feature_dim(tr->pLoader),
                      c->n_features);
  if (c->val_every > 0) {
    lc.zSplit = "val";
    lc.shuffle = 0;
    if (bt_loader_open(&tr->pVal, &lc) != BT_OK) return BT_ERR;
  }

  /* The flat buffer is padded to a multiple of world * 16 so ZeRO shards
   * are equal and 64-byte aligned, whatever the tensor sizes. */
  if (bt_model_build(&tr->model, c, tr->be, tr->maxMicro,
                     (size_t)tr->world * 16) != BT_OK)
    return BT_ERR;
  if (bt_model_init_weights(&tr->model, (uint64_t)c->seed) != BT_OK)
    return BT_ERR;
  if (bt_grad_sync_init(&tr->sync, tr->pComm, &tr->model, c->zero, c->overlap,
                        c->bucket_mb) != BT_OK)
    return BT_ERR;
  if (bt_optim_init(&tr->optim, tr->be, tr->sync.shardLo, tr->sync.shardHi) !=
      BT_OK)
    return BT_ERR;
  if (bt_backend_kind_of(tr->be) != BT_BACKEND_CPU) {
    size_t nMom = tr->optim.hi - tr->optim.lo;
    tr->hostStage = bt_calloc(tr->model.nFlat, sizeof(float), "host stage");
    tr->hostStageM = bt_calloc(nMom, sizeof(float), "host stage m");
    tr->hostStageV = bt_calloc(nMom, sizeof(float), "host stage v");
    if (!tr->hostStage || !tr->hostStageM || !tr->hostStageV) return BT_ERR;
  }
  tr->zCfgText = bt_config_to_text(c);
  if (!tr->zCfgText) return BT_ERR;
  if (startup_agreement(tr) != BT_OK) return BT_ERR;

  bt_ckpt_options co = {.zRunDir = tr->zRunDir,
                        .keep_last = c->keep_last,
                        .keep_every = c->keep_every,
                        .zstd_level = c->zstd_level,
                        .async = c->ckpt_async,
                        .shuffle = 1};
  if (bt_ckpt_writer_create(&tr->pCkw, tr->pComm, &co) != BT_OK) return BT_ERR;

  char zB1[32], zB2[32];
  size_t nMom = tr->optim.hi - tr->optim.lo;
  bt_log_info("baton %s: %s model, %zu parameters (%s), backend %s, "
              "%d rank%s (%s), run dir %s",
              BATON_VERSION, c->model_type, tr->model.nParam,
              bt_fmt_bytes(4.0 * (double)tr->model.nParam, zB1, sizeof zB1),
              bt_backend_name(tr->be), tr->world, tr->world > 1 ? "s" : "",
              bt_comm_name(tr->pComm), tr->zRunDir);
  bt_log_info("batch %d samples/step (micro-batch <= %d per rank, %d "
              "micro-step%s), %d buckets of %.3g MB, overlap %s, ZeRO-1 %s: "
              "optimizer state %s per rank",
              c->batch_size, tr->maxMicro, c->grad_accum,
              c->grad_accum > 1 ? "s" : "", tr->sync.nBucket, c->bucket_mb,
              c->overlap ? "on" : "off", tr->sync.zero ? "on" : "off",
              bt_fmt_bytes(8.0 * (double)nMom, zB2, sizeof zB2));
  return BT_OK;
}

/* ---- resume ----------------------------------------------------------- */

static int trainer_resume(bt_trainer *tr, const char *zResume) {
  char zDir[1200];
  if (zResume && !strcmp(zResume, "never")) return BT_OK;
  if (!zResume || !strcmp(zResume, "auto")) {
    /* Rank 0 finds the newest checkpoint that verifies (reporting each
     * newer one that does not) and broadcasts it: every rank resumes from
     * the same directory, and the candidates are read once, not per rank. */
    int rc = bt_ckpt_find_latest_all(tr->pComm, tr->zRunDir, zDir,
                                     sizeof zDir);
    if (rc == BT_ERR) return BT_ERR;
    if (rc != 0) return BT_OK; /* nothing to resume: a new run */
  } else {
    bt_snprintf(zDir, sizeof zDir, "%s", zResume);
  }

  double t0 = bt_time_now();
  bt_ckpt *pC = NULL;
  /* No up-front verification pass: every file read below is checked
   * against its checksum anyway. */
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK)
    return bt_err_prefix("resuming from %s: ", zDir);
  int rc = bt_state_apply_meta(tr, bt_ckpt_meta_json(pC), zDir);
  if (rc == BT_OK) {
    bt_ckpt_item aItem[8];
    int nItem = bt_state_items(tr, aItem, 8, 0);
    rc = bt_ckpt_load_items(pC, aItem, nItem);
  }
  int world = bt_ckpt_world(pC);
  bt_ckpt_close(pC);
  if (rc != BT_OK) return bt_err_prefix("resuming from %s: ", zDir);
  bt_state_commit_load(tr);
  bt_log_info("resumed from %s at step %ld (saved by %d rank%s) in %.2f s",
              zDir, tr->step, world, world > 1 ? "s" : "",
              bt_time_now() - t0);
  return BT_OK;
}

/* ---- the step --------------------------------------------------------- */

typedef struct step_times {
  double data, compute, commExposed, optim, ckpt, total;
} step_times;

/* Host all-reduce of the step's scalars. */
enum { RED_LOSS, RED_COUNT, RED_STOP, RED_N };

static int run_validation(bt_trainer *tr, double *pVal) {
  bt_config *c = &tr->cfg;
  bt_comm_set_context(tr->pComm, tr->step, "validation");
  if (bt_loader_val_begin(tr->pVal, c->val_samples,
                          tr->maxMicro * tr->world) != BT_OK)
    return BT_ERR;
  double red[2] = {0, 0};
  for (;;) {
    bt_batch b;
    if (bt_loader_val_next(tr->pVal, &b) != BT_OK) return BT_ERR;
    if (b.n == 0) break;
    double s = 0;
    int64_t n = 0;
    if (bt_model_forward(&tr->model, b.n, b.inputs, b.x, b.targets, &s, &n) !=
        BT_OK)
      return BT_ERR;
    red[0] += s;
    red[1] += (double)n;
  }
  if (bt_comm_host_allreduce(tr->pComm, red, 2, BT_F64, BT_SUM) != BT_OK)
    return BT_ERR;
  *pVal = red[1] > 0 ? red[0] / red[1] : NAN;
  return BT_OK;
}

/* One line per completed checkpoint: where, and the training time it cost
 * (snapshot copy plus any waiting; the compression and writing of an
 * asynchronous save happen beside training and are not counted). */
static void log_ckpt_done(bt_trainer *tr, long step) {
  bt_log_info("checkpoint %s/ckpt-%08ld complete: training time lost %.1f ms"
              " (%s)",
              tr->zRunDir, step,
              1e3 * bt_ckpt_last_blocking_seconds(tr->pCkw),
              tr->cfg.ckpt_async ? "asynchronous" : "synchronous");
}

static int save_checkpoint(bt_trainer *tr, int wait) {
  bt_comm_set_context(tr->pComm, tr->step, "checkpoint save");
  bt_ckpt_item aItem[8];
  int nItem = bt_state_items(tr, aItem, 8, 1);
  char *zMeta = bt_state_meta_json(tr);
  if (!zMeta) return bt_err_set("out of memory building checkpoint meta");
  int rc = bt_ckpt_save_begin(tr->pCkw, tr->step, zMeta, aItem, nItem);
  free(zMeta);
  if (rc == BT_OK && wait) {
    rc = bt_ckpt_finish(tr->pCkw);
    if (rc == BT_OK) log_ckpt_done(tr, tr->step);
  }
  return rc;
}

static int handle_ckpt_error(bt_trainer *tr) {
  if (!strcmp(tr->cfg.ckpt_on_error, "continue")) {
    bt_log_error("%s (training continues: checkpoint.on_error = continue; "
                 "the previous checkpoint is intact)",
                 bt_err_msg());
    return BT_OK;
  }
  return bt_err_prefix("checkpoint failed, stopping (checkpoint.on_error = "
                       "stop; the previous checkpoint is intact): ");
}

static int write_params(bt_trainer *tr, const char *zPath) {
  if (tr->rank != 0) return BT_OK;
  size_t n = tr->model.nParam;
  float *h = bt_malloc(n * sizeof(float), "params dump");
  if (!h) return BT_ERR;
  bt_mem_to_host(tr->be, h, tr->model.params, n);
  int rc = bt_file_write_atomic(zPath, h, n * sizeof(float));
  free(h);
  return rc;
}

static int train_loop(bt_trainer *tr, const bt_train_opts *o, int *pExit) {
  bt_config *c = &tr->cfg;
  bt_model *m = &tr->model;
  long total = c->steps;
  /* Loss log: rank 0 only, or every rank when the path holds "{rank}"
   * (the 64-rank test checks that all ranks log identical numbers). */
  FILE *pLossLog = NULL;
  const char *zRankTag = o->zLossLog ? strstr(o->zLossLog, "{rank}") : NULL;
  if (o->zLossLog && (tr->rank == 0 || zRankTag)) {
    char zPath[1200];
    if (zRankTag)
      bt_snprintf(zPath, sizeof zPath, "%.*s%d%s",
                  (int)(zRankTag - o->zLossLog), o->zLossLog, tr->rank,
                  zRankTag + 6);
    else
      bt_snprintf(zPath, sizeof zPath, "%s", o->zLossLog);
    pLossLog = fopen(zPath, "a");
    if (!pLossLog)
      return bt_err_set("cannot open loss log '%s': %s", zPath,
                        strerror(errno));
  }
  bt_metrics *pMet = NULL;
  if (tr->rank == 0 &&
      bt_metrics_open(&pMet, tr->zRunDir, c->jsonl, c->tensorboard) != BT_OK) {
    if (pLossLog) fclose(pLossLog);
    return BT_ERR;
  }
  bt_trace *pTrace = NULL;
  if (c->trace) {
    char zPath[1200];
    bt_snprintf(zPath, sizeof zPath, "%s/trace", tr->zRunDir);
    bt_mkdir_p(zPath);
    bt_snprintf(zPath, sizeof zPath, "%s/trace/rank%d.json", tr->zRunDir,
                tr->rank);
    if (bt_trace_open(&pTrace, zPath, tr->rank) != BT_OK) {
      bt_metrics_close(pMet);
      if (pLossLog) fclose(pLossLog);
      return BT_ERR;
    }
  }
  tr->sync.pTrace = pTrace;
  bt_trace_thread_name(pTrace, 0, "compute");
  bt_trace_thread_name(pTrace, 1, "gradient communication");
  if (tr->rank == 0) bt_metrics_mark_start(pMet, tr->step);

  /* A live bar only on a real terminal. Under mpirun, Open MPI hands the
   * ranks a pseudo-terminal even when mpirun's own output goes to a file,
   * so with several ranks plain lines are the default; BATON_PROGRESS=bar
   * or =plain overrides either way. */
  const char *zProg = getenv("BATON_PROGRESS");
  int ttyWidth = 0;
  if (tr->rank == 0 &&
      (zProg ? !strcmp(zProg, "bar") : tr->world == 1))
    ttyWidth = bt_progress_tty_width(1);
  if (zProg && !strcmp(zProg, "bar") && ttyWidth <= 0) ttyWidth = 100;
  int isGpt = m->eKind == BT_MODEL_GPT;
  double itemsPerSample = isGpt ? (double)m->T : 1.0;
  step_times acc = {0};
  int accSteps = 0;
  int rc = BT_OK;
  double tRunStart = bt_time_now();
  long firstStep = tr->step + 1;
  double prevCkpt = 0; /* checkpoint time of the previous step */

  while (tr->step < total) {
    long step = tr->step + 1;
    step_times st = {0};
    double tStep = bt_time_now();
    /* Fault points of the crash, hang, pre-emption and NaN tests
     * (BATON_FAULT, util.h): the Nth step of this process. */
    if (bt_fault_hit("train.step")) raise(SIGKILL);
    if (bt_fault_hit("train.stop")) raise(SIGSTOP);
    if (bt_fault_hit("train.sigterm")) raise(SIGTERM);
    int injectNan = bt_fault_hit("train.nan");
    bt_trace_begin(pTrace, "step", "train");
    bt_mem_zero(tr->be, m->grads, m->nFlat);
    double lossSum = 0, count = 0;
    int64_t stepGlobal = 0;
    for (int micro = 0; micro < c->grad_accum; micro++) {
      bt_comm_set_context(tr->pComm, step, "data");
      bt_trace_begin(pTrace, "data", "train");
      bt_batch b;
      if (bt_loader_next(tr->pLoader, &b) != BT_OK) {
        rc = bt_err_prefix("step %ld: ", step);
        goto out;
      }
      bt_trace_end(pTrace);
      st.data += b.wait_seconds;
      stepGlobal = b.step_global_n;
      double scale = 1.0 / ((double)b.step_global_n * itemsPerSample);
      int last = micro == c->grad_accum - 1;
      if (last) bt_grad_sync_begin(&tr->sync, step);
      double tc = bt_time_now();
      if (b.n > 0) {
        bt_comm_set_context(tr->pComm, step, "forward");
        bt_trace_begin(pTrace, "forward", "train");
        double s = 0;
        int64_t n = 0;
        if (bt_model_forward(m, b.n, b.inputs, b.x, b.targets, &s, &n) !=
            BT_OK) {
          rc = bt_err_prefix("step %ld, micro-step %d: ", step, micro);
          goto out;
        }
        bt_trace_end(pTrace);
        lossSum += s;
        count += (double)n;
        bt_comm_set_context(tr->pComm, step, "backward");
        bt_trace_begin(pTrace, "backward", "train");
        bt_model_backward(m, (float)scale, last ? bt_grad_sync_ready : NULL,
                          &tr->sync);
        bt_trace_end(pTrace);
      } else if (last) {
        bt_grad_sync_ready(&tr->sync, 0); /* nothing computed: all final */
      }
      st.compute += bt_time_now() - tc;
    }
    bt_backend_sync(tr->be);
    if (bt_grad_sync_finish(&tr->sync) != BT_OK) {
      rc = bt_err_prefix("step %ld: gradient reduction: ", step);
      goto out;
    }
    st.commExposed = tr->sync.exposedSeconds;
    st.compute -= 0; /* hooks' test calls are part of backward time */

    /* One small all-reduce: loss, count, and whether any rank was asked
     * to stop (pre-emption). */
    double tOpt = bt_time_now();
    bt_comm_set_context(tr->pComm, step, "loss all-reduce");
    if (injectNan) lossSum = NAN;
    double red[RED_N] = {lossSum, count, g_stopRequested ? 1.0 : 0.0};
    if (bt_comm_host_allreduce(tr->pComm, red, RED_N, BT_F64, BT_SUM) !=
        BT_OK) {
      rc = BT_ERR;
      goto out;
    }
    double loss = red[RED_COUNT] > 0 ? red[RED_LOSS] / red[RED_COUNT] : NAN;

    /* Global gradient norm over the real parameters. */
    bt_comm_set_context(tr->pComm, step, "optimizer");
    bt_trace_begin(pTrace, "optimizer", "train");
    size_t lo = tr->optim.lo, hi = tr->optim.hi < m->nParam ? tr->optim.hi
                                                             : m->nParam;
    double sumsq = hi > lo ? bt_op_sumsq(tr->be,
                                         bt_grad_sync_grad_at(&tr->sync, lo),
                                         hi - lo)
                           : 0.0;
    if (tr->sync.zero &&
        bt_comm_host_allreduce(tr->pComm, &sumsq, 1, BT_F64, BT_SUM) !=
            BT_OK) {
      rc = BT_ERR;
      goto out;
    }
    double gnorm = sqrt(sumsq);
    double lr = bt_optim_lr(c, step, total);
    int skip = 0;
    if (!isfinite(loss) || !isfinite(gnorm)) {
      if (!strcmp(c->nan_policy, "skip")) {
        bt_log_warn("step %ld: %s is %s; skipping this update "
                    "(train.nan_policy = skip)",
                    step, isfinite(loss) ? "grad-norm" : "loss",
                    isfinite(loss) ? (isnan(gnorm) ? "NaN" : "Inf")
                                   : (isnan(loss) ? "NaN" : "Inf"));
        skip = 1;
      } else {
        bt_err_set("step %ld: %s is %s; stopping before the weights are "
                   "corrupted (train.nan_policy = stop; the last checkpoint "
                   "is intact)",
                   step, isfinite(loss) ? "grad-norm" : "loss",
                   isfinite(loss) ? (isnan(gnorm) ? "NaN" : "Inf")
                                  : (isnan(loss) ? "NaN" : "Inf"));
        *pExit = BT_EXIT_NAN;
        rc = BT_ERR;
        goto out;
      }
    }
    if (!skip) {
      float gscale = 1.0f;
      if (c->grad_clip > 0 && gnorm > c->grad_clip)
        gscale = (float)(c->grad_clip / gnorm);
      if (tr->optim.hi > tr->optim.lo)
        bt_optim_step(&tr->optim, m,
                      bt_grad_sync_grad_at(&tr->sync, tr->optim.lo), lr, c,
                      gscale, step);
      if (tr->sync.zero) {
        /* Every rank contributes its updated shard, in place (the send
         * block is the rank's own block of the receive buffer). */
        size_t S = tr->sync.shardHi - tr->sync.shardLo;
        bt_comm_set_context(tr->pComm, step, "ZeRO parameter all-gather");
        if (bt_comm_all_gather(tr->pComm, m->params + tr->sync.shardLo,
                               m->params, S, BT_F32, NULL) != BT_OK) {
          rc = BT_ERR;
          goto out;
        }
      }
    }
    bt_backend_sync(tr->be);
    bt_trace_end(pTrace);
    st.optim = bt_time_now() - tOpt;
    tr->step = step;
    tr->run.itemsSeen += (int64_t)((double)stepGlobal * itemsPerSample);
    tr->run.lossEma = step == 1 || tr->run.lossEma == 0
                          ? loss
                          : 0.9 * tr->run.lossEma + 0.1 * loss;

    /* Validation */
    double val = NAN;
    if (tr->pVal && (step % c->val_every == 0 || step == total)) {
      if (run_validation(tr, &val) != BT_OK) {
        rc = bt_err_prefix("step %ld: validation: ", step);
        goto out;
      }
      if (val < tr->run.bestVal) tr->run.bestVal = val;
    }

    /* Report */
    if (pLossLog) {
      fprintf(pLossLog, "%ld %.9g\n", step, loss);
      fflush(pLossLog);
    }
    /* Metrics go out before the checkpoint, so a crash between the two
     * cannot lose the step's line. The checkpoint's own blocking time is
     * therefore reported with the NEXT step (time/ckpt_ms). */
    double tBeforeCkpt = bt_time_now() - tStep;
    if (tr->rank == 0) {
      double itemsPerSec = (double)stepGlobal * itemsPerSample / tBeforeCkpt;
      bt_metrics_scalar(pMet, step, "train/loss", loss);
      bt_metrics_scalar(pMet, step, "train/lr", lr);
      bt_metrics_scalar(pMet, step, "train/grad_norm", gnorm);
      bt_metrics_scalar(pMet, step, isGpt ? "perf/tokens_per_s"
                                          : "perf/samples_per_s",
                        itemsPerSec);
      bt_metrics_scalar(pMet, step, "time/step_ms", 1e3 * tBeforeCkpt);
      bt_metrics_scalar(pMet, step, "time/data_ms", 1e3 * st.data);
      bt_metrics_scalar(pMet, step, "time/compute_ms", 1e3 * st.compute);
      bt_metrics_scalar(pMet, step, "time/comm_exposed_ms",
                        1e3 * st.commExposed);
      bt_metrics_scalar(pMet, step, "time/optim_ms", 1e3 * st.optim);
      bt_metrics_scalar(pMet, step, "time/ckpt_ms", 1e3 * prevCkpt);
      if (!isnan(val)) bt_metrics_scalar(pMet, step, "val/loss", val);
      bt_metrics_flush_step(pMet, step);
    }
    /* Checkpoint: poll the one in flight, start a new one when due. */
    double tCk = bt_time_now();
    bt_trace_begin(pTrace, "checkpoint", "train");
    long nDone = -1;
    if (bt_ckpt_poll(tr->pCkw, &nDone) != BT_OK &&
        handle_ckpt_error(tr) != BT_OK) {
      rc = BT_ERR;
      goto out;
    }
    if (nDone >= 0) log_ckpt_done(tr, nDone);
    int stopNow = red[RED_STOP] > 0;
    int due = (c->ckpt_every > 0 && step % c->ckpt_every == 0) ||
              step == total || stopNow;
    if (due) {
      tr->run.trainSeconds += bt_time_now() - tRunStart;
      tRunStart = bt_time_now();
      if (save_checkpoint(tr, step == total || stopNow) != BT_OK &&
          handle_ckpt_error(tr) != BT_OK) {
        rc = BT_ERR;
        goto out;
      }
    }
    bt_trace_end(pTrace);
    st.ckpt = bt_time_now() - tCk;
    bt_trace_end(pTrace); /* step */
    st.total = bt_time_now() - tStep;
    prevCkpt = st.ckpt;
    acc.data += st.data;
    acc.compute += st.compute;
    acc.commExposed += st.commExposed;
    acc.optim += st.optim;
    acc.ckpt += st.ckpt;
    acc.total += st.total;
    accSteps++;

    if (tr->rank == 0 &&
        (step % c->log_every == 0 || step == total || step == firstStep ||
         !isnan(val) || stopNow)) {
      bt_progress p;
      bt_progress_init(&p);
      double n = accSteps ? accSteps : 1;
      p.step = step;
      p.total_steps = total;
      p.loss = loss;
      p.val_loss = val;
      p.lr = lr;
      p.grad_norm = gnorm;
      p.throughput = (double)stepGlobal * itemsPerSample * n / acc.total;
      p.zUnit = isGpt ? "tok/s" : "samples/s";
      /* MFU on GPU: model FLOPs per second over the device's dense bf16
       * peak (BATON_PEAK_TFLOPS, default 989: H100 SXM). On CPU there is
       * no meaningful peak, and the field is omitted. */
      p.mfu = NAN;
      if (bt_backend_kind_of(tr->be) == BT_BACKEND_CUDA) {
        const char *zPeak = getenv("BATON_PEAK_TFLOPS");
        double peak = (zPeak ? atof(zPeak) : 989.0) * 1e12 * tr->world;
        p.mfu = bt_model_flops_per_item(m) * p.throughput / peak;
      }
      p.step_s = acc.total / n;
      p.data_s = acc.data / n;
      p.compute_s = acc.compute / n;
      p.comm_s = acc.commExposed / n;
      p.optim_s = acc.optim / n;
      p.ckpt_s = acc.ckpt / n;
      p.breakdown_pct = 0;
      p.eta_s = (double)(total - step) * acc.total / n;
      bt_progress_print(stdout, &p, ttyWidth);
      memset(&acc, 0, sizeof acc);
      accSteps = 0;
    }
    if (stopNow) {
      bt_log_info("pre-emption signal received: checkpoint at step %ld "
                  "written; exiting with code %d (run the same command to "
                  "continue)",
                  step, BT_EXIT_PREEMPTED);
      *pExit = BT_EXIT_PREEMPTED;
      goto out;
    }
  }
  if (bt_ckpt_finish(tr->pCkw) != BT_OK && handle_ckpt_error(tr) != BT_OK) {
    rc = BT_ERR;
    goto out;
  }
  if (o->zDumpParams && write_params(tr, o->zDumpParams) != BT_OK) rc = BT_ERR;
  bt_log_info("training complete: %ld steps, final loss EMA %.4f, run dir %s",
              tr->step, tr->run.lossEma, tr->zRunDir);
out:
  if (tr->rank == 0) bt_progress_end_line(stdout, ttyWidth);
  if (pLossLog) fclose(pLossLog);
  bt_metrics_close(pMet);
  bt_trace_close(pTrace);
  tr->sync.pTrace = NULL;
  return rc;
}

static void trainer_free(bt_trainer *tr) {
  if (tr->pCkw) bt_ckpt_writer_free(tr->pCkw);
  bt_optim_free(&tr->optim, tr->be);
  bt_grad_sync_free(&tr->sync);
  if (tr->be) bt_model_free(&tr->model);
  if (tr->pLoader) bt_loader_free(tr->pLoader);
  if (tr->pVal) bt_loader_free(tr->pVal);
  if (tr->be) bt_backend_free(tr->be);
  free(tr->hostStage);
  free(tr->hostStageM);
  free(tr->hostStageV);
  free(tr->zCfgText);
}

/* ---- command line ----------------------------------------------------- */

static void train_usage(FILE *f) {
  fprintf(f,
          "usage: baton train CONFIG [options]\n"
          "\n"
          "Trains the model described by CONFIG (an INI file; see "
          "docs/config.md).\n"
          "Run under mpirun for data-parallel training: one process per "
          "GPU (or CPU rank).\n"
          "\n"
          "options:\n"
          "  --set SECTION.KEY=VALUE  override a config key (repeatable)\n"
          "  --run-dir DIR            checkpoints, metrics and logs go here\n"
          "                           (default: runs/<config name>)\n"
          "  --resume auto|never|DIR  auto (default): continue from the "
          "newest valid\n"
          "                           checkpoint in the run directory, if "
          "any\n"
          "  --dump-params FILE       write the final fp32 parameters (raw) "
          "to FILE\n"
          "  --loss-log FILE          append 'step loss' lines to FILE\n"
          "  --quiet                  only errors and warnings\n"
          "  -h, --help               this help\n"
          "\n"
          "exit codes: 0 done, 1 error, 2 bad config or usage, 3 watchdog "
          "abort,\n"
          "            4 pre-empted (checkpoint written; rerun to "
          "continue), 5 NaN/Inf\n");
}

int bt_train_main(int argc, char **argv, bt_comm *pComm) {
  bt_train_opts o = {0};
  const char **azSet = calloc((size_t)argc + 1, sizeof(char *));
  if (!azSet) return BT_EXIT_ERROR;
  o.azSet = azSet;
  static const struct option aOpt[] = {
      {"set", required_argument, 0, 's'},
      {"run-dir", required_argument, 0, 'r'},
      {"resume", required_argument, 0, 'R'},
      {"dump-params", required_argument, 0, 'd'},
      {"loss-log", required_argument, 0, 'l'},
      {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", aOpt, NULL)) != -1) {
    switch (ch) {
    case 's': azSet[o.nSet++] = optarg; break;
    case 'r': o.zRunDir = optarg; break;
    case 'R': o.zResume = optarg; break;
    case 'd': o.zDumpParams = optarg; break;
    case 'l': o.zLossLog = optarg; break;
    case 'q': bt_log_set_level(0); break;
    case 'h':
      train_usage(stdout);
      free(azSet);
      return BT_EXIT_OK;
    default:
      train_usage(stderr);
      free(azSet);
      return BT_EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    if (bt_comm_rank(pComm) == 0) {
      fprintf(stderr, "baton train: expected exactly one CONFIG file\n\n");
      train_usage(stderr);
    }
    free(azSet);
    return BT_EXIT_USAGE;
  }
  o.zConfig = argv[optind];

  bt_trainer tr;
  memset(&tr, 0, sizeof tr);
  tr.pComm = pComm;
  tr.rank = bt_comm_rank(pComm);
  tr.world = bt_comm_world(pComm);
  int exitCode = BT_EXIT_OK;
  if (bt_config_load(&tr.cfg, o.zConfig, o.azSet, o.nSet) != BT_OK) {
    bt_log_error("%s", bt_err_msg());
    free(azSet);
    return BT_EXIT_USAGE;
  }
  install_signals();
  int rc = trainer_setup(&tr, &o);
  if (rc == BT_OK) {
    bt_comm_watchdog_start(pComm);
    rc = trainer_resume(&tr, o.zResume);
  }
  if (rc == BT_OK) rc = train_loop(&tr, &o, &exitCode);
  if (rc != BT_OK) {
    bt_log_error("%s", bt_err_msg());
    if (exitCode == BT_EXIT_OK) exitCode = BT_EXIT_ERROR;
    /* A failure on one rank must not leave the others waiting in a
     * collective until the watchdog fires. */
    if (tr.world > 1) bt_comm_abort(pComm, exitCode);
  }
  trainer_free(&tr);
  free(azSet);
  return exitCode;
}
