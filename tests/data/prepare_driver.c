/* prepare_driver.c: `baton prepare` as a standalone program for the tests
 * and the benchmark (the baton CLI calls the same bt_prepare_main). */
#include "data/loader.h"
int main(int argc, char **argv) { return bt_prepare_main(argc, argv); }
