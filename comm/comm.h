/*
 * comm.h: the communicator interface (docs/design.md: decision 3, ZeRO-1
 * reduce-scatter; decision 8, every rank can fail loudly).
 *
 * One interface, two implementations chosen at bt_comm_init():
 *   - MPI: every collective on host memory (CPU backend, and the fallback).
 *     Also used alone when baton is started without mpirun (world size 1,
 *     then no MPI call is made at all).
 *   - NCCL (GPU builds): collectives on device memory on a dedicated CUDA
 *     stream, ordered against compute with CUDA events; MPI bootstraps it
 *     (rank 0 makes the ncclUniqueId and broadcasts it).
 *
 * Every operation exists blocking (req == NULL) and non-blocking (req !=
 * NULL: *req receives a handle that bt_comm_wait() completes and frees).
 * Buffers of a non-blocking operation must not be touched until its wait.
 *
 * Watchdog: bt_comm_wait() and every blocking collective poll for progress
 * and give up after the configured timeout (bt_comm_set_timeout), printing
 * the operation and step they were waiting in (bt_comm_set_context), then
 * abort the job with exit code BT_EXIT_WATCHDOG instead of hanging.
 *
 * Reductions: BT_SUM on integers wraps on overflow (u8 modulo 256) in
 * every implementation, as NCCL does.
 *
 * Environment:
 *   BATON_COMM=mpi|single   force or forbid MPI (default: detect launcher)
 *   BATON_COMM_TIMEOUT=S    default watchdog timeout (600 s)
 *   BATON_COMM_SPIN_MS=M    busy-poll time of a wait before napping (20)
 *   BATON_CUDA_BIND=0       CUDA builds: do not cudaSetDevice at init
 *   BATON_FAULT=comm_stop:N@R  rank R SIGSTOPs itself at the start of its
 *                           Nth collective (watchdog tests, util.h)
 */
#ifndef BATON_COMM_H
#define BATON_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct bt_comm bt_comm;
typedef struct bt_comm_req bt_comm_req;

typedef enum bt_dtype {
  BT_F32 = 0,
  BT_F64 = 1,
  BT_I32 = 2,
  BT_I64 = 3,
  BT_U8 = 4,
} bt_dtype;

typedef enum bt_redop {
  BT_SUM = 0,
  BT_MAX = 1,
  BT_MIN = 2,
} bt_redop;

typedef enum bt_comm_kind {
  BT_COMM_AUTO = 0, /* NCCL if the backend is CUDA, else MPI */
  BT_COMM_MPI = 1,
  BT_COMM_NCCL = 2,
} bt_comm_kind;

/* Initialises MPI if the process was started by mpirun/srun (detected from
 * the environment) or world size 1 otherwise. Learns rank, world size and
 * the node-local rank (MPI_Comm_split_type SHARED). Call once, first thing
 * in main(); pargc/pargv are passed to MPI_Init.
 * Detection: OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, PMI_SIZE, PMI_FD,
 * MPI_LOCALNRANKS or MV2_COMM_WORLD_RANK in the environment means MPI
 * (MPI_Init_thread, MPI_THREAD_FUNNELED: only the main thread calls MPI);
 * BATON_COMM=mpi|single overrides. BATON_COMM_TIMEOUT sets the default
 * watchdog timeout (600 s otherwise). Calls bt_log_set_rank().
 * CUDA builds also bind the process to GPU bt_comm_pick_device(local_rank,
 * device_count) here (cudaSetDevice), before any backend creates handles;
 * no GPU: skipped.
 * On failure *ppComm is NULL; report and call bt_comm_abort(NULL, code). */
int bt_comm_init(bt_comm **ppComm, int *pargc, char ***pargv);
/* After the backend exists: switches collectives to NCCL if eKind asks for
 * it (or AUTO with a CUDA backend). No-op for MPI.
 * pCudaStreamOrNull is the backend's compute stream (cudaStream_t). AUTO
 * means NCCL when it is non-NULL (a CUDA backend) and MPI when it is NULL;
 * BT_COMM_NCCL with NULL takes the legacy default stream as the compute
 * stream. NCCL runs on its own non-blocking stream; every operation first
 * waits (cudaStreamWaitEvent) for the work queued so far on the compute
 * stream, and bt_comm_wait/test make the compute stream wait for the
 * operation before returning; bt_comm_wait (and a blocking call) also
 * blocks the host until the operation is done, so that the watchdog sees
 * a hang. At world size 1 NCCL runs with one rank.
 * Refused while operations are in flight. */
int bt_comm_attach_backend(bt_comm *pComm, bt_comm_kind eKind,
                           void *pCudaStreamOrNull);
void bt_comm_free(bt_comm *pComm); /* finalizes MPI */

int bt_comm_rank(const bt_comm *pComm);
int bt_comm_world(const bt_comm *pComm);
int bt_comm_local_rank(const bt_comm *pComm);
int bt_comm_local_world(const bt_comm *pComm);
/* The CUDA device bound at init, -1 if none (CPU build, no GPU, or
 * BATON_CUDA_BIND=0). The backend must be created on this device. */
int bt_comm_device(const bt_comm *pComm);
/* The device a rank uses among the nVisible the process can see: local
 * rank modulo nVisible, -1 when none is visible. A launcher that gives
 * each rank its own GPU (Slurm --gpus-per-task=1, or CUDA_VISIBLE_DEVICES
 * set per rank) leaves one visible: device 0 whatever the local rank;
 * one process per node that sees all 8 gets device local_rank. */
int bt_comm_pick_device(int localRank, int nVisible);
/* The node-local rank the launcher put in the environment
 * (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID,
 * MV2_COMM_WORLD_LOCAL_RANK, first one set to a non-negative integer;
 * *pzVar, if not NULL, gets its name), or -1. bt_comm_init only compares
 * it with MPI's shared-memory split and warns when they differ: MPI's
 * is the one used. */
int bt_comm_launcher_local_rank(const char **pzVar);
const char *bt_comm_name(const bt_comm *pComm); /* "mpi", "nccl", "single" */

/* Watchdog settings. seconds <= 0 disables it. */
void bt_comm_set_timeout(bt_comm *pComm, double seconds);
/* What the caller is doing, for watchdog and error messages:
 * step and a short label ("grad bucket 3/7 allreduce"). Copied (at most
 * 95 bytes kept). Also the heartbeat of the whole-step watchdog below. */
void bt_comm_set_context(bt_comm *pComm, long step, const char *zOp);
/* Whole-step watchdog: starts a background thread that aborts the job
 * (bt_log_error "watchdog: no progress for N s in '<label>' ... at step S",
 * then MPI_Abort with BT_EXIT_WATCHDOG) when bt_comm_set_context has not
 * been called for the timeout (bt_comm_set_timeout, read live). It catches
 * hangs outside collectives too (a stuck loader or file system); the
 * trainer calls set_context at least once per step phase. Call once after
 * init; bt_comm_free stops it. The thread calls MPI only to abort (a
 * documented exception to MPI_THREAD_FUNNELED, safe in Open MPI and
 * MPICH). Returns BT_ERR if the thread cannot be created. */
int bt_comm_watchdog_start(bt_comm *pComm);

/* Collectives. Every rank must call them in the same order with the same
 * counts. Errors (bad arguments, MPI/NCCL failures) return BT_ERR with a
 * message naming the op, step, label, rank and host; *pReq is then NULL.
 * The MPI implementation limits one operation to INT_MAX elements. */
int bt_comm_allreduce(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                      bt_redop eOp, bt_comm_req **pReq);
/* pSend holds world * nPerRank elements; rank r receives the sum of every
 * rank's block r into pRecv (nPerRank elements). In place (NCCL's rule):
 * pRecv == pSend + rank * nPerRank; any other overlap is refused. After
 * an in-place call the other blocks of pSend are undefined (MPI uses
 * block 0 as scratch). */
int bt_comm_reduce_scatter(bt_comm *pComm, const void *pSend, void *pRecv,
                           size_t nPerRank, bt_dtype eType, bt_redop eOp,
                           bt_comm_req **pReq);
/* Variable-count reduce-scatter (ZeRO-1 buckets that straddle shard
 * boundaries): pSend holds sum(aCount[0..world)) elements; rank r receives
 * the element-wise reduction over ranks of block r (aCount[r] elements at
 * offset aCount[0]+...+aCount[r-1]) into pRecv. Counts may be zero. */
int bt_comm_reduce_scatter_v(bt_comm *pComm, const void *pSend, void *pRecv,
                             const size_t *aCount, bt_dtype eType,
                             bt_redop eOp, bt_comm_req **pReq);
/* pRecv receives world * nPerRank elements; block r comes from rank r.
 * In place: pSend == pRecv + rank * nPerRank. */
int bt_comm_all_gather(bt_comm *pComm, const void *pSend, void *pRecv,
                       size_t nPerRank, bt_dtype eType, bt_comm_req **pReq);
int bt_comm_broadcast(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                      int root, bt_comm_req **pReq);
int bt_comm_barrier(bt_comm *pComm, bt_comm_req **pReq);
/* Completes and frees a request (NULL is a no-op). On error (BT_ERR) the
 * request is freed as well: never wait for it again. */
int bt_comm_wait(bt_comm *pComm, bt_comm_req *req);
/* Completes a request in STREAM order and frees it: with NCCL the
 * backend's compute stream waits for the operation (cudaStreamWaitEvent)
 * and the host does not, so a training step can queue its collectives
 * and its update without a host synchronisation (issue 12 item 4); a
 * hang then shows at the step's read-back, where the whole-step watchdog
 * catches it. MPI (host memory): the same as bt_comm_wait. */
int bt_comm_wait_stream(bt_comm *pComm, bt_comm_req *req);
/* Non-blocking completion check: 1 done (req freed), 0 pending. On error
 * the request is freed and *pDone is 1. */
int bt_comm_test(bt_comm *pComm, bt_comm_req *req, int *pDone);

/* Host-side helpers always over MPI (control plane: config agreement,
 * pre-emption flags), valid whatever the data-plane implementation. */
int bt_comm_host_allreduce(bt_comm *pComm, void *pBuf, size_t n,
                           bt_dtype eType, bt_redop eOp);
int bt_comm_host_broadcast(bt_comm *pComm, void *pBuf, size_t nByte, int root);
/* Gathers nByte from every rank to every rank (pRecv: world * nByte). */
int bt_comm_host_allgather(bt_comm *pComm, const void *pSend, void *pRecv,
                           size_t nByte);

/* Link probe of the straggler check (trainer/observe/straggler.h): every
 * rank calls it at the same point; rank 0 answers each other rank in turn
 * (1..world-1) with one round trip of 8 bytes over MPI point-to-point, and
 * *pSeconds receives the caller's own round-trip time to rank 0, timed by
 * the caller from its send to the answer, so the wait for its turn does
 * not count (0 on rank 0 and without MPI). Costs the sum of the round
 * trips. Guarded by the watchdog timeout like a collective. */
int bt_comm_host_ping(bt_comm *pComm, double *pSeconds);

/* Stops every rank of the job now (MPI_Abort), with exit code; exit(code)
 * at world size 1 without MPI. pComm may be NULL (after a failed init).
 * The only place baton calls exit(). */
void bt_comm_abort(bt_comm *pComm, int exitCode) __attribute__((noreturn));

#endif /* BATON_COMM_H */
