/*
 * bench_allreduce.c: allreduce bandwidth through baton's communicator, in
 * the style of nccl-tests' all_reduce_perf, with raw MPI beside it.
 *
 *   mpirun -np 4 build/bench/bench_allreduce [-b 1K] [-e 64M] [-n iters]
 *          [-w warmup] [-j out.json]
 *
 * For each size (doubling from -b to -e): every iteration refills the
 * buffer (untimed), meets the other ranks at a barrier (untimed), times one
 * in-place f32 sum bt_comm_allreduce, and checks every element against the
 * exact expected sum (untimed): `#wrong` counts wrong elements over all
 * iterations and ranks, so a fast but wrong run cannot hide. Time is the
 * mean per-op time of the slowest rank. algbw = bytes / time; busbw =
 * algbw * 2(n-1)/n, the figure comparable with a link's peak whatever the
 * rank count (nccl-tests' PERFORMANCE.md). The `mpi` columns time plain
 * MPI_Allreduce(MPI_IN_PLACE) the same way (MPI runs only): the ratio is
 * baton's overhead (request handling, polling wait with watchdog).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "base/util.h"
#include "comm/comm.h"

static size_t parse_size(const char *z) {
  char *zEnd = NULL;
  double v = strtod(z, &zEnd);
  switch (zEnd && *zEnd ? *zEnd : ' ') {
    case 'K': case 'k': v *= 1024; break;
    case 'M': case 'm': v *= 1024 * 1024; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
  }
  return (size_t)v;
}

/* Rank q's value at i: small integers, so every sum is exact in f32. */
static float pattern(int q, size_t i) {
  return (float)((q + (int)(i % 16)) % 16 + 1);
}

typedef struct bench_row {
  size_t nByte;
  double usBaton, usMpi;
  long nWrong;
} bench_row;

/* One size, one path (bMpi: raw MPI_Allreduce). Returns the slowest
 * rank's mean microseconds per op; adds wrong elements to *pnWrong. */
static double bench_one(bt_comm *c, int bMpi, float *pBuf, const float *pInit,
                        const float *pWant, size_t n, int nWarm, int nIter,
                        long *pnWrong) {
  double tSum = 0;
  long nWrong = 0;
  for (int it = -nWarm; it < nIter; it++) {
    memcpy(pBuf, pInit, n * sizeof *pBuf);
    if (bt_comm_barrier(c, NULL)) {
      bt_log_error("barrier: %s", bt_err_msg());
      bt_comm_abort(c, 1);
    }
    double t0 = bt_time_now();
    int rc;
    if (bMpi)
      rc = MPI_Allreduce(MPI_IN_PLACE, pBuf, (int)n, MPI_FLOAT, MPI_SUM,
                         MPI_COMM_WORLD) == MPI_SUCCESS ? BT_OK : BT_ERR;
    else
      rc = bt_comm_allreduce(c, pBuf, n, BT_F32, BT_SUM, NULL);
    double t1 = bt_time_now();
    if (rc) {
      bt_log_error("allreduce of %zu floats: %s", n, bt_err_msg());
      bt_comm_abort(c, 1);
    }
    if (it < 0) continue;
    tSum += t1 - t0;
    for (size_t i = 0; i < n; i++) nWrong += pBuf[i] != pWant[i];
  }
  double us = 1e6 * tSum / nIter;
  int64_t w = nWrong;
  if (bt_comm_host_allreduce(c, &us, 1, BT_F64, BT_MAX) ||
      bt_comm_host_allreduce(c, &w, 1, BT_I64, BT_SUM)) {
    bt_log_error("%s", bt_err_msg());
    bt_comm_abort(c, 1);
  }
  *pnWrong += (long)w;
  return us;
}

int main(int argc, char **argv) {
  bt_comm *c = NULL;
  if (bt_comm_init(&c, &argc, &argv)) {
    fprintf(stderr, "init: %s\n", bt_err_msg());
    bt_comm_abort(NULL, 1);
  }
  size_t minByte = 1024, maxByte = (size_t)64 << 20;
  int nIterFixed = 0, nWarm = 2;
  const char *zJson = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-b")) minByte = parse_size(argv[i + 1]);
    else if (!strcmp(argv[i], "-e")) maxByte = parse_size(argv[i + 1]);
    else if (!strcmp(argv[i], "-n")) nIterFixed = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-w")) nWarm = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-j")) zJson = argv[i + 1];
  }
  if (minByte < 4) minByte = 4;
  int rank = bt_comm_rank(c), world = bt_comm_world(c);
  int bMpi = strcmp(bt_comm_name(c), "mpi") == 0;
  size_t nMax = maxByte / sizeof(float);
  float *pBuf = bt_malloc_aligned(nMax * sizeof(float), "bench buffer");
  float *pInit = bt_malloc_aligned(nMax * sizeof(float), "bench input");
  float *pWant = bt_malloc_aligned(nMax * sizeof(float), "bench expected");
  if (!pBuf || !pInit || !pWant) {
    bt_log_error("%s", bt_err_msg());
    bt_comm_abort(c, 1);
  }
  for (size_t i = 0; i < nMax; i++) {
    pInit[i] = pattern(rank, i);
    float s = 0;
    for (int q = 0; q < world; q++) s += pattern(q, i);
    pWant[i] = s;
  }
  bt_comm_set_timeout(c, 120);

  bench_row aRow[64];
  int nRow = 0;
  long nWrongAll = 0;
  double busFactor = world > 1 ? 2.0 * (world - 1) / world : 1.0;
  if (rank == 0) {
    /* Shared machines: the load says how much the figures can be trusted. */
    char zLoad[64] = "?";
    FILE *fLoad = fopen("/proc/loadavg", "r");
    if (fLoad) {
      if (!fgets(zLoad, sizeof zLoad, fLoad))
        snprintf(zLoad, sizeof zLoad, "?");
      zLoad[strcspn(zLoad, "\n")] = 0;
      fclose(fLoad);
    }
    printf("# bench_allreduce: %s, %d rank(s) on %s (loadavg %s), in-place "
           "f32 sum, time = slowest rank's mean per op\n",
           bt_comm_name(c), world, bt_log_host(), zLoad);
    printf("# %10s %10s %11s %10s %10s %7s %11s %7s\n", "size(B)", "count",
           "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong",
           bMpi ? "mpi(us)" : "", bMpi ? "ratio" : "");
  }
  for (size_t nByte = minByte; nByte <= maxByte && nRow < 64; nByte *= 2) {
    size_t n = nByte / sizeof(float);
    /* About 64 MiB of traffic per size, 5..200 iterations. */
    int nIter = nIterFixed > 0 ? nIterFixed
                : (int)((size_t)(64 << 20) / nByte > 200 ? 200
                        : (size_t)(64 << 20) / nByte < 5 ? 5
                        : (size_t)(64 << 20) / nByte);
    char zCtx[64];
    snprintf(zCtx, sizeof zCtx, "bench %zu B", nByte);
    bt_comm_set_context(c, nRow, zCtx);
    bench_row *r = &aRow[nRow++];
    r->nByte = n * sizeof(float);
    r->nWrong = 0;
    r->usBaton = bench_one(c, 0, pBuf, pInit, pWant, n, nWarm, nIter,
                           &r->nWrong);
    r->usMpi = bMpi ? bench_one(c, 1, pBuf, pInit, pWant, n, nWarm, nIter,
                                &r->nWrong)
                    : 0;
    nWrongAll += r->nWrong;
    double algbw = (double)r->nByte / (r->usBaton * 1e-6) / 1e9;
    if (rank == 0) {
      printf("  %10zu %10zu %11.1f %10.3f %10.3f %7ld", r->nByte, n,
             r->usBaton, algbw, algbw * busFactor, r->nWrong);
      if (bMpi) printf(" %11.1f %7.2f", r->usMpi, r->usBaton / r->usMpi);
      printf("\n");
      fflush(stdout);
    }
  }
  if (rank == 0) {
    printf("# out of bounds values: %ld %s\n", nWrongAll,
           nWrongAll ? "ERROR" : "OK");
    if (zJson) {
      FILE *f = fopen(zJson, "w");
      if (!f) {
        bt_log_error("cannot write %s", zJson);
      } else {
        fprintf(f, "{\"bench\":\"allreduce\",\"impl\":\"%s\",\"ranks\":%d,"
                   "\"dtype\":\"f32\",\"rows\":[", bt_comm_name(c), world);
        for (int i = 0; i < nRow; i++) {
          double algbw = (double)aRow[i].nByte / (aRow[i].usBaton * 1e-6) / 1e9;
          fprintf(f, "%s{\"bytes\":%zu,\"time_us\":%.3f,\"algbw_gbs\":%.4f,"
                     "\"busbw_gbs\":%.4f,\"wrong\":%ld,\"mpi_time_us\":%.3f}",
                  i ? "," : "", aRow[i].nByte, aRow[i].usBaton, algbw,
                  algbw * busFactor, aRow[i].nWrong, aRow[i].usMpi);
        }
        fprintf(f, "]}\n");
        fclose(f);
      }
    }
  }
  free(pBuf);
  free(pInit);
  free(pWant);
  bt_comm_free(c);
  return nWrongAll ? 1 : 0;
}
