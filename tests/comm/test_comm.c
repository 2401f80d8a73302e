/*
 * test_comm.c: every collective of comm.h, blocking and non-blocking, every
 * dtype and reduction, checked against values each rank computes locally.
 *
 * Rank q contributes a value that is a pure function of (q, i), small
 * enough to be exact in every dtype (u8 sums wrap mod 256 on both sides),
 * so every rank knows the exact answer. Run plain (world 1, "single", no
 * MPI call) and under mpirun with 1..64 ranks. A failing check on any rank
 * fails the test: failures are summed over ranks and every rank returns
 * non-zero, so mpirun exits non-zero.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "base/util.h"
#include "comm/comm.h"
#include "tests/check.h"

static const bt_dtype aType[] = {BT_F32, BT_F64, BT_I32, BT_I64, BT_U8};
static const char *azType[] = {"f32", "f64", "i32", "i64", "u8"};
static const bt_redop aOp[] = {BT_SUM, BT_MAX, BT_MIN};
static const char *azOp[] = {"sum", "max", "min"};
#define N_TYPE 5
#define N_OP 3

static int g_rank, g_world;

#include "tests/comm/comm_values.h"

/* Counts mismatches (one CHECK per buffer keeps output short). */
static size_t count_bad(const void *p, bt_dtype t, size_t n, size_t off,
                        bt_redop eOp, size_t *pFirst) {
  size_t nBad = 0;
  for (size_t i = 0; i < n; i++) {
    if (get(p, t, i) != expect(off + i, eOp, t)) {
      if (!nBad) *pFirst = i;
      nBad++;
    }
  }
  return nBad;
}

static void test_identity(bt_comm *c) {
  CHECK(g_world >= 1 && g_rank >= 0 && g_rank < g_world, "rank %d world %d",
        g_rank, g_world);
  /* Every test run is on one machine: the node is the world. */
  CHECK(bt_comm_local_rank(c) == g_rank, "local rank %d vs rank %d",
        bt_comm_local_rank(c), g_rank);
  CHECK(bt_comm_local_world(c) == g_world, "local world %d vs world %d",
        bt_comm_local_world(c), g_world);
  int bLaunched = getenv("OMPI_COMM_WORLD_SIZE") != NULL;
  const char *zWant = bLaunched ? "mpi" : "single";
  CHECK(strcmp(bt_comm_name(c), zWant) == 0, "name %s, want %s",
        bt_comm_name(c), zWant);
  CHECK(bt_log_rank() == g_rank, "log rank %d", bt_log_rank());
  /* Without a launcher MPI must stay untouched (a plain run on a machine
   * without a working MPI setup must not depend on it). */
  int bInit = -1;
  MPI_Initialized(&bInit);
  CHECK(bInit == bLaunched, "MPI initialised %d, launched %d", bInit,
        bLaunched);
  CHECK(bt_comm_attach_backend(c, BT_COMM_MPI, NULL) == BT_OK, "attach: %s",
        bt_err_msg());
  CHECK(bt_comm_attach_backend(c, BT_COMM_AUTO, NULL) == BT_OK, "attach: %s",
        bt_err_msg());
  CHECK(strcmp(bt_comm_name(c), zWant) == 0, "name after attach %s",
        bt_comm_name(c));
  /* NCCL without a GPU (CPU build, or BATON_CUDA_BIND=0 as CTest sets) is
   * refused cleanly and leaves the communicator as it was. */
  const char *zBind = getenv("BATON_CUDA_BIND");
#ifdef BATON_HAVE_CUDA
  int bNoGpu = zBind && strcmp(zBind, "0") == 0;
#else
  int bNoGpu = 1;
  (void)zBind;
#endif
  if (bNoGpu) {
    CHECK(bt_comm_attach_backend(c, BT_COMM_NCCL, NULL) == BT_ERR,
          "NCCL attach without a GPU succeeded");
    CHECK(strstr(bt_err_msg(), "rank") != NULL, "message '%s'", bt_err_msg());
    CHECK(strcmp(bt_comm_name(c), zWant) == 0, "name after failed attach %s",
          bt_comm_name(c));
  }
}

static void test_allreduce(bt_comm *c) {
  static const size_t aN[] = {0, 1, 13, 4099};
  for (int it = 0; it < N_TYPE; it++) {
    for (int io = 0; io < N_OP; io++) {
      for (size_t in = 0; in < sizeof aN / sizeof aN[0]; in++) {
        for (int nb = 0; nb < 2; nb++) {
          bt_dtype t = aType[it];
          size_t n = aN[in];
          void *p = malloc(n * esize(t) + 1);
          for (size_t i = 0; i < n; i++) put(p, t, i, val(g_rank, i, aOp[io]));
          bt_comm_req *req = NULL;
          int rc = bt_comm_allreduce(c, p, n, t, aOp[io], nb ? &req : NULL);
          if (nb) rc |= bt_comm_wait(c, req);
          CHECK(rc == BT_OK, "allreduce %s %s n=%zu: %s", azType[it],
                azOp[io], n, bt_err_msg());
          size_t first = 0;
          size_t nBad = count_bad(p, t, n, 0, aOp[io], &first);
          CHECK(nBad == 0,
                "allreduce %s %s n=%zu %s: %zu wrong, first [%zu]=%g want %g",
                azType[it], azOp[io], n, nb ? "non-blocking" : "blocking",
                nBad, first, get(p, t, first), expect(first, aOp[io], t));
          free(p);
        }
      }
    }
  }
  /* One large buffer (1 MiB of f32), the gradient-bucket case. */
  size_t n = 1 << 18;
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = (float)val(g_rank, i, BT_SUM);
  CHECK(bt_comm_allreduce(c, p, n, BT_F32, BT_SUM, NULL) == BT_OK, "%s",
        bt_err_msg());
  size_t first = 0;
  CHECK(count_bad(p, BT_F32, n, 0, BT_SUM, &first) == 0, "1 MiB allreduce");
  free(p);
}

static void test_reduce_scatter(bt_comm *c) {
  static const size_t aN[] = {1, 5, 1000};
  size_t W = (size_t)g_world;
  for (int it = 0; it < N_TYPE; it++) {
    for (int io = 0; io < N_OP; io++) {
      for (size_t in = 0; in < sizeof aN / sizeof aN[0]; in++) {
        for (int mode = 0; mode < 3; mode++) { /* blocking, nb, in place */
          bt_dtype t = aType[it];
          size_t n = aN[in], es = esize(t);
          char *pSend = malloc(W * n * es);
          char *pRecv = malloc(n * es);
          for (size_t i = 0; i < W * n; i++)
            put(pSend, t, i, val(g_rank, i, aOp[io]));
          char *pOut = mode == 2 ? pSend + (size_t)g_rank * n * es : pRecv;
          bt_comm_req *req = NULL;
          int rc = bt_comm_reduce_scatter(c, pSend, pOut, n, t, aOp[io],
                                          mode == 1 ? &req : NULL);
          if (mode == 1) rc |= bt_comm_wait(c, req);
          CHECK(rc == BT_OK, "reduce_scatter %s %s n=%zu mode %d: %s",
                azType[it], azOp[io], n, mode, bt_err_msg());
          size_t first = 0;
          size_t nBad =
              count_bad(pOut, t, n, (size_t)g_rank * n, aOp[io], &first);
          CHECK(nBad == 0,
                "reduce_scatter %s %s n=%zu mode %d: %zu wrong, first [%zu]",
                azType[it], azOp[io], n, mode, nBad, first);
          free(pSend);
          free(pRecv);
        }
      }
    }
  }
}

static double gval(int q, size_t i) {
  return (double)((q * 13 + (long)i) % 120);
}

static void test_all_gather(bt_comm *c) {
  static const size_t aN[] = {0, 1, 5, 1000};
  size_t W = (size_t)g_world;
  for (int it = 0; it < N_TYPE; it++) {
    for (size_t in = 0; in < sizeof aN / sizeof aN[0]; in++) {
      for (int mode = 0; mode < 3; mode++) {
        bt_dtype t = aType[it];
        size_t n = aN[in], es = esize(t);
        char *pSend = malloc(n * es + 1);
        char *pRecv = malloc(W * n * es + 1);
        memset(pRecv, 0xEE, W * n * es + 1);
        char *pIn = mode == 2 ? pRecv + (size_t)g_rank * n * es : pSend;
        for (size_t i = 0; i < n; i++) put(pIn, t, i, gval(g_rank, i));
        bt_comm_req *req = NULL;
        int rc = bt_comm_all_gather(c, pIn, pRecv, n, t,
                                    mode == 1 ? &req : NULL);
        if (mode == 1) rc |= bt_comm_wait(c, req);
        CHECK(rc == BT_OK, "all_gather %s n=%zu mode %d: %s", azType[it], n,
              mode, bt_err_msg());
        size_t nBad = 0;
        for (int q = 0; q < g_world; q++)
          for (size_t i = 0; i < n; i++)
            nBad += get(pRecv, t, (size_t)q * n + i) != gval(q, i);
        CHECK(nBad == 0, "all_gather %s n=%zu mode %d: %zu wrong", azType[it],
              n, mode, nBad);
        free(pSend);
        free(pRecv);
      }
    }
  }
}

static void test_broadcast(bt_comm *c) {
  int aRoot[3] = {0, g_world - 1, g_world / 2};
  for (int ir = 0; ir < 3; ir++) {
    int root = aRoot[ir];
    for (int it = 0; it < N_TYPE; it++) {
      for (int nb = 0; nb < 2; nb++) {
        bt_dtype t = aType[it];
        size_t n = 777;
        void *p = calloc(n, esize(t));
        if (g_rank == root)
          for (size_t i = 0; i < n; i++) put(p, t, i, gval(root, i));
        bt_comm_req *req = NULL;
        int rc = bt_comm_broadcast(c, p, n, t, root, nb ? &req : NULL);
        if (nb) rc |= bt_comm_wait(c, req);
        CHECK(rc == BT_OK, "broadcast root %d %s: %s", root, azType[it],
              bt_err_msg());
        size_t nBad = 0;
        for (size_t i = 0; i < n; i++) nBad += get(p, t, i) != gval(root, i);
        CHECK(nBad == 0, "broadcast root %d %s nb %d: %zu wrong", root,
              azType[it], nb, nBad);
        free(p);
      }
    }
  }
}

static void test_barrier(bt_comm *c) {
  CHECK(bt_comm_barrier(c, NULL) == BT_OK, "barrier: %s", bt_err_msg());
  bt_comm_req *req = NULL;
  CHECK(bt_comm_barrier(c, &req) == BT_OK && req, "ibarrier: %s",
        bt_err_msg());
  CHECK(bt_comm_wait(c, req) == BT_OK, "ibarrier wait: %s", bt_err_msg());
  if (g_world == 1) return;
  /* Rank 0 arrives 200 ms late: nobody may leave before it arrived. */
  double t0 = bt_time_now();
  if (g_rank == 0) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  CHECK(bt_comm_barrier(c, NULL) == BT_OK, "barrier: %s", bt_err_msg());
  double dt = bt_time_now() - t0;
  CHECK(dt > 0.15, "left the barrier after %.3f s, before rank 0 arrived",
        dt);
}

/* Several operations in flight at once, completed in an order unlike the
 * start order, one of them by polling bt_comm_test. */
static void test_in_flight(bt_comm *c) {
  size_t W = (size_t)g_world, n = 3001;
  enum { NA = 4 };
  double *apBuf[NA];
  bt_comm_req *aReq[NA + 3] = {0};
  for (int k = 0; k < NA; k++) {
    apBuf[k] = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
      apBuf[k][i] = val(g_rank, i + (size_t)k, BT_SUM);
    CHECK(bt_comm_allreduce(c, apBuf[k], n, BT_F64, BT_SUM, &aReq[k]) == BT_OK,
          "start %d: %s", k, bt_err_msg());
  }
  int32_t *pAg = malloc(W * n * sizeof *pAg),
          *pMine = malloc(n * sizeof *pMine);
  for (size_t i = 0; i < n; i++) pMine[i] = (int32_t)gval(g_rank, i);
  CHECK(bt_comm_all_gather(c, pMine, pAg, n, BT_I32, &aReq[NA]) == BT_OK,
        "start ag: %s", bt_err_msg());
  int64_t bc[4] = {0};
  if (g_rank == g_world - 1) bc[0] = 42, bc[3] = -7;
  CHECK(bt_comm_broadcast(c, bc, 4, BT_I64, g_world - 1, &aReq[NA + 1]) ==
            BT_OK, "start bcast: %s", bt_err_msg());
  CHECK(bt_comm_barrier(c, &aReq[NA + 2]) == BT_OK, "start barrier: %s",
        bt_err_msg());
  /* Complete: the barrier by polling, then the rest newest first. */
  int done = 0;
  for (long k = 0; !done && k < 100000000; k++) {
    CHECK(bt_comm_test(c, aReq[NA + 2], &done) == BT_OK, "test: %s",
          bt_err_msg());
    if (!done) usleep(100);
  }
  CHECK(done, "barrier never completed under bt_comm_test");
  for (int k = NA + 1; k >= 0; k--)
    CHECK(bt_comm_wait(c, aReq[k]) == BT_OK, "wait %d: %s", k, bt_err_msg());
  for (int k = 0; k < NA; k++) {
    size_t nBad = 0;
    for (size_t i = 0; i < n; i++)
      nBad += apBuf[k][i] != expect(i + (size_t)k, BT_SUM, BT_F64);
    CHECK(nBad == 0, "in-flight allreduce %d: %zu wrong", k, nBad);
    free(apBuf[k]);
  }
  size_t nBad = 0;
  for (int q = 0; q < g_world; q++)
    for (size_t i = 0; i < n; i++)
      nBad += pAg[(size_t)q * n + i] != (int32_t)gval(q, i);
  CHECK(nBad == 0, "in-flight all_gather: %zu wrong", nBad);
  CHECK(bc[0] == 42 && bc[1] == 0 && bc[3] == -7, "in-flight bcast %lld %lld",
        (long long)bc[0], (long long)bc[3]);
  free(pAg);
  free(pMine);
  /* A NULL request is complete. */
  CHECK(bt_comm_wait(c, NULL) == BT_OK, "wait(NULL)");
  done = 0;
  CHECK(bt_comm_test(c, NULL, &done) == BT_OK && done == 1, "test(NULL)");
}

/* ZeRO's pattern: reduce_scatter the gradient, all_gather the shards back:
 * the result equals a plain allreduce. */
static void test_round_trip(bt_comm *c) {
  size_t W = (size_t)g_world, n = 1024;
  float *pFull = malloc(W * n * sizeof *pFull);
  for (size_t i = 0; i < W * n; i++) pFull[i] = (float)val(g_rank, i, BT_SUM);
  float *pShard = pFull + (size_t)g_rank * n;
  int rc = bt_comm_reduce_scatter(c, pFull, pShard, n, BT_F32, BT_SUM, NULL);
  rc |= bt_comm_all_gather(c, pShard, pFull, n, BT_F32, NULL);
  CHECK(rc == BT_OK, "round trip: %s", bt_err_msg());
  size_t first = 0;
  size_t nBad = count_bad(pFull, BT_F32, W * n, 0, BT_SUM, &first);
  CHECK(nBad == 0, "round trip: %zu wrong, first %zu", nBad, first);
  free(pFull);
}

/* ZeRO-1 with equal slices (trainer/grad_sync.h): buckets of different
 * lengths (multiples of the world size) in one buffer, each reduce-
 * scattered in place into rank r's slice r, all launched before any is
 * completed (bt_comm_wait_stream, the trainer's completion), then each
 * all-gathered in place the same way: the buffer equals a plain
 * allreduce. The in-place reduce-scatter's copy to the slice (MPI) must
 * happen in wait_stream too. */
static void test_bucket_round_trip(bt_comm *c) {
  size_t W = (size_t)g_world;
  const size_t aLen[] = {5 * W, 1 * W, 17 * W};
  size_t n = 0, aLo[3];
  for (int b = 0; b < 3; b++) aLo[b] = n, n += aLen[b];
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = (float)val(g_rank, i, BT_SUM);
  bt_comm_req *aReq[3];
  int rc = BT_OK;
  for (int b = 0; b < 3; b++) {
    size_t q = aLen[b] / W;
    rc |= bt_comm_reduce_scatter(c, p + aLo[b], p + aLo[b] + (size_t)g_rank * q,
                                 q, BT_F32, BT_SUM, &aReq[b]);
  }
  for (int b = 0; b < 3; b++) rc |= bt_comm_wait_stream(c, aReq[b]);
  for (int b = 0; b < 3; b++) {
    size_t q = aLen[b] / W;
    rc |= bt_comm_all_gather(c, p + aLo[b] + (size_t)g_rank * q, p + aLo[b], q,
                             BT_F32, &aReq[b]);
  }
  for (int b = 0; b < 3; b++) rc |= bt_comm_wait_stream(c, aReq[b]);
  CHECK(rc == BT_OK, "bucket round trip: %s", bt_err_msg());
  size_t first = 0;
  size_t nBad = count_bad(p, BT_F32, n, 0, BT_SUM, &first);
  CHECK(nBad == 0, "bucket round trip: %zu of %zu wrong, first %zu", nBad, n,
        first);
  CHECK(bt_comm_wait_stream(c, NULL) == BT_OK, "wait_stream(NULL)");
  free(p);
}

static void test_host(bt_comm *c) {
  int64_t sum = g_rank + 1;
  CHECK(bt_comm_host_allreduce(c, &sum, 1, BT_I64, BT_SUM) == BT_OK, "%s",
        bt_err_msg());
  CHECK(sum == (int64_t)g_world * (g_world + 1) / 2, "host sum %lld",
        (long long)sum);
  double mx = g_rank;
  CHECK(bt_comm_host_allreduce(c, &mx, 1, BT_F64, BT_MAX) == BT_OK &&
            mx == g_world - 1, "host max %g", mx);
  char z[32] = {0};
  if (g_rank == g_world - 1) snprintf(z, sizeof z, "config-hash-%d", g_world);
  CHECK(bt_comm_host_broadcast(c, z, sizeof z, g_world - 1) == BT_OK, "%s",
        bt_err_msg());
  char zWant[32];
  snprintf(zWant, sizeof zWant, "config-hash-%d", g_world);
  CHECK(strcmp(z, zWant) == 0, "host bcast got '%s'", z);
  struct {
    int32_t rank;
    char tag[4];
  } me = {g_rank, "ok!"}, *pAll = calloc((size_t)g_world, sizeof me);
  CHECK(bt_comm_host_allgather(c, &me, pAll, sizeof me) == BT_OK, "%s",
        bt_err_msg());
  int nBad = 0;
  for (int q = 0; q < g_world; q++)
    nBad += pAll[q].rank != q || strcmp(pAll[q].tag, "ok!") != 0;
  CHECK(nBad == 0, "host allgather: %d wrong", nBad);
  free(pAll);
  CHECK(bt_comm_host_broadcast(c, NULL, 0, 0) == BT_OK, "empty bcast: %s",
        bt_err_msg());
}

/* Argument errors are refused locally with a message naming the rank. */
static void test_errors(bt_comm *c) {
  float x[4] = {0};
  bt_comm_req *req = (bt_comm_req *)x;
  bt_err_clear();
  CHECK(bt_comm_broadcast(c, x, 4, BT_F32, g_world, &req) == BT_ERR,
        "bad root accepted");
  CHECK(req == NULL, "request not cleared on error");
  CHECK(strstr(bt_err_msg(), "root") && strstr(bt_err_msg(), "rank"),
        "message '%s'", bt_err_msg());
  CHECK(bt_comm_allreduce(c, x, 4, (bt_dtype)99, BT_SUM, NULL) == BT_ERR,
        "bad dtype accepted");
  CHECK(bt_comm_allreduce(c, x, 4, BT_F32, (bt_redop)7, NULL) == BT_ERR,
        "bad op accepted");
  CHECK(bt_comm_allreduce(c, NULL, 4, BT_F32, BT_SUM, NULL) == BT_ERR,
        "NULL buffer accepted");
  if (g_world > 1) {
    /* Overlapping but not at block `rank`. */
    size_t W = (size_t)g_world;
    float *p = calloc(W * 4 + 1, sizeof *p);
    float *pBad = p + (size_t)((g_rank + 1) % g_world) * 4 + 1;
    CHECK(bt_comm_all_gather(c, pBad, p, 4, BT_F32, NULL) == BT_ERR,
          "bad overlap accepted");
    CHECK(strstr(bt_err_msg(), "overlap") != NULL, "message '%s'",
          bt_err_msg());
    CHECK(bt_comm_reduce_scatter(c, p, pBad, 4, BT_F32, BT_SUM, NULL) ==
              BT_ERR, "bad overlap accepted (reduce_scatter)");
    free(p);
  }
  if (strcmp(bt_comm_name(c), "mpi") == 0) {
    /* Over MPI's int count: refused before the buffer is touched, with a
     * message naming the op, step, label and rank. */
    bt_comm_set_context(c, 99, "huge bucket");
    uint8_t b = 0;
    CHECK(bt_comm_allreduce(c, &b, (size_t)2147483648u, BT_U8, BT_SUM, NULL) ==
              BT_ERR, "2^31 elements accepted by MPI");
    const char *z = bt_err_msg();
    CHECK(strstr(z, "allreduce of 2147483648 x u8 at step 99 (huge bucket)") &&
              strstr(z, "rank"), "message '%s'", z);
    bt_comm_set_context(c, 9, "errors");
  }
  /* Still usable afterwards. */
  int32_t one = 1;
  CHECK(bt_comm_allreduce(c, &one, 1, BT_I32, BT_SUM, NULL) == BT_OK &&
            one == g_world, "after errors: %d", one);
}

int main(int argc, char **argv) {
  bt_comm *c = NULL;
  if (bt_comm_init(&c, &argc, &argv)) {
    fprintf(stderr, "init: %s\n", bt_err_msg());
    bt_comm_abort(NULL, 1);
  }
  g_rank = bt_comm_rank(c);
  g_world = bt_comm_world(c);
  bt_comm_set_timeout(c, 60); /* a hang fails the test instead of CTest */
  /* The step watchdog runs through the whole test (and must not fire:
   * every phase below calls set_context); bt_comm_free joins it. */
  CHECK(bt_comm_watchdog_start(c) == BT_OK, "watchdog: %s", bt_err_msg());
  CHECK(bt_comm_watchdog_start(c) == BT_OK, "second start: %s", bt_err_msg());
  double t0 = bt_time_now();
  bt_comm_set_context(c, 0, "identity");
  test_identity(c);
  bt_comm_set_context(c, 1, "allreduce");
  test_allreduce(c);
  bt_comm_set_context(c, 2, "reduce_scatter");
  test_reduce_scatter(c);
  bt_comm_set_context(c, 3, "all_gather");
  test_all_gather(c);
  bt_comm_set_context(c, 4, "broadcast");
  test_broadcast(c);
  bt_comm_set_context(c, 5, "barrier");
  test_barrier(c);
  bt_comm_set_context(c, 6, "in flight");
  test_in_flight(c);
  bt_comm_set_context(c, 7, "round trip");
  test_round_trip(c);
  test_bucket_round_trip(c);
  bt_comm_set_context(c, 8, "host");
  test_host(c);
  bt_comm_set_context(c, 9, "errors");
  test_errors(c);

  int64_t aCount[2] = {g_check_pass, g_check_fail};
  if (bt_comm_host_allreduce(c, aCount, 2, BT_I64, BT_SUM)) {
    fprintf(stderr, "final reduce: %s\n", bt_err_msg());
    aCount[1]++;
  }
  if (g_rank == 0)
    printf("test_comm (%s, world %d): %lld passed, %lld failed in %.2f s\n",
           bt_comm_name(c), g_world, (long long)aCount[0],
           (long long)aCount[1], bt_time_now() - t0);
  bt_comm_free(c);
  return (aCount[1] == 0 && g_check_pass > 0) ? 0 : 1;
}
