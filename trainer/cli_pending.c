/* cli_pending.c: subcommands whose module has not landed yet report so
 * clearly instead of failing to link. Removed as each module lands. */
#include "cli.h"
#include <stdio.h>
int bt_prepare_main(int argc, char **argv) {
  (void)argc; (void)argv;
  fprintf(stderr, "baton prepare: not available in this build yet\n");
  return 1;
}
