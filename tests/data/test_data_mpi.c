/*
 * test_data_mpi.c: the stream contract under mpirun (1, 4, 64 ranks).
 * Each rank reads only its own part; rank 0 gathers every rank's indices
 * (MPI_Gatherv of records [step*accum+micro, rank, n, idx...]) and checks:
 *   A. across one epoch and into the next, the concatenated global stream
 *      is exactly perm(epoch 0) then perm(epoch 1): every index once per
 *      epoch, in order, with n not divisible by the batch and accum > 1;
 *   B. k steps on `world` ranks, then the state handed to a different world
 *      size (world-1, or 3 when world is 1; a process plays virtual ranks
 *      r with r % world == rank) yields exactly the rest of the epoch.
 *   C. (optional FILE.h5) the same exactly-once check on an HDF5 token
 *      file, each rank with its own file handle.
 * Usage: test_data_mpi N GLOBAL_BATCH ACCUM K [FILE.h5]
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader.h"
#include "tests/check.h"

static int g_rank, g_world;

typedef struct run_args {
  const char *zPath;
  int64_t n, gb;
  int accum;
  int Wv; /* virtual world size */
  bt_loader_state st;
  int nStep;
} run_args;

/* Runs the virtual ranks of this process; returns on rank 0 the global
 * stream (*pnSeq entries, malloc'd), NULL elsewhere. *pEnd = final state. */
static int64_t *run_gather(const run_args *a, int64_t *pnSeq,
                           bt_loader_state *pEnd) {
  int nMine = 0;
  for (int v = g_rank; v < a->Wv; v += g_world) nMine++;
  bt_loader **ap = calloc((size_t)(nMine ? nMine : 1), sizeof *ap);
  int bad = 0;
  for (int i = 0; i < nMine; i++) {
    bt_loader_config c;
    memset(&c, 0, sizeof c);
    c.zPath = a->zPath;
    c.eKind = strstr(a->zPath, "synthetic:") ? BT_SAMPLE_FEATURES
                                             : BT_SAMPLE_TOKENS;
    c.T = 31;
    c.global_batch = a->gb;
    c.accum = a->accum;
    c.rank = g_rank + i * g_world;
    c.world = a->Wv;
    c.seed = 77;
    c.shuffle = 1;
    c.limit = strstr(a->zPath, "synthetic:") ? a->n : 0;
    if (bt_loader_open(&ap[i], &c) != BT_OK ||
        bt_loader_seek(ap[i], &a->st) != BT_OK) {
      bt_log_error("%s", bt_err_msg());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  size_t cap = 1024, len = 0;
  int64_t *rec = malloc(cap * sizeof *rec);
  for (int s = 0; s < a->nStep; s++)
    for (int m = 0; m < a->accum; m++)
      for (int i = 0; i < nMine; i++) {
        bt_batch b;
        if (bt_loader_next(ap[i], &b) != BT_OK) {
          bt_log_error("%s", bt_err_msg());
          MPI_Abort(MPI_COMM_WORLD, 2);
        }
        if (len + 3 + (size_t)b.n > cap) {
          cap = 2 * (len + 3 + (size_t)b.n);
          rec = realloc(rec, cap * sizeof *rec);
        }
        rec[len++] = (int64_t)s * a->accum + m;
        rec[len++] = g_rank + i * g_world;
        rec[len++] = b.n;
        for (int k = 0; k < b.n; k++) rec[len++] = b.index[k];
      }
  bt_loader_state e = nMine ? bt_loader_get_state(ap[0]) : (bt_loader_state){-1, -1};
  for (int i = 0; i < nMine; i++) {
    bt_loader_state f = bt_loader_get_state(ap[i]);
    bad += f.epoch != e.epoch || f.consumed != e.consumed;
    bt_loader_free(ap[i]);
  }
  free(ap);
  /* Rank 0 always plays virtual rank 0, so its state is the reference. */
  MPI_Bcast(&e, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
  *pEnd = e;
  int cnt = (int)len;
  int *aCnt = NULL, *aOff = NULL;
  int64_t *all = NULL;
  if (g_rank == 0) {
    aCnt = malloc(sizeof(int) * (size_t)g_world);
    aOff = malloc(sizeof(int) * (size_t)g_world);
  }
  MPI_Gather(&cnt, 1, MPI_INT, aCnt, 1, MPI_INT, 0, MPI_COMM_WORLD);
  int64_t total = 0;
  if (g_rank == 0) {
    for (int r = 0; r < g_world; r++) {
      aOff[r] = (int)total;
      total += aCnt[r];
    }
    all = malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
  }
  MPI_Gatherv(rec, cnt, MPI_INT64_T, all, aCnt, aOff, MPI_INT64_T, 0,
              MPI_COMM_WORLD);
  free(rec);
  int badAll = 0;
  MPI_Reduce(&bad, &badAll, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (g_rank != 0) return NULL;
  CHECK(badAll == 0, "ranks disagree on the loader state");
  /* Index the records by (micro-step, virtual rank), then concatenate. */
  int64_t nMicro = (int64_t)a->nStep * a->accum;
  int64_t *aAt = malloc(sizeof(int64_t) * (size_t)(nMicro * a->Wv));
  for (int64_t k = 0; k < nMicro * a->Wv; k++) aAt[k] = -1;
  for (int64_t p = 0; p < total; p += 3 + all[p + 2])
    aAt[all[p] * a->Wv + all[p + 1]] = p;
  int64_t *seq = malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
  int64_t nSeq = 0;
  for (int64_t k = 0; k < nMicro * a->Wv; k++) {
    int64_t p = aAt[k];
    if (p < 0) {
      CHECK(0, "micro-step %lld of rank %lld missing", (long long)(k / a->Wv),
            (long long)(k % a->Wv));
      continue;
    }
    for (int64_t j = 0; j < all[p + 2]; j++) seq[nSeq++] = all[p + 3 + j];
  }
  free(aAt);
  free(all);
  free(aCnt);
  free(aOff);
  *pnSeq = nSeq;
  return seq;
}

/* Checks seq[from..from+len) == global stream positions q0.. (epochs roll
 * at n) and that epoch 0's part has no repeats. */
static void check_stream(const int64_t *seq, int64_t len, int64_t q0,
                         int64_t n, const char *zWhat) {
  int bad = 0;
  char *seen = calloc((size_t)n, 1);
  for (int64_t j = 0; j < len; j++) {
    int64_t q = q0 + j;
    int64_t want = bt_perm_index(77, q / n, n, q % n);
    bad += seq[j] != want;
    if (q < n && seq[j] >= 0 && seq[j] < n) bad += seen[seq[j]]++ != 0;
  }
  int64_t nSeen = 0;
  for (int64_t i = 0; i < n; i++) nSeen += seen[i];
  CHECK(bad == 0, "%s: %d samples out of order or repeated", zWhat, bad);
  if (q0 == 0 && len >= n)
    CHECK(nSeen == n, "%s: %lld of %lld samples seen in epoch 0", zWhat,
          (long long)nSeen, (long long)n);
  free(seen);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world);
  bt_log_set_rank(g_rank, g_world);
  if (argc < 5) {
    if (g_rank == 0) fprintf(stderr, "usage: %s N GB ACCUM K [FILE.h5]\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  int64_t n = atoll(argv[1]), gb = atoll(argv[2]);
  int accum = atoi(argv[3]), k = atoi(argv[4]);
  int nStepEpoch = (int)((n + gb - 1) / gb);

  /* A: one epoch and two steps of the next. */
  run_args a = {"synthetic:clusters", n, gb, accum, g_world, {0, 0},
                nStepEpoch + 2};
  int64_t nSeq = 0;
  bt_loader_state end;
  int64_t *seq = run_gather(&a, &nSeq, &end);
  if (g_rank == 0) {
    CHECK(nSeq == n + 2 * gb, "A: %lld samples, want %lld", (long long)nSeq,
          (long long)(n + 2 * gb));
    check_stream(seq, nSeq, 0, n, "A (one epoch and a bit)");
    CHECK(end.epoch == 1 && end.consumed == 2 * gb, "A end state %lld/%lld",
          (long long)end.epoch, (long long)end.consumed);
    free(seq);
  }

  /* B: k steps on world ranks, the rest on a different world size. */
  run_args b1 = {"synthetic:clusters", n, gb, accum, g_world, {0, 0}, k};
  bt_loader_state mid;
  int64_t n1 = 0, n2 = 0;
  int64_t *s1 = run_gather(&b1, &n1, &mid);
  int Wv = g_world == 1 ? 3 : g_world - 1;
  run_args b2 = {"synthetic:clusters", n, gb, accum, Wv, mid,
                 nStepEpoch - k};
  int64_t *s2 = run_gather(&b2, &n2, &end);
  if (g_rank == 0) {
    CHECK(mid.epoch == 0 && mid.consumed == k * gb, "B mid state %lld",
          (long long)mid.consumed);
    CHECK(n1 + n2 == n, "B: %lld + %lld samples, want %lld", (long long)n1,
          (long long)n2, (long long)n);
    check_stream(s1, n1, 0, n, "B before the world change");
    check_stream(s2, n2, n1, n, "B after the world change");
    CHECK(end.epoch == 1 && end.consumed == 0, "B end state");
    free(s1);
    free(s2);
  }

  /* C: an HDF5 token file read by every rank with its own handle. */
  if (argc > 5) {
    bt_loader_config c;
    memset(&c, 0, sizeof c);
    c.zPath = argv[5];
    c.eKind = BT_SAMPLE_TOKENS;
    c.T = 31;
    c.global_batch = gb;
    c.world = 1;
    bt_loader *p;
    int64_t nFile = 0;
    if (bt_loader_open(&p, &c) == BT_OK) {
      nFile = bt_loader_size(p);
      bt_loader_free(p);
    }
    run_args h = {argv[5], nFile, gb, accum, g_world, {0, 0},
                  (int)((nFile + gb - 1) / gb)};
    int64_t nh = 0;
    int64_t *sh = run_gather(&h, &nh, &end);
    if (g_rank == 0) {
      CHECK(nFile > 0 && nh == nFile, "C: %lld of %lld windows", (long long)nh,
            (long long)nFile);
      check_stream(sh, nh, 0, nFile, "C (HDF5 file)");
      free(sh);
    }
  }

  int rc = 0;
  if (g_rank == 0) rc = CHECK_DONE();
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}
