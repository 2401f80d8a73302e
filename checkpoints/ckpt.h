/*
 * ckpt.h: resumable checkpoints (docs/checkpoints.md has the on-disk format).
 *
 * A checkpoint is a directory RUN/ckpt-<step:08> holding manifest.json and
 * payload files. The trainer describes its state as a list of items
 * (bt_ckpt_item) built by ONE function for both save and load
 * (trainer/state.c), so nothing can be saved that is not loaded or the
 * other way round.
 *
 * Items are either
 *   - replicated: identical on every rank. Large f32 ones (>= 1024
 *     elements per rank) are cut into world slices written in parallel,
 *     slice r by rank r (bt_ckpt_writer_set_split_replicated(pW, 0): rank
 *     0 writes them whole); bytes and small items are written by rank 0;
 *   - sharded: rank r holds elements [lo, hi) of a flat buffer of `total`
 *     elements; every rank writes its own range in parallel (ZeRO-1
 *     optimizer moments). The manifest lists each range's file, so a reader
 *     with another world size reassembles any range it needs.
 * Float payloads are byte-shuffled (all first bytes, then all second
 * bytes...) before zstd, which groups exponents and raises the ratio.
 *
 * Crash safety (invariants):
 *   1. Files are written into RUN/.tmp-ckpt-<step>, fsynced; rank 0 writes
 *      manifest.json last, fsyncs it and the directory, renames the
 *      directory to RUN/ckpt-<step>, fsyncs RUN, then replaces RUN/latest
 *      (a small text file naming the directory) atomically.
 *   2. A directory named ckpt-* therefore always holds a complete manifest;
 *      a crash at any instant leaves every earlier checkpoint untouched.
 *   3. Old checkpoints are deleted only after the new one is renamed.
 *   4. The reader trusts nothing: every length, offset and checksum is
 *      checked before use; the manifest carries its own checksum, so no
 *      byte of a checkpoint is outside every checksum.
 *   5. Nothing deletes a checkpoint a resume could not read: it is set
 *      aside as RUN/rejected-ckpt-<step> (bt_ckpt_set_aside_newer), and a
 *      file that merely has a checkpoint's name is not listed at all.
 *
 * Asynchronous saving: bt_ckpt_save_begin() copies the items into host
 * snapshot memory (caller provides host pointers; the copy is taken before
 * it returns) and hands them to a background thread that compresses and
 * writes this rank's files. bt_ckpt_poll() is called by the main thread at
 * every step boundary; when every rank's thread has finished it gathers
 * the file lists and rank 0 commits (manifest, rename, latest, retention)
 * in its background thread; a later poll reports the committed step. At
 * most one save is in flight; bt_ckpt_save_begin() first finishes the
 * previous one. bt_ckpt_finish() blocks until nothing is in flight.
 * The background thread only does file I/O (never MPI), so the
 * communicator may be MPI_THREAD_FUNNELED. Every rank must see the same
 * RUN directory (a shared filesystem when ranks span nodes).
 *
 * Payloads are cut into files of at most 64 MiB raw each
 * (bt_ckpt_writer_set_chunk_bytes), which bounds the writer's and reader's
 * scratch memory and lets a reader with another world size decode only
 * the files its range touches.
 *
 * Errors: a failed write (ENOSPC, EIO, EFBIG) in any rank's thread is
 * carried to the main thread with path and errno ("checkpoint write
 * failed: RUN/.tmp-ckpt-100/params.r0.0-1000.zst: No space left on device
 * (errno 28)"); bt_ckpt_poll() then returns BT_ERR on EVERY rank (the
 * ranks agree by an all-reduce), the temporary directory is removed and
 * the previous checkpoint stays. The caller decides whether to go on.
 *
 * Fault injection (BATON_FAULT, util.h), used by tests/ckpt:
 *   ckpt.write           each rank's thread, halfway through writing a
 *                        payload file: raise(SIGKILL) (crash mid-write)
 *   ckpt.eio             same place: the write fails with EIO (no crash)
 *   ckpt.before_manifest rank 0, before manifest.json: raise(SIGKILL)
 *   ckpt.before_rename   rank 0, before renaming .tmp-ckpt-N: raise(SIGKILL)
 *   ckpt.before_latest   rank 0, before replacing RUN/latest: raise(SIGKILL)
 * A crash at any of them leaves the previous checkpoint complete and
 * findable by bt_ckpt_find_latest(); a stale RUN/.tmp-ckpt-* is deleted
 * by the next bt_ckpt_writer_create().
 */
#ifndef BATON_CKPT_H
#define BATON_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"

/* Version 2: manifest.json carries its own checksum, so no byte of a
 * checkpoint is outside every checksum; version 1 (no manifest checksum) is
 * still read (docs/checkpoints.md). */
#define BT_CKPT_FORMAT_VERSION 2

typedef enum bt_ckpt_dtype {
  BT_CKPT_F32 = 0,   /* float32, byte-shuffled then zstd */
  BT_CKPT_BYTES = 1, /* opaque bytes (JSON state, config text), zstd */
} bt_ckpt_dtype;

typedef struct bt_ckpt_item {
  const char *zName;   /* "params", "adam_m", "adam_v", ... */
  bt_ckpt_dtype eType;
  void *pData;         /* save: source (host memory). Sharded: points at
                          element lo of the flat buffer, i.e. at this
                          rank's shard of hi - lo elements; replicated: at
                          element 0 of total, on every rank */
  uint64_t total;      /* elements (bytes for BT_CKPT_BYTES) of the whole */
  uint64_t lo, hi;     /* this rank's range; replicated: [0, total) */
  int sharded;         /* 1: every rank writes [lo,hi); 0: rank 0 writes */
} bt_ckpt_item;

typedef struct bt_ckpt_writer bt_ckpt_writer;

typedef struct bt_ckpt_options {
  const char *zRunDir;
  int keep_last;       /* keep the newest K complete checkpoints (>=1;
                          <= 0 keeps every checkpoint) */
  int keep_every;      /* also keep those whose step % M == 0 (0: none) */
  int zstd_level;      /* 1..19, default 3 (<= 0 means 3) */
  int async;           /* 1: background thread; 0: write in save_begin */
  int shuffle;         /* 1: byte-shuffle float payloads (default) */
} bt_ckpt_options;

/* Collective. Creates RUN if needed; rank 0 deletes stale RUN/.tmp-ckpt-*
 * left by a crashed save. pComm may be NULL for a single process. */
int bt_ckpt_writer_create(bt_ckpt_writer **ppW, bt_comm *pComm,
                          const bt_ckpt_options *pOpt);
/* Local. Joins the thread of a save still in flight WITHOUT committing it
 * (call bt_ckpt_finish() first to keep it). */
void bt_ckpt_writer_free(bt_ckpt_writer *pW);
/* Local (call it on every rank, or on rank 0 at least, before the same
 * bt_ckpt_save_begin): the next save is the best checkpoint so far. Its
 * commit writes RUN/best ("ckpt-<step>", atomically, after latest) and
 * retention never deletes the checkpoint RUN/best names
 * (checkpoint.keep_best). */
void bt_ckpt_writer_mark_best(bt_ckpt_writer *pW);
/* Largest raw size of one payload file (default 64 MiB, rounded down to
 * whole elements). Call between saves. */
int bt_ckpt_writer_set_chunk_bytes(bt_ckpt_writer *pW, size_t nByte);

/* Starts saving checkpoint `step`. zMetaJson is the trainer's JSON state
 * (step, loader state, schedule, metrics, config text): must be valid
 * JSON (NULL: null); embedded in the manifest as JSON. Copies every item's
 * data before returning. Collective: every rank calls it at the same step
 * with the same item names, types and totals. If a previous save is still
 * in flight it is finished first; if that one failed its error is
 * returned and the new save is not started. Item names: 1..64 characters
 * of [A-Za-z0-9_.-], not starting with '.'. */
int bt_ckpt_save_begin(bt_ckpt_writer *pW, long step, const char *zMetaJson,
                       const bt_ckpt_item *aItem, int nItem);
/* Collective, every step boundary: commits a finished save. *pnDone gets
 * the step committed by this call (or -1). Errors (disk full, EIO) are
 * returned with the path and errno; the previous checkpoint stays. */
int bt_ckpt_poll(bt_ckpt_writer *pW, long *pnDone);
/* Collective: waits for and commits the save in flight, if any. */
int bt_ckpt_finish(bt_ckpt_writer *pW);
/* 1 (default): replicated f32 items of >= 1024 elements per rank are
 * written in slices by all ranks; 0: by rank 0 alone. Between saves. */
int bt_ckpt_writer_set_split_replicated(bt_ckpt_writer *pW, int on);
/* Seconds the main thread spent in the last save (snapshot + any wait). */
double bt_ckpt_last_blocking_seconds(const bt_ckpt_writer *pW);

/* ---- reading ---------------------------------------------------------- */

typedef struct bt_ckpt bt_ckpt;

/* Opens RUN/ckpt-* or any checkpoint directory; parses and bounds-checks
 * the manifest. verify = 1 also checks every payload's size and checksum. */
int bt_ckpt_open(bt_ckpt **ppC, const char *zDir, int verify);
void bt_ckpt_close(bt_ckpt *pC);
long bt_ckpt_step(const bt_ckpt *pC);
int bt_ckpt_world(const bt_ckpt *pC);
const char *bt_ckpt_meta_json(const bt_ckpt *pC);
/* Total elements of an item (0 if absent). */
uint64_t bt_ckpt_item_total(const bt_ckpt *pC, const char *zName);
/* Element type of an item; BT_ERR if absent. */
int bt_ckpt_item_dtype(const bt_ckpt *pC, const char *zName,
                       bt_ckpt_dtype *peType);
/* Reads elements [lo, hi) of item zName into pDst, from whichever files
 * hold them (resharding). */
int bt_ckpt_read_range(bt_ckpt *pC, const char *zName, uint64_t lo,
                       uint64_t hi, void *pDst);
/* Loads the trainer's items (the same list it saves, built by the same
 * function): sharded items get elements [lo, hi) into pData (which points
 * at this rank's shard, as for saving), replicated ones [0, total). Every
 * item must exist in the checkpoint with the same dtype and total; the
 * world size may differ from the one at save (resharding). Items in the
 * checkpoint that the list does not name are ignored. Local (no
 * collective); every file read is checksum-verified. */
int bt_ckpt_load_items(bt_ckpt *pC, const bt_ckpt_item *aItem, int nItem);
/* Prints the summary `baton inspect` shows and verifies every checksum;
 * returns BT_OK only if everything verified. */
int bt_ckpt_inspect(const char *zDir, FILE *pOut);
/* `baton inspect`: argv[0] is the command name, argv[1] a checkpoint
 * directory or a run directory (its newest ckpt-*). --help prints usage.
 * Returns the exit code: 0 verify PASS, 1 FAIL, 2 usage error. */
int bt_inspect_main(int argc, char **argv);

/* Finds the newest checkpoint (highest step) under zRunDir that opens and
 * verifies, reporting (bt_log_warn) each newer one that does not. Writes
 * its directory ("RUN/ckpt-00000100") into zOut; returns 0 found, 1 none
 * (also when RUN does not exist), BT_ERR on error. Reads every payload of
 * the candidate: at scale call it on rank 0 and broadcast the result. */
int bt_ckpt_find_latest(const char *zRunDir, char *zOut, size_t nOut);

/* bt_ckpt_find_latest() among the checkpoints of step < before (before
 * < 0: all); *pStep (may be NULL) gets the step of the one found. Lists
 * each checkpoint it rejected in zWhy ("ckpt-00000020: reason;
 * ckpt-00000010: reason", truncated to nWhy; NULL: not wanted). Returns 0
 * found, 1 none usable (zWhy empty: none existed), BT_ERR. */
int bt_ckpt_find_before(const char *zRunDir, long before, char *zOut,
                        size_t nOut, long *pStep, char *zWhy, size_t nWhy);

/* Collective bt_ckpt_find_before(): rank 0 looks, every rank gets its
 * answer. */
int bt_ckpt_find_before_all(bt_comm *pComm, const char *zRunDir, long before,
                            char *zOut, size_t nOut, long *pStep, char *zWhy,
                            size_t nWhy);

/* Renames every RUN/ckpt-N with N > keepStep (keepStep < 0: every one) to
 * RUN/rejected-ckpt-N (".1", ".2" ... appended if taken) and logs a
 * warning for each. A resume calls it for the checkpoints it could not
 * use, so that no later save of step N (which would replace the
 * directory) or retention deletes them; nothing else looks at that name.
 * Local: rank 0 only. */
int bt_ckpt_set_aside_newer(const char *zRunDir, long keepStep);

/* Collective: rank 0 runs bt_ckpt_find_latest() and broadcasts the
 * result, so every rank resumes from the same directory and the newest
 * checkpoint is read (verified) once, not once per rank. pComm NULL or
 * world 1: same as bt_ckpt_find_latest(). */
int bt_ckpt_find_latest_all(bt_comm *pComm, const char *zRunDir, char *zOut,
                            size_t nOut);

/* `baton inspect CKPT`: summarises and verifies a checkpoint. Prints its
 * own --help; returns the process exit code. */
int bt_inspect_main(int argc, char **argv);

#endif /* BATON_CKPT_H */
