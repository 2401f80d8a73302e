/*
 * util.h: errors, logging, timing, files and random numbers shared by every
 * baton module.
 *
 * Errors come in two tiers (docs/design.md):
 *   - Expected failures (bad file, bad key, I/O error, dead rank) are returned
 *     as BT_ERR from the function that met them, after it recorded a message
 *     with bt_err_set(). The message is per thread (the async checkpoint writer
 *     has its own), and names the file, key, index or rank involved. Callers
 *     add context with bt_err_prefix() and finally print it with
 *     bt_log_error("%s", bt_err_msg()).
 *   - Broken invariants are BT_ASSERT(), which prints file:line, rank and host
 *     and aborts. No module calls exit(); only main() decides the exit code.
 *
 * Logging: bt_log_info() prints on rank 0 only ("rank 0 talks");
 * bt_log_error() and bt_log_warn() print on every rank, prefixed with
 * "[rank R@host]" so the culprit of a 64-rank failure is visible.
 */
#ifndef BATON_UTIL_H
#define BATON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BT_OK 0
#define BT_ERR (-1)

#define BATON_VERSION "0.1.0"

/* Process exit codes, one table for every subcommand (docs/operations.md).
 * Only main() turns them into an exit; modules return them. */
#define BT_EXIT_OK 0
#define BT_EXIT_ERROR 1
#define BT_EXIT_USAGE 2     /* bad command line or config: do not retry */
#define BT_EXIT_WATCHDOG 3  /* a collective stopped making progress */
#define BT_EXIT_PREEMPTED 4 /* checkpointed on SIGTERM/SIGUSR1: rerun */
#define BT_EXIT_NAN 5       /* NaN/Inf with train.nan_policy = stop */

#if defined(__GNUC__)
#define BT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BT_PRINTF(a, b)
#endif

/* ---- errors ----------------------------------------------------------- */

/* Records the current thread's error message (printf style); returns BT_ERR
 * so that `return bt_err_set(...)` reads naturally. */
int bt_err_set(const char *zFmt, ...) BT_PRINTF(1, 2);
/* Prepends context ("loading checkpoint run/ckpt_100: ") to the message. */
int bt_err_prefix(const char *zFmt, ...) BT_PRINTF(1, 2);
/* The current thread's last message; "" if none. */
const char *bt_err_msg(void);
void bt_err_clear(void);

/* Invariant check: prints the expression, file:line, rank and host, aborts. */
#define BT_ASSERT(cond)                                                        \
  do {                                                                         \
    if (!(cond)) bt_assert_fail(#cond, __FILE__, __LINE__);                    \
  } while (0)
void bt_assert_fail(const char *zExpr, const char *zFile, int line)
    __attribute__((noreturn));

/* ---- logging ---------------------------------------------------------- */

/* Set once after the communicator knows the rank. */
void bt_log_set_rank(int rank, int world);
int bt_log_rank(void);
const char *bt_log_host(void);
/* 0 = only errors, 1 = normal (default), 2 = verbose (bt_log_debug shown). */
void bt_log_set_level(int level);

int bt_log_level(void);
/* A live status line (the progress bar) that log lines must not glue onto
 * registers a hook: xHook(0, pArg) runs before a log line is printed (take
 * the status line off the terminal), xHook(1, pArg) after it (draw it again
 * below the message). NULL removes it. base cannot include the progress
 * module (it sits above), hence a hook. The hook runs under the log lock,
 * from whichever thread logs, and must not log. */
typedef void (*bt_log_hook)(int bAfter, void *pArg);
void bt_log_set_hook(bt_log_hook xHook, void *pArg);

void bt_log_info(const char *zFmt, ...) BT_PRINTF(1, 2);  /* rank 0 only */
void bt_log_debug(const char *zFmt, ...) BT_PRINTF(1, 2); /* rank 0, level 2 */
void bt_log_warn(const char *zFmt, ...) BT_PRINTF(1, 2);  /* every rank */
void bt_log_error(const char *zFmt, ...) BT_PRINTF(1, 2); /* every rank */

/* ---- time ------------------------------------------------------------- */

double bt_time_now(void); /* monotonic seconds */

/* ---- memory ----------------------------------------------------------- */

/* malloc that reports (and returns NULL) instead of crashing on failure. */
void *bt_malloc(size_t nByte, const char *zWhat);
void *bt_calloc(size_t n, size_t nByte, const char *zWhat);
/* 64-byte aligned allocation (free with free()). */
void *bt_malloc_aligned(size_t nByte, const char *zWhat);

/* ---- files ------------------------------------------------------------ */

/* Reads a whole file; *pnByte gets its size. The buffer is NUL-terminated
 * (one extra byte) so text files can be used as strings. NULL on error. */
char *bt_file_read_all(const char *zPath, size_t *pnByte);
/* Writes zPath atomically: zPath.tmp.<pid>, fsync, rename, fsync dir. */
int bt_file_write_atomic(const char *zPath, const void *pData, size_t nByte);
/* write() all bytes, retrying on EINTR/short writes; errors name zPath. */
int bt_file_write_full(int fd, const void *pData, size_t nByte,
                       const char *zPath);
int bt_fsync_dir(const char *zDir);
/* mkdir -p */
int bt_mkdir_p(const char *zPath);
int bt_path_exists(const char *zPath);
/* A cheap identity of a regular file's contents: "<size>:<xxh64 hex>" of
 * its size and its first and last 64 KiB (what a swapped or rewritten
 * dataset changes; the middle of an append-only file is not read). zOut
 * gets "" and BT_OK is returned when zPath is not a regular file. BT_ERR
 * (naming the file and errno) on a read error. */
int bt_file_fingerprint(const char *zPath, char *zOut, size_t nOut);

/* ---- hashing ---------------------------------------------------------- */

uint64_t bt_hash64(const void *pData, size_t nByte, uint64_t seed);

/* ---- counter-based random numbers -------------------------------------
 * Stateless: each value is a pure function of (key, counter), so nothing
 * depends on which rank or thread drew it or in what order. Keys are made by
 * bt_rng_key(seed, purpose, a, b). */
uint64_t bt_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b);
uint64_t bt_rng_u64(uint64_t key, uint64_t counter);
double bt_rng_uniform(uint64_t key, uint64_t counter);        /* [0,1) */
double bt_rng_normal(uint64_t key, uint64_t counter);         /* N(0,1) */

/* ---- fault injection ---------------------------------------------------
 * BATON_FAULT="point:N[,point:N...]" makes bt_fault_hit("point") return 1 on
 * its Nth call (1-based) on every rank, or only on rank R with
 * "point:N@R". Used by the crash tests; compiled into the product so that
 * crash behaviour is tested, not hoped for. */
int bt_fault_hit(const char *zPoint);

/* ---- small string helpers --------------------------------------------- */

/* snprintf that asserts no truncation for internal buffers. */
void bt_snprintf(char *zBuf, size_t nBuf, const char *zFmt, ...)
    BT_PRINTF(3, 4);
/* Human-readable bytes: "12.3 MiB". Returns zBuf. */
const char *bt_fmt_bytes(double nByte, char *zBuf, size_t nBuf);

#endif /* BATON_UTIL_H */
