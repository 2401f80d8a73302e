/*
 * report.c: `baton report` (see report.h for what it draws and how it reads
 * metrics.jsonl).
 *
 * Invariants:
 *   1. A run's rows are its final values: one row per step, the last line
 *      of that step in the file, in step order (run_finish()).
 *   2. Nothing is written but the PNG, and that atomically: gnuplot draws
 *      into OUT.tmp.<pid>, which is renamed over OUT only when gnuplot
 *      exited 0 and left a non-empty file. A failed report leaves no file
 *      and an older report untouched.
 *   3. gnuplot runs without a shell (fork + execv), so no path or run name
 *      is ever interpreted by one; every string put into the gnuplot script
 *      is single-quoted with its quotes doubled (gp_quote()).
 */
#include "report/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/util.h"

#define REPORT_MAX_RUNS 16

/* The final values of one step (NaN: not logged). */
typedef struct rep_row {
  long step;
  long order; /* line number: a later line of the same step wins */
  double loss, val, rate, stepMs;
  double compute, comm, data, optim, ckpt; /* ms */
} rep_row;

typedef struct rep_run {
  const char *zDir;
  char zName[256];
  char zPath[1200]; /* RUN/metrics.jsonl */
  rep_row *aRow;
  int nRow, nAlloc;
  long aRestart[64]; /* steps resumed from (a dashed line each) */
  int nRestart;
  int bSamples; /* perf/samples_per_s rather than perf/tokens_per_s */
} rep_run;

/* Colours of runs 0, 1, ... (colour-blind safe, Okabe-Ito). */
static const char *azColour[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                 "#E69F00", "#56B4E9", "#000000", "#F0E442"};
#define N_COLOUR ((int)(sizeof azColour / sizeof azColour[0]))

static void report_usage(FILE *f) {
  fprintf(f,
          "usage: baton report [-o FILE.png] [--size WxH] RUN_DIR...\n"
          "\n"
          "Draws one PNG of the runs' metrics.jsonl, every run overlaid in "
          "its own colour:\n"
          "loss and validation loss (restarts marked), throughput, step "
          "time, and the\n"
          "mean step-time breakdown (compute, communication wait, data "
          "wait, optimizer,\n"
          "checkpoint). Needs gnuplot (Debian: gnuplot-nox; or set "
          "BATON_GNUPLOT).\n"
          "\n"
          "options:\n"
          "  -o, --output FILE   the PNG (default: RUN_DIR/report.png of the "
          "first run)\n"
          "  --size WxH          pixels (default 1600x1000)\n"
          "  -h, --help          this help\n");
}

/* ---- reading metrics.jsonl ------------------------------------------- */

static double json_num(const cJSON *pObj, const char *zKey) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(pObj, zKey);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN; /* null: non-finite */
}

static int row_add(rep_run *r, const rep_row *pRow) {
  if (r->nRow == r->nAlloc) {
    int n = r->nAlloc ? 2 * r->nAlloc : 256;
    rep_row *a = realloc(r->aRow, (size_t)n * sizeof *a);
    if (!a) return bt_err_set("%s: out of memory at %d rows", r->zPath, n);
    r->aRow = a;
    r->nAlloc = n;
  }
  r->aRow[r->nRow++] = *pRow;
  return BT_OK;
}

static void restart_add(rep_run *r, long step) {
  if (r->nRestart > 0 && r->aRestart[r->nRestart - 1] == step) return;
  if (r->nRestart < (int)(sizeof r->aRestart / sizeof r->aRestart[0]))
    r->aRestart[r->nRestart++] = step;
}

static int row_cmp(const void *a, const void *b) {
  const rep_row *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* Invariant 1: sorts by (step, line) and keeps the last row of each step. */
static void run_finish(rep_run *r) {
  qsort(r->aRow, (size_t)r->nRow, sizeof *r->aRow, row_cmp);
  int n = 0;
  for (int i = 0; i < r->nRow; i++) {
    if (n > 0 && r->aRow[n - 1].step == r->aRow[i].step) n--;
    r->aRow[n++] = r->aRow[i];
  }
  r->nRow = n;
}

/* One line of the file (NUL-terminated, no newline); line is 1-based. */
static int run_line(rep_run *r, const char *zLine, size_t nLine, long line,
                    long *pPrev, long *pFirstBad) {
  /* A NUL inside the line (a crash can leave zeros) is torn too. */
  cJSON *o = memchr(zLine, 0, nLine) ? NULL : cJSON_Parse(zLine);
  const cJSON *pStep = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
  if (!cJSON_IsNumber(pStep)) {
    /* Torn by a crash (metrics.h): the next start began a fresh line. */
    bt_log_warn("%s:%ld: skipping a line that is not a metrics record "
                "(torn by a crash?)",
                r->zPath, line);
    if (!*pFirstBad) *pFirstBad = line;
    cJSON_Delete(o);
    return BT_OK;
  }
  rep_row w = {.step = (long)pStep->valuedouble, .order = line};
  w.loss = json_num(o, "train/loss");
  w.val = json_num(o, "val/loss");
  w.rate = json_num(o, "perf/tokens_per_s");
  if (isnan(w.rate)) {
    w.rate = json_num(o, "perf/samples_per_s");
    if (!isnan(w.rate)) r->bSamples = 1;
  }
  w.stepMs = json_num(o, "time/step_ms");
  w.compute = json_num(o, "time/compute_ms");
  w.comm = json_num(o, "time/comm_exposed_ms");
  w.data = json_num(o, "time/data_ms");
  w.optim = json_num(o, "time/optim_ms");
  w.ckpt = json_num(o, "time/ckpt_ms");
  double start = json_num(o, "run/start_step");
  cJSON_Delete(o);
  if (start > 0)
    restart_add(r, (long)start);
  else if (start == 0 && *pPrev >= 0)
    restart_add(r, 0); /* started afresh over an older run (--resume never) */
  else if (isnan(start) && *pPrev >= 0 && w.step <= *pPrev)
    restart_add(r, w.step - 1); /* older files: no marker, the step went back */
  *pPrev = w.step;
  return row_add(r, &w);
}

static int run_read(rep_run *r) {
  struct stat st;
  if (stat(r->zDir, &st) != 0)
    return bt_err_set("run directory '%s': %s", r->zDir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return bt_err_set("run directory '%s' is not a directory", r->zDir);
  bt_snprintf(r->zPath, sizeof r->zPath, "%s/metrics.jsonl", r->zDir);
  size_t n = 0;
  char *z = bt_file_read_all(r->zPath, &n);
  if (!z) return bt_err_prefix("run directory '%s': ", r->zDir);
  long line = 0, prev = -1, firstBad = 0;
  int rc = BT_OK;
  for (char *p = z; rc == BT_OK && p < z + n;) {
    char *e = memchr(p, '\n', (size_t)(z + n - p));
    size_t len = (size_t)((e ? e : z + n) - p);
    if (e) *e = 0;
    line++;
    if (len > 0) rc = run_line(r, p, len, line, &prev, &firstBad);
    p = e ? e + 1 : z + n;
  }
  free(z);
  if (rc != BT_OK) return rc;
  if (r->nRow == 0) {
    if (firstBad)
      return bt_err_set("%s:%ld: no metrics record in the file (the first "
                        "bad line is %ld)",
                        r->zPath, firstBad, firstBad);
    return bt_err_set("%s: empty: the run logged no step", r->zPath);
  }
  run_finish(r);
  return BT_OK;
}

/* Legend name: the directory's last component, without trailing '/'; the
 * characters that would need escaping in gnuplot become '_'. */
static void run_name(rep_run *r, const char *zDir) {
  char z[1024];
  bt_snprintf(z, sizeof z, "%.1000s", zDir);
  size_t n = strlen(z);
  while (n > 1 && z[n - 1] == '/') z[--n] = 0;
  const char *zBase = strrchr(z, '/');
  zBase = zBase && zBase[1] ? zBase + 1 : z;
  snprintf(r->zName, sizeof r->zName, "%s", zBase);
  for (char *c = r->zName; *c; c++)
    if (*c == '\'' || *c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
      *c = '_';
}

/* ---- drawing ------------------------------------------------------------ */

/* A gnuplot single-quoted string: '' stands for one quote. */
static void gp_quote(FILE *f, const char *z) {
  fputc('\'', f);
  for (; *z; z++) {
    if (*z == '\'') fputc('\'', f);
    fputc(*z, f);
  }
  fputc('\'', f);
}

static void gp_num(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, " %.9g", v);
  else fputs(" ?", f); /* `set datafile missing '?'` */
}

/* The mean of a breakdown column over the steps that logged it. */
static double run_mean(const rep_run *r, size_t off) {
  double s = 0;
  long n = 0;
  for (int i = 0; i < r->nRow; i++) {
    double v = *(const double *)((const char *)&r->aRow[i] + off);
    if (isfinite(v)) {
      s += v;
      n++;
    }
  }
  return n ? s / (double)n : 0;
}

static void gp_data(FILE *f, const rep_run *aRun, int nRun) {
  for (int k = 0; k < nRun; k++) {
    const rep_run *r = &aRun[k];
    fprintf(f, "$R%d << EOD\n", k); /* step loss rate step_ms */
    for (int i = 0; i < r->nRow; i++) {
      fprintf(f, "%ld", r->aRow[i].step);
      gp_num(f, r->aRow[i].loss);
      gp_num(f, r->aRow[i].rate);
      gp_num(f, r->aRow[i].stepMs);
      fputc('\n', f);
    }
    fprintf(f, "EOD\n$V%d << EOD\n", k); /* step val (validated steps) */
    int nVal = 0;
    for (int i = 0; i < r->nRow; i++)
      if (isfinite(r->aRow[i].val)) {
        fprintf(f, "%ld %.9g\n", r->aRow[i].step, r->aRow[i].val);
        nVal++;
      }
    if (!nVal) fputs("0 ?\n", f); /* an empty block is an error in gnuplot */
    fputs("EOD\n", f);
  }
  fputs("$B << EOD\n", f); /* run compute comm data optim ckpt (mean ms) */
  for (int k = 0; k < nRun; k++) {
    const rep_run *r = &aRun[k];
    fprintf(f, "\"%s\"", r->zName);
    gp_num(f, run_mean(r, offsetof(rep_row, compute)));
    gp_num(f, run_mean(r, offsetof(rep_row, comm)));
    gp_num(f, run_mean(r, offsetof(rep_row, data)));
    gp_num(f, run_mean(r, offsetof(rep_row, optim)));
    gp_num(f, run_mean(r, offsetof(rep_row, ckpt)));
    fputc('\n', f);
  }
  fputs("EOD\n", f);
}

/* One line plot per run of column `col` of $R<k>. */
static void gp_plot_runs(FILE *f, const rep_run *aRun, int nRun, int col) {
  fputs("plot ", f);
  for (int k = 0; k < nRun; k++) {
    fprintf(f, "%s$R%d using 1:%d with lines lw 2 lc rgb '%s' title ",
            k ? ", " : "", k, col, azColour[k % N_COLOUR]);
    gp_quote(f, aRun[k].zName);
  }
  fputc('\n', f);
}

static void gp_script(FILE *f, const rep_run *aRun, int nRun,
                      const char *zTmp, int w, int h) {
  fprintf(f, "set terminal pngcairo size %d,%d font 'sans,11' noenhanced\n",
          w, h);
  fputs("set output ", f);
  gp_quote(f, zTmp);
  fputs("\nset datafile missing '?'\nset grid\nset key top right "
        "opaque box\nset style textbox opaque noborder\n",
        f);
  gp_data(f, aRun, nRun);
  fputs("set multiplot layout 2,2 title 'baton report: ", f);
  for (int k = 0; k < nRun; k++) {
    for (const char *c = aRun[k].zName; *c; c++) {
      if (*c == '\'') fputc('\'', f);
      fputc(*c, f);
    }
    if (k + 1 < nRun) fputs(", ", f);
  }
  fputs("' font 'sans,14'\n", f);

  /* 1. Loss and validation loss, restarts as dashed lines. */
  int nRestart = 0;
  for (int k = 0; k < nRun; k++)
    for (int i = 0; i < aRun[k].nRestart; i++) {
      long s = aRun[k].aRestart[i];
      const char *c = azColour[k % N_COLOUR];
      fprintf(f,
              "set arrow from %ld, graph 0 to %ld, graph 1 nohead dt 2 lw 1.5 "
              "lc rgb '%s'\n"
              "set label 'resume %ld' at %ld, graph %.2f left offset 0.4,0 "
              "tc rgb '%s' boxed front\n",
              s, s, c, s, s, 0.06 + 0.06 * (nRestart % 4), c);
      nRestart++;
    }
  fputs("set title 'loss (lines: training, points: validation)'\n"
        "set xlabel 'step'\nset ylabel 'loss'\nplot ",
        f);
  for (int k = 0; k < nRun; k++) {
    const char *c = azColour[k % N_COLOUR];
    fprintf(f, "%s$R%d using 1:2 with lines lw 2 lc rgb '%s' title ",
            k ? ", " : "", k, c);
    gp_quote(f, aRun[k].zName);
    fprintf(f, ", $V%d using 1:2 with linespoints pt 7 ps 1.3 dt 3 lc rgb '%s' "
               "title ",
            k, c);
    char zVal[300];
    snprintf(zVal, sizeof zVal, "%s val", aRun[k].zName);
    gp_quote(f, zVal);
  }
  if (nRestart)
    fputs(", NaN with lines dt 2 lc rgb 'gray40' title 'restart (resumed "
          "from step)'",
          f);
  fputs("\nunset arrow\nunset label\n", f);

  /* 2. Throughput. */
  int bSamples = 0, bTokens = 0;
  for (int k = 0; k < nRun; k++) {
    if (aRun[k].bSamples) bSamples = 1;
    else bTokens = 1;
  }
  const char *zUnit = bSamples && bTokens ? "items/s"
                      : bSamples          ? "samples/s"
                                          : "tokens/s";
  fprintf(f, "set title 'throughput (%s, all ranks)'\nset ylabel '%s'\n",
          zUnit, zUnit);
  gp_plot_runs(f, aRun, nRun, 3);

  /* 3. Step time; log scale so checkpoint spikes do not flatten the rest. */
  fputs("set title 'step time (ms, log scale)'\nset ylabel 'ms'\n"
        "set logscale y\n",
        f);
  gp_plot_runs(f, aRun, nRun, 4);
  fputs("unset logscale y\n", f);

  /* 4. Mean breakdown per run, stacked. */
  fputs("set title 'mean step-time breakdown per run'\nset xlabel ''\n"
        "set ylabel 'ms per step'\nset style data histograms\n"
        "set style histogram rowstacked\nset style fill solid 0.85 border -1\n"
        "set boxwidth 0.6\nset yrange [0:*]\nset key outside right top\n"
        "plot $B using 2:xtic(1) lc rgb '#0072B2' title 'compute', "
        "'' using 3 lc rgb '#D55E00' title 'comm wait', "
        "'' using 4 lc rgb '#E69F00' title 'data wait', "
        "'' using 5 lc rgb '#009E73' title 'optimizer', "
        "'' using 6 lc rgb '#CC79A7' title 'checkpoint'\n"
        "unset multiplot\n",
        f);
}

/* gnuplot's path: $BATON_GNUPLOT, else the first in $PATH. */
static int gnuplot_find(char *zOut, size_t n) {
  const char *zEnv = getenv("BATON_GNUPLOT");
  if (zEnv && *zEnv) {
    if (access(zEnv, X_OK) != 0)
      return bt_err_set("BATON_GNUPLOT='%s' is not an executable: %s", zEnv,
                        strerror(errno));
    snprintf(zOut, n, "%s", zEnv);
    return BT_OK;
  }
  const char *zPath = getenv("PATH");
  for (const char *p = zPath ? zPath : ""; *p;) {
    const char *e = strchr(p, ':');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len > 0 && len < n - 10) {
      snprintf(zOut, n, "%.*s/gnuplot", (int)len, p);
      if (access(zOut, X_OK) == 0) return BT_OK;
    }
    p += len + (e ? 1 : 0);
  }
  return bt_err_set("gnuplot not found in PATH: install Debian's gnuplot-nox "
                    "(launch/install-deps.sh) or set BATON_GNUPLOT");
}

/* Invariants 2 and 3: draws into zOut.tmp.<pid>, renames on success. */
static int report_draw(const rep_run *aRun, int nRun, const char *zOut, int w,
                       int h) {
  char zGp[1024], zTmp[1200];
  if (gnuplot_find(zGp, sizeof zGp) != BT_OK) return BT_ERR;
  bt_snprintf(zTmp, sizeof zTmp, "%.1000s.tmp.%d", zOut, (int)getpid());
  int aFd[2];
  if (pipe(aFd) != 0)
    return bt_err_set("report: pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(aFd[0]);
    close(aFd[1]);
    return bt_err_set("report: fork: %s", strerror(errno));
  }
  if (pid == 0) {
    dup2(aFd[0], 0);
    close(aFd[0]);
    close(aFd[1]);
    execl(zGp, "gnuplot", (char *)NULL);
    _exit(127);
  }
  close(aFd[0]);
  /* gnuplot may die mid-script: its exit status says so, not a SIGPIPE. */
  void (*xOld)(int) = signal(SIGPIPE, SIG_IGN);
  FILE *f = fdopen(aFd[1], "w");
  if (f) {
    gp_script(f, aRun, nRun, zTmp, w, h);
    fclose(f);
  } else {
    close(aFd[1]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  signal(SIGPIPE, xOld);
  struct stat st;
  if (!f || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      stat(zTmp, &st) != 0 || st.st_size == 0) {
    unlink(zTmp);
    return bt_err_set("gnuplot (%s) failed drawing '%s' (exit status %d)",
                      zGp, zOut,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  if (rename(zTmp, zOut) != 0) {
    int e = errno;
    unlink(zTmp);
    return bt_err_set("cannot write '%s': %s", zOut, strerror(e));
  }
  return BT_OK;
}

/* ---- the command -------------------------------------------------------- */

int bt_report_main(int argc, char **argv) {
  static const struct option aOpt[] = {{"output", required_argument, 0, 'o'},
                                       {"size", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "report", argc, argv, "ho:", aOpt, report_usage);
  const char *azDir[REPORT_MAX_RUNS];
  int nDir = 0, w = 1600, h = 1000;
  const char *zOut = NULL;
  int ch;
  while ((ch = bt_cli_next(&c)) != -1) {
    switch (ch) {
    case 'o': zOut = c.zArg; break;
    case 's': {
      char cX = 0, cEnd = 0;
      if (sscanf(c.zArg, "%d%c%d%c", &w, &cX, &h, &cEnd) != 3 || cX != 'x' ||
          w < 320 || h < 240 || w > 10000 || h > 10000)
        return bt_cli_fail(&c, "--size '%s': expected WxH, 320x240 to "
                               "10000x10000 pixels",
                           c.zArg);
      break;
    }
    case 'h': report_usage(stdout); return BT_EXIT_OK;
    case BT_CLI_ARG:
      if (nDir == REPORT_MAX_RUNS)
        return bt_cli_fail(&c, "at most %d run directories", REPORT_MAX_RUNS);
      azDir[nDir++] = c.zArg;
      break;
    default: return BT_EXIT_USAGE;
    }
  }
  if (nDir == 0) return bt_cli_fail(&c, "expected at least one RUN_DIR");
  char zDefault[1200];
  if (!zOut) {
    bt_snprintf(zDefault, sizeof zDefault, "%.1000s/report.png", azDir[0]);
    zOut = zDefault;
  }
  rep_run aRun[REPORT_MAX_RUNS];
  memset(aRun, 0, sizeof aRun);
  int rc = BT_OK;
  for (int k = 0; k < nDir && rc == BT_OK; k++) {
    aRun[k].zDir = azDir[k];
    run_name(&aRun[k], azDir[k]);
    rc = run_read(&aRun[k]);
  }
  /* Two runs with one name (a/run, b/run): the legend needs the paths. */
  for (int k = 0; k < nDir && rc == BT_OK; k++)
    for (int j = 0; j < k; j++)
      if (!strcmp(aRun[j].zName, aRun[k].zName)) {
        for (int i = 0; i < nDir; i++) {
          snprintf(aRun[i].zName, sizeof aRun[i].zName, "%s", azDir[i]);
          for (char *q = aRun[i].zName; *q; q++)
            if (*q == '\'' || *q == '"' || *q == '\\') *q = '_';
        }
        j = k = nDir;
      }
  if (rc == BT_OK) rc = report_draw(aRun, nDir, zOut, w, h);
  for (int k = 0; k < nDir; k++) free(aRun[k].aRow);
  if (rc != BT_OK) {
    bt_log_error("report: %s", bt_err_msg());
    return BT_EXIT_ERROR;
  }
  for (int k = 0; k < nDir; k++)
    bt_log_info("%s: %d steps, %d restart%s", aRun[k].zDir, aRun[k].nRow,
                aRun[k].nRestart, aRun[k].nRestart == 1 ? "" : "s");
  bt_log_info("wrote %s", zOut);
  return BT_EXIT_OK;
}
