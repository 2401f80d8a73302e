/*
 * report.h: `baton report RUN_DIR...`, a picture of one or more runs that a
 * person can look at without TensorBoard.
 *
 * It reads only RUN/metrics.jsonl (trainer/observe/metrics.h, the format
 * documented in docs/operations.md), so it links base alone: a layer beside
 * export/, below cli/, needing no model, config or checkpoint code.
 *
 * The picture is one PNG drawn by gnuplot (Debian's gnuplot-nox, cairo PNG
 * terminal), driven through a pipe: the data travel as inline datablocks,
 * nothing is written but the PNG, and baton's build does not depend on the
 * plotting library (a missing gnuplot is an error naming the package).
 * Four panels, every run overlaid in its own colour, named in the legend:
 *   1. training loss (line) and validation loss (points) against the step;
 *      a restart is a dashed vertical line at the step it resumed from;
 *   2. throughput (tokens/s or samples/s) against the step;
 *   3. step time (ms) against the step (checkpoint steps show as spikes);
 *   4. the mean step-time breakdown per run, stacked bars: compute, exposed
 *      communication wait, data wait, optimizer, checkpoint.
 *
 * Reading metrics.jsonl (its contract, metrics.h):
 *   - the last line of a step wins (a resumed run logs the steps after its
 *     checkpoint again);
 *   - a restart is a line with run/start_step > 0 (the trainer's marker on
 *     a start's first line) or a step that does not exceed the one before;
 *   - a line that does not parse is torn by a crash: a warning names file
 *     and line and the line is skipped; a file with no step at all is an
 *     error naming the file (and its first bad line, if any).
 * Errors follow util.h's two tiers: input problems return BT_ERR with a
 * message naming the run directory, file or line.
 */
#ifndef BATON_REPORT_H
#define BATON_REPORT_H

/* `baton report [-o FILE.png] [--size WxH] RUN_DIR...`; returns an exit
 * code (BT_EXIT_*). */
int bt_report_main(int argc, char **argv);

#endif /* BATON_REPORT_H */
