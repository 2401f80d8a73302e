/*
 * fuzz_replay.c: plain main() driver for fuzz_safetensors.c, so the seed
 * corpus (and any crash file a fuzzing run found) is replayed on every
 * build, with or without clang/libFuzzer. Usage: fuzz_replay FILE|DIR...
 * Exit 0 if every input ran (rejections are fine; crashes are not).
 */
#include "base/util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData);

static int run_file(const char *zPath) {
  size_t n = 0;
  char *p = bt_file_read_all(zPath, &n);
  if (!p) {
    fprintf(stderr, "fuzz_replay: %s\n", bt_err_msg());
    return 1;
  }
  /* Exact-size copy so ASan sees reads past the end of the input. */
  uint8_t *q = malloc(n ? n : 1);
  if (!q) return 1;
  memcpy(q, p, n);
  free(p);
  LLVMFuzzerTestOneInput(q, n);
  free(q);
  return 0;
}

int main(int argc, char **argv) {
  int nRun = 0, nFail = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "fuzz_replay: cannot stat %s\n", argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      nFail += run_file(argv[i]);
      nRun++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char z[4096];
      snprintf(z, sizeof z, "%s/%s", argv[i], e->d_name);
      nFail += run_file(z);
      nRun++;
    }
    if (d) closedir(d);
  }
  printf("fuzz_replay: %d inputs, %d unreadable\n", nRun, nFail);
  return nRun > 0 && nFail == 0 ? 0 : 1;
}
