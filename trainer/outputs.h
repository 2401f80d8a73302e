/*
 * outputs.h: everything a training run writes about itself while it runs,
 * opened and closed as one object.
 *
 *   --loss-log FILE        "step loss" lines, appended and flushed every
 *                          step: rank 0, or every rank when FILE holds
 *                          "{rank}" (the 64-rank test compares them)
 *   RUN/metrics.jsonl      rank 0: one line per step (metrics.h)
 *   RUN/tb/events.out...   rank 0: the same scalars for TensorBoard
 *   RUN/trace/rankR.json   every rank, when log.trace: Chrome trace
 *                          (trace.h); the trainer adds its spans through
 *                          pTrace
 *   stdout                 rank 0: the progress line (progress.h), a live
 *                          bar on a terminal, plain lines otherwise
 *
 * Why one object: the loop opened and closed these five sinks one by one,
 * and every error path had to close exactly the ones opened so far. Now:
 *   1. bt_outputs_open() opens all or none: on failure nothing stays open
 *      and the object is zeroed.
 *   2. bt_outputs_close() is the one place each sink is closed. It is safe
 *      on a zeroed, failed or already closed object, so the trainer calls
 *      it on every path out of the loop.
 *   3. A step's loss line and metrics go out (bt_outputs_step) BEFORE its
 *      checkpoint starts, so a crash between the two cannot lose the line.
 *      The checkpoint's blocking time is known only after it, and is
 *      therefore reported with the NEXT step (time/ckpt_ms).
 *   4. Every call is safe on every rank; the object knows which rank
 *      writes what, so callers need no rank test.
 *   5. A write failure (a full disk) is reported when it happens, by the
 *      rank that writes the sink, naming the file and errno; no torn line
 *      or record stays behind; checkpoint.on_error decides between going
 *      on without that sink and stopping with a checkpoint (outputs.c).
 */
#ifndef BATON_OUTPUTS_H
#define BATON_OUTPUTS_H

#include <stdio.h>

#include "trainer/config.h"
#include "trainer/observe/metrics.h"
#include "trainer/observe/straggler.h"
#include "trainer/observe/trace.h"

/* Seconds one step spent in each phase (progress line, time/ metrics). */
typedef struct bt_step_times {
  double data;        /* waiting for the loader */
  double compute;     /* forward and backward */
  double commExposed; /* gradient communication not hidden by backward */
  double optim;       /* reductions of scalars, norm, AdamW, all-gather */
  double ckpt;        /* polling and starting checkpoints */
  double total;       /* the whole step */
} bt_step_times;

/* One rank's contribution to the straggler check, gathered from every rank
 * at log steps (bt_outputs_ranks): mean seconds per step since the last
 * gather, and the host (truncated, NUL-terminated). */
typedef struct bt_rank_times {
  double busy; /* data wait + forward/backward */
  double wait; /* gradient communication not hidden by backward */
  double ping; /* round trip to rank 0 at this log step (bt_comm_host_ping) */
  char zHost[48];
} bt_rank_times;

/* What one finished optimizer step reports. */
typedef struct bt_step_report {
  long step;
  double loss;            /* global mean training loss */
  double val;             /* validation loss; NaN unless validated now */
  double valMetric;       /* with val: GPT perplexity, MLP accuracy,
                             speech CER */
  double valWer;          /* with val, speech: WER; NaN otherwise */
  double lr;
  double gradNorm;        /* global, before clipping */
  double items;           /* tokens (GPT) or samples (MLP), all ranks */
  double secondsToReport; /* from the step's start to bt_outputs_step */
  bt_step_times t;        /* ckpt and total: for bt_outputs_step_end */
  int stopNow;            /* pre-emption: this process's last step */
  double padFraction;     /* speech: padding waste so far; NaN otherwise */
} bt_step_report;

typedef struct bt_outputs_spec {
  const bt_config *pCfg; /* log.*, train.steps, train.log_every, model.type */
  const char *zRunDir;
  const char *zLossLog;  /* --loss-log; NULL: none */
  int rank, world;
  long startStep;        /* steps completed before this process (resume) */
  /* Model FLOPs per item, for MFU on the progress line; 0 on the CPU
   * backend, which has no meaningful peak (the field is then omitted). */
  double gpuFlopsPerItem;
} bt_outputs_spec;

typedef struct bt_outputs {
  bt_trace *pTrace; /* NULL unless log.trace; the trainer adds spans */
  /* Private to outputs.c. */
  int bOpen;
  FILE *pLossLog;
  char zLossLogPath[1200];
  int bStopOnError;   /* checkpoint.on_error = stop (outputs.c) */
  int bStopRequested; /* a sink failed under stop: checkpoint and exit */
  bt_metrics *pMet; /* rank 0 only */
  int rank, world, isGpt, isSpeech, logEvery, ttyWidth;
  long total, firstStep;
  double gpuFlopsPerItem;
  double tOpen;      /* bt_time_now() at open: the progress line's elapsed */
  int bQuiet;        /* --quiet (log level 0): no progress line */
  double lastVal;    /* the latest validation loss (NaN: none yet) */
  double lastCer, lastWer; /* speech: with lastVal */
  double prevCkpt;   /* checkpoint seconds of the previous step */
  bt_step_times acc; /* summed since the last progress line */
  int nAcc;
  bt_straggler strag;       /* every rank: the same verdicts (straggler.h) */
  bt_straggler_result sr;   /* the latest interval's verdict */
  long srStep;              /* the step of sr; 0: none yet */
  char zStragHost[48];      /* host of sr.iRank */
  bt_straggler link;        /* the slow-link verdict (straggler.h) */
  bt_straggler_link_result lr;
  char zLinkHost[48];       /* host of lr.iRank */
  char zStragLine[160];     /* progress-line segment(s) ("" when none) */
} bt_outputs;

/* Opens every sink of the spec (invariant 1). On error returns BT_ERR with
 * the path in bt_err_msg() and leaves *p zeroed. */
int bt_outputs_open(bt_outputs *p, const bt_outputs_spec *pSpec);
/* Every rank, at a log step, before bt_outputs_step of that step: the
 * gathered times of all ranks (world entries). Updates the straggler and
 * slow-link verdicts; rank 0 adds time/rank_* and time/link_ping_* and,
 * while a rank or link is named, the straggler/ tags to the step's metrics,
 * warns once when one is first named, and the progress line names it
 * until it is no longer slow. */
void bt_outputs_ranks(bt_outputs *p, long step, const bt_rank_times *aRank);
/* The step's loss-log line and metrics (before its checkpoint). A sink
 * whose write fails is reported now and closed (no torn line is left);
 * with checkpoint.on_error = stop it also raises the stop request. */
void bt_outputs_step(bt_outputs *p, const bt_step_report *r);
/* 1 once a sink of THIS rank failed under checkpoint.on_error = stop: the
 * trainer adds it to the next step's all-reduce, and every rank writes a
 * checkpoint at that step and exits 1 (BT_EXIT_ERROR). */
int bt_outputs_stop_requested(const bt_outputs *p);
/* After the checkpoint: accumulates r->t and prints the progress line on
 * rank 0 every train.log_every steps, on the first and the last step, and
 * on a step with a validation loss or a pre-emption. */
void bt_outputs_step_end(bt_outputs *p, const bt_step_report *r);
/* Ends the progress line and closes every sink (invariant 2). */
void bt_outputs_close(bt_outputs *p);

#endif /* BATON_OUTPUTS_H */
