/*
 * test_tboard.c: CRC32C known answers, protobuf Event bytes against a
 * hand-assembled expectation, TFRecord framing, bounds checks, and a file
 * written by bt_tboard_* re-parsed record by record with CRCs verified.
 * (TensorBoard's own reader checks the same files in check_ref.py.)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include "base/util.h"
#include "tests/check.h"
#include "trainer/observe/tboard.h"

static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void test_crc(void) {
  CHECK(bt_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c(123456789)=%08x",
        bt_crc32c(0, "123456789", 9));
  CHECK(bt_crc32c(0, "", 0) == 0, "crc of nothing is 0");
  /* RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA, of 0xFF -> 0x62A8AB43. */
  uint8_t a[32];
  memset(a, 0, sizeof a);
  CHECK(bt_crc32c(0, a, 32) == 0x8A9136AAu, "zeros %08x", bt_crc32c(0, a, 32));
  memset(a, 0xFF, sizeof a);
  CHECK(bt_crc32c(0, a, 32) == 0x62A8AB43u, "ones %08x", bt_crc32c(0, a, 32));
  /* Incremental use gives the same value as one pass. */
  uint32_t c = bt_crc32c(0, "1234", 4);
  c = bt_crc32c(c, "56789", 5);
  CHECK(c == 0xE3069283u, "incremental %08x", c);
  /* mask(crc) = rotr15 + 0xa282ead8, checked on two values by hand. */
  CHECK(bt_tfrecord_mask_crc(0) == 0xa282ead8u, "mask(0)");
  CHECK(bt_tfrecord_mask_crc(0x00008000u) == 0xa282ead9u, "mask(1<<15)");
}

static void test_encode(void) {
  uint8_t buf[256];
  const char *azTag[1] = {"a"};
  float aV[1] = {1.0f};
  size_t n = bt_tboard_encode_event(buf, sizeof buf, 1.0, 5, NULL, 0, 1, azTag,
                                    aV);
  static const uint8_t want[] = {
      0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, /* 1: wall_time 1.0 */
      0x10, 0x05,                         /* 2: step 5 */
      0x2A, 0x0A,                         /* 5: summary, 10 bytes */
      0x0A, 0x08,                         /*   1: value, 8 bytes */
      0x0A, 0x01, 'a',                    /*     1: tag "a" */
      0x15, 0x00, 0x00, 0x80, 0x3F};      /*     2: simple_value 1.0f */
  CHECK(n == sizeof want && memcmp(buf, want, n) == 0, "event bytes (n=%zu)", n);

  n = bt_tboard_encode_event(buf, sizeof buf, 0.0, 0, "brain.Event:2", 0, 0,
                             NULL, NULL);
  CHECK(n == 9 + 2 + 13 && buf[9] == 0x1A && buf[10] == 13 &&
            memcmp(buf + 11, "brain.Event:2", 13) == 0,
        "file_version event (n=%zu)", n);

  n = bt_tboard_encode_event(buf, sizeof buf, 0.0, 300, NULL, 1, 0, NULL, NULL);
  static const uint8_t wantLog[] = {0x10, 0xAC, 0x02, 0x3A, 0x02, 0x08, 0x01};
  CHECK(n == 9 + sizeof wantLog && memcmp(buf + 9, wantLog, sizeof wantLog) == 0,
        "step 300 varint + session_log START (n=%zu)", n);

  n = bt_tboard_encode_event(buf, sizeof buf, 0.0, -1, NULL, 0, 0, NULL, NULL);
  CHECK(n == 9 + 1 + 10 && buf[19] == 0x01, "negative step: 10-byte varint");

  /* Too small a buffer and too long a tag fail cleanly. */
  n = bt_tboard_encode_event(buf, 12, 1.0, 5, NULL, 0, 1, azTag, aV);
  CHECK(n == 0 && strstr(bt_err_msg(), "does not fit"), "overflow: %s",
        bt_err_msg());
  char zLong[BT_TBOARD_MAX_TAG + 2];
  memset(zLong, 'x', sizeof zLong - 1);
  zLong[sizeof zLong - 1] = 0;
  const char *azLong[1] = {zLong};
  n = bt_tboard_encode_event(buf, sizeof buf, 1.0, 5, NULL, 0, 1, azLong, aV);
  CHECK(n == 0 && strstr(bt_err_msg(), "max"), "long tag: %s", bt_err_msg());
}

static void test_frame(void) {
  uint8_t out[64];
  size_t n = bt_tfrecord_frame(out, sizeof out, "hello", 5);
  CHECK(n == 21, "frame size");
  CHECK(get_le64(out) == 5, "length");
  CHECK(get_le32(out + 8) == bt_tfrecord_mask_crc(bt_crc32c(0, out, 8)),
        "length crc");
  CHECK(memcmp(out + 12, "hello", 5) == 0, "payload");
  CHECK(get_le32(out + 17) == bt_tfrecord_mask_crc(bt_crc32c(0, "hello", 5)),
        "data crc");
  CHECK(bt_tfrecord_frame(out, 20, "hello", 5) == 0, "too small output");
}

/* 1 if the Event message d[0..len) has a summary (field 5). Walks the
 * fields by wire type, so the bytes of wall_time (a double, field 1) can
 * never be mistaken for a field key, whatever the time. */
static int event_has_summary(const uint8_t *d, uint64_t len) {
  uint64_t i = 0;
  while (i < len) {
    uint64_t key = 0;
    int shift = 0;
    while (i < len && shift < 64) {
      key |= (uint64_t)(d[i] & 0x7F) << shift;
      shift += 7;
      if (!(d[i++] & 0x80)) break;
    }
    uint64_t field = key >> 3, wire = key & 7, skip = 0;
    if (field == 5 && wire == 2) return 1;
    if (wire == 0) {
      while (i < len && (d[i++] & 0x80)) {}
    } else if (wire == 1) {
      skip = 8;
    } else if (wire == 5) {
      skip = 4;
    } else if (wire == 2) {
      shift = 0;
      while (i < len && shift < 64) {
        skip |= (uint64_t)(d[i] & 0x7F) << shift;
        shift += 7;
        if (!(d[i++] & 0x80)) break;
      }
    } else {
      return 0; /* groups are not used by TensorBoard events */
    }
    if (skip > len - i) return 0;
    i += skip;
  }
  return 0;
}

/* Parses every record of zPath; returns the count or -1 on a bad record. */
static int count_records(const char *zPath, int *pnScalarEvents) {
  size_t nByte = 0;
  uint8_t *p = (uint8_t *)bt_file_read_all(zPath, &nByte);
  if (!p) return -1;
  size_t at = 0;
  int n = 0;
  *pnScalarEvents = 0;
  while (at < nByte) {
    if (nByte - at < 12) break;
    uint64_t len = get_le64(p + at);
    if (get_le32(p + at + 8) != bt_tfrecord_mask_crc(bt_crc32c(0, p + at, 8)) ||
        len > nByte - at - 16) {
      free(p);
      return -1;
    }
    const uint8_t *d = p + at + 12;
    if (get_le32(d + len) != bt_tfrecord_mask_crc(bt_crc32c(0, d, len))) {
      free(p);
      return -1;
    }
    if (event_has_summary(d, len)) (*pnScalarEvents)++;
    at += 16 + len;
    n++;
  }
  free(p);
  return at == nByte ? n : -1;
}

static void test_file(void) {
  char zDir[] = "/tmp/bt_tboard_XXXXXX";
  CHECK(mkdtemp(zDir) != NULL, "mkdtemp");
  char zSub[256];
  snprintf(zSub, sizeof zSub, "%s/tb", zDir);
  bt_tboard *pTb = NULL;
  CHECK(bt_tboard_open(&pTb, zSub) == BT_OK, "open: %s", bt_err_msg());
  if (!pTb) return;
  CHECK(strstr(bt_tboard_path(pTb), "/events.out.tfevents.") != NULL, "name %s",
        bt_tboard_path(pTb));
  const char *azTag[2] = {"train/loss", "train/lr"};
  for (int s = 1; s <= 5; s++) {
    double aV[2] = {1.0 / s, 1e-3};
    CHECK(bt_tboard_scalars(pTb, s, 2, azTag, aV) == BT_OK, "step %d", s);
  }
  CHECK(bt_tboard_session_start(pTb, 3) == BT_OK, "session start");
  char zPath[4096];
  snprintf(zPath, sizeof zPath, "%s", bt_tboard_path(pTb));
  CHECK(bt_tboard_close(pTb) == BT_OK, "close: %s", bt_err_msg());
  int nScalar = 0;
  int nRec = count_records(zPath, &nScalar);
  CHECK(nRec == 7, "records %d (version + 5 steps + session log)", nRec);
  CHECK(nScalar == 5, "scalar events %d", nScalar);
  /* A second writer in the same directory gets its own file. */
  bt_tboard *pTb2 = NULL;
  CHECK(bt_tboard_open(&pTb2, zSub) == BT_OK, "second open");
  CHECK(pTb2 && strcmp(bt_tboard_path(pTb2), zPath) > 0,
        "second file sorts after the first");
  bt_tboard_close(pTb2);
  /* Unwritable directory: an error naming the path, no crash. */
  CHECK(bt_tboard_open(&pTb2, "/proc/definitely/not") == BT_ERR && !pTb2,
        "open in /proc fails");
  char zCmd[512];
  snprintf(zCmd, sizeof zCmd, "rm -rf '%s'", zDir);
  CHECK(system(zCmd) == 0, "cleanup");
}

int main(void) {
  test_crc();
  test_encode();
  test_frame();
  test_file();
  return CHECK_DONE();
}
