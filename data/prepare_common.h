/*
 * prepare_common.h: the crash-safe output file shared by `baton prepare
 * text|arrays` (prepare.c) and `baton prepare audio` (prepare_audio.c).
 * Not for use outside data/.
 *
 * Protocol (docs/design.md, decision 7: crash-safe files): the command
 * writes OUT.h5.tmp.<pid>, closes it, and bt_prep_tmp_end() fsyncs it,
 * renames it to OUT.h5 and fsyncs the directory. Between begin and end:
 *   1. bt_prep_tmp_path() names the temporary file (it exists);
 *   2. SIGINT/SIGTERM remove it and then kill the process with the signal;
 *   3. SIGKILL leaves only the .tmp.<pid> file, never a partial OUT.h5.
 * So OUT.h5 is either absent (or the previous version) or complete.
 * One output file at a time per process (the commands are single-threaded).
 */
#ifndef BATON_PREPARE_COMMON_H
#define BATON_PREPARE_COMMON_H

/* Names the temporary file zOut.tmp.<pid>, creates it empty with open(2)
 * (so that a missing or read-only directory is reported naming zOut, not
 * by a line of HDF5's internals) and installs the signal handlers.
 * Errors (BT_ERR, message set) leave no file and no handler. */
int bt_prep_tmp_begin(const char *zOut);

/* The temporary file being written, or "" outside begin..end. */
const char *bt_prep_tmp_path(void);

/* Ends the protocol; the caller has closed its HDF5 file. ok: fsync,
 * rename to zOut, fsync the directory (BT_OK, or BT_ERR with the failing
 * call in the message). !ok, or any of those failing: the temporary file
 * is removed and BT_ERR returned (message left as it is when !ok). Restores
 * the default SIGINT/SIGTERM handling. Harmless when no file is open
 * (returns BT_ERR with !ok). */
int bt_prep_tmp_end(const char *zOut, int ok);

#endif
