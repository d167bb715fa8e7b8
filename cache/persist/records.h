/* records.h - the cache's records in the write-ahead log and in snapshots.
 *
 * A stored answer is logged as one REC_PUT record (cache/persist/wal.c
 * frames it: length, sequence number, CRC32C). On start-up the log is
 * replayed in order; a later PUT for the same exact key replaces an earlier
 * one, just as it did live. Vectors are not logged: replay embeds the lookup
 * text again, which takes microseconds and keeps the log valid across
 * embedder changes. A snapshot stores each entry as the same PUT payload.
 *
 * PUT payload, version 1 (little-endian, fixed width; see cache/base/le.h):
 *   u8   version (1)
 *   i64  created, wall clock ms
 *   i64  expires, wall clock ms (0 = never)
 *   u64  cost, the bits of an IEEE-754 double
 *   32B  partition key
 *   32B  exact key
 *   u64  word 0, u64 word 1: the payload's (see below)
 *   str  lookup text (absent: exact lookups only)
 *   then the payload's tail, to the end of the record.
 * PUT payload, version 2: version 1 with one more byte after the version,
 * written only for an entry with a flag set (so every other entry's bytes
 * are as version 1 wrote them, and a parrot that predates version 2 only
 * fails to read flagged entries):
 *   u8   version (2)
 *   u8   flags: bit 0 REC_FLAG_DISPUTED (an audit judged a semantic hit
 *        on this entry wrong: it serves exact hits only); other bits 0
 *   then the version 1 fields from `created` on.
 * A str is a u32 length and the bytes; a length of 0xffffffff means
 * "absent" (rec_put_str, rec_get_str).
 *
 * The payload is opaque here: its codec (cache/cache.h) fills the two words
 * and the tail. The words sit before the lookup text because version 1 was
 * written by a parrot that logged the OpenAI answer directly: the OpenAI
 * codec (proxy/openai/completion.h) keeps the token counts in them and the
 * model, JSON body, SSE replay and usage chunk as four strs in the tail, so
 * the bytes on disk did not change when the format was split.
 *
 * DEL payload, version 1: entries removed through the admin API (delete or
 * invalidate). Replay removes whatever entry the log holds under each exact
 * key at that point, exactly as the live delete did, so a restart does not
 * bring deleted answers back; a later PUT for the key adds it again.
 *   u8   version (1)
 *   u32  count, 1..REC_DEL_MAX
 *   then count exact keys of 32 bytes each; nothing follows.
 * A parrot that predates DEL skips these records as unreadable.
 *
 * DISPUTE payload: the DEL payload's format (rec_encode_del), listing the
 * exact keys of entries an audit disputed. Replay sets REC_FLAG_DISPUTED
 * on whatever entry the log holds under each key at that point.
 *
 * AUDIT payload, version 1: one partition's audit tallies and threshold
 * (cache/budget.h), logged whenever they change its threshold, and for
 * every tracked partition after each snapshot (snapshots do not hold
 * them, so the compacted log must). The last record of a partition wins.
 *   u8   version (1)
 *   32B  partition key
 *   u32  threshold, the bits of an IEEE-754 float
 *   u64  audits, u64 wrong: all audits and those judged different
 *   u64  window audits, u64 window wrong: since the threshold last moved
 *   nothing follows.
 * A parrot that predates DISPUTE and AUDIT skips both as unreadable.
 *
 * Pure functions; any thread.
 */
#ifndef PARROT_RECORDS_H
#define PARROT_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "cache/base/buf.h"

#define REC_PUT     1
#define REC_DEL     2
#define REC_DISPUTE 3
#define REC_AUDIT   4
#define REC_KEY_LEN 32
#define REC_DEL_MAX 4096 /* keys per DEL record: 128 KiB */

#define REC_FLAG_DISPUTED 0x1

struct rec_put {
    uint8_t flags; /* REC_FLAG_*; 0 is written as version 1 */
    int64_t created, expires;
    double cost;
    uint8_t partition[REC_KEY_LEN], exact[REC_KEY_LEN];
    uint64_t words[2]; /* the payload's */
    char *text;        /* NULL: exact lookups only */
    /* The payload's tail: encoding appends it; decoding points it into the
     * record (nothing is copied). */
    const void *tail;
    size_t tail_len;
};

/* Append the PUT payload for p to out. Returns 0 or -ENOMEM / -E2BIG. */
int rec_encode_put(const struct rec_put *p, struct buf *out);

/* Parse a PUT payload into *p: p->text is malloc'd, p->tail points into
 * data. Returns 0, -EBADMSG for a payload that is not a valid version 1 or 2 PUT
 * (the tail is the codec's to check), or -ENOMEM. */
int rec_decode_put(const void *data, size_t len, struct rec_put *p);

/* Free what rec_decode_put() allocated. */
void rec_put_fini(struct rec_put *p);

/* Append the DEL payload for keys[0..n) (1 <= n <= REC_DEL_MAX) to out.
 * Returns 0, -EINVAL for a bad n, or -ENOMEM. */
int rec_encode_del(const uint8_t (*keys)[REC_KEY_LEN], size_t n, struct buf *out);

/* Parse a DEL payload: *keys points into data (nothing is allocated).
 * Returns 0 or -EBADMSG. */
int rec_decode_del(const void *data, size_t len, const uint8_t (**keys)[REC_KEY_LEN], size_t *n);

/* An AUDIT record's fields. */
struct rec_audit {
    uint8_t partition[REC_KEY_LEN];
    float threshold;
    uint64_t audits, wrong, waudits, wwrong;
};

/* Append the AUDIT payload for a to out. 0 or -ENOMEM. */
int rec_encode_audit(const struct rec_audit *a, struct buf *out);

/* Parse an AUDIT payload. 0 or -EBADMSG. */
int rec_decode_audit(const void *data, size_t len, struct rec_audit *a);

/* ---- for payload codecs: the str of the format ---- */

/* Append s[0..n), or "absent" when !present. 0 or -ENOMEM / -E2BIG. */
int rec_put_str(struct buf *b, const char *s, size_t n, int present);

/* A reader over a tail. */
struct rec_reader {
    const uint8_t *p, *end;
};

/* The next str as a NUL-terminated malloc'd copy in *out (NULL when
 * absent), its length in *len when len is not NULL. 0, -EBADMSG or
 * -ENOMEM. */
int rec_get_str(struct rec_reader *rd, char **out, size_t *len);

#endif
