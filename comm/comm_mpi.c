/*
 * comm_mpi.c: the MPI data plane: non-blocking collectives on host memory
 * over MPI_COMM_WORLD. A blocking call is start + comm.c's polling wait, so
 * the watchdog guards both forms alike.
 *
 * Mapping: allreduce -> MPI_Iallreduce(MPI_IN_PLACE) (callers pass one
 * buffer), reduce_scatter -> MPI_Ireduce_scatter_block, all_gather ->
 * MPI_Iallgather, broadcast -> MPI_Ibcast, barrier -> MPI_Ibarrier.
 *
 * In-place forms follow NCCL's convention (comm.h): all_gather with
 * pSend == pRecv + rank * n maps directly to MPI_IN_PLACE. reduce_scatter
 * with pRecv == pSend + rank * n runs MPI_IN_PLACE on pSend (MPI leaves the
 * result at the start of the buffer), and the request carries a memmove to
 * rank's block that comm.c performs once the operation has completed.
 *
 * u8 sums wrap modulo 256, as NCCL's do. Open MPI's op/avx component
 * saturates 8- and 16-bit integer sums instead (open-mpi/ompi#8045, closed
 * "wontfix": overflow is undefined for MPI), which test_comm caught at 64
 * ranks; so BT_U8 + BT_SUM uses our own commutative MPI_Op.
 *
 * MPI counts are int: a single operation is limited to INT_MAX elements
 * (8 GiB of f32); callers bucket gradients far below that.
 *
 * bt_comm_host_ping (the straggler check's link probe) is the one
 * point-to-point exchange: not a collective, so it polls its own requests
 * here, with the same watchdog timeout.
 */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "comm/comm_impl.h"

static MPI_Datatype mpi_dtype(bt_dtype eType) {
  switch (eType) {
    case BT_F32: return MPI_FLOAT;
    case BT_F64: return MPI_DOUBLE;
    case BT_I32: return MPI_INT32_T;
    case BT_I64: return MPI_INT64_T;
    case BT_U8: return MPI_UINT8_T;
  }
  BT_ASSERT(!"unknown bt_dtype");
  return MPI_DATATYPE_NULL;
}

static void mpi_sum_u8(void *pIn, void *pInOut, int *pLen,
                       MPI_Datatype *pType) {
  (void)pType;
  const uint8_t *a = pIn;
  uint8_t *b = pInOut;
  for (int i = 0; i < *pLen; i++) b[i] = (uint8_t)(b[i] + a[i]);
}

int bt_comm_mpi_setup(bt_comm *pComm) {
  if (!BT_MPI_OK(pComm, MPI_Op_create(mpi_sum_u8, 1, &pComm->opSumU8)))
    return BT_ERR;
  return BT_OK;
}

void bt_comm_mpi_teardown(bt_comm *pComm) {
  if (pComm->opSumU8 != MPI_OP_NULL) MPI_Op_free(&pComm->opSumU8);
}

static MPI_Op mpi_op(const bt_comm *pComm, bt_redop eOp, bt_dtype eType) {
  switch (eOp) {
    case BT_SUM: return eType == BT_U8 ? pComm->opSumU8 : MPI_SUM;
    case BT_MAX: return MPI_MAX;
    case BT_MIN: return MPI_MIN;
  }
  BT_ASSERT(!"unknown bt_redop");
  return MPI_OP_NULL;
}

static int mpi_count(const bt_comm *pComm, size_t n, int *pCount) {
  if (n > (size_t)INT_MAX)
    return bt_err_set("%zu elements exceed MPI's int count limit (%d) on "
                      "rank %d@%s; split the buffer into buckets",
                      n, INT_MAX, pComm->rank, bt_log_host());
  *pCount = (int)n;
  return BT_OK;
}

static int mpi_allreduce(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                         bt_redop eOp, bt_comm_req *req) {
  int c = 0;
  if (mpi_count(pComm, n, &c)) return BT_ERR;
  if (!BT_MPI_OK(pComm, MPI_Iallreduce(MPI_IN_PLACE, pBuf, c, mpi_dtype(eType),
                                       mpi_op(pComm, eOp, eType),
                                       MPI_COMM_WORLD, &req->mpiReq)))
    return BT_ERR;
  return BT_OK;
}

static int mpi_reduce_scatter(bt_comm *pComm, const void *pSend, void *pRecv,
                              size_t nPerRank, bt_dtype eType, bt_redop eOp,
                              bt_comm_req *req) {
  int c = 0;
  if (mpi_count(pComm, nPerRank, &c)) return BT_ERR;
  size_t nByte = nPerRank * bt_comm_dtype_size(eType);
  int rc;
  if (nPerRank > 0 && (const char *)pRecv ==
                          (const char *)pSend + (size_t)pComm->rank * nByte) {
    /* NCCL-style in place: MPI writes block `rank` to the buffer start. */
    rc = MPI_Ireduce_scatter_block(MPI_IN_PLACE, (void *)pSend, c,
                                   mpi_dtype(eType), mpi_op(pComm, eOp, eType),
                                   MPI_COMM_WORLD, &req->mpiReq);
    if (pComm->rank != 0) {
      req->pCopyDst = pRecv;
      req->pCopySrc = pSend;
      req->nCopy = nByte;
    }
  } else {
    rc = MPI_Ireduce_scatter_block(pSend, pRecv, c, mpi_dtype(eType),
                                   mpi_op(pComm, eOp, eType), MPI_COMM_WORLD,
                                   &req->mpiReq);
  }
  if (!BT_MPI_OK(pComm, rc)) return BT_ERR;
  return BT_OK;
}

static int mpi_reduce_scatter_v(bt_comm *pComm, const void *pSend,
                                void *pRecv, const size_t *aCount,
                                bt_dtype eType, bt_redop eOp,
                                bt_comm_req *req) {
  int W = pComm->world;
  if (req->nCountCap < W) {
    int *a = realloc(req->aCountInt, (size_t)W * sizeof(int));
    if (!a)
      return bt_err_set("rank %d: reduce_scatter_v: out of memory for %d "
                        "counts", pComm->rank, W);
    req->aCountInt = a;
    req->nCountCap = W;
  }
  for (int r = 0; r < W; r++)
    if (mpi_count(pComm, aCount[r], &req->aCountInt[r])) return BT_ERR;
  if (!BT_MPI_OK(pComm, MPI_Ireduce_scatter(pSend, pRecv, req->aCountInt,
                                            mpi_dtype(eType),
                                            mpi_op(pComm, eOp, eType),
                                            MPI_COMM_WORLD, &req->mpiReq)))
    return BT_ERR;
  return BT_OK;
}

static int mpi_all_gather(bt_comm *pComm, const void *pSend, void *pRecv,
                          size_t nPerRank, bt_dtype eType, bt_comm_req *req) {
  int c = 0;
  if (mpi_count(pComm, nPerRank, &c)) return BT_ERR;
  size_t nByte = nPerRank * bt_comm_dtype_size(eType);
  int inPlace = nPerRank > 0 && (const char *)pSend ==
                                    (const char *)pRecv +
                                        (size_t)pComm->rank * nByte;
  int rc = MPI_Iallgather(inPlace ? MPI_IN_PLACE : pSend, inPlace ? 0 : c,
                          inPlace ? MPI_DATATYPE_NULL : mpi_dtype(eType),
                          pRecv, c, mpi_dtype(eType), MPI_COMM_WORLD,
                          &req->mpiReq);
  if (!BT_MPI_OK(pComm, rc)) return BT_ERR;
  return BT_OK;
}

static int mpi_broadcast(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                         int root, bt_comm_req *req) {
  int c = 0;
  if (mpi_count(pComm, n, &c)) return BT_ERR;
  if (!BT_MPI_OK(pComm, MPI_Ibcast(pBuf, c, mpi_dtype(eType), root,
                                   MPI_COMM_WORLD, &req->mpiReq)))
    return BT_ERR;
  return BT_OK;
}

static int mpi_barrier(bt_comm *pComm, bt_comm_req *req) {
  if (!BT_MPI_OK(pComm, MPI_Ibarrier(MPI_COMM_WORLD, &req->mpiReq)))
    return BT_ERR;
  return BT_OK;
}

static int mpi_test(bt_comm *pComm, bt_comm_req *req, int *pDone) {
  int flag = 0;
  if (!BT_MPI_OK(pComm, MPI_Test(&req->mpiReq, &flag, MPI_STATUS_IGNORE)))
    return BT_ERR;
  *pDone = flag;
  return BT_OK;
}

const bt_comm_ops bt_comm_mpi_ops = {
    .zName = "mpi",
    .xAllreduce = mpi_allreduce,
    .xReduceScatter = mpi_reduce_scatter,
    .xReduceScatterV = mpi_reduce_scatter_v,
    .xAllGather = mpi_all_gather,
    .xBroadcast = mpi_broadcast,
    .xBarrier = mpi_barrier,
    .xTest = mpi_test,
    .xWaitStream = NULL, /* host memory: bt_comm_wait_stream waits */
    .xOnWatchdog = NULL,
    .xReqFree = NULL,
    .xFree = NULL,
};

/* ---- link probe ------------------------------------------------------- */

enum { PING_TAG = 0x6274 }; /* "bt": only the ping sends point-to-point */

/* Polls one point-to-point request: MPI_Test + sched_yield for 1 ms, then
 * 100 us naps (ranks waiting for their turn must leave the cores to the
 * pair being timed); fires the watchdog after the timeout. */
static int ping_wait(bt_comm *pComm, MPI_Request *pReq) {
  double t0 = bt_time_now();
  for (;;) {
    int flag = 0;
    if (!BT_MPI_OK(pComm, MPI_Test(pReq, &flag, MPI_STATUS_IGNORE)))
      return BT_ERR;
    if (flag) return BT_OK;
    double waited = bt_time_now() - t0, timeout = bt_comm_timeout_get(pComm);
    if (timeout > 0 && waited > timeout) {
      pthread_mutex_lock(&pComm->mu);
      long step = pComm->step;
      pthread_mutex_unlock(&pComm->mu);
      bt_comm_watchdog_fire(pComm, waited, step, "link ping");
    }
    if (waited < 1e-3) {
      sched_yield();
    } else {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
    }
  }
}

static int ping_xfer(bt_comm *pComm, int peer, double *pVal, int bSend) {
  MPI_Request r;
  int rc = bSend ? MPI_Isend(pVal, 1, MPI_DOUBLE, peer, PING_TAG,
                             MPI_COMM_WORLD, &r)
                 : MPI_Irecv(pVal, 1, MPI_DOUBLE, peer, PING_TAG,
                             MPI_COMM_WORLD, &r);
  if (!BT_MPI_OK(pComm, rc)) return BT_ERR;
  return ping_wait(pComm, &r);
}

/* Rank 0: for each rank r in turn, send (r may start), receive r's ping,
 * answer it. Rank r: wait for its turn, then time send -> answer. */
int bt_comm_host_ping(bt_comm *pComm, double *pSeconds) {
  BT_ASSERT(pComm && pSeconds);
  *pSeconds = 0;
  if (!pComm->bMpi || pComm->world < 2) return BT_OK;
  double v = 0;
  if (pComm->rank == 0) {
    for (int r = 1; r < pComm->world; r++)
      if (ping_xfer(pComm, r, &v, 1) || ping_xfer(pComm, r, &v, 0) ||
          ping_xfer(pComm, r, &v, 1))
        return bt_err_prefix("link ping of rank %d: ", r);
    return BT_OK;
  }
  if (ping_xfer(pComm, 0, &v, 0)) return bt_err_prefix("link ping: ");
  double t0 = bt_time_now();
  if (ping_xfer(pComm, 0, &v, 1) || ping_xfer(pComm, 0, &v, 0))
    return bt_err_prefix("link ping: ");
  *pSeconds = bt_time_now() - t0;
  return BT_OK;
}
