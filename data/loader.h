/*
 * loader.h: the sharded, deterministic data stream (docs/design.md,
 * decision 5: world-size-independent state).
 *
 * The global stream: epoch e visits every sample index exactly once, in the
 * order of a seeded permutation perm(seed, e). Step s of the run takes the
 * next `global_batch` samples of that stream (the last step of an epoch may
 * take fewer: nothing is dropped, nothing repeated); the samples of one
 * step are split into `accum` micro-steps and each micro-step's samples are
 * split across ranks by bt_split() (contiguous, sizes differ by at most 1).
 * A rank reads only its own samples.
 *
 * Loader state is (epoch, consumed): samples of epoch `epoch` already taken.
 * It does not depend on the world size, so a checkpoint written by N ranks
 * continues the same global stream on M ranks.
 *
 * Sources: a synthetic built-in dataset (no file) and HDF5 files (data.md).
 * A sample is either a token window (context+1 tokens: inputs and shifted
 * targets) or a fixed-shape feature vector with an integer label.
 */
#ifndef BATON_LOADER_H
#define BATON_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct bt_loader bt_loader;

typedef enum bt_sample_kind {
  BT_SAMPLE_TOKENS = 0,   /* GPT: inputs[T], targets[T] */
  BT_SAMPLE_FEATURES = 1, /* MLP: x[D] float, y int */
} bt_sample_kind;

typedef struct bt_loader_state {
  int64_t epoch;
  int64_t consumed; /* samples of this epoch already taken */
} bt_loader_state;

typedef struct bt_loader_config {
  const char *zPath;     /* HDF5 file, or "synthetic:NAME" (see data.md) */
  const char *zSplit;    /* "train" or "val" */
  bt_sample_kind eKind;
  int T;                 /* tokens: context length */
  /* The model's sizes (the trainer's model.vocab_size, model.n_features,
   * model.n_classes, named so in messages); 0 = take it from the data. */
  int vocab;             /* tokens: ids must be < vocab */
  int D;                 /* features: input width */
  int nClass;            /* features: labels must be < nClass */
  int64_t global_batch;  /* samples per optimizer step, all ranks */
  int accum;             /* micro-steps per optimizer step */
  int rank, world;
  uint64_t seed;
  int shuffle;           /* 1: permute each epoch; 0: file order */
  int prefetch;          /* batches prefetched by the background thread */
  int64_t limit;         /* >0: use only the first `limit` samples */
  int pinned;            /* 1: batch buffers in pinned (page-locked) host
                            memory, for fast host-to-device copies (GPU
                            builds; falls back to ordinary memory, with a
                            warning, where none can be had) */
} bt_loader_config;

/* One rank's part of one micro-step. Buffers are owned by the loader and
 * valid until the next bt_loader_next() call. */
typedef struct bt_batch {
  int n;                  /* samples on this rank (may be 0) */
  int64_t global_n;       /* samples in this micro-step, all ranks */
  int64_t step_global_n;  /* samples in this optimizer step, all ranks */
  int32_t *inputs;        /* tokens: [n, T] */
  int32_t *targets;       /* tokens: [n, T]; features: [n] labels */
  float *x;               /* features: [n, D] */
  const int64_t *index;   /* [n] global sample indices (for tests) */
  int64_t epoch;          /* epoch these samples come from */
  double wait_seconds;    /* time the caller blocked waiting for it */
} bt_batch;

int bt_loader_open(bt_loader **ppLoader, const bt_loader_config *pCfg);
void bt_loader_free(bt_loader *pLoader);

/* Number of samples in the split, and D / nClass / vocab found in the file. */
int64_t bt_loader_size(const bt_loader *pLoader);
int bt_loader_feature_dim(const bt_loader *pLoader);

/* Position the stream (at start-up or after a resume). */
int bt_loader_seek(bt_loader *pLoader, const bt_loader_state *pState);
/* State as of the start of the next optimizer step not yet returned. */
bt_loader_state bt_loader_get_state(const bt_loader *pLoader);

/* Next micro-step of this rank: micro-steps 0..accum-1 of step 1, then of
 * step 2, and so on. Returns BT_ERR with bt_err_msg() naming file, dataset
 * and index on a read or validation error. */
int bt_loader_next(bt_loader *pLoader, bt_batch *pBatch);

/* Validation: reads the fixed subset [0, nSample) of the split in file
 * order, this rank's contiguous part of each chunk of `per_call` samples.
 * *pBatch->n == 0 with return BT_OK once the rank's part is exhausted. */
int bt_loader_val_begin(bt_loader *pLoader, int64_t nSample, int per_call);
int bt_loader_val_next(bt_loader *pLoader, bt_batch *pBatch);

/* The split rule used everywhere: item range [*pLo, *pHi) of part i when
 * n items are divided into k contiguous parts whose sizes differ by <= 1. */
void bt_split(int64_t n, int k, int i, int64_t *pLo, int64_t *pHi);

/* Position of sample p of epoch e in the permutation (a bijection on
 * [0, n)); exposed for tests. */
int64_t bt_perm_index(uint64_t seed, int64_t epoch, int64_t n, int64_t p);

/* ---- additions by the data module (docs/data.md) ------------------------
 *
 * Config defaults (a zero-initialised config works): zSplit NULL = "train";
 * accum <= 0 = 1; world <= 0 = 1; prefetch 0 = 2 batches, prefetch < 0 =
 * no thread (reads happen inside bt_loader_next); vocab 0, D 0, nClass 0 =
 * taken from the data. A "train" split smaller than one global batch is an
 * error at open; a "val" split is not checked against global_batch, and a
 * val loader may leave global_batch 0 (then 1) if it only serves
 * bt_loader_val_begin/next.
 *
 * Mid-step state: bt_loader_get_state() counts only optimizer steps whose
 * micro-steps have all been returned; a checkpoint taken mid-step repeats
 * that step after resume.
 *
 * Validation mode: every rank makes the same number of bt_loader_val_next()
 * calls; the end is global_n == 0 (then n == 0 on every rank). Before the
 * end a rank may get n == 0 with global_n > 0 when a chunk has fewer
 * samples than there are ranks: loop on global_n, not on n. nSample <= 0
 * or larger than the split means the whole split. Validation stops the
 * prefetch thread; the next bt_loader_next() restarts it where the stream
 * was, so validation never disturbs the training stream. */

/* Vocabulary of a token source (file attribute vocab_size, 256 for the
 * synthetic byte sources); number of classes of a feature source. */
int bt_loader_vocab(const bt_loader *pLoader);
int bt_loader_num_classes(const bt_loader *pLoader);
/* Bytes this loader has requested from storage so far (HDF5: elements
 * selected times element size in the file; synthetic: bytes generated). */
uint64_t bt_loader_bytes_read(const bt_loader *pLoader);

/* HDF5 is not thread-safe in every build: every HDF5 call in the process,
 * in any module, is made while holding this (recursive) lock. */
void bt_h5_lock(void);
void bt_h5_unlock(void);

/* `baton prepare ...`: converts text or arrays into the HDF5 layout of
 * docs/data.md. Prints its own --help; returns the process exit code. */
int bt_prepare_main(int argc, char **argv);

#endif /* BATON_LOADER_H */
