/*
 * straggler.c - the persistent-straggler verdict (straggler.h).
 *
 * The median of an even count is the mean of the two middle values; with
 * two ranks that is the mean of both, so a rank twice as slow as the other
 * shows a ratio of 4/3, not 2: a straggler needs a third rank to stand
 * out against, which is the case the check is for (many ranks, one slow).
 */
#include "trainer/observe/straggler.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void bt_straggler_init(bt_straggler *p, double factor, int nNeed,
                       double minGap) {
  memset(p, 0, sizeof *p);
  p->factor = factor;
  p->nNeed = nNeed > 0 ? nNeed : 1;
  p->minGap = minGap > 0 ? minGap : 0;
  p->iCand = -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *a, int n) {
  double aSmall[64];
  double *aSort = n <= 64 ? aSmall : malloc((size_t)n * sizeof *aSort);
  BT_ASSERT(aSort != NULL);
  memcpy(aSort, a, (size_t)n * sizeof *aSort);
  qsort(aSort, (size_t)n, sizeof *aSort, cmp_double);
  double m = n % 2 ? aSort[n / 2] : 0.5 * (aSort[n / 2 - 1] + aSort[n / 2]);
  if (aSort != aSmall) free(aSort);
  return m;
}

void bt_straggler_update(bt_straggler *p, const double *aBusy,
                         const double *aWait, int world,
                         bt_straggler_result *pOut) {
  BT_ASSERT(world >= 1);
  memset(pOut, 0, sizeof *pOut);
  int iMax = 0;
  for (int i = 1; i < world; i++)
    if (aBusy[i] > aBusy[iMax]) iMax = i;
  for (int i = 0; i < world; i++)
    if (aWait[i] > pOut->waitMax) pOut->waitMax = aWait[i];
  pOut->iSlowest = iMax;
  pOut->busyMax = aBusy[iMax];
  pOut->busyMedian = median(aBusy, world);
  pOut->ratio =
      pOut->busyMedian > 0 ? pOut->busyMax / pOut->busyMedian : 1.0;
  int over = p->factor > 0 && world >= 2 && pOut->ratio >= p->factor &&
             pOut->busyMax - pOut->busyMedian >= p->minGap;
  if (!over) {
    p->iCand = -1;
    p->nRun = 0;
  } else if (iMax == p->iCand) {
    p->nRun++;
  } else {
    p->iCand = iMax;
    p->nRun = 1;
  }
  pOut->nIntervals = p->nRun;
  pOut->iRank = p->nRun >= p->nNeed ? p->iCand : -1;
}
