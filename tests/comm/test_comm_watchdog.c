/*
 * test_comm_watchdog.c: a job with a frozen rank must end, not hang.
 * Driven by watchdog.sh, which checks the exit status, the time taken, the
 * message and that no process is left behind.
 *
 * Modes (argv[1]):
 *   stop    4+ ranks, timeout 3 s. Five good steps, then at step 5 rank 2
 *           raise(SIGSTOP)s itself just before the allreduce; the others
 *           wait in it, their wait watchdog fires, MPI_Abort ends the job
 *           (the launcher SIGKILLs the stopped rank).
 *   fault   same, but the stop comes from the product's own fault point:
 *           BATON_FAULT=comm_stop:6@2 (set by watchdog.sh).
 *   exit    like stop, but rank 2 freezes after the last step, just
 *           before bt_comm_free: the others must not hang in
 *           MPI_Finalize (bt_comm_free's shutdown barrier, step 10).
 *   thread  2 ranks. Rank 0 has no timeout and waits in an allreduce
 *           forever; rank 1 starts the step watchdog (2 s) and then "hangs
 *           in compute" without calling bt_comm_set_context: only its
 *           watchdog thread can end the job.
 * argv[2] is an opaque token watchdog.sh uses to find leftover processes.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "comm/comm.h"

static int fail(const char *zWhat) {
  bt_log_error("%s: %s", zWhat, bt_err_msg());
  return 1;
}

int main(int argc, char **argv) {
  const char *zMode = argc > 1 ? argv[1] : "stop";
  bt_comm *c = NULL;
  if (bt_comm_init(&c, &argc, &argv)) {
    fprintf(stderr, "init: %s\n", bt_err_msg());
    bt_comm_abort(NULL, 1);
  }
  int rank = bt_comm_rank(c);
  if (strcmp(zMode, "thread") == 0) {
    bt_comm_set_timeout(c, rank == 1 ? 2.0 : 0.0);
    if (rank == 1 && bt_comm_watchdog_start(c)) return fail("watchdog");
    for (long step = 0; step < 3; step++) {
      bt_comm_set_context(c, step, "allreduce loss");
      float x = 1;
      if (bt_comm_allreduce(c, &x, 1, BT_F32, BT_SUM, NULL))
        return fail("allreduce");
    }
    bt_comm_set_context(c, 9, "forward");
    if (rank == 1) {
      for (;;) sleep(1); /* a hang outside communication */
    }
    float x = 1;
    bt_comm_allreduce(c, &x, 1, BT_F32, BT_SUM, NULL); /* never completes */
    return fail("allreduce returned although rank 1 never joined");
  }

  bt_comm_set_timeout(c, 3.0);
  for (long step = 0; step < 10; step++) {
    bt_comm_set_context(c, step, "grad bucket 1/1 allreduce");
    if (strcmp(zMode, "stop") == 0 && step == 5 && rank == 2) {
      fprintf(stderr, "rank 2 stops itself at step 5\n");
      raise(SIGSTOP);
    }
    double a[64];
    for (int i = 0; i < 64; i++) a[i] = rank + i;
    if (bt_comm_allreduce(c, a, 64, BT_F64, BT_SUM, NULL))
      return fail("allreduce");
  }
  if (strcmp(zMode, "exit") == 0) {
    bt_comm_set_context(c, 10, "done");
    if (rank == 2) {
      fprintf(stderr, "rank 2 stops itself before bt_comm_free\n");
      raise(SIGSTOP);
    }
    bt_comm_free(c); /* must abort in the shutdown barrier */
    fprintf(stderr, "rank %d: bt_comm_free returned\n", rank);
    return 1;
  }
  bt_log_error("all 10 steps completed: the frozen rank was not frozen");
  bt_comm_free(c);
  return 1;
}
