/*
 * audio_loader.h: length-bucketed batches of utterances from the ragged
 * HDF5 layout of `baton prepare audio` (docs/data.md, "Audio data"),
 * filled into bt_speech_batch (speech_batch.h) for the speech model.
 *
 * The plan of an epoch (bt_audio_plan_make, a pure function of the
 * utterance lengths, seed, epoch, frame budget and sort window; the same
 * on every rank, whatever the world size):
 *   1. order the N utterances by the epoch's seeded permutation
 *      (bt_perm_index(seed, epoch, N, .), as the token stream does), or in
 *      file order when shuffle is off;
 *   2. cut that order into windows of `window` utterances and sort each
 *      window by frames, longest first (ties: lower index first), so that
 *      utterances of similar length sit next to each other (the buckets);
 *   3. fill batches greedily in that order: an utterance joins the current
 *      batch while (B + 1) * T <= max_frames, T being the batch's first
 *      (longest) utterance; batches never cross windows. The budget thus
 *      bounds the padded size B * T (the memory and compute of the batch),
 *      which implies speech_batch.h's sum(aFrames) <= max_frames;
 *   4. shuffle the batches with a second seeded permutation (file order of
 *      batches when shuffle is off).
 * Every utterance is in exactly one batch of the plan.
 *
 * The stream: optimizer step s takes the next world * accum batches of the
 * plan; micro-step m of rank r takes batch consumed + m * world + r, or an
 * empty batch (B = 0) past the end of the epoch's plan. State is
 * (epoch, consumed) with consumed counted in plan batches: it does not
 * depend on the world size, so a checkpoint written by 4 ranks continues
 * the same plan on 2 (the step then takes 2 * accum batches). It fits
 * bt_loader_state, so checkpoints store it the way they store the token
 * stream's (trainer/state.c, "loader": epoch, consumed).
 *
 * Sharding: every rank reads the two offset arrays (N + 1 int64 each) at
 * open, and then only the feature rows and labels of its own utterances
 * (one hyperslab per utterance).
 *
 * Validation: open with shuffle = 0 (file order, windows still sorted)
 * and make ceil(epoch_batches / (world * accum)) steps of accum calls on
 * every rank: the same count everywhere, so ranks with empty batches still
 * take part in the step's collectives; the epoch then rolls.
 *
 * Threads: no prefetch thread yet; reads happen inside
 * bt_audio_loader_next() on the caller's thread (under bt_h5_lock()).
 */
#ifndef BATON_AUDIO_LOADER_H
#define BATON_AUDIO_LOADER_H

#include <stdint.h>

#include "data/loader.h"
#include "data/speech_batch.h"

/* The layout written by prepare_audio.c and read here (docs/data.md). */
#define BT_AUDIO_FORMAT_VERSION 1
#define BT_AUDIO_DS_FEATURES "/audio/features"           /* f32 [F, 80] */
#define BT_AUDIO_DS_FRAME_OFFSETS "/audio/frame_offsets" /* i64 [N + 1] */
#define BT_AUDIO_DS_LABELS "/audio/labels"               /* i32 [L] */
#define BT_AUDIO_DS_LABEL_OFFSETS "/audio/label_offsets" /* i64 [N + 1] */
#define BT_AUDIO_DS_VOCAB "/audio/vocab"                 /* utf-8 [V] */

/* ---- the plan: pure functions ------------------------------------------- */

typedef struct bt_audio_plan {
  int64_t nBatch;
  int64_t *aStart; /* [nBatch + 1]: batch b is aUtt[aStart[b] .. aStart[b+1]) */
  int64_t *aUtt;   /* [N] utterance indices, longest first in each batch */
} bt_audio_plan;

/* Builds the plan of `epoch` (steps 1-4 above). aFrames[i] > 0 are the
 * utterances' frame counts. An utterance longer than maxFrames is an
 * error naming its index and data.max_frames. window <= 0 means N. */
int bt_audio_plan_make(const int32_t *aFrames, int64_t n, uint64_t seed,
                       int64_t epoch, int64_t maxFrames, int64_t window,
                       int shuffle, bt_audio_plan *pPlan);
void bt_audio_plan_free(bt_audio_plan *pPlan);

/* The plan batch of micro-step `micro`, rank `rank` in the step that starts
 * at plan batch `consumed`; >= nBatch means an empty batch. */
int64_t bt_audio_plan_batch(int64_t consumed, int world, int micro, int rank);

/* ---- the loader ------------------------------------------------------------ */

typedef struct bt_audio_loader bt_audio_loader;

typedef struct bt_audio_loader_config {
  const char *zPath;  /* a file written by `baton prepare audio` */
  int64_t maxFrames;  /* data.max_frames: padded frames B * T per batch */
  int64_t window;     /* data.sort_window: utterances sorted together
                         (0 = the whole epoch) */
  int accum;          /* micro-steps per optimizer step (<= 0: 1) */
  int rank, world;    /* world <= 0: 1 */
  uint64_t seed;
  int shuffle;        /* 1: permute utterances and batches each epoch */
} bt_audio_loader_config;

int bt_audio_loader_open(bt_audio_loader **ppLoader,
                         const bt_audio_loader_config *pCfg);
void bt_audio_loader_free(bt_audio_loader *pLoader);

int64_t bt_audio_loader_size(const bt_audio_loader *pLoader); /* utterances */
/* V: the vocabulary size including the blank (labels are 1..V-1). */
int bt_audio_loader_vocab(const bt_audio_loader *pLoader);
/* Batches in the plan of the last seek or the last batch returned (the
 * next epoch's plan is made when its first batch is asked for). */
int64_t bt_audio_loader_epoch_batches(const bt_audio_loader *pLoader);

/* An upper bound on the utterances of any batch of any epoch's plan:
 * a batch of B utterances padded to T frames has B * T <= maxFrames and T
 * at least the shortest utterance, so B <= min(N, maxFrames / shortest).
 * What the speech model sizes its activations for (trainer/train.c). */
int64_t bt_audio_loader_max_batch(const bt_audio_loader *pLoader);

/* Position the stream; consumed beyond the epoch's plan is an error. */
int bt_audio_loader_seek(bt_audio_loader *pLoader, const bt_loader_state *pState);
/* State as of the start of the next optimizer step not yet begun: a
 * checkpoint taken mid-step repeats that step's micro-steps on resume. */
bt_loader_state bt_audio_loader_get_state(const bt_audio_loader *pLoader);

/* This rank's next micro-step: micro-steps 0..accum-1 of one step, then of
 * the next. The batch's buffers belong to the loader and stay valid until
 * the next call. Read or validation errors name file, dataset and
 * utterance. */
int bt_audio_loader_next(bt_audio_loader *pLoader, bt_speech_batch *pBatch);

/* Padding waste of every batch returned so far on ALL ranks (each rank
 * knows the whole plan, so this needs no communication): padded frames
 * over B * T summed; 0 before the first batch. For the progress line. */
double bt_audio_loader_pad_fraction(const bt_audio_loader *pLoader);

/* Bytes this rank has read from /audio/features and /audio/labels (the
 * selected elements times 4): the sharding check of the tests. */
uint64_t bt_audio_loader_bytes_read(const bt_audio_loader *pLoader);

/* The vocabulary of a file of this layout: the code points of entries
 * 1..V-1 of /audio/vocab (*pn = V - 1, strictly increasing), malloc'ed. */
int bt_audio_vocab_read(const char *zPath, int32_t **paCp, int *pn);

/* Reads the audio file zPath (libsndfile) into *paSample (malloc'ed,
 * *pnSample samples) with the checks of `prepare audio`: 16 kHz, mono,
 * not truncated, at least one 25 ms window. Errors start with zWhere
 * (which names the file). Shared with `baton infer` (prepare_audio.c). */
int bt_audio_read(const char *zPath, const char *zWhere, float **paSample,
                  int64_t *pnSample);

/* `baton prepare audio ...` (prepare_audio.c): returns the exit code. */
int bt_prepare_audio_main(int argc, char **argv);

#endif /* BATON_AUDIO_LOADER_H */
