/*
 * test_data_audio_loader.c: the length-bucketed audio stream of
 * data/audio_loader.h, single process. A world of W ranks is W loaders in
 * one process (the loader does no communication: every rank computes the
 * same plan), so 1, 4 and 64 ranks and a resume from 4 onto 2 ranks run in
 * about a second.
 *
 * The fixture is written here with the HDF5 C API (not by `prepare audio`,
 * which tests/data/test_data_audio.py covers), so that every value is
 * known: utterance u has frames(u) frames, feature [t][0] = 1000 u + t and
 * [t][j] = j for j >= 1, and labels(u) labels 1 + (u + i) % (V - 1).
 *
 * Checked: every utterance exactly once per epoch on 1, 4 and 64 ranks;
 * each rank's batch is the plan's batch consumed + m W + r (the pure
 * function) and within the budget (B * T <= max_frames); contents and
 * padding (zero rows, -1 labels); global counts; the pad fraction against
 * an independent sum; bucketing pads less than batching the unsorted
 * permutation; determinism from the seed; epochs differ; resume mid-epoch
 * from 4 ranks onto 2 continues exactly; errors name file, key and index.
 *
 * Usage: test_data_audio_loader WORKDIR
 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "data/audio_features.h"
#include "data/audio_loader.h"
#include "tests/check.h"

#define N_UTT 1003
#define V 30
#define MAX_FRAMES 2000
#define ACCUM 2
#define SEED 77

static int frames_of(int64_t u) {
  return 1 + (int)(bt_rng_u64(bt_rng_key(5, 6, 0, 0), (uint64_t)u) % 300);
}
static int labels_of(int64_t u) { return 1 + (int)(u % 40); }

static void write_i64(hid_t f, const char *zName, const int64_t *a, hsize_t n) {
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, zName, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, a);
  H5Dclose(d);
  H5Sclose(sp);
}

static void write_attr(hid_t g, const char *zName, int v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(g, zName, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void write_vocab(hid_t f) {
  static char aBuf[V][2];
  const char *az[V];
  az[0] = "";
  for (int v = 1; v < V; v++) {
    aBuf[v][0] = (char)('a' + v - 1);
    az[v] = aBuf[v];
  }
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hsize_t n = V;
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, BT_AUDIO_DS_VOCAB, t, sp, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
  H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, az);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
}

/* The fixture; badLabel >= 0 plants label V (out of range) in that
 * utterance. */
static void write_fixture(const char *zPath, int64_t badLabel) {
  int64_t aFo[N_UTT + 1], aLo[N_UTT + 1];
  aFo[0] = aLo[0] = 0;
  for (int64_t u = 0; u < N_UTT; u++) {
    aFo[u + 1] = aFo[u] + frames_of(u);
    aLo[u + 1] = aLo[u] + labels_of(u);
  }
  float *aF = calloc((size_t)aFo[N_UTT] * BT_AUDIO_N_MEL, sizeof(float));
  int32_t *aL = calloc((size_t)aLo[N_UTT], sizeof(int32_t));
  for (int64_t u = 0; u < N_UTT; u++) {
    for (int64_t t = 0; t < frames_of(u); t++)
      for (int j = 0; j < BT_AUDIO_N_MEL; j++)
        aF[(aFo[u] + t) * BT_AUDIO_N_MEL + j] = j ? (float)j : (float)(1000 * u + t);
    for (int64_t i = 0; i < labels_of(u); i++)
      aL[aLo[u] + i] = u == badLabel ? V : 1 + (int32_t)((u + i) % (V - 1));
  }
  hid_t f = H5Fcreate(zPath, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(f, "/audio", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_attr(g, "format_version", BT_AUDIO_FORMAT_VERSION);
  write_attr(g, "n_mel", BT_AUDIO_N_MEL);
  hsize_t aDim[2] = {(hsize_t)aFo[N_UTT], BT_AUDIO_N_MEL}, nL = (hsize_t)aLo[N_UTT];
  hid_t sp = H5Screate_simple(2, aDim, NULL);
  hid_t d = H5Dcreate2(f, BT_AUDIO_DS_FEATURES, H5T_IEEE_F32LE, sp,
                       H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, aF);
  H5Dclose(d);
  H5Sclose(sp);
  sp = H5Screate_simple(1, &nL, NULL);
  d = H5Dcreate2(f, BT_AUDIO_DS_LABELS, H5T_STD_I32LE, sp, H5P_DEFAULT,
                 H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, aL);
  H5Dclose(d);
  H5Sclose(sp);
  write_i64(f, BT_AUDIO_DS_FRAME_OFFSETS, aFo, N_UTT + 1);
  write_i64(f, BT_AUDIO_DS_LABEL_OFFSETS, aLo, N_UTT + 1);
  write_vocab(f);
  H5Gclose(g);
  H5Fclose(f);
  free(aF);
  free(aL);
}

/* ---- running a simulated world ------------------------------------------- */

typedef struct world_run {
  int64_t aSeen[N_UTT]; /* times each utterance was returned */
  int64_t nPad, nCell;  /* over every rank's batches */
  bt_loader_state end;
  double padFraction;   /* rank 0's bt_audio_loader_pad_fraction */
  uint64_t nByte, nByteWant; /* read by all ranks; their own rows' bytes */
  int nRankOver;        /* ranks that read more than their own rows */
} world_run;

/* Checks one batch's shape, budget and contents against the plan batch
 * iB (>= nBatch: must be empty). */
static void check_batch(const bt_speech_batch *b, const bt_audio_plan *pl,
                        int64_t iB) {
  int64_t B = iB < pl->nBatch ? pl->aStart[iB + 1] - pl->aStart[iB] : 0;
  CHECK(b->B == B, "batch %lld: B %d, plan %lld", (long long)iB, b->B, (long long)B);
  if (b->B != B) return;
  CHECK((int64_t)b->B * b->T <= MAX_FRAMES, "batch %lld: %d x %d over budget",
        (long long)iB, b->B, b->T);
  int64_t sum = 0, T = 0, L = 0;
  for (int i = 0; i < b->B; i++) {
    int64_t u = b->aIndex[i];
    CHECK(u == pl->aUtt[pl->aStart[iB] + i], "batch %lld row %d: utterance %lld",
          (long long)iB, i, (long long)u);
    CHECK(b->aFrames[i] == frames_of(u) && b->aLabelLen[i] == labels_of(u),
          "utterance %lld: frames %d labels %d", (long long)u, b->aFrames[i],
          b->aLabelLen[i]);
    sum += b->aFrames[i];
    T = b->aFrames[i] > T ? b->aFrames[i] : T;
    L = b->aLabelLen[i] > L ? b->aLabelLen[i] : L;
    int bad = 0;
    for (int t = 0; t < b->T; t++)
      for (int j = 0; j < b->nMel; j++) {
        float x = b->feats[((int64_t)i * b->T + t) * b->nMel + j];
        float want = t >= b->aFrames[i] ? 0.0f : j ? (float)j : (float)(1000 * u + t);
        bad += x != want;
      }
    for (int k = 0; k < b->L; k++)
      bad += b->labels[(int64_t)i * b->L + k] !=
             (k < labels_of(u) ? 1 + (int32_t)((u + k) % (V - 1)) : -1);
    CHECK(bad == 0, "utterance %lld: %d wrong feature/label values", (long long)u, bad);
  }
  CHECK(b->T == T && b->L == L && b->nPadFrame == (int64_t)b->B * b->T - sum,
        "batch %lld: T %d L %d pad %lld", (long long)iB, b->T, b->L,
        (long long)b->nPadFrame);
}

/* Runs W ranks from st for nStep steps (< 0: to the end of st's epoch). */
static int run_world(const char *zPath, int W, int64_t window, uint64_t seed,
                     bt_loader_state st, int nStep, world_run *pOut) {
  bt_audio_loader **ap = calloc((size_t)W, sizeof *ap);
  int rc = BT_OK;
  for (int r = 0; r < W && rc == BT_OK; r++) {
    bt_audio_loader_config c = {.zPath = zPath, .maxFrames = MAX_FRAMES,
                                .window = window, .accum = ACCUM, .rank = r,
                                .world = W, .seed = seed, .shuffle = 1};
    rc = bt_audio_loader_open(&ap[r], &c);
    if (rc == BT_OK) rc = bt_audio_loader_seek(ap[r], &st);
  }
  bt_audio_plan pl;
  memset(&pl, 0, sizeof pl);
  int32_t aFr[N_UTT];
  for (int u = 0; u < N_UTT; u++) aFr[u] = frames_of(u);
  if (rc == BT_OK)
    rc = bt_audio_plan_make(aFr, N_UTT, seed, st.epoch, MAX_FRAMES, window, 1, &pl);
  int64_t epoch = st.epoch;
  uint64_t *aOwn = calloc((size_t)W, sizeof *aOwn);
  for (int s = 0; rc == BT_OK && (nStep < 0 || s < nStep); s++) {
    bt_loader_state now = bt_audio_loader_get_state(ap[0]);
    if (now.epoch != epoch) break;
    int64_t stepB = 0, sumB = 0;
    for (int m = 0; m < ACCUM && rc == BT_OK; m++) {
      int64_t globalB = 0;
      for (int r = 0; r < W && rc == BT_OK; r++) {
        bt_speech_batch b;
        rc = bt_audio_loader_next(ap[r], &b);
        if (rc != BT_OK) break;
        check_batch(&b, &pl, bt_audio_plan_batch(now.consumed, W, m, r));
        uint64_t nOwn = 0;
        for (int i = 0; i < b.B; i++) {
          pOut->aSeen[b.aIndex[i]]++;
          nOwn += 4u * (uint64_t)(frames_of(b.aIndex[i]) * BT_AUDIO_N_MEL +
                                  labels_of(b.aIndex[i]));
        }
        aOwn[r] += nOwn;
        pOut->nPad += b.nPadFrame;
        pOut->nCell += (int64_t)b.B * b.T;
        globalB += b.B;
        CHECK(b.epoch == epoch, "epoch %lld", (long long)b.epoch);
        if (m == ACCUM - 1 && r == W - 1) stepB = b.step_global_B;
        if (r == W - 1)
          CHECK(b.global_B == globalB, "global_B %lld, ranks' sum %lld",
                (long long)b.global_B, (long long)globalB);
      }
      sumB += globalB;
    }
    CHECK(rc != BT_OK || stepB == sumB, "step_global_B %lld, batches' sum %lld",
          (long long)stepB, (long long)sumB);
  }
  for (int r = 0; rc == BT_OK && r < W; r++) {
    uint64_t n = bt_audio_loader_bytes_read(ap[r]);
    pOut->nByte += n;
    pOut->nByteWant += aOwn[r];
    pOut->nRankOver += n != aOwn[r];
  }
  free(aOwn);
  if (rc == BT_OK) {
    pOut->end = bt_audio_loader_get_state(ap[0]);
    pOut->padFraction = bt_audio_loader_pad_fraction(ap[0]);
  }
  for (int r = 0; r < W; r++) bt_audio_loader_free(ap[r]);
  free(ap);
  bt_audio_plan_free(&pl);
  return rc;
}

static void check_once(const world_run *w, const char *zWhat) {
  int64_t nBad = 0, first = -1;
  for (int u = 0; u < N_UTT; u++)
    if (w->aSeen[u] != 1) {
      nBad++;
      if (first < 0) first = u;
    }
  CHECK(nBad == 0, "%s: %lld utterances not seen exactly once (first %lld: %lld)",
        zWhat, (long long)nBad, (long long)first,
        first >= 0 ? (long long)w->aSeen[first] : 0LL);
}

/* Padding of a greedy fill of the permutation without sorting: what the
 * bucketing must beat. */
static double unsorted_pad(uint64_t seed) {
  int64_t nPad = 0, nCell = 0, B = 0, T = 0, sum = 0;
  for (int64_t p = 0; p <= N_UTT; p++) {
    int64_t f = p < N_UTT ? frames_of(bt_perm_index(seed, 0, N_UTT, p)) : 0;
    int64_t Tn = f > T ? f : T;
    if (p == N_UTT || (B > 0 && (B + 1) * Tn > MAX_FRAMES)) {
      nCell += B * T;
      nPad += B * T - sum;
      B = T = sum = 0;
      Tn = f;
    }
    B++;
    T = Tn;
    sum += f;
  }
  return (double)nPad / (double)nCell;
}

static void test_worlds(const char *zPath) {
  bt_loader_state st0 = {0, 0};
  int aW[3] = {1, 4, 64};
  for (int i = 0; i < 3; i++) {
    world_run *w = calloc(1, sizeof *w);
    char zWhat[64];
    snprintf(zWhat, sizeof zWhat, "%d ranks", aW[i]);
    int rc = run_world(zPath, aW[i], 256, SEED, st0, -1, w);
    CHECK(rc == BT_OK, "%s: %s", zWhat, bt_err_msg());
    check_once(w, zWhat);
    CHECK(w->end.epoch == 1 && w->end.consumed == 0, "%s: ends at (%lld, %lld)",
          zWhat, (long long)w->end.epoch, (long long)w->end.consumed);
    double pad = (double)w->nPad / (double)w->nCell, base = unsorted_pad(SEED);
    CHECK(w->nRankOver == 0 && w->nByte == w->nByteWant,
          "%s: %d ranks read other rows; %llu bytes read, own rows %llu", zWhat,
          w->nRankOver, (unsigned long long)w->nByte,
          (unsigned long long)w->nByteWant);
    CHECK(fabs(w->padFraction - pad) < 1e-12, "%s: pad fraction %g, batches' %g",
          zWhat, w->padFraction, pad);
    CHECK(pad < 0.5 * base, "%s: bucketed padding %.3f not well below unsorted %.3f",
          zWhat, pad, base);
    printf("%s: every utterance once, each rank read only its rows (%llu bytes "
           "in all); padding %.1f%% (unsorted batches: %.1f%%)\n",
           zWhat, (unsigned long long)w->nByte, 100 * pad, 100 * base);
    free(w);
  }
}

/* Resume: 4 ranks for 3 steps, then 2 ranks from the saved state to the
 * end of the epoch: exactly once overall, and run_world checks each of the
 * 2-rank batches is the plan's batch at its position (continuing exactly). */
static void test_resume(const char *zPath) {
  world_run *w = calloc(1, sizeof *w);
  bt_loader_state st0 = {0, 0};
  int rc = run_world(zPath, 4, 256, SEED, st0, 3, w);
  CHECK(rc == BT_OK && w->end.epoch == 0 && w->end.consumed == 3 * 4 * ACCUM,
        "4 ranks, 3 steps: state (%lld, %lld): %s", (long long)w->end.epoch,
        (long long)w->end.consumed, bt_err_msg());
  rc = run_world(zPath, 2, 256, SEED, w->end, -1, w);
  CHECK(rc == BT_OK, "resume on 2 ranks: %s", bt_err_msg());
  check_once(w, "resume 4 -> 2");
  printf("resume 4 -> 2 ranks at batch %d: every utterance once\n", 3 * 4 * ACCUM);
  free(w);
}

static int plans_equal(const bt_audio_plan *a, const bt_audio_plan *b) {
  return a->nBatch == b->nBatch &&
         !memcmp(a->aStart, b->aStart, (size_t)(a->nBatch + 1) * sizeof(int64_t)) &&
         !memcmp(a->aUtt, b->aUtt, N_UTT * sizeof(int64_t));
}

static void test_plan(void) {
  int32_t aFr[N_UTT];
  for (int u = 0; u < N_UTT; u++) aFr[u] = frames_of(u);
  bt_audio_plan a, b, c, d;
  bt_audio_plan_make(aFr, N_UTT, SEED, 0, MAX_FRAMES, 256, 1, &a);
  bt_audio_plan_make(aFr, N_UTT, SEED, 0, MAX_FRAMES, 256, 1, &b);
  bt_audio_plan_make(aFr, N_UTT, SEED + 1, 0, MAX_FRAMES, 256, 1, &c);
  bt_audio_plan_make(aFr, N_UTT, SEED, 1, MAX_FRAMES, 256, 1, &d);
  CHECK(plans_equal(&a, &b), "same seed, same epoch: plans differ");
  CHECK(!plans_equal(&a, &c), "another seed: the same plan");
  CHECK(!plans_equal(&a, &d), "another epoch: the same plan");
  /* sorted within each batch, longest first */
  int bad = 0;
  for (int64_t i = 0; i < a.nBatch; i++)
    for (int64_t q = a.aStart[i] + 1; q < a.aStart[i + 1]; q++)
      bad += aFr[a.aUtt[q]] > aFr[a.aUtt[q - 1]];
  CHECK(bad == 0, "%d batches not longest first", bad);
  bt_audio_plan_free(&a);
  bt_audio_plan_free(&b);
  bt_audio_plan_free(&c);
  bt_audio_plan_free(&d);
}

static void test_errors(const char *zPath, const char *zBad) {
  bt_audio_loader *p = NULL;
  bt_audio_loader_config c = {.zPath = zPath, .maxFrames = 200, .window = 0,
                              .world = 1, .seed = SEED, .shuffle = 1};
  CHECK(bt_audio_loader_open(&p, &c) == BT_ERR &&
            strstr(bt_err_msg(), zPath) && strstr(bt_err_msg(), "data.max_frames = 200") &&
            strstr(bt_err_msg(), "frames, more than"),
        "budget below the longest utterance: %s", bt_err_msg());
  c.maxFrames = MAX_FRAMES;
  CHECK(bt_audio_loader_open(&p, &c) == BT_OK, "open: %s", bt_err_msg());
  bt_loader_state past = {0, bt_audio_loader_epoch_batches(p) + 1};
  CHECK(bt_audio_loader_seek(p, &past) == BT_ERR && strstr(bt_err_msg(), "lies past"),
        "seek past the plan: %s", bt_err_msg());
  bt_audio_loader_free(p);
  /* a label outside the vocabulary: reported when its batch is read */
  c.zPath = zBad;
  c.shuffle = 0;
  CHECK(bt_audio_loader_open(&p, &c) == BT_OK, "open bad: %s", bt_err_msg());
  int rc = BT_OK;
  bt_speech_batch b;
  for (int i = 0; p && rc == BT_OK && i < 10000; i++) {
    rc = bt_audio_loader_next(p, &b);
    if (rc == BT_OK && b.epoch > 0) break;
  }
  CHECK(rc == BT_ERR && strstr(bt_err_msg(), "/audio/labels: utterance 500: label") &&
            strstr(bt_err_msg(), "outside 1..29"),
        "bad label: %s", bt_err_msg());
  bt_audio_loader_free(p);
  c.zPath = "/nonexistent/a.h5";
  CHECK(bt_audio_loader_open(&p, &c) == BT_ERR && strstr(bt_err_msg(), "/nonexistent/a.h5"),
        "missing file: %s", bt_err_msg());
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_data_audio_loader WORKDIR\n");
    return 2;
  }
  bt_mkdir_p(argv[1]);
  char zPath[4096], zBad[4096];
  snprintf(zPath, sizeof zPath, "%s/audio.h5", argv[1]);
  snprintf(zBad, sizeof zBad, "%s/bad_label.h5", argv[1]);
  write_fixture(zPath, -1);
  write_fixture(zBad, 500);
  test_plan();
  test_worlds(zPath);
  test_resume(zPath);
  test_errors(zPath, zBad);
  return CHECK_DONE();
}
