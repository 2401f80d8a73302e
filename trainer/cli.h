/*
 * cli.h: entry points of the subcommands, each implemented by its module.
 * Each parses its own arguments (argv[0] is the subcommand name), prints
 * its own --help, and returns the process exit code.
 */
#ifndef BATON_CLI_H
#define BATON_CLI_H

int bt_prepare_main(int argc, char **argv); /* data/prepare.c */
int bt_inspect_main(int argc, char **argv); /* checkpoints/inspect.c */
int bt_export_main(int argc, char **argv);  /* trainer/export.c */
int bt_infer_main(int argc, char **argv);   /* trainer/infer.c */

#endif
