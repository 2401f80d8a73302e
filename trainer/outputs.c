/*
 * outputs.c: the run's loss log, metrics, TensorBoard events, trace and
 * progress line behind one open/close pair (see outputs.h for the
 * invariants).
 *
 * Formats are those of the sinks themselves (metrics.h, tboard.h,
 * trace.h, progress.h); this file only decides who writes what and when.
 *
 * A sink whose write fails (a full disk) is reported at once, with the file
 * and errno, by the rank that writes it; the sink has cut off its partial
 * line or record and closed itself (metrics.h), and the loss log does the
 * same here. Then checkpoint.on_error decides, as for checkpoints:
 * "continue" warns once and trains on without that output; "stop" raises
 * bt_outputs_stop_requested(), which the trainer adds to the next step's
 * all-reduce, so every rank writes a checkpoint at that step and exits 1.
 */
#include "base/util.h"
#include "trainer/observe/progress.h"
#include "trainer/outputs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void outputs_sink_failed(bt_outputs *p);

/* "{rank}" in the path gives every rank its own loss log; otherwise only
 * rank 0 writes one. */
static int loss_log_open(bt_outputs *p, const char *zLossLog) {
  const char *zRankTag = zLossLog ? strstr(zLossLog, "{rank}") : NULL;
  if (!zLossLog || (p->rank != 0 && !zRankTag)) return BT_OK;
  char zPath[1200];
  if (zRankTag)
    bt_snprintf(zPath, sizeof zPath, "%.*s%d%s", (int)(zRankTag - zLossLog),
                zLossLog, p->rank, zRankTag + 6);
  else
    bt_snprintf(zPath, sizeof zPath, "%s", zLossLog);
  bt_snprintf(p->zLossLogPath, sizeof p->zLossLogPath, "%s", zPath);
  p->pLossLog = fopen(zPath, "a");
  if (!p->pLossLog)
    return bt_err_set("cannot open loss log '%s': %s", zPath,
                      strerror(errno));
  return BT_OK;
}

static int trace_open(bt_outputs *p, const char *zRunDir) {
  char zPath[1200];
  bt_snprintf(zPath, sizeof zPath, "%s/trace", zRunDir);
  bt_mkdir_p(zPath); /* a failure shows as the open's error below */
  bt_snprintf(zPath, sizeof zPath, "%s/trace/rank%d.json", zRunDir, p->rank);
  if (bt_trace_open(&p->pTrace, zPath, p->rank) != BT_OK) return BT_ERR;
  bt_trace_thread_name(p->pTrace, 0, "compute");
  bt_trace_thread_name(p->pTrace, 1, "gradient communication");
  return BT_OK;
}

/* A live bar only on a real terminal. Under mpirun, Open MPI hands the
 * ranks a pseudo-terminal even when mpirun's own output goes to a file,
 * so with several ranks plain lines are the default; BATON_PROGRESS=bar
 * or =plain overrides either way. */
static int progress_width(int rank, int world) {
  const char *zProg = getenv("BATON_PROGRESS");
  int bBar = zProg && !strcmp(zProg, "bar");
  int ttyWidth = 0;
  if (rank == 0 && (zProg ? bBar : world == 1))
    ttyWidth = bt_progress_tty_width(1);
  if (bBar && ttyWidth <= 0) ttyWidth = 100;
  return ttyWidth;
}

int bt_outputs_open(bt_outputs *p, const bt_outputs_spec *s) {
  const bt_config *c = s->pCfg;
  memset(p, 0, sizeof *p);
  p->rank = s->rank;
  p->world = s->world;
  p->isGpt = c->model_type == BT_MODEL_GPT;
  p->isSpeech = c->model_type == BT_MODEL_SPEECH;
  p->logEvery = c->log_every;
  p->total = c->steps;
  p->firstStep = s->startStep + 1;
  p->gpuFlopsPerItem = s->gpuFlopsPerItem;
  int rc = loss_log_open(p, s->zLossLog);
  if (rc == BT_OK && p->rank == 0)
    rc = bt_metrics_open(&p->pMet, s->zRunDir, c->jsonl, c->tensorboard);
  if (rc == BT_OK && c->trace) rc = trace_open(p, s->zRunDir);
  if (rc != BT_OK) {
    bt_outputs_close(p); /* closes what did open; keeps the error */
    return BT_ERR;
  }
  /* The first step THIS start writes, not the resume step: TensorBoard
   * drops older points with step >= the mark, and the resume step's points
   * (its val/loss among them) were written before the crash and are kept. */
  p->bStopOnError = c->ckpt_on_error != BT_CKPT_ON_ERROR_CONTINUE;
  if (p->rank == 0 && bt_metrics_mark_start(p->pMet, p->firstStep) != BT_OK)
    outputs_sink_failed(p);
  p->ttyWidth = progress_width(p->rank, p->world);
  /* --quiet promises only errors and warnings; the progress line is
   * neither (it printed anyway: it never asked the log level). */
  p->bQuiet = bt_log_level() < 1;
  p->tOpen = bt_time_now();
  p->lastVal = p->lastCer = p->lastWer = NAN;
  bt_straggler_init(&p->strag, c->straggler_factor, c->straggler_intervals,
                    c->straggler_min_ms / 1000.0);
  bt_straggler_init(&p->link, c->straggler_factor, c->straggler_intervals,
                    c->straggler_min_ms / 1000.0);
  p->bOpen = 1;
  return BT_OK;
}

/* The slow-link verdict from the gathered round trips (straggler.h):
 * ranks of one host share its lowest rank; appends its segment to the
 * progress line and warns once per episode. */
static void outputs_link(bt_outputs *p, const bt_rank_times *aRank) {
  int aSmall[256];
  int *aHostOf = p->world <= 256 ? aSmall
                                 : malloc((size_t)p->world * sizeof *aHostOf);
  double aPingSmall[256];
  double *aPing = p->world <= 256 ? aPingSmall
                                  : malloc((size_t)p->world * sizeof *aPing);
  BT_ASSERT(aHostOf != NULL && aPing != NULL);
  for (int i = 0; i < p->world; i++) {
    aPing[i] = aRank[i].ping;
    aHostOf[i] = i;
    for (int j = 0; j < i; j++)
      if (strcmp(aRank[j].zHost, aRank[i].zHost) == 0) {
        aHostOf[i] = aHostOf[j];
        break;
      }
  }
  int iWas = p->srStep ? p->lr.iRank : -1;
  bt_straggler_link_update(&p->link, aPing, aHostOf, p->world, &p->lr);
  if (aHostOf != aSmall) free(aHostOf);
  if (aPing != aPingSmall) free(aPing);
  p->zLinkHost[0] = 0;
  int iRank = p->lr.iRank;
  if (iRank < 0) return;
  bt_snprintf(p->zLinkHost, sizeof p->zLinkHost, "%s", aRank[iRank].zHost);
  size_t n = strlen(p->zStragLine);
  bt_snprintf(p->zStragLine + n, sizeof p->zStragLine - n,
              "%sslow link rank %d@%.48s %.0f ms", n ? " | " : "", iRank,
              p->zLinkHost, 1e3 * p->lr.pingMax);
  if (p->rank == 0 && iRank != iWas)
    bt_log_warn("slow link: host %s (rank %d) answers rank 0 in %.1f ms, "
                "%.0fx the median host's %.2f ms, for %d log intervals "
                "(one round trip per rank per log step; every rank's "
                "gradient wait grows with it; train.straggler_factor = %g)",
                p->zLinkHost, iRank, 1e3 * p->lr.pingMax, p->lr.ratio,
                1e3 * p->lr.pingMedian, p->lr.nIntervals, p->link.factor);
}

void bt_outputs_ranks(bt_outputs *p, long step, const bt_rank_times *aRank) {
  double aBusy[256], aWait[256];
  double *pBusy = p->world <= 256 ? aBusy : malloc(2 * sizeof(double) *
                                                   (size_t)p->world);
  BT_ASSERT(pBusy != NULL);
  double *pWait = p->world <= 256 ? aWait : pBusy + p->world;
  for (int i = 0; i < p->world; i++) {
    pBusy[i] = aRank[i].busy;
    pWait[i] = aRank[i].wait;
  }
  int iWas = p->sr.iRank;
  if (!p->srStep) iWas = -1;
  bt_straggler_update(&p->strag, pBusy, pWait, p->world, &p->sr);
  if (pBusy != aBusy) free(pBusy);
  p->zStragLine[0] = 0;
  p->zStragHost[0] = 0;
  int iRank = p->sr.iRank;
  if (iRank >= 0) {
    bt_snprintf(p->zStragHost, sizeof p->zStragHost, "%s",
                aRank[iRank].zHost);
    bt_snprintf(p->zStragLine, sizeof p->zStragLine,
                "slow rank %d@%.48s %.1fx", iRank, p->zStragHost,
                p->sr.ratio);
  }
  /* Once per episode in the log: the progress line repeats it anyway. */
  if (p->rank == 0 && iRank >= 0 && iRank != iWas)
    bt_log_warn("straggler: rank %d on host %s has been %.1fx the median "
                "rank's busy time per step (%.0f ms vs %.0f ms; data + "
                "forward/backward) for %d log intervals "
                "(train.straggler_factor = %g)",
                iRank, p->zStragHost, p->sr.ratio, 1e3 * p->sr.busyMax,
                1e3 * p->sr.busyMedian, p->sr.nIntervals, p->strag.factor);
  outputs_link(p, aRank);
  p->srStep = step;
}

/* The first failure of a sink (its message in bt_err_msg()), reported
 * now; the policy is checkpoint.on_error (see the file's comment). */
static void outputs_sink_failed(bt_outputs *p) {
  if (!p->bStopOnError) {
    bt_log_warn("%s (training continues without it: checkpoint.on_error = "
                "continue)", bt_err_msg());
    return;
  }
  bt_log_error("%s (stopping with a checkpoint at the next step: "
               "checkpoint.on_error = stop)", bt_err_msg());
  p->bStopRequested = 1;
}

/* One "step loss" line, whole or not at all: a failed write is cut back
 * to where the line began and the log is closed. */
static void loss_log_write(bt_outputs *p, const bt_step_report *r) {
  FILE *f = p->pLossLog;
  long off = ftell(f);
  int bOk = fprintf(f, "%ld %.9g\n", r->step, r->loss) > 0;
  bOk = fflush(f) == 0 && bOk;
  if (bOk) return;
  int e = errno;
  struct stat st;
  const char *zCut = "";
  if (off >= 0 && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
      st.st_size > off)
    zCut = ftruncate(fileno(f), off) == 0 ? "; the partial line was cut off"
                                          : "; a partial line may remain";
  /* what stdio still buffers goes nowhere: the descriptor is closed
   * first */
  close(fileno(f));
  fclose(f);
  p->pLossLog = NULL;
  bt_err_set("loss log %s: writing step %ld: %s (errno %d)%s; not written "
             "from here on", p->zLossLogPath, r->step, strerror(e), e, zCut);
  outputs_sink_failed(p);
}

void bt_outputs_step(bt_outputs *p, const bt_step_report *r) {
  if (p->pLossLog) loss_log_write(p, r);
  if (p->rank != 0) return;
  bt_metrics *pM = p->pMet;
  long step = r->step;
  bt_metrics_scalar(pM, step, "train/loss", r->loss);
  bt_metrics_scalar(pM, step, "train/lr", r->lr);
  bt_metrics_scalar(pM, step, "train/grad_norm", r->gradNorm);
  bt_metrics_scalar(pM, step,
                    p->isGpt ? "perf/tokens_per_s" : "perf/samples_per_s",
                    r->items / r->secondsToReport);
  if (!isnan(r->padFraction))
    bt_metrics_scalar(pM, step, "data/pad_fraction", r->padFraction);
  bt_metrics_scalar(pM, step, "time/step_ms", 1e3 * r->secondsToReport);
  bt_metrics_scalar(pM, step, "time/data_ms", 1e3 * r->t.data);
  bt_metrics_scalar(pM, step, "time/compute_ms", 1e3 * r->t.compute);
  bt_metrics_scalar(pM, step, "time/comm_exposed_ms", 1e3 * r->t.commExposed);
  bt_metrics_scalar(pM, step, "time/optim_ms", 1e3 * r->t.optim);
  bt_metrics_scalar(pM, step, "time/ckpt_ms", 1e3 * p->prevCkpt);
  if (!isnan(r->val)) {
    bt_metrics_scalar(pM, step, "val/loss", r->val);
    bt_metrics_scalar(pM, step,
                      p->isGpt      ? "val/perplexity"
                      : p->isSpeech ? "val/cer"
                                    : "val/accuracy",
                      r->valMetric);
    if (!isnan(r->valWer)) bt_metrics_scalar(pM, step, "val/wer", r->valWer);
  }
  if (p->srStep == step) {
    bt_metrics_scalar(pM, step, "time/rank_busy_max_ms", 1e3 * p->sr.busyMax);
    bt_metrics_scalar(pM, step, "time/rank_busy_median_ms",
                      1e3 * p->sr.busyMedian);
    bt_metrics_scalar(pM, step, "time/rank_wait_max_ms", 1e3 * p->sr.waitMax);
    if (p->sr.iRank >= 0) {
      /* Metrics are numbers: the host is named by its own tag, whose
       * value is the rank (readers match the "straggler/host/" prefix). */
      char zTag[BT_METRICS_MAX_TAG + 1];
      bt_snprintf(zTag, sizeof zTag, "straggler/host/%.100s", p->zStragHost);
      bt_metrics_scalar(pM, step, "straggler/rank", p->sr.iRank);
      bt_metrics_scalar(pM, step, "straggler/ratio", p->sr.ratio);
      bt_metrics_scalar(pM, step, zTag, p->sr.iRank);
    }
    bt_metrics_scalar(pM, step, "time/link_ping_max_ms", 1e3 * p->lr.pingMax);
    bt_metrics_scalar(pM, step, "time/link_ping_median_ms",
                      1e3 * p->lr.pingMedian);
    if (p->lr.iRank >= 0) {
      char zTag[BT_METRICS_MAX_TAG + 1];
      bt_snprintf(zTag, sizeof zTag, "straggler/link_host/%.100s",
                  p->zLinkHost);
      bt_metrics_scalar(pM, step, "straggler/link_rank", p->lr.iRank);
      bt_metrics_scalar(pM, step, "straggler/link_ms", 1e3 * p->lr.pingMax);
      bt_metrics_scalar(pM, step, zTag, p->lr.iRank);
    }
  }
  /* Marks each start on its first line (0: a fresh run), so a reader sees a
   * restart even when the killed run logged nothing after its checkpoint
   * (no step goes back); a separate marker line would break readers that
   * expect "step" on every line. */
  if (step == p->firstStep)
    bt_metrics_scalar(pM, step, "run/start_step", (double)(p->firstStep - 1));
  if (bt_metrics_flush_step(pM, step) != BT_OK) outputs_sink_failed(p);
}

int bt_outputs_stop_requested(const bt_outputs *p) {
  return p->bStopRequested;
}

/* The progress line over the steps accumulated since the last one. */
static void progress_print(bt_outputs *p, const bt_step_report *r) {
  bt_progress g;
  bt_progress_init(&g);
  double n = p->nAcc ? p->nAcc : 1;
  g.step = r->step;
  g.total_steps = p->total;
  g.loss = r->loss;
  /* The latest validation loss stays on the line until the next one: on a
   * terminal it would otherwise flash by on the validation step only. */
  if (!isnan(r->val)) {
    p->lastVal = r->val;
    if (p->isSpeech) p->lastCer = r->valMetric, p->lastWer = r->valWer;
  }
  g.val_loss = p->lastVal;
  g.val_cer = p->lastCer;
  g.val_wer = p->lastWer;
  g.lr = r->lr;
  g.grad_norm = r->gradNorm;
  g.throughput = r->items * n / p->acc.total;
  g.zUnit = p->isGpt ? "tok/s" : p->isSpeech ? "utt/s" : "samples/s";
  /* MFU on GPU: model FLOPs per second over the device's dense bf16 peak
   * (BATON_PEAK_TFLOPS, default 989: H100 SXM). */
  g.mfu = NAN;
  if (p->gpuFlopsPerItem > 0) {
    const char *zPeak = getenv("BATON_PEAK_TFLOPS");
    double peak = (zPeak ? atof(zPeak) : 989.0) * 1e12 * p->world;
    g.mfu = p->gpuFlopsPerItem * g.throughput / peak;
  }
  g.step_s = p->acc.total / n;
  g.data_s = p->acc.data / n;
  g.compute_s = p->acc.compute / n;
  g.comm_s = p->acc.commExposed / n;
  g.optim_s = p->acc.optim / n;
  g.ckpt_s = p->acc.ckpt / n;
  g.breakdown_pct = 0;
  g.eta_s = (double)(p->total - r->step) * p->acc.total / n;
  g.elapsed_s = bt_time_now() - p->tOpen;
  if (p->zStragLine[0]) g.zStraggler = p->zStragLine;
  g.pad_frac = r->padFraction;
  bt_progress_print(stdout, &g, p->ttyWidth);
}

void bt_outputs_step_end(bt_outputs *p, const bt_step_report *r) {
  p->prevCkpt = r->t.ckpt;
  p->acc.data += r->t.data;
  p->acc.compute += r->t.compute;
  p->acc.commExposed += r->t.commExposed;
  p->acc.optim += r->t.optim;
  p->acc.ckpt += r->t.ckpt;
  p->acc.total += r->t.total;
  p->nAcc++;
  long step = r->step;
  if (p->rank != 0 || p->bQuiet ||
      !(step % p->logEvery == 0 || step == p->total || step == p->firstStep ||
        !isnan(r->val) || r->stopNow))
    return;
  progress_print(p, r);
  memset(&p->acc, 0, sizeof p->acc);
  p->nAcc = 0;
}

void bt_outputs_close(bt_outputs *p) {
  if (p->bOpen && p->rank == 0) bt_progress_end_line(stdout, p->ttyWidth);
  if (p->pLossLog && fclose(p->pLossLog) != 0)
    bt_log_error("loss log %s: closing: %s", p->zLossLogPath,
                 strerror(errno));
  /* the last step was flushed by bt_outputs_step: what can fail here is
   * the fsync, reported but too late to change the run */
  if (bt_metrics_close(p->pMet) != BT_OK) bt_log_error("%s", bt_err_msg());
  bt_trace_close(p->pTrace);
  memset(p, 0, sizeof *p);
}
