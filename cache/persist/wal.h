/* wal.h - parrot's write-ahead log: typed, checksummed records appended by
 * many threads, written and synced by one, replayed on open.
 *
 * A record is a type (1..255) and up to WAL_MAX_PAYLOAD bytes the WAL never
 * looks into. wal_append() copies the record into the pending batch in memory,
 * gives it the next sequence number and returns; it never waits for the disk.
 * A writer thread (group commit) takes everything pending, writes it with one
 * pwrite and syncs it as the policy says; wal_durable_seq() tells how far that
 * got and wal_wait() blocks until a given record is there.
 *
 * Failures. The pending batch has a hard cap (max_pending bytes, counting the
 * written but not yet synced bytes too); beyond it wal_append() fails with
 * -ENOBUFS and the caller simply does not persist that record. A failed write
 * or sync (ENOSPC, EIO, ...) makes the writer cut the file back to its last
 * synced size and enter a degraded state: wal_status() reports it, every
 * append fails with that error (and is counted as dropped) and the writer
 * retries every retry_ms, writing again what it still holds; once that works
 * the WAL is healthy again. Records accepted before the failure are never
 * given up while the WAL is open, so sequence numbers on disk have no holes.
 *
 * Recovery. wal_open() checks the whole file, then replays every valid record
 * in order. A torn tail (a last record cut short, or damaged with nothing
 * valid after it) is cut off and reported; damage followed by valid records
 * refuses the open with -EBADMSG and a report that names the offset and the
 * repair command. wal_check() and wal_repair() do the same off line.
 *
 * Threads. wal_append, wal_durable_seq, wal_last_seq, wal_wait, wal_status and
 * wal_rotate may be called from any thread at once. wal_open and wal_close are
 * not concurrent with anything on the same struct wal. The writer thread
 * (started by wal_open, joined by wal_close) owns the file; all I/O goes
 * through opts.vfs. One process per directory: the caller locks it.
 *
 * Errors are negative errno values. The on-disk format is described byte by
 * byte at the top of wal.c and in docs/wal.md.
 */
#ifndef PARROT_WAL_H
#define PARROT_WAL_H

#include "cache/base/crc32c.h"
#include "cache/persist/vfs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WAL_VERSION         1                              /* the format this code writes */
#define WAL_HEADER_SIZE     48                             /* v1 file header bytes */
#define WAL_RECORD_HEADER   20                             /* v1 bytes before each payload */
#define WAL_MAX_PAYLOAD     (16u << 20)                    /* a record claiming more is corrupt */
#define WAL_DEFAULT_NAME    "wal.log"                      /* file name inside the directory */
#define WAL_DEFAULT_PENDING (64u << 20)                    /* default max_pending */
#define WAL_DEFAULT_POLICY  WAL_SYNC_EVERYSEC              /* see docs/wal.md for why */
#define WAL_REPAIR_COMMAND  "parrot wal repair --data-dir" /* followed by the directory */

enum wal_policy {
    WAL_SYNC_DEFAULT = 0, /* WAL_DEFAULT_POLICY */
    WAL_SYNC_ALWAYS,      /* every batch is synced before it counts as durable */
    WAL_SYNC_BATCH,       /* like always, but gathers a group for up to batch_delay_us */
    WAL_SYNC_EVERYSEC,    /* written at once, synced at most once a second */
    WAL_SYNC_OFF,         /* written at once, never synced: the OS decides */
};

struct wal_opts {
    const char *dir;            /* required; must exist */
    const char *name;           /* NULL: WAL_DEFAULT_NAME */
    enum wal_policy policy;     /* 0: WAL_DEFAULT_POLICY */
    size_t max_pending;         /* 0: WAL_DEFAULT_PENDING; at least one biggest record */
    unsigned batch_delay_us;    /* batch: longest wait for a group; 0: 2000 */
    unsigned batch_max_records; /* batch: a group this big goes at once; 0: 256 */
    unsigned retry_ms;          /* degraded: retry period; 0: 1000 */
    struct vfs *vfs;            /* NULL: vfs_os() */
    int64_t (*now_ms)(void);    /* wall clock for headers and status; NULL: real time */
    /* Called from the writer thread when the WAL degrades or recovers (one
     * line, no newline). NULL: silent; wal_status() still tells. */
    void (*log)(void *ud, const char *msg);
    void *log_ud;
    /* Records up to min_seq are covered by a snapshot: they are not
     * replayed, and sequence numbers go on after it. A file that ends before
     * min_seq (the snapshot was written, the records had not all reached the
     * disk) is replaced by an empty one whose first number is min_seq + 1, as
     * is a missing file. 0: none. */
    uint64_t min_seq;
};

/* What a check, an open or a repair found. */
enum wal_state {
    WAL_STATE_CLEAN,      /* every byte after the header is a valid record */
    WAL_STATE_MISSING,    /* no file (open creates one) */
    WAL_STATE_TORN_TAIL,  /* damage at the end with nothing valid after it */
    WAL_STATE_CORRUPT,    /* damage followed by valid records */
    WAL_STATE_NOT_WAL,    /* wrong magic: not a parrot WAL */
    WAL_STATE_BAD_HEADER, /* truncated or damaged file header */
    WAL_STATE_TOO_NEW,    /* a format version newer than this code */
    WAL_STATE_TOO_OLD,    /* a format version no reader here understands */
};

struct wal_report {
    char path[1024];
    enum wal_state state;
    uint32_t version;         /* of the file, when its header could be read */
    uint64_t salt;            /* of the file */
    int64_t created_ms;       /* of the file */
    uint64_t base_seq;        /* the first sequence number the file may hold */
    uint64_t file_size;       /* before any truncation or repair */
    uint64_t records;         /* valid records before any damage */
    uint64_t first_seq;       /* of those records; 0 when there are none */
    uint64_t last_seq;        /* of those records; 0 when there are none */
    uint64_t valid_end;       /* offset just past the last of them */
    uint64_t bad_offset;      /* torn or corrupt: first damaged byte */
    uint64_t resume_offset;   /* corrupt: first valid record after the damage */
    uint64_t records_after;   /* corrupt: valid records after the damage */
    uint64_t dropped_bytes;   /* file_size - valid_end: what a truncation or repair removes */
    uint64_t dropped_records; /* records a truncation or repair removes (records_after) */
    bool created;             /* open: a new file was made */
    bool truncated;           /* open: the torn tail was cut off */
    bool repaired;            /* repair: a new file replaced the damaged one */
    char backup[1040];        /* repair: the copy of the original file, or "" */
    char message[1024];       /* one line for a log: what was found and what to do */
};

struct wal_status {
    enum wal_policy policy;
    int error;                 /* 0: healthy; else the errno the WAL is degraded by */
    int64_t degraded_since_ms; /* wall clock; 0 when healthy */
    int last_error;            /* the latest I/O error, even if recovered since */
    uint64_t last_seq;         /* the last sequence number handed out */
    uint64_t durable_seq;      /* see wal_durable_seq() */
    uint64_t appended;         /* records accepted since open */
    uint64_t dropped_records;  /* appends refused because the WAL was degraded */
    uint64_t dropped_bytes;    /* their payload bytes */
    uint64_t nobufs_records;   /* appends refused because the batch was full */
    uint64_t nobufs_bytes;     /* their payload bytes */
    uint64_t io_failures;      /* failed writes, syncs and truncations */
    uint64_t recoveries;       /* times the WAL came back from degraded */
    uint64_t writes, syncs;    /* batches written, syncs done */
    uint64_t rotations;
    uint64_t pending_bytes; /* in memory, not yet durable */
    uint64_t file_size;     /* bytes written to the current file */
};

/* Replay callback: one valid record. Return 0, or a negative errno to stop
 * the open (wal_open then fails with it). payload is valid for the call only. */
typedef int (*wal_replay_fn)(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud);

struct wal;

/* Open (creating if missing) o->dir/o->name, replay its records through
 * replay (may be NULL) and start the writer thread. rep (may be NULL) says
 * what was found; when the open fails because of the file's contents, its
 * message names the file, the offset and what to do. replay is only called
 * once the whole file checked out, so a refused file never reaches it.
 * Returns 0, -EBADMSG (corrupt, not a WAL, bad header), -EPROTONOSUPPORT
 * (version), an I/O error, or replay's error. */
int wal_open(const struct wal_opts *o, wal_replay_fn replay, void *ud, struct wal_report *rep,
             struct wal **out);

/* Flush what is pending (and sync it, unless the policy is off), stop the
 * writer and free w. Returns 0, or the error that kept pending records from
 * reaching the disk (they are lost). NULL is a no-op. */
int wal_close(struct wal *w);

/* Append a record (type 1..255, len <= WAL_MAX_PAYLOAD; data may be NULL when
 * len is 0). Copies it and returns at once; *seq (may be NULL) gets its
 * sequence number. Returns 0, -EINVAL, -EMSGSIZE, -ENOBUFS (batch full: not
 * stored), the error the WAL is degraded by (not stored), or -EOVERFLOW once
 * sequence numbers are exhausted (after more than 2^63 records). */
int wal_append(struct wal *w, uint8_t type, const void *data, size_t len, uint64_t *seq);

/* Between wal_hold and its wal_release, the writer takes no new record:
 * a thread about to append a run of records has them written with one
 * write (and synced with one sync) instead of the writer chasing each, and
 * wal_release wakes it for all of them. Records written before the hold are
 * still synced when due, and wal_close flushes whatever a hold kept back.
 * Nothing else changes: a record is durable, and wal_wait returns, only
 * once written and synced, so a hold delays that by its own length. Holds
 * nest (any thread); keep them short: one run of appends. */
void wal_hold(struct wal *w);
void wal_release(struct wal *w);

/* The highest sequence number durable under the policy: synced for always,
 * batch and everysec; handed to the OS for off. Lock-free. */
uint64_t wal_durable_seq(struct wal *w);

/* The last sequence number handed out (0: none yet). */
uint64_t wal_last_seq(struct wal *w);

/* Wait until record seq is durable. timeout_ms < 0 waits for ever. Returns 0,
 * -EINVAL if seq was never handed out, -ETIMEDOUT, or at once the error the
 * WAL is degraded by (the record is kept and becomes durable if the WAL
 * recovers: wait again to find out). */
int wal_wait(struct wal *w, uint64_t seq, int timeout_ms);

void wal_status(struct wal *w, struct wal_status *st);

/* Start a fresh file once a snapshot covers every record up to upto: a new
 * file (new salt, first sequence number upto + 1) with every record after upto
 * copied into it is written, synced and renamed over the old one, and the
 * directory synced. Appends go on meanwhile and end up in the new file.
 * Blocks until done. Returns 0, -EINVAL (upto > wal_last_seq), the degraded
 * error, or an I/O error (the old file then stays in use, unless only the
 * final directory sync failed). */
int wal_rotate(struct wal *w, uint64_t upto);

/* Read-only check of o->dir/o->name (only dir, name and vfs are used).
 * Returns 0 when the file is clean or missing, -EBADMSG when damaged (torn or
 * corrupt: see rep->state), -EPROTONOSUPPORT, or an I/O error. */
int wal_check(const struct wal_opts *o, struct wal_report *rep);

/* Keep every valid record before the first damage: copy the damaged file to
 * "<path>.<UTC time>.bak" (rep->backup) and sync it, write the records to a
 * new file (new salt, same first sequence number), sync it, rename it over
 * the old one and sync the directory. A clean file is left alone. Returns 0,
 * or -EBADMSG / -EPROTONOSUPPORT when the header itself is unusable (nothing
 * is changed), or an I/O error (the old file is left as it was). The caller
 * makes sure no process has the WAL open (cache/persist/datadir.h). */
int wal_repair(const struct wal_opts *o, struct wal_report *rep);

/* Write a report for people: a few "key: value" lines, then the message. */
void wal_report_print(const struct wal_report *rep, FILE *out);

const char *wal_state_name(enum wal_state s);
const char *wal_policy_name(enum wal_policy p);
/* "always", "batch", "everysec", "off" -> 0; else -EINVAL. */
int wal_policy_parse(const char *s, enum wal_policy *p);

/* The CRC32C now lives in cache/base/crc32c.h; these old names remain until
 * cache/cache.c and bench/wal_bench.c call crc32c() directly. */
static inline uint32_t wal_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return crc32c(crc, buf, len);
}

static inline bool wal_crc32c_hw(void)
{
    return crc32c_hw();
}

#endif
