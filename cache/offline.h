/* offline.h - a data directory's log and snapshot, checked or repaired
 * without a running cache: what `parrot wal check|repair` does.
 *
 * cache.h re-exports this header, so the front end reaches the persistence
 * layer (cache/persist/) only through the cache. The directory lock that a
 * repair needs (cache/persist/datadir.h) is exported with it.
 *
 * Threads: any, but not against a directory a cache of this process has
 * open; reports go to the stream given, which the caller owns.
 */
#ifndef PARROT_CACHE_OFFLINE_H
#define PARROT_CACHE_OFFLINE_H

#include <stdio.h>

#include "cache/persist/datadir.h"

/* Check dir's write-ahead log, then its snapshot, without changing any
 * file (a running parrot may own them). Writes the log's report, then a
 * "snapshot:" line, to out. Returns 0 when both are clean or missing, else
 * the log's negative errno or, when the log is clean, the snapshot's. */
int cache_wal_check(const char *dir, FILE *out);

/* Repair dir's write-ahead log: keep every valid record before the first
 * damage and a backup of the damaged file (cache/persist/wal.h explains
 * how). Writes the report to out. Returns 0 (a clean log is left alone) or
 * a negative errno. The caller holds dir's lock (datadir_lock), so no
 * process appends to the log meanwhile. */
int cache_wal_repair(const char *dir, FILE *out);

#endif
