/*
 * comm_nccl.c: the NCCL data plane (CUDA builds only) and the rank -> GPU
 * binding done at bt_comm_init.
 *
 * Streams and ordering. The backend computes on its compute stream (the
 * pointer given to bt_comm_attach_backend; NULL = legacy default stream).
 * NCCL runs on a stream of its own, created cudaStreamNonBlocking so that
 * it never serialises implicitly with the default stream. Each operation:
 *   1. records evCompute on the compute stream and makes the comm stream
 *      wait for it, so the op sees every kernel queued before the call;
 *   2. enqueues the NCCL collective on the comm stream;
 *   3. records the request's own event (req->pEvent) after it.
 * bt_comm_test/wait: once that event has completed, the compute stream is
 * made to wait for it (cudaStreamWaitEvent) so later kernels see the
 * result. bt_comm_wait blocks the host until the event completes: that is
 * what lets the watchdog see a hang (a stopped peer never completes the
 * kernel) instead of discovering it at some later synchronisation.
 *
 * Non-blocking communicator (config.blocking = 0). Any NCCL call may return
 * ncclInProgress; we then poll ncclCommGetAsyncError until it leaves that
 * state before issuing another NCCL call, as the NCCL guide requires, under
 * the same watchdog as any wait. While waiting for an op we also poll
 * ncclCommGetAsyncError: an asynchronous error (a peer's network died)
 * aborts the communicator (ncclCommAbort) and returns BT_ERR naming the op,
 * step, rank and host. After that every operation fails fast (bDead).
 *
 * Bootstrap: rank 0 makes the ncclUniqueId and broadcasts it over MPI (no
 * MPI at world size 1); readiness and init success are agreed with MIN
 * allreduces (every rank runs the same MPI sequence whatever failed) so a
 * failure on one rank fails every rank with a message instead of a hang.
 *
 * None of this can run on the build machine (no GPU); it must compile and
 * link, and is exercised on GPU machines by the gpu-labelled tests.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "base/util.h"
#include "comm/comm_impl.h"

typedef struct nccl_state {
  ncclComm_t comm;
  cudaStream_t stream;  /* comm stream, owned */
  cudaStream_t compute; /* caller's compute stream, not owned (may be 0) */
  cudaEvent_t evCompute;
  int *pScratch;        /* one device int: the barrier's allreduce */
  int bComm;            /* comm created */
  int bDead;            /* comm aborted: every op fails */
} nccl_state;

/* ---- check helpers: `if (!BT_CUDA_OK(p, call)) return BT_ERR;` ---------- */

static int cuda_ok(const bt_comm *pComm, cudaError_t e, const char *zCall,
                   const char *zFile, int line) {
  if (e == cudaSuccess) return 1;
  bt_err_set("%s failed: %s (%s) (%s:%d, rank %d@%s)", zCall,
             cudaGetErrorString(e), cudaGetErrorName(e), zFile, line,
             pComm->rank, bt_log_host());
  return 0;
}
#define BT_CUDA_OK(pComm, call)                                                \
  cuda_ok((pComm), (call), #call, __FILE__, __LINE__)

static void nccl_abort_comm(bt_comm *pComm) {
  nccl_state *s = pComm->pImpl;
  if (s && s->bComm && !s->bDead) {
    s->bDead = 1;
    ncclCommAbort(s->comm);
  }
}

/* ncclSuccess and ncclInProgress are fine (the caller settles the latter);
 * anything else records the error, aborts the communicator and returns 0. */
static int nccl_ok(bt_comm *pComm, ncclResult_t r, const char *zCall,
                   const char *zFile, int line) {
  if (r == ncclSuccess || r == ncclInProgress) return 1;
  nccl_state *s = pComm->pImpl;
  const char *zLast = s && s->bComm ? ncclGetLastError(s->comm) : "";
  bt_err_set("%s failed: %s%s%s (%s:%d, rank %d@%s); NCCL communicator "
             "aborted",
             zCall, ncclGetErrorString(r), zLast && *zLast ? ": " : "",
             zLast ? zLast : "", zFile, line, pComm->rank, bt_log_host());
  nccl_abort_comm(pComm);
  return 0;
}
#define BT_NCCL_OK(pComm, call)                                                \
  nccl_ok((pComm), (call), #call, __FILE__, __LINE__)

static void nap(long it) {
  if (it < 64) return;
  struct timespec ts = {0, it < 1024 ? 50000 : 200000};
  nanosleep(&ts, NULL);
}

/* Waits until the communicator leaves ncclInProgress (NCCL's rule for
 * non-blocking communicators), under the watchdog. */
static int nccl_settle(bt_comm *pComm, ncclComm_t comm, const char *zWhat) {
  double timeout = bt_comm_timeout_get(pComm);
  double t0 = bt_time_now();
  for (long it = 0;; it++) {
    ncclResult_t ar = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm, &ar);
    if (!BT_NCCL_OK(pComm, r)) return bt_err_prefix("%s: ", zWhat);
    if (ar == ncclSuccess) return BT_OK;
    if (ar != ncclInProgress) {
      nccl_ok(pComm, ar, "ncclCommGetAsyncError (asynchronous error)",
              __FILE__, __LINE__);
      return bt_err_prefix("%s: ", zWhat);
    }
    nap(it);
    double waited = bt_time_now() - t0;
    if (timeout > 0 && waited > timeout)
      bt_comm_watchdog_fire(pComm, waited, pComm->step, zWhat);
  }
}

/* ---- device binding (called by bt_comm_init) ------------------------- */

int bt_comm_cuda_bind_device(bt_comm *pComm) {
  const char *zBind = getenv("BATON_CUDA_BIND");
  if (zBind && strcmp(zBind, "0") == 0) return BT_OK;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    (void)cudaGetLastError(); /* clear it: no GPU is not an error here */
    bt_log_debug("comm: no CUDA device (%s): no GPU binding",
                 e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
    return BT_OK;
  }
  int dev = bt_comm_pick_device(pComm->localRank, n);
  if (!BT_CUDA_OK(pComm, cudaSetDevice(dev)))
    return bt_err_prefix("binding local rank %d to GPU %d of %d: ",
                         pComm->localRank, dev, n);
  if (pComm->localWorld > n && pComm->localRank == 0)
    bt_log_warn("comm: %d ranks on this node share %d GPU(s)",
                pComm->localWorld, n);
  pComm->cudaDevice = dev;
  return BT_OK;
}

/* ---- operations -------------------------------------------------------- */

static ncclDataType_t nccl_dtype(bt_dtype eType) {
  switch (eType) {
    case BT_F32: return ncclFloat32;
    case BT_F64: return ncclFloat64;
    case BT_I32: return ncclInt32;
    case BT_I64: return ncclInt64;
    case BT_U8: return ncclUint8;
  }
  BT_ASSERT(!"unknown bt_dtype");
  return ncclFloat32;
}

static ncclRedOp_t nccl_op(bt_redop eOp) {
  switch (eOp) {
    case BT_SUM: return ncclSum;
    case BT_MAX: return ncclMax;
    case BT_MIN: return ncclMin;
  }
  BT_ASSERT(!"unknown bt_redop");
  return ncclSum;
}

/* Step 1 of the header: the comm stream waits for the compute stream. */
static int nccl_begin(bt_comm *pComm, nccl_state **ps) {
  nccl_state *s = pComm->pImpl;
  *ps = s;
  if (s->bDead)
    return bt_err_set("NCCL communicator of rank %d@%s was aborted after an "
                      "earlier error", pComm->rank, bt_log_host());
  if (!BT_CUDA_OK(pComm, cudaEventRecord(s->evCompute, s->compute)))
    return BT_ERR;
  if (!BT_CUDA_OK(pComm, cudaStreamWaitEvent(s->stream, s->evCompute, 0)))
    return BT_ERR;
  return BT_OK;
}

/* Steps 2b-3: settle an in-progress enqueue, record the request's event. */
static int nccl_end(bt_comm *pComm, nccl_state *s, ncclResult_t r,
                    const char *zCall, bt_comm_req *req) {
  if (!nccl_ok(pComm, r, zCall, __FILE__, __LINE__)) return BT_ERR;
  if (r == ncclInProgress && nccl_settle(pComm, s->comm, zCall))
    return BT_ERR;
  if (!req->pEvent) {
    cudaEvent_t ev;
    if (!BT_CUDA_OK(pComm, cudaEventCreateWithFlags(
                               &ev, cudaEventDisableTiming)))
      return BT_ERR;
    req->pEvent = ev;
  }
  if (!BT_CUDA_OK(pComm, cudaEventRecord((cudaEvent_t)req->pEvent,
                                         s->stream)))
    return BT_ERR;
  return BT_OK;
}

static int nccl_allreduce(bt_comm *pComm, void *pBuf, size_t n,
                          bt_dtype eType, bt_redop eOp, bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  ncclResult_t r = ncclAllReduce(pBuf, pBuf, n, nccl_dtype(eType),
                                 nccl_op(eOp), s->comm, s->stream);
  return nccl_end(pComm, s, r, "ncclAllReduce", req);
}

static int nccl_reduce_scatter(bt_comm *pComm, const void *pSend, void *pRecv,
                               size_t nPerRank, bt_dtype eType, bt_redop eOp,
                               bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  /* NCCL's in-place rule is comm.h's: no copy needed. */
  ncclResult_t r = ncclReduceScatter(pSend, pRecv, nPerRank, nccl_dtype(eType),
                                     nccl_op(eOp), s->comm, s->stream);
  return nccl_end(pComm, s, r, "ncclReduceScatter", req);
}

/* NCCL has no variable-count reduce-scatter: one ncclReduce per rank with
 * a non-empty block, rooted at that rank, fused into one group. */
static int nccl_reduce_scatter_v(bt_comm *pComm, const void *pSend,
                                 void *pRecv, const size_t *aCount,
                                 bt_dtype eType, bt_redop eOp,
                                 bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  size_t es = bt_comm_dtype_size(eType), off = 0;
  ncclResult_t r = ncclGroupStart();
  for (int q = 0; q < pComm->world && r == ncclSuccess; q++) {
    if (aCount[q] > 0)
      r = ncclReduce((const char *)pSend + off * es,
                     q == pComm->rank ? pRecv : NULL, aCount[q],
                     nccl_dtype(eType), nccl_op(eOp), q, s->comm, s->stream);
    off += aCount[q];
  }
  ncclResult_t r2 = ncclGroupEnd();
  if (r == ncclSuccess) r = r2;
  return nccl_end(pComm, s, r, "ncclReduce (reduce_scatter_v group)", req);
}

static int nccl_all_gather(bt_comm *pComm, const void *pSend, void *pRecv,
                           size_t nPerRank, bt_dtype eType, bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  ncclResult_t r = ncclAllGather(pSend, pRecv, nPerRank, nccl_dtype(eType),
                                 s->comm, s->stream);
  return nccl_end(pComm, s, r, "ncclAllGather", req);
}

static int nccl_broadcast(bt_comm *pComm, void *pBuf, size_t n,
                          bt_dtype eType, int root, bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  ncclResult_t r = ncclBroadcast(pBuf, pBuf, n, nccl_dtype(eType), root,
                                 s->comm, s->stream);
  return nccl_end(pComm, s, r, "ncclBroadcast", req);
}

/* NCCL has no barrier: a one-int allreduce on the comm stream, whose
 * completion (waited on by the host) means every rank reached it. */
static int nccl_barrier(bt_comm *pComm, bt_comm_req *req) {
  nccl_state *s;
  if (nccl_begin(pComm, &s)) return BT_ERR;
  ncclResult_t r = ncclAllReduce(s->pScratch, s->pScratch, 1, ncclInt32,
                                 ncclSum, s->comm, s->stream);
  return nccl_end(pComm, s, r, "ncclAllReduce (barrier)", req);
}

static int nccl_test(bt_comm *pComm, bt_comm_req *req, int *pDone) {
  nccl_state *s = pComm->pImpl;
  *pDone = 0;
  cudaError_t e = cudaEventQuery((cudaEvent_t)req->pEvent);
  if (e == cudaSuccess) {
    if (!BT_CUDA_OK(pComm, cudaStreamWaitEvent(s->compute,
                                               (cudaEvent_t)req->pEvent, 0)))
      return BT_ERR;
    *pDone = 1;
    return BT_OK;
  }
  if (e != cudaErrorNotReady) {
    cuda_ok(pComm, e, "cudaEventQuery", __FILE__, __LINE__);
    nccl_abort_comm(pComm);
    return BT_ERR;
  }
  if (s->bDead)
    return bt_err_set("NCCL communicator of rank %d@%s was aborted",
                      pComm->rank, bt_log_host());
  ncclResult_t ar = ncclSuccess;
  if (!BT_NCCL_OK(pComm, ncclCommGetAsyncError(s->comm, &ar))) return BT_ERR;
  if (!nccl_ok(pComm, ar, "NCCL asynchronous error", __FILE__, __LINE__))
    return BT_ERR;
  return BT_OK;
}

/* Stream order only: the compute stream waits for the request's event.
 * The host goes on; an operation that never completes stalls the step's
 * read-back, which the whole-step watchdog (comm.h) turns into an abort,
 * and an asynchronous NCCL error shows at the next test or wait. */
static int nccl_wait_stream(bt_comm *pComm, bt_comm_req *req) {
  nccl_state *s = pComm->pImpl;
  if (!BT_CUDA_OK(pComm, cudaStreamWaitEvent(s->compute,
                                             (cudaEvent_t)req->pEvent, 0)))
    return BT_ERR;
  return BT_OK;
}

static void nccl_on_watchdog(bt_comm *pComm) {
  /* Stops the kernels that wait for the missing peer so that the process
   * can die cleanly (and the GPU is usable by the next job at once). */
  nccl_abort_comm(pComm);
}

static void nccl_req_free(bt_comm *pComm, bt_comm_req *req) {
  (void)pComm;
  if (req->pEvent) cudaEventDestroy((cudaEvent_t)req->pEvent);
  req->pEvent = NULL;
}

static void nccl_free(bt_comm *pComm) {
  nccl_state *s = pComm->pImpl;
  if (!s) return;
  if (s->bComm && !s->bDead) {
    /* Finalize flushes outstanding work (in progress on a non-blocking
     * communicator), then destroy frees it. */
    ncclResult_t r = ncclCommFinalize(s->comm);
    if (!nccl_ok(pComm, r, "ncclCommFinalize", __FILE__, __LINE__) ||
        (r == ncclInProgress && nccl_settle(pComm, s->comm,
                                            "NCCL communicator finalize"))) {
      bt_log_warn("%s", bt_err_msg());
    }
    if (!s->bDead) ncclCommDestroy(s->comm);
  }
  if (s->pScratch) cudaFree(s->pScratch);
  if (s->evCompute) cudaEventDestroy(s->evCompute);
  if (s->stream) cudaStreamDestroy(s->stream);
  free(s);
  pComm->pImpl = NULL;
}

const bt_comm_ops bt_comm_nccl_ops = {
    .zName = "nccl",
    .xAllreduce = nccl_allreduce,
    .xReduceScatter = nccl_reduce_scatter,
    .xReduceScatterV = nccl_reduce_scatter_v,
    .xAllGather = nccl_all_gather,
    .xBroadcast = nccl_broadcast,
    .xBarrier = nccl_barrier,
    .xTest = nccl_test,
    .xWaitStream = nccl_wait_stream,
    .xOnWatchdog = nccl_on_watchdog,
    .xReqFree = nccl_req_free,
    .xFree = nccl_free,
};

/* ---- attach -------------------------------------------------------------- */

/* This rank's CUDA resources: the comm stream, the ordering event and the
 * barrier's scratch int. */
static int nccl_local_setup(bt_comm *pComm, nccl_state *s) {
  if (!BT_CUDA_OK(pComm, cudaStreamCreateWithFlags(&s->stream,
                                                   cudaStreamNonBlocking)))
    return BT_ERR;
  if (!BT_CUDA_OK(pComm, cudaEventCreateWithFlags(&s->evCompute,
                                                  cudaEventDisableTiming)))
    return BT_ERR;
  if (!BT_CUDA_OK(pComm, cudaMalloc((void **)&s->pScratch, sizeof(int))))
    return BT_ERR;
  if (!BT_CUDA_OK(pComm, cudaMemset(s->pScratch, 0, sizeof(int))))
    return BT_ERR;
  return BT_OK;
}

/* Agreement step: every rank learns whether all ranks are ok. Keeps the
 * sequence of MPI collectives identical on every rank whatever failed
 * where, so a local failure becomes a clean error on all ranks instead of
 * mismatched collectives. zErr keeps this rank's own message. */
static int nccl_agree(bt_comm *pComm, int ok, const char *zStage,
                      char *zErr, size_t nErr) {
  if (!ok && !zErr[0]) snprintf(zErr, nErr, "%s", bt_err_msg());
  int all = ok;
  if (bt_comm_host_allreduce(pComm, &all, 1, BT_I32, BT_MIN)) return BT_ERR;
  if (all) return BT_OK;
  if (ok)
    return bt_err_set("NCCL %s failed on another rank (see its message); "
                      "rank %d@%s gives up too",
                      zStage, pComm->rank, bt_log_host());
  return bt_err_set("%s", zErr);
}

int bt_comm_nccl_attach(bt_comm *pComm, void *pComputeStream) {
  if (pComm->cudaDevice < 0)
    return bt_err_set("NCCL communicator on rank %d@%s: no CUDA device is "
                      "bound (none found at init, or BATON_CUDA_BIND=0)",
                      pComm->rank, bt_log_host());
  nccl_state *s = bt_calloc(1, sizeof *s, "NCCL communicator state");
  if (!s) return BT_ERR;
  s->compute = (cudaStream_t)pComputeStream;
  pComm->pImpl = s;
  char zErr[512] = "";
  int ok = nccl_local_setup(pComm, s) == BT_OK;

  /* Rank 0 makes the id; every rank takes part in the broadcast whatever
   * happened before, and learns from `ok` whether rank 0 is ready. */
  struct {
    int ok;
    ncclUniqueId id;
  } boot;
  memset(&boot, 0, sizeof boot);
  if (pComm->rank == 0)
    boot.ok = ok && BT_NCCL_OK(pComm, ncclGetUniqueId(&boot.id));
  if (bt_comm_mpi_host_bcast(pComm, &boot, sizeof boot, 0,
                             "NCCL unique id broadcast"))
    goto fail; /* MPI itself failed: no agreement possible */
  if (pComm->rank != 0 && ok && !boot.ok) {
    ok = 0;
    bt_err_set("rank 0 could not prepare the NCCL communicator");
  }
  if (pComm->rank == 0) ok = boot.ok;
  if (nccl_agree(pComm, ok, "setup", zErr, sizeof zErr)) goto fail;

  /* Every rank is ready: create the communicator (non-blocking). */
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&s->comm, pComm->world, boot.id,
                                          pComm->rank, &cfg);
  ok = nccl_ok(pComm, r, "ncclCommInitRankConfig", __FILE__, __LINE__);
  if (ok) {
    s->bComm = 1;
    ok = nccl_settle(pComm, s->comm, "NCCL communicator init") == BT_OK;
  }
  if (nccl_agree(pComm, ok, "communicator init", zErr, sizeof zErr))
    goto fail;

  pComm->pOps = &bt_comm_nccl_ops;
  bt_log_info("comm: NCCL %d.%d.%d over %d rank(s), non-blocking "
              "communicator on its own stream",
              NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH, pComm->world);
  return BT_OK;

fail:
  snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
  nccl_abort_comm(pComm);
  nccl_free(pComm);
  return bt_err_set("%s", zErr);
}
