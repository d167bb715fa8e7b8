/* snapshot.h - the whole cache in one checksummed file, so that a restart
 * loads the entries and the HNSW graphs as they were (no graph is rebuilt)
 * and replays only the write-ahead log records written after it.
 *
 * A snapshot records the WAL sequence number it covers (wal_seq): every
 * record up to it is reflected in the file, so after writing one the caller
 * rotates the WAL to drop them (wal_rotate), and on start-up opens the WAL
 * with min_seq = wal_seq so that only newer records are replayed.
 *
 * The caller takes wal_seq = wal_last_seq() *before* snap_write captures the
 * store. Every writer changes the store first and appends its WAL record
 * second, so a record numbered up to wal_seq describes a change that the
 * capture already sees; a record after it may or may not be in the capture,
 * and replaying it on top gives the same state either way (a PUT replaces the
 * entry under its exact key, a delete deletes). See docs/snapshot.md.
 *
 * The file is written to DIR/snapshot.tmp, synced, renamed to
 * DIR/snapshot.bin and the directory synced; a crash at any point leaves the
 * previous snapshot (or none) and the WAL that goes with it. All I/O goes
 * through a struct vfs. The format is described byte by byte at the top of
 * snapshot.c and in docs/snapshot.md.
 *
 * What an entry's record holds besides its id, partition and vector is the
 * caller's business (the cache stores its log's PUT payload): snap_codec
 * turns an entry into bytes and bytes back into an entry.
 *
 * Threads: snap_write may run while other threads use the store (it holds
 * the store's read lock only while it captures); one snap_write at a time
 * per directory. snap_load runs before the store is shared.
 */
#ifndef PARROT_SNAPSHOT_H
#define PARROT_SNAPSHOT_H

#include "cache/index/store.h"
#include "cache/persist/vfs.h"
#include "cache/base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_VERSION   1
#define SNAP_NAME      "snapshot.bin"
#define SNAP_TMP_NAME  "snapshot.tmp"
#define SNAP_MAX_ENTRY (128u << 20) /* an entry section claiming more is corrupt */

struct snap_codec {
    /* Append the record for e (everything but its id, partition and
     * vector) to out. 0 or a negative errno, which stops the write. */
    int (*encode)(void *ud, const struct store_entry *e, const uint8_t *partition, struct buf *out);
    /* Put an entry back into the store under id, with vector vec (NULL:
     * none). 0: stored; 1: left out on purpose (expired, or a record this
     * version cannot read); a negative errno stops the load. */
    int (*restore)(void *ud, uint64_t id, const float *vec, const void *rec, size_t len);
    void *ud;
};

struct snap_opts {
    const char *dir;   /* required */
    struct vfs *vfs;   /* NULL: vfs_os() */
    unsigned dim;      /* the store's vector dimension */
    uint32_t embedder; /* identifies the embedder (the cache: CRC32C of its name) */
    int64_t now_ms;    /* written into the header */
};

struct snap_report {
    char path[1024];
    bool found;            /* load: there was a snapshot */
    bool foreign;          /* load: another embedder's: entries came without vectors */
    uint64_t wal_seq;      /* the WAL records it covers: 1..wal_seq */
    int64_t created_ms;    /* of the file */
    uint64_t bytes;        /* file size */
    uint64_t entries;      /* entry sections in the file */
    uint64_t loaded;       /* load: entries stored */
    uint64_t skipped;      /* load: entries restore() left out */
    uint64_t graphs;       /* graph sections in the file */
    uint64_t graphs_built; /* load: partitions whose graph had to be rebuilt */
    uint64_t bad_offset;   /* load failure: offset of the damaged part */
    char message[1024];    /* one line: what happened, and on failure what to do */
};

/* Capture s and write it as the snapshot covering WAL records up to wal_seq.
 * 0, or a negative errno (the previous snapshot is then untouched and the
 * temporary file removed). rep (may be NULL) gets counts and a message. */
int snap_write(const struct snap_opts *o, struct store *s, uint64_t wal_seq,
               const struct snap_codec *c, struct snap_report *rep);

/* Load DIR/snapshot.bin into the empty store s. No file: 0 with
 * rep->found false. A damaged or foreign file: -EBADMSG (-EPROTONOSUPPORT
 * for a newer version) with a message naming the file, the offset and the
 * remedy; s then holds part of it and should be discarded. Every CRC is
 * checked, and every graph is validated by hnsw_load before it is used.
 * Entries restore() leaves out are taken out of their graph; a graph that
 * does not match its partition's entries is rebuilt (rep->graphs_built).
 * Also removes a DIR/snapshot.tmp that a crash left behind. */
int snap_load(const struct snap_opts *o, struct store *s, const struct snap_codec *c,
              struct snap_report *rep);

/* Read-only check of DIR/snapshot.bin (vfs NULL: vfs_os()) for
 * `parrot wal check`: every check snap_load makes, with the file's own
 * dimension and embedder, without a store and without touching any file
 * (a snapshot.tmp may belong to a running parrot). rep->loaded counts the
 * valid entries. Returns 0 (no file: rep->found false), or snap_load's
 * errors with the same message. */
int snap_check(const char *dir, struct vfs *vfs, struct snap_report *rep);

#endif
