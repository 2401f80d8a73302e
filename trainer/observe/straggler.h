/*
 * straggler.h - which rank is persistently slower than the others.
 *
 * Every log interval each rank contributes the mean seconds per step it
 * was busy (data wait + forward/backward) and blocked (gradient wait not
 * hidden by backward); the trainer gathers them (one small host
 * all-gather per log step, not per step) and hands the array to
 * bt_straggler_update() on every rank. A rank is a straggler when its busy
 * time is at least train.straggler_factor times the median busy time for
 * train.straggler_intervals consecutive log intervals, the same rank each
 * time. Comparing with the median, not the mean, keeps one slow rank from
 * raising the bar it is measured against. A gap under train.straggler_min_ms
 * (minGap, default 5 ms) per step is never reported, whatever the ratio:
 * on short steps the scheduler alone moves ranks 1.5x apart (measured: 4
 * ranks on 2 shared cores, rank 0 at 1.0 ms against a 0.67 ms median for
 * several intervals; under a loaded CI run, rank 0 at 10 ms against 1 ms
 * for three intervals), and a gap that small costs nothing worth a
 * warning on the steps of a real model (hundreds of ms).
 *
 * Invariants:
 *   1. Pure: no communication and no clock here, so every rank computes
 *      the same verdict from the same gathered array, and the unit test
 *      drives it with made-up numbers.
 *   2. iRank is -1 unless the persistence count has reached nNeed; one
 *      interval below the factor (or a different slowest rank) resets it.
 */
#ifndef BATON_STRAGGLER_H
#define BATON_STRAGGLER_H

typedef struct bt_straggler {
  double factor; /* train.straggler_factor; 0: detection off */
  int nNeed;     /* train.straggler_intervals */
  double minGap; /* train.straggler_min_ms / 1000: smaller gaps never count */
  int iCand;     /* slowest rank of the previous interval, -1: none */
  int nRun;      /* consecutive intervals iCand was over the factor */
} bt_straggler;

/* The verdict of one interval. */
typedef struct bt_straggler_result {
  int iSlowest;        /* rank with the largest busy time this interval */
  double busyMax;      /* its busy seconds per step */
  double busyMedian;   /* median busy seconds per step over the ranks */
  double waitMax;      /* largest blocked seconds per step */
  double ratio;        /* busyMax / busyMedian (1 when the median is 0) */
  int iRank;           /* the persistent straggler, -1: none (invariant 2) */
  int nIntervals;      /* consecutive intervals iSlowest was over factor */
} bt_straggler_result;

void bt_straggler_init(bt_straggler *p, double factor, int nNeed,
                       double minGap);
/* aBusy and aWait hold world values each (rank order). */
void bt_straggler_update(bt_straggler *p, const double *aBusy,
                         const double *aWait, int world,
                         bt_straggler_result *pOut);

#endif /* BATON_STRAGGLER_H */
