/*
 * grad_sync.h: bucketed, overlapped gradient reduction.
 *
 * The flat gradient buffer [0, nFlat) is cut into buckets of about
 * bucket_mb, counted from the END of the buffer, because backward finishes
 * gradients from the end towards the start (model.h). The model's
 * grad-ready hook (bt_grad_sync_ready) launches every bucket that lies
 * entirely in the finished range, so its reduction runs while backward
 * computes the earlier layers. Between launches the hook also tests the
 * outstanding requests, because MPI libraries without a progress thread
 * advance non-blocking collectives only inside MPI calls.
 *
 * Plain data parallelism: each bucket is all-reduced in place (SUM; the
 * loss scale 1/global_count already makes the sum a mean).
 * ZeRO-1: rank r owns the contiguous shard [r*S, (r+1)*S) of the flat
 * buffer (S = nFlat / world; nFlat is padded to a multiple of world). Each
 * bucket is reduce-scattered with per-rank counts equal to its overlap with
 * each shard, straight into the rank's shard gradient buffer, so buckets
 * need not align with shards and no tensor size must divide by anything.
 *
 * Gradients and their reduction are fp32 in every train.precision: a bf16
 * all-reduce loses small contributions and is reported unstable at scale
 * (docs/design.md "Precision"); only activations are bf16.
 *
 * State between steps: every bucket idle (no request outstanding).
 */
#ifndef BATON_GRAD_SYNC_H
#define BATON_GRAD_SYNC_H

#include <stddef.h>

#include "comm/comm.h"
#include "trainer/model.h"
#include "trainer/observe/trace.h"

typedef struct bt_bucket {
  size_t lo, hi;      /* flat range */
  size_t *aCount;     /* ZeRO: per-rank overlap with shards */
  size_t recvOff;     /* ZeRO: where this rank's part lands in the shard */
  bt_comm_req *req;
  int launched;
  double tLaunch, tDone; /* for the timeline */
} bt_bucket;

typedef struct bt_grad_sync {
  bt_comm *pComm;
  bt_model *pModel;
  int zero, overlap, world, rank;
  int nBucket;
  bt_bucket *aBucket; /* aBucket[0] is the LAST range of the buffer */
  size_t shardLo, shardHi; /* this rank's optimizer range */
  float *shardGrad;        /* ZeRO: reduced gradients of the shard */
  int active;              /* hooks launch only when set (last micro-step) */
  long step;               /* for watchdog / error context */
  int nextBucket;          /* next bucket to launch */
  /* timing of the last step */
  double tFirstLaunch, tBackwardEnd, tDone;
  double exposedSeconds; /* wait after backward ended */
  bt_trace *pTrace;      /* optional: one span per bucket reduction */
} bt_grad_sync;

int bt_grad_sync_init(bt_grad_sync *s, bt_comm *pComm, bt_model *pModel,
                      int zero, int overlap, double bucketMb);
void bt_grad_sync_free(bt_grad_sync *s);

/* Arms the hooks for the last micro-step of an optimizer step. */
void bt_grad_sync_begin(bt_grad_sync *s, long step);
/* The model's grad-ready hook (ctx = bt_grad_sync*). */
void bt_grad_sync_ready(void *ctx, size_t lo);
/* Launches whatever is left and waits for every bucket. Afterwards the
 * reduced gradients are in model->grads (plain) or shardGrad (ZeRO). */
int bt_grad_sync_finish(bt_grad_sync *s);

/* Gradient pointer for flat position x (must be in [shardLo, shardHi)). */
float *bt_grad_sync_grad_at(bt_grad_sync *s, size_t x);

#endif /* BATON_GRAD_SYNC_H */
