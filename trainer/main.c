/* main.c: the `baton` command line (placeholder until the CLI lands). */
#include <stdio.h>
#include "util.h"
int main(int argc, char **argv) {
  (void)argc; (void)argv;
  printf("baton %s\n", BATON_VERSION);
  return 0;
}
