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

static float *cpu_mem_alloc(bt_backend *be, size_t n, const char *zWhat) {
  (void)be;
  if (n > SIZE_MAX / sizeof(float)) {
    bt_err_set("allocation of %zu floats for %s overflows", n,
               zWhat ? zWhat : "buffer");
    return NULL;
  }
  return (float *)cpu_alloc_bytes(n * sizeof(float), zWhat);
}

static int32_t *cpu_mem_alloc_i32(bt_backend *be, size_t n, const char *zWhat) {
  (void)be;
  if (n > SIZE_MAX / sizeof(int32_t)) {
    bt_err_set("allocation of %zu int32 for %s overflows", n,
               zWhat ? zWhat : "buffer");
    return NULL;
  }
  return (int32_t *)cpu_alloc_bytes(n * sizeof(int32_t), zWhat);
}

static void cpu_mem_free(bt_backend *be, void *p) {
  (void)be;
  free(p);
}

static void cpu_mem_zero(bt_backend *be, float *p, size_t n) {
  (void)be;
  if (n) memset(p, 0, n * sizeof(float));
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

static const bt_backend_vtab cpu_vtab = {
    .zName = "cpu",
    .destroy = cpu_destroy,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_zero = cpu_mem_zero,
    .mem_to_host = cpu_mem_to_host,
    .mem_from_host = cpu_mem_from_host,
    .mem_alloc_i32 = cpu_mem_alloc_i32,
    .sync = cpu_sync,
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
  return be;
}
