/*
 * main.c: the `baton` command line. Each subcommand lives in its module
 * and returns the process exit code; only this file calls exit paths.
 */
#include "base/cli.h"
#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "comm/comm.h"
#include "data/audio_loader.h"
#include "data/check.h"
#include "data/loader.h"
#include "export/export.h"
#include "kernels/ops.h"
#include "report/report.h"
#include "trainer/config.h"
#include "trainer/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "baton %s: data-parallel training of neural networks\n"
          "\n"
          "usage: baton <command> [options]\n"
          "\n"
          "commands:\n"
          "  train CONFIG      train a model (under mpirun: one process per "
          "GPU/rank)\n"
          "  prepare ...       build an HDF5 dataset from text, arrays or audio\n"
          "  inspect CKPT      summarise and verify a checkpoint (or a "
          "dataset: DATA.h5)\n"
          "  export CKPT ...   export a trained model (safetensors, ONNX)\n"
          "  infer DIR ...     generate text, classify or transcribe WAV "
          "files (--wav)\n"
          "                    with an exported model\n"
          "  eval PATH ...     loss and perplexity/accuracy (CER/WER: speech) "
          "of a checkpoint\n"
          "                    or export on a dataset split (under mpirun: "
          "sharded)\n"
          "  report RUN...     draw a PNG of runs' metrics (loss, throughput, "
          "step time)\n"
          "  config [CONFIG]   print the resolved config (--markdown: the "
          "key reference)\n"
          "  version           print the version and build features\n"
          "\n"
          "`baton <command> --help` describes each command. Documentation: "
          "docs/guide.md\n",
          BATON_VERSION);
}

static int cmd_version(void) {
  printf("baton %s\n", BATON_VERSION);
  printf("backends: cpu%s\n", bt_backend_cuda_compiled() ? ", cuda" : "");
  printf("communicators: mpi%s\n", bt_backend_cuda_compiled() ? ", nccl" : "");
  return 0;
}

static void config_usage(FILE *f) {
  fprintf(f, "usage: baton config [CONFIG] [--set SECTION.KEY=VALUE]... "
             "[--markdown]\n\n"
             "Prints the fully resolved config (defaults, file, overrides), "
             "or with\n--markdown the reference of every key "
             "(docs/config.md).\n");
}

static int cmd_config(int argc, char **argv) {
  const char *zPath = NULL;
  const char **azSet = calloc((size_t)argc + 1, sizeof(char *));
  int nSet = 0, markdown = 0;
  if (!azSet) return BT_EXIT_ERROR;
  static const struct option aOpt[] = {{"markdown", no_argument, 0, 'm'},
                                       {"set", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  bt_cli cli;
  bt_cli_init(&cli, "config", argc, argv, "h", aOpt, config_usage);
  int code = -1; /* >= 0: parsing ended the command with this exit code */
  for (int ch; code < 0 && (ch = bt_cli_next(&cli)) != -1;) {
    switch (ch) {
    case 'm': markdown = 1; break;
    case 's': azSet[nSet++] = cli.zArg; break;
    case 'h': config_usage(stdout); code = BT_EXIT_OK; break;
    case BT_CLI_ARG:
      if (zPath)
        code = bt_cli_fail(&cli, "unexpected argument '%s'", cli.zArg);
      zPath = cli.zArg;
      break;
    default: code = BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (code >= 0) {
    free(azSet);
    return code;
  }
  if (markdown) {
    bt_config_write_markdown(stdout);
    free(azSet);
    return 0;
  }
  bt_config c;
  int rc = bt_config_load(&c, zPath, azSet, nSet);
  free(azSet);
  if (rc != BT_OK) {
    fprintf(stderr, "baton: %s\n", bt_err_msg());
    return BT_EXIT_USAGE;
  }
  char *z = bt_config_to_text(&c);
  if (!z) return BT_EXIT_ERROR;
  fputs(z, stdout);
  free(z);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return BT_EXIT_USAGE;
  }
  const char *zCmd = argv[1];
  if (!strcmp(zCmd, "-h") || !strcmp(zCmd, "--help") || !strcmp(zCmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(zCmd, "--version") || !strcmp(zCmd, "version")) {
    /* like every other command: a stray argument is a usage error */
    if (argc > 2) {
      fprintf(stderr, "baton version: unexpected argument '%s'\n", argv[2]);
      return BT_EXIT_USAGE;
    }
    return cmd_version();
  }
  if (!strcmp(zCmd, "config")) return cmd_config(argc - 1, argv + 1);
  if (!strcmp(zCmd, "prepare") && argc > 2 && !strcmp(argv[2], "audio"))
    return bt_prepare_audio_main(argc - 2, argv + 2); /* data/prepare_audio.c */
  if (!strcmp(zCmd, "prepare")) return bt_prepare_main(argc - 1, argv + 1);
  /* inspect: a regular file is a dataset, a directory a checkpoint */
  if (!strcmp(zCmd, "inspect"))
    return bt_data_inspect_wants(argc - 1, argv + 1)
               ? bt_data_inspect_main(argc - 1, argv + 1)
               : bt_inspect_main(argc - 1, argv + 1);
  if (!strcmp(zCmd, "export")) return bt_export_main(argc - 1, argv + 1);
  if (!strcmp(zCmd, "infer")) return bt_infer_main(argc - 1, argv + 1);
  if (!strcmp(zCmd, "report")) return bt_report_main(argc - 1, argv + 1);
  if (!strcmp(zCmd, "train") || !strcmp(zCmd, "eval")) {
    bt_comm *pComm = NULL;
    if (bt_comm_init(&pComm, &argc, &argv) != BT_OK) {
      bt_log_error("%s", bt_err_msg());
      return BT_EXIT_ERROR;
    }
    int rc = zCmd[0] == 't' ? bt_train_main(argc - 1, argv + 1, pComm)
                            : bt_eval_main(argc - 1, argv + 1, pComm);
    bt_comm_free(pComm);
    return rc;
  }
  fprintf(stderr, "baton: unknown command '%s'\n\n", zCmd);
  usage(stderr);
  return BT_EXIT_USAGE;
}
