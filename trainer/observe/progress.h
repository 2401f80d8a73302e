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
 *     not fit, the least important go first, in this order: breakdown,
 *     grad-norm, MFU, throughput, ETA, then the bar's percentage, then the
 *     bar (it shrinks to 10 cells before it goes), then elapsed time, lr,
 *     val loss and the straggler note ("slow rank R@host"), loss; the step
 *     counter always stays. So at 80 columns a GPT run shows the counter,
 *     loss, val loss, lr and elapsed time.
 * Fields that are unknown are omitted, never printed as "nan": NaN marks
 * loss/val_loss/lr/grad_norm/mfu/eta_s/elapsed_s/step_s unknown;
 * throughput <= 0 too. MFU is set only on GPU (no meaningful CPU peak).
 *
 * bt_progress_format() is pure (no I/O, no globals) so tests need no
 * terminal. bt_progress_print() adds the terminal handling, on rank 0 only
 * (bt_log_rank()): line + "\n" when not on a terminal; on a terminal the
 * line is live (no newline, the cursor stays at its end) and:
 *   1. Each redraw asks the terminal its width again (one TIOCGWINSZ), so a
 *      resized window gets a line of the new width at the next redraw. A
 *      terminal that reflows on resize (tmux, VTE, iTerm2, kitty) has
 *      wrapped the old line onto several rows: the redraw moves up over
 *      them and erases to the end of the screen ("\x1b[J").
 *   2. While a line is live, a log line (util.h's bt_log_*) takes it off
 *      the terminal first, prints the message on its own line, and the bar
 *      is drawn again below it (a hook bt_progress_print() registers with
 *      bt_log_set_hook(); base cannot include this module). The state is
 *      behind a mutex: the checkpoint writer's thread logs too.
 *   3. bt_progress_end_line() ends a live line with "\n" and removes the
 *      hook; nothing is printed when no line is live.
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
  double elapsed_s;  /* seconds since this process started training */
  /* "slow rank 2@node1 3.1x" when a rank is a persistent straggler
   * (straggler.h); NULL: none. Kept after loss on a terminal: the line
   * exists to say why the run is slow. */
  const char *zStraggler;
  /* Speech: padded frames over B*T of every batch so far (all ranks;
   * audio_loader.h bt_audio_loader_pad_fraction); NaN: not shown. */
  double pad_frac;
  /* Speech: the latest validation CER and WER in [0, ...); NaN: none. */
  double val_cer, val_wer;
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

/* Prints the line to f (rank 0 only); see the header comment. tty_width
 * > 0: the live form; its width is asked again of f's terminal each time
 * (tty_width is used only when f is not a terminal: BATON_PROGRESS=bar). */
void bt_progress_print(FILE *f, const bt_progress *p, int tty_width);
/* Ends a live line with "\n" so following output starts on a fresh line,
 * and stops redrawing it around log lines; no-op when none is live. */
void bt_progress_end_line(FILE *f, int tty_width);

#endif /* BATON_PROGRESS_H */
