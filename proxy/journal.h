/* journal.h - the cache's records in the write-ahead log.
 *
 * A stored answer is logged as one JOURNAL_PUT record (cache/wal.c frames
 * it: length, sequence number, CRC32C). On start-up the log is replayed in
 * order; a later PUT for the same exact key replaces an earlier one, just as
 * it did live. Vectors are not logged: replay embeds the lookup text again,
 * which takes microseconds and keeps the log valid across embedder changes.
 *
 * PUT payload, version 1 (little-endian, fixed width; see cache/le.h):
 *   u8   version (1)
 *   i64  created, wall clock ms
 *   i64  expires, wall clock ms (0 = never)
 *   u64  cost, the bits of an IEEE-754 double
 *   32B  partition key
 *   32B  exact key
 *   i64  prompt_tokens, i64 completion_tokens
 *   then five byte strings, each a u32 length and the bytes, in this order:
 *   lookup text, model, JSON body, SSE replay, usage chunk; a length of
 *   0xffffffff means "absent" (no lookup text, no usage).
 *
 * DEL payload, version 1: entries removed through the admin API (delete or
 * invalidate). Replay removes whatever entry the log holds under each exact
 * key at that point, exactly as the live delete did, so a restart does not
 * bring deleted answers back; a later PUT for the key adds it again.
 *   u8   version (1)
 *   u32  count, 1..JOURNAL_DEL_MAX
 *   then count exact keys of 32 bytes each; nothing follows.
 * A parrot that predates DEL skips these records as unreadable.
 * Pure functions; any thread.
 */
#ifndef PARROT_JOURNAL_H
#define PARROT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cache/base/buf.h"
#include "proxy/openai/completion.h"

#define JOURNAL_PUT     1
#define JOURNAL_DEL     2
#define JOURNAL_KEY_LEN 32
#define JOURNAL_DEL_MAX 4096 /* keys per DEL record: 128 KiB */

struct journal_put {
    int64_t created, expires;
    double cost;
    uint8_t partition[JOURNAL_KEY_LEN], exact[JOURNAL_KEY_LEN];
    char *text; /* NULL: exact lookups only */
    struct cmpl_rendered r;
};

/* Append the PUT payload for p to out. Returns 0 or -ENOMEM / -E2BIG. */
int journal_encode_put(const struct journal_put *p, struct buf *out);

/* Parse a PUT payload into *p (strings malloc'd). Returns 0, -EBADMSG for a
 * payload that is not a valid version-1 PUT, or -ENOMEM. */
int journal_decode_put(const void *data, size_t len, struct journal_put *p);

/* Free what journal_decode_put() allocated, except p->r when its ownership
 * was taken (then zero it first). */
void journal_put_fini(struct journal_put *p);

/* Append the DEL payload for keys[0..n) (1 <= n <= JOURNAL_DEL_MAX) to
 * out. Returns 0, -EINVAL for a bad n, or -ENOMEM. */
int journal_encode_del(const uint8_t (*keys)[JOURNAL_KEY_LEN], size_t n, struct buf *out);

/* Parse a DEL payload: *keys points into data (nothing is allocated).
 * Returns 0 or -EBADMSG. */
int journal_decode_del(const void *data, size_t len, const uint8_t (**keys)[JOURNAL_KEY_LEN],
                       size_t *n);

#endif
