/*
 * util.c: see util.h. Everything here is small, thread-safe where it says so,
 * and free of global state other than the log identity and the fault table.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- errors ----------------------------------------------------------- */

#define BT_ERR_MAX 2048
static _Thread_local char g_zErr[BT_ERR_MAX];

int bt_err_set(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(g_zErr, sizeof g_zErr, zFmt, ap);
  va_end(ap);
  return BT_ERR;
}

int bt_err_prefix(const char *zFmt, ...) {
  char zOld[BT_ERR_MAX];
  va_list ap;
  memcpy(zOld, g_zErr, sizeof zOld);
  va_start(ap, zFmt);
  int n = vsnprintf(g_zErr, sizeof g_zErr, zFmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof g_zErr)
    memcpy(g_zErr + n, zOld, sizeof g_zErr - (size_t)n - 1);
  g_zErr[sizeof g_zErr - 1] = 0;
  return BT_ERR;
}

const char *bt_err_msg(void) { return g_zErr; }
void bt_err_clear(void) { g_zErr[0] = 0; }

/* ---- logging ---------------------------------------------------------- */

static int g_rank = 0;
static bt_log_hook g_xHook;
static void *g_pHookArg;
/* One log line at a time, with the status line's hook around it. */
static pthread_mutex_t g_logMutex = PTHREAD_MUTEX_INITIALIZER;
static int g_world = 1;
static int g_level = 1;
static char g_zHost[256];

static const char *host_name(void) {
  if (!g_zHost[0]) {
    if (gethostname(g_zHost, sizeof g_zHost - 1) != 0)
      snprintf(g_zHost, sizeof g_zHost, "unknown");
  }
  return g_zHost;
}

void bt_log_set_rank(int rank, int world) {
  g_rank = rank;
  g_world = world;
}
int bt_log_rank(void) { return g_rank; }
const char *bt_log_host(void) { return host_name(); }
void bt_log_set_level(int level) { g_level = level; }
int bt_log_level(void) { return g_level; }

void bt_log_set_hook(bt_log_hook xHook, void *pArg) {
  pthread_mutex_lock(&g_logMutex);
  g_xHook = xHook;
  g_pHookArg = pArg;
  pthread_mutex_unlock(&g_logMutex);
}

static void log_v(FILE *f, const char *zTag, const char *zFmt, va_list ap) {
  /* One fprintf per line so concurrent ranks do not interleave mid-line. */
  char zLine[8192];
  int n = 0;
  if (zTag) n = snprintf(zLine, sizeof zLine, "[rank %d@%s] %s: ", g_rank,
                         host_name(), zTag);
  vsnprintf(zLine + n, sizeof zLine - (size_t)n, zFmt, ap);
  pthread_mutex_lock(&g_logMutex);
  if (g_xHook) g_xHook(0, g_pHookArg);
  fprintf(f, "%s\n", zLine);
  fflush(f);
  if (g_xHook) g_xHook(1, g_pHookArg);
  pthread_mutex_unlock(&g_logMutex);
}

void bt_log_info(const char *zFmt, ...) {
  if (g_rank != 0 || g_level < 1) return;
  va_list ap;
  va_start(ap, zFmt);
  log_v(stdout, NULL, zFmt, ap);
  va_end(ap);
}

void bt_log_debug(const char *zFmt, ...) {
  if (g_rank != 0 || g_level < 2) return;
  va_list ap;
  va_start(ap, zFmt);
  log_v(stdout, NULL, zFmt, ap);
  va_end(ap);
}

void bt_log_warn(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  log_v(stderr, "warning", zFmt, ap);
  va_end(ap);
}

void bt_log_error(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  log_v(stderr, "error", zFmt, ap);
  va_end(ap);
}

void bt_assert_fail(const char *zExpr, const char *zFile, int line) {
  /* Off the progress bar first, unless the assertion fired while logging
   * (the lock is held: then the message may land on the bar). */
  if (pthread_mutex_trylock(&g_logMutex) == 0) {
    if (g_xHook) g_xHook(0, g_pHookArg);
    pthread_mutex_unlock(&g_logMutex);
  }
  fprintf(stderr, "[rank %d@%s] internal error: assertion '%s' failed at %s:%d\n",
          g_rank, host_name(), zExpr, zFile, line);
  fflush(stderr);
  abort();
}

/* ---- time ------------------------------------------------------------- */

double bt_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- memory ----------------------------------------------------------- */

void *bt_malloc(size_t nByte, const char *zWhat) {
  void *p = malloc(nByte ? nByte : 1);
  if (!p) bt_err_set("out of memory allocating %zu bytes for %s", nByte, zWhat);
  return p;
}

void *bt_calloc(size_t n, size_t nByte, const char *zWhat) {
  void *p = calloc(n ? n : 1, nByte ? nByte : 1);
  if (!p)
    bt_err_set("out of memory allocating %zu x %zu bytes for %s", n, nByte,
               zWhat);
  return p;
}

void *bt_malloc_aligned(size_t nByte, const char *zWhat) {
  void *p = NULL;
  size_t n = (nByte + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, n ? n : 64) != 0) {
    bt_err_set("out of memory allocating %zu bytes for %s", nByte, zWhat);
    return NULL;
  }
  return p;
}

/* ---- files ------------------------------------------------------------ */

char *bt_file_read_all(const char *zPath, size_t *pnByte) {
  int fd = open(zPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    bt_err_set("cannot open '%s': %s", zPath, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    bt_err_set("cannot stat '%s': %s", zPath, strerror(errno));
    close(fd);
    return NULL;
  }
  size_t n = (size_t)st.st_size;
  char *z = bt_malloc(n + 1, zPath);
  if (!z) {
    close(fd);
    return NULL;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, z + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      bt_err_set("cannot read '%s' at byte %zu: %s", zPath, got,
                 r < 0 ? strerror(errno) : "unexpected end of file");
      free(z);
      close(fd);
      return NULL;
    }
    got += (size_t)r;
  }
  close(fd);
  z[n] = 0;
  if (pnByte) *pnByte = n;
  return z;
}

int bt_file_write_full(int fd, const void *pData, size_t nByte,
                       const char *zPath) {
  const char *p = pData;
  size_t done = 0;
  while (done < nByte) {
    ssize_t w = write(fd, p + done, nByte - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0)
      return bt_err_set("write to '%s' failed at byte %zu: %s (errno %d)",
                        zPath, done, strerror(errno), errno);
    done += (size_t)w;
  }
  return BT_OK;
}

int bt_fsync_dir(const char *zDir) {
  int fd = open(zDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return bt_err_set("cannot open directory '%s' to fsync: %s", zDir,
                      strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL)
    return bt_err_set("fsync of directory '%s' failed: %s", zDir, strerror(e));
  return BT_OK;
}

int bt_file_write_atomic(const char *zPath, const void *pData, size_t nByte) {
  char zTmp[4096];
  snprintf(zTmp, sizeof zTmp, "%s.tmp.%d", zPath, (int)getpid());
  int fd = open(zTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return bt_err_set("cannot create '%s': %s (errno %d)", zTmp,
                      strerror(errno), errno);
  if (bt_file_write_full(fd, pData, nByte, zTmp) != BT_OK) {
    close(fd);
    unlink(zTmp);
    return BT_ERR;
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(zTmp);
    return bt_err_set("fsync of '%s' failed: %s (errno %d)", zTmp, strerror(e),
                      e);
  }
  close(fd);
  if (rename(zTmp, zPath) != 0) {
    int e = errno;
    unlink(zTmp);
    return bt_err_set("cannot rename '%s' to '%s': %s", zTmp, zPath,
                      strerror(e));
  }
  char zDir[4096];
  snprintf(zDir, sizeof zDir, "%s", zPath);
  return bt_fsync_dir(dirname(zDir));
}

int bt_mkdir_p(const char *zPath) {
  char z[4096];
  size_t n = strlen(zPath);
  if (n == 0 || n >= sizeof z) return bt_err_set("bad directory path '%s'", zPath);
  memcpy(z, zPath, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (z[i] == '/' || z[i] == 0) {
      char c = z[i];
      z[i] = 0;
      if (mkdir(z, 0755) != 0 && errno != EEXIST)
        return bt_err_set("cannot create directory '%s': %s", z,
                          strerror(errno));
      z[i] = c;
    }
  }
  return BT_OK;
}

int bt_path_exists(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0;
}

/* ---- hashing ---------------------------------------------------------- */

int bt_file_fingerprint(const char *zPath, char *zOut, size_t nOut) {
  enum { NEDGE = 64 * 1024 };
  zOut[0] = '\0';
  struct stat st;
  if (stat(zPath, &st) != 0 || !S_ISREG(st.st_mode)) return BT_OK;
  int fd = open(zPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return bt_err_set("cannot open '%s': %s (errno %d)", zPath,
                      strerror(errno), errno);
  unsigned char *aBuf = bt_malloc(2 * NEDGE + sizeof(int64_t), "fingerprint");
  if (!aBuf) {
    close(fd);
    return BT_ERR;
  }
  int64_t nSize = (int64_t)st.st_size;
  size_t nHead = nSize < NEDGE ? (size_t)nSize : NEDGE;
  int64_t nRest = nSize - (int64_t)nHead; /* the tail never overlaps */
  size_t nTail = nRest < NEDGE ? (size_t)nRest : NEDGE;
  int rc = BT_OK;
  if (pread(fd, aBuf, nHead, 0) != (ssize_t)nHead ||
      pread(fd, aBuf + nHead, nTail, nSize - (int64_t)nTail) != (ssize_t)nTail)
    rc = bt_err_set("cannot read '%s': %s (errno %d)", zPath,
                    strerror(errno), errno);
  close(fd);
  if (rc == BT_OK) {
    memcpy(aBuf + nHead + nTail, &nSize, sizeof nSize);
    uint64_t h = bt_hash64(aBuf, nHead + nTail + sizeof nSize, 0);
    snprintf(zOut, nOut, "%lld:%016llx", (long long)nSize,
             (unsigned long long)h);
  }
  free(aBuf);
  return rc;
}

uint64_t bt_hash64(const void *pData, size_t nByte, uint64_t seed) {
  return (uint64_t)XXH64(pData, nByte, (XXH64_hash_t)seed);
}

/* ---- random numbers ---------------------------------------------------
 * splitmix64's finaliser applied twice over (key, counter): a strong 64-bit
 * mixer, stateless, so value i of stream k is the same on any rank. */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t bt_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
  uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
  k = mix64(k ^ (purpose * 0xd1b54a32d192ed03ULL));
  k = mix64(k ^ (a + 0x8cb92ba72f3d8dd7ULL));
  k = mix64(k ^ (b * 0xaef17502108ef2d9ULL + 1));
  return k;
}

uint64_t bt_rng_u64(uint64_t key, uint64_t counter) {
  return mix64(key ^ mix64(counter + 0x9e3779b97f4a7c15ULL));
}

double bt_rng_uniform(uint64_t key, uint64_t counter) {
  return (double)(bt_rng_u64(key, counter) >> 11) * (1.0 / 9007199254740992.0);
}

double bt_rng_normal(uint64_t key, uint64_t counter) {
  /* Box-Muller on two independent draws derived from one counter. */
  double u1 = bt_rng_uniform(key, 2 * counter);
  double u2 = bt_rng_uniform(key, 2 * counter + 1);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- fault injection -------------------------------------------------- */

#define BT_FAULT_MAX 16
static struct {
  char zPoint[64];
  long nth;
  int rank; /* -1: any rank */
  long count;
} g_aFault[BT_FAULT_MAX];
static int g_nFault = -1;

static void fault_parse(void) {
  g_nFault = 0;
  const char *zEnv = getenv("BATON_FAULT");
  if (!zEnv) return;
  char z[1024];
  snprintf(z, sizeof z, "%s", zEnv);
  char *save = NULL;
  for (char *tok = strtok_r(z, ",", &save); tok && g_nFault < BT_FAULT_MAX;
       tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    if (!colon) continue;
    *colon = 0;
    snprintf(g_aFault[g_nFault].zPoint, sizeof g_aFault[0].zPoint, "%s", tok);
    g_aFault[g_nFault].nth = strtol(colon + 1, NULL, 10);
    char *at = strchr(colon + 1, '@');
    g_aFault[g_nFault].rank = at ? atoi(at + 1) : -1;
    g_aFault[g_nFault].count = 0;
    g_nFault++;
  }
}

int bt_fault_hit(const char *zPoint) {
  if (g_nFault < 0) fault_parse();
  for (int i = 0; i < g_nFault; i++) {
    if (strcmp(g_aFault[i].zPoint, zPoint) != 0) continue;
    if (g_aFault[i].rank >= 0 && g_aFault[i].rank != g_rank) continue;
    if (__atomic_add_fetch(&g_aFault[i].count, 1, __ATOMIC_SEQ_CST) ==
        g_aFault[i].nth)
      return 1;
  }
  return 0;
}

/* ---- strings ---------------------------------------------------------- */

void bt_snprintf(char *zBuf, size_t nBuf, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  int n = vsnprintf(zBuf, nBuf, zFmt, ap);
  va_end(ap);
  BT_ASSERT(n >= 0 && (size_t)n < nBuf);
}

const char *bt_fmt_bytes(double nByte, char *zBuf, size_t nBuf) {
  const char *azUnit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (nByte >= 1024.0 && u < 4) {
    nByte /= 1024.0;
    u++;
  }
  snprintf(zBuf, nBuf, u ? "%.1f %s" : "%.0f %s", nByte, azUnit[u]);
  return zBuf;
}
