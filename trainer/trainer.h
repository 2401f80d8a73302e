/*
 * trainer.h: the training loop's state, shared by train.c (the loop),
 * state.c (what a checkpoint holds) and the CLI.
 *
 * Between optimizer steps the following is true on every rank:
 *   - params are identical on all ranks (after the ZeRO all-gather);
 *   - grads are garbage (zeroed at the start of the next step);
 *   - the optimizer moments cover this rank's optimizer shard (all of
 *     the flat buffer, or its ZeRO-1 slices of every bucket: grad_sync.h);
 *   - `step` optimizer steps are complete and the loader is positioned at
 *     the first sample of step `step + 1`.
 * That is exactly the state a checkpoint captures (state.c).
 */
#ifndef BATON_TRAINER_H
#define BATON_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "base/lock.h"
#include "checkpoints/ckpt.h"
#include "comm/comm.h"
#include "data/audio_loader.h"
#include "data/loader.h"
#include "trainer/config.h"
#include "trainer/grad_sync.h"
#include "trainer/model.h"
#include "trainer/optim.h"

/* --resume auto|never|DIR */
typedef enum bt_resume_mode {
  BT_RESUME_AUTO = 0,  /* the newest valid checkpoint of the run, if any */
  BT_RESUME_NEVER = 1, /* a new run, whatever the run directory holds */
  BT_RESUME_DIR = 2,   /* exactly the checkpoint zResumeDir */
} bt_resume_mode;

typedef struct bt_train_opts {
  const char *zConfig;
  const char **azSet;
  int nSet;
  const char *zRunDir;
  bt_resume_mode eResume;  /* default (zero): BT_RESUME_AUTO */
  const char *zResumeDir;  /* BT_RESUME_DIR only */
  const char *zDumpParams; /* write final fp32 params here (tests) */
  const char *zLossLog;    /* write "step loss" lines here (tests) */
  int bAllowFresh;         /* --allow-fresh-start: checkpoints exist but
                              none is usable -> start from step 0 anyway */
} bt_train_opts;

typedef struct bt_running {
  double lossEma;     /* exponential moving average of the train loss */
  double bestVal;     /* lowest validation loss so far (inf if none) */
  int nNoImprove;     /* validations since bestVal last fell */
  double trainSeconds;
  int64_t itemsSeen;  /* tokens (GPT) or samples (MLP) */
} bt_running;

typedef struct bt_trainer {
  bt_config cfg;
  char *zCfgText;
  char zRunDir[1024];
  bt_lock runLock; /* rank 0: RUN_DIR/lock, held for the job's life */
  bt_comm *pComm;
  int rank, world;
  bt_backend *be;
  bt_model model;
  bt_loader *pLoader, *pVal;
  bt_audio_loader *pAudio; /* model.type = speech: the training stream
                              (pLoader is then NULL) */
  bt_audio_loader *pAudioVal; /* speech validation (data.val_path) */
  int32_t *aVocabCp;          /* speech: code points of ids 1..nVocabCp */
  int nVocabCp;
  bt_grad_sync sync;
  bt_optim optim;
  bt_ckpt_writer *pCkw;
  long step;    /* completed optimizer steps */
  bt_running run;
  int maxMicro; /* largest per-rank micro-batch */
  float *hostStage; /* host staging for non-CPU backends (nFlat floats) */
  float *hostStageM, *hostStageV;
  double *pStats; /* backend memory: the step's statistics (train.c) */
  float *hostZeroM, *hostZeroV; /* ZeRO-1: the moments in checkpoint order
                                   (state.c), nFlat / world floats each */
} bt_trainer;

/* One function lists the state for both save and load (docs/design.md,
 * decision 6: one path for state). For save, pData holds current values (host); for load, pData is the
 * destination to fill, after which bt_state_commit_load copies it to the
 * backend. Returns the item count (<= nMax), or BT_ERR. Under ZeRO-1 a
 * save's call is collective (the moments' exchange, state.c). */
int bt_state_items(bt_trainer *tr, bt_ckpt_item *aItem, int nMax, int forSave);
/* Collective under ZeRO-1 (on every rank after an agreed load): moves the
 * loaded state into place. BT_ERR if the moments' exchange failed. */
int bt_state_commit_load(bt_trainer *tr);
/* The training stream's state, whichever loader it is (token/feature or
 * audio: the same (epoch, consumed) shape, one checkpoint path). */
bt_loader_state bt_state_loader_get(const bt_trainer *tr);
int bt_state_loader_seek(bt_trainer *tr, const bt_loader_state *pState);
/* Trainer scalars (step, loader, running metrics, config) as JSON. */
char *bt_state_meta_json(bt_trainer *tr);
/* Restores scalars from a checkpoint's meta; checks the model shape.
 * Returns BT_OK, BT_STATE_CONFIG_CHANGED when the saved config parses but
 * differs from the current one in a key that changes the model or the
 * data stream (the user's doing: a resume stops), or BT_ERR when the meta
 * itself is unusable (a damaged checkpoint: a resume falls back). */
#define BT_STATE_CONFIG_CHANGED 2
int bt_state_apply_meta(bt_trainer *tr, const char *zJson, const char *zDir);

/* `baton train` */
int bt_train_main(int argc, char **argv, bt_comm *pComm);

#endif
