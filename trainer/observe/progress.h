/*
 * progress.h: the rank-0 progress line.
 *
 * Two shapes from one struct:
 *   - not a terminal (tty_width <= 0): one plain line per log interval,
 *     every known field, " | " separated, e.g.
 *       step 120/5000 (2.4%) | loss 2.3456 | val 2.4012 | lr 3.00e-04 |
 *       gnorm 0.812 | 45.2k tok/s | MFU 41.3% | 812 ms/step (data 3,
 *       compute 640, comm 20, opt 45, ckpt 0) | ETA 1:23:45
 *     (one line in reality; wrapped here).
 *   - a terminal of tty_width columns: one line that never exceeds
 *     tty_width - 1 columns (writing the last column makes some terminals
 *     wrap), starting with a bar "[#####.....]  2.4%". When the fields do
 *     not fit, the least important are dropped first (breakdown, grad-norm,
 *     MFU, val loss, lr, throughput, ETA, loss; the step counter stays),
 *     then the bar shrinks (at least 10 columns) or goes.
 * Fields that are unknown are omitted, never printed as "nan": NaN marks
 * loss/val_loss/lr/grad_norm/mfu/eta_s/step_s unknown; throughput <= 0 too.
 * MFU is set only on GPU (the CPU backend has no meaningful peak).
 *
 * bt_progress_format() is pure (no I/O, no globals) so tests need no
 * terminal. bt_progress_print() adds the terminal handling: "\r" + line +
 * "\x1b[K" (erase the rest of the old line) with no newline on a TTY; line +
 * "\n" otherwise. Only rank 0 prints (bt_log_rank()).
 */
#ifndef BATON_PROGRESS_H
#define BATON_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct bt_progress {
  int64_t step;        /* optimizer steps done */
  int64_t total_steps; /* <= 0: unknown (no bar, no percentage) */
  double loss;         /* mean training loss over the interval */
  double val_loss;     /* NaN unless computed in this interval */
  double lr;
  double grad_norm;  /* global norm before clipping */
  double throughput; /* items per second (all ranks together) */
  const char *zUnit; /* "tok/s" or "samples/s"; NULL means "tok/s" */
  double mfu;        /* model FLOPs utilisation in [0,1]; NaN on CPU */
  /* Mean seconds per step over the interval. comm_s is the communication
   * NOT hidden behind compute (time the step waited for all-reduces). */
  double step_s, data_s, compute_s, comm_s, optim_s, ckpt_s;
  int breakdown_pct; /* 1: breakdown as % of step_s; 0: milliseconds */
  double eta_s;      /* seconds to the last step; NaN: unknown */
} bt_progress;

/* Sets every optional field to "unknown" (NaN, 0, NULL). */
void bt_progress_init(bt_progress *p);

/* Formats the line into zBuf[n] (always NUL-terminated when n > 0, never a
 * newline). Returns the length written. tty_width <= 0: plain line;
 * otherwise the terminal form fitted into tty_width - 1 columns (and n). */
size_t bt_progress_format(char *zBuf, size_t n, const bt_progress *p,
                          int tty_width);

/* "1:23:45" (hours grow past 99 as needed); "?" for NaN/negative. */
const char *bt_progress_fmt_eta(double seconds, char *zBuf, size_t n);

/* Columns of the terminal on fd (TIOCGWINSZ), 80 if it is a terminal that
 * does not say; 0 if fd is not a terminal. */
int bt_progress_tty_width(int fd);

/* Prints the line to f (rank 0 only); see the header comment. */
void bt_progress_print(FILE *f, const bt_progress *p, int tty_width);
/* On a TTY ends the live line with "\n" so following output starts on a
 * fresh line; no-op otherwise. Call before logging or at exit. */
void bt_progress_end_line(FILE *f, int tty_width);

#endif /* BATON_PROGRESS_H */
