/*
 * lock.c: see lock.h. The order inside bt_lock_acquire matters: the lock
 * is taken before the file is read or rewritten, so the holder line read
 * on refusal is the live holder's, and the one read on success belongs to
 * a process that no longer holds it (a dead job).
 */
#include "base/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

/* The file's first line (at most n-1 bytes, no newline) into z. */
static void lock_read_line(int fd, char *z, size_t n) {
  z[0] = '\0';
  if (n == 0) return;
  ssize_t got = pread(fd, z, n - 1, 0);
  if (got <= 0) {
    z[0] = '\0';
    return;
  }
  z[got] = '\0';
  z[strcspn(z, "\n")] = '\0';
}

int bt_lock_acquire(bt_lock *pLock, const char *zPath, char *zPrev,
                    size_t nPrev) {
  pLock->fd = -1;
  int fd = open(zPath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return bt_err_set("cannot open lock file '%s': %s (errno %d)", zPath,
                      strerror(errno), errno);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    char zHolder[256];
    lock_read_line(fd, zHolder, sizeof zHolder);
    close(fd);
    if (e == EACCES || e == EAGAIN)
      return bt_err_set("'%s' is held by another job (%s)", zPath,
                        zHolder[0] ? zHolder : "holder unknown");
    return bt_err_set("cannot lock '%s': %s (errno %d)", zPath, strerror(e),
                      e);
  }
  if (zPrev) lock_read_line(fd, zPrev, nPrev);
  char zLine[256];
  time_t now = time(NULL);
  struct tm tmv;
  char zTime[32];
  strftime(zTime, sizeof zTime, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
  int n = snprintf(zLine, sizeof zLine, "host %s pid %ld since %s\n",
                   bt_log_host(), (long)getpid(), zTime);
  if (ftruncate(fd, 0) != 0) {
    int e = errno;
    close(fd);
    return bt_err_set("cannot write lock file '%s': %s (errno %d)", zPath,
                      strerror(e), e);
  }
  if (bt_file_write_full(fd, zLine, (size_t)n, zPath) != BT_OK) {
    close(fd);
    return BT_ERR; /* the message names the file and errno */
  }
  pLock->fd = fd;
  return BT_OK;
}

/* A released lock leaves an empty file: the holder line is what the next
 * job reports as "a job that is no longer running", which is true only of
 * a holder that died still holding it. Truncated while still locked, so
 * no other job can have written its own line in between. */
void bt_lock_release(bt_lock *pLock) {
  if (pLock->fd >= 0) {
    if (ftruncate(pLock->fd, 0) != 0) {
      /* best effort: the next job then names us as a dead holder */
    }
    close(pLock->fd);
  }
  pLock->fd = -1;
}
