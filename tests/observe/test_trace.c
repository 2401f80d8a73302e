/*
 * test_trace.c: a trace with nested spans, a second lane of spans measured
 * elsewhere, misuse (too deep, unmatched end), spans left open at close and
 * many events (buffer flushes) is parsed back with cJSON; every child span
 * must lie inside its parent on the same tid, and the document must be
 * complete. A NULL handle must be a no-op.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "tests/check.h"
#include "trainer/observe/trace.h"

static void busy(double s) {
  double t = bt_time_now();
  while (bt_time_now() - t < s) {
  }
}

int main(void) {
  char zDir[] = "/tmp/bt_trace_XXXXXX";
  CHECK(mkdtemp(zDir) != NULL, "mkdtemp");
  char zPath[256];
  snprintf(zPath, sizeof zPath, "%s/trace/rank3.json", zDir);

  /* NULL handle: every call is a no-op. */
  bt_trace_begin(NULL, "x", "y");
  bt_trace_end(NULL);
  bt_trace_span(NULL, "x", "y", 1, 0, 1);
  CHECK(bt_trace_close(NULL) == BT_OK, "NULL close");

  bt_trace *t = NULL;
  CHECK(bt_trace_open(&t, zPath, 3) == BT_OK && t, "open: %s", bt_err_msg());
  if (!t) return CHECK_DONE();
  bt_trace_thread_name(t, 1, "comm");
  const int nStep = 400; /* ~400 * 5 events: several buffer flushes */
  for (int s = 0; s < nStep; s++) {
    bt_trace_begin(t, "step", "train");
    bt_trace_begin(t, "forward", "compute");
    busy(1e-5);
    bt_trace_end(t);
    double t0 = bt_time_now();
    bt_trace_begin(t, "backward \"quoted\"", "compute");
    busy(1e-5);
    bt_trace_end(t);
    bt_trace_span(t, "allreduce bucket 0", "comm", 1, t0, bt_time_now());
    bt_trace_end(t);
  }
  CHECK(bt_trace_dropped(t) == 0, "nothing dropped yet");
  bt_trace_end(t); /* unmatched: dropped, no crash */
  CHECK(bt_trace_dropped(t) == 1, "unmatched end counted");
  for (int i = 0; i < BT_TRACE_MAX_DEPTH + 5; i++) bt_trace_begin(t, "deep", "d");
  for (int i = 0; i < 5 + 2; i++) bt_trace_end(t); /* 5 overflow + 2 real */
  CHECK(bt_trace_dropped(t) == 6, "overflow counted (%ld)", bt_trace_dropped(t));
  /* 30 spans still open: close ends them. */
  CHECK(bt_trace_close(t) == BT_OK, "close: %s", bt_err_msg());

  size_t n = 0;
  char *z = bt_file_read_all(zPath, &n);
  CHECK(z != NULL, "read back");
  cJSON *doc = z ? cJSON_Parse(z) : NULL;
  CHECK(doc != NULL, "valid JSON");
  if (doc) {
    cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "traceEvents");
    CHECK(cJSON_IsArray(ev), "traceEvents array");
    cJSON *unit = cJSON_GetObjectItemCaseSensitive(doc, "displayTimeUnit");
    CHECK(cJSON_IsString(unit) && !strcmp(unit->valuestring, "ms"), "unit ms");
    int nX = 0, nMeta = 0, nComm = 0, nBad = 0, nDeep = 0;
    double stepTs = -1, stepEnd = -1;
    cJSON *e;
    /* Children are emitted before their parent (at their end); check each
     * compute span against the step span that follows it. */
    double childTs[2] = {0}, childEnd[2] = {0};
    int nChild = 0;
    cJSON_ArrayForEach(e, ev) {
      const char *ph = cJSON_GetObjectItemCaseSensitive(e, "ph")->valuestring;
      int pid = cJSON_GetObjectItemCaseSensitive(e, "pid")->valueint;
      int tid = cJSON_GetObjectItemCaseSensitive(e, "tid")->valueint;
      CHECK(pid == 3, "pid is the rank");
      if (!strcmp(ph, "M")) {
        nMeta++;
        continue;
      }
      nX++;
      const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
      double ts = cJSON_GetObjectItemCaseSensitive(e, "ts")->valuedouble;
      double dur = cJSON_GetObjectItemCaseSensitive(e, "dur")->valuedouble;
      if (dur < 0) nBad++;
      if (tid == 1) {
        nComm++;
        continue;
      }
      if (!strcmp(name, "deep")) {
        nDeep++;
        continue;
      }
      if (!strcmp(name, "step")) {
        stepTs = ts;
        stepEnd = ts + dur;
        for (int i = 0; i < nChild; i++)
          if (childTs[i] < stepTs || childEnd[i] > stepEnd + 1e-3) nBad++;
        if (nChild != 2) nBad++;
        nChild = 0;
      } else if (nChild < 2) {
        childTs[nChild] = ts;
        childEnd[nChild] = ts + dur;
        nChild++;
      } else {
        nBad++;
      }
    }
    CHECK(nMeta == 3, "metadata events %d", nMeta);
    CHECK(nComm == nStep, "comm spans %d", nComm);
    CHECK(nDeep == 32, "deep spans recorded %d (2 ended + 30 at close)", nDeep);
    CHECK(nX == 3 * nStep + nStep + 32, "span count %d", nX);
    CHECK(nBad == 0, "nesting/duration violations %d", nBad);
    cJSON_Delete(doc);
  }
  CHECK(z && strstr(z, "backward \\\"quoted\\\"") != NULL, "name escaped");
  free(z);

  /* Reopening (a resumed run) keeps the previous trace as .prev.json. */
  CHECK(bt_trace_open(&t, zPath, 3) == BT_OK, "reopen");
  bt_trace_close(t);
  char zPrev[300];
  snprintf(zPrev, sizeof zPrev, "%s/trace/rank3.prev.json", zDir);
  size_t nPrev = 0, nNew = 0;
  char *zP = bt_file_read_all(zPrev, &nPrev);
  char *zN = bt_file_read_all(zPath, &nNew);
  CHECK(zP && nPrev == n, "previous trace kept whole (%zu of %zu bytes)", nPrev, n);
  CHECK(zN && nNew < n, "new trace starts empty (%zu bytes)", nNew);
  free(zP);
  free(zN);

  /* Unwritable path: an error, no handle. */
  CHECK(bt_trace_open(&t, "/proc/nope/trace.json", 0) == BT_ERR && !t,
        "bad path: %s", bt_err_msg());
  char zCmd[128];
  snprintf(zCmd, sizeof zCmd, "rm -rf '%s'", zDir);
  CHECK(system(zCmd) == 0, "cleanup");
  return CHECK_DONE();
}
