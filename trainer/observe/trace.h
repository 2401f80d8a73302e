/*
 * trace.h: optional Chrome-trace timeline per rank (RUN/trace/rank<R>.json).
 *
 * File format (Chrome "Trace Event Format", JSON object form), opened in
 * Perfetto (ui.perfetto.dev) or chrome://tracing:
 *
 *   {"traceEvents":[
 *   {"name":"process_name","ph":"M","pid":R,"tid":0,"args":{"name":"rank R (host)"}},
 *   {"name":"forward","cat":"compute","ph":"X","pid":R,"tid":0,"ts":..,"dur":..},
 *   ...
 *   ],"displayTimeUnit":"ms"}
 *
 * Every span is a complete event ("ph":"X") with ts and dur in microseconds
 * of bt_time_now()'s monotonic clock: ranks on the same host share a time
 * axis; ranks on different hosts do not (each host's clock has its own zero).
 * pid is the rank, so the traces of all ranks can be loaded together.
 * tid 0 carries bt_trace_begin/end spans (the trainer's main thread); other
 * tids carry spans measured elsewhere (bt_trace_span), e.g. tid 1 for the
 * communication of each gradient bucket. bt_trace_thread_name() labels a tid.
 *
 * Contract:
 *   - open writes the header at once; close writes the closing "]...}" and
 *     fsyncs, so a run that stops normally (error, pre-emption) leaves a
 *     valid JSON document. A crash (SIGKILL, abort) leaves the events flushed
 *     so far without the closing bracket: Perfetto and chrome://tracing load
 *     such truncated traces; launch/baton-trace-repair makes strict JSON
 *     from one for other tools.
 *   - Opening a path that exists (a resumed run) first renames the old file
 *     to <stem>.prev.json (replacing an older one): the trace of the attempt
 *     that crashed survives one restart.
 *   - Size: about 100 bytes per event; the trainer traces a window of steps,
 *     not a whole multi-day run.
 *   - Events are formatted into one fixed buffer allocated at open: no
 *     allocation per event. The buffer goes to the file when it is nearly
 *     full and whenever the outermost begin/end span ends (once a step), so
 *     a crash loses at most the step in flight.
 *   - begin/end nest up to BT_TRACE_MAX_DEPTH deep on tid 0; deeper spans are
 *     counted and dropped, an end without a begin is ignored: misuse never
 *     crashes a training run. Names and categories are copied (at most 63
 *     bytes), so callers may pass temporary strings.
 *   - Thread-safe: a mutex guards the buffer, so bt_trace_span may be called
 *     from a communication thread. begin/end belong to one thread.
 *   - A NULL handle is accepted everywhere as a no-op: when tracing is off
 *     the trainer passes NULL and pays one branch per call.
 *   - I/O errors latch: later events are dropped and close returns BT_ERR.
 */
#ifndef BATON_TRACE_H
#define BATON_TRACE_H

#define BT_TRACE_MAX_DEPTH 32
#define BT_TRACE_NAME_MAX 63
#define BT_TRACE_BUF_BYTES (256 * 1024)

typedef struct bt_trace bt_trace;

/* Creates zPath (parent directories too) and writes the header and the
 * process/thread name metadata. *ppT is NULL on error. */
int bt_trace_open(bt_trace **ppT, const char *zPath, int rank);
/* Opens a span on tid 0 at bt_time_now(). */
void bt_trace_begin(bt_trace *pT, const char *zName, const char *zCat);
/* Closes the innermost open span and emits it. */
void bt_trace_end(bt_trace *pT);
/* Emits a span measured elsewhere: [tStart, tEnd] in bt_time_now() seconds,
 * on thread lane `tid` (>= 0). tEnd < tStart is clamped to dur 0. */
void bt_trace_span(bt_trace *pT, const char *zName, const char *zCat, int tid,
                   double tStart, double tEnd);
/* Labels a tid in the viewer ("compute", "comm bucket"). */
void bt_trace_thread_name(bt_trace *pT, int tid, const char *zName);
/* Writes buffered events to the file (no fsync). */
int bt_trace_flush(bt_trace *pT);
/* Ends still-open spans at now, writes the closing bracket, fsyncs, closes,
 * frees. NULL is a no-op. BT_ERR if any write since open failed. */
int bt_trace_close(bt_trace *pT);
/* Events dropped so far (too deep nesting, unmatched end, I/O failure). */
long bt_trace_dropped(const bt_trace *pT);

#endif /* BATON_TRACE_H */
