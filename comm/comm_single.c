/*
 * comm_single.c: the world-size-1 data plane used when baton runs without
 * a launcher. No MPI call is made. Every collective completes at start:
 * allreduce and broadcast leave the buffer as it is (the sum/max/min over
 * one rank is the rank's own value), reduce_scatter and all_gather copy the
 * caller's single block. comm.c has validated the arguments (root 0, the
 * buffers either disjoint or in the canonical in-place layout, which for
 * one rank means pSend == pRecv).
 */
#include <string.h>

#include "base/util.h"
#include "comm/comm_impl.h"

static int single_allreduce(bt_comm *pComm, void *pBuf, size_t n,
                            bt_dtype eType, bt_redop eOp, bt_comm_req *req) {
  (void)pComm; (void)pBuf; (void)n; (void)eType; (void)eOp; (void)req;
  return BT_OK;
}

static int single_reduce_scatter(bt_comm *pComm, const void *pSend,
                                 void *pRecv, size_t nPerRank, bt_dtype eType,
                                 bt_redop eOp, bt_comm_req *req) {
  (void)pComm; (void)eOp; (void)req;
  if (pSend != pRecv && nPerRank > 0)
    memmove(pRecv, pSend, nPerRank * bt_comm_dtype_size(eType));
  return BT_OK;
}

static int single_reduce_scatter_v(bt_comm *pComm, const void *pSend,
                                   void *pRecv, const size_t *aCount,
                                   bt_dtype eType, bt_redop eOp,
                                   bt_comm_req *req) {
  (void)pComm; (void)eOp; (void)req;
  if (pSend != pRecv && aCount[0] > 0)
    memmove(pRecv, pSend, aCount[0] * bt_comm_dtype_size(eType));
  return BT_OK;
}

static int single_all_gather(bt_comm *pComm, const void *pSend, void *pRecv,
                             size_t nPerRank, bt_dtype eType,
                             bt_comm_req *req) {
  (void)pComm; (void)req;
  if (pSend != pRecv && nPerRank > 0)
    memmove(pRecv, pSend, nPerRank * bt_comm_dtype_size(eType));
  return BT_OK;
}

static int single_broadcast(bt_comm *pComm, void *pBuf, size_t n,
                            bt_dtype eType, int root, bt_comm_req *req) {
  (void)pComm; (void)pBuf; (void)n; (void)eType; (void)root; (void)req;
  return BT_OK;
}

static int single_barrier(bt_comm *pComm, bt_comm_req *req) {
  (void)pComm; (void)req;
  return BT_OK;
}

static int single_test(bt_comm *pComm, bt_comm_req *req, int *pDone) {
  (void)pComm; (void)req;
  *pDone = 1;
  return BT_OK;
}

const bt_comm_ops bt_comm_single_ops = {
    .zName = "single",
    .xAllreduce = single_allreduce,
    .xReduceScatter = single_reduce_scatter,
    .xReduceScatterV = single_reduce_scatter_v,
    .xAllGather = single_all_gather,
    .xBroadcast = single_broadcast,
    .xBarrier = single_barrier,
    .xTest = single_test,
    .xOnWatchdog = NULL,
    .xReqFree = NULL,
    .xFree = NULL,
};
