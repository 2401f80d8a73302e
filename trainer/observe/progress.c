/*
 * progress.c: see progress.h.
 *
 * The line is built from segments, each with a priority; the terminal form
 * drops segments by priority until the rest fits, then gives the remaining
 * width to the bar. Everything is formatted into fixed stack buffers.
 *
 * The live line's state (g_live) is the one global: what was last drawn,
 * so that a log line can take it off the terminal and draw it again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "trainer/observe/progress.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/util.h"

#define SEG_MAX 12
#define SEG_BYTES 160

typedef struct seg {
  char z[SEG_BYTES];
  size_t n;
  int prio; /* 0 = always kept; larger = dropped earlier on a terminal */
} seg;

static void seg_add(seg *aSeg, int *pnSeg, int prio, const char *zFmt, ...)
    BT_PRINTF(4, 5);
static void seg_add(seg *aSeg, int *pnSeg, int prio, const char *zFmt, ...) {
  if (*pnSeg >= SEG_MAX) return;
  seg *s = &aSeg[*pnSeg];
  va_list ap;
  va_start(ap, zFmt);
  int n = vsnprintf(s->z, sizeof s->z, zFmt, ap);
  va_end(ap);
  if (n < 0) return;
  s->n = (size_t)n < sizeof s->z ? (size_t)n : sizeof s->z - 1;
  s->prio = prio;
  (*pnSeg)++;
}

void bt_progress_init(bt_progress *p) {
  memset(p, 0, sizeof *p);
  p->loss = p->val_loss = p->lr = p->grad_norm = NAN;
  p->throughput = NAN;
  p->mfu = NAN;
  p->step_s = p->data_s = p->compute_s = p->comm_s = p->optim_s = p->ckpt_s = NAN;
  p->eta_s = NAN;
  p->elapsed_s = NAN;
  p->pad_frac = p->val_cer = p->val_wer = NAN;
}

const char *bt_progress_fmt_eta(double seconds, char *zBuf, size_t n) {
  if (!(seconds >= 0) || seconds > 1e9) {
    snprintf(zBuf, n, "?");
    return zBuf;
  }
  long long s = (long long)(seconds + 0.5);
  snprintf(zBuf, n, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return zBuf;
}

/* 3 significant digits with k/M/G suffix: 812, 45.2k, 1.23M. */
static void fmt_rate(char *z, size_t n, double v) {
  static const char *aSuf[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (v >= 999.5 && i < 4) {
    v /= 1000.0;
    i++;
  }
  if (v >= 99.95)
    snprintf(z, n, "%.0f%s", v, aSuf[i]);
  else if (v >= 9.995)
    snprintf(z, n, "%.1f%s", v, aSuf[i]);
  else
    snprintf(z, n, "%.2f%s", v, aSuf[i]);
}

/* A breakdown entry: ms with one decimal below 10 ms, or whole percent. */
static void fmt_part(char *z, size_t n, double part, double step, int bPct) {
  if (!(part >= 0)) {
    snprintf(z, n, "?");
  } else if (bPct) {
    snprintf(z, n, "%.0f%%", step > 0 ? 100.0 * part / step : 0.0);
  } else {
    double ms = part * 1e3;
    snprintf(z, n, ms < 10 ? "%.1f" : "%.0f", ms);
  }
}

static int build_segments(seg *aSeg, const bt_progress *p, int bTty) {
  int nSeg = 0;
  char z1[32];
  if (p->total_steps > 0 && !bTty)
    seg_add(aSeg, &nSeg, 0, "step %lld/%lld (%.1f%%)", (long long)p->step,
            (long long)p->total_steps,
            100.0 * (double)p->step / (double)p->total_steps);
  else if (p->total_steps > 0)
    seg_add(aSeg, &nSeg, 0, "%lld/%lld", (long long)p->step,
            (long long)p->total_steps);
  else
    seg_add(aSeg, &nSeg, 0, "step %lld", (long long)p->step);
  /* Priorities: larger is dropped earlier on a terminal; see progress.h
   * for the order (PRIO_BAR: the bar goes after ETA, before elapsed). */
  if (isfinite(p->loss)) seg_add(aSeg, &nSeg, 1, "loss %.4f", p->loss);
  if (isfinite(p->val_loss)) seg_add(aSeg, &nSeg, 2, "val %.4f", p->val_loss);
  if (isfinite(p->val_cer) && isfinite(p->val_wer))
    seg_add(aSeg, &nSeg, 2, "CER %.1f%% WER %.1f%%", 100.0 * p->val_cer,
            100.0 * p->val_wer);
  if (p->zStraggler) seg_add(aSeg, &nSeg, 2, "%s", p->zStraggler);
  if (isfinite(p->pad_frac))
    seg_add(aSeg, &nSeg, 5, "pad %.1f%%", 100.0 * p->pad_frac);
  if (isfinite(p->lr)) seg_add(aSeg, &nSeg, 3, "lr %.2e", p->lr);
  if (isfinite(p->grad_norm))
    seg_add(aSeg, &nSeg, 8, "gnorm %.3f", p->grad_norm);
  if (p->throughput > 0 && isfinite(p->throughput)) {
    fmt_rate(z1, sizeof z1, p->throughput);
    seg_add(aSeg, &nSeg, 6, "%s %s", z1, p->zUnit ? p->zUnit : "tok/s");
  }
  if (isfinite(p->mfu) && p->mfu >= 0)
    seg_add(aSeg, &nSeg, 7, "MFU %.1f%%", 100.0 * p->mfu);
  if (isfinite(p->step_s) && p->step_s >= 0) {
    char a[5][24];
    const double aPart[5] = {p->data_s, p->compute_s, p->comm_s, p->optim_s,
                             p->ckpt_s};
    for (int i = 0; i < 5; i++)
      fmt_part(a[i], sizeof a[i], aPart[i], p->step_s, p->breakdown_pct);
    double ms = p->step_s * 1e3;
    seg_add(aSeg, &nSeg, 9,
            ms < 10 ? "%.1f ms/step (data %s, compute %s, comm %s, opt %s, "
                      "ckpt %s)"
                    : "%.0f ms/step (data %s, compute %s, comm %s, opt %s, "
                      "ckpt %s)",
            ms, a[0], a[1], a[2], a[3], a[4]);
  }
  if (isfinite(p->elapsed_s) && p->elapsed_s >= 0)
    seg_add(aSeg, &nSeg, 4, "elapsed %s",
            bt_progress_fmt_eta(p->elapsed_s, z1, sizeof z1));
  if (isfinite(p->eta_s) && p->eta_s >= 0)
    seg_add(aSeg, &nSeg, 5, "ETA %s", bt_progress_fmt_eta(p->eta_s, z1, sizeof z1));
  return nSeg;
}

/* Appends z[0..len) to zBuf at *pAt, keeping room for the NUL. */
static void put(char *zBuf, size_t n, size_t *pAt, const char *z, size_t len) {
  if (*pAt + 1 >= n) return;
  size_t room = n - 1 - *pAt;
  if (len > room) len = room;
  memcpy(zBuf + *pAt, z, len);
  *pAt += len;
  zBuf[*pAt] = 0;
}

/* Width of the kept segments joined by separators of nSep bytes. */
static size_t kept_width(const seg *aSeg, int nSeg, const int *aKeep,
                         size_t nSep) {
  size_t need = 0;
  int nKept = 0;
  for (int i = 0; i < nSeg; i++)
    if (aKeep[i]) need += aSeg[i].n + (nKept++ ? nSep : 0);
  return need;
}

/* The bar "[...]" plus " 100.0%" before the fields. */
#define PCT_WIDTH ((size_t)7) /* " 100.0%" */
#define BAR_MIN ((size_t)10)

/* Segments with a priority above this go before the bar does. */
#define PRIO_BAR 4

/* Drops the least important segments (largest prio, never prio 0) until the
 * line fits width; the bar's percentage and then the bar go when the next
 * segment to drop has priority <= PRIO_BAR. Sets aKeep, *pbBar, *pbPct. */
static void fit_segments(const seg *aSeg, int nSeg, size_t nSep, size_t width,
                         int *aKeep, int *pbBar, int *pbPct) {
  for (int i = 0; i < nSeg; i++) aKeep[i] = 1;
  for (;;) {
    size_t need = kept_width(aSeg, nSeg, aKeep, nSep);
    size_t barNeed =
        *pbBar ? BAR_MIN + 2 + (*pbPct ? PCT_WIDTH : 0) + nSep : 0;
    if (need + barNeed <= width) break;
    int worst = -1;
    for (int i = 0; i < nSeg; i++)
      if (aKeep[i] && aSeg[i].prio > 0 &&
          (worst < 0 || aSeg[i].prio > aSeg[worst].prio))
        worst = i;
    int bBarFirst = worst < 0 || aSeg[worst].prio <= PRIO_BAR;
    if (bBarFirst && *pbBar && *pbPct) {
      *pbPct = 0; /* the counter says the same */
    } else if (bBarFirst && *pbBar) {
      *pbBar = 0;
    } else if (worst >= 0) {
      aKeep[worst] = 0;
    } else {
      break; /* the counter alone is wider than the terminal: truncate */
    }
  }
}

/* "[####....] 42.0%" and a separator, the bar nBar cells wide (at most 50). */
static void put_bar(char *zBuf, size_t n, size_t *pAt, const bt_progress *p,
                    size_t nBar, int bPct, const char *zSep, size_t nSep) {
  if (nBar > 50) nBar = 50; /* a wider bar carries no more information */
  double frac = (double)p->step / (double)p->total_steps;
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  size_t nFill = (size_t)(frac * (double)nBar + 1e-9);
  char zBar[64];
  zBar[0] = '[';
  for (size_t i = 0; i < nBar; i++) zBar[1 + i] = i < nFill ? '#' : '.';
  zBar[nBar + 1] = ']';
  put(zBuf, n, pAt, zBar, nBar + 2);
  if (bPct) {
    char zPct[16];
    int k = snprintf(zPct, sizeof zPct, " %5.1f%%", 100.0 * frac);
    put(zBuf, n, pAt, zPct, (size_t)k);
  }
  put(zBuf, n, pAt, zSep, nSep);
}

/* The kept segments (all of them when aKeep is NULL), separated. */
static void put_segments(char *zBuf, size_t n, size_t *pAt, const seg *aSeg,
                         int nSeg, const int *aKeep, const char *zSep,
                         size_t nSep) {
  int nKept = 0;
  for (int i = 0; i < nSeg; i++) {
    if (aKeep && !aKeep[i]) continue;
    if (nKept++) put(zBuf, n, pAt, zSep, nSep);
    put(zBuf, n, pAt, aSeg[i].z, aSeg[i].n);
  }
}

size_t bt_progress_format(char *zBuf, size_t n, const bt_progress *p,
                          int tty_width) {
  if (n == 0) return 0;
  zBuf[0] = 0;
  seg aSeg[SEG_MAX];
  int bTty = tty_width > 0;
  int nSeg = build_segments(aSeg, p, bTty);
  size_t at = 0;
  const char *zSep = bTty ? "  " : " | ";
  size_t nSep = strlen(zSep);

  if (!bTty) {
    put_segments(zBuf, n, &at, aSeg, nSeg, NULL, zSep, nSep);
    return at;
  }

  size_t width = (size_t)tty_width - 1; /* never write the last column */
  int aKeep[SEG_MAX];
  int bBar = p->total_steps > 0, bPct = 1;
  fit_segments(aSeg, nSeg, nSep, width, aKeep, &bBar, &bPct);
  if (bBar) {
    size_t need = kept_width(aSeg, nSeg, aKeep, nSep);
    put_bar(zBuf, n, &at, p,
            width - need - 2 - (bPct ? PCT_WIDTH : 0) - nSep, bPct, zSep, nSep);
  }
  put_segments(zBuf, n, &at, aSeg, nSeg, aKeep, zSep, nSep);
  if (at > width) { /* only when the counter alone is too wide */
    at = width;
    zBuf[at] = 0;
  }
  return at;
}

int bt_progress_tty_width(int fd) {
  if (!isatty(fd)) return 0;
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/* The live line (progress.h, terminal handling). */
static struct {
  pthread_mutex_t mu;
  FILE *f;
  bt_progress p;  /* the last line's fields, to draw it again */
  int givenWidth; /* used when f is not a terminal (BATON_PROGRESS=bar) */
  int bHave;      /* p holds a line: the hook is registered */
  int bShown;     /* that line is on the terminal, the cursor at its end */
  size_t nCols;   /* columns it took */
} g_live = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Takes the shown line off the terminal: back to its first row (a
 * terminal that reflowed it after a narrowing resize wrapped it onto
 * (nCols - 1) / width + 1 rows, the cursor on the last) and erase to the
 * end of the screen. */
static void live_erase(int width) {
  if (!g_live.bShown) return;
  size_t up = width > 0 && g_live.nCols > 0 ? (g_live.nCols - 1) / (size_t)width
                                            : 0;
  if (up > 0) fprintf(g_live.f, "\r\x1b[%zuA\x1b[J", up);
  else fputs("\r\x1b[J", g_live.f);
  g_live.bShown = 0;
}

static int live_width(void) {
  int w = bt_progress_tty_width(fileno(g_live.f));
  return w > 0 ? w : g_live.givenWidth;
}

/* Erases the old line and draws g_live.p at the terminal's width now. */
static void live_draw(void) {
  int width = live_width();
  char zLine[1024];
  size_t n = bt_progress_format(zLine, sizeof zLine, &g_live.p, width);
  live_erase(width);
  fputs(zLine, g_live.f);
  fflush(g_live.f);
  g_live.nCols = n;
  g_live.bShown = 1;
}

/* bt_log_hook: off the terminal before a log line, back after it. */
static void live_hook(int bAfter, void *pArg) {
  (void)pArg;
  pthread_mutex_lock(&g_live.mu);
  if (g_live.bHave) {
    if (!bAfter) {
      live_erase(live_width());
      fflush(g_live.f);
    } else {
      live_draw();
    }
  }
  pthread_mutex_unlock(&g_live.mu);
}

void bt_progress_print(FILE *f, const bt_progress *p, int tty_width) {
  if (bt_log_rank() != 0) return;
  if (tty_width <= 0) {
    char zLine[1024];
    bt_progress_format(zLine, sizeof zLine, p, 0);
    fprintf(f, "%s\n", zLine);
    fflush(f);
    return;
  }
  pthread_mutex_lock(&g_live.mu);
  int bNew = !g_live.bHave;
  g_live.f = f;
  g_live.p = *p;
  g_live.givenWidth = tty_width;
  g_live.bHave = 1;
  live_draw();
  pthread_mutex_unlock(&g_live.mu);
  /* Outside g_live.mu: the hook is called under the log lock and then
   * takes g_live.mu, so the lock order is always log -> live. */
  if (bNew) bt_log_set_hook(live_hook, NULL);
}

void bt_progress_end_line(FILE *f, int tty_width) {
  (void)tty_width;
  if (bt_log_rank() != 0) return;
  bt_log_set_hook(NULL, NULL);
  pthread_mutex_lock(&g_live.mu);
  if (g_live.bShown && g_live.f == f) {
    fputc('\n', f);
    fflush(f);
  }
  g_live.bShown = g_live.bHave = 0;
  pthread_mutex_unlock(&g_live.mu);
}
