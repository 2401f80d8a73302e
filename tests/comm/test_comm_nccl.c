/*
 * test_comm_nccl.c: the NCCL data plane on device memory (CUDA builds,
 * label `gpu`). Exits 77 (CTest: skipped) when no CUDA device is present.
 *
 * Plain run: world size 1 (NCCL with one rank, no MPI). With several GPUs:
 * mpirun -np <number of GPUs> build/tests/comm/comm_nccl (one rank per
 * GPU; NCCL does not support two ranks on one device).
 *
 * Checks, against values computed on the host like test_comm.c: allreduce
 * for every dtype and reduction, reduce_scatter and all_gather (also in
 * place), broadcast, barrier, several operations in flight completed out
 * of order, and stream ordering: the inputs are uploaded with
 * cudaMemcpyAsync on the compute stream just before the collective, and the
 * results downloaded on it just after the wait, with no synchronisation in
 * between, so a missing event dependency shows up as wrong values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "base/util.h"
#include "comm/comm.h"
#include "tests/check.h"

static int g_rank, g_world;
static cudaStream_t g_stream;

#include "tests/comm/comm_values.h"

static void up(void *pDev, const void *pHost, size_t nByte) {
  CHECK(cudaMemcpyAsync(pDev, pHost, nByte, cudaMemcpyHostToDevice,
                        g_stream) == cudaSuccess, "upload");
}

static void down(void *pHost, const void *pDev, size_t nByte) {
  CHECK(cudaMemcpyAsync(pHost, pDev, nByte, cudaMemcpyDeviceToHost,
                        g_stream) == cudaSuccess, "download");
  CHECK(cudaStreamSynchronize(g_stream) == cudaSuccess, "sync");
}

int main(int argc, char **argv) {
  bt_comm *c = NULL;
  if (bt_comm_init(&c, &argc, &argv)) {
    fprintf(stderr, "init: %s\n", bt_err_msg());
    bt_comm_abort(NULL, 1);
  }
  g_rank = bt_comm_rank(c);
  g_world = bt_comm_world(c);
  int nDev = 0;
  if (cudaGetDeviceCount(&nDev) != cudaSuccess || nDev == 0) {
    if (g_rank == 0) printf("SKIP: no CUDA device\n");
    bt_comm_free(c);
    return 77;
  }
  bt_comm_set_timeout(c, 60);
  CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking) ==
            cudaSuccess, "compute stream");
  if (bt_comm_attach_backend(c, BT_COMM_AUTO, g_stream)) {
    fprintf(stderr, "attach: %s\n", bt_err_msg());
    bt_comm_abort(c, 1);
  }
  CHECK(strcmp(bt_comm_name(c), "nccl") == 0, "name %s", bt_comm_name(c));
  static const bt_dtype aType[] = {BT_F32, BT_F64, BT_I32, BT_I64, BT_U8};
  static const bt_redop aOp[] = {BT_SUM, BT_MAX, BT_MIN};
  size_t W = (size_t)g_world, n = 4099;
  void *pDev = NULL, *pDev2 = NULL;
  CHECK(cudaMalloc(&pDev, W * n * 8) == cudaSuccess, "malloc");
  CHECK(cudaMalloc(&pDev2, W * n * 8) == cudaSuccess, "malloc");
  char *pHost = malloc(W * n * 8), *pOut = malloc(W * n * 8);

  for (int it = 0; it < 5; it++) {
    for (int io = 0; io < 3; io++) {
      for (int nb = 0; nb < 2; nb++) {
        bt_dtype t = aType[it];
        size_t es = esize(t);
        bt_comm_set_context(c, it, "nccl allreduce");
        for (size_t i = 0; i < n; i++)
          put(pHost, t, i, val(g_rank, i, aOp[io]));
        up(pDev, pHost, n * es);
        bt_comm_req *req = NULL;
        int rc = bt_comm_allreduce(c, pDev, n, t, aOp[io], nb ? &req : NULL);
        rc |= bt_comm_wait(c, req);
        CHECK(rc == BT_OK, "allreduce: %s", bt_err_msg());
        down(pOut, pDev, n * es);
        size_t nBad = 0;
        for (size_t i = 0; i < n; i++)
          nBad += get(pOut, t, i) != expect(i, aOp[io], t);
        CHECK(nBad == 0, "allreduce type %d op %d nb %d: %zu wrong", it, io,
              nb, nBad);
      }
    }
    /* reduce_scatter (sum), out of place then in place */
    for (int inPlace = 0; inPlace < 2; inPlace++) {
      bt_dtype t = aType[it];
      size_t es = esize(t);
      for (size_t i = 0; i < W * n; i++)
        put(pHost, t, i, val(g_rank, i, BT_SUM));
      up(pDev, pHost, W * n * es);
      char *pRecv = inPlace ? (char *)pDev + (size_t)g_rank * n * es : pDev2;
      CHECK(bt_comm_reduce_scatter(c, pDev, pRecv, n, t, BT_SUM, NULL) ==
                BT_OK, "reduce_scatter: %s", bt_err_msg());
      down(pOut, pRecv, n * es);
      size_t nBad = 0;
      for (size_t i = 0; i < n; i++)
        nBad += get(pOut, t, i) != expect((size_t)g_rank * n + i, BT_SUM, t);
      CHECK(nBad == 0, "reduce_scatter type %d in place %d: %zu wrong", it,
            inPlace, nBad);
    }
    /* all_gather, out of place then in place */
    for (int inPlace = 0; inPlace < 2; inPlace++) {
      bt_dtype t = aType[it];
      size_t es = esize(t);
      for (size_t i = 0; i < n; i++)
        put(pHost, t, i, (g_rank * 13 + (long)i) % 120);
      char *pSend = inPlace ? (char *)pDev2 + (size_t)g_rank * n * es : pDev;
      up(pSend, pHost, n * es);
      CHECK(bt_comm_all_gather(c, pSend, pDev2, n, t, NULL) == BT_OK,
            "all_gather: %s", bt_err_msg());
      down(pOut, pDev2, W * n * es);
      size_t nBad = 0;
      for (int q = 0; q < g_world; q++)
        for (size_t i = 0; i < n; i++)
          nBad += get(pOut, t, (size_t)q * n + i) !=
                  (double)((q * 13 + (long)i) % 120);
      CHECK(nBad == 0, "all_gather type %d in place %d: %zu wrong", it,
            inPlace, nBad);
    }
  }
  /* broadcast from the last rank; barrier; two ops in flight. */
  int root = g_world - 1;
  for (size_t i = 0; i < n; i++)
    ((float *)pHost)[i] = g_rank == root ? (float)i : -1.f;
  up(pDev, pHost, n * 4);
  bt_comm_req *aReq[3] = {0};
  CHECK(bt_comm_broadcast(c, pDev, n, BT_F32, root, &aReq[0]) == BT_OK,
        "bcast: %s", bt_err_msg());
  for (size_t i = 0; i < n; i++) ((float *)pHost)[i] = 1.f;
  up(pDev2, pHost, n * 4);
  CHECK(bt_comm_allreduce(c, pDev2, n, BT_F32, BT_SUM, &aReq[1]) == BT_OK,
        "allreduce: %s", bt_err_msg());
  CHECK(bt_comm_barrier(c, &aReq[2]) == BT_OK, "barrier: %s", bt_err_msg());
  for (int k = 2; k >= 0; k--)
    CHECK(bt_comm_wait(c, aReq[k]) == BT_OK, "wait %d: %s", k, bt_err_msg());
  down(pOut, pDev, n * 4);
  size_t nBad = 0;
  for (size_t i = 0; i < n; i++) nBad += ((float *)pOut)[i] != (float)i;
  CHECK(nBad == 0, "broadcast: %zu wrong", nBad);
  down(pOut, pDev2, n * 4);
  nBad = 0;
  for (size_t i = 0; i < n; i++) nBad += ((float *)pOut)[i] != (float)g_world;
  CHECK(nBad == 0, "in-flight allreduce: %zu wrong", nBad);

  int64_t aCount[2] = {g_check_pass, g_check_fail};
  if (bt_comm_host_allreduce(c, aCount, 2, BT_I64, BT_SUM)) aCount[1]++;
  if (g_rank == 0)
    printf("test_comm_nccl (world %d): %lld passed, %lld failed\n", g_world,
           (long long)aCount[0], (long long)aCount[1]);
  cudaFree(pDev);
  cudaFree(pDev2);
  free(pHost);
  free(pOut);
  bt_comm_free(c);
  cudaStreamDestroy(g_stream);
  return (aCount[1] == 0 && g_check_pass > 0) ? 0 : 1;
}
