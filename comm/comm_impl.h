/*
 * comm_impl.h: private to the communicator (comm*.c, cuda/comm_nccl.c).
 *
 * The public handle (bt_comm) carries identity (rank, world, node-local
 * rank), the watchdog context and a pointer to a table of data-plane
 * functions (bt_comm_ops). Three files implement the table:
 *   comm_single.c     world size 1 without a launcher: no MPI call at all
 *   comm_mpi.c        MPI non-blocking collectives on host memory
 *   cuda/comm_nccl.c  NCCL on device memory (CUDA builds only)
 * comm.c owns everything that does not depend on the implementation:
 * argument checks, the request free-list, the polling wait loop with its
 * watchdog, the whole-step watchdog thread, and the host (control-plane)
 * helpers, which always use comm_mpi.c's primitives (or local copies).
 */
#ifndef BATON_COMM_IMPL_H
#define BATON_COMM_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include <mpi.h>

#include "comm/comm.h"

#define BT_COMM_LABEL_MAX 96
#define BT_COMM_HOST_MAX 64

typedef enum bt_comm_opkind {
  BT_OPK_ALLREDUCE = 0,
  BT_OPK_REDUCE_SCATTER,
  BT_OPK_ALL_GATHER,
  BT_OPK_BROADCAST,
  BT_OPK_BARRIER,
} bt_comm_opkind;

/* One in-flight operation. Lives on pComm's free-list between uses, so the
 * hot path allocates nothing after warm-up. Fields below "state" are
 * (re)set by each start; pEvent survives reuse (the NCCL implementation
 * creates its CUDA event once per request object). */
struct bt_comm_req {
  bt_comm_req *pNext;  /* free-list link (only while free) */
  int bInFlight;       /* 1 from start to completion: catches double waits */
  /* state of the current operation */
  bt_comm_opkind eKind;
  size_t n;            /* element count (per rank for RS/AG) */
  bt_dtype eType;
  long step;           /* context at start, for watchdog/error messages */
  long long seq;       /* index of this collective on every rank (0, 1, ..) */
  char zLabel[BT_COMM_LABEL_MAX];
  MPI_Request mpiReq;  /* MPI implementation */
  /* Copy to do after completion (MPI in-place reduce_scatter puts the
   * result at the start of the send buffer, NCCL's in-place form wants it
   * at offset rank * n). nCopy == 0: nothing to do. */
  void *pCopyDst;
  const void *pCopySrc;
  size_t nCopy;
  void *pEvent;        /* NCCL: cudaEvent_t recorded after the op */
  /* reduce_scatter_v: MPI needs its int count/displacement arrays alive
   * until the operation completes, so they live on the request (grown on
   * demand, kept on the free-list). */
  int *aCountInt;
  int nCountCap;
};

/* The data-plane table. Each start function fills *pReq's MPI request /
 * event; comm.c has already validated arguments and filled the generic
 * fields. xTest sets *pDone and never blocks; it returns BT_ERR (message
 * set) when the operation failed. xReqFree releases per-request resources
 * (the CUDA event) when the free-list is torn down. */
typedef struct bt_comm_ops {
  const char *zName;
  int (*xAllreduce)(bt_comm *, void *pBuf, size_t n, bt_dtype, bt_redop,
                    bt_comm_req *);
  int (*xReduceScatter)(bt_comm *, const void *pSend, void *pRecv,
                        size_t nPerRank, bt_dtype, bt_redop, bt_comm_req *);
  int (*xAllGather)(bt_comm *, const void *pSend, void *pRecv,
                    size_t nPerRank, bt_dtype, bt_comm_req *);
  int (*xReduceScatterV)(bt_comm *, const void *pSend, void *pRecv,
                         const size_t *aCount, bt_dtype, bt_redop,
                         bt_comm_req *);
  int (*xBroadcast)(bt_comm *, void *pBuf, size_t n, bt_dtype, int root,
                    bt_comm_req *);
  int (*xBarrier)(bt_comm *, bt_comm_req *);
  int (*xTest)(bt_comm *, bt_comm_req *, int *pDone);
  /* bt_comm_wait_stream: orders the compute stream after the operation
   * without blocking the host. NULL (MPI): a host wait instead. */
  int (*xWaitStream)(bt_comm *, bt_comm_req *);
  /* Called once by the wait loop when the watchdog fires, before the job
   * is aborted (NCCL: ncclCommAbort so the GPU kernels stop). May be NULL. */
  void (*xOnWatchdog)(bt_comm *);
  void (*xReqFree)(bt_comm *, bt_comm_req *);
  void (*xFree)(bt_comm *); /* implementation state; may be NULL */
} bt_comm_ops;

struct bt_comm {
  const bt_comm_ops *pOps;
  int rank, world;
  int localRank, localWorld;
  int bMpi;          /* MPI initialised and usable (by us or before us) */
  int bOwnMpi;       /* we called MPI_Init_thread: we finalize */
  MPI_Comm commLocal; /* node-local communicator, MPI_COMM_NULL if no MPI */
  MPI_Op opSumU8;     /* wrapping u8 sum (comm_mpi.c), MPI_OP_NULL if none */
  int cudaDevice;    /* device bound at init (CUDA builds), -1 if none */

  double spinSec;      /* busy-poll (with sched_yield) before napping */
  bt_comm_req *pFree; /* request free-list (main thread only) */
  int nReqLive;       /* requests handed out and not yet completed */

  /* Watchdog state, shared with the watchdog thread: under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* wakes the thread early when it must stop */
  double timeout;          /* seconds; <= 0 disables */
  long step;
  char zOp[BT_COMM_LABEL_MAX];
  double tContext;         /* bt_time_now() of the last set_context */
  int bThread;             /* thread started */
  int bThreadStop;         /* asks the thread to return */
  pthread_t thread;
  atomic_int bAborting;    /* first watchdog to fire owns the abort */
  /* Who the main thread is waiting for (comm.c "Heartbeats"), for the
   * thread's message: under mu, set while a wait is in its slow phase. */
  int bWaitSlow;           /* the main thread waits past hbAfter */
  char zWaitFor[160];      /* "rank R on host H (last seen at step S)..." */

  /* Heartbeats (comm.c): main thread only. */
  long long seqNext;       /* collectives started by this rank so far */
  long lastDoneStep;       /* step of the newest collective completed here */
  MPI_Comm commHb;         /* dup of MPI_COMM_WORLD; MPI_COMM_NULL if none */
  char *azHost;            /* world x BT_COMM_HOST_MAX: every rank's host */
  long long *aHbSend;      /* world x 3: per-peer send buffers */
  MPI_Request *aHbReq;     /* world: the send to each peer in flight */
  long long *aHbSeen;      /* world x 2: peer's (started, step); -1: never */
  long long aHbIn[3];      /* the posted receive's buffer */
  MPI_Request hbRecv;      /* MPI_REQUEST_NULL when none posted */

  void *pImpl;             /* implementation state (NCCL) */
};

/* ---- shared by the implementations ------------------------------------ */

size_t bt_comm_dtype_size(bt_dtype eType);
const char *bt_comm_dtype_name(bt_dtype eType);
const char *bt_comm_op_name(bt_comm_opkind eKind);

extern const bt_comm_ops bt_comm_single_ops;
extern const bt_comm_ops bt_comm_mpi_ops;
/* Creates / frees the MPI-side state the MPI table needs (the u8 sum). */
int bt_comm_mpi_setup(bt_comm *pComm);
void bt_comm_mpi_teardown(bt_comm *pComm);

/* Checks an MPI return code: 1 when MPI_SUCCESS, else records
 * "<call> failed: <MPI error string> (file:line, rank R@host)" and returns
 * 0. Used as `if (!BT_MPI_OK(pComm, MPI_X(...))) return BT_ERR;` so that
 * every return stays visible at the call site. */
int bt_comm_mpi_ok(const bt_comm *pComm, int rc, const char *zCall,
                   const char *zFile, int line);
#define BT_MPI_OK(pComm, call)                                                 \
  bt_comm_mpi_ok((pComm), (call), #call, __FILE__, __LINE__)

/* The watchdog's last act: prints "watchdog: no progress for <waited> s in
 * <zWhat> at step <step>[; waiting for rank R on host H (last seen at step
 * T)]; aborting the job" (the part in brackets when the main thread is in
 * the slow phase of a wait, comm.c "heartbeats"), lets the implementation abort
 * its own resources (xOnWatchdog) and calls bt_comm_abort(BT_EXIT_WATCHDOG).
 * Safe from any thread; only the first caller per process proceeds. */
void bt_comm_watchdog_fire(bt_comm *pComm, double waited, long step,
                           const char *zWhat) __attribute__((noreturn));
/* The current timeout (seconds, <= 0: none), read under the lock. */
double bt_comm_timeout_get(bt_comm *pComm);

/* Polls req to completion under the watchdog (comm.c). Does not free req. */
int bt_comm_wait_poll(bt_comm *pComm, bt_comm_req *req);

/* Host-memory MPI collectives on MPI_COMM_WORLD used by the control plane
 * and by the NCCL bootstrap (comm_mpi.c); blocking, watchdog-guarded. */
int bt_comm_mpi_host_bcast(bt_comm *pComm, void *pBuf, size_t nByte, int root,
                           const char *zWhat);

#ifdef BATON_HAVE_CUDA
/* cuda/comm_nccl.c */
int bt_comm_cuda_bind_device(bt_comm *pComm); /* at init */
int bt_comm_nccl_attach(bt_comm *pComm, void *pComputeStream);
extern const bt_comm_ops bt_comm_nccl_ops;
#endif

#endif /* BATON_COMM_IMPL_H */
