/*
 * bench_ckpt.c: checkpoint benchmark (docs/checkpoints.md "Performance").
 *
 * State: GPT-like trained weights unless --from CKPT_DIR names a real
 * checkpoint (its f32 items are used as they are):
 *   params ~ normal(0, 0.02)       (trained transformer weights)
 *   adam_m ~ normal(0, 1e-4)       (first moment)
 *   adam_v ~ |normal(0, 1e-8)|     (second moment)
 * Prints three tables (and a JSON copy with --json FILE):
 *   1. compression ratio and single-thread encode speed per item, zstd vs
 *      shuffle4+zstd, at the chosen level;
 *   2. save: wall time to a committed checkpoint and MAIN-THREAD blocking
 *      time, sync vs async (async: the main thread keeps "training", i.e.
 *      polls every --step-ms milliseconds, as the trainer does);
 *   3. load: open + verify + read everything, and open + read (checksums
 *      of the files read are checked either way).
 * MB/s are of raw state (MB = 10^6 bytes). Single process (world size 1),
 * or under mpirun a save comparison (bench_mpi below).
 *
 *   bench_ckpt [--params N] [--level L] [--dir DIR] [--step-ms MS]
 *              [--from CKPT_DIR] [--json FILE]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_impl.h"
#include "comm/comm.h"

typedef struct bitem {
  char zName[64];
  float *p;
  uint64_t n;
} bitem;

static double now(void) { return bt_time_now(); }

static void gen(bitem *a, uint64_t n) {
  const char *az[] = {"params", "adam_m", "adam_v"};
  double sc[] = {0.02, 1e-4, 1e-8};
  for (int k = 0; k < 3; k++) {
    snprintf(a[k].zName, sizeof a[k].zName, "%s", az[k]);
    a[k].n = n;
    a[k].p = malloc(n * 4);
    uint64_t key = bt_rng_key(2026, (uint64_t)k, 0, 0);
    for (uint64_t i = 0; i < n; i++) {
      double v = sc[k] * bt_rng_normal(key, i);
      a[k].p[i] = (float)(k == 2 ? (v < 0 ? -v : v) : v);
    }
  }
}

static int load_from(bitem *a, int *pn, const char *zDir) {
  bt_ckpt *pC;
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK) return BT_ERR;
  const char *az[] = {"params", "adam_m", "adam_v"};
  *pn = 0;
  for (int k = 0; k < 3; k++) {
    bt_ckpt_dtype e;
    if (bt_ckpt_item_dtype(pC, az[k], &e) != BT_OK || e != BT_CKPT_F32) continue;
    bitem *b = &a[(*pn)++];
    snprintf(b->zName, sizeof b->zName, "%s", az[k]);
    b->n = bt_ckpt_item_total(pC, az[k]);
    b->p = malloc(b->n * 4);
    if (bt_ckpt_read_range(pC, az[k], 0, b->n, b->p) != BT_OK) return BT_ERR;
  }
  bt_ckpt_close(pC);
  return *pn > 0 ? BT_OK : bt_err_set("%s has no params/adam_m/adam_v f32 items", zDir);
}

static void ratio(const bitem *b, int shuffle, int level, double *pRatio, double *pMBs) {
  size_t nByte = b->n * 4, nB = bt_ckpt_compress_bound(nByte);
  uint8_t *pS = malloc(nByte), *pC = malloc(nB);
  double t = now();
  const void *pIn = b->p;
  if (shuffle) {
    bt_ckpt_shuffle4(b->p, pS, nByte);
    pIn = pS;
  }
  size_t nOut = 0;
  /* Same 64 MiB chunks as the writer. */
  size_t chunk = (size_t)64 << 20, total = 0;
  for (size_t at = 0; at < nByte; at += chunk) {
    size_t n = nByte - at < chunk ? nByte - at : chunk;
    bt_ckpt_compress(NULL, (const uint8_t *)pIn + at, n, level, pC, nB, &nOut);
    total += nOut;
  }
  t = now() - t;
  *pRatio = (double)nByte / (double)total;
  *pMBs = (double)nByte / 1e6 / t;
  free(pS);
  free(pC);
}

/* Under mpirun (world > 1): params replicated, Adam moments sharded
 * (ZeRO-1), async save polled every step; rank 0 prints wall time and
 * main-thread blocking with replicated items split over the ranks (the
 * default) and written by rank 0 alone. Shared directory: --dir. */
static int bench_mpi(bt_comm *pComm, uint64_t n, int level, int stepMs,
                     const char *zDir) {
  int rank = bt_comm_rank(pComm), world = bt_comm_world(pComm);
  uint64_t lo = n * (uint64_t)rank / (uint64_t)world;
  uint64_t hi = n * (uint64_t)(rank + 1) / (uint64_t)world;
  float *pP = malloc(n * 4), *pM = malloc((hi - lo + 1) * 4), *pV = malloc((hi - lo + 1) * 4);
  for (uint64_t i = 0; i < n; i++) pP[i] = (float)(0.02 * bt_rng_normal(1, i));
  for (uint64_t i = lo; i < hi; i++) {
    pM[i - lo] = (float)(1e-4 * bt_rng_normal(2, i));
    double v = 1e-8 * bt_rng_normal(3, i);
    pV[i - lo] = (float)(v < 0 ? -v : v);
  }
  bt_ckpt_item it[3] = {{"params", BT_CKPT_F32, pP, n, 0, n, 0},
                        {"adam_m", BT_CKPT_F32, pM, n, lo, hi, 1},
                        {"adam_v", BT_CKPT_F32, pV, n, lo, hi, 1}};
  char zRun[600];
  snprintf(zRun, sizeof zRun, "%s/bench-ckpt-mpi", zDir ? zDir : "/tmp");
  double rawMB = 3.0 * (double)n * 4 / 1e6;
  if (rank == 0)
    printf("%d ranks, %.1f MB raw state (params replicated, moments sharded), level %d, "
           "async\n%-26s | %8s %8s | %12s\n", world, rawMB, level, "replicated params",
           "wall s", "MB/s", "blocked s");
  long step = 1;
  for (int split = 1; split >= 0; split--) {
    bt_ckpt_options o = {zRun, 1, 0, level, 1, 1};
    bt_ckpt_writer *pW;
    if (bt_ckpt_writer_create(&pW, pComm, &o) != BT_OK) return 1;
    bt_ckpt_writer_set_split_replicated(pW, split);
    double wall = 0;
    for (int rep = 0; rep < 2; rep++) {
      bt_comm_barrier(pComm, NULL);
      double t = now();
      int rc = bt_ckpt_save_begin(pW, step++, "{}", it, 3);
      long done = -1;
      while (rc == BT_OK && done < 0) {
        rc = bt_ckpt_poll(pW, &done);
        if (rc == BT_OK && done < 0) usleep((useconds_t)stepMs * 1000);
      }
      if (rc != BT_OK) {
        fprintf(stderr, "%s\n", bt_err_msg());
        return 1;
      }
      wall = now() - t;
    }
    double blk = bt_ckpt_last_blocking_seconds(pW);
    bt_comm_host_allreduce(pComm, &blk, 1, BT_F64, BT_MAX);
    if (rank == 0)
      printf("%-26s | %8.2f %8.0f | %12.3f\n", split ? "sliced over all ranks" : "rank 0 alone",
             wall, rawMB / wall, blk);
    bt_ckpt_writer_free(pW);
  }
  if (rank == 0) bt_ckpt_rmtree(zRun);
  free(pP);
  free(pM);
  free(pV);
  return 0;
}

int main(int argc, char **argv) {
  bt_comm *pComm = NULL;
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE")) {
    if (bt_comm_init(&pComm, &argc, &argv) != BT_OK) {
      fprintf(stderr, "%s\n", bt_err_msg());
      return 1;
    }
  }
  uint64_t nParam = 25000000;
  int level = 3, stepMs = 50;
  const char *zDir = NULL, *zFrom = NULL, *zJson = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--params") && i + 1 < argc) nParam = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--level") && i + 1 < argc) level = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) zDir = argv[++i];
    else if (!strcmp(argv[i], "--step-ms") && i + 1 < argc) stepMs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--from") && i + 1 < argc) zFrom = argv[++i];
    else if (!strcmp(argv[i], "--json") && i + 1 < argc) zJson = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--params N] [--level L] [--dir DIR] [--step-ms MS] "
                      "[--from CKPT_DIR] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  bt_log_set_level(0);
  if (pComm && bt_comm_world(pComm) > 1) {
    int code = bench_mpi(pComm, nParam, level, stepMs, zDir);
    bt_comm_free(pComm);
    return code;
  }
  bitem a[3];
  int nItem = 3;
  const char *zData;
  if (zFrom) {
    if (load_from(a, &nItem, zFrom) != BT_OK) {
      fprintf(stderr, "%s\n", bt_err_msg());
      return 1;
    }
    zData = zFrom;
  } else {
    gen(a, nParam);
    zData = "synthetic GPT-like: params N(0,0.02), adam_m N(0,1e-4), adam_v |N(0,1e-8)|";
  }
  double rawMB = 0;
  for (int k = 0; k < nItem; k++) rawMB += (double)a[k].n * 4 / 1e6;
  printf("data: %s\nstate: %.1f MB raw (%d items of %llu floats), zstd level %d\n\n", zData,
         rawMB, nItem, (unsigned long long)a[0].n, level);

  FILE *fj = zJson ? fopen(zJson, "w") : NULL;
  if (fj) fprintf(fj, "{\"data\":\"%s\",\"raw_mb\":%.1f,\"level\":%d,\"ratio\":[", zData, rawMB, level);

  printf("1. compression (one thread, 64 MiB chunks)\n");
  printf("%-8s | %12s %10s | %14s %10s | %6s\n", "item", "zstd ratio", "MB/s", "shuf+zstd ratio",
         "MB/s", "gain");
  double rawAll = 0, stAll[2] = {0, 0};
  for (int k = 0; k < nItem; k++) {
    double r0, s0, r1, s1;
    ratio(&a[k], 0, level, &r0, &s0);
    ratio(&a[k], 1, level, &r1, &s1);
    double mb = (double)a[k].n * 4 / 1e6;
    rawAll += mb;
    stAll[0] += mb / r0;
    stAll[1] += mb / r1;
    printf("%-8s | %12.3f %10.0f | %15.3f %10.0f | %5.1f%%\n", a[k].zName, r0, s0, r1, s1,
           100 * (r1 / r0 - 1));
    if (fj) fprintf(fj, "%s{\"item\":\"%s\",\"zstd\":%.4f,\"shuffle4_zstd\":%.4f,"
                        "\"zstd_mbs\":%.0f,\"shuffle4_zstd_mbs\":%.0f}", k ? "," : "",
                    a[k].zName, r0, r1, s0, s1);
  }
  printf("%-8s | %12.3f %10s | %15.3f %10s | %5.1f%%\n\n", "all", rawAll / stAll[0], "",
         rawAll / stAll[1], "", 100 * (stAll[0] / stAll[1] - 1));
  printf("   shuffle4+zstd by level, whole state:\n");
  printf("   %-6s | %8s %10s\n", "level", "ratio", "MB/s");
  if (fj) fprintf(fj, "],\"levels\":[");
  int aLevel[] = {1, 3, 9};
  for (int l = 0; l < 3; l++) {
    double raw = 0, st = 0, sec = 0;
    for (int k = 0; k < nItem; k++) {
      double r, mbs, mb = (double)a[k].n * 4 / 1e6;
      ratio(&a[k], 1, aLevel[l], &r, &mbs);
      raw += mb;
      st += mb / r;
      sec += mb / mbs;
    }
    printf("   %-6d | %8.3f %10.0f\n", aLevel[l], raw / st, raw / sec);
    if (fj) fprintf(fj, "%s{\"level\":%d,\"ratio\":%.4f,\"mbs\":%.0f}", l ? "," : "",
                    aLevel[l], raw / st, raw / sec);
  }
  printf("\n");
  if (fj) fprintf(fj, "],\"save\":[");

  char zRun[512];
  if (zDir) snprintf(zRun, sizeof zRun, "%s/bench-ckpt-%d", zDir, (int)getpid());
  else snprintf(zRun, sizeof zRun, "/tmp/bench-ckpt-%d", (int)getpid());
  bt_ckpt_item it[3];
  for (int k = 0; k < nItem; k++)
    it[k] = (bt_ckpt_item){a[k].zName, BT_CKPT_F32, a[k].p, a[k].n, 0, a[k].n, 0};

  printf("2. save (single process; fsync on). Two saves per writer: the first\n"
         "   allocates the snapshot buffers, the second reuses them (steady state).\n");
  printf("%-6s %-7s | %8s %8s | %12s %12s %12s | %6s\n", "mode", "shuffle", "wall s",
         "MB/s", "blocked 1st", "blocked s", "snapshot s", "steps");
  long step = 1;
  int first = 1;
  for (int mode = 0; mode < 2; mode++) {
    for (int sh = 1; sh >= 0; sh--) {
      bt_ckpt_options o = {zRun, 1, 0, level, mode, sh};
      bt_ckpt_writer *pW;
      if (bt_ckpt_writer_create(&pW, NULL, &o) != BT_OK) {
        fprintf(stderr, "%s\n", bt_err_msg());
        return 1;
      }
      double wall = 0, blk1 = 0, blk = 0, snap = 0;
      int steps = 0;
      for (int rep = 0; rep < 2; rep++) {
        double t = now();
        int rc = bt_ckpt_save_begin(pW, step++, "{\"bench\":true}", it, nItem);
        snap = now() - t; /* async: snapshot only; sync: snapshot + write */
        long done = -1;
        steps = 0;
        while (rc == BT_OK && done < 0) {
          rc = bt_ckpt_poll(pW, &done);
          if (done < 0 && rc == BT_OK) {
            usleep((useconds_t)stepMs * 1000); /* a training step */
            steps++;
          }
        }
        wall = now() - t;
        if (rc != BT_OK) {
          fprintf(stderr, "save failed: %s\n", bt_err_msg());
          return 1;
        }
        if (rep == 0) blk1 = bt_ckpt_last_blocking_seconds(pW);
        else blk = bt_ckpt_last_blocking_seconds(pW);
      }
      /* async wall includes up to one step of polling granularity */
      printf("%-6s %-7s | %8.2f %8.0f | %12.3f %12.3f %12.3f | %6d\n", mode ? "async" : "sync",
             sh ? "on" : "off", wall, rawMB / wall, blk1, blk, mode ? snap : 0.0, steps);
      if (fj) fprintf(fj, "%s{\"mode\":\"%s\",\"shuffle\":%d,\"wall_s\":%.3f,\"mbs\":%.0f,"
                          "\"blocked_first_s\":%.4f,\"blocked_s\":%.4f}", first ? "" : ",",
                      mode ? "async" : "sync", sh, wall, rawMB / wall, blk1, blk);
      first = 0;
      bt_ckpt_writer_free(pW);
    }
  }
  printf("\n");
  if (fj) fprintf(fj, "],\"load\":[");

  char zFound[1024];
  if (bt_ckpt_find_latest(zRun, zFound, sizeof zFound) != 0) {
    fprintf(stderr, "no checkpoint: %s\n", bt_err_msg());
    return 1;
  }
  printf("3. load of %s (shuffle on)\n", zFound);
  printf("%-22s | %9s %9s\n", "", "s", "MB/s");
  float *pBuf = malloc(a[0].n * 4);
  for (int verify = 1; verify >= 0; verify--) {
    double t = now();
    bt_ckpt *pC;
    int rc = bt_ckpt_open(&pC, zFound, verify);
    for (int k = 0; rc == BT_OK && k < nItem; k++) {
      rc = bt_ckpt_read_range(pC, a[k].zName, 0, a[k].n, pBuf);
      if (rc == BT_OK && memcmp(pBuf, a[k].p, a[k].n * 4) != 0) {
        fprintf(stderr, "loaded data differs\n");
        return 1;
      }
    }
    if (rc != BT_OK) {
      fprintf(stderr, "%s\n", bt_err_msg());
      return 1;
    }
    bt_ckpt_close(pC);
    double s = now() - t;
    printf("%-22s | %9.2f %9.0f\n", verify ? "open(verify=1) + read" : "open(verify=0) + read", s,
           rawMB / s);
    if (fj) fprintf(fj, "%s{\"verify\":%d,\"s\":%.3f,\"mbs\":%.0f}", verify ? "" : ",", verify, s,
                    rawMB / s);
  }
  if (fj) {
    fprintf(fj, "]}\n");
    fclose(fj);
  }
  bt_ckpt_rmtree(zRun);
  free(pBuf);
  for (int k = 0; k < nItem; k++) free(a[k].p);
  return 0;
}
