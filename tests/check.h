/*
 * check.h: the tiny assertion harness every C test uses.
 *
 * CHECK(cond, fmt, ...) records a failure with file:line and a message but
 * keeps going, so one run shows every broken case. CHECK_DONE() prints
 * "N passed, N failed" and returns the process exit code (0 only if
 * nothing failed and at least one check ran: a test that checks nothing
 * fails).
 */
#ifndef BATON_TEST_CHECK_H
#define BATON_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int g_check_pass __attribute__((unused)) = 0;
static int g_check_fail __attribute__((unused)) = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      g_check_pass++;                                                          \
    } else {                                                                   \
      g_check_fail++;                                                          \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

/* Relative error |a-b| / max(|b|, floor); NaN never passes. */
static inline double check_relerr(double a, double b, double floor_) {
  double d = fabs(a - b);
  double m = fabs(b) > floor_ ? fabs(b) : floor_;
  double r = d / m;
  return (r != r || a != a || b != b) ? INFINITY : r;
}

#define CHECK_DONE()                                                           \
  (printf("%d passed, %d failed\n", g_check_pass, g_check_fail),              \
   (g_check_fail == 0 && g_check_pass > 0) ? 0 : 1)

#endif
