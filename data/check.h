/*
 * check.h: one read of a dataset file before training starts, and
 * `baton inspect DATA.h5` (docs/data.md, "Checking a dataset").
 *
 * Without it a bad value (a token id past the vocabulary, a NaN feature, a
 * label out of range) stops a run at the step that happens to read it,
 * possibly hours in. The check reads every value the run will use once:
 * under `baton train` each rank reads 1/N of each split (bt_split of the
 * elements or rows), the ranks' findings are gathered through the
 * communicator, and every rank reaches the same verdict, naming the first
 * bad value in the file by its index. The check also supplies what neither
 * the config nor the file gives: the vocabulary (largest token id + 1) and
 * the number of classes (largest label + 1).
 *
 * Invariants:
 *   1. The check reads with the loader's memory types (int64 tokens,
 *      float32 features, int32 labels) and reports with its messages
 *      (h5_impl.h), so it finds exactly what the loader would find later,
 *      in the same words.
 *   2. Structural problems (a missing dataset, float tokens, x and y of
 *      different lengths) are reported by bt_loader_open() alone; the check
 *      skips what it cannot scan and says so in the inspect report.
 *   3. bt_data_part is plain data (no pointers): the trainer gathers one
 *      per rank, and bt_data_check_merge() is a pure function of the
 *      gathered array, so every rank computes the same result.
 */
#ifndef BATON_DATA_CHECK_H
#define BATON_DATA_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "data/loader.h"

/* One split as one rank saw it. */
typedef struct bt_data_scan {
  int bScanned;     /* the split's datasets were read */
  int64_t nItem;    /* tokens, or rows, in the split (the whole file) */
  int64_t nRead;    /* tokens, or rows, this rank read */
  int64_t nByte;    /* bytes this rank read (elements x size in the file) */
  int64_t vMin, vMax; /* token ids or labels seen; vMax < vMin: none */
  int64_t iBad;     /* first bad token (element index) or row; -1 none */
  int64_t bad;      /* the bad token id or label */
  int64_t iBadCol;  /* features: column of a non-finite x; -1 a label */
  double badX;      /* the non-finite value */
  char zNote[160];  /* why the split was not scanned, for inspect */
} bt_data_scan;

/* What one rank found in both splits. */
typedef struct bt_data_part {
  int rc;               /* BT_OK, or BT_ERR with zErr (e.g. a read error) */
  char zErr[1024];
  int bScan;            /* values were read (HDF5 file, check on) */
  int64_t attrLimit;    /* vocab_size / num_classes attribute; -1 absent */
  int64_t limit;        /* what values were checked against; 0: nothing */
  int64_t D;            /* features: row width */
  double seconds;       /* this rank's scan time */
  bt_data_scan aSplit[2]; /* train, val */
} bt_data_part;

/* Reads this rank's share (pCfg->rank of pCfg->world) of both splits of
 * pCfg->zPath; T > 0 limits tokens to the complete windows the loader
 * serves. Never fails: a failure is recorded in pPart->rc and zErr, so
 * that it reaches every rank through the gather. */
void bt_data_check_part(const bt_loader_config *pCfg, bt_data_part *pPart);

/* The verdict over all ranks' parts: BT_ERR with the message of the
 * lowest rank's failure, else of the first bad value in file order (train
 * before val). On success fills pCfg->vocab (tokens) or pCfg->nClass
 * (features) when the config and the file leave it open, from the largest
 * value seen (and says so in the log). */
int bt_data_check_merge(const bt_data_part *aPart, int nPart,
                        bt_loader_config *pCfg);

/* All-gather of nByte bytes per rank (the trainer's communicator). */
typedef int (*bt_data_gather_fn)(void *pCtx, const void *pSend, void *pRecv,
                                 size_t nByte);

/* The start-up check of `baton train` (data.check): part, gather, merge,
 * and one log line with what was read and how fast. Does nothing for
 * synthetic data or with bScan 0. With xGather every rank returns the same
 * result; without it (world 1, tests) the rank's own part decides. */
int bt_data_check_run(bt_loader_config *pCfg, int bScan,
                      bt_data_gather_fn xGather, void *pCtx);

/* `baton inspect DATA.h5`: layout, sizes, attributes, and a scan of every
 * value. Returns the exit code: 0 no problem found, 1 a problem, 2 usage.
 * argv[0] is "inspect". */
int bt_data_inspect_main(int argc, char **argv);
/* 1 if `baton inspect` was given a regular file (a dataset; checkpoints
 * are directories), so the CLI dispatches to bt_data_inspect_main. */
int bt_data_inspect_wants(int argc, char **argv);

#endif /* BATON_DATA_CHECK_H */
