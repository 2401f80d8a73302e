/*
 * test_ckpt_mpi.c: multi-rank checkpoints under mpirun.
 *
 *   ckpt_mpi          (run with -np 4): replicated + sharded items with
 *                          totals that do not divide by the world size,
 *                          several files per rank; async save polled every
 *                          "step"; an injected EIO on rank 1 only makes every
 *                          rank's poll fail with rank 1's message and keeps
 *                          the previous checkpoint; then the checkpoint is
 *                          read back resharded for 1, 2, 3, 4, 5 and 7
 *                          virtual readers.
 *   ckpt_mpi tiny     (run with -np 64): tiny items, some smaller than
 *                          the world (ranks with empty shards write nothing),
 *                          read back for 48 virtual readers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <mpi.h>

#include "comm/comm.h"
#include "tests/check.h"
#include "tests/ckpt/ckpt_testutil.h"

static float val(int which, uint64_t i) {
  return tu_val(bt_rng_key(7, (uint64_t)which, 0, 0), i, which == 1 ? 0.02 : 1e-4);
}

typedef struct spec {
  const char *zName;
  uint64_t total;
  int sharded;
  int which;
} spec;

static void shard(uint64_t total, int r, int w, uint64_t *pLo, uint64_t *pHi) {
  *pLo = total * (uint64_t)r / (uint64_t)w;
  *pHi = total * (uint64_t)(r + 1) / (uint64_t)w;
}

/* Reads every item back as nVirt readers would, checking each element. */
static int check_reshard(const char *zDir, const spec *aS, int nS, int nVirt) {
  bt_ckpt *pC;
  if (bt_ckpt_open(&pC, zDir, 0) != BT_OK) return 0;
  int ok = 1;
  for (int k = 0; k < nS && ok; k++) {
    ok = bt_ckpt_item_total(pC, aS[k].zName) == aS[k].total;
    for (int v = 0; v < nVirt && ok; v++) {
      uint64_t lo, hi;
      shard(aS[k].total, v, nVirt, &lo, &hi);
      float *p = malloc((hi - lo + 1) * 4);
      ok = bt_ckpt_read_range(pC, aS[k].zName, lo, hi, p) == BT_OK;
      for (uint64_t i = lo; ok && i < hi; i++) ok = p[i - lo] == val(aS[k].which, i);
      if (!ok) fprintf(stderr, "item %s reader %d/%d [%llu,%llu): %s\n", aS[k].zName, v,
                       nVirt, (unsigned long long)lo, (unsigned long long)hi, bt_err_msg());
      free(p);
    }
  }
  bt_ckpt_close(pC);
  return ok;
}

/* Crash-test modes (tests/ckpt/crash_mpi.sh):
 *   save RUN STEP   every rank saves its shard of the standard items
 *                   (async, polled); BATON_FAULT may kill a rank midway;
 *   check RUN STEP  the newest verified checkpoint must be STEP, and its
 *                   content right when read back by this many ranks. */
static const spec g_aCrash[] = {{"params", 20011, 0, 1}, {"adam_m", 50021, 1, 2},
                                {"adam_v", 30011, 1, 3}};

static int crash_save(bt_comm *pComm, const char *zRun, long step) {
  int rank = bt_comm_rank(pComm), world = bt_comm_world(pComm);
  bt_ckpt_writer *pW = NULL;
  bt_ckpt_options o = {zRun, 5, 0, 1, 1, 1};
  if (bt_ckpt_writer_create(&pW, pComm, &o) != BT_OK) goto fail;
  bt_ckpt_writer_set_chunk_bytes(pW, 16 << 10);
  bt_ckpt_item a[3];
  float *ap[3];
  for (int k = 0; k < 3; k++) {
    uint64_t lo = 0, hi = g_aCrash[k].total;
    if (g_aCrash[k].sharded) shard(g_aCrash[k].total, rank, world, &lo, &hi);
    ap[k] = malloc((hi - lo + 1) * 4);
    for (uint64_t i = lo; i < hi; i++) ap[k][i - lo] = val(g_aCrash[k].which, i);
    a[k] = (bt_ckpt_item){g_aCrash[k].zName, BT_CKPT_F32, ap[k], g_aCrash[k].total, lo, hi,
                          g_aCrash[k].sharded};
  }
  int rc = bt_ckpt_save_begin(pW, step, "{\"crash_test\":true}", a, 3);
  long done = -1;
  while (rc == BT_OK && done < 0) {
    rc = bt_ckpt_poll(pW, &done);
    if (rc == BT_OK && done < 0) usleep(1000);
  }
  for (int k = 0; k < 3; k++) free(ap[k]);
  bt_ckpt_writer_free(pW);
  if (rc != BT_OK) goto fail;
  return 0;
fail:
  fprintf(stderr, "rank %d: save %ld: %s\n", rank, step, bt_err_msg());
  return 1;
}

static int crash_check(bt_comm *pComm, const char *zRun, long step) {
  char zDir[512] = "";
  int rc = bt_ckpt_find_latest_all(pComm, zRun, zDir, sizeof zDir);
  char zWant[64];
  snprintf(zWant, sizeof zWant, "ckpt-%08ld", step);
  int ok = rc == 0 && strstr(zDir, zWant) != NULL;
  if (ok && bt_comm_rank(pComm) == 0)
    ok = check_reshard(zDir, g_aCrash, 3, bt_comm_world(pComm));
  if (!ok)
    fprintf(stderr, "rank %d: expected %s, found '%s' (rc %d) %s\n", bt_comm_rank(pComm),
            zWant, zDir, rc, bt_err_msg());
  int bad = !ok;
  bt_comm_host_allreduce(pComm, &bad, 1, BT_I32, BT_MAX);
  return bad;
}

int main(int argc, char **argv) {
  bt_comm *pComm = NULL;
  if (bt_comm_init(&pComm, &argc, &argv) != BT_OK) {
    fprintf(stderr, "comm init: %s\n", bt_err_msg());
    return 1;
  }
  if (argc == 4 && (!strcmp(argv[1], "save") || !strcmp(argv[1], "check"))) {
    int code = !strcmp(argv[1], "save") ? crash_save(pComm, argv[2], atol(argv[3]))
                                        : crash_check(pComm, argv[2], atol(argv[3]));
    bt_comm_free(pComm);
    return code;
  }
  int rank = bt_comm_rank(pComm), world = bt_comm_world(pComm);
  int tiny = argc > 1 && strcmp(argv[1], "tiny") == 0;
  spec aFull[] = {{"params", 10007, 0, 1}, {"adam_m", 100003, 1, 2}, {"adam_v", 77777, 1, 3}};
  spec aTiny[] = {{"params", 300, 0, 1}, {"adam_m", 1000, 1, 2}, {"adam_v", 10, 1, 3}};
  spec *aS = tiny ? aTiny : aFull;
  int nS = 3;
  size_t nChunk = 8 << 10;

  /* EIO on rank 1 during the second save: its Nth payload overall. */
  if (!tiny && world > 1) {
    int nFirst = 0;
    for (int k = 0; k < nS; k++) {
      /* replicated f32 items of >= 1024 elements per rank are split too */
      if (!aS[k].sharded && aS[k].total < (uint64_t)world * 1024) continue;
      uint64_t lo, hi;
      shard(aS[k].total, 1, world, &lo, &hi);
      uint64_t per = nChunk / 4;
      nFirst += (int)((hi - lo + per - 1) / per);
    }
    char z[64];
    snprintf(z, sizeof z, "ckpt.eio:%d@1", nFirst + 1);
    setenv("BATON_FAULT", z, 1);
  }

  char zRun[256] = "";
  if (rank == 0) tu_tmpdir(zRun, sizeof zRun, "mpi");
  bt_comm_host_broadcast(pComm, zRun, sizeof zRun, 0);

  bt_ckpt_writer *pW = NULL;
  bt_ckpt_options o = {zRun, 2, 0, 3, 1, 1};
  CHECK(bt_ckpt_writer_create(&pW, pComm, &o) == BT_OK, "%s", bt_err_msg());
  CHECK(bt_ckpt_writer_set_chunk_bytes(pW, nChunk) == BT_OK, "%s", bt_err_msg());

  bt_ckpt_item aItem[3];
  float *apData[3];
  for (int k = 0; k < nS; k++) {
    uint64_t lo = 0, hi = aS[k].total;
    if (aS[k].sharded) shard(aS[k].total, rank, world, &lo, &hi);
    apData[k] = malloc((hi - lo + 1) * 4);
    for (uint64_t i = lo; i < hi; i++) apData[k][i - lo] = val(aS[k].which, i);
    aItem[k] = (bt_ckpt_item){aS[k].zName, BT_CKPT_F32, apData[k], aS[k].total, lo, hi,
                              aS[k].sharded};
  }

  if (!tiny && world > 1) {
    /* A trainer bug: ranks pass different steps. Every rank refuses. */
    long bad = rank == 1 ? 6 : 5;
    CHECK(bt_ckpt_save_begin(pW, bad, "{}", aItem, nS) == BT_ERR &&
              strstr(bt_err_msg(), "disagree"), "rank %d: mismatched steps: %s", rank,
          bt_err_msg());
    long d;
    CHECK(bt_ckpt_poll(pW, &d) == BT_OK && d == -1, "nothing in flight after a refused save");
  }

  long aStep[] = {10, 20, 30};
  int nSave = tiny ? 1 : 3;
  for (int s = 0; s < nSave; s++) {
    char zMeta[64];
    snprintf(zMeta, sizeof zMeta, "{\"step\":%ld,\"world\":%d}", aStep[s], world);
    CHECK(bt_ckpt_save_begin(pW, aStep[s], zMeta, aItem, nS) == BT_OK, "%s", bt_err_msg());
    long done = -1;
    int rc = BT_OK, nPoll = 0;
    while (done < 0 && rc == BT_OK && nPoll < 100000) {
      rc = bt_ckpt_poll(pW, &done); /* collective: every rank, every "step" */
      nPoll++;
      if (rc == BT_OK && done < 0) usleep(500);
    }
    int wantFail = !tiny && world > 1 && aStep[s] == 20;
    if (wantFail) {
      CHECK(rc == BT_ERR && strstr(bt_err_msg(), "failed on rank 1") &&
                strstr(bt_err_msg(), "Input/output error (errno 5)"),
            "rank %d: step 20 result %d: %s", rank, rc, bt_err_msg());
      if (rank == 0) printf("injected EIO on rank 1 -> every rank: %s\n", bt_err_msg());
    } else {
      CHECK(rc == BT_OK && done == aStep[s], "rank %d step %ld: rc %d done %ld: %s", rank,
            aStep[s], rc, done, bt_err_msg());
    }
    if (wantFail && rank == 0) {
      char zFound[512];
      CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0 &&
                strstr(zFound, "ckpt-00000010"), "after failed save: %s", zFound);
      char zTmp[512];
      snprintf(zTmp, sizeof zTmp, "%s/.tmp-ckpt-00000020", zRun);
      CHECK(!bt_path_exists(zTmp), "temp directory of the failed save left");
    }
  }
  CHECK(bt_ckpt_finish(pW) == BT_OK, "%s", bt_err_msg());
  bt_ckpt_writer_free(pW);
  bt_comm_barrier(pComm, NULL);

  /* Resume: rank 0 finds and verifies, every rank gets the same answer. */
  {
    char zAll[512] = "";
    CHECK(bt_ckpt_find_latest_all(pComm, zRun, zAll, sizeof zAll) == 0 &&
              strstr(zAll, tiny ? "ckpt-00000010" : "ckpt-00000030"),
          "rank %d: find_latest_all: '%s' %s", rank, zAll, bt_err_msg());
    /* every rank loads its own shard of adam_m for a world of the same size */
    bt_ckpt *pC = NULL;
    CHECK(bt_ckpt_open(&pC, zAll, 0) == BT_OK, "%s", bt_err_msg());
    if (pC) {
      uint64_t lo, hi;
      shard(aS[1].total, rank, world, &lo, &hi);
      float *p = malloc((hi - lo + 1) * 4);
      bt_ckpt_item one = {aS[1].zName, BT_CKPT_F32, p, aS[1].total, lo, hi, 1};
      int ok = bt_ckpt_load_items(pC, &one, 1) == BT_OK;
      for (uint64_t i = lo; ok && i < hi; i++) ok = p[i - lo] == val(aS[1].which, i);
      CHECK(ok, "rank %d: own shard after resume: %s", rank, bt_err_msg());
      free(p);
      bt_ckpt_close(pC);
    }
  }
  bt_comm_barrier(pComm, NULL);

  if (rank == 0) {
    char zFound[512];
    CHECK(bt_ckpt_find_latest(zRun, zFound, sizeof zFound) == 0, "no checkpoint found");
    bt_ckpt *pC;
    if (bt_ckpt_open(&pC, zFound, 1) == BT_OK) {
      CHECK(bt_ckpt_world(pC) == world, "world %d", bt_ckpt_world(pC));
      CHECK(bt_ckpt_step(pC) == (tiny ? 10 : 30), "step %ld", bt_ckpt_step(pC));
      bt_ckpt_close(pC);
    } else {
      CHECK(0, "open %s: %s", zFound, bt_err_msg());
    }
    /* params (replicated) was written in slices by every rank, or whole by
     * rank 0 when too small to split (tiny). */
    char zMan[600];
    snprintf(zMan, sizeof zMan, "%s/manifest.json", zFound);
    char *zText = bt_file_read_all(zMan, NULL);
    char zLast[64];
    snprintf(zLast, sizeof zLast, "\"params.r%d.", world - 1);
    CHECK(zText && (strstr(zText, zLast) != NULL) == !tiny, "params slices: %s", zLast);
    free(zText);
    int aVirt[] = {1, 2, 3, 4, 5, 7, 48};
    for (size_t v = 0; v < sizeof aVirt / sizeof aVirt[0]; v++) {
      if (!tiny && aVirt[v] == 48) continue;
      if (tiny && aVirt[v] != 48 && aVirt[v] != 1) continue;
      CHECK(check_reshard(zFound, aS, nS, aVirt[v]), "%d -> %d readers", world, aVirt[v]);
      printf("saved by %d ranks, read back by %d readers: ok\n", world, aVirt[v]);
    }
    tu_rm(zRun);
  }
  for (int k = 0; k < nS; k++) free(apData[k]);
  int fail = g_check_fail;
  bt_comm_host_allreduce(pComm, &fail, 1, BT_I32, BT_MAX);
  int code = CHECK_DONE();
  if (fail) code = 1;
  bt_comm_free(pComm);
  return code;
}
