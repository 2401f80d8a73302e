/*
 * replay.c: replays a libFuzzer target's corpus without libFuzzer.
 *
 * Linked once with each target (tests/ckpt/fuzz/fuzz_ckpt.c,
 * tests/ckpt/fuzz/fuzz_meta.c, tests/data/fuzz/fuzz_data.c,
 * tests/export/fuzz_safetensors.c; see baton_add_fuzz_replay in
 * tests/baton_test.cmake), it runs LLVMFuzzerTestOneInput on every file of
 * the given files and directories: the seed corpus on every build (ctest
 * ckpt_fuzz_replay, ckpt_fuzz_meta_replay, data_fuzz_replay,
 * export_fuzz_replay), or a crash file a fuzzing run left behind.
 *
 *   usage: replay [--min-accepted N] [-v] FILE|DIR...
 *
 * Invariants:
 *   1. Each input lives in a heap block of exactly its size (malloc(n), no
 *      terminating NUL, no slack), so a read one byte past the end is a
 *      heap-buffer-overflow under ASan, as it is under libFuzzer. The
 *      replay tests carry the `unit` label and so also run in the ASan +
 *      UBSan build (Makefile, `make test`).
 *   2. Directories are walked in name order, recursively, skipping dot
 *      files, so a run is reproducible.
 *   3. Exit 0 only if at least one input ran, every file was readable and
 *      at least N inputs were accepted (fuzz.h's bt_fuzz_last_accepted).
 *      N is set in CMake to what the reader accepts of the seed corpus
 *      today: a reader that wrongly rejects valid inputs fails here, not
 *      just one that crashes. -v prints each input's verdict, for
 *      setting the floor after a corpus change.
 * A crash is the target's own abort (or ASan's report): not caught here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "tests/fuzz/fuzz.h"

static int g_nRun = 0;      /* inputs given to the target */
static int g_nAccepted = 0; /* of those, accepted by the reader */
static int g_nUnreadable = 0;
static int g_bVerbose = 0;

/* Reads zPath into *pp, a block of exactly its size *pn. Returns 0, or -1
 * after printing why. */
static int read_exact(const char *zPath, uint8_t **pp, size_t *pn) {
  FILE *f = fopen(zPath, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s: %s\n", zPath, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    fprintf(stderr, "replay: cannot stat %s: %s\n", zPath, strerror(errno));
    fclose(f);
    return -1;
  }
  size_t n = (size_t)st.st_size;
  /* malloc(0) is fine: glibc and ASan return a distinct block that no
   * byte may be read from, which is what an empty input is. */
  uint8_t *p = malloc(n);
  if (!p && n > 0) {
    fprintf(stderr, "replay: out of memory for %s (%zu bytes)\n", zPath, n);
    fclose(f);
    return -1;
  }
  /* fgetc must see EOF: the file did not grow after fstat. */
  if (fread(p, 1, n, f) != n || fgetc(f) != EOF) {
    fprintf(stderr, "replay: short or changing read of %s\n", zPath);
    free(p);
    fclose(f);
    return -1;
  }
  fclose(f);
  *pp = p;
  *pn = n;
  return 0;
}

static void run_file(const char *zPath) {
  uint8_t *p = NULL;
  size_t n = 0;
  if (read_exact(zPath, &p, &n) != 0) {
    g_nUnreadable++;
    return;
  }
  bt_fuzz_last_accepted = 0;
  LLVMFuzzerTestOneInput(p, n);
  free(p);
  g_nRun++;
  if (bt_fuzz_last_accepted) g_nAccepted++;
  if (g_bVerbose)
    printf("%s %s\n", bt_fuzz_last_accepted ? "accepted" : "rejected", zPath);
}

static int skip_dot(const struct dirent *e) { return e->d_name[0] != '.'; }

static void run_path(const char *zPath) {
  struct stat st;
  if (stat(zPath, &st) != 0) {
    fprintf(stderr, "replay: cannot stat %s: %s\n", zPath, strerror(errno));
    g_nUnreadable++;
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    run_file(zPath);
    return;
  }
  struct dirent **aEntry = NULL;
  int nEntry = scandir(zPath, &aEntry, skip_dot, alphasort);
  if (nEntry < 0) {
    fprintf(stderr, "replay: cannot list %s: %s\n", zPath, strerror(errno));
    g_nUnreadable++;
    return;
  }
  for (int i = 0; i < nEntry; i++) {
    char z[4096];
    snprintf(z, sizeof z, "%s/%s", zPath, aEntry[i]->d_name);
    run_path(z);
    free(aEntry[i]);
  }
  free(aEntry);
}

static int usage(void) {
  fprintf(stderr, "usage: replay [--min-accepted N] [-v] FILE|DIR...\n");
  return BT_EXIT_USAGE;
}

int main(int argc, char **argv) {
  long nMin = 0;
  int iArg = 1;
  for (; iArg < argc && argv[iArg][0] == '-'; iArg++) {
    if (strcmp(argv[iArg], "-v") == 0) {
      g_bVerbose = 1;
    } else if (strcmp(argv[iArg], "--min-accepted") == 0 && iArg + 1 < argc) {
      char *zEnd = NULL;
      nMin = strtol(argv[++iArg], &zEnd, 10);
      if (*argv[iArg] == '\0' || *zEnd != '\0' || nMin < 0) return usage();
    } else {
      return usage();
    }
  }
  if (iArg == argc) return usage();
  for (; iArg < argc; iArg++) run_path(argv[iArg]);

  printf("replayed %d inputs, %d accepted\n", g_nRun, g_nAccepted);
  int rc = BT_EXIT_OK;
  if (g_nUnreadable > 0) {
    fprintf(stderr, "FAIL: %d inputs could not be read\n", g_nUnreadable);
    rc = BT_EXIT_ERROR;
  }
  if (g_nRun == 0) {
    fprintf(stderr, "FAIL: no inputs found\n");
    rc = BT_EXIT_ERROR;
  }
  if (g_nAccepted < nMin) {
    fprintf(stderr,
            "FAIL: %d accepted, below the floor --min-accepted %ld: the reader "
            "now rejects valid inputs it used to accept (-v lists each verdict)\n",
            g_nAccepted, nMin);
    rc = BT_EXIT_ERROR;
  } else if (g_nAccepted > nMin && nMin > 0) {
    /* Not an error (a reader may learn to accept more), but a floor left
     * below the real count would miss a partial regression. */
    printf("note: %d accepted > floor %ld; raise --min-accepted to keep it tight\n",
           g_nAccepted, nMin);
  }
  return rc;
}
