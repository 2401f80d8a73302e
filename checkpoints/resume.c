/*
 * resume.c: collective helpers for resuming (ckpt.h).
 *
 * bt_ckpt_find_latest() reads and checksums every payload of the
 * candidate; done by all 64 ranks at once that is 64 full reads of the
 * newest checkpoint from the shared filesystem. bt_ckpt_find_latest_all()
 * lets rank 0 do it and broadcasts the answer, so every rank resumes from
 * the same directory, whatever each would have seen on its own.
 * Kept out of reader.c so that the reader (and its fuzz target) does not
 * depend on the communicator.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "checkpoints/ckpt_impl.h"

typedef struct resume_msg {
  int32_t rc; /* 0 found, 1 none, BT_ERR */
  int32_t pad;
  char zDir[4096];
  char zErr[1024];
} resume_msg;

int bt_ckpt_find_latest_all(bt_comm *pComm, const char *zRunDir, char *zOut,
                            size_t nOut) {
  if (!pComm || bt_comm_world(pComm) == 1)
    return bt_ckpt_find_latest(zRunDir, zOut, nOut);
  resume_msg *pMsg = bt_calloc(1, sizeof *pMsg, "resume message");
  BT_ASSERT(pMsg); /* every rank must take part in the broadcast */
  if (bt_comm_rank(pComm) == 0) {
    pMsg->rc = bt_ckpt_find_latest(zRunDir, pMsg->zDir, sizeof pMsg->zDir);
    if (pMsg->rc == BT_ERR)
      snprintf(pMsg->zErr, sizeof pMsg->zErr, "%s", bt_err_msg());
  }
  if (bt_comm_host_broadcast(pComm, pMsg, sizeof *pMsg, 0) != BT_OK) {
    free(pMsg);
    return bt_err_prefix("finding the checkpoint to resume from: ");
  }
  int rc = pMsg->rc;
  if (rc == BT_ERR) {
    bt_err_set("rank 0: %.1000s", pMsg->zErr);
  } else if (rc == 0) {
    pMsg->zDir[sizeof pMsg->zDir - 1] = 0;
    size_t n = strlen(pMsg->zDir);
    if (n + 1 > nOut)
      rc = bt_err_set("checkpoint path '%s' does not fit in %zu bytes",
                      pMsg->zDir, nOut);
    else
      memcpy(zOut, pMsg->zDir, n + 1);
  }
  free(pMsg);
  return rc;
}
