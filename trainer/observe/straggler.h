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
 * A slow LINK does not raise anyone's busy time: every rank waits in the
 * gradient all-reduce (measured on simulated nodes, 50 ms delay on node
 * 2's incoming side: each rank's wait went from ~1 to 65-120 ms per step,
 * node 2's ranks highest but within 1.3-1.8x of the median, busy unchanged
 * at 0.3 ms). So each rank also times one round trip to rank 0 per log
 * interval (bt_comm_host_ping: 0.05-0.3 ms here, 50-70 ms through the
 * slow link) and bt_straggler_link_update() names the host whose round
 * trip is persistently over the factor, with the same factor, persistence
 * and floor as the busy check. Per host, not per rank: a slow link slows
 * every rank behind it, and the host's value is the minimum over its ranks,
 * so one retransmitted packet (a loss) does not make a host slow. The host
 * is represented by its lowest rank (stable from one interval to the
 * next). Rank 0 pings nobody: its host counts through its other ranks, or
 * not at all; a slow link at rank 0's own host makes every other host look
 * slow, and then nobody is named on three or more hosts (the median is
 * slow too).
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

/* The link verdict of one interval (bt_straggler_link_update). */
typedef struct bt_straggler_link_result {
  int iSlowest;      /* lowest rank of the host with the largest round trip;
                        -1 when no rank pinged (one rank, or one per host
                        and a single host) */
  double pingMax;    /* that host's round trip (min over its ranks), s */
  double pingMedian; /* median of the hosts' round trips */
  double ratio;      /* pingMax / pingMedian (1 when the median is 0) */
  int iRank;         /* the persistent slow link's host, by its lowest rank;
                        -1: none (invariant 2) */
  int nIntervals;    /* consecutive intervals iSlowest was over factor */
} bt_straggler_link_result;

void bt_straggler_init(bt_straggler *p, double factor, int nNeed,
                       double minGap);
/* aBusy and aWait hold world values each (rank order). */
void bt_straggler_update(bt_straggler *p, const double *aBusy,
                         const double *aWait, int world,
                         bt_straggler_result *pOut);

/* aPing: world round trips to rank 0 (aPing[0] is ignored); aHostOf[i]:
 * the lowest rank on rank i's host (so aHostOf[i] <= i, and ranks of one
 * host share it). p is a state of its own (not the busy check's). */
void bt_straggler_link_update(bt_straggler *p, const double *aPing,
                              const int *aHostOf, int world,
                              bt_straggler_link_result *pOut);

#endif /* BATON_STRAGGLER_H */
