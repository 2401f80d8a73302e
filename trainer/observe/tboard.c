/*
 * tboard.c: TensorBoard event file writer; see tboard.h for the format.
 *
 * The protobuf encoder below is deliberately tiny: a cursor over a fixed
 * buffer whose every append checks the remaining room and latches an
 * overflow flag instead of writing past the end. Nested messages (Summary,
 * Value, SessionLog) are small, so their sizes are computed up front
 * (pb_varint_len) and written as length-delimited fields without a second
 * buffer.
 *
 * Wire-format reference: protobuf encoding guide ("varint", wire types 0, 1,
 * 2, 5); TFRecord framing: tensorflow/core/lib/io/record_writer.cc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "trainer/observe/tboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

/* ---- CRC32C ----------------------------------------------------------- */

static uint32_t g_aCrcTable[256];
static int g_crcReady = 0;

static void crc32c_init(void) {
  /* Building the table twice from two threads writes identical values, so
   * the race is benign; it is built before the flag is set. */
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    g_aCrcTable[i] = c;
  }
  g_crcReady = 1;
}

uint32_t bt_crc32c(uint32_t crc, const void *pData, size_t nByte) {
  if (!g_crcReady) crc32c_init();
  const uint8_t *p = pData;
  crc = ~crc;
  for (size_t i = 0; i < nByte; i++)
    crc = g_aCrcTable[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

uint32_t bt_tfrecord_mask_crc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

size_t bt_tfrecord_frame(uint8_t *pOut, size_t nOut, const void *pData,
                         size_t nData) {
  if (nData > SIZE_MAX - 16 || nOut < nData + 16) return 0;
  put_le64(pOut, (uint64_t)nData);
  put_le32(pOut + 8, bt_tfrecord_mask_crc(bt_crc32c(0, pOut, 8)));
  memcpy(pOut + 12, pData, nData);
  put_le32(pOut + 12 + nData, bt_tfrecord_mask_crc(bt_crc32c(0, pData, nData)));
  return nData + 16;
}

/* ---- protobuf encoder ------------------------------------------------- */

typedef struct pb_buf {
  uint8_t *p;
  size_t n;   /* bytes written */
  size_t cap; /* capacity */
  int bOverflow;
} pb_buf;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static size_t pb_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static void pb_bytes(pb_buf *b, const void *p, size_t n) {
  if (b->bOverflow || n > b->cap - b->n) {
    b->bOverflow = 1;
    return;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

static void pb_varint(pb_buf *b, uint64_t v) {
  uint8_t a[10];
  size_t n = 0;
  while (v >= 0x80) {
    a[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  a[n++] = (uint8_t)v;
  pb_bytes(b, a, n);
}

static void pb_key(pb_buf *b, uint32_t field, uint32_t wire) {
  pb_varint(b, ((uint64_t)field << 3) | wire);
}

/* A fixed-width field (wire type PB_I64 or PB_I32): the bits of a double
 * or a float, little-endian. */
static void pb_fixed(pb_buf *b, uint32_t field, uint32_t wire, uint64_t u) {
  uint8_t a[8];
  size_t n = wire == PB_I64 ? 8 : 4;
  if (n == 8) put_le64(a, u);
  else put_le32(a, (uint32_t)u);
  pb_key(b, field, wire);
  pb_bytes(b, a, n);
}

static void pb_double(pb_buf *b, uint32_t field, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  pb_fixed(b, field, PB_I64, u);
}

static void pb_float(pb_buf *b, uint32_t field, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  pb_fixed(b, field, PB_I32, u);
}

static void pb_string(pb_buf *b, uint32_t field, const char *z, size_t n) {
  pb_key(b, field, PB_LEN);
  pb_varint(b, n);
  pb_bytes(b, z, n);
}

/* Size of Value{tag, simple_value} without its own key/length. */
static size_t value_len(size_t nTag) {
  return 1 + pb_varint_len(nTag) + nTag + 1 + 4;
}

size_t bt_tboard_encode_event(uint8_t *pOut, size_t nOut, double wall_time,
                              int64_t step, const char *zFileVersion,
                              int session_start, int nVal,
                              const char *const *azTag, const float *aValue) {
  pb_buf b = {pOut, 0, nOut, 0};
  if (nVal < 0) {
    bt_err_set("tboard: negative scalar count %d", nVal);
    return 0;
  }
  pb_double(&b, 1, wall_time);
  if (step != 0) {
    pb_key(&b, 2, PB_VARINT);
    pb_varint(&b, (uint64_t)step); /* int64: two's complement, 10 bytes if <0 */
  }
  if (zFileVersion) pb_string(&b, 3, zFileVersion, strlen(zFileVersion));
  if (nVal > 0) {
    size_t nSummary = 0;
    for (int i = 0; i < nVal; i++) {
      size_t nTag = strlen(azTag[i]);
      if (nTag > BT_TBOARD_MAX_TAG) {
        bt_err_set("tboard: tag '%.40s...' is %zu bytes (max %d)", azTag[i],
                   nTag, BT_TBOARD_MAX_TAG);
        return 0;
      }
      size_t nV = value_len(nTag);
      nSummary += 1 + pb_varint_len(nV) + nV;
    }
    pb_key(&b, 5, PB_LEN);
    pb_varint(&b, nSummary);
    for (int i = 0; i < nVal; i++) {
      size_t nTag = strlen(azTag[i]);
      pb_key(&b, 1, PB_LEN);
      pb_varint(&b, value_len(nTag));
      pb_string(&b, 1, azTag[i], nTag);
      pb_float(&b, 2, aValue[i]);
    }
  }
  if (session_start) {
    pb_key(&b, 7, PB_LEN); /* 6 is the deprecated log_message */
    pb_varint(&b, 2);
    pb_key(&b, 1, PB_VARINT);
    pb_varint(&b, 1); /* SessionLog.START */
  }
  if (b.bOverflow) {
    bt_err_set("tboard: event for step %lld does not fit in %zu bytes",
               (long long)step, nOut);
    return 0;
  }
  return b.n;
}

/* ---- writer ----------------------------------------------------------- */

struct bt_tboard {
  FILE *f;
  char zPath[4096];
  int bFailed; /* a write failed: close reports it */
  uint8_t aEvent[BT_TBOARD_RECORD_MAX];
  uint8_t aRecord[BT_TBOARD_RECORD_MAX + 16];
};

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One record with write() on the descriptor (the FILE is never written
 * through, so its buffer cannot add bytes later). A failed write (a full
 * disk) is cut back to where the record began: TensorBoard's reader stops
 * at a torn record and would drop everything after it. Fault point
 * "tboard.enospc": the Nth record fails with ENOSPC after half of it. */
static int write_event(bt_tboard *pTb, size_t nEvent) {
  size_t nRec = bt_tfrecord_frame(pTb->aRecord, sizeof pTb->aRecord,
                                  pTb->aEvent, nEvent);
  BT_ASSERT(nRec == nEvent + 16); /* aRecord is sized for the largest event */
  if (pTb->bFailed)
    return bt_err_set("tboard: %s: an earlier write failed", pTb->zPath);
  int fd = fileno(pTb->f);
  off_t off = lseek(fd, 0, SEEK_CUR);
  int rc;
  if (bt_fault_hit("tboard.enospc")) {
    rc = bt_file_write_full(fd, pTb->aRecord, nRec / 2, pTb->zPath);
    if (rc == BT_OK)
      rc = bt_err_set("write to '%s' failed at byte %zu: %s (errno %d) "
                      "(fault injection tboard.enospc)",
                      pTb->zPath, nRec / 2, strerror(ENOSPC), ENOSPC);
  } else {
    rc = bt_file_write_full(fd, pTb->aRecord, nRec, pTb->zPath);
  }
  if (rc == BT_OK) return BT_OK;
  pTb->bFailed = 1;
  if (off >= 0 && ftruncate(fd, off) == 0 && lseek(fd, off, SEEK_SET) == off)
    return bt_err_prefix("tboard: ");
  return bt_err_prefix("tboard (a partial record may remain): ");
}

int bt_tboard_open(bt_tboard **ppTb, const char *zDir) {
  static int s_seq = 0;
  *ppTb = NULL;
  if (bt_mkdir_p(zDir) != BT_OK)
    return bt_err_prefix("tboard: creating %s: ", zDir);
  bt_tboard *pTb = bt_calloc(1, sizeof *pTb, "tensorboard writer");
  if (!pTb) return BT_ERR;
  double now = wall_now();
  /* TensorBoard reads the files of a directory in name order, and a resumed
   * run's file must come after the crashed run's: seconds alone can tie,
   * and then the pid would decide, so microseconds follow (fixed width). */
  long long sec = (long long)now;
  long usec = (long)((now - (double)sec) * 1e6);
  if (usec > 999999) usec = 999999;
  int n = snprintf(pTb->zPath, sizeof pTb->zPath,
                   "%s/events.out.tfevents.%lld.%06ld.%s.%d.%d", zDir, sec,
                   usec, bt_log_host(), (int)getpid(),
                   __atomic_fetch_add(&s_seq, 1, __ATOMIC_RELAXED));
  if (n < 0 || (size_t)n >= sizeof pTb->zPath) {
    free(pTb);
    return bt_err_set("tboard: path under %s too long", zDir);
  }
  /* "x": a fresh file every time; never append to another run's file. */
  pTb->f = fopen(pTb->zPath, "wbx");
  if (!pTb->f) {
    int e = errno;
    free(pTb);
    return bt_err_set("tboard: creating event file in %s: %s", zDir,
                      strerror(e));
  }
  size_t nEv = bt_tboard_encode_event(pTb->aEvent, sizeof pTb->aEvent, now, 0,
                                      "brain.Event:2", 0, 0, NULL, NULL);
  BT_ASSERT(nEv > 0);
  if (write_event(pTb, nEv) != BT_OK) {
    char zKeep[2048];
    snprintf(zKeep, sizeof zKeep, "%s", bt_err_msg());
    bt_tboard_close(pTb);
    return bt_err_set("%s", zKeep);
  }
  *ppTb = pTb;
  return BT_OK;
}

const char *bt_tboard_path(const bt_tboard *pTb) { return pTb->zPath; }

int bt_tboard_scalars(bt_tboard *pTb, int64_t step, int nVal,
                      const char *const *azTag, const double *aValue) {
  float aF[256];
  if (nVal < 0 || nVal > (int)(sizeof aF / sizeof aF[0]))
    return bt_err_set("tboard: %d scalars in one step (max %zu)", nVal,
                      sizeof aF / sizeof aF[0]);
  for (int i = 0; i < nVal; i++) aF[i] = (float)aValue[i];
  size_t nEv = bt_tboard_encode_event(pTb->aEvent, sizeof pTb->aEvent,
                                      wall_now(), step, NULL, 0, nVal, azTag,
                                      aF);
  if (nEv == 0) return bt_err_prefix("%s: ", pTb->zPath);
  return write_event(pTb, nEv);
}

int bt_tboard_session_start(bt_tboard *pTb, int64_t step) {
  size_t nEv = bt_tboard_encode_event(pTb->aEvent, sizeof pTb->aEvent,
                                      wall_now(), step, NULL, 1, 0, NULL, NULL);
  BT_ASSERT(nEv > 0);
  return write_event(pTb, nEv);
}

int bt_tboard_close(bt_tboard *pTb) {
  if (!pTb) return BT_OK;
  int rc = pTb->bFailed ? BT_ERR : BT_OK;
  if (pTb->bFailed) bt_err_set("tboard: earlier write to %s failed", pTb->zPath);
  if (fflush(pTb->f) != 0 || fsync(fileno(pTb->f)) != 0) {
    rc = bt_err_set("tboard: syncing %s: %s", pTb->zPath, strerror(errno));
  }
  if (fclose(pTb->f) != 0 && rc == BT_OK)
    rc = bt_err_set("tboard: closing %s: %s", pTb->zPath, strerror(errno));
  free(pTb);
  return rc;
}
