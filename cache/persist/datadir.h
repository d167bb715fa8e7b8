/* datadir.h - one process per data directory.
 *
 * The WAL and the snapshots assume that they are the only writers of their
 * directory: two parrots appending to one wal.log interleave records and each
 * rotates the other's entries away. datadir_lock() takes an exclusive flock
 * on DIR/parrot.lock and writes the holder's pid into it, so a second server,
 * or `parrot wal repair` against a live directory, is refused with a message
 * naming the process that holds it. The kernel drops the lock when the holder
 * exits, however it exits, so a crash never leaves a stale lock behind.
 *
 * Threads: call from main() before any thread starts; the handle is not
 * shared.
 */
#ifndef PARROT_DATADIR_H
#define PARROT_DATADIR_H

#include <stddef.h>

#define DATADIR_LOCK_NAME "parrot.lock"

struct datadir_lock;

/* Lock dir (which must exist) for this process. Returns 0 and a handle, or
 * -EWOULDBLOCK when another process holds it, or another negative errno;
 * on failure err holds one line naming the directory (and the holder's pid
 * when it could be read). */
int datadir_lock(const char *dir, struct datadir_lock **out, char *err, size_t errlen);

/* Release the lock and free l. The lock file stays: removing it would let a
 * third process lock a new file while a second still waits on the old one.
 * NULL is a no-op. */
void datadir_unlock(struct datadir_lock *l);

#endif
