/*
 * cli.c: see cli.h. getopt_long in RETURN_IN_ORDER mode ("-" first in the
 * short options) with ':' so a missing value is told apart from an unknown
 * option. Which text to name in a message depends on the element being
 * parsed: a long option ("--frob=1") is named as written, up to its '=';
 * a short one by its character, because inside a cluster ("-xo") optind
 * does not move until the cluster ends.
 */
#include "base/cli.h"

#include <stdarg.h>
#include <string.h>

void bt_cli_init(bt_cli *p, const char *zCmd, int argc, char **argv,
                 const char *zShort, const struct option *aOpt,
                 void (*xUsage)(FILE *)) {
  memset(p, 0, sizeof *p);
  p->zCmd = zCmd;
  p->xUsage = xUsage;
  p->argc = argc;
  p->argv = argv;
  p->aOpt = aOpt;
  bt_snprintf(p->zShort, sizeof p->zShort, "-:%s", zShort ? zShort : "");
  optind = 0; /* glibc: 0 re-initialises everything, not just the index */
  opterr = 0;
}

int bt_cli_fail(const bt_cli *p, const char *zFmt, ...) {
  char zMsg[1024];
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(zMsg, sizeof zMsg, zFmt, ap);
  va_end(ap);
  bt_err_set("%s", zMsg);
  if (p->bQuiet) return BT_EXIT_USAGE;
  fprintf(stderr, "baton %s: %s\n", p->zCmd, zMsg);
  if (p->xUsage) {
    fputc('\n', stderr);
    p->xUsage(stderr);
  }
  return BT_EXIT_USAGE;
}

int bt_cli_next(bt_cli *p) {
  p->zArg = NULL;
  if (p->iRest > 0) { /* the arguments after "--" */
    if (p->iRest >= p->argc) return -1;
    p->zArg = p->argv[p->iRest++];
    return BT_CLI_ARG;
  }
  /* The element getopt is about to read (optind is 0 before the first
   * call and then moves to 1). */
  int iElem = optind > 0 ? optind : 1;
  const char *zElem = iElem < p->argc ? p->argv[iElem] : "";
  int bLong = strncmp(zElem, "--", 2) == 0;
  int nName = bLong ? (int)strcspn(zElem, "=") : 0;
  int ch = getopt_long(p->argc, p->argv, p->zShort, p->aOpt, NULL);
  if (ch == -1) {
    /* getopt stops at "--" and leaves optind on the first argument after
     * it; those are positionals too. */
    if (optind < p->argc) {
      p->iRest = optind;
      return bt_cli_next(p);
    }
    return -1;
  }
  if (ch == 1) {
    p->zArg = optarg;
    return BT_CLI_ARG;
  }
  if (ch == ':') {
    if (bLong) bt_cli_fail(p, "option '%.*s' needs a value", nName, zElem);
    else bt_cli_fail(p, "option '-%c' needs a value", optopt);
    return BT_CLI_ERROR;
  }
  if (ch == '?') {
    if (bLong && optopt) /* a known flag given "=value" */
      bt_cli_fail(p, "option '%.*s' takes no value", nName, zElem);
    else if (bLong) bt_cli_fail(p, "unknown option '%.*s'", nName, zElem);
    else bt_cli_fail(p, "unknown option '-%c'", optopt);
    return BT_CLI_ERROR;
  }
  p->zArg = optarg;
  return ch;
}
