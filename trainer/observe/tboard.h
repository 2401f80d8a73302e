/*
 * tboard.h: TensorBoard event files written in plain C.
 *
 * An event file is a sequence of TFRecords, each holding one serialized
 * tensorflow.Event protobuf. We write only what scalar curves need:
 *
 *   TFRecord  = uint64 length (LE) | uint32 masked_crc32c(length bytes)
 *             | data[length]       | uint32 masked_crc32c(data)
 *   masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8        (uint32 arithmetic)
 *   Event     = 1: wall_time double | 2: step int64 | 3: file_version string
 *             | 5: summary Summary  | 7: session_log SessionLog
 *               (3, 5 and 7 are one oneof: an Event carries one of them)
 *   Summary   = repeated 1: value Value
 *   Value     = 1: tag string | 2: simple_value float
 *   SessionLog= 1: status enum (START = 1)
 *
 * The first record of every file is Event{wall_time, file_version =
 * "brain.Event:2"}. Each bt_tboard_scalars() call writes one Event holding
 * every scalar of that step, then fflush()es, so a crashed run loses at most
 * the step being written. A torn last record (crash mid-write) is ignored by
 * TensorBoard's reader, which stops at the first bad CRC/short record.
 *
 * Resume: a resumed run opens a NEW file in the same directory (file names
 * start with the creation time in seconds and microseconds, fixed width, so
 * name order, which is TensorBoard's reading order, is creation order) and
 * calls bt_tboard_session_start(step): TensorBoard then drops the points with
 * step >= that step read from older files ("purge orphaned data"), so the
 * curve shows the resumed values, not the stale ones written after the last
 * checkpoint of the crashed run.
 *
 * Not thread-safe: one writer per handle (the trainer's main thread, rank 0).
 * Errors are BT_ERR with bt_err_msg() naming the file.
 */
#ifndef BATON_TBOARD_H
#define BATON_TBOARD_H

#include <stddef.h>
#include <stdint.h>

/* Limits of one step's record; exceeding them is an error, not a crash. */
#define BT_TBOARD_MAX_TAG 256      /* bytes of one tag, excluding NUL */
#define BT_TBOARD_RECORD_MAX 65536 /* bytes of one serialized Event */

typedef struct bt_tboard bt_tboard;

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
 * crc is the running value: pass 0 to start; bt_crc32c(0, "123456789", 9)
 * = 0xE3069283. */
uint32_t bt_crc32c(uint32_t crc, const void *pData, size_t nByte);
/* TFRecord's masking of a CRC (see above). */
uint32_t bt_tfrecord_mask_crc(uint32_t crc);

/* Frames pData[nData] as one TFRecord into pOut[nOut]. Returns the number of
 * bytes written (nData + 16), or 0 if nOut is too small. */
size_t bt_tfrecord_frame(uint8_t *pOut, size_t nOut, const void *pData,
                         size_t nData);

/* Serializes an Event with nVal scalars (nVal may be 0: then no summary
 * field). zFileVersion may be NULL; session_start != 0 adds
 * session_log{status: START}. Give only one of the three (a oneof). Returns the encoded size, or 0 (with
 * bt_err_set) when it does not fit in nOut or a tag is too long. */
size_t bt_tboard_encode_event(uint8_t *pOut, size_t nOut, double wall_time,
                              int64_t step, const char *zFileVersion,
                              int session_start, int nVal,
                              const char *const *azTag, const float *aValue);

/* Creates zDir (mkdir -p) and a new file
 * zDir/events.out.tfevents.<unix-seconds>.<microseconds>.<host>.<pid>.<seq>
 * whose first record carries file_version "brain.Event:2". *ppTb is NULL on error. */
int bt_tboard_open(bt_tboard **ppTb, const char *zDir);
/* Path of the file being written (valid until close). */
const char *bt_tboard_path(const bt_tboard *pTb);
/* One Event with nVal scalars for `step`, wall time = now; fflush()ed. */
int bt_tboard_scalars(bt_tboard *pTb, int64_t step, int nVal,
                      const char *const *azTag, const double *aValue);
/* Writes Event{step, session_log: START}: tells TensorBoard that the run
 * (re)started at `step`, so older points with step >= it are discarded. */
int bt_tboard_session_start(bt_tboard *pTb, int64_t step);
/* fflush + fsync + fclose + free. NULL is a no-op. Returns BT_ERR if any
 * write since open failed or the final sync fails; frees in every case. */
int bt_tboard_close(bt_tboard *pTb);

#endif /* BATON_TBOARD_H */
