/*
 * resume.c: collective helpers for resuming (ckpt.h).
 *
 * bt_ckpt_find_latest() reads and checksums every payload of the
 * candidate; done by all 64 ranks at once that is 64 full reads of the
 * newest checkpoint from the shared filesystem. bt_ckpt_find_latest_all()
 * lets rank 0 do it and broadcasts the answer, so every rank resumes from
 * the same directory, whatever each would have seen on its own.
 * bt_ckpt_find_before_all() is the same search below a step: the trainer
 * falls back to it when a chosen checkpoint fails while loading.
 * bt_ckpt_set_aside() renames a checkpoint a resume could not use, so
 * that nothing deletes it (docs/checkpoints.md "Resume").
 * Kept out of reader.c so that the reader (and its fuzz target) does not
 * depend on the communicator.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "checkpoints/ckpt_impl.h"

typedef struct resume_msg {
  int32_t rc; /* 0 found, 1 none, BT_ERR */
  int32_t pad;
  char zDir[4096];
  char zErr[1024];
  char zWhy[4096]; /* the candidates rejected, and why */
  int64_t step;
} resume_msg;

int bt_ckpt_find_latest_all(bt_comm *pComm, const char *zRunDir, char *zOut,
                            size_t nOut) {
  return bt_ckpt_find_before_all(pComm, zRunDir, -1, zOut, nOut, NULL, NULL,
                                 0);
}

int bt_ckpt_find_before_all(bt_comm *pComm, const char *zRunDir, long before,
                            char *zOut, size_t nOut, long *pStep, char *zWhy,
                            size_t nWhy) {
  if (!pComm || bt_comm_world(pComm) == 1)
    return bt_ckpt_find_before(zRunDir, before, zOut, nOut, pStep, zWhy, nWhy);
  resume_msg *pMsg = bt_calloc(1, sizeof *pMsg, "resume message");
  BT_ASSERT(pMsg); /* every rank must take part in the broadcast */
  if (bt_comm_rank(pComm) == 0) {
    long step = -1;
    pMsg->rc = bt_ckpt_find_before(zRunDir, before, pMsg->zDir,
                                   sizeof pMsg->zDir, &step, pMsg->zWhy,
                                   sizeof pMsg->zWhy);
    pMsg->step = step;
    if (pMsg->rc == BT_ERR)
      snprintf(pMsg->zErr, sizeof pMsg->zErr, "%s", bt_err_msg());
  }
  if (bt_comm_host_broadcast(pComm, pMsg, sizeof *pMsg, 0) != BT_OK) {
    free(pMsg);
    return bt_err_prefix("finding the checkpoint to resume from: ");
  }
  int rc = pMsg->rc;
  pMsg->zWhy[sizeof pMsg->zWhy - 1] = 0;
  if (zWhy && nWhy) snprintf(zWhy, nWhy, "%s", pMsg->zWhy);
  if (rc == BT_ERR) {
    pMsg->zErr[sizeof pMsg->zErr - 1] = 0;
    bt_err_set("rank 0: %.1000s", pMsg->zErr);
  } else if (rc == 0) {
    pMsg->zDir[sizeof pMsg->zDir - 1] = 0;
    size_t n = strlen(pMsg->zDir);
    if (n + 1 > nOut)
      rc = bt_err_set("checkpoint path '%s' does not fit in %zu bytes",
                      pMsg->zDir, nOut);
    else
      memcpy(zOut, pMsg->zDir, n + 1);
    if (pStep) *pStep = (long)pMsg->step;
  }
  free(pMsg);
  return rc;
}

int bt_ckpt_set_aside_one(const char *zRunDir, const char *zName,
                          const char *zWhy) {
  char zFrom[4096], zTo[4200];
  if (strlen(zRunDir) + strlen(zName) + 48 > sizeof zFrom)
    return bt_err_set("checkpoint path too long: '%.100s...'", zRunDir);
  snprintf(zFrom, sizeof zFrom, "%s/%s", zRunDir, zName);
  snprintf(zTo, sizeof zTo, "%s/%s%s", zRunDir, BT_CKPT_REJECTED_PREFIX, zName);
  for (int k = 1; bt_path_exists(zTo) && k < 1000; k++)
    snprintf(zTo, sizeof zTo, "%s/%s%s.%d", zRunDir, BT_CKPT_REJECTED_PREFIX,
             zName, k);
  if (bt_path_exists(zTo))
    return bt_err_set("cannot set %s aside: %s exists", zFrom, zTo);
  if (rename(zFrom, zTo) != 0)
    return bt_err_set("cannot set unusable checkpoint %s aside as %s: %s "
                      "(errno %d)", zFrom, zTo, strerror(errno), errno);
  bt_log_warn("%s %s; kept as %s (no later save or retention deletes it)",
              zFrom, zWhy, zTo);
  return BT_OK;
}

int bt_ckpt_set_aside_newer(const char *zRunDir, long keepStep) {
  long *aStep;
  char **azName;
  int n, rc = BT_OK, nMoved = 0;
  if (bt_ckpt_list(zRunDir, &aStep, &azName, &n) != BT_OK) return BT_ERR;
  for (int i = 0; i < n && rc == BT_OK; i++) {
    if (keepStep >= 0 && aStep[i] <= keepStep) continue;
    rc = bt_ckpt_set_aside_one(zRunDir, azName[i], "could not be used");
    nMoved += rc == BT_OK;
  }
  bt_ckpt_list_free(aStep, azName, n);
  if (rc == BT_OK && nMoved > 0) rc = bt_fsync_dir(zRunDir);
  return rc;
}
