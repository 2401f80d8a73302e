/*
 * grad_sync.c: see grad_sync.h.
 */
#include "base/util.h"
#include "trainer/grad_sync.h"

#include <stdlib.h>
#include <string.h>

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
  if (s->zero) {
    BT_ASSERT(nFlat % (size_t)s->world == 0);
    size_t S = nFlat / (size_t)s->world;
    s->shardLo = (size_t)s->rank * S;
    s->shardHi = s->shardLo + S;
    s->shardGrad = bt_mem_alloc(pModel->be, S, "ZeRO shard gradients");
    if (!s->shardGrad) return BT_ERR;
  } else {
    s->shardLo = 0;
    s->shardHi = nFlat;
  }
  size_t per = (size_t)(bucketMb * 1e6 / sizeof(float));
  if (per < 1) per = 1;
  /* MPI counts are int: keep every bucket below 2^30 elements. */
  if (per > ((size_t)1 << 30)) per = (size_t)1 << 30;
  s->nBucket = (int)((nFlat + per - 1) / per);
  s->aBucket = bt_calloc((size_t)s->nBucket, sizeof(bt_bucket), "buckets");
  if (!s->aBucket) return BT_ERR;
  for (int b = 0; b < s->nBucket; b++) {
    bt_bucket *pB = &s->aBucket[b];
    pB->hi = nFlat - (size_t)b * per;
    pB->lo = pB->hi > per ? pB->hi - per : 0;
    if (s->zero) {
      pB->aCount = bt_calloc((size_t)s->world, sizeof(size_t), "bucket counts");
      if (!pB->aCount) return BT_ERR;
      size_t S = nFlat / (size_t)s->world;
      for (int r = 0; r < s->world; r++) {
        size_t a = pB->lo > (size_t)r * S ? pB->lo : (size_t)r * S;
        size_t e = pB->hi < (size_t)(r + 1) * S ? pB->hi : (size_t)(r + 1) * S;
        pB->aCount[r] = e > a ? e - a : 0;
      }
      size_t a = pB->lo > s->shardLo ? pB->lo : s->shardLo;
      pB->recvOff = a - s->shardLo;
    }
  }
  return BT_OK;
}

void bt_grad_sync_free(bt_grad_sync *s) {
  if (s->aBucket)
    for (int b = 0; b < s->nBucket; b++) free(s->aBucket[b].aCount);
  free(s->aBucket);
  if (s->shardGrad) bt_mem_free(s->pModel->be, s->shardGrad);
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
    rc = bt_comm_reduce_scatter_v(s->pComm, g + pB->lo,
                                  s->shardGrad + pB->recvOff, pB->aCount,
                                  BT_F32, BT_SUM, &pB->req);
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
      if (bt_comm_wait(s->pComm, pB->req) != BT_OK) return BT_ERR;
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

float *bt_grad_sync_grad_at(bt_grad_sync *s, size_t x) {
  BT_ASSERT(x >= s->shardLo && x <= s->shardHi);
  if (s->zero) return s->shardGrad + (x - s->shardLo);
  return s->pModel->grads + x;
}
