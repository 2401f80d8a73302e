/*
 * straggler.c - the persistent-straggler verdict (straggler.h).
 *
 * The median of an even count is the mean of the two middle values; with
 * two ranks that is the mean of both, so a rank twice as slow as the other
 * shows a ratio of 4/3, not 2: a straggler needs a third rank to stand
 * out against, which is the case the check is for (many ranks, one slow).
 * The link verdict compares hosts the same way (two hosts: 50 ms against
 * 0.05 ms is a ratio of 2).
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

/* Invariant 2: counts the consecutive intervals the same candidate was
 * over; returns it once the count reaches nNeed, else -1. */
static int persist(bt_straggler *p, int over, int iCand, int *pRun) {
  if (!over) {
    p->iCand = -1;
    p->nRun = 0;
  } else if (iCand == p->iCand) {
    p->nRun++;
  } else {
    p->iCand = iCand;
    p->nRun = 1;
  }
  *pRun = p->nRun;
  return p->nRun >= p->nNeed ? p->iCand : -1;
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
  pOut->iRank = persist(p, over, iMax, &pOut->nIntervals);
}

void bt_straggler_link_update(bt_straggler *p, const double *aPing,
                              const int *aHostOf, int world,
                              bt_straggler_link_result *pOut) {
  BT_ASSERT(world >= 1);
  memset(pOut, 0, sizeof *pOut);
  pOut->iSlowest = pOut->iRank = -1;
  pOut->ratio = 1.0;
  /* Hosts in order of their lowest rank: aVal[k] is host k's minimum
   * round trip, aRep[k] its lowest rank. */
  double aSmall[64];
  int aRepSmall[64];
  double *aVal = world <= 64 ? aSmall : malloc((size_t)world * sizeof *aVal);
  int *aRep = world <= 64 ? aRepSmall : malloc((size_t)world * sizeof *aRep);
  BT_ASSERT(aVal != NULL && aRep != NULL);
  int nHost = 0;
  for (int i = 1; i < world; i++) {
    BT_ASSERT(aHostOf[i] >= 0 && aHostOf[i] <= i);
    int k = 0;
    while (k < nHost && aRep[k] != aHostOf[i]) k++;
    if (k == nHost) {
      aRep[nHost] = aHostOf[i];
      aVal[nHost++] = aPing[i];
    } else if (aPing[i] < aVal[k]) {
      aVal[k] = aPing[i];
    }
  }
  int over = 0, iMax = -1;
  if (nHost > 0) {
    int kMax = 0;
    for (int k = 1; k < nHost; k++)
      if (aVal[k] > aVal[kMax]) kMax = k;
    iMax = aRep[kMax];
    pOut->iSlowest = iMax;
    pOut->pingMax = aVal[kMax];
    pOut->pingMedian = median(aVal, nHost);
    pOut->ratio =
        pOut->pingMedian > 0 ? pOut->pingMax / pOut->pingMedian : 1.0;
    over = p->factor > 0 && nHost >= 2 && pOut->ratio >= p->factor &&
           pOut->pingMax - pOut->pingMedian >= p->minGap;
  }
  if (aVal != aSmall) free(aVal);
  if (aRep != aRepSmall) free(aRep);
  pOut->iRank = persist(p, over, iMax, &pOut->nIntervals);
}
