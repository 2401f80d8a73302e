/*
 * cpu_backend.c: the CPU reference backend's lifetime, memory and function
 * table.
 *
 * "Device" memory is ordinary host memory, 64-byte aligned (one cache line,
 * and the widest SIMD load) and zeroed, so every copy is a memcpy and sync
 * has nothing to wait for: every op has finished when it returns.
 *
 * Threads: ONE pool, OpenMP's. OpenBLAS is set to a single thread and the
 * matmuls split their output rows across the OpenMP threads themselves
 * (cpu_ops.c), attention runs one small sgemm per (batch, head) inside an
 * OpenMP loop (cpu_attention.c). Two pools on the same cores fight: after
 * each sgemm OpenBLAS's pthreads keep spinning for a while, and OpenMP's
 * workers spin at their barriers, so every switch between a BLAS call and
 * an OpenMP loop ran the next region on half the cores (measured: 2
 * threads slower than 1 on the bench-small GPT step). With a single pool
 * there is nothing to fight over; this is also what OpenBLAS's own usage
 * notes prescribe for multi-threaded callers (one BLAS thread per calling
 * thread; the pthreads build locks its buffer pool for concurrent calls).
 *
 * nThread > 0 is this handle's thread count (every parallel region gets
 * num_threads(), cpu_internal.h), and is also made the process-wide
 * OpenMP default for code outside the backend; nThread <= 0 follows
 * OMP_NUM_THREADS / the core count.
 */
#include "base/util.h"
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void cpu_destroy(bt_backend *be) {
  free(be->pImpl);
  free(be);
}

/* Rounded up to whole cache lines and zeroed: callers (parameter buffers,
 * gradient buffers) rely on fresh memory being 0. */
static void *cpu_alloc_bytes(size_t nByte, const char *zWhat) {
  size_t nRound = (nByte + 63) & ~(size_t)63;
  void *p = bt_malloc_aligned(nRound ? nRound : 64, zWhat ? zWhat : "buffer");
  if (p) memset(p, 0, nRound ? nRound : 64);
  return p;
}

static void *cpu_mem_alloc(bt_backend *be, size_t nByte, const char *zWhat) {
  (void)be;
  if (nByte > SIZE_MAX - 63) {
    bt_err_set("allocation of %zu bytes for %s overflows", nByte,
               zWhat ? zWhat : "buffer");
    return NULL;
  }
  return cpu_alloc_bytes(nByte, zWhat);
}

static void cpu_mem_free(bt_backend *be, void *p) {
  (void)be;
  free(p);
}

static void cpu_mem_zero(bt_backend *be, void *p, size_t nByte) {
  (void)be;
  if (nByte) memset(p, 0, nByte);
}

/* memmove, not memcpy: a caller copying a buffer onto itself is harmless. */
static void cpu_mem_to_host(bt_backend *be, void *pHost, const void *pDev,
                            size_t nByte) {
  (void)be;
  if (nByte) memmove(pHost, pDev, nByte);
}

static void cpu_mem_from_host(bt_backend *be, void *pDev, const void *pHost,
                              size_t nByte) {
  (void)be;
  if (nByte) memmove(pDev, pHost, nByte);
}

/* Every CPU op is synchronous. */
static void cpu_sync(bt_backend *be) { (void)be; }

/* Both dtypes, stored as float: bf16 mode rounds at the points where a
 * GPU stores bf16 (ops.h bt_act_dtype), so the storage stays 4 bytes. */
static int cpu_set_act_dtype(bt_backend *be, bt_act_dtype e, size_t *pnByte) {
  (void)be;
  (void)e;
  *pnByte = sizeof(float);
  return BT_OK;
}

void bt_cpu_round_act_range(float *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = bt_round_bf16(p[i]);
}

void bt_cpu_round_act(const bt_backend *be, float *p, size_t n) {
  if (be->eActDtype != BT_ACT_BF16 || !p) return;
  const int nt = bt_cpu_nthread(be);
  size_t nChunk = (n + BT_CPU_EW_CHUNK - 1) / BT_CPU_EW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= BT_CPU_PAR_MIN)
  for (size_t k = 0; k < nChunk; k++) {
    size_t i0 = k * BT_CPU_EW_CHUNK;
    size_t len = n - i0 < BT_CPU_EW_CHUNK ? n - i0 : BT_CPU_EW_CHUNK;
    bt_cpu_round_act_range(p + i0, len);
  }
}

static const bt_backend_vtab cpu_vtab = {
    .zName = "cpu",
    .destroy = cpu_destroy,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_zero = cpu_mem_zero,
    .mem_to_host = cpu_mem_to_host,
    .mem_from_host = cpu_mem_from_host,
    .sync = cpu_sync,
    .upload_async = cpu_mem_from_host, /* host memory: a copy, done */
    .upload_release = NULL, /* the copy is done: nothing to wait for */
    .set_act_dtype = cpu_set_act_dtype,
    /* .<op> = bt_cpu_<op> for every op of kernels/ops.def */
#define BT_OP_RET(ret, name, params, args) .name = bt_cpu_##name,
#include "kernels/ops.def"
};

bt_backend *bt_backend_cpu_create(int nThread) {
  bt_backend *be = bt_calloc(1, sizeof(*be), "cpu backend");
  bt_cpu_state *st = bt_calloc(1, sizeof(*st), "cpu backend state");
  if (!be || !st) {
    free(be);
    free(st);
    return NULL;
  }
  st->nThread = nThread;
  if (nThread > 0) omp_set_num_threads(nThread);
  openblas_set_num_threads(1); /* see the file comment: one thread pool */
  be->pVtab = &cpu_vtab;
  be->eKind = BT_BACKEND_CPU;
  be->pImpl = st;
  be->eActDtype = BT_ACT_F32;
  be->nActByte = sizeof(float);
  return be;
}
