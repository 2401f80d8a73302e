/*
 * grad_sync.h: bucketed, overlapped gradient reduction and the ZeRO-1
 * parameter all-gather.
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
 * Invariants of the bucket plan (bt_grad_sync_plan, a pure function of
 * nFlat, world and bucket_mb, so the unit test checks the very plan the
 * trainer uses):
 *   1. nFlat is a multiple of bt_grad_sync_unit(world) = 16 * world (the
 *      model pads its flat buffers to it; the padding is never trained,
 *      stays zero, and is neither checkpointed nor exported).
 *   2. Every bucket's length is a multiple of that unit too: all buckets
 *      but the last have the same length (a multiple of the unit), the
 *      last is what remains of nFlat. Buckets tile [0, nFlat) exactly.
 *   3. Rank r's slice of a bucket [lo, hi) is [lo + r q, lo + (r+1) q),
 *      q = (hi - lo) / world: equal for every rank, 64-byte aligned, and
 *      the slices of all ranks tile the bucket.
 *
 * Plain data parallelism: each bucket is all-reduced in place (SUM; the
 * loss scale 1/global_count already makes the sum a mean); the rank's
 * "slice" of a bucket is the whole bucket.
 * ZeRO-1: each bucket is ONE equal-count reduce-scatter in place
 * (ncclReduceScatter / MPI_Ireduce_scatter_block): afterwards the rank's
 * slice of model->grads holds the reduced gradients, the rest of the
 * bucket is scratch. The rank's optimizer shard is the union of its
 * slices of every bucket (not one contiguous range); after AdamW on the
 * slice of bucket b, bt_grad_sync_gather_launch(b) all-gathers the bucket
 * in place (ncclAllGather / MPI_Iallgather), so the update of the next
 * bucket overlaps the gather of this one; bt_grad_sync_gather_wait waits
 * for all of them. NCCL has no variable-count reduce-scatter, which is why
 * the slices are equal.
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
  size_t lo, hi;           /* flat range; hi - lo is a multiple of world */
  size_t sliceLo, sliceHi; /* this rank's slice (plain: [lo, hi)) */
  size_t momOff;           /* index of sliceLo in the optimizer's moments */
  bt_comm_req *req;        /* gradient reduction in flight */
  bt_comm_req *gatherReq;  /* ZeRO parameter all-gather in flight */
  int launched;
  double tLaunch, tDone; /* for the timeline */
} bt_bucket;

typedef struct bt_grad_sync {
  bt_comm *pComm;
  bt_model *pModel;
  int zero, overlap, world, rank;
  int nBucket;
  bt_bucket *aBucket; /* aBucket[0] is the LAST range of the buffer */
  size_t nShard;      /* elements of this rank's slices together */
  int active;         /* hooks launch only when set (last micro-step) */
  long step;          /* for watchdog / error context */
  int nextBucket;     /* next bucket to launch */
  /* timing of the last step */
  double tFirstLaunch, tBackwardEnd, tDone;
  double exposedSeconds; /* wait after backward ended */
  bt_trace *pTrace;      /* optional: one span per bucket reduction */
} bt_grad_sync;

/* ---- the bucket plan (pure functions; invariants above) ---------------- */

/* The padding unit of the flat buffers: 16 * world elements. */
size_t bt_grad_sync_unit(int world);
/* Elements of a full bucket for bucket_mb MB: rounded to a multiple of the
 * unit (at least one unit), at most 2^30 (MPI counts are int). */
size_t bt_grad_sync_bucket_elems(double bucketMb, int world);
/* Number of buckets of nFlat (a multiple of the unit) in buckets of per
 * elements, and bucket b's range [*pLo, *pHi) (b = 0 is the last range). */
int bt_grad_sync_nbucket(size_t nFlat, size_t per);
void bt_grad_sync_bucket_range(size_t nFlat, size_t per, int b, size_t *pLo,
                               size_t *pHi);
/* Rank r's slice of bucket [lo, hi) among world ranks. */
void bt_grad_sync_slice(size_t lo, size_t hi, int world, int r,
                        size_t *pSliceLo, size_t *pSliceHi);

/* ---- the synchroniser ---------------------------------------------------- */

int bt_grad_sync_init(bt_grad_sync *s, bt_comm *pComm, bt_model *pModel,
                      int zero, int overlap, double bucketMb);
void bt_grad_sync_free(bt_grad_sync *s);

/* Arms the hooks for the last micro-step of an optimizer step. */
void bt_grad_sync_begin(bt_grad_sync *s, long step);
/* The model's grad-ready hook (ctx = bt_grad_sync*). */
void bt_grad_sync_ready(void *ctx, size_t lo);
/* Launches whatever is left and waits for every bucket. Afterwards the
 * reduced gradients of every bucket's slice are in model->grads (plain:
 * the whole buffer). */
int bt_grad_sync_finish(bt_grad_sync *s);

/* ZeRO-1 after the update of bucket b's slice: starts the in-place
 * all-gather of the bucket's parameters (no-op without ZeRO). */
int bt_grad_sync_gather_launch(bt_grad_sync *s, int b);
/* Waits for every all-gather launched. */
int bt_grad_sync_gather_wait(bt_grad_sync *s);

#endif /* BATON_GRAD_SYNC_H */
