/*
 * bench_loader.c: loader throughput per rank under mpirun.
 *
 *   mpirun -n N data_bench_loader FILE.h5 T GLOBAL_BATCH SHUFFLE [STEPS]
 *
 * Each rank streams its part of the epoch (or STEPS optimizer steps) with
 * prefetch on and no compute, so the figure is the loader's ceiling. Per
 * rank: samples/s, MB/s of tokens delivered, bytes requested from HDF5
 * (bt_loader_bytes_read) against the exact share 1/N of the bytes the run
 * covers, and time spent blocked in bt_loader_next. Rank 0 prints a table
 * and one JSON line.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, world;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  bt_log_set_rank(rank, world);
  if (argc < 5) {
    if (rank == 0)
      fprintf(stderr, "usage: %s FILE.h5 T GLOBAL_BATCH SHUFFLE [STEPS]\n",
              argv[0]);
    MPI_Finalize();
    return 2;
  }
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = argv[1];
  c.eKind = BT_SAMPLE_TOKENS;
  c.T = atoi(argv[2]);
  c.global_batch = atoll(argv[3]);
  c.shuffle = atoi(argv[4]);
  c.rank = rank;
  c.world = world;
  c.seed = 1;
  bt_loader *p;
  if (bt_loader_open(&p, &c) != BT_OK) {
    bt_log_error("%s", bt_err_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int64_t n = bt_loader_size(p);
  int64_t nStep = (n + c.global_batch - 1) / c.global_batch;
  if (argc > 5 && atoll(argv[5]) > 0 && atoll(argv[5]) < nStep)
    nStep = atoll(argv[5]);
  int64_t covered = nStep * c.global_batch < n ? nStep * c.global_batch : n;
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = bt_time_now(), wait = 0;
  int64_t nSample = 0;
  for (int64_t s = 0; s < nStep; s++) {
    bt_batch b;
    if (bt_loader_next(p, &b) != BT_OK) {
      bt_log_error("%s", bt_err_msg());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    nSample += b.n;
    wait += b.wait_seconds;
  }
  double dt = bt_time_now() - t0;
  /* Bytes requested may include up to `prefetch` read-ahead batches past
   * the last step; measure after stopping the thread for an exact count. */
  bt_loader_state st = bt_loader_get_state(p);
  bt_loader_seek(p, &st);
  double aMine[5] = {(double)nSample, dt, wait,
                     (double)bt_loader_bytes_read(p), 0};
  double *aAll = rank == 0 ? malloc(sizeof(double) * 5 * (size_t)world) : NULL;
  MPI_Gather(aMine, 5, MPI_DOUBLE, aAll, 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    int elem = (int)(aAll[3] / (aAll[0] * (c.T + 1)) + 0.5); /* ~2 or 4 */
    double share = (double)covered * (c.T + 1) * (elem ? elem : 2) / world;
    printf("# %s: %lld windows of T+1=%d, %lld steps of %lld, shuffle=%d, "
           "%d rank(s)\n",
           argv[1], (long long)n, c.T + 1, (long long)nStep,
           (long long)c.global_batch, c.shuffle, world);
    printf("%4s %10s %8s %12s %9s %7s %14s %14s %7s\n", "rank", "samples",
           "sec", "samples/s", "MB/s", "wait%", "bytes_read", "epoch/N",
           "ratio");
    double sumS = 0, maxT = 0, ratioMax = 0;
    for (int r = 0; r < world; r++) {
      double *a = aAll + 5 * r;
      printf("%4d %10.0f %8.2f %12.0f %9.1f %6.1f%% %14.0f %14.0f %7.4f\n", r,
             a[0], a[1], a[0] / a[1], a[3] / 1e6 / a[1], 100 * a[2] / a[1],
             a[3], share, a[3] / share);
      if (a[3] / share > ratioMax) ratioMax = a[3] / share;
      sumS += a[0];
      if (a[1] > maxT) maxT = a[1];
    }
    printf("# total %.0f samples/s over %d rank(s), %.1f MB/s read from "
           "HDF5\n",
           sumS / maxT, world,
           sumS * (c.T + 1) * (elem ? elem : 2) / 1e6 / maxT);
    printf("{\"bench\":\"data_loader\",\"ranks\":%d,\"shuffle\":%d,\"T\":%d,"
           "\"samples_per_s\":%.0f,\"mb_per_s\":%.1f,\"bytes_ratio_max\":%.4f}\n",
           world, c.shuffle, c.T, sumS / maxT,
           sumS * (c.T + 1) * (elem ? elem : 2) / 1e6 / maxT, ratioMax);
    free(aAll);
  }
  bt_loader_free(p);
  MPI_Finalize();
  return 0;
}
