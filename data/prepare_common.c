/*
 * prepare_common.c: the crash-safe output file of `baton prepare`
 * (prepare_common.h states the protocol and its invariants).
 *
 * The temporary file's name lives in a static buffer because the signal
 * handler must reach it without locks or allocation: unlink(2), signal(2)
 * and raise(3) are async-signal-safe, reading a char array is too.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "data/prepare_common.h"

static char g_zTmp[4200]; /* the temporary file being written, or "" */

static void on_signal(int sig) {
  if (g_zTmp[0]) unlink(g_zTmp);
  signal(sig, SIG_DFL);
  raise(sig);
}

int bt_prep_tmp_begin(const char *zOut) {
  BT_ASSERT(!g_zTmp[0]); /* one output file at a time */
  snprintf(g_zTmp, sizeof g_zTmp, "%s.tmp.%d", zOut, (int)getpid());
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int fd = open(g_zTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    g_zTmp[0] = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return bt_err_set("cannot create the output '%s' (written as '%s.tmp.%d' "
                      "first): %s",
                      zOut, zOut, (int)getpid(), strerror(e));
  }
  close(fd);
  return BT_OK;
}

const char *bt_prep_tmp_path(void) { return g_zTmp; }

int bt_prep_tmp_end(const char *zOut, int ok) {
  int rc = ok && g_zTmp[0] ? BT_OK : BT_ERR;
  if (rc == BT_OK) {
    int fd = open(g_zTmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
      rc = bt_err_set("%s: fsync failed: %s", g_zTmp, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (rc == BT_OK && rename(g_zTmp, zOut) != 0)
    rc = bt_err_set("cannot rename '%s' to '%s': %s", g_zTmp, zOut,
                    strerror(errno));
  if (rc == BT_OK) {
    char zDir[4096];
    snprintf(zDir, sizeof zDir, "%s", zOut);
    rc = bt_fsync_dir(dirname(zDir));
  } else if (g_zTmp[0]) {
    unlink(g_zTmp);
  }
  g_zTmp[0] = 0;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return rc;
}
