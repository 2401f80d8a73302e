/*
 * train.c: `baton train`: the data-parallel training loop.
 *
 * One optimizer step on every rank (train_step), phase by phase:
 *   step_compute     zero grads; for each micro-step (step_micro): loader
 *                    batch -> forward -> backward, scaled by 1 / global
 *                    item count of the step; on the last micro-step the
 *                    grad-ready hook launches bucket reductions during
 *                    backward; then wait for the buckets
 *   step_reduce      one small host all-reduce of [item count, host loss,
 *                    stop request]; queued on the device: grad sum of
 *                    squares, one all-reduce of [loss, sumsq]
 *   step_update      per bucket: clip (factor on the device) -> AdamW on
 *                    this rank's slice -> (ZeRO) all-gather the bucket;
 *                    then the step's ONE read-back (step_readback: loss,
 *                    grad norm) -> step_nan_policy (train.nan_policy =
 *                    skip reads back before the update instead)
 *   step_report      validation -> loss log and metrics (bt_outputs_step)
 *   step_checkpoint  poll the save in flight; start one when due (async)
 *   bt_outputs_step_end  progress line; then step_preempt if asked to stop
 * model.type = speech swaps the data source (setup_audio): the audio
 * loader over data.path (tr->pAudio; pLoader stays NULL), its micro-step
 * is step_micro_speech (bt_speech_forward on a bt_speech_batch, loss the
 * CTC mean over the step's global utterance count), its validation
 * bt_eval_speech over data.val_path (CER/WER); its (epoch, consumed)
 * state goes through the same checkpoint entry (bt_state_loader_get).
 * train_loop opens the run's outputs (outputs.h) once, runs train_step
 * until train.steps or a pre-emption, then train_finish waits for the last
 * checkpoint. trainer_setup and trainer_resume come before it,
 * bt_train_main (command line) around it all.
 *
 * Resume (resume_auto): choose the newest checkpoint that verifies, load
 * it on every rank with cross-checks (saved config keys, loader state
 * against the step), agree; on damage fall back to the next older one;
 * with checkpoints present and none usable, refuse to start from step 0
 * unless --allow-fresh-start. What was rejected is set aside, never
 * deleted (docs/checkpoints.md "Resume").
 *
 * Everything that decides the numbers (data order, initialisation, loss
 * averaging, the optimizer) depends only on the config and the global
 * sample stream, never on the world size or on timing, so a killed and
 * resumed run reproduces the uninterrupted one bit for bit on the CPU
 * backend (tests/train/).
 */
#include "base/cli.h"
#include "base/util.h"
#include "data/check.h"
#include "trainer/eval.h"
#include "trainer/init.h"
#include "trainer/outputs.h"
#include "trainer/speech_model.h"
#include "trainer/trainer.h"
#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* Start-up failures are agreed, not aborted. Every rank passes the same
 * agreement points (startup_fail_agree) with its own result; a failure
 * anywhere ends the start-up on every rank at that point, so no rank is
 * left waiting in a collective and nobody needs MPI_Abort (whose banner,
 * and Open MPI's "N more processes have sent help message", buried the
 * one line that mattered). Only the lowest failing rank prints its
 * message ([rank R@host] ...); the others stay quiet, and every rank
 * returns that rank's exit code, so mpirun exits with it after a clean
 * MPI_Finalize. A point is only safe where no rank can have failed
 * before a collective the others are in: each one below follows a stage
 * whose collectives (the data check's all-gather, the checkpoint
 * writer's agreement) every rank reaches whatever happened before. */
typedef struct startup_fail {
  int bAgreed; /* every rank knows the start-up failed: no abort */
  int bQuiet;  /* another rank reports it */
  int code;    /* the exit code every rank returns */
} startup_fail;

static int startup_fail_agree(bt_trainer *tr, int rc, int code,
                              startup_fail *pF) {
  /* lowest failing rank and its code in one number: MIN picks both */
  int64_t key = rc == BT_OK ? (int64_t)tr->world * 256
                            : (int64_t)tr->rank * 256 + (code & 255);
  if (tr->world > 1) {
    char zMine[2048]; /* base/util.c BT_ERR_MAX */
    snprintf(zMine, sizeof zMine, "%s", rc == BT_OK ? "" : bt_err_msg());
    if (bt_comm_host_allreduce(tr->pComm, &key, 1, BT_I64, BT_MIN) != BT_OK)
      return BT_ERR; /* not agreed: the caller aborts */
    if (rc != BT_OK) bt_err_set("%s", zMine);
  }
  if (key == (int64_t)tr->world * 256) return BT_OK;
  pF->bAgreed = 1;
  pF->code = (int)(key % 256);
  pF->bQuiet = key / 256 != tr->rank;
  if (rc == BT_OK)
    bt_err_set("rank %lld failed at start-up", (long long)(key / 256));
  return BT_ERR;
}

/* ---- set-up ---------------------------------------------------------- */

static int setup_run_dir(bt_trainer *tr, const bt_train_opts *o) {
  if (o->zRunDir) {
    bt_snprintf(tr->zRunDir, sizeof tr->zRunDir, "%s", o->zRunDir);
  } else {
    const char *zBase = strrchr(o->zConfig, '/');
    zBase = zBase ? zBase + 1 : o->zConfig;
    bt_snprintf(tr->zRunDir, sizeof tr->zRunDir, "runs/%.*s",
                (int)strcspn(zBase, "."), zBase);
  }
  if (tr->rank != 0) return BT_OK;
  if (bt_mkdir_p(tr->zRunDir) != BT_OK) return BT_ERR;
  /* Said as such: the lock below would otherwise report a file in the
   * way or an unwritable directory as "in use". */
  struct stat st;
  if (stat(tr->zRunDir, &st) == 0 && !S_ISDIR(st.st_mode))
    return bt_err_set("run directory %s: exists and is not a directory",
                      tr->zRunDir);
  if (access(tr->zRunDir, W_OK | X_OK) != 0)
    return bt_err_set("run directory %s: cannot write to it: %s",
                      tr->zRunDir, strerror(errno));
  /* One job per run directory: a second job would interleave its
   * checkpoints and metrics with ours. The kernel drops the lock when
   * rank 0 dies, so a killed job's lock is taken over, not obeyed. */
  char zLock[1100], zPrev[256];
  bt_snprintf(zLock, sizeof zLock, "%s/lock", tr->zRunDir);
  if (bt_lock_acquire(&tr->runLock, zLock, zPrev, sizeof zPrev) != BT_OK)
    return bt_err_prefix("run directory %s is in use: ", tr->zRunDir);
  if (zPrev[0])
    bt_log_info("run directory %s: took over the lock of a job that is no "
                "longer running (%s)", tr->zRunDir, zPrev);
  return BT_OK;
}

/* RUN/exit_status, rank 0, when a job that got as far as training ends
 * by itself (a start-up failure says so through its exit code and leaves
 * no file behind): "CODE what", e.g.
 * "4 pre-empted: checkpoint at step 138 written (ckpt-00000138)". Open
 * MPI's mpirun that itself receives SIGTERM or SIGINT exits 1 whatever the
 * ranks returned (it refuses to forward SIGTERM), so a wrapper that
 * signalled mpirun reads the job's real outcome here (docs/operations.md
 * "Exit codes"). Written only while this job holds the run directory's
 * lock; a failure costs the wrapper its hint, not the run. */
/* When training starts, the previous job's verdict goes: from then on, no
 * RUN/exit_status means this job did not end by itself (killed, aborted).
 * Not earlier: a start-up failure changes nothing in the run directory. */
static int train_clear_run_exit(const bt_trainer *tr) {
  if (tr->rank != 0) return BT_OK;
  char zExit[1100];
  bt_snprintf(zExit, sizeof zExit, "%s/exit_status", tr->zRunDir);
  if (unlink(zExit) != 0 && errno != ENOENT)
    return bt_err_set("run directory %s: cannot remove %s: %s", tr->zRunDir,
                      zExit, strerror(errno));
  return BT_OK;
}

static void train_record_run_exit(const bt_trainer *tr, int exitCode) {
  if (tr->rank != 0 || tr->runLock.fd < 0) return;
  char zPath[1100], zLine[256];
  bt_snprintf(zPath, sizeof zPath, "%s/exit_status", tr->zRunDir);
  int n;
  if (exitCode == BT_EXIT_PREEMPTED)
    n = snprintf(zLine, sizeof zLine, "%d pre-empted: checkpoint at step %ld "
                 "written (ckpt-%08ld)\n", exitCode, tr->step, tr->step);
  else if (exitCode == BT_EXIT_OK)
    n = snprintf(zLine, sizeof zLine, "0 done at step %ld\n", tr->step);
  else
    n = snprintf(zLine, sizeof zLine, "%d stopped with an error at step %ld "
                 "(see the job's log)\n", exitCode, tr->step);
  if (bt_file_write_atomic(zPath, zLine, (size_t)n) != BT_OK)
    bt_log_warn("%s", bt_err_msg());
}

/* The compute backend, and the communicator attached to it. */
static int setup_backend(bt_trainer *tr) {
  const bt_config *c = &tr->cfg;
  /* The GPU bt_comm_init bound (bt_comm_pick_device): with one visible
   * GPU per rank that is device 0, not the local rank. Nothing bound
   * (CPU, BATON_CUDA_BIND=0): the local rank, as before. */
  int dev = bt_comm_device(tr->pComm);
  if (dev < 0) dev = bt_comm_local_rank(tr->pComm);
  tr->be = bt_backend_create(c->backend, c->threads, dev);
  if (!tr->be) return BT_ERR;
  int onGpu = bt_backend_kind_of(tr->be) == BT_BACKEND_CUDA;
  if (!onGpu && c->comm == BT_COMM_NCCL)
    return bt_err_set("dist.comm = nccl needs train.backend = cuda");
  /* NCCL collectives are ordered after the backend's compute stream. */
  void *pStream = NULL;
#ifdef BATON_HAVE_CUDA
  if (onGpu) pStream = bt_cuda_stream(tr->be);
#endif
  if (bt_comm_attach_backend(tr->pComm, onGpu ? c->comm : BT_COMM_MPI,
                             pStream) != BT_OK)
    return BT_ERR;
  bt_comm_set_timeout(tr->pComm, c->watchdog_seconds);
  return BT_OK;
}

/* The start-up data check's all-gather (data/check.h). */
static int check_gather(void *pComm, const void *pSend, void *pRecv,
                        size_t n) {
  return bt_comm_host_allgather(pComm, pSend, pRecv, n);
}

/* The training loader and, with data.val_every, the validation one.
 * model.vocab_size, n_features and n_classes left at 0 come from the data;
 * a key the model does not use keeps the value it had before these keys
 * defaulted to 0 (256, 16, 4), so the config text saved in checkpoints
 * and compared on resume is unchanged for configs that never set them. */
/* model.type = speech: the audio loader over data.path (audio_loader.h),
 * batches filled to data.max_frames padded frames per rank; the model's
 * vocabulary is the file's (characters + blank). */
/* A clear error before HDF5's own when data.path is not an HDF5 file at
 * all (a manifest or WAV given by mistake). The signature sits at offset
 * 0, or 512, 1024, ... after a user block (the HDF5 format spec). */
static int audio_check_hdf5(const char *zPath) {
  static const unsigned char aSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n',
                                        0x1a, '\n'};
  FILE *f = fopen(zPath, "rb");
  if (!f)
    return bt_err_set("data.path = %s: cannot open: %s", zPath,
                      strerror(errno));
  int bFound = 0;
  unsigned char a[8];
  for (long off = 0; !bFound && off <= (1L << 30); off = off ? off * 2 : 512) {
    if (fseek(f, off, SEEK_SET) != 0 || fread(a, 1, 8, f) != 8) break;
    bFound = memcmp(a, aSig, 8) == 0;
  }
  fclose(f);
  if (bFound) return BT_OK;
  return bt_err_set("data.path = %s: not an HDF5 file (model.type = speech "
                    "reads the output of `baton prepare audio`, docs/data.md "
                    "\"Audio data\")", zPath);
}

/* The validation file of a speech run: data.val_path, in file order, with
 * the training file's vocabulary (the same ids mean the same characters,
 * or CER/WER would compare the wrong letters). */
static int setup_audio_val(bt_trainer *tr, bt_audio_loader_config *pAc) {
  const bt_config *c = &tr->cfg;
  if (!c->val_path[0])
    return bt_err_set("data.val_every = %d with model.type = speech needs "
                      "data.val_path: an HDF5 of `baton prepare audio "
                      "--vocab %s`", c->val_every, c->data_path);
  if (audio_check_hdf5(c->val_path) != BT_OK) return BT_ERR;
  int32_t *aCp = NULL;
  int n = 0;
  if (bt_audio_vocab_read(c->val_path, &aCp, &n) != BT_OK)
    return bt_err_prefix("data.val_path = %s: ", c->val_path);
  int bSame = n == tr->nVocabCp &&
              memcmp(aCp, tr->aVocabCp, (size_t)n * sizeof *aCp) == 0;
  free(aCp);
  if (!bSame)
    return bt_err_set("data.val_path = %s: its vocabulary (%d characters) "
                      "differs from data.path %s's (%d): prepare it with "
                      "`baton prepare audio --vocab %s`", c->val_path, n,
                      c->data_path, tr->nVocabCp, c->data_path);
  pAc->zPath = c->val_path;
  pAc->shuffle = 0;
  pAc->accum = 1;
  if (bt_audio_loader_open(&tr->pAudioVal, pAc) != BT_OK)
    return bt_err_prefix("data.val_path = %s: ", c->val_path);
  return BT_OK;
}

static int setup_audio(bt_trainer *tr) {
  bt_config *c = &tr->cfg;
  if (audio_check_hdf5(c->data_path) != BT_OK) return BT_ERR;
  bt_audio_loader_config ac = {
      .zPath = c->data_path,
      .maxFrames = c->max_frames,
      .window = c->sort_window,
      .accum = c->grad_accum,
      .rank = tr->rank,
      .world = tr->world,
      .seed = (uint64_t)c->seed,
      .shuffle = c->shuffle,
  };
  if (bt_audio_loader_open(&tr->pAudio, &ac) != BT_OK)
    return bt_err_prefix("data.path = %s: ", c->data_path);
  int V = bt_audio_loader_vocab(tr->pAudio);
  if (c->vocab_size && c->vocab_size != V)
    return bt_err_set("model.vocab_size = %d but %s has %d characters + the "
                      "CTC blank = %d: leave model.vocab_size at 0 to take "
                      "the file's", c->vocab_size, c->data_path, V - 1, V);
  c->vocab_size = V;
  if (bt_audio_vocab_read(c->data_path, &tr->aVocabCp, &tr->nVocabCp) !=
      BT_OK)
    return BT_ERR;
  if (c->val_every > 0 && setup_audio_val(tr, &ac) != BT_OK) return BT_ERR;
  /* Activations for the largest batch either file can give (the bound of
   * bt_audio_loader_max_batch: data.max_frames over the shortest
   * utterance). */
  int64_t maxB = bt_audio_loader_max_batch(tr->pAudio);
  if (tr->pAudioVal && bt_audio_loader_max_batch(tr->pAudioVal) > maxB)
    maxB = bt_audio_loader_max_batch(tr->pAudioVal);
  tr->maxMicro = (int)maxB;
  return BT_OK;
}

static int setup_data(bt_trainer *tr) {
  bt_config *c = &tr->cfg;
  if (c->model_type == BT_MODEL_SPEECH) return setup_audio(tr);
  int isGpt = c->model_type == BT_MODEL_GPT;
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
      .pinned = c->backend == BT_BACKEND_CUDA,
  };
  if (bt_data_check_run(&lc, c->data_check, check_gather, tr->pComm) !=
      BT_OK)
    return BT_ERR;
  /* Fault point: this rank cannot read the dataset (tests/train
   * error_once.sh: one rank's data error is reported once, by it). */
  if (bt_fault_hit("train.data_eio"))
    return bt_err_set("dataset %s: cannot read: %s (fault injection "
                      "train.data_eio)", c->data_path, strerror(EIO));
  if (bt_loader_open(&tr->pLoader, &lc) != BT_OK) return BT_ERR;
  const bt_loader *pL = tr->pLoader;
  if (!c->vocab_size) c->vocab_size = isGpt ? bt_loader_vocab(pL) : 256;
  if (!c->n_features) c->n_features = isGpt ? 16 : bt_loader_feature_dim(pL);
  if (!c->n_classes) c->n_classes = isGpt ? 4 : bt_loader_num_classes(pL);
  if (c->val_every > 0) {
    lc.zSplit = "val";
    lc.shuffle = 0;
    lc.vocab = c->vocab_size;
    lc.D = c->n_features;
    lc.nClass = c->n_classes;
    if (bt_loader_open(&tr->pVal, &lc) != BT_OK) return BT_ERR;
  }
  return BT_OK;
}

/* Model, gradient sync, optimizer, and host staging for checkpoints of a
 * non-CPU backend. */
static int setup_model(bt_trainer *tr) {
  const bt_config *c = &tr->cfg;
  /* The flat buffer is padded to a multiple of world * 16 so every
   * gradient bucket cuts into equal, 64-byte aligned ZeRO slices,
   * whatever the tensor sizes (grad_sync.h, invariant 1). */
  if (bt_model_build(&tr->model, c, tr->be, tr->maxMicro,
                     bt_grad_sync_unit(tr->world)) != BT_OK)
    return BT_ERR;
  if (bt_model_init_weights(&tr->model, (uint64_t)c->seed) != BT_OK)
    return BT_ERR;
  if (bt_grad_sync_init(&tr->sync, tr->pComm, &tr->model, c->zero, c->overlap,
                        c->bucket_mb) != BT_OK)
    return BT_ERR;
  if (bt_optim_init(&tr->optim, tr->be, tr->sync.nShard) != BT_OK)
    return BT_ERR;
  /* 4 doubles (8 floats): the step statistics (STAT_*, below) */
  tr->pStats = (double *)bt_mem_alloc(tr->be, 2 * 4, "step statistics");
  if (!tr->pStats) return BT_ERR;
  if (bt_backend_kind_of(tr->be) != BT_BACKEND_CPU) {
    size_t nMom = tr->optim.nMom;
    tr->hostStage = bt_calloc(tr->model.nFlat, sizeof(float), "host stage");
    tr->hostStageM = bt_calloc(nMom, sizeof(float), "host stage m");
    tr->hostStageV = bt_calloc(nMom, sizeof(float), "host stage v");
    if (!tr->hostStage || !tr->hostStageM || !tr->hostStageV) return BT_ERR;
  }
  if (tr->sync.zero) {
    size_t C = tr->model.nFlat / (size_t)tr->world;
    tr->hostZeroM = bt_calloc(C, sizeof(float), "ZeRO checkpoint range m");
    tr->hostZeroV = bt_calloc(C, sizeof(float), "ZeRO checkpoint range v");
    if (!tr->hostZeroM || !tr->hostZeroV) return BT_ERR;
  }
  return BT_OK;
}

static void setup_log(const bt_trainer *tr) {
  const bt_config *c = &tr->cfg;
  char zB1[32], zB2[32];
  size_t nMom = tr->optim.nMom;
  bt_log_info("baton %s: %s model, %zu parameters (%s), backend %s (%s), "
              "%d rank%s (%s), run dir %s",
              BATON_VERSION, bt_config_model_name(c->model_type),
              tr->model.nParam,
              bt_fmt_bytes(4.0 * (double)tr->model.nParam, zB1, sizeof zB1),
              bt_backend_name(tr->be),
              bt_act_dtype_name(bt_backend_act_dtype(tr->be)), tr->world, tr->world > 1 ? "s" : "",
              bt_comm_name(tr->pComm), tr->zRunDir);
  char zBatch[160];
  if (tr->pAudio)
    bt_snprintf(zBatch, sizeof zBatch,
                "batches of <= %d padded frames (data.max_frames, <= %d "
                "utterances) per rank and micro-step, %d plan batch%s/step",
                c->max_frames, tr->maxMicro, tr->world * c->grad_accum,
                tr->world * c->grad_accum > 1 ? "es" : "");
  else
    bt_snprintf(zBatch, sizeof zBatch,
                "batch %d samples/step (micro-batch <= %d per rank, %d "
                "micro-step%s)",
                c->batch_size, tr->maxMicro, c->grad_accum,
                c->grad_accum > 1 ? "s" : "");
  bt_log_info("%s, %d buckets of %.3g MB, overlap %s, ZeRO-1 %s: "
              "optimizer state %s per rank",
              zBatch, tr->sync.nBucket, c->bucket_mb,
              c->overlap ? "on" : "off", tr->sync.zero ? "on" : "off",
              bt_fmt_bytes(8.0 * (double)nMom, zB2, sizeof zB2));
}

static int trainer_setup(bt_trainer *tr, const bt_train_opts *o,
                         startup_fail *pF) {
  const bt_config *c = &tr->cfg;
  tr->run.bestVal = INFINITY;
  /* Largest per-rank micro-batch: ceil(ceil(G/A)/W). */
  int perMicro = (c->batch_size + c->grad_accum - 1) / c->grad_accum;
  tr->maxMicro = (perMicro + tr->world - 1) / tr->world;
  /* The agreement points (startup_fail_agree): after each stage. */
  const int E = BT_EXIT_ERROR;
  if (startup_fail_agree(tr, setup_run_dir(tr, o), E, pF) != BT_OK ||
      startup_fail_agree(tr, setup_backend(tr), E, pF) != BT_OK ||
      startup_fail_agree(tr, setup_data(tr), E, pF) != BT_OK ||
      startup_fail_agree(tr, setup_model(tr), E, pF) != BT_OK)
    return BT_ERR;
  tr->zCfgText = bt_config_to_text(c);
  int rc = tr->zCfgText ? startup_agreement(tr) : BT_ERR;
  if (startup_fail_agree(tr, rc, E, pF) != BT_OK) return BT_ERR;
  bt_ckpt_options co = {.zRunDir = tr->zRunDir,
                        .keep_last = c->keep_last,
                        .keep_every = c->keep_every,
                        .zstd_level = c->zstd_level,
                        .async = c->ckpt_async,
                        .shuffle = 1};
  rc = bt_ckpt_writer_create(&tr->pCkw, tr->pComm, &co);
  if (startup_fail_agree(tr, rc, E, pF) != BT_OK) return BT_ERR;
  setup_log(tr);
  return BT_OK;
}

/* ---- resume ----------------------------------------------------------- */

/* Loads checkpoint zDir into the trainer (scalars, then every item; each
 * file read is checked against its checksum). Returns BT_OK,
 * BT_STATE_CONFIG_CHANGED (the user changed a shape key: stop) or BT_ERR
 * (this checkpoint is unusable: an automatic resume falls back). */
/* The saved config text is bt_config_to_text(): one "section.key = value"
 * line per key of the table. A line naming no key is damage (a format-1
 * checkpoint has no manifest checksum to catch it), and must not become
 * the key's default and then look like a config change the user made. */
static int resume_check_saved_config(const char *zMeta, const char *zDir) {
  cJSON *o = cJSON_Parse(zMeta);
  cJSON *pCfg = o ? cJSON_GetObjectItemCaseSensitive(o, "config") : NULL;
  int rc = BT_OK, line = 0;
  const char *z = cJSON_IsString(pCfg) ? pCfg->valuestring : "";
  while (*z && rc == BT_OK) {
    size_t n = strcspn(z, "\n"), k = strcspn(z, " =");
    line++;
    int known = 0;
    for (int i = 0; i < bt_config_nkeys && !known && k < n; i++) {
      const bt_cfg_key *p = &bt_config_keys[i];
      size_t nSec = strlen(p->zSection), nName = strlen(p->zName);
      known = k == nSec + 1 + nName && !memcmp(z, p->zSection, nSec) &&
              z[nSec] == '.' && !memcmp(z + nSec + 1, p->zName, nName);
    }
    if (n > 0 && !known)
      rc = bt_err_set("%s: saved config, line %d: '%.*s' is not a config "
                      "key (the checkpoint is damaged)",
                      zDir, line, (int)(k < 64 ? k : 64), z);
    z += n + (z[n] == '\n');
  }
  cJSON_Delete(o);
  return rc;
}

/* The loader state is a function of the step: every step takes
 * train.batch_size samples (a shape key: fixed across resumes) except the
 * last of an epoch, which takes the rest. A saved state that disagrees
 * would resume the data stream somewhere else. */
static int resume_check_loader(bt_trainer *tr, const char *zDir) {
  /* Speech: a step takes world * accum plan batches, so the state is not
   * a function of the step alone once the world size changed. */
  if (tr->pAudio) return BT_OK;
  int64_t n = bt_loader_size(tr->pLoader), nB = tr->cfg.batch_size;
  if (n <= 0 || nB <= 0) return BT_OK;
  int64_t nPerEpoch = (n + nB - 1) / nB;
  bt_loader_state want = {tr->step / nPerEpoch, (tr->step % nPerEpoch) * nB};
  bt_loader_state got = bt_loader_get_state(tr->pLoader);
  if (got.epoch == want.epoch && got.consumed == want.consumed) return BT_OK;
  return bt_err_set("%s: loader state (epoch %lld, consumed %lld) does not "
                    "follow from step %ld at %lld samples per step over %lld "
                    "(expected epoch %lld, consumed %lld): the checkpoint "
                    "is damaged, or the dataset changed",
                    zDir, (long long)got.epoch, (long long)got.consumed,
                    tr->step, (long long)nB, (long long)n,
                    (long long)want.epoch, (long long)want.consumed);
}

static int resume_load(bt_trainer *tr, const char *zDir, int *pWorld) {
  bt_ckpt *pC = NULL;
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK) return BT_ERR;
  if (resume_check_saved_config(bt_ckpt_meta_json(pC), zDir) != BT_OK) {
    bt_ckpt_close(pC);
    return BT_ERR;
  }
  /* A failed earlier candidate may have set some of these. */
  tr->run = (bt_running){.bestVal = INFINITY};
  int rc = bt_state_apply_meta(tr, bt_ckpt_meta_json(pC), zDir);
  if (rc == BT_OK) rc = resume_check_loader(tr, zDir);
  if (rc == BT_OK) {
    bt_ckpt_item aItem[8];
    int nItem = bt_state_items(tr, aItem, 8, 0);
    rc = nItem < 0 ? BT_ERR : bt_ckpt_load_items(pC, aItem, nItem);
  }
  *pWorld = bt_ckpt_world(pC);
  bt_ckpt_close(pC);
  return rc;
}

/* Every rank's load result, worst first: a config change (stop) beats
 * damage on any rank (fall back) beats success. */
static int resume_agree(bt_trainer *tr, int rc) {
  int v = rc == BT_OK ? 0 : rc == BT_STATE_CONFIG_CHANGED ? 2 : 1;
  if (tr->world > 1 &&
      bt_comm_host_allreduce(tr->pComm, &v, 1, BT_I32, BT_MAX) != BT_OK)
    return BT_ERR;
  return v;
}

/* Back to the state of a new run after failed loads overwrote part of it:
 * the same seeded initialisation, zero moments, the stream's start. */
static int resume_reset(bt_trainer *tr) {
  tr->step = 0;
  tr->run = (bt_running){.bestVal = INFINITY};
  bt_loader_state ls = {0, 0};
  if (bt_model_init_weights(&tr->model, (uint64_t)tr->cfg.seed) != BT_OK ||
      bt_state_loader_seek(tr, &ls) != BT_OK)
    return BT_ERR;
  size_t nMom = tr->optim.nMom;
  if (nMom) {
    bt_mem_zero(tr->be, tr->optim.m, nMom);
    bt_mem_zero(tr->be, tr->optim.v, nMom);
  }
  return BT_OK;
}

/* Rank 0: every ckpt-* newer than the one resumed from (all of them for
 * a fresh start) was rejected; set aside, not deleted (ckpt.h). */
static int resume_set_aside(bt_trainer *tr, long keepStep) {
  if (tr->rank != 0) return BT_OK;
  return bt_ckpt_set_aside_newer(tr->zRunDir, keepStep);
}

/* --resume auto: the newest checkpoint that verifies (rank 0 looks and
 * broadcasts, so every rank resumes from the same one, read once); if it
 * fails while loading on any rank, the next older one, and so on. When
 * checkpoints exist and none is usable the run stops, naming each and
 * why, unless --allow-fresh-start: starting again from step 0 silently
 * would throw the run away. Whatever was rejected is set aside, never
 * deleted. */
static int resume_auto(bt_trainer *tr, const bt_train_opts *o) {
  char zDir[1200], zWhy[4096], zAll[6144] = "";
  long before = -1;
  int bLoaded = 0;
  for (;;) {
    long step = -1;
    int rc = bt_ckpt_find_before_all(tr->pComm, tr->zRunDir, before, zDir,
                                     sizeof zDir, &step, zWhy, sizeof zWhy);
    if (rc == BT_ERR) return BT_ERR;
    if (zWhy[0]) {
      size_t at = strlen(zAll);
      snprintf(zAll + at, sizeof zAll - at, "%s%s", at ? "; " : "", zWhy);
    }
    if (rc != 0) { /* no (more) usable checkpoint */
      if (!zAll[0]) return BT_OK; /* a new run */
      if (!o->bAllowFresh)
        return bt_err_set("no checkpoint in %s is usable (%s); refusing to "
                          "start again from step 0, which would discard the "
                          "run: repair or move them, or rerun with "
                          "--allow-fresh-start (they are kept, renamed "
                          "rejected-ckpt-*) or --resume never",
                          tr->zRunDir, zAll);
      bt_log_warn("no checkpoint in %s is usable; starting from step 0 "
                  "(--allow-fresh-start)", tr->zRunDir);
      if (bLoaded && resume_reset(tr) != BT_OK) return BT_ERR;
      return resume_set_aside(tr, -1);
    }
    double t0 = bt_time_now();
    int world = 0;
    rc = resume_load(tr, zDir, &world);
    char zErr[2048];
    snprintf(zErr, sizeof zErr, "%s", rc != BT_OK ? bt_err_msg() : "");
    int v = resume_agree(tr, rc);
    bLoaded = 1;
    if (v < 0) return BT_ERR;
    if (v == 0) {
      if (bt_state_commit_load(tr) != BT_OK) return BT_ERR;
      bt_log_info("resumed from %s at step %ld (saved by %d rank%s) in "
                  "%.2f s",
                  zDir, tr->step, world, world > 1 ? "s" : "",
                  bt_time_now() - t0);
      return resume_set_aside(tr, tr->step);
    }
    if (v == 2) {
      if (rc != BT_STATE_CONFIG_CHANGED)
        bt_err_set("another rank found the config changed since %s", zDir);
      return bt_err_prefix("resuming from %s: ", zDir);
    }
    /* Damage that only loading showed (a decoded-data checksum, a loader
     * state the data does not have...), on this rank or another. */
    const char *zName = strrchr(zDir, '/') ? strrchr(zDir, '/') + 1 : zDir;
    if (rc != BT_OK)
      bt_log_warn("checkpoint %s failed while loading: %s; falling back to "
                  "an older one", zDir, zErr);
    size_t at = strlen(zAll);
    snprintf(zAll + at, sizeof zAll - at, "%s%s: %s", at ? "; " : "", zName,
             rc != BT_OK ? zErr : "failed while loading on another rank");
    before = step;
  }
}

static int trainer_resume(bt_trainer *tr, const bt_train_opts *o) {
  if (o->eResume == BT_RESUME_NEVER) return BT_OK;
  if (o->eResume == BT_RESUME_AUTO) return resume_auto(tr, o);
  /* --resume DIR: exactly that checkpoint, no fallback. */
  const char *zDir = o->zResumeDir;
  double t0 = bt_time_now();
  int world = 0;
  if (resume_load(tr, zDir, &world) != BT_OK)
    return bt_err_prefix("resuming from %s: ", zDir);
  if (bt_state_commit_load(tr) != BT_OK)
    return bt_err_prefix("resuming from %s: ", zDir);
  bt_log_info("resumed from %s at step %ld (saved by %d rank%s) in %.2f s",
              zDir, tr->step, world, world > 1 ? "s" : "",
              bt_time_now() - t0);
  return BT_OK;
}

/* ---- the step --------------------------------------------------------- */

/* The loop's state across steps (train_loop). */
typedef struct loop_ctx {
  bt_trainer *tr;
  bt_outputs out;
  double itemsPerSample; /* tokens per sample (GPT: context), MLP: 1 */
  double tRunStart;      /* training time since then is not yet counted in
                            tr->run.trainSeconds (added at checkpoints) */
  int bStopped;          /* pre-empted: checkpoint written, leave the loop */
  int bEarlyStop;        /* train.early_stop: final checkpoint written */
  int bFinalSaveFailed;  /* the checkpoint of the last step (or of a
                            pre-emption) failed under on_error = continue */
  int *pExit;            /* the process's exit code, for NaN and pre-emption */
  double rankBusy, rankWait; /* this rank's seconds since the last gather */
  int nRankSteps;            /* (step_gather_ranks) and the steps summed */
} loop_ctx;

/* One step's working values, passed from phase to phase (train_step). */
typedef struct step_ctx {
  long step;          /* the step being run: tr->step + 1 */
  int injectNan;      /* fault point train.nan: poison this step's loss */
  int saveBest;       /* new lowest val loss with checkpoint.keep_best */
  int earlyStop;      /* train.early_stop reached: this is the last step */
  int skip;           /* train.nan_policy = skip hit: no update */
  int outputStop;     /* some rank's output failed: checkpoint, exit 1 */
  double tStart;      /* bt_time_now() at the start of the step */
  double tOptStart;   /* ... at the start of step_reduce */
  double lossSum;     /* this rank's loss sum read on the host (speech,
                         the train.nan fault), then the global sum */
  double count;       /* this rank's item count, then the global count */
  int bRead;          /* the step's statistics were read back */
  int64_t nGlobal;    /* samples in the step over all ranks */
  bt_step_report r;   /* what the step reports (outputs.h) */
} step_ctx;

/* Host all-reduce of the step's scalars. */
enum { RED_LOSS, RED_COUNT, RED_STOP, RED_OUTPUT_STOP, RED_N };
/* The step's statistics in backend memory (tr->pStats, doubles): the
 * device's loss sum and gradient sum of squares, all-reduced on the data
 * plane and read back once per step (step_readback). LOSS and SUMSQ are
 * adjacent so that one all-reduce covers both under ZeRO-1. */
enum { STAT_LOSS, STAT_SUMSQ, STAT_N };
_Static_assert(STAT_N <= 4, "tr->pStats holds 4 doubles (setup_model)");

/* The validation pass (eval.h: the same numbers as `baton eval`) over
 * the first data.val_samples samples of the val split (0: all of it). */
static int run_validation(bt_trainer *tr, bt_eval_result *pRes) {
  bt_config *c = &tr->cfg;
  bt_comm_set_context(tr->pComm, tr->step, "validation");
  if (tr->pAudioVal)
    return bt_eval_speech(&tr->model, tr->pAudioVal, tr->pComm, tr->world,
                          tr->aVocabCp, tr->nVocabCp, pRes);
  return bt_eval_pass(&tr->model, tr->pVal, tr->pComm, c->val_samples,
                      tr->maxMicro * tr->world, pRes);
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
  if (nItem < 0) return BT_ERR;
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
  if (tr->cfg.ckpt_on_error == BT_CKPT_ON_ERROR_CONTINUE) {
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

/* Fault knob of the straggler test: BATON_FAULT_SLOW="R:MS" makes rank R
 * sleep MS milliseconds in every micro-step's compute (a slow GPU or a
 * throttled CPU, as the other ranks see it). Read once. */
static void fault_slow_rank(int rank) {
  static int s_ms = -1;
  if (s_ms < 0) {
    const char *z = getenv("BATON_FAULT_SLOW");
    int r = -1, ms = 0;
    s_ms = z && sscanf(z, "%d:%d", &r, &ms) == 2 && r == rank && ms > 0 ? ms
                                                                      : 0;
  }
  if (s_ms > 0) {
    struct timespec ts = {s_ms / 1000, (long)(s_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

/* Test-only knob of the shrink test (tests/multinode/shrink.sh,
 * docs/operations.md): BATON_DUMP_SAMPLES=DIR makes every rank append
 * "step epoch index" for each sample it consumes to
 * DIR/samples.s<S>.w<W>.r<R>.txt (S: the step this process resumed from,
 * W: the world size, R: the rank), so a test can check across restarts on
 * different world sizes that every sample was seen once per epoch. Read
 * once; flushed every micro-step so that a killed rank loses nothing it
 * trained on. */
static int debug_dump_samples(const bt_trainer *tr, long step,
                              const bt_batch *b) {
  static FILE *s_pFile;
  static int s_bOff;
  if (s_bOff) return BT_OK;
  if (!s_pFile) {
    const char *zDir = getenv("BATON_DUMP_SAMPLES");
    if (!zDir || !*zDir) {
      s_bOff = 1;
      return BT_OK;
    }
    char zPath[4096];
    bt_snprintf(zPath, sizeof zPath, "%s/samples.s%ld.w%d.r%d.txt", zDir,
                step - 1, tr->world, tr->rank);
    s_pFile = fopen(zPath, "a");
    if (!s_pFile)
      return bt_err_set("BATON_DUMP_SAMPLES: cannot open %s: %s", zPath,
                        strerror(errno));
  }
  for (int i = 0; i < b->n; i++)
    fprintf(s_pFile, "%ld %lld %lld\n", step, (long long)b->epoch,
            (long long)b->index[i]);
  fflush(s_pFile);
  return BT_OK;
}

/* The part of a micro-step after a forward that computed rows (token or
 * speech): its loss into the step's sums, then the backward, which hands
 * the last micro-step's gradient buckets to the all-reduce as they become
 * final. */
static void micro_backward(loop_ctx *L, step_ctx *s, double sum, int64_t n,
                           double scale, int last) {
  bt_trainer *tr = L->tr;
  bt_trace *pTrace = L->out.pTrace;
  bt_trace_end(pTrace); /* the forward's span */
  s->lossSum += sum;
  s->count += (double)n;
  bt_comm_set_context(tr->pComm, s->step, "backward");
  bt_trace_begin(pTrace, "backward", "train");
  bt_model_backward(&tr->model, (float)scale,
                    last ? bt_grad_sync_ready : NULL, &tr->sync);
  bt_trace_end(pTrace);
}

/* One micro-batch: data, forward, backward. On the last micro-step the
 * grad-ready hook launches bucket reductions during backward. */
static int step_micro_speech(loop_ctx *L, step_ctx *s, int micro);

static int step_micro(loop_ctx *L, step_ctx *s, int micro) {
  bt_trainer *tr = L->tr;
  if (tr->pAudio) return step_micro_speech(L, s, micro);
  bt_model *m = &tr->model;
  bt_trace *pTrace = L->out.pTrace;
  bt_comm_set_context(tr->pComm, s->step, "data");
  bt_trace_begin(pTrace, "data", "train");
  bt_batch b;
  if (bt_loader_next(tr->pLoader, &b) != BT_OK)
    return bt_err_prefix("step %ld: ", s->step);
  bt_trace_end(pTrace);
  if (debug_dump_samples(tr, s->step, &b) != BT_OK) return BT_ERR;
  s->r.t.data += b.wait_seconds;
  s->nGlobal = b.step_global_n;
  double scale = 1.0 / ((double)b.step_global_n * L->itemsPerSample);
  int last = micro == tr->cfg.grad_accum - 1;
  if (last) bt_grad_sync_begin(&tr->sync, s->step);
  double tc = bt_time_now();
  fault_slow_rank(tr->rank);
  if (b.n > 0) {
    bt_comm_set_context(tr->pComm, s->step, "forward");
    bt_trace_begin(pTrace, "forward", "train");
    double sum = 0;
    int64_t n = 0;
    if (bt_model_forward_train(m, b.n, b.inputs, b.x, b.targets,
                               (float)scale, &sum, &n) != BT_OK)
      return bt_err_prefix("step %ld, micro-step %d: ", s->step, micro);
    micro_backward(L, s, sum, n, scale, last);
  } else if (last) {
    bt_grad_sync_ready(&tr->sync, 0); /* nothing computed: all final */
  }
  s->r.t.compute += bt_time_now() - tc;
  return BT_OK;
}

/* step_micro for model.type = speech: one audio batch. The loss is
 * torch's CTC 'mean' over the step's GLOBAL utterance count (the
 * loader's step_global_B, the same on every rank without a collective),
 * so the gradient does not depend on the world size or accumulation. */
static int step_micro_speech(loop_ctx *L, step_ctx *s, int micro) {
  bt_trainer *tr = L->tr;
  bt_model *m = &tr->model;
  bt_trace *pTrace = L->out.pTrace;
  bt_comm_set_context(tr->pComm, s->step, "data");
  bt_trace_begin(pTrace, "data", "train");
  double td = bt_time_now();
  bt_speech_batch b;
  if (bt_audio_loader_next(tr->pAudio, &b) != BT_OK)
    return bt_err_prefix("step %ld: ", s->step);
  bt_trace_end(pTrace);
  s->r.t.data += bt_time_now() - td;
  s->nGlobal = b.step_global_B;
  double scale = b.step_global_B > 0 ? 1.0 / (double)b.step_global_B : 0.0;
  int last = micro == tr->cfg.grad_accum - 1;
  if (last) bt_grad_sync_begin(&tr->sync, s->step);
  double tc = bt_time_now();
  if (b.B > 0) {
    bt_comm_set_context(tr->pComm, s->step, "forward");
    bt_trace_begin(pTrace, "forward", "train");
    double sum = 0;
    int64_t n = 0;
    if (bt_speech_forward(m, &b, &sum, &n) != BT_OK)
      return bt_err_prefix("step %ld, micro-step %d: ", s->step, micro);
    micro_backward(L, s, sum, n, scale, last);
  } else if (last) {
    bt_grad_sync_ready(&tr->sync, 0); /* nothing computed: all final */
  }
  s->r.t.compute += bt_time_now() - tc;
  return BT_OK;
}

/* Every micro-step, then the wait for the gradient buckets. The loss sum
 * of GPT and MLP forwards accumulates in tr->pStats (model.h pLossAcc). */
static int step_compute(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  bt_mem_zero(tr->be, tr->model.grads, tr->model.nFlat);
  bt_mem_zero(tr->be, (float *)tr->pStats, 2 * STAT_N);
  tr->model.pLossAcc = tr->pStats + STAT_LOSS;
  int rc = BT_OK;
  for (int micro = 0; micro < tr->cfg.grad_accum && rc == BT_OK; micro++)
    rc = step_micro(L, s, micro);
  tr->model.pLossAcc = NULL; /* validation reads its losses itself */
  if (rc != BT_OK) return BT_ERR;
  /* MPI reduces host memory, which must hold backward's results; NCCL
   * orders its stream after the compute stream instead (comm.h). */
  if (strcmp(bt_comm_name(tr->pComm), "nccl") != 0) bt_backend_sync(tr->be);
  if (bt_grad_sync_finish(&tr->sync) != BT_OK)
    return bt_err_prefix("step %ld: gradient reduction: ", s->step);
  s->r.t.commExposed = tr->sync.exposedSeconds;
  s->r.items = (double)s->nGlobal * L->itemsPerSample;
  return BT_OK;
}

/* train.nan_policy on a NaN/Inf loss or gradient norm: skip the update,
 * or stop with BT_EXIT_NAN before the weights are corrupted. */
static int step_nan_policy(loop_ctx *L, step_ctx *s) {
  double loss = s->r.loss, gnorm = s->r.gradNorm;
  if (isfinite(loss) && isfinite(gnorm)) return BT_OK;
  const char *zWhat = isfinite(loss) ? "grad-norm" : "loss";
  double bad = isfinite(loss) ? gnorm : loss;
  const char *zBad = isnan(bad) ? "NaN" : "Inf";
  if (L->tr->cfg.nan_policy == BT_NAN_POLICY_SKIP) {
    bt_log_warn("step %ld: %s is %s; skipping this update "
                "(train.nan_policy = skip)",
                s->step, zWhat, zBad);
    s->skip = 1;
    return BT_OK;
  }
  bt_err_set("step %ld: %s is %s; stopping before the weights are "
             "saved (train.nan_policy = stop; the last checkpoint is "
             "intact)",
             s->step, zWhat, zBad);
  *L->pExit = BT_EXIT_NAN;
  return BT_ERR;
}

/* The step's one read-back (issue 12 item 4): the statistics struct, after
 * everything of the step is queued; it waits for the device, and so also
 * ends the step's work on it. Then loss and gradient norm on the host. */
static void step_readback(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  if (s->bRead) return;
  double a[STAT_N];
  bt_comm_set_context(tr->pComm, s->step, "step statistics read-back");
  bt_mem_to_host(tr->be, (float *)a, (const float *)tr->pStats, 2 * STAT_N);
  s->bRead = 1;
  s->r.loss = s->count > 0 ? (s->lossSum + a[STAT_LOSS]) / s->count : NAN;
  s->r.gradNorm = sqrt(a[STAT_SUMSQ]);
}

/* One small host all-reduce of what the host knows (count, the host part
 * of the loss, whether any rank was asked to stop); then, queued on the
 * device: the gradient's sum of squares over this rank's slices and one
 * data-plane all-reduce of the device's statistics. With
 * train.nan_policy = skip the update depends on them, so they are read
 * back here; otherwise after the update is queued (step_update). */
static int step_reduce(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  bt_model *m = &tr->model;
  s->tOptStart = bt_time_now();
  bt_comm_set_context(tr->pComm, s->step, "loss all-reduce");
  if (s->injectNan) s->lossSum = NAN;
  double red[RED_N] = {s->lossSum, s->count, g_stopRequested ? 1.0 : 0.0,
                       bt_outputs_stop_requested(&L->out) ? 1.0 : 0.0};
  if (bt_comm_host_allreduce(tr->pComm, red, RED_N, BT_F64, BT_SUM) != BT_OK)
    return BT_ERR;
  s->lossSum = red[RED_LOSS];
  s->count = red[RED_COUNT];
  /* a failed output under checkpoint.on_error = stop (outputs.h) stops
   * the run like a pre-emption, with its own exit code */
  s->outputStop = red[RED_OUTPUT_STOP] > 0;
  s->r.stopNow = red[RED_STOP] > 0 || s->outputStop;

  bt_comm_set_context(tr->pComm, s->step, "optimizer");
  bt_trace_begin(L->out.pTrace, "optimizer", "train");
  /* Plain: one sum over every real parameter (every rank holds them all
   * reduced); ZeRO: over this rank's slice of each bucket, summed over
   * ranks below. */
  double *pSumsq = tr->pStats + STAT_SUMSQ;
  if (!tr->sync.zero) {
    bt_op_sumsq_acc(tr->be, pSumsq, m->grads, m->nParam);
  } else {
    for (int b = 0; b < tr->sync.nBucket; b++) {
      const bt_bucket *pB = &tr->sync.aBucket[b];
      size_t hi = pB->sliceHi < m->nParam ? pB->sliceHi : m->nParam;
      if (hi > pB->sliceLo)
        bt_op_sumsq_acc(tr->be, pSumsq, m->grads + pB->sliceLo,
                        hi - pB->sliceLo);
    }
  }
  if (tr->world > 1) {
    bt_comm_req *pReq = NULL;
    size_t n = tr->sync.zero ? 2 : 1; /* plain: the norm is already global */
    if (bt_comm_allreduce(tr->pComm, tr->pStats + STAT_LOSS, n, BT_F64,
                          BT_SUM, &pReq) != BT_OK ||
        bt_comm_wait_stream(tr->pComm, pReq) != BT_OK)
      return bt_err_prefix("step %ld: statistics all-reduce: ", s->step);
  }
  s->r.lr = bt_optim_lr(&tr->cfg, s->step, tr->cfg.steps);
  if (tr->cfg.nan_policy != BT_NAN_POLICY_SKIP) return BT_OK;
  step_readback(L, s);
  return step_nan_policy(L, s);
}

/* Bucket by bucket, in the order backward finished them: clip (the factor
 * computed on the device from the global norm) and AdamW on this rank's
 * slice, then (ZeRO) the bucket's in-place all-gather, so the next
 * bucket's update overlaps this bucket's gather; then the read-back, the
 * NaN policy, and the step counts as done (tr->step and the running
 * metrics move on). */
static int step_update(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  bt_model *m = &tr->model;
  const bt_config *c = &tr->cfg;
  if (!s->skip) {
    bt_grad_sync *pS = &tr->sync;
    for (int b = 0; b < pS->nBucket; b++) {
      const bt_bucket *pB = &pS->aBucket[b];
      if (c->grad_clip > 0)
        bt_op_clip_grads(tr->be, m->grads + pB->sliceLo,
                         pB->sliceHi - pB->sliceLo, tr->pStats + STAT_SUMSQ,
                         c->grad_clip);
      bt_optim_step_range(&tr->optim, m, pB->sliceLo, pB->sliceHi, pB->momOff,
                          s->r.lr, c, 1.0f, s->step);
      if (bt_grad_sync_gather_launch(pS, b) != BT_OK) return BT_ERR;
    }
    if (bt_grad_sync_gather_wait(pS) != BT_OK) return BT_ERR;
    /* bf16: the working copy of the updated fp32 master (model.h). */
    bt_model_refresh_work(m);
  }
  step_readback(L, s);
  bt_trace_end(L->out.pTrace); /* optimizer */
  s->r.t.optim = bt_time_now() - s->tOptStart;
  /* train.nan_policy = stop: the update is in memory but is never saved
   * (the run ends with BT_EXIT_NAN before any checkpoint). */
  if (!s->skip && step_nan_policy(L, s) != BT_OK) return BT_ERR;
  tr->step = s->step;
  tr->run.itemsSeen += (int64_t)s->r.items;
  tr->run.lossEma = s->step == 1 || tr->run.lossEma == 0
                        ? s->r.loss
                        : 0.9 * tr->run.lossEma + 0.1 * s->r.loss;
  return BT_OK;
}

/* After a validation: the val line, the best-so-far and the count of
 * validations without improvement (both checkpointed: state.c), a save
 * of the new best (checkpoint.keep_best) and early stopping
 * (train.early_stop). Every rank sees the same reduced loss, so every
 * rank takes the same decisions. */
static void step_val_progress(loop_ctx *L, step_ctx *s,
                              const bt_eval_result *pEv) {
  bt_trainer *tr = L->tr;
  const bt_config *c = &tr->cfg;
  int improved = pEv->loss < tr->run.bestVal;
  char zWer[48] = "";
  if (!isnan(pEv->wer)) bt_snprintf(zWer, sizeof zWer, ", wer = %.6f", pEv->wer);
  if (tr->rank == 0)
    bt_log_info("validation at step %ld: loss = %.6f, %s = %.6f%s over %.0f "
                "%s%s",
                s->step, pEv->loss, bt_eval_metric_name(&tr->model),
                pEv->metric, zWer, pEv->count,
                tr->model.eKind == BT_MODEL_GPT      ? "tokens"
                : tr->model.eKind == BT_MODEL_SPEECH ? "utterances"
                                                     : "samples",
                improved ? " (best so far)" : "");
  if (improved) {
    tr->run.bestVal = pEv->loss;
    tr->run.nNoImprove = 0;
    if (c->keep_best) s->saveBest = 1;
    return;
  }
  tr->run.nNoImprove++;
  if (c->early_stop > 0 && tr->run.nNoImprove >= c->early_stop) {
    s->earlyStop = 1;
    bt_log_info("early stopping at step %ld: %d validations without a "
                "lower loss than %.6f (train.early_stop = %d); writing the "
                "final checkpoint",
                s->step, tr->run.nNoImprove, tr->run.bestVal, c->early_stop);
  }
}

/* Straggler check (outputs.h bt_outputs_ranks): every rank sums its busy
 * and blocked time per step; at log steps one host all-gather of a few
 * bytes per rank carries the means and the host to every rank. The
 * condition depends on the step only, so every rank calls the collective
 * at the same steps. */
static int step_gather_ranks(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  L->rankBusy += s->r.t.data + s->r.t.compute;
  L->rankWait += s->r.t.commExposed;
  L->nRankSteps++;
  if (tr->world < 2 || tr->cfg.straggler_factor <= 0 ||
      s->step % tr->cfg.log_every != 0)
    return BT_OK;
  bt_rank_times mine = {.busy = L->rankBusy / L->nRankSteps,
                        .wait = L->rankWait / L->nRankSteps};
  bt_snprintf(mine.zHost, sizeof mine.zHost, "%.47s", bt_log_host());
  bt_comm_set_context(tr->pComm, s->step, "link ping");
  if (bt_comm_host_ping(tr->pComm, &mine.ping) != BT_OK)
    return bt_err_prefix("step %ld: ", s->step);
  bt_rank_times *aAll = malloc((size_t)tr->world * sizeof *aAll);
  if (!aAll) return bt_err_set("step %ld: out of memory", s->step);
  bt_comm_set_context(tr->pComm, s->step, "step-time all-gather");
  int rc = bt_comm_host_allgather(tr->pComm, &mine, aAll, sizeof mine);
  if (rc == BT_OK) bt_outputs_ranks(&L->out, s->step, aAll);
  free(aAll);
  L->rankBusy = L->rankWait = 0;
  L->nRankSteps = 0;
  return rc;
}

/* Validation when due, then the step's loss line and metrics, which go
 * out before the checkpoint (outputs.h, invariant 3). */
static int step_report(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  const bt_config *c = &tr->cfg;
  s->r.val = s->r.valMetric = NAN;
  s->r.padFraction =
      tr->pAudio ? bt_audio_loader_pad_fraction(tr->pAudio) : NAN;
  s->r.valWer = NAN;
  if ((tr->pVal || tr->pAudioVal) &&
      (s->step % c->val_every == 0 || s->step == c->steps)) {
    bt_eval_result ev;
    if (run_validation(tr, &ev) != BT_OK)
      return bt_err_prefix("step %ld: validation: ", s->step);
    s->r.val = ev.loss;
    s->r.valMetric = ev.metric;
    s->r.valWer = ev.wer;
    step_val_progress(L, s, &ev);
  }
  s->r.secondsToReport = bt_time_now() - s->tStart;
  bt_outputs_step(&L->out, &s->r);
  return BT_OK;
}

/* Polls the checkpoint in flight and starts one when due: every
 * checkpoint.every steps, and waited for at the last step and on
 * pre-emption, when the process is about to exit. */
static int step_checkpoint(loop_ctx *L, step_ctx *s) {
  bt_trainer *tr = L->tr;
  const bt_config *c = &tr->cfg;
  double tCk = bt_time_now();
  bt_trace_begin(L->out.pTrace, "checkpoint", "train");
  long nDone = -1;
  if (bt_ckpt_poll(tr->pCkw, &nDone) != BT_OK &&
      handle_ckpt_error(tr) != BT_OK)
    return BT_ERR;
  if (nDone >= 0) log_ckpt_done(tr, nDone);
  int last = s->step == c->steps || s->r.stopNow || s->earlyStop;
  if (s->saveBest) bt_ckpt_writer_mark_best(tr->pCkw);
  if ((c->ckpt_every > 0 && s->step % c->ckpt_every == 0) || last ||
      s->saveBest) {
    double now = bt_time_now();
    tr->run.trainSeconds += now - L->tRunStart;
    L->tRunStart = now;
    if (save_checkpoint(tr, last) != BT_OK) {
      if (handle_ckpt_error(tr) != BT_OK) return BT_ERR;
      /* on_error = continue keeps training, but the run cannot end as
       * complete (or pre-empted, "checkpoint written") without it. */
      if (last) L->bFinalSaveFailed = 1;
    }
  }
  bt_trace_end(L->out.pTrace);
  s->r.t.ckpt = bt_time_now() - tCk;
  return BT_OK;
}

/* A pre-emption signal reached some rank: the checkpoint of this step is
 * written (step_checkpoint waited for it); every rank leaves. */
static void step_preempt(loop_ctx *L, const step_ctx *s) {
  if (s->outputStop) {
    /* rank 0 only: the failing rank has said what failed */
    if (L->tr->rank == 0)
      bt_log_error("stopped after an output write failure (see above; "
                   "checkpoint.on_error = stop): checkpoint at step %ld "
                   "written; exiting with code %d (free space, then run "
                   "the same command to continue)",
                   s->step, BT_EXIT_ERROR);
    *L->pExit = BT_EXIT_ERROR;
    L->bStopped = 1;
    return;
  }
  bt_log_info("pre-emption signal received: checkpoint at step %ld "
              "written; exiting with code %d (run the same command to "
              "continue)",
              s->step, BT_EXIT_PREEMPTED);
  *L->pExit = BT_EXIT_PREEMPTED;
  L->bStopped = 1;
}

static int train_step(loop_ctx *L) {
  step_ctx s = {.step = L->tr->step + 1, .tStart = bt_time_now()};
  s.r.step = s.step; /* the loss log, metrics and progress line number it */
  /* Fault points of the crash, hang, pre-emption and NaN tests
   * (BATON_FAULT, util.h): the Nth step of this process. */
  if (bt_fault_hit("train.step")) raise(SIGKILL);
  if (bt_fault_hit("train.stop")) raise(SIGSTOP);
  if (bt_fault_hit("train.sigterm")) raise(SIGTERM);
  s.injectNan = bt_fault_hit("train.nan");
  bt_trace_begin(L->out.pTrace, "step", "train");
  if (step_compute(L, &s) != BT_OK || step_reduce(L, &s) != BT_OK ||
      step_update(L, &s) != BT_OK || step_gather_ranks(L, &s) != BT_OK ||
      step_report(L, &s) != BT_OK ||
      step_checkpoint(L, &s) != BT_OK)
    return BT_ERR;
  bt_trace_end(L->out.pTrace); /* step */
  s.r.t.total = bt_time_now() - s.tStart;
  bt_outputs_step_end(&L->out, &s.r);
  if (s.r.stopNow && L->bFinalSaveFailed)
    return bt_err_set("pre-emption signal received but the checkpoint at "
                      "step %ld could not be written (see above); exiting "
                      "with an error, not as pre-empted: a rerun resumes "
                      "from an older checkpoint",
                      s.step);
  if (s.r.stopNow) step_preempt(L, &s);
  else if (s.earlyStop) L->bEarlyStop = 1;
  return BT_OK;
}

/* After the last step: the final checkpoint on disk, the parameters
 * dumped for the tests that ask. */
static int train_finish(loop_ctx *L, const bt_train_opts *o) {
  bt_trainer *tr = L->tr;
  if (bt_ckpt_finish(tr->pCkw) != BT_OK) {
    if (handle_ckpt_error(tr) != BT_OK) return BT_ERR;
    L->bFinalSaveFailed = 1;
  }
  int rc = BT_OK;
  if (o->zDumpParams && write_params(tr, o->zDumpParams) != BT_OK) rc = BT_ERR;
  /* an output of this rank failed at the last step, too late to stop
   * early (checkpoint.on_error = stop): the run is not complete on disk */
  if (bt_outputs_stop_requested(&L->out)) *L->pExit = BT_EXIT_ERROR;
  if (L->bFinalSaveFailed)
    return bt_err_set("trained %ld steps but the final checkpoint could not "
                      "be saved (checkpoint.on_error = continue; see the "
                      "error above): the run is not complete on disk, a "
                      "rerun resumes from the newest intact checkpoint",
                      tr->step);
  if (L->bEarlyStop)
    bt_log_info("training stopped early (train.early_stop) at step %ld of "
                "%d: best validation loss %.6f, final loss EMA %.4f, run "
                "dir %s",
                tr->step, tr->cfg.steps, tr->run.bestVal, tr->run.lossEma,
                tr->zRunDir);
  else
    bt_log_info("training complete: %ld steps, final loss EMA %.4f, run dir "
                "%s",
                tr->step, tr->run.lossEma, tr->zRunDir);
  return rc;
}

static int train_loop(bt_trainer *tr, const bt_train_opts *o, int *pExit) {
  bt_model *m = &tr->model;
  loop_ctx L = {.tr = tr, .pExit = pExit};
  L.itemsPerSample = m->eKind == BT_MODEL_GPT ? (double)m->T : 1.0;
  int onGpu = bt_backend_kind_of(tr->be) == BT_BACKEND_CUDA;
  bt_outputs_spec spec = {
      .pCfg = &tr->cfg,
      .zRunDir = tr->zRunDir,
      .zLossLog = o->zLossLog,
      .rank = tr->rank,
      .world = tr->world,
      .startStep = tr->step,
      .gpuFlopsPerItem = onGpu ? bt_model_flops_per_item(m) : 0.0,
  };
  if (bt_outputs_open(&L.out, &spec) != BT_OK) return BT_ERR;
  tr->sync.pTrace = L.out.pTrace;
  L.tRunStart = bt_time_now();
  /* A run resumed after its early stop stays stopped (a rerun of the same
   * command is not a request for more steps); a larger train.early_stop
   * continues it. */
  if (tr->cfg.early_stop > 0 && tr->run.nNoImprove >= tr->cfg.early_stop &&
      tr->step < tr->cfg.steps) {
    bt_log_info("the run stopped early at step %ld (%d validations without "
                "improvement, train.early_stop = %d): nothing to train; "
                "raise train.early_stop to continue it",
                tr->step, tr->run.nNoImprove, tr->cfg.early_stop);
    L.bEarlyStop = 1;
  }
  int rc = BT_OK;
  while (rc == BT_OK && !L.bStopped && !L.bEarlyStop &&
         tr->step < tr->cfg.steps)
    rc = train_step(&L);
  if (rc == BT_OK && !L.bStopped) rc = train_finish(&L, o);
  bt_outputs_close(&L.out); /* on every path: nothing leaks */
  tr->sync.pTrace = NULL;
  return rc;
}

static void trainer_free(bt_trainer *tr) {
  if (tr->pCkw) bt_ckpt_writer_free(tr->pCkw);
  bt_optim_free(&tr->optim, tr->be);
  if (tr->pStats) bt_mem_free(tr->be, (float *)tr->pStats);
  bt_grad_sync_free(&tr->sync);
  if (tr->be) bt_model_free(&tr->model);
  if (tr->pLoader) bt_loader_free(tr->pLoader);
  if (tr->pVal) bt_loader_free(tr->pVal);
  if (tr->pAudio) bt_audio_loader_free(tr->pAudio);
  if (tr->pAudioVal) bt_audio_loader_free(tr->pAudioVal);
  free(tr->aVocabCp);
  if (tr->be) bt_backend_free(tr->be);
  free(tr->hostStage);
  free(tr->hostStageM);
  free(tr->hostStageV);
  free(tr->hostZeroM);
  free(tr->hostZeroV);
  free(tr->zCfgText);
  bt_lock_release(&tr->runLock); /* last: after the final checkpoint */
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
          "  --allow-fresh-start      with --resume auto: when the run "
          "directory has\n"
          "                           checkpoints and none is usable, start "
          "from step 0\n"
          "                           (default: refuse; they are kept as "
          "rejected-ckpt-*)\n"
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

static void resume_parse(bt_train_opts *o, const char *zArg) {
  if (!strcmp(zArg, "auto")) {
    o->eResume = BT_RESUME_AUTO;
  } else if (!strcmp(zArg, "never")) {
    o->eResume = BT_RESUME_NEVER;
  } else {
    o->eResume = BT_RESUME_DIR;
    o->zResumeDir = zArg;
  }
}

/* Longest path accepted for --run-dir, --resume DIR, --loss-log and
 * --dump-params: every file name derived from them must fit the fixed
 * buffers (trainer.h zRunDir, the checkpoint and output paths). */
#define TRAIN_PATH_MAX 1000

/* Paths too long for those buffers are a usage error naming the option,
 * not an internal assertion deep in the run. */
static int train_check_paths(const bt_train_opts *o, int rank) {
  const struct {
    const char *zOpt, *zVal;
  } a[] = {{"--run-dir", o->zRunDir},
           {"--resume", o->eResume == BT_RESUME_DIR ? o->zResumeDir : NULL},
           {"--loss-log", o->zLossLog},
           {"--dump-params", o->zDumpParams}};
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
    size_t n = a[i].zVal ? strlen(a[i].zVal) : 0;
    if (n <= TRAIN_PATH_MAX) continue;
    if (rank == 0)
      fprintf(stderr, "baton train: %s: the path is %zu characters; the "
              "limit is %d\n", a[i].zOpt, n, TRAIN_PATH_MAX);
    return BT_EXIT_USAGE;
  }
  return -1;
}

/* Fills *o (o->azSet has room for argc entries). Returns -1 to go on, or
 * the exit code of a help request or a usage error. */
static int train_parse_args(int argc, char **argv, bt_train_opts *o,
                            int rank) {
  static const struct option aOpt[] = {
      {"set", required_argument, 0, 's'},
      {"run-dir", required_argument, 0, 'r'},
      {"resume", required_argument, 0, 'R'},
      {"dump-params", required_argument, 0, 'd'},
      {"loss-log", required_argument, 0, 'l'},
      {"quiet", no_argument, 0, 'q'},
      {"allow-fresh-start", no_argument, 0, 'F'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  bt_cli cli;
  bt_cli_init(&cli, "train", argc, argv, "h", aOpt, train_usage);
  cli.bQuiet = rank != 0; /* one message per job, not one per rank */
  int ch;
  while ((ch = bt_cli_next(&cli)) != -1) {
    switch (ch) {
    case 's': o->azSet[o->nSet++] = cli.zArg; break;
    case 'r': o->zRunDir = cli.zArg; break;
    case 'R': resume_parse(o, cli.zArg); break;
    case 'd': o->zDumpParams = cli.zArg; break;
    case 'l': o->zLossLog = cli.zArg; break;
    case 'q': bt_log_set_level(0); break;
    case 'F': o->bAllowFresh = 1; break;
    case 'h': train_usage(stdout); return BT_EXIT_OK;
    case BT_CLI_ARG:
      if (o->zConfig)
        return bt_cli_fail(&cli, "expected exactly one CONFIG file, got "
                           "'%s' and '%s'", o->zConfig, cli.zArg);
      o->zConfig = cli.zArg;
      break;
    default: return BT_EXIT_USAGE; /* BT_CLI_ERROR: reported */
    }
  }
  if (!o->zConfig)
    return bt_cli_fail(&cli, "expected exactly one CONFIG file");
  return train_check_paths(o, rank);
}

/* Config, set-up, resume, the loop: the exit code of the whole run. */
static int train_command(const bt_train_opts *o, bt_comm *pComm) {
  bt_trainer tr;
  memset(&tr, 0, sizeof tr);
  tr.runLock.fd = -1;
  tr.pComm = pComm;
  tr.rank = bt_comm_rank(pComm);
  tr.world = bt_comm_world(pComm);
  startup_fail f = {0};
  int rc = bt_config_load(&tr.cfg, o->zConfig, o->azSet, o->nSet);
  if (startup_fail_agree(&tr, rc, BT_EXIT_USAGE, &f) != BT_OK) {
    if (!f.bQuiet) bt_log_error("%s", bt_err_msg());
    if (!f.bAgreed && tr.world > 1) bt_comm_abort(pComm, BT_EXIT_USAGE);
    return f.bAgreed ? f.code : BT_EXIT_USAGE;
  }
  install_signals();
  int exitCode = BT_EXIT_OK;
  rc = trainer_setup(&tr, o, &f);
  if (rc == BT_OK) {
    bt_comm_watchdog_start(pComm);
    rc = trainer_resume(&tr, o);
  }
  /* train.init_from after resume: a resumed run keeps its weights. */
  if (rc == BT_OK) rc = bt_init_load_params(&tr);
  if (rc == BT_OK) rc = train_clear_run_exit(&tr);
  int bTrained = rc == BT_OK; /* exit_status: only for a run that trained */
  if (rc == BT_OK) rc = train_loop(&tr, o, &exitCode);
  if (rc != BT_OK) {
    if (!f.bQuiet) bt_log_error("%s", bt_err_msg());
    if (exitCode == BT_EXIT_OK) exitCode = f.bAgreed ? f.code : BT_EXIT_ERROR;
    /* A failure on one rank must not leave the others waiting in a
     * collective until the watchdog fires; an agreed start-up failure
     * left nobody waiting. */
    if (tr.world > 1 && !f.bAgreed) bt_comm_abort(pComm, exitCode);
  }
  if (bTrained) train_record_run_exit(&tr, exitCode);
  trainer_free(&tr);
  return exitCode;
}

/* The job's exit code as rank 0 saw it, for the wrappers (baton-launch,
 * baton-supervise; docs/operations.md "Exit codes"). mpirun that itself
 * received SIGTERM exits 1 whatever its ranks returned, so the wrappers
 * read this file instead: "4" here means every rank checkpointed and
 * stopped. Rank 0 only, and only when the wrapper asks (BATON_EXIT_FILE);
 * a file that cannot be written costs the wrapper its hint, not the run. */
static void train_record_exit(int exitCode, int rank) {
  const char *zPath = getenv("BATON_EXIT_FILE");
  if (rank != 0 || !zPath || !*zPath) return;
  char zCode[16];
  int n = snprintf(zCode, sizeof zCode, "%d\n", exitCode);
  if (bt_file_write_atomic(zPath, zCode, (size_t)n) != BT_OK)
    bt_log_warn("BATON_EXIT_FILE %s: %s", zPath, bt_err_msg());
}

int bt_train_main(int argc, char **argv, bt_comm *pComm) {
  bt_train_opts o = {0};
  const char **azSet = calloc((size_t)argc + 1, sizeof(char *));
  if (!azSet) return BT_EXIT_ERROR;
  o.azSet = azSet;
  int exitCode = train_parse_args(argc, argv, &o, bt_comm_rank(pComm));
  if (exitCode < 0) exitCode = train_command(&o, pComm);
  train_record_exit(exitCode, bt_comm_rank(pComm));
  free(azSet);
  return exitCode;
}
