/*
 * grad_sync.c: see grad_sync.h.
 */
#include "base/util.h"
#include "trainer/grad_sync.h"

#include <stdlib.h>
#include <string.h>

size_t bt_grad_sync_unit(int world) {
  BT_ASSERT(world >= 1);
  return (size_t)world * 16;
}

size_t bt_grad_sync_bucket_elems(double bucketMb, int world) {
  size_t unit = bt_grad_sync_unit(world);
  double want = bucketMb * 1e6 / sizeof(float);
  size_t per = want >= 1 ? (size_t)want : 1;
  /* MPI counts are int: keep every bucket below 2^30 elements. */
  if (per > ((size_t)1 << 30)) per = (size_t)1 << 30;
  per = (per + unit - 1) / unit * unit;
  if (per > ((size_t)1 << 30)) per -= unit;
  return per;
}

int bt_grad_sync_nbucket(size_t nFlat, size_t per) {
  return (int)((nFlat + per - 1) / per);
}

void bt_grad_sync_bucket_range(size_t nFlat, size_t per, int b, size_t *pLo,
                               size_t *pHi) {
  *pHi = nFlat - (size_t)b * per;
  *pLo = *pHi > per ? *pHi - per : 0;
}

void bt_grad_sync_slice(size_t lo, size_t hi, int world, int r,
                        size_t *pSliceLo, size_t *pSliceHi) {
  BT_ASSERT((hi - lo) % (size_t)world == 0 && r >= 0 && r < world);
  size_t q = (hi - lo) / (size_t)world;
  *pSliceLo = lo + (size_t)r * q;
  *pSliceHi = *pSliceLo + q;
}

int bt_grad_sync_init(bt_grad_sync *s, bt_comm *pComm, bt_model *pModel,
                      int zero, int overlap, double bucketMb) {
  memset(s, 0, sizeof *s);
  s->pComm = pComm;
  s->pModel = pModel;
  s->world = bt_comm_world(pComm);
  s->rank = bt_comm_rank(pComm);
  s->zero = zero && s->world > 1;
  s->overlap = overlap;
  size_t nFlat = pModel->nFlat;
  /* Invariant 1: the trainer builds the model padded to the unit. */
  BT_ASSERT(nFlat % bt_grad_sync_unit(s->world) == 0);
  size_t per = bt_grad_sync_bucket_elems(bucketMb, s->world);
  s->nBucket = bt_grad_sync_nbucket(nFlat, per);
  s->aBucket = bt_calloc((size_t)s->nBucket, sizeof(bt_bucket), "buckets");
  if (!s->aBucket) return BT_ERR;
  /* Moments are laid out in flat order: walk from the lowest bucket (the
   * last one) up, so plain data parallelism keeps momOff == lo. */
  size_t momOff = 0;
  for (int b = s->nBucket - 1; b >= 0; b--) {
    bt_bucket *pB = &s->aBucket[b];
    bt_grad_sync_bucket_range(nFlat, per, b, &pB->lo, &pB->hi);
    if (s->zero)
      bt_grad_sync_slice(pB->lo, pB->hi, s->world, s->rank, &pB->sliceLo,
                         &pB->sliceHi);
    else
      pB->sliceLo = pB->lo, pB->sliceHi = pB->hi;
    pB->momOff = momOff;
    momOff += pB->sliceHi - pB->sliceLo;
  }
  s->nShard = momOff;
  return BT_OK;
}

void bt_grad_sync_free(bt_grad_sync *s) {
  free(s->aBucket);
  memset(s, 0, sizeof *s);
}

void bt_grad_sync_begin(bt_grad_sync *s, long step) {
  s->active = 1;
  s->step = step;
  s->nextBucket = 0;
  s->tFirstLaunch = 0;
  s->exposedSeconds = 0;
}

static int bucket_launch(bt_grad_sync *s, int b) {
  bt_bucket *pB = &s->aBucket[b];
  float *g = s->pModel->grads;
  char zOp[64];
  bt_snprintf(zOp, sizeof zOp, "grad bucket %d/%d %s", b + 1, s->nBucket,
              s->zero ? "reduce-scatter" : "allreduce");
  bt_comm_set_context(s->pComm, s->step, zOp);
  pB->tLaunch = bt_time_now();
  pB->tDone = 0;
  if (s->tFirstLaunch == 0) s->tFirstLaunch = pB->tLaunch;
  int rc;
  if (s->world == 1) {
    rc = BT_OK;
    pB->req = NULL;
  } else if (s->zero) {
    /* In place (NCCL's rule): the rank's slice is its receive block. */
    rc = bt_comm_reduce_scatter(s->pComm, g + pB->lo, g + pB->sliceLo,
                                pB->sliceHi - pB->sliceLo, BT_F32, BT_SUM,
                                &pB->req);
  } else {
    rc = bt_comm_allreduce(s->pComm, g + pB->lo, pB->hi - pB->lo, BT_F32,
                           BT_SUM, &pB->req);
  }
  pB->launched = 1;
  return rc;
}

void bt_grad_sync_ready(void *ctx, size_t lo) {
  bt_grad_sync *s = ctx;
  if (!s->active || !s->overlap) return;
  while (s->nextBucket < s->nBucket && s->aBucket[s->nextBucket].lo >= lo) {
    if (bucket_launch(s, s->nextBucket) != BT_OK) {
      bt_log_error("%s", bt_err_msg());
      bt_comm_abort(s->pComm, 1);
    }
    s->nextBucket++;
  }
  /* Drive progress of what is in flight. */
  for (int b = 0; b < s->nextBucket; b++) {
    bt_bucket *pB = &s->aBucket[b];
    if (pB->req) {
      int done = 0;
      if (bt_comm_test(s->pComm, pB->req, &done) == BT_OK && done) {
        pB->req = NULL;
        pB->tDone = bt_time_now();
      }
    }
  }
}

int bt_grad_sync_finish(bt_grad_sync *s) {
  s->tBackwardEnd = bt_time_now();
  while (s->nextBucket < s->nBucket) {
    if (bucket_launch(s, s->nextBucket) != BT_OK) return BT_ERR;
    s->nextBucket++;
  }
  for (int b = 0; b < s->nBucket; b++) {
    bt_bucket *pB = &s->aBucket[b];
    if (pB->req) {
      char zOp[64];
      bt_snprintf(zOp, sizeof zOp, "waiting for grad bucket %d/%d", b + 1,
                  s->nBucket);
      bt_comm_set_context(s->pComm, s->step, zOp);
      if (bt_comm_wait_stream(s->pComm, pB->req) != BT_OK) return BT_ERR;
      pB->req = NULL;
      pB->tDone = bt_time_now();
    }
    if (pB->tDone == 0) pB->tDone = bt_time_now();
    if (s->pTrace) {
      char zName[48];
      bt_snprintf(zName, sizeof zName, "bucket %d", b + 1);
      bt_trace_span(s->pTrace, zName, "comm", 1, pB->tLaunch, pB->tDone);
    }
    pB->launched = 0;
  }
  s->tDone = bt_time_now();
  s->exposedSeconds = s->tDone - s->tBackwardEnd;
  s->active = 0;
  return BT_OK;
}

int bt_grad_sync_gather_launch(bt_grad_sync *s, int b) {
  if (!s->zero) return BT_OK;
  BT_ASSERT(b >= 0 && b < s->nBucket && !s->aBucket[b].gatherReq);
  bt_bucket *pB = &s->aBucket[b];
  float *p = s->pModel->params;
  char zOp[64];
  bt_snprintf(zOp, sizeof zOp, "ZeRO parameter all-gather %d/%d", b + 1,
              s->nBucket);
  bt_comm_set_context(s->pComm, s->step, zOp);
  /* In place: this rank's slice is its send block. */
  return bt_comm_all_gather(s->pComm, p + pB->sliceLo, p + pB->lo,
                            pB->sliceHi - pB->sliceLo, BT_F32,
                            &pB->gatherReq);
}

int bt_grad_sync_gather_wait(bt_grad_sync *s) {
  for (int b = 0; b < s->nBucket; b++) {
    bt_bucket *pB = &s->aBucket[b];
    if (!pB->gatherReq) continue;
    char zOp[64];
    bt_snprintf(zOp, sizeof zOp, "waiting for parameter all-gather %d/%d",
                b + 1, s->nBucket);
    bt_comm_set_context(s->pComm, s->step, zOp);
    int rc = bt_comm_wait_stream(s->pComm, pB->gatherReq);
    pB->gatherReq = NULL; /* freed, even on error (comm.h) */
    if (rc != BT_OK) return BT_ERR; /* the caller stops the job */
  }
  return BT_OK;
}
