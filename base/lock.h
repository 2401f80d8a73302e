/*
 * lock.h: an exclusive lock on a file, held for a process's life, that
 * names its holder.
 *
 * The lock is a POSIX record lock (fcntl F_SETLK) on the whole file, so:
 *   - the kernel releases it when the holder dies, however it dies
 *     (SIGKILL included): a lock file left behind by a dead job is not a
 *     lock, and the next job takes it over, logging whom it took it from;
 *   - it works across nodes on a shared filesystem that supports POSIX
 *     locks (NFSv4, Lustre, GPFS); on NFS a dead node's locks are dropped
 *     when its lease expires (about 90 s), not at once.
 * The file holds one line naming the holder ("host H pid P since T"),
 * written after the lock is taken, so a refusal can say who holds it;
 * a release empties it, so a line found by the next holder is a dead
 * job's.
 * The file is never unlinked: removing it would let two jobs lock two
 * different files of the same name.
 */
#ifndef BATON_LOCK_H
#define BATON_LOCK_H

#include <stddef.h>

typedef struct bt_lock {
  int fd; /* -1 when not held */
} bt_lock;

/* Takes the lock on zPath (created if absent). BT_ERR if another process
 * holds it, with a message naming the file and the holder's line; or on
 * an I/O error, naming the file and errno. On success, zPrev (if not
 * NULL) receives the line of a previous, dead holder ("" if none). */
int bt_lock_acquire(bt_lock *pLock, const char *zPath, char *zPrev,
                    size_t nPrev);
/* Releases it: empties the holder line (so the next holder does not
 * report a dead job) and closes the descriptor; safe on a lock not
 * held. */
void bt_lock_release(bt_lock *pLock);

#endif /* BATON_LOCK_H */
