/*
 * op_cases.h: the case table shared by the op tests (tests/kernels/
 * test_ops.c on any backend, tests/gpu/test_gpu_ops.c CUDA vs CPU).
 *
 * A test is one table of cases. Each case names the ops of kernels/ops.def
 * it exercises (zOps, space separated) or a tag of the test file for a
 * check that is not about one op (memory, determinism, ...). The names the
 * -o filter accepts come from ops.def itself: an op ("layernorm_fwd"), an
 * op family (the op name up to its first '_': "layernorm", "attention")
 * or a tag. Invariants the helpers below keep:
 *   1. every word of every case is an op of ops.def or a tag of the file
 *      (a typo in the table fails the test);
 *   2. every op of ops.def has at least one case (a new op without a test
 *      case fails the test: ggml's rule, a new op arrives with its case);
 *   3. an unknown -o name is an error (exit 2) that lists the valid names;
 *   4. a run that selects no case fails, and every run reports
 *      "ran N of M cases [(-o NAME ...)]" before the check totals.
 * Include after tests/check.h (the checks of 1 and 2 are CHECKs).
 */
#ifndef BATON_TEST_OP_CASES_H
#define BATON_TEST_OP_CASES_H

#include <stdio.h>
#include <string.h>

#include "kernels/ops.h"

typedef struct TestCase {
  const char *zOps;   /* ops of kernels/ops.def, or a tag */
  const char *zLabel; /* what -l and the run print */
  void (*xRun)(const int *a);
  int a[6];           /* the shape, passed to xRun */
  int flags;          /* test-specific (CPU only, large shape) */
} TestCase;

/* The ops of kernels/ops.def, in list order. */
static const char *const opc_azOp[] = {
#define BT_OP_RET(ret, name, params, args) #name,
#include "kernels/ops.def"
};
#define OPC_N_OP ((int)(sizeof opc_azOp / sizeof opc_azOp[0]))

/* The run's filter: the -o names given (none = every case). */
typedef struct OpcFilter {
  const char *azName[64];
  int nName;
} OpcFilter;

/* Calls x(word, length, ctx) for each word of the space-separated zList;
 * stops and returns 1 at the first call that returns 1. */
static int opc_each_word(const char *zList,
                         int (*x)(const char *, size_t, const void *),
                         const void *ctx) {
  for (const char *p = zList; *p;) {
    while (*p == ' ') p++;
    size_t n = strcspn(p, " ");
    if (n && x(p, n, ctx)) return 1;
    p += n;
  }
  return 0;
}

/* 1 if the word (zWord, n) belongs to filter name zName: equal to it, or
 * an op of zName's family (zName has no '_' and the op starts "zName_"). */
static int opc_word_matches(const char *zWord, size_t n, const void *ctx) {
  const char *zName = ctx;
  size_t nName = strlen(zName);
  if (n == nName && strncmp(zWord, zName, n) == 0) return 1;
  return n > nName && strncmp(zWord, zName, nName) == 0 &&
         zWord[nName] == '_' && strchr(zName, '_') == NULL;
}

static int opc_word_is(const char *zWord, size_t n, const void *ctx) {
  const char *z = ctx;
  return strlen(z) == n && strncmp(zWord, z, n) == 0;
}

/* 1 if zName is an op, an op family or one of the nTag tags. */
static int opc_name_valid(const char *zName, const char *const *azTag,
                          int nTag) {
  for (int i = 0; i < OPC_N_OP; i++)
    if (opc_word_matches(opc_azOp[i], strlen(opc_azOp[i]), zName)) return 1;
  for (int i = 0; i < nTag; i++)
    if (strcmp(azTag[i], zName) == 0) return 1;
  return 0;
}

static void opc_print_names(FILE *f, const char *const *azTag, int nTag) {
  fprintf(f, "valid names: the ops of kernels/ops.def:");
  for (int i = 0; i < OPC_N_OP; i++) fprintf(f, " %s", opc_azOp[i]);
  fprintf(f, "\n  or an op family (the op name up to its first '_'), or a "
             "tag:");
  for (int i = 0; i < nTag; i++) fprintf(f, " %s", azTag[i]);
  fprintf(f, "\n");
}

/* Adds -o zName to the filter. 0, or 2 (the usage exit code) with the
 * valid names printed if zName is none of them. */
static int opc_filter_add(OpcFilter *f, const char *zName,
                          const char *const *azTag, int nTag,
                          const char *zProg) {
  if (!opc_name_valid(zName, azTag, nTag)) {
    fprintf(stderr, "%s: -o %s: no such op, op family or tag\n", zProg,
            zName);
    opc_print_names(stderr, azTag, nTag);
    return 2;
  }
  if (f->nName == (int)(sizeof f->azName / sizeof f->azName[0])) {
    fprintf(stderr, "%s: too many -o\n", zProg);
    return 2;
  }
  f->azName[f->nName++] = zName;
  return 0;
}

/* 1 if case c is selected by the filter. */
static int opc_selected(const OpcFilter *f, const TestCase *c) {
  if (f->nName == 0) return 1;
  for (int i = 0; i < f->nName; i++)
    if (opc_each_word(c->zOps, opc_word_matches, f->azName[i])) return 1;
  return 0;
}

static void opc_list(const TestCase *aCase, int nCase) {
  for (int i = 0; i < nCase; i++)
    printf("%-46s %s\n", aCase[i].zLabel, aCase[i].zOps);
}

typedef struct OpcTags {
  const char *const *azTag;
  int nTag;
} OpcTags;

static int opc_word_unknown(const char *zWord, size_t n, const void *ctx) {
  const OpcTags *t = ctx;
  for (int i = 0; i < OPC_N_OP; i++)
    if (opc_word_is(zWord, n, opc_azOp[i])) return 0;
  for (int i = 0; i < t->nTag; i++)
    if (opc_word_is(zWord, n, t->azTag[i])) return 0;
  fprintf(stderr, "  unknown word '%.*s'\n", (int)n, zWord);
  return 1;
}

/* Invariants 1 and 2 of the file comment. */
static void opc_check_table(const TestCase *aCase, int nCase,
                            const char *const *azTag, int nTag) {
  OpcTags t = {azTag, nTag};
  for (int i = 0; i < nCase; i++)
    CHECK(!opc_each_word(aCase[i].zOps, opc_word_unknown, &t),
          "case '%s' names something that is neither an op of "
          "kernels/ops.def nor a tag",
          aCase[i].zLabel);
  for (int k = 0; k < OPC_N_OP; k++) {
    int bCovered = 0;
    for (int i = 0; i < nCase && !bCovered; i++)
      bCovered = opc_each_word(aCase[i].zOps, opc_word_is, opc_azOp[k]);
    CHECK(bCovered,
          "op %s (kernels/ops.def) has no case in this test's table: a new "
          "op needs a test case",
          opc_azOp[k]);
  }
}

/* The last line of every run (invariant 4). */
static void opc_report(const OpcFilter *f, int nRan, int nCase) {
  printf("ran %d of %d cases", nRan, nCase);
  for (int i = 0; i < f->nName; i++)
    printf("%s%s", i ? " " : " (-o ", f->azName[i]);
  printf("%s\n", f->nName ? ")" : "");
  CHECK(nRan > 0, "no case matches the filter");
}

#endif /* BATON_TEST_OP_CASES_H */
