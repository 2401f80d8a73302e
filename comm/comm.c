/*
 * comm.c: the communicator's implementation-independent half (comm.h).
 *
 * Which data plane runs is decided once (comm_impl.h): bt_comm_init picks
 * "mpi" when a launcher started the process and "single" otherwise;
 * bt_comm_attach_backend may switch to "nccl" in CUDA builds. This file
 * validates arguments, hands out requests, waits under the watchdog, runs
 * the whole-step watchdog thread and implements the host helpers.
 *
 * State between operations (what is true whenever no bt_comm_* call runs):
 *   1. pComm->pOps changes only in bt_comm_attach_backend (single/mpi ->
 *      nccl, once), which refuses while requests are live (nReqLive > 0):
 *      a request always completes on the table that started it.
 *   2. Every request is either on the free-list (bInFlight == 0) or owned by
 *      the caller who started it (bInFlight == 1, counted in nReqLive). A
 *      completed bt_comm_wait/bt_comm_test returns it to the list, so after
 *      warm-up no operation allocates memory.
 *   3. MPI is initialised iff bMpi; with bMpi == 0 (world 1, no launcher) no
 *      MPI function is ever called, not even MPI_Initialized.
 *   4. Only the main thread calls MPI (MPI_THREAD_FUNNELED). The single
 *      exception is the abort path (below). An MPI operation advances only
 *      inside MPI calls (no progress thread): a caller overlapping compute
 *      with a non-blocking collective should bt_comm_test it now and then.
 *   5. The context (step, label, time of the last set_context) and the
 *      timeout are read and written under mu; everything else belongs to
 *      the main thread.
 *
 * What the watchdog guarantees:
 *   - Per operation: bt_comm_wait (and every blocking collective) polls the
 *     request; if it has not completed timeout seconds after the wait began,
 *     the rank prints "watchdog: no progress for N s in <label> at step S;
 *     waiting for rank R on host H (last seen at step T); aborting the
 *     job" and calls MPI_Abort(MPI_COMM_WORLD,
 *     BT_EXIT_WATCHDOG), so one stopped or dead rank ends the job within
 *     timeout + the launcher's kill time instead of hanging it.
 *   - Per step (bt_comm_watchdog_start): a thread aborts the job the same
 *     way if bt_comm_set_context has not been called for timeout seconds,
 *     which also catches hangs outside communication (a deadlocked loader,
 *     a stuck file system). It calls MPI_Abort from a non-main thread: not
 *     allowed by MPI_THREAD_FUNNELED to the letter, but Open MPI and MPICH
 *     both implement MPI_Abort as "tell the launcher to kill the job", which
 *     is safe from any thread; we accept that to avoid a second mechanism.
 *   - Exactly one abort runs per process (bAborting): a second firing (the
 *     thread and a wait at once) parks until the launcher kills it.
 *   - The message names who the rank waited for: "...; waiting for rank R
 *     on host H (last seen at step T)" (heartbeats, below), or, from the
 *     step thread while the main thread is not in a collective, that this
 *     rank is itself stuck.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "comm/comm_impl.h"

#define BT_COMM_DEFAULT_TIMEOUT 600.0

/* ---- small helpers ------------------------------------------------------ */

size_t bt_comm_dtype_size(bt_dtype eType) {
  switch (eType) {
    case BT_F32: return 4;
    case BT_F64: return 8;
    case BT_I32: return 4;
    case BT_I64: return 8;
    case BT_U8: return 1;
  }
  return 0;
}

const char *bt_comm_dtype_name(bt_dtype eType) {
  switch (eType) {
    case BT_F32: return "f32";
    case BT_F64: return "f64";
    case BT_I32: return "i32";
    case BT_I64: return "i64";
    case BT_U8: return "u8";
  }
  return "?";
}

const char *bt_comm_op_name(bt_comm_opkind eKind) {
  switch (eKind) {
    case BT_OPK_ALLREDUCE: return "allreduce";
    case BT_OPK_REDUCE_SCATTER: return "reduce_scatter";
    case BT_OPK_ALL_GATHER: return "all_gather";
    case BT_OPK_BROADCAST: return "broadcast";
    case BT_OPK_BARRIER: return "barrier";
  }
  return "?";
}

int bt_comm_mpi_ok(const bt_comm *pComm, int rc, const char *zCall,
                   const char *zFile, int line) {
  if (rc == MPI_SUCCESS) return 1;
  char zMsg[MPI_MAX_ERROR_STRING + 1];
  int nMsg = 0;
  if (MPI_Error_string(rc, zMsg, &nMsg) != MPI_SUCCESS) nMsg = 0;
  zMsg[nMsg] = 0;
  bt_err_set("%s failed: %s (%s:%d, rank %d@%s)", zCall,
             nMsg ? zMsg : "unknown MPI error", zFile, line,
             pComm ? pComm->rank : bt_log_rank(), bt_log_host());
  return 0;
}

static void sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Launchers we know set one of these in every process they start. A bare
 * SLURM_PROCID is not enough (sbatch sets it for the batch script too);
 * srun with an MPI plugin adds PMI_* or PMIX_*. BATON_COMM=mpi|single
 * overrides the detection. */
static int comm_launcher_detected(const char **pzWhy) {
  const char *zForce = getenv("BATON_COMM");
  if (zForce && strcmp(zForce, "mpi") == 0) {
    *pzWhy = "BATON_COMM=mpi";
    return 1;
  }
  if (zForce && strcmp(zForce, "single") == 0) {
    *pzWhy = "BATON_COMM=single";
    return 0;
  }
  static const char *azVar[] = {
      "OMPI_COMM_WORLD_SIZE", /* Open MPI mpirun */
      "PMIX_RANK",            /* PMIx (Open MPI 5, srun --mpi=pmix) */
      "PMI_RANK",             /* MPICH/Intel hydra, srun --mpi=pmi2 */
      "PMI_SIZE",   "PMI_FD", "MPI_LOCALNRANKS", /* MPICH hydra */
      "MV2_COMM_WORLD_RANK",                      /* MVAPICH2 */
  };
  for (size_t i = 0; i < sizeof azVar / sizeof azVar[0]; i++) {
    if (getenv(azVar[i])) {
      *pzWhy = azVar[i];
      return 1;
    }
  }
  *pzWhy = "no launcher in the environment";
  return 0;
}

/* ---- watchdog ----------------------------------------------------------- */

/* bThread: fired by the step thread, which may fire while the main thread
 * computes (then this rank itself is the one not making progress). */
static void comm_watchdog_fire(bt_comm *pComm, double waited, long step,
                               const char *zWhat, int bThread)
    __attribute__((noreturn));
static void comm_watchdog_fire(bt_comm *pComm, double waited, long step,
                               const char *zWhat, int bThread) {
  if (atomic_exchange(&pComm->bAborting, 1)) {
    /* Another thread of this rank is already aborting the job. */
    for (;;) pause();
  }
  /* Last resort if anything below blocks (a stdio lock held by a stuck
   * thread, an unreachable launcher): SIGALRM's default action ends this
   * process, which the launcher reports as a failed job. The watchdog
   * thread blocks all signals, so another thread takes it. */
  signal(SIGALRM, SIG_DFL);
  alarm(60);
  /* Who we wait for, as the main thread last worked it out (heartbeats);
   * a trylock: the main thread may hold mu forever if it is stuck. */
  char zWho[sizeof pComm->zWaitFor + 64];
  zWho[0] = 0;
  if (pthread_mutex_trylock(&pComm->mu) == 0) {
    if (pComm->bWaitSlow)
      snprintf(zWho, sizeof zWho, "; waiting for %s", pComm->zWaitFor);
    else if (bThread)
      snprintf(zWho, sizeof zWho, "; rank %d is not waiting in a "
               "collective: it is itself stuck (compute, I/O, loader)",
               pComm->rank);
    pthread_mutex_unlock(&pComm->mu);
  }
  bt_log_error("watchdog: no progress for %.*f s in %s at step %ld%s; "
               "aborting the job (exit code %d)",
               waited < 10 ? 1 : 0, waited, zWhat, step, zWho,
               BT_EXIT_WATCHDOG);
  if (pComm->pOps->xOnWatchdog) pComm->pOps->xOnWatchdog(pComm);
  bt_comm_abort(pComm, BT_EXIT_WATCHDOG);
}

void bt_comm_watchdog_fire(bt_comm *pComm, double waited, long step,
                           const char *zWhat) {
  comm_watchdog_fire(pComm, waited, step, zWhat, 0);
}

/* ---- heartbeats: which rank a waiting rank waits for ---------------------
 *
 * A collective that does not complete says nothing about WHO has not
 * joined it. Collectives start in the same order on every rank (MPI's
 * rule), so each has an index, req->seq, equal on all ranks, and a peer
 * has joined collective S iff it has started more than S collectives.
 * When a wait passes hbAfter (min(1 s, timeout / 4)), the waiting rank
 * sends every peer one message "I have started N collectives, at step T"
 * (MPI_Isend of 3 integers on a duplicate of MPI_COMM_WORLD, so it can
 * never match an application message) and, while it keeps waiting,
 * drains what its peers sent. When the watchdog fires, the peers whose
 * latest count is <= S (or that never sent one) are the ones behind: the
 * message names the lowest, its host, and the step it was last seen at
 * (its heartbeat's step, or the step of the newest collective completed
 * here: every rank joined that one).
 *
 * Why this design:
 *   - A stopped (SIGSTOP) or partitioned peer needs to do nothing: it is
 *     named because it is silent. One-sided windows would need the
 *     target's progress under Open MPI's osc/pt2pt, and files need a
 *     shared run directory the communicator does not know about.
 *   - The fast path costs nothing: a collective that completes within
 *     hbAfter sends no message; starting one adds a counter increment and
 *     completing one a store. Sends never block (a peer that does not
 *     drain keeps its request pending and is skipped next time), and
 *     undrained heartbeats wait in MPI's unexpected queue (24 bytes each,
 *     one per peer per slow wait) until the next slow wait or the end.
 *   - Limits: a peer that arrives less than hbAfter before the timeout is
 *     still counted as behind; hosts come from one all-gather at init.
 */
#define COMM_HB_TAG 17

static void hb_post_recv(bt_comm *p) {
  if (MPI_Irecv(p->aHbIn, 3, MPI_LONG_LONG, MPI_ANY_SOURCE, COMM_HB_TAG,
                p->commHb, &p->hbRecv) != MPI_SUCCESS)
    p->hbRecv = MPI_REQUEST_NULL; /* best effort: no heartbeats then */
}

static int hb_setup(bt_comm *p) {
  size_t w = (size_t)p->world;
  p->azHost = bt_calloc(w, BT_COMM_HOST_MAX, "host names");
  p->aHbSend = bt_calloc(w * 3, sizeof *p->aHbSend, "heartbeats");
  p->aHbReq = bt_calloc(w, sizeof *p->aHbReq, "heartbeat requests");
  p->aHbSeen = bt_calloc(w * 2, sizeof *p->aHbSeen, "heartbeats seen");
  if (!p->azHost || !p->aHbSend || !p->aHbReq || !p->aHbSeen) {
    free(p->aHbReq);
    p->aHbReq = NULL; /* hb_teardown must not free zeroed requests */
    return BT_ERR;
  }
  for (size_t i = 0; i < w; i++) {
    p->aHbReq[i] = MPI_REQUEST_NULL;
    p->aHbSeen[2 * i] = -1;
    p->aHbSeen[2 * i + 1] = -1;
  }
  char zMe[BT_COMM_HOST_MAX];
  memset(zMe, 0, sizeof zMe);
  snprintf(zMe, sizeof zMe, "%s", bt_log_host());
  if (!BT_MPI_OK(p, MPI_Allgather(zMe, BT_COMM_HOST_MAX, MPI_CHAR, p->azHost,
                                  BT_COMM_HOST_MAX, MPI_CHAR,
                                  MPI_COMM_WORLD)))
    return BT_ERR;
  if (p->world < 2) return BT_OK;
  if (!BT_MPI_OK(p, MPI_Comm_dup(MPI_COMM_WORLD, &p->commHb))) return BT_ERR;
  hb_post_recv(p);
  return BT_OK;
}

static void hb_teardown(bt_comm *p) {
  if (p->hbRecv != MPI_REQUEST_NULL) {
    MPI_Cancel(&p->hbRecv);
    MPI_Wait(&p->hbRecv, MPI_STATUS_IGNORE);
  }
  for (int i = 0; p->aHbReq && i < p->world; i++)
    if (p->aHbReq[i] != MPI_REQUEST_NULL) MPI_Request_free(&p->aHbReq[i]);
  if (p->commHb != MPI_COMM_NULL) MPI_Comm_free(&p->commHb);
  free(p->azHost);
  free(p->aHbSend);
  free(p->aHbReq);
  free(p->aHbSeen);
  p->azHost = NULL;
  p->aHbSend = p->aHbSeen = NULL;
  p->aHbReq = NULL;
}

/* Tells every peer how far this rank got (once per slow wait). */
static void hb_send(bt_comm *p, const bt_comm_req *req) {
  for (int q = 0; q < p->world; q++) {
    if (q == p->rank) continue;
    int done = 1;
    if (p->aHbReq[q] != MPI_REQUEST_NULL &&
        MPI_Test(&p->aHbReq[q], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      done = 0;
    if (!done) continue; /* that peer has not taken the last one yet */
    long long *a = &p->aHbSend[3 * q];
    a[0] = p->seqNext;
    a[1] = req->step;
    a[2] = req->seq;
    if (MPI_Isend(a, 3, MPI_LONG_LONG, q, COMM_HB_TAG, p->commHb,
                  &p->aHbReq[q]) != MPI_SUCCESS)
      p->aHbReq[q] = MPI_REQUEST_NULL;
  }
}

/* Takes every heartbeat that has arrived; 1 if any did. */
static int hb_drain(bt_comm *p) {
  int bAny = 0;
  while (p->hbRecv != MPI_REQUEST_NULL) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Test(&p->hbRecv, &flag, &st) != MPI_SUCCESS) {
      p->hbRecv = MPI_REQUEST_NULL;
      break;
    }
    if (!flag) break;
    int src = st.MPI_SOURCE;
    if (src >= 0 && src < p->world && p->aHbIn[0] > p->aHbSeen[2 * src]) {
      p->aHbSeen[2 * src] = p->aHbIn[0];
      p->aHbSeen[2 * src + 1] = p->aHbIn[1];
    }
    bAny = 1;
    hb_post_recv(p);
  }
  return bAny;
}

/* "rank R on host H (last seen at step T)" for the lowest rank that has
 * not joined req, plus how many more have not; into pComm->zWaitFor. */
static void hb_describe(bt_comm *p, const bt_comm_req *req) {
  char z[sizeof p->zWaitFor];
  int nBehind = 0, first = -1;
  size_t n = 0;
  for (int q = 0; q < p->world; q++) {
    if (q == p->rank || p->aHbSeen[2 * q] > req->seq) continue;
    if (first < 0) first = q;
    nBehind++;
  }
  if (first < 0) {
    snprintf(z, sizeof z, "no rank: all %d have joined this collective "
             "(a hang inside MPI/NCCL or the network)", p->world);
  } else {
    long seen = p->lastDoneStep;
    if (p->aHbSeen[2 * first + 1] > seen) seen = (long)p->aHbSeen[2 * first + 1];
    n = (size_t)snprintf(z, sizeof z, "rank %d on host %.*s (last seen at ",
                         first, BT_COMM_HOST_MAX, p->azHost + (size_t)first *
                         BT_COMM_HOST_MAX);
    if (n < sizeof z)
      n += (size_t)snprintf(z + n, sizeof z - n, seen >= 0 ? "step %ld)" :
                            "start-up)", seen);
    if (nBehind > 1 && n < sizeof z)
      snprintf(z + n, sizeof z - n, " and %d more rank%s behind", nBehind - 1,
               nBehind > 2 ? "s" : "");
  }
  pthread_mutex_lock(&p->mu);
  memcpy(p->zWaitFor, z, sizeof z);
  p->bWaitSlow = 1;
  pthread_mutex_unlock(&p->mu);
}

/* The slow phase of a wait: the first call sends the heartbeat, every
 * call takes those that arrived and re-derives who is behind. */
static void hb_slow_wait(bt_comm *p, const bt_comm_req *req, int *pbSent) {
  if (p->commHb == MPI_COMM_NULL) return;
  if (!*pbSent) hb_send(p, req);
  if (hb_drain(p) || !*pbSent) hb_describe(p, req);
  *pbSent = 1;
}

static void hb_wait_over(bt_comm *p, int bSent) {
  if (!bSent) return;
  pthread_mutex_lock(&p->mu);
  p->bWaitSlow = 0;
  pthread_mutex_unlock(&p->mu);
}

double bt_comm_timeout_get(bt_comm *pComm) {
  pthread_mutex_lock(&pComm->mu);
  double t = pComm->timeout;
  pthread_mutex_unlock(&pComm->mu);
  return t;
}

/* Polling policy. MPI's non-blocking collectives (libnbc in Open MPI)
 * advance only inside MPI calls, one round per test, so a sleep between
 * tests stretches every round: with 50-200 us naps a 1 MiB allreduce ran
 * 20x slower than MPI_Allreduce (bench/comm/README.md). So we first poll
 * the way a blocking MPI call does, MPI_Test + sched_yield (which lets
 * oversubscribed ranks run), for spinSec (default 20 ms, covering most
 * collectives); only then nap 50 us, growing to 1 ms after a second of
 * waiting, so that ranks parked behind a slow peer (a checkpoint save) or
 * 64 ranks on 2 cores stop burning CPU. NCCL progresses on the GPU; the
 * test there is just a query. */
static int comm_poll(bt_comm *pComm, const bt_comm_ops *pOps,
                     bt_comm_req *req) {
  double timeout = bt_comm_timeout_get(pComm);
  double t0 = 0, waited = 0;
  double hbAfter = timeout > 0 && timeout < 4 ? timeout / 4 : 1.0;
  int bHb = 0; /* heartbeat sent for this wait (hb_slow_wait) */
  for (long it = 0;; it++) {
    int done = 0;
    if (pOps->xTest(pComm, req, &done)) {
      hb_wait_over(pComm, bHb);
      return BT_ERR;
    }
    if (done) {
      hb_wait_over(pComm, bHb);
      pComm->lastDoneStep = req->step;
      return BT_OK;
    }
    if (it < 8) continue;
    if (it == 8) t0 = bt_time_now();
    int bSpin = waited < pComm->spinSec;
    if (bSpin && (it & 3) == 0) sched_yield();
    if (!bSpin)
      sleep_ns(waited < 1.0 ? 50000 : waited < 10.0 ? 200000 : 1000000);
    if (bSpin && (it & 15) != 0) continue;
    waited = bt_time_now() - t0;
    if (waited > hbAfter) hb_slow_wait(pComm, req, &bHb);
    if (timeout > 0 && waited > timeout) {
      char zWhat[2 * BT_COMM_LABEL_MAX];
      snprintf(zWhat, sizeof zWhat, "%s (%s of %zu x %s)",
               req->zLabel[0] ? req->zLabel : "unlabelled operation",
               bt_comm_op_name(req->eKind), req->n,
               bt_comm_dtype_name(req->eType));
      bt_comm_watchdog_fire(pComm, waited, req->step, zWhat);
    }
  }
}

int bt_comm_wait_poll(bt_comm *pComm, bt_comm_req *req) {
  return comm_poll(pComm, pComm->pOps, req);
}

static void *comm_watchdog_main(void *pArg) {
  bt_comm *pComm = pArg;
  pthread_mutex_lock(&pComm->mu);
  while (!pComm->bThreadStop) {
    double timeout = pComm->timeout;
    double idle = bt_time_now() - pComm->tContext;
    if (timeout > 0 && idle > timeout) {
      char zWhat[BT_COMM_LABEL_MAX + 64];
      snprintf(zWhat, sizeof zWhat, "'%s' (no bt_comm_set_context since)",
               pComm->zOp[0] ? pComm->zOp : "unlabelled phase");
      long step = pComm->step;
      pthread_mutex_unlock(&pComm->mu);
      comm_watchdog_fire(pComm, idle, step, zWhat, 1);
    }
    /* Check often enough that the abort comes at most ~1/8 of the timeout
     * (and never more than 1 s) late. */
    double period = timeout > 0 ? timeout / 8 : 1.0;
    if (period > 1.0) period = 1.0;
    if (period < 0.01) period = 0.01;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(period * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&pComm->cv, &pComm->mu, &ts);
  }
  pthread_mutex_unlock(&pComm->mu);
  return NULL;
}

int bt_comm_watchdog_start(bt_comm *pComm) {
  BT_ASSERT(pComm);
  pthread_mutex_lock(&pComm->mu);
  if (pComm->bThread) {
    pthread_mutex_unlock(&pComm->mu);
    return BT_OK;
  }
  pComm->tContext = bt_time_now();
  pComm->bThreadStop = 0;
  /* The thread must not take signals meant for the main thread (SIGINT
   * handlers of the trainer, SIGALRM): block them all while creating it. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&pComm->thread, NULL, comm_watchdog_main, pComm);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc == 0) pComm->bThread = 1;
  pthread_mutex_unlock(&pComm->mu);
  if (rc != 0)
    return bt_err_set("watchdog: cannot start its thread on rank %d@%s: %s",
                      pComm->rank, bt_log_host(), strerror(rc));
  return BT_OK;
}

void bt_comm_set_timeout(bt_comm *pComm, double seconds) {
  BT_ASSERT(pComm);
  pthread_mutex_lock(&pComm->mu);
  pComm->timeout = seconds;
  pthread_cond_signal(&pComm->cv); /* re-evaluate the period now */
  pthread_mutex_unlock(&pComm->mu);
}

void bt_comm_set_context(bt_comm *pComm, long step, const char *zOp) {
  BT_ASSERT(pComm);
  pthread_mutex_lock(&pComm->mu);
  pComm->step = step;
  snprintf(pComm->zOp, sizeof pComm->zOp, "%s", zOp ? zOp : "");
  pComm->tContext = bt_time_now();
  pthread_mutex_unlock(&pComm->mu);
}

/* ---- init / attach / free ----------------------------------------------- */

static int comm_shutdown_barrier(bt_comm *pComm);

static int comm_init_mpi(bt_comm *p, int *pargc, char ***pargv) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = MPI_THREAD_SINGLE;
    int rc = MPI_Init_thread(pargc, pargv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
      return bt_err_set("MPI_Init_thread failed (code %d) on %s", rc,
                        bt_log_host());
    p->bOwnMpi = 1;
    if (provided < MPI_THREAD_FUNNELED)
      bt_log_warn("MPI provides thread level %d < MPI_THREAD_FUNNELED; "
                  "continuing (only the main thread calls MPI)", provided);
  }
  p->bMpi = 1;
  /* Errors come back as codes so that they can be reported with the op,
   * step, rank and host instead of MPI's default abort. */
  if (!BT_MPI_OK(p, MPI_Comm_set_errhandler(MPI_COMM_WORLD,
                                            MPI_ERRORS_RETURN)))
    return BT_ERR;
  if (!BT_MPI_OK(p, MPI_Comm_rank(MPI_COMM_WORLD, &p->rank))) return BT_ERR;
  if (!BT_MPI_OK(p, MPI_Comm_size(MPI_COMM_WORLD, &p->world))) return BT_ERR;
  if (!BT_MPI_OK(p, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED,
                                        p->rank, MPI_INFO_NULL,
                                        &p->commLocal)))
    return BT_ERR;
  if (!BT_MPI_OK(p, MPI_Comm_rank(p->commLocal, &p->localRank)))
    return BT_ERR;
  if (!BT_MPI_OK(p, MPI_Comm_size(p->commLocal, &p->localWorld)))
    return BT_ERR;
  /* MPI's node-local rank decides the GPU; the launcher's own variable is
   * a cross-check: a container that hides shared memory makes every rank
   * "alone on its node" (local rank 0, all on GPU 0 when all are visible),
   * which this names instead of leaving it to a slow run to reveal. */
  const char *zVar = NULL;
  int envLocal = bt_comm_launcher_local_rank(&zVar);
  if (envLocal >= 0 && envLocal != p->localRank)
    bt_log_warn("comm: rank %d: the launcher's %s says local rank %d, MPI's "
                "shared-memory split says %d (used to pick the GPU); do the "
                "ranks of a node share /dev/shm?",
                p->rank, zVar, envLocal, p->localRank);
  if (bt_comm_mpi_setup(p) || hb_setup(p)) return BT_ERR;
  p->pOps = &bt_comm_mpi_ops;
  return BT_OK;
}

/* A failed init frees what it made but leaves MPI initialised: the other
 * ranks may not have failed, so MPI_Finalize (which synchronises) could
 * hang; the caller reports and calls bt_comm_abort(NULL, code), which
 * still reaches MPI_Abort. */
static int comm_init_fail(bt_comm *p) {
  if (p->commLocal != MPI_COMM_NULL) MPI_Comm_free(&p->commLocal);
  hb_teardown(p);
  if (p->bMpi) bt_comm_mpi_teardown(p);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
  return BT_ERR;
}

/* A number from the environment (<= 0 allowed), else the default. */
static double comm_env_seconds(const char *zVar, double dflt) {
  const char *z = getenv(zVar);
  if (!z || !*z) return dflt;
  char *zEnd = NULL;
  double v = strtod(z, &zEnd);
  if (zEnd == z || *zEnd) {
    bt_log_warn("%s='%s' is not a number; using %g", zVar, z, dflt);
    return dflt;
  }
  return v;
}

int bt_comm_init(bt_comm **ppComm, int *pargc, char ***pargv) {
  *ppComm = NULL;
  bt_comm *p = bt_calloc(1, sizeof *p, "communicator");
  if (!p) return BT_ERR;
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  atomic_init(&p->bAborting, 0);
  p->timeout = comm_env_seconds("BATON_COMM_TIMEOUT", BT_COMM_DEFAULT_TIMEOUT);
  p->spinSec = comm_env_seconds("BATON_COMM_SPIN_MS", 20.0) * 1e-3;
  p->step = -1;
  snprintf(p->zOp, sizeof p->zOp, "startup");
  p->tContext = bt_time_now();
  p->commLocal = MPI_COMM_NULL;
  p->commHb = MPI_COMM_NULL;
  p->hbRecv = MPI_REQUEST_NULL;
  p->lastDoneStep = -1;
  p->opSumU8 = MPI_OP_NULL;
  p->cudaDevice = -1;
  p->rank = 0;
  p->world = 1;
  p->localRank = 0;
  p->localWorld = 1;
  p->pOps = &bt_comm_single_ops;

  const char *zWhy = "";
  if (comm_launcher_detected(&zWhy) && comm_init_mpi(p, pargc, pargv)) {
    bt_err_prefix("communicator init (launcher: %s): ", zWhy);
    return comm_init_fail(p);
  }
  bt_log_set_rank(p->rank, p->world);
#ifdef BATON_HAVE_CUDA
  /* Bound here, not at attach: the CUDA backend creates its handles and
   * streams on the current device before the communicator is attached. */
  if (bt_comm_cuda_bind_device(p)) return comm_init_fail(p);
#endif
  bt_log_debug("comm: %s, world %d, %d rank(s) per node (%s)", p->pOps->zName,
               p->world, p->localWorld, zWhy);
  *ppComm = p;
  return BT_OK;
}

int bt_comm_attach_backend(bt_comm *pComm, bt_comm_kind eKind,
                           void *pCudaStreamOrNull) {
  BT_ASSERT(pComm);
  int bNccl = eKind == BT_COMM_NCCL ||
              (eKind == BT_COMM_AUTO && pCudaStreamOrNull != NULL);
  if (!bNccl) return BT_OK;
  if (pComm->pOps != &bt_comm_mpi_ops && pComm->pOps != &bt_comm_single_ops)
    return BT_OK; /* already attached */
  if (pComm->nReqLive > 0)
    return bt_err_set("comm attach on rank %d@%s: %d operation(s) still in "
                      "flight; wait for them first",
                      pComm->rank, bt_log_host(), pComm->nReqLive);
#ifdef BATON_HAVE_CUDA
  return bt_comm_nccl_attach(pComm, pCudaStreamOrNull);
#else
  return bt_err_set("comm attach on rank %d@%s: NCCL requested but this "
                    "baton was built without CUDA",
                    pComm->rank, bt_log_host());
#endif
}

/* Meets every rank (under the watchdog) before MPI_Finalize, whose own
 * synchronisation has no timeout: a rank frozen at the end of a run then
 * still ends the job with a message instead of a hang. */
void bt_comm_free(bt_comm *pComm) {
  if (!pComm) return;
  if (pComm->bMpi && pComm->world > 1 && comm_shutdown_barrier(pComm))
    bt_log_warn("comm shutdown: %s", bt_err_msg());
  pthread_mutex_lock(&pComm->mu);
  int bThread = pComm->bThread;
  pComm->bThreadStop = 1;
  pthread_cond_signal(&pComm->cv);
  pthread_mutex_unlock(&pComm->mu);
  if (bThread) pthread_join(pComm->thread, NULL);
  if (pComm->nReqLive > 0)
    bt_log_warn("comm: freed with %d operation(s) never waited for",
                pComm->nReqLive);
  while (pComm->pFree) {
    bt_comm_req *req = pComm->pFree;
    pComm->pFree = req->pNext;
    if (pComm->pOps->xReqFree) pComm->pOps->xReqFree(pComm, req);
    free(req->aCountInt);
    free(req);
  }
  if (pComm->pOps->xFree) pComm->pOps->xFree(pComm);
  if (pComm->bMpi) {
    if (pComm->commLocal != MPI_COMM_NULL) MPI_Comm_free(&pComm->commLocal);
    hb_teardown(pComm);
    bt_comm_mpi_teardown(pComm);
    if (pComm->bOwnMpi) MPI_Finalize();
  }
  pthread_cond_destroy(&pComm->cv);
  pthread_mutex_destroy(&pComm->mu);
  free(pComm);
}

int bt_comm_rank(const bt_comm *pComm) { return pComm->rank; }
int bt_comm_world(const bt_comm *pComm) { return pComm->world; }
int bt_comm_local_rank(const bt_comm *pComm) { return pComm->localRank; }
int bt_comm_local_world(const bt_comm *pComm) { return pComm->localWorld; }
int bt_comm_device(const bt_comm *pComm) { return pComm->cudaDevice; }

int bt_comm_launcher_local_rank(const char **pzVar) {
  static const char *azVar[] = {
      "OMPI_COMM_WORLD_LOCAL_RANK", /* Open MPI mpirun */
      "SLURM_LOCALID",              /* srun */
      "MPI_LOCALRANKID",            /* MPICH / Intel hydra */
      "MV2_COMM_WORLD_LOCAL_RANK",  /* MVAPICH2 */
  };
  for (size_t i = 0; i < sizeof azVar / sizeof azVar[0]; i++) {
    const char *z = getenv(azVar[i]);
    if (!z || !*z) continue;
    char *zEnd = NULL;
    long v = strtol(z, &zEnd, 10);
    if (*zEnd || v < 0 || v > INT_MAX) continue; /* not a local rank */
    if (pzVar) *pzVar = azVar[i];
    return (int)v;
  }
  return -1;
}

int bt_comm_pick_device(int localRank, int nVisible) {
  if (nVisible <= 0) return -1;
  BT_ASSERT(localRank >= 0);
  return localRank % nVisible;
}
const char *bt_comm_name(const bt_comm *pComm) { return pComm->pOps->zName; }

/* ---- requests ------------------------------------------------------------ */

static bt_comm_req *req_get(bt_comm *pComm, bt_comm_opkind eKind, size_t n,
                            bt_dtype eType) {
  bt_comm_req *req = pComm->pFree;
  if (req) {
    pComm->pFree = req->pNext;
  } else {
    req = bt_calloc(1, sizeof *req, "communicator request");
    if (!req) return NULL;
  }
  req->pNext = NULL;
  req->bInFlight = 1;
  req->eKind = eKind;
  req->n = n;
  req->eType = eType;
  req->mpiReq = MPI_REQUEST_NULL;
  req->pCopyDst = NULL;
  req->pCopySrc = NULL;
  req->nCopy = 0;
  /* Under the lock: set_context may be called from any thread. */
  pthread_mutex_lock(&pComm->mu);
  req->step = pComm->step;
  memcpy(req->zLabel, pComm->zOp, sizeof req->zLabel);
  pthread_mutex_unlock(&pComm->mu);
  req->seq = pComm->seqNext++;
  pComm->nReqLive++;
  return req;
}

static void req_put(bt_comm *pComm, bt_comm_req *req) {
  req->bInFlight = 0;
  req->pNext = pComm->pFree;
  pComm->pFree = req;
  pComm->nReqLive--;
}

static int req_error(const bt_comm_req *req, const char *zVerb) {
  bt_err_prefix("%s %s of %zu x %s at step %ld (%s): ", zVerb,
                bt_comm_op_name(req->eKind), req->n,
                bt_comm_dtype_name(req->eType), req->step,
                req->zLabel[0] ? req->zLabel : "unlabelled");
  return BT_ERR;
}

/* Finishes a start: on error recycles the request; blocking calls wait. */
static int req_started(bt_comm *pComm, bt_comm_req *req, int rc,
                       bt_comm_req **ppReq) {
  if (rc != BT_OK) {
    req_error(req, "starting");
    req_put(pComm, req);
    return BT_ERR;
  }
  if (ppReq) {
    *ppReq = req;
    return BT_OK;
  }
  return bt_comm_wait(pComm, req);
}

static void req_complete(bt_comm_req *req) {
  if (req->nCopy) memmove(req->pCopyDst, req->pCopySrc, req->nCopy);
}

int bt_comm_wait(bt_comm *pComm, bt_comm_req *req) {
  if (!req) return BT_OK;
  BT_ASSERT(pComm && req->bInFlight);
  int rc = bt_comm_wait_poll(pComm, req);
  if (rc) req_error(req, "waiting for");
  else req_complete(req);
  req_put(pComm, req);
  return rc;
}

int bt_comm_wait_stream(bt_comm *pComm, bt_comm_req *req) {
  if (!req) return BT_OK;
  BT_ASSERT(pComm && req->bInFlight);
  /* A request with a host copy to finish (MPI's in-place reduce-scatter)
   * or without a stream (MPI) is waited for on the host. */
  if (!pComm->pOps->xWaitStream || req->nCopy) return bt_comm_wait(pComm, req);
  int rc = pComm->pOps->xWaitStream(pComm, req);
  if (rc) req_error(req, "ordering the compute stream after");
  req_put(pComm, req);
  return rc;
}

int bt_comm_test(bt_comm *pComm, bt_comm_req *req, int *pDone) {
  *pDone = 1;
  if (!req) return BT_OK;
  BT_ASSERT(pComm && req->bInFlight);
  int done = 0;
  if (pComm->pOps->xTest(pComm, req, &done)) {
    req_error(req, "testing");
    req_put(pComm, req);
    return BT_ERR;
  }
  *pDone = done;
  if (done) {
    pComm->lastDoneStep = req->step;
    req_complete(req);
    req_put(pComm, req);
  }
  return BT_OK;
}

/* ---- argument checks ------------------------------------------------------
 */

static int comm_check_type(const bt_comm *pComm, const char *zOp,
                           bt_dtype eType) {
  if (bt_comm_dtype_size(eType) == 0)
    return bt_err_set("%s on rank %d@%s: unknown dtype %d", zOp, pComm->rank,
                      bt_log_host(), (int)eType);
  return BT_OK;
}

static int comm_check_redop(const bt_comm *pComm, const char *zOp,
                            bt_redop eOp) {
  if (eOp != BT_SUM && eOp != BT_MAX && eOp != BT_MIN)
    return bt_err_set("%s on rank %d@%s: unknown reduction %d", zOp,
                      pComm->rank, bt_log_host(), (int)eOp);
  return BT_OK;
}

static int comm_check_buf(const bt_comm *pComm, const char *zOp,
                          const void *p, size_t n, const char *zWhich) {
  if (n > 0 && !p)
    return bt_err_set("%s on rank %d@%s: %s is NULL for %zu elements", zOp,
                      pComm->rank, bt_log_host(), zWhich, n);
  return BT_OK;
}

/* The small block [pSmall, +nSmall) and the big buffer [pBig, +nBig) must be
 * disjoint or the small one must sit exactly at block `rank` of the big one
 * (NCCL's in-place convention, comm.h). */
static int comm_check_overlap(const bt_comm *pComm, const char *zOp,
                              const void *pSmall, size_t nSmall,
                              const void *pBig, size_t nBig) {
  uintptr_t s = (uintptr_t)pSmall, b = (uintptr_t)pBig;
  if (nSmall == 0 || s + nSmall <= b || b + nBig <= s) return BT_OK;
  if (s == b + (uintptr_t)pComm->rank * nSmall) return BT_OK;
  return bt_err_set("%s on rank %d@%s: send and receive buffers overlap "
                    "other than in place (block %d of the full buffer)",
                    zOp, pComm->rank, bt_log_host(), pComm->rank);
}

/* Fault point "comm_stop" (BATON_FAULT=comm_stop:N@R): rank R stops itself
 * with SIGSTOP at the start of its Nth collective, the way a hung GPU or a
 * frozen node looks to the other ranks. Used by the watchdog tests. */
static void comm_fault_point(bt_comm *pComm, bt_comm_opkind eKind) {
  if (bt_fault_hit("comm_stop")) {
    bt_log_warn("fault injection: rank %d stops itself (SIGSTOP) in %s at "
                "step %ld", pComm->rank, bt_comm_op_name(eKind), pComm->step);
    raise(SIGSTOP);
  }
}

/* ---- collectives ----------------------------------------------------------
 */

/* One collective's arguments after its checks. Every entry point, device or
 * host, starts its operation through comm_dispatch. */
typedef struct comm_call {
  bt_comm_opkind eKind;
  const void *pSend;    /* reduce_scatter(_v), all_gather */
  void *pRecv;          /* the destination; allreduce/broadcast: the buffer */
  size_t n;             /* the request's count (this rank's, for _v) */
  const size_t *aCount; /* reduce_scatter_v: per-rank counts, else NULL */
  bt_dtype eType;
  bt_redop eOp;
  int root;
} comm_call;

static int comm_dispatch(bt_comm *pComm, const bt_comm_ops *pOps,
                         const comm_call *c, bt_comm_req *req) {
  switch (c->eKind) {
    case BT_OPK_ALLREDUCE:
      return pOps->xAllreduce(pComm, c->pRecv, c->n, c->eType, c->eOp, req);
    case BT_OPK_REDUCE_SCATTER:
      if (c->aCount)
        return pOps->xReduceScatterV(pComm, c->pSend, c->pRecv, c->aCount,
                                     c->eType, c->eOp, req);
      return pOps->xReduceScatter(pComm, c->pSend, c->pRecv, c->n, c->eType,
                                  c->eOp, req);
    case BT_OPK_ALL_GATHER:
      return pOps->xAllGather(pComm, c->pSend, c->pRecv, c->n, c->eType, req);
    case BT_OPK_BROADCAST:
      return pOps->xBroadcast(pComm, c->pRecv, c->n, c->eType, c->root, req);
    case BT_OPK_BARRIER:
      return pOps->xBarrier(pComm, req);
  }
  BT_ASSERT(!"unknown collective");
  return BT_ERR;
}

/* The shared tail of a collective: fault point, request, start on the data
 * plane; a blocking call (pReq NULL) then waits under the watchdog. */
static int comm_start(bt_comm *pComm, const comm_call *c,
                      bt_comm_req **pReq) {
  comm_fault_point(pComm, c->eKind);
  bt_comm_req *req = req_get(pComm, c->eKind, c->n, c->eType);
  if (!req) return BT_ERR;
  int rc = comm_dispatch(pComm, pComm->pOps, c, req);
  return req_started(pComm, req, rc, pReq);
}

int bt_comm_allreduce(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                      bt_redop eOp, bt_comm_req **pReq) {
  BT_ASSERT(pComm);
  if (pReq) *pReq = NULL;
  if (comm_check_type(pComm, "allreduce", eType) ||
      comm_check_redop(pComm, "allreduce", eOp) ||
      comm_check_buf(pComm, "allreduce", pBuf, n, "buffer"))
    return BT_ERR;
  comm_call c = {.eKind = BT_OPK_ALLREDUCE, .pRecv = pBuf, .n = n,
                 .eType = eType, .eOp = eOp};
  return comm_start(pComm, &c, pReq);
}

int bt_comm_reduce_scatter(bt_comm *pComm, const void *pSend, void *pRecv,
                           size_t nPerRank, bt_dtype eType, bt_redop eOp,
                           bt_comm_req **pReq) {
  BT_ASSERT(pComm);
  if (pReq) *pReq = NULL;
  const char *zOp = "reduce_scatter";
  if (comm_check_type(pComm, zOp, eType) ||
      comm_check_redop(pComm, zOp, eOp) ||
      comm_check_buf(pComm, zOp, pSend, nPerRank, "send buffer") ||
      comm_check_buf(pComm, zOp, pRecv, nPerRank, "receive buffer"))
    return BT_ERR;
  size_t es = bt_comm_dtype_size(eType);
  if (comm_check_overlap(pComm, zOp, pRecv, nPerRank * es, pSend,
                         (size_t)pComm->world * nPerRank * es))
    return BT_ERR;
  comm_call c = {.eKind = BT_OPK_REDUCE_SCATTER, .pSend = pSend,
                 .pRecv = pRecv, .n = nPerRank, .eType = eType, .eOp = eOp};
  return comm_start(pComm, &c, pReq);
}

int bt_comm_reduce_scatter_v(bt_comm *pComm, const void *pSend, void *pRecv,
                             const size_t *aCount, bt_dtype eType,
                             bt_redop eOp, bt_comm_req **pReq) {
  BT_ASSERT(pComm && aCount);
  if (pReq) *pReq = NULL;
  const char *zOp = "reduce_scatter_v";
  size_t nTotal = 0;
  for (int r = 0; r < pComm->world; r++) nTotal += aCount[r];
  size_t nMine = aCount[pComm->rank];
  if (comm_check_type(pComm, zOp, eType) ||
      comm_check_redop(pComm, zOp, eOp) ||
      comm_check_buf(pComm, zOp, pSend, nTotal, "send buffer") ||
      comm_check_buf(pComm, zOp, pRecv, nMine, "receive buffer"))
    return BT_ERR;
  size_t es = bt_comm_dtype_size(eType);
  if (comm_check_overlap(pComm, zOp, pRecv, nMine * es, pSend, nTotal * es))
    return BT_ERR;
  comm_call c = {.eKind = BT_OPK_REDUCE_SCATTER, .pSend = pSend,
                 .pRecv = pRecv, .n = nMine, .aCount = aCount,
                 .eType = eType, .eOp = eOp};
  return comm_start(pComm, &c, pReq);
}

int bt_comm_all_gather(bt_comm *pComm, const void *pSend, void *pRecv,
                       size_t nPerRank, bt_dtype eType, bt_comm_req **pReq) {
  BT_ASSERT(pComm);
  if (pReq) *pReq = NULL;
  const char *zOp = "all_gather";
  if (comm_check_type(pComm, zOp, eType) ||
      comm_check_buf(pComm, zOp, pSend, nPerRank, "send buffer") ||
      comm_check_buf(pComm, zOp, pRecv, nPerRank, "receive buffer"))
    return BT_ERR;
  size_t es = bt_comm_dtype_size(eType);
  if (comm_check_overlap(pComm, zOp, pSend, nPerRank * es, pRecv,
                         (size_t)pComm->world * nPerRank * es))
    return BT_ERR;
  comm_call c = {.eKind = BT_OPK_ALL_GATHER, .pSend = pSend, .pRecv = pRecv,
                 .n = nPerRank, .eType = eType};
  return comm_start(pComm, &c, pReq);
}

int bt_comm_broadcast(bt_comm *pComm, void *pBuf, size_t n, bt_dtype eType,
                      int root, bt_comm_req **pReq) {
  BT_ASSERT(pComm);
  if (pReq) *pReq = NULL;
  if (comm_check_type(pComm, "broadcast", eType) ||
      comm_check_buf(pComm, "broadcast", pBuf, n, "buffer"))
    return BT_ERR;
  if (root < 0 || root >= pComm->world)
    return bt_err_set("broadcast on rank %d@%s: root %d outside [0, %d)",
                      pComm->rank, bt_log_host(), root, pComm->world);
  comm_call c = {.eKind = BT_OPK_BROADCAST, .pRecv = pBuf, .n = n,
                 .eType = eType, .root = root};
  return comm_start(pComm, &c, pReq);
}

int bt_comm_barrier(bt_comm *pComm, bt_comm_req **pReq) {
  BT_ASSERT(pComm);
  if (pReq) *pReq = NULL;
  comm_call c = {.eKind = BT_OPK_BARRIER, .eType = BT_U8};
  return comm_start(pComm, &c, pReq);
}

/* ---- host (control-plane) helpers: MPI_COMM_WORLD, never NCCL -------------
 */

/* Runs one host operation through the MPI table, whatever data plane
 * pComm->pOps is, and waits for it under the watchdog. */
static int comm_host_call(bt_comm *pComm, const comm_call *c) {
  bt_comm_req *req = req_get(pComm, c->eKind, c->n, c->eType);
  if (!req) return BT_ERR;
  int rc = comm_dispatch(pComm, &bt_comm_mpi_ops, c, req);
  if (rc == BT_OK) rc = comm_poll(pComm, &bt_comm_mpi_ops, req);
  if (rc) req_error(req, "host");
  else req_complete(req);
  req_put(pComm, req);
  return rc;
}

int bt_comm_host_allreduce(bt_comm *pComm, void *pBuf, size_t n,
                           bt_dtype eType, bt_redop eOp) {
  BT_ASSERT(pComm);
  if (comm_check_type(pComm, "host allreduce", eType) ||
      comm_check_redop(pComm, "host allreduce", eOp) ||
      comm_check_buf(pComm, "host allreduce", pBuf, n, "buffer"))
    return BT_ERR;
  if (!pComm->bMpi) return BT_OK;
  comm_call c = {.eKind = BT_OPK_ALLREDUCE, .pRecv = pBuf, .n = n,
                 .eType = eType, .eOp = eOp};
  return comm_host_call(pComm, &c);
}

int bt_comm_mpi_host_bcast(bt_comm *pComm, void *pBuf, size_t nByte, int root,
                           const char *zWhat) {
  if (!pComm->bMpi) return BT_OK;
  /* MPI counts are int: large payloads (a checkpoint's state) go in
   * chunks of 1 GiB. */
  const size_t nChunk = (size_t)1 << 30;
  size_t off = 0;
  do {
    size_t n = nByte - off < nChunk ? nByte - off : nChunk;
    comm_call c = {.eKind = BT_OPK_BROADCAST, .pRecv = (char *)pBuf + off,
                   .n = n, .eType = BT_U8, .root = root};
    if (comm_host_call(pComm, &c)) return bt_err_prefix("%s: ", zWhat);
    off += n;
  } while (off < nByte);
  return BT_OK;
}

static int comm_shutdown_barrier(bt_comm *pComm) {
  bt_comm_set_context(pComm, pComm->step, "shutdown barrier");
  comm_call c = {.eKind = BT_OPK_BARRIER, .eType = BT_U8};
  return comm_host_call(pComm, &c);
}

int bt_comm_host_broadcast(bt_comm *pComm, void *pBuf, size_t nByte,
                           int root) {
  BT_ASSERT(pComm);
  if (comm_check_buf(pComm, "host broadcast", pBuf, nByte, "buffer"))
    return BT_ERR;
  if (root < 0 || root >= pComm->world)
    return bt_err_set("host broadcast on rank %d@%s: root %d outside [0, %d)",
                      pComm->rank, bt_log_host(), root, pComm->world);
  return bt_comm_mpi_host_bcast(pComm, pBuf, nByte, root, "host broadcast");
}

int bt_comm_host_allgather(bt_comm *pComm, const void *pSend, void *pRecv,
                           size_t nByte) {
  BT_ASSERT(pComm);
  const char *zOp = "host allgather";
  if (comm_check_buf(pComm, zOp, pSend, nByte, "send buffer") ||
      comm_check_buf(pComm, zOp, pRecv, nByte, "receive buffer") ||
      comm_check_overlap(pComm, zOp, pSend, nByte, pRecv,
                         (size_t)pComm->world * nByte))
    return BT_ERR;
  if (!pComm->bMpi) {
    if (pSend != pRecv && nByte > 0) memmove(pRecv, pSend, nByte);
    return BT_OK;
  }
  comm_call c = {.eKind = BT_OPK_ALL_GATHER, .pSend = pSend, .pRecv = pRecv,
                 .n = nByte, .eType = BT_U8};
  return comm_host_call(pComm, &c);
}

/* ---- abort -----------------------------------------------------------------
 */

/* Flushes f unless another thread holds its lock (it may be stuck in a
 * write: waiting for it would turn an abort into a hang). */
static void comm_flush_nowait(FILE *f) {
  if (ftrylockfile(f) == 0) {
    fflush_unlocked(f);
    funlockfile(f);
  }
}

void bt_comm_abort(bt_comm *pComm, int exitCode) {
  comm_flush_nowait(stdout);
  comm_flush_nowait(stderr);
  int bMpi;
  if (pComm) {
    bMpi = pComm->bMpi;
  } else {
    /* Init failed or never ran: MPI may still be up. */
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    if (init) MPI_Finalized(&fin);
    bMpi = init && !fin;
  }
  if (bMpi) {
    /* If the launcher cannot be reached (its daemon died), MPI_Abort may
     * hang; SIGALRM's default action then ends this process, which the
     * launcher (if alive) reports as a failure of the whole job. */
    signal(SIGALRM, SIG_DFL);
    alarm(60);
    MPI_Abort(MPI_COMM_WORLD, exitCode);
  }
  exit(exitCode); /* the one sanctioned exit() of baton (comm.h) */
}
