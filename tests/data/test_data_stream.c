/*
 * test_data_stream.c: the stream contract of loader.h, single process.
 * A "world" of W ranks is simulated by W loaders in one process (the loader
 * does no communication), so world sizes 1..64 and resume on a different
 * world size are checked in well under a second. The mpirun twin is
 * test_data_mpi.c.
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "data/loader.h"
#include "tests/check.h"

static bt_loader_config base_cfg(const char *zPath, int64_t limit, int64_t gb,
                                 int accum, int W, int r) {
  bt_loader_config c;
  memset(&c, 0, sizeof c);
  c.zPath = zPath;
  c.zSplit = "train";
  c.eKind = strstr(zPath, "arith") ? BT_SAMPLE_TOKENS : BT_SAMPLE_FEATURES;
  c.T = 16;
  c.global_batch = gb;
  c.accum = accum;
  c.rank = r;
  c.world = W;
  c.seed = 1234;
  c.shuffle = 1;
  c.limit = limit;
  return c;
}

/* Feature value seen per sample index, to check a sample's content does
 * not depend on which rank or world read it. */
static float *g_aSeen;

/* Runs W simulated ranks for nStep optimizer steps from st; appends the
 * global stream (micro-step by micro-step, ranks in order) to aOut. */
static int run_world(const char *zPath, int64_t limit, int64_t gb, int accum,
                     int W, int prefetch, bt_loader_state st, int nStep,
                     int64_t *aOut, int64_t *pnOut, bt_loader_state *pEnd) {
  bt_loader **ap = calloc((size_t)W, sizeof *ap);
  int bad = 0;
  for (int r = 0; r < W; r++) {
    bt_loader_config c = base_cfg(zPath, limit, gb, accum, W, r);
    c.prefetch = prefetch;
    if (bt_loader_open(&ap[r], &c) != BT_OK) {
      fprintf(stderr, "open: %s\n", bt_err_msg());
      return BT_ERR;
    }
    bt_loader_seek(ap[r], &st);
  }
  for (int s = 0; s < nStep; s++) {
    int64_t stepSum = 0, stepN = -1;
    for (int m = 0; m < accum; m++) {
      int64_t gn = -1, sum = 0;
      for (int r = 0; r < W; r++) {
        bt_batch b;
        if (bt_loader_next(ap[r], &b) != BT_OK) {
          fprintf(stderr, "next: %s\n", bt_err_msg());
          return BT_ERR;
        }
        if (gn < 0) gn = b.global_n;
        if (stepN < 0) stepN = b.step_global_n;
        bad += gn != b.global_n || stepN != b.step_global_n;
        sum += b.n;
        for (int i = 0; i < b.n; i++) {
          aOut[(*pnOut)++] = b.index[i];
          if (b.x && g_aSeen) {
            float v = b.x[(size_t)i * bt_loader_feature_dim(ap[r])];
            float *pv = &g_aSeen[b.index[i]];
            if (*pv != *pv) *pv = v;
            bad += *pv != v;
            bad += b.targets[i] < 0 || b.targets[i] >= 4;
          }
        }
      }
      bad += sum != gn;
      stepSum += sum;
    }
    bad += stepSum != stepN;
  }
  *pEnd = bt_loader_get_state(ap[0]);
  for (int r = 0; r < W; r++) {
    bt_loader_state e = bt_loader_get_state(ap[r]);
    bad += e.epoch != pEnd->epoch || e.consumed != pEnd->consumed;
    bt_loader_free(ap[r]);
  }
  free(ap);
  CHECK(bad == 0, "%d inconsistencies in world %d", bad, W);
  return BT_OK;
}

static void test_split(void) {
  int64_t an[] = {0, 1, 5, 7, 100, 1003, (int64_t)1 << 62};
  int ak[] = {1, 3, 4, 64};
  int bad = 0;
  for (size_t a = 0; a < sizeof an / sizeof an[0]; a++)
    for (size_t b = 0; b < sizeof ak / sizeof ak[0]; b++) {
      int64_t prev = 0, mn = INT64_MAX, mx = 0;
      for (int i = 0; i < ak[b]; i++) {
        int64_t lo, hi;
        bt_split(an[a], ak[b], i, &lo, &hi);
        bad += lo != prev || hi < lo;
        prev = hi;
        if (hi - lo < mn) mn = hi - lo;
        if (hi - lo > mx) mx = hi - lo;
      }
      bad += prev != an[a] || mx - mn > 1;
    }
  CHECK(bad == 0, "bt_split broke tiling or balance %d times", bad);
}

static void test_perm(void) {
  int64_t an[] = {1, 2, 3, 10, 1000, 4097, 100003};
  for (size_t a = 0; a < sizeof an / sizeof an[0]; a++) {
    int64_t n = an[a];
    char *seen = calloc((size_t)n, 1);
    int bad = 0, same = 0;
    for (int64_t p = 0; p < n; p++) {
      int64_t v = bt_perm_index(7, 3, n, p);
      if (v < 0 || v >= n || seen[v]) bad++;
      else seen[v] = 1;
      bad += v != bt_perm_index(7, 3, n, p);
      same += v == bt_perm_index(7, 4, n, p);
    }
    CHECK(bad == 0, "perm of n=%lld is not a bijection (%d)", (long long)n,
          bad);
    if (n >= 1000)
      CHECK(same < n / 50, "epochs 3 and 4 agree on %d of %lld", same,
            (long long)n);
    free(seen);
  }
  /* Huge n: no allocation, values in range and distinct on a sample. */
  int64_t n = ((int64_t)1 << 40) + 7;
  int bad = 0;
  int64_t prev = -1;
  for (int64_t p = 0; p < 1000; p++) {
    int64_t v = bt_perm_index(1, 0, n, p);
    bad += v < 0 || v >= n || v == prev;
    prev = v;
  }
  CHECK(bad == 0, "perm of n=2^40+7 misbehaves");
}

/* Every index once per epoch, in permutation order, for several worlds. */
static void test_epoch(int64_t limit, int64_t gb, int accum, int W,
                       int prefetch) {
  int64_t n = limit;
  int64_t *a = malloc(sizeof(int64_t) * (size_t)(2 * n + gb));
  int64_t nOut = 0;
  int nStep = (int)((n + gb - 1) / gb);
  bt_loader_state st = {0, 0}, end;
  if (run_world("synthetic:clusters", limit, gb, accum, W, prefetch, st, nStep,
                a, &nOut, &end) != BT_OK) {
    CHECK(0, "run_world failed");
    return;
  }
  CHECK(nOut == n, "epoch gave %lld samples, want %lld", (long long)nOut,
        (long long)n);
  CHECK(end.epoch == 1 && end.consumed == 0, "end state %lld/%lld",
        (long long)end.epoch, (long long)end.consumed);
  char *seen = calloc((size_t)n, 1);
  int bad = 0;
  for (int64_t q = 0; q < nOut && q < n; q++) {
    bad += a[q] != bt_perm_index(1234, 0, n, q);
    if (a[q] >= 0 && a[q] < n) bad += seen[a[q]]++ != 0;
  }
  CHECK(bad == 0, "W=%d accum=%d: %d samples out of order or repeated", W,
        accum, bad);
  free(seen);
  free(a);
}

/* k steps on W1 ranks, then the rest of the epoch on W2 ranks. */
static void test_resume(int64_t n, int64_t gb, int accum, int W1, int W2,
                        int k) {
  int64_t *a = malloc(sizeof(int64_t) * (size_t)(2 * n));
  int64_t nOut = 0;
  bt_loader_state st = {0, 0}, mid, end;
  run_world("synthetic:clusters", n, gb, accum, W1, 2, st, k, a, &nOut, &mid);
  CHECK(mid.epoch == 0 && mid.consumed == k * gb, "state after %d steps: %lld",
        k, (long long)mid.consumed);
  int nRest = (int)((n - mid.consumed + gb - 1) / gb);
  run_world("synthetic:clusters", n, gb, accum, W2, 1, mid, nRest, a, &nOut,
            &end);
  int bad = 0;
  for (int64_t q = 0; q < n; q++) bad += a[q] != bt_perm_index(1234, 0, n, q);
  CHECK(nOut == n && bad == 0 && end.epoch == 1 && end.consumed == 0,
        "resume %d->%d ranks after %d steps: %lld samples, %d wrong", W1, W2,
        k, (long long)nOut, bad);
  free(a);
}

static void test_arith(void) {
  bt_loader_config c = base_cfg("synthetic:arith", 0, 8, 1, 1, 0);
  c.T = 64;
  c.vocab = 256;
  bt_loader *p;
  CHECK(bt_loader_open(&p, &c) == BT_OK, "open arith: %s", bt_err_msg());
  if (!p) return;
  CHECK(bt_loader_size(p) == (1 << 20), "arith size %lld",
        (long long)bt_loader_size(p));
  CHECK(bt_loader_vocab(p) == 256, "arith vocab");
  int bad = 0, nLine = 0, nWrong = 0;
  for (int s = 0; s < 20; s++) {
    bt_batch b;
    if (bt_loader_next(p, &b) != BT_OK) {
      CHECK(0, "next: %s", bt_err_msg());
      break;
    }
    for (int i = 0; i < b.n; i++) {
      const int32_t *in = b.inputs + (size_t)i * c.T;
      const int32_t *tg = b.targets + (size_t)i * c.T;
      for (int t = 0; t + 1 < c.T; t++) bad += tg[t] != in[t + 1];
      char z[80];
      for (int t = 0; t < c.T; t++) {
        bad += in[t] < 0 || in[t] >= 128;
        z[t] = (char)in[t];
      }
      z[c.T] = 0;
      /* Check every complete line "a op b=c" inside the window. */
      char *line = strchr(z, '\n');
      while (line) {
        char *nl = strchr(line + 1, '\n');
        if (!nl) break;
        *nl = 0;
        long x, y, r;
        char op;
        if (sscanf(line + 1, "%ld%c%ld=%ld", &x, &op, &y, &r) == 4) {
          nLine++;
          nWrong += r != (op == '+' ? x + y : x - y);
        }
        *nl = '\n';
        line = nl;
      }
    }
  }
  CHECK(bad == 0, "arith tokens: %d bad", bad);
  CHECK(nLine > 100 && nWrong == 0, "arith lines: %d parsed, %d wrong", nLine,
        nWrong);
  bt_loader_free(p);

  /* Same sample from train twice is identical; val differs from train. */
  c.zSplit = "val";
  c.global_batch = 4;
  CHECK(bt_loader_open(&p, &c) == BT_OK, "open arith val: %s", bt_err_msg());
  if (p) {
    CHECK(bt_loader_size(p) == (1 << 14), "arith val size");
    bt_loader_free(p);
  }
  /* Vocab smaller than the ids used is reported with the index. */
  c.zSplit = "train";
  c.vocab = 40;
  c.prefetch = 2;
  CHECK(bt_loader_open(&p, &c) == BT_OK, "open arith small vocab");
  if (p) {
    bt_batch b;
    int rc = bt_loader_next(p, &b);
    CHECK(rc == BT_ERR && strstr(bt_err_msg(), "synthetic:arith") &&
              strstr(bt_err_msg(), "at index") &&
              strstr(bt_err_msg(), ">= vocab size 40"),
          "small vocab message: '%s'", bt_err_msg());
    rc = bt_loader_next(p, &b);
    CHECK(rc == BT_ERR, "error is sticky");
    bt_loader_free(p);
  }
}

static void test_val(int W, int64_t nSample, int per) {
  char *seen = calloc((size_t)nSample, 1);
  int bad = 0, calls = -1;
  for (int r = 0; r < W; r++) {
    bt_loader_config c = base_cfg("synthetic:clusters", 0, 0, 1, W, r);
    c.zSplit = "val"; /* global_batch 0 is fine for a val-only loader */
    bt_loader *p;
    if (bt_loader_open(&p, &c) != BT_OK) {
      CHECK(0, "open val: %s", bt_err_msg());
      return;
    }
    CHECK(bt_loader_val_begin(p, nSample, per) == BT_OK, "val_begin");
    int k = 0;
    for (;;) {
      bt_batch b;
      if (bt_loader_val_next(p, &b) != BT_OK) {
        bad++;
        break;
      }
      if (b.global_n == 0) {
        bad += b.n != 0;
        break;
      }
      k++;
      for (int i = 0; i < b.n; i++) {
        if (b.index[i] < nSample) bad += seen[b.index[i]]++ != 0;
        else bad++;
      }
    }
    if (calls < 0) calls = k;
    bad += calls != k;
    bt_loader_free(p);
  }
  for (int64_t i = 0; i < nSample; i++) bad += seen[i] != 1;
  CHECK(bad == 0, "val W=%d nSample=%lld per=%d: %d bad", W,
        (long long)nSample, per, bad);
  free(seen);
}

/* Mid-epoch get_state/seek on one loader, validation in between does not
 * disturb the training stream. */
static void test_seek_val_interleave(void) {
  bt_loader_config c = base_cfg("synthetic:clusters", 500, 32, 2, 2, 1);
  bt_loader *p, *q;
  CHECK(bt_loader_open(&p, &c) == BT_OK && bt_loader_open(&q, &c) == BT_OK,
        "open");
  int bad = 0;
  bt_batch b, e;
  for (int s = 0; s < 40; s++) {
    if (s % 7 == 3) {
      bt_loader_val_begin(p, 50, 16);
      while (bt_loader_val_next(p, &b) == BT_OK && b.global_n > 0) {
      }
    }
    if (s % 5 == 4) {
      bt_loader_state st = bt_loader_get_state(p);
      bt_loader_seek(p, &st);
    }
    for (int m = 0; m < 2; m++) {
      bt_loader_next(p, &b);
      bt_loader_next(q, &e);
      bad += b.n != e.n || b.epoch != e.epoch;
      for (int i = 0; i < b.n && i < e.n; i++) bad += b.index[i] != e.index[i];
    }
  }
  CHECK(bad == 0, "seek/val interleaving changed the stream (%d)", bad);
  bt_loader_state st = bt_loader_get_state(p);
  CHECK(st.epoch == 2 && st.consumed == 8 * 32, /* 16 steps per epoch of 500 */
        "state after 40 steps: %lld/%lld", (long long)st.epoch,
        (long long)st.consumed);
  /* Mid-step, the state is still the start of the step. */
  bt_loader_next(p, &b);
  bt_loader_state st2 = bt_loader_get_state(p);
  CHECK(st2.epoch == st.epoch && st2.consumed == st.consumed,
        "mid-step state moved");
  bt_loader_free(p);
  bt_loader_free(q);
}

static void test_bad_config(void) {
  bt_loader_config c = base_cfg("synthetic:clusters", 10, 64, 1, 1, 0);
  bt_loader *p;
  CHECK(bt_loader_open(&p, &c) == BT_ERR &&
            strstr(bt_err_msg(), "fewer than one global batch"),
        "small dataset: %s", bt_err_msg());
  c = base_cfg("synthetic:nope", 0, 8, 1, 1, 0);
  CHECK(bt_loader_open(&p, &c) == BT_ERR && strstr(bt_err_msg(), "unknown"),
        "unknown synthetic: %s", bt_err_msg());
  c = base_cfg("synthetic:clusters", 0, 8, 1, 1, 0);
  c.eKind = BT_SAMPLE_TOKENS;
  CHECK(bt_loader_open(&p, &c) == BT_ERR, "kind mismatch");
  c = base_cfg("synthetic:clusters", 0, 8, 1, 4, 4);
  CHECK(bt_loader_open(&p, &c) == BT_ERR, "rank out of range");
}

/* Run with BATON_FAULT=loader.read:5: the 5th fill (on the prefetch
 * thread) fails, so calls 1-4 succeed and call 5 returns that error, and
 * keeps returning it until a seek, which clears it. */
static int test_fault(void) {
  for (int prefetch = 2; prefetch >= -1; prefetch -= 3) {
    bt_loader_config c = base_cfg("synthetic:clusters", 0, 16, 1, 1, 0);
    c.prefetch = prefetch;
    bt_loader *p;
    if (bt_loader_open(&p, &c) != BT_OK) return CHECK_DONE();
    int nOk = 0, rc = BT_OK;
    bt_batch b;
    while (nOk < 10 && (rc = bt_loader_next(p, &b)) == BT_OK) nOk++;
    if (prefetch > 0) {
      CHECK(nOk == 4 && rc == BT_ERR &&
                strstr(bt_err_msg(), "injected read fault"),
            "fault at fill 5: %d calls ok, message '%s'", nOk, bt_err_msg());
      CHECK(bt_loader_next(p, &b) == BT_ERR, "error is sticky");
      bt_loader_state st = bt_loader_get_state(p);
      CHECK(st.consumed == 4 * 16, "state after the fault: %lld",
            (long long)st.consumed);
      CHECK(bt_loader_seek(p, &st) == BT_OK && bt_loader_next(p, &b) == BT_OK,
            "seek clears the error");
    } else {
      CHECK(nOk == 10, "the fault fired only once: %d", nOk);
    }
    bt_loader_free(p);
  }
  return CHECK_DONE();
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--fault")) return test_fault();
  test_split();
  test_perm();
  g_aSeen = malloc(sizeof(float) * 1003);
  for (int i = 0; i < 1003; i++) g_aSeen[i] = NAN;
  int aW[] = {1, 4, 64};
  for (int w = 0; w < 3; w++) {
    test_epoch(1003, 64, 1, aW[w], 2);
    test_epoch(1003, 64, 2, aW[w], aW[w] == 4 ? -1 : 1);
  }
  test_epoch(1000, 100, 3, 7, 3);
  test_resume(1003, 64, 2, 4, 3, 5);
  test_resume(1003, 64, 1, 64, 1, 11);
  test_resume(1003, 64, 2, 1, 64, 15);
  test_arith();
  test_val(1, 100, 32);
  test_val(4, 100, 3);
  test_val(64, 130, 50);
  test_seek_val_interleave();
  test_bad_config();
  free(g_aSeen);
  return CHECK_DONE();
}
