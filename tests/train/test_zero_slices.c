/*
 * test_zero_slices.c: the ZeRO-1 bucket plan (trainer/grad_sync.h,
 * invariants 1-3) for awkward sizes: parameter counts that are prime,
 * world sizes 1, 2, 3, 7, 64, buckets from one padding unit to larger
 * than the model. The trainer pads nFlat with bt_grad_sync_unit and cuts
 * buckets and slices with these same functions, so this is its plan:
 * every bucket a multiple of the world size, every rank's slice of a
 * bucket the same length and 64-byte aligned, every element of [0, nFlat)
 * owned by exactly one rank, each rank's shard nFlat / world elements.
 */
#include "tests/check.h"
#include "trainer/grad_sync.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_plan(size_t nParam, int world, double bucketMb) {
  size_t unit = bt_grad_sync_unit(world);
  size_t nFlat = (nParam + unit - 1) / unit * unit; /* what model.c does */
  size_t per = bt_grad_sync_bucket_elems(bucketMb, world);
  CHECK(per >= unit && per % unit == 0 && per <= ((size_t)1 << 30),
        "n=%zu W=%d mb=%g: bucket of %zu elements", nParam, world, bucketMb,
        per);
  int nB = bt_grad_sync_nbucket(nFlat, per);
  uint8_t *aOwner = calloc(nFlat, 1);
  size_t *aShard = calloc((size_t)world, sizeof(size_t));
  if (!aOwner || !aShard) {
    CHECK(0, "out of memory");
    return;
  }
  size_t expectHi = nFlat;
  int bad = 0;
  for (int b = 0; b < nB && !bad; b++) {
    size_t lo, hi;
    bt_grad_sync_bucket_range(nFlat, per, b, &lo, &hi);
    /* buckets tile [0, nFlat) from the end, each a multiple of W */
    if (hi != expectHi || hi <= lo || (hi - lo) % (size_t)world ||
        (hi - lo) % unit) {
      CHECK(0, "n=%zu W=%d mb=%g: bucket %d is [%zu, %zu), expected hi %zu",
            nParam, world, bucketMb, b, lo, hi, expectHi);
      bad = 1;
    }
    expectHi = lo;
    for (int r = 0; r < world && !bad; r++) {
      size_t sLo, sHi;
      bt_grad_sync_slice(lo, hi, world, r, &sLo, &sHi);
      if (sHi - sLo != (hi - lo) / (size_t)world || sLo % 16 || sLo < lo ||
          sHi > hi) {
        CHECK(0, "n=%zu W=%d: bucket %d rank %d slice [%zu, %zu)", nParam,
              world, b, r, sLo, sHi);
        bad = 1;
      }
      for (size_t x = sLo; x < sHi && !bad; x++) aOwner[x]++;
      aShard[r] += sHi - sLo;
    }
  }
  CHECK(!bad && expectHi == 0, "n=%zu W=%d mb=%g: buckets end at %zu",
        nParam, world, bucketMb, expectHi);
  size_t nWrong = 0;
  for (size_t x = 0; x < nFlat; x++) nWrong += aOwner[x] != 1;
  CHECK(nWrong == 0, "n=%zu W=%d mb=%g: %zu elements not owned exactly once",
        nParam, world, bucketMb, nWrong);
  for (int r = 0; r < world; r++)
    CHECK(aShard[r] == nFlat / (size_t)world,
          "n=%zu W=%d: rank %d owns %zu, not %zu", nParam, world, r,
          aShard[r], nFlat / (size_t)world);
  free(aOwner);
  free(aShard);
}

int main(void) {
  static const size_t aN[] = {1, 2, 97, 7919, 104729, 1000003};
  static const int aW[] = {1, 2, 3, 7, 64};
  /* 4e-9 MB: less than one element, so one padding unit per bucket. */
  static const double aMb[] = {4e-9, 0.004, 0.1, 25.0};
  for (size_t i = 0; i < sizeof aN / sizeof aN[0]; i++)
    for (size_t j = 0; j < sizeof aW / sizeof aW[0]; j++)
      for (size_t k = 0; k < sizeof aMb / sizeof aMb[0]; k++)
        if (!(aMb[k] < 1e-3 && aN[i] > 10000)) /* keeps the run to seconds */
          check_plan(aN[i], aW[j], aMb[k]);
  /* The int limit of MPI counts: a huge bucket_mb stays under 2^30 and a
   * multiple of the unit, also when 2^30 is not one (W = 3, 7). */
  for (size_t j = 0; j < sizeof aW / sizeof aW[0]; j++) {
    size_t per = bt_grad_sync_bucket_elems(1e9, aW[j]);
    CHECK(per <= ((size_t)1 << 30) && per % bt_grad_sync_unit(aW[j]) == 0 &&
              per > ((size_t)1 << 30) - bt_grad_sync_unit(aW[j]),
          "W=%d: bucket of %zu elements at bucket_mb=1e9", aW[j], per);
  }
  /* A slice is a pure function of (bucket, world, rank): W=3, bucket of
   * 96 starting at 48: ranks own [48,80), [80,112), [112,144). */
  size_t sLo, sHi;
  bt_grad_sync_slice(48, 144, 3, 2, &sLo, &sHi);
  CHECK(sLo == 112 && sHi == 144, "slice [%zu, %zu)", sLo, sHi);
  return CHECK_DONE();
}
