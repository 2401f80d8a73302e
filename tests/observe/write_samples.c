/*
 * write_samples.c: writes sample metrics, TensorBoard and trace files with
 * baton's own writers, for check_ref.py to read with TensorBoard's reader
 * and Python's json module (run_ref.sh runs the two in turn).
 *   write_samples tboard RUN   metrics (JSONL + TensorBoard) of a run that
 *                              "crashes" after step 10 and resumes at step 6
 *   write_samples trace PATH   a trace with nested spans on two tids
 *   write_samples trace-crash PATH   the same, ended by _exit() without close
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "trainer/observe/metrics.h"
#include "trainer/observe/trace.h"

static int fail(const char *zWhat) {
  fprintf(stderr, "write_samples: %s: %s\n", zWhat, bt_err_msg());
  return 1;
}

/* Values are a function of (step, attempt) so the checker can predict them. */
static int write_metrics(const char *zRun) {
  bt_metrics *m;
  /* The first run "crashes" after step 10: a child process that ends with
   * _exit() and never closes (the files were flushed step by step). */
  pid_t pid = fork();
  if (pid < 0) return fail("fork");
  if (pid == 0) {
    if (bt_metrics_open(&m, zRun, 1, 1) != BT_OK) _exit(fail("open"));
    if (bt_metrics_mark_start(m, 0) != BT_OK) _exit(fail("mark"));
    for (int s = 1; s <= 10; s++) {
      bt_metrics_scalar(m, s, "train/loss", 10.0 / s);
      bt_metrics_scalar(m, s, "train/lr", 1e-3 * s);
      if (s % 5 == 0) bt_metrics_scalar(m, s, "val/loss", 20.0 / s);
      if (bt_metrics_flush_step(m, s) != BT_OK) _exit(fail("flush"));
    }
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    return fail("first run");
  if (bt_metrics_open(&m, zRun, 1, 1) != BT_OK) return fail("reopen");
  if (bt_metrics_mark_start(m, 6) != BT_OK) return fail("mark 6");
  for (int s = 6; s <= 8; s++) {
    bt_metrics_scalar(m, s, "train/loss", 100.0 + s);
    bt_metrics_scalar(m, s, "train/lr", 1e-3 * s);
    if (bt_metrics_flush_step(m, s) != BT_OK) return fail("flush");
  }
  return bt_metrics_close(m) == BT_OK ? 0 : fail("close");
}

static void busy(double s) {
  double t = bt_time_now();
  while (bt_time_now() - t < s) {
  }
}

static int write_trace(const char *zPath, int bCrash) {
  bt_trace *t;
  if (bt_trace_open(&t, zPath, 1) != BT_OK) return fail("trace open");
  bt_trace_thread_name(t, 1, "comm");
  for (int s = 0; s < 50; s++) {
    bt_trace_begin(t, "step", "train");
    bt_trace_begin(t, "forward", "compute");
    bt_trace_begin(t, "attention", "compute");
    busy(2e-5);
    bt_trace_end(t);
    bt_trace_end(t);
    bt_trace_begin(t, "backward", "compute");
    for (int b = 0; b < 3; b++) {
      double t0 = bt_time_now();
      busy(1e-5);
      bt_trace_span(t, "allreduce", "comm", 1, t0, bt_time_now());
    }
    bt_trace_end(t);
    bt_trace_begin(t, "optimizer", "compute");
    bt_trace_end(t);
    bt_trace_end(t);
  }
  if (bCrash) {
    bt_trace_begin(t, "step", "train"); /* in flight when the crash comes */
    _exit(0);
  }
  return bt_trace_close(t) == BT_OK ? 0 : fail("trace close");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: write_samples tboard RUN | trace PATH | trace-crash PATH\n");
    return 2;
  }
  if (!strcmp(argv[1], "tboard")) return write_metrics(argv[2]);
  if (!strcmp(argv[1], "trace")) return write_trace(argv[2], 0);
  if (!strcmp(argv[1], "trace-crash")) return write_trace(argv[2], 1);
  fprintf(stderr, "write_samples: unknown mode %s\n", argv[1]);
  return 2;
}
