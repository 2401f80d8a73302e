/*
 * metrics.h: the per-run metrics sink (rank 0 writes, every rank may call).
 *
 * Files, under the run directory RUN:
 *   RUN/metrics.jsonl   one JSON object per flushed step, e.g.
 *       {"step":120,"time":1764000000.123,"train/loss":2.3125,"train/lr":0.0003}
 *     "step" is the optimizer step, "time" Unix wall-clock seconds, every
 *     other key a tag given to bt_metrics_scalar(). Non-finite values
 *     (NaN, +-inf) are written as null: JSON has no literal for them.
 *   RUN/tb/events.out.tfevents.<sec>.<usec>.<host>.<pid>.<seq>
 *     the same scalars as a TensorBoard event file (tboard.h).
 *
 * Contract:
 *   - bt_metrics_scalar() buffers (step, tag, value); bt_metrics_flush_step()
 *     writes the buffered scalars of that step as ONE JSONL line (one write()
 *     call, so a crash never interleaves two lines) and ONE TensorBoard
 *     Event, then flushes both. A second value for the same tag in the same
 *     step replaces the first. Starting a new step while an older one is
 *     still buffered flushes the older one first: nothing is dropped.
 *   - metrics.jsonl is opened in append mode and never truncated. A resumed
 *     run continues the same file, so the steps between the last checkpoint
 *     and the crash appear twice: readers take the LAST line for a step.
 *     A crash can leave a torn last line; the next open starts a new line
 *     first, so readers should skip lines that do not parse.
 *   - On ranks other than 0 (bt_log_rank() != 0) open succeeds, creates
 *     nothing, and every call is a cheap no-op, so callers need no rank test.
 *     A NULL handle is accepted everywhere as a no-op as well.
 *   - Durability: both files are flushed to the kernel every step (they
 *     survive a process crash) and fsync()ed on close (they survive power
 *     loss only up to the last close).
 *   - Not thread-safe: call from the trainer's main thread.
 *   - Errors return BT_ERR with bt_err_msg() naming the file (and errno);
 *     the handle stays usable. A failed write (full disk) leaves no torn
 *     line or record: the file is cut back to where it began, and that
 *     sink is closed, so each sink's failure is returned once, by the call
 *     whose write failed; later calls skip it. What happens to training is
 *     the caller's decision (trainer/outputs.c: checkpoint.on_error).
 */
#ifndef BATON_METRICS_H
#define BATON_METRICS_H

#include <stdint.h>

#define BT_METRICS_MAX_TAGS 64 /* distinct tags buffered for one step */
#define BT_METRICS_MAX_TAG 128 /* bytes of one tag, excluding NUL */

typedef struct bt_metrics bt_metrics;

/* Opens the sinks that are enabled (either may be 0) under zRunDir, which is
 * created if missing. *ppM is NULL only on error. */
int bt_metrics_open(bt_metrics **ppM, const char *zRunDir, int enable_jsonl,
                    int enable_tboard);
/* Buffers one scalar of `step`. Tags are [A-Za-z0-9_./-]-style names such as
 * "train/loss"; "step" and "time" are reserved. */
int bt_metrics_scalar(bt_metrics *pM, int64_t step, const char *zTag,
                      double value);
/* Writes the buffered scalars of `step` (nothing buffered: no-op). Returns
 * BT_ERR if the buffer holds another step (it is written anyway, under its
 * own step). */
int bt_metrics_flush_step(bt_metrics *pM, int64_t step);
/* Marks that training (re)starts at `step`, the first step this start will
 * write (resume from a checkpoint at step S: S + 1): writes a TensorBoard
 * SessionLog START so TensorBoard drops points >= step read from the crashed
 * run's files, and keeps those of step S. The JSONL file needs no marker
 * here (readers take the last line of a step; the trainer adds the tag
 * run/start_step to a start's first line). */
int bt_metrics_mark_start(bt_metrics *pM, int64_t step);
/* Flushes any buffered step, fsyncs, closes, frees. NULL is a no-op. */
int bt_metrics_close(bt_metrics *pM);

#endif /* BATON_METRICS_H */
