/*
 * test_straggler.c: the straggler verdict (trainer/observe/straggler.h)
 * on made-up per-rank times: who is slowest, the median, the persistence
 * count and its reset, the noise floor, the factor's edge and "off"; and
 * the slow-link verdict on made-up round trips: per host (minimum over its
 * ranks), represented by its lowest rank, persistent, rank 0 not counted.
 */
#include <math.h>

#include "tests/check.h"
#include "trainer/observe/straggler.h"

static const double aZero[8] = {0};

static void test_persistent(void) {
  bt_straggler s;
  bt_straggler_init(&s, 1.5, 3, 0.005);
  bt_straggler_result r;
  double aBusy[4] = {0.100, 0.110, 0.300, 0.105}; /* median 0.1075 */
  double aWait[4] = {0.200, 0.190, 0.001, 0.195};
  for (int i = 1; i <= 3; i++) {
    bt_straggler_update(&s, aBusy, aWait, 4, &r);
    CHECK(r.iSlowest == 2, "interval %d: slowest %d", i, r.iSlowest);
    CHECK(r.nIntervals == i, "interval %d: run %d", i, r.nIntervals);
    CHECK(r.iRank == (i == 3 ? 2 : -1), "interval %d: named %d", i, r.iRank);
  }
  CHECK(fabs(r.busyMedian - 0.1075) < 1e-12, "median %g", r.busyMedian);
  CHECK(fabs(r.ratio - 0.300 / 0.1075) < 1e-12, "ratio %g", r.ratio);
  CHECK(r.waitMax == 0.200, "wait max %g", r.waitMax);
  /* Another rank becomes the slowest: the count restarts with it. */
  double aOther[4] = {0.100, 0.400, 0.110, 0.105};
  bt_straggler_update(&s, aOther, aWait, 4, &r);
  CHECK(r.iSlowest == 1 && r.nIntervals == 1 && r.iRank == -1,
        "switch: slowest %d run %d named %d", r.iSlowest, r.nIntervals,
        r.iRank);
  /* One interval under the factor resets it. */
  double aEven[4] = {0.100, 0.101, 0.102, 0.103};
  bt_straggler_update(&s, aEven, aWait, 4, &r);
  CHECK(r.iRank == -1 && r.nIntervals == 0, "even: named %d run %d",
        r.iRank, r.nIntervals);
}

static void test_edges(void) {
  bt_straggler s;
  bt_straggler_result r;
  /* Exactly the factor counts; just under does not. */
  bt_straggler_init(&s, 1.5, 1, 0.005);
  double aAt[3] = {0.25, 0.375, 0.25}; /* exact in binary: ratio 1.5 */
  bt_straggler_update(&s, aAt, aZero, 3, &r);
  CHECK(r.iRank == 1, "at the factor: named %d (ratio %g)", r.iRank, r.ratio);
  double aUnder[3] = {0.25, 0.3749, 0.25};
  bt_straggler_update(&s, aUnder, aZero, 3, &r);
  CHECK(r.iRank == -1, "under the factor: named %d", r.iRank);
  /* Sub-millisecond steps: 3x the median but a gap under the floor. */
  double aTiny[4] = {0.0005, 0.0015, 0.0005, 0.0005};
  bt_straggler_update(&s, aTiny, aZero, 4, &r);
  CHECK(r.ratio > 2.9 && r.iRank == -1, "noise floor: ratio %g named %d",
        r.ratio, r.iRank);
  /* The floor is the caller's: 60 ms over a 20 ms median is named at a
   * 30 ms floor and not at a 70 ms one. */
  double aGap[3] = {0.02, 0.08, 0.02};
  bt_straggler_init(&s, 1.5, 1, 0.030);
  bt_straggler_update(&s, aGap, aZero, 3, &r);
  CHECK(r.iRank == 1, "30 ms floor: named %d", r.iRank);
  bt_straggler_init(&s, 1.5, 1, 0.070);
  bt_straggler_update(&s, aGap, aZero, 3, &r);
  CHECK(r.iRank == -1, "70 ms floor: named %d", r.iRank);
  /* Off (factor 0), and one rank: never named. */
  bt_straggler_init(&s, 0, 1, 0.005);
  double aSlow[4] = {0.1, 0.1, 0.9, 0.1};
  bt_straggler_update(&s, aSlow, aZero, 4, &r);
  CHECK(r.iRank == -1 && r.iSlowest == 2, "off: named %d", r.iRank);
  bt_straggler_init(&s, 1.5, 1, 0.005);
  bt_straggler_update(&s, aSlow + 2, aZero, 1, &r);
  CHECK(r.iRank == -1 && r.ratio == 1.0, "one rank: named %d", r.iRank);
  /* Two ranks: the median is their mean (straggler.c). */
  double aTwo[2] = {0.25, 0.75}; /* median 0.5 */
  bt_straggler_update(&s, aTwo, aZero, 2, &r);
  CHECK(r.ratio == 1.5 && r.iRank == 1, "two: ratio %g named %d",
        r.ratio, r.iRank);
  /* All zero (nothing timed): ratio 1, nobody. */
  bt_straggler_update(&s, aZero, aZero, 8, &r);
  CHECK(r.ratio == 1.0 && r.iRank == -1, "zeros: ratio %g", r.ratio);
}

/* 3 hosts x 2 ranks (the multinode_slow_link layout): ranks 4 and 5 sit
 * behind a 50 ms link. */
static const int aHost3x2[6] = {0, 0, 2, 2, 4, 4};

static void test_link(void) {
  bt_straggler s;
  bt_straggler_link_result r;
  /* Rank 0's value is ignored (it pings nobody): 9 s there changes
   * nothing. The slow host's two ranks alternate as the larger: the host
   * is still the same candidate, named by its lowest rank, 4. */
  double aA[6] = {9.0, 0.0002, 0.0003, 0.0001, 0.0507, 0.0705};
  double aB[6] = {9.0, 0.0001, 0.0001, 0.0003, 0.0712, 0.0514};
  bt_straggler_init(&s, 1.5, 3, 0.005);
  for (int i = 1; i <= 3; i++) {
    bt_straggler_link_update(&s, i == 2 ? aB : aA, aHost3x2, 6, &r);
    CHECK(r.iSlowest == 4, "interval %d: slowest %d", i, r.iSlowest);
    CHECK(r.nIntervals == i && r.iRank == (i == 3 ? 4 : -1),
          "interval %d: run %d named %d", i, r.nIntervals, r.iRank);
  }
  /* The host's value is its minimum (aA: 50.7 ms), the median is over the
   * three hosts: min(0.2) for host 0 (rank 1 only), 0.1 for host 2. */
  CHECK(fabs(r.pingMax - 0.0507) < 1e-12, "host value %g", r.pingMax);
  CHECK(fabs(r.pingMedian - 0.0002) < 1e-12, "median %g", r.pingMedian);
  CHECK(fabs(r.ratio - 0.0507 / 0.0002) < 1e-9, "ratio %g", r.ratio);
  /* One lost packet (a 200 ms retransmit) on one rank of a healthy host:
   * the host's minimum stays small, nobody new is named, and the count
   * of the slow host goes on. */
  double aLoss[6] = {0, 0.0002, 0.2, 0.0001, 0.0507, 0.0510};
  bt_straggler_link_update(&s, aLoss, aHost3x2, 6, &r);
  CHECK(r.iSlowest == 4 && r.iRank == 4 && r.nIntervals == 4,
        "loss spike: slowest %d named %d run %d", r.iSlowest, r.iRank,
        r.nIntervals);
  /* Healthy again: reset. */
  double aOk[6] = {0, 0.0002, 0.0003, 0.0001, 0.0002, 0.0001};
  bt_straggler_link_update(&s, aOk, aHost3x2, 6, &r);
  CHECK(r.iRank == -1 && r.nIntervals == 0, "healthy: named %d run %d",
        r.iRank, r.nIntervals);
}

static void test_link_edges(void) {
  bt_straggler s;
  bt_straggler_link_result r;
  /* One host (every rank on rank 0's machine): nothing to compare. */
  static const int aOne[4] = {0, 0, 0, 0};
  double aP[4] = {0, 0.001, 0.2, 0.001};
  bt_straggler_init(&s, 1.5, 1, 0.005);
  bt_straggler_link_update(&s, aP, aOne, 4, &r);
  CHECK(r.iRank == -1 && r.iSlowest == 0, "one host: named %d slowest %d",
        r.iRank, r.iSlowest);
  /* Rank 0 alone on its host, one rank per host: rank 0's host has no
   * value; two hosts left, median = their mean. */
  static const int aEach[3] = {0, 1, 2};
  double aTwo[3] = {0, 0.0001, 0.0501}; /* median 0.0251, ratio ~2 */
  bt_straggler_link_update(&s, aTwo, aEach, 3, &r);
  CHECK(r.iRank == 2 && r.ratio > 1.99 && r.ratio < 2.0,
        "two hosts: named %d ratio %g", r.iRank, r.ratio);
  /* World 1 or 2 with rank 0 alone: no host pinged / one host. */
  bt_straggler_link_update(&s, aTwo, aEach, 1, &r);
  CHECK(r.iSlowest == -1 && r.iRank == -1 && r.ratio == 1.0,
        "world 1: slowest %d", r.iSlowest);
  bt_straggler_link_update(&s, aTwo, aEach, 2, &r);
  CHECK(r.iSlowest == 1 && r.iRank == -1, "world 2: named %d", r.iRank);
  /* The gap floor: 4 ms over a 0.1 ms median is not named at 5 ms. */
  double aSmall[6] = {0, 0.0001, 0.0001, 0.0001, 0.0041, 0.0041};
  bt_straggler_link_update(&s, aSmall, aHost3x2, 6, &r);
  CHECK(r.iRank == -1 && r.ratio > 40, "floor: named %d ratio %g", r.iRank,
        r.ratio);
  /* Off. */
  bt_straggler_init(&s, 0, 1, 0.005);
  double aSlow[6] = {0, 0.0001, 0.0001, 0.0001, 0.05, 0.05};
  bt_straggler_link_update(&s, aSlow, aHost3x2, 6, &r);
  CHECK(r.iRank == -1 && r.iSlowest == 4, "off: named %d", r.iRank);
}

int main(void) {
  test_persistent();
  test_edges();
  test_link();
  test_link_edges();
  return CHECK_DONE();
}
