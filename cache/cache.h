/* cache.h - the cache service: entries in memory, found by exact key or by
 * meaning, made durable by a write-ahead log and snapshots.
 *
 * This is the one header the HTTP front end (proxy/), the admin API and the
 * benches use; the parts below it (cache/index, cache/match, cache/persist)
 * are its business (offline.h, re-exported here, checks and repairs a data
 * directory without a running cache). It knows nothing of HTTP or of OpenAI: an entry is
 * found by key bytes (a partition and an exact key, CACHE_KEY_LEN each) and
 * an optional lookup text, and carries an opaque payload that a codec turns
 * into bytes for the log and snapshots (cache/persist/records.h).
 *
 * Life cycle: cache_new() builds an empty cache in memory; cache_open()
 * makes it durable (loads the snapshot, replays the log, starts the snapshot
 * timer) before the cache is shared; cache_free() stops the timer, writes
 * the shutdown snapshot when asked to, and closes the log.
 *
 * Threads: after cache_open() every function may be called from any thread
 * (the store has its own lock; the log its own thread). Two locks of this
 * module order things: puts hold a lock shared and deletes exclusive, each
 * across its change in memory and its log append, so the log records a put
 * and a delete of one key in the order they happened in memory; snapshots
 * run one at a time. A struct cache_query belongs to one request; its owner
 * serialises access to it.
 */
#ifndef PARROT_CACHE_H
#define PARROT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/budget.h" /* audit tallies and thresholds per partition */
#include "cache/flight.h"
#include "cache/match/verify.h"
#include "cache/offline.h" /* parrot wal check|repair, the data directory lock */
#include "upstream/embedclient.h"

#define CACHE_KEY_LEN 32
/* Semantic candidates examined per lookup: the nearest by vector, then
 * tried best score first (the lexical part of the score reorders them). */
#define CACHE_CANDIDATES 16

struct buf;
struct cache;
struct cache_entry; /* counted; see cache_entry_unref */
struct embedder;

/* Turns payloads into the bytes of a record (see cache/persist/records.h)
 * and back, and answers the questions the cache asks of them. Pure
 * functions; any thread. */
struct cache_codec {
    /* Fill words and append the tail for payload. 0 or a negative errno. */
    int (*encode)(const void *payload, uint64_t words[2], struct buf *tail);
    /* A new payload from a record's words and tail. 0, -EBADMSG for bytes
     * that are not a payload, or -ENOMEM. */
    int (*decode)(const uint64_t words[2], const void *tail, size_t len, void **payload);
    void (*free)(void *payload);         /* NULL is a no-op */
    size_t (*size)(const void *payload); /* bytes, for the memory accounting */
    /* May the payload answer a question other than its own (a semantic
     * hit)? False for an answer whose content is tied to its question. */
    bool (*reusable)(const void *payload);
};

/* Levels for cache_opts.log, in the front end's order. */
enum cache_log { CACHE_LOG_DEBUG, CACHE_LOG_INFO, CACHE_LOG_WARN, CACHE_LOG_ERROR };

struct cache_opts {
    const struct cache_codec *codec; /* required */
    /* The embedder, exactly one of the two (the store's vectors have its
     * dimension; cache_new() fails with -EINVAL without one); the cache
     * takes ownership of it, even when cache_new() fails. */
    struct embedder *emb;      /* builtin */
    struct embed_client *ec;   /* remote; its calls never block a lookup */
    const char *embedder_name; /* kind, model and dimension, as a metric label */
    float threshold;           /* semantic: the least similarity of a hit */
    /* The error budget (cache/budget.h): the largest wrong-hit rate, as a
     * 95% upper bound, before a partition's threshold rises, and the audits
     * a partition needs before it may. */
    double max_wrong_rate;
    unsigned audit_min;
    bool verifier;         /* semantic candidates must pass cache/match/verify */
    size_t max_memory;     /* bytes; beyond it the cheapest entries go */
    int64_t snap_interval; /* ms between timed snapshots; 0: none */
    size_t snap_wal_size;  /* log bytes that trigger a snapshot; 0: none */
    bool snap_on_shutdown;
    /* Where the snapshot timer and the shutdown snapshot report; NULL: not
     * reported. Called from the timer thread. */
    void (*log)(enum cache_log level, const char *msg, const char *detail);
};

/* An empty cache, in memory only. Returns 0 or a negative errno. */
int cache_new(const struct cache_opts *o, struct cache **out);

/* Stop the snapshot timer, write the shutdown snapshot (when asked), close
 * the log (it flushes what is pending) and free everything, the embedders
 * too. NULL is a no-op. No other call may be running. */
void cache_free(struct cache *c);

/* Times below (now) are wall clock milliseconds. */

/* Make the cache durable: open (or create) the write-ahead log in dir with
 * the fsync policy named by fsync, after loading the snapshot there and
 * replaying the log records it does not cover. Returns 0 with a one-line
 * summary in msg, or a negative errno with the reason (for a damaged log:
 * the file, the offset and the repair command). Before the cache is shared;
 * the caller holds the data directory's lock (cache/persist/datadir.h). */
int cache_open(struct cache *c, const char *dir, const char *fsync, int64_t now, char *msg,
               size_t msglen);

/* Write a snapshot (cache/persist/snapshot.h) and compact the log to what
 * came after it. Lookups go on meanwhile; puts wait while the store is
 * captured (a memory copy of the graphs, not the disk write). Returns 0 or a
 * negative errno, with a one-line report in msg either way. */
int cache_snapshot(struct cache *c, char *msg, size_t msglen);

/* The log's or the last snapshot's trouble, for readiness: NULL when healthy
 * or not durable. Static text. */
const char *cache_problem(struct cache *c);

/* ---- lookups ---- */

/* One request's lookup. The caller sets the keys and the text (borrowed for
 * the query's life); the cache fills the rest. Zero it before use. */
struct cache_query {
    const uint8_t *partition, *exact; /* CACHE_KEY_LEN bytes each */
    const char *text;                 /* the lookup text, or NULL: exact only */
    size_t text_len;
    int64_t max_age; /* ms; -1: any age */

    float *vec;               /* the text's embedding, or NULL */
    bool vec_done;            /* vec was computed (it may still be NULL) */
    const char *embed_result; /* the remote embedding's outcome, or NULL */
    void (*embed_wake)(struct cache_query *q);
    struct cache *embed_cache;

    struct cache_entry *hit; /* the caller's reference, released by fini */
    float sim;
    /* After a miss: the vector similarity of the farthest of the
     * CACHE_CANDIDATES nearest entries the semantic lookup looked at, or
     * -1 when the partition held fewer (or none was looked at). An entry
     * stored since, and less similar, would not have been a candidate. */
    float last_sim;

    uint64_t group; /* cache_query_group()'s, once group_done */
    bool group_done;
};

void cache_query_fini(struct cache_query *q);

/* The group of its partition q's question is filed in and looked up in:
 * with the verifier on, only questions with the same numbers and special
 * tokens can be served for each other (verify_group()), so the store keeps
 * them apart and a lookup searches its own group; 0 otherwise. Worked out
 * once per query (the lookup, the queued-answer scan and the store share
 * it), and again from the stored text on every load: never logged. */
uint64_t cache_query_group(struct cache *c, struct cache_query *q);

enum cache_result {
    CACHE_MISS,
    CACHE_HIT_EXACT,
    CACHE_HIT_SEMANTIC,
    CACHE_NEED_VECTOR, /* the remote embedder must embed the text first:
                          cache_embed(), then cache_lookup() again */
};

/* Exact, then semantic (nearest candidates above the threshold, that the
 * codec calls reusable and the verifier accepts). On a hit, q->hit and
 * q->sim are set. */
enum cache_result cache_lookup(struct cache *c, struct cache_query *q, int64_t now);

/* Exact only: for a request woken behind a single-flight leader. */
enum cache_result cache_lookup_exact(struct cache *c, struct cache_query *q, int64_t now);

/* Must the remote embedder embed q's text before it is stored with a
 * vector (or looked up by meaning)? */
bool cache_wants_vector(const struct cache *c, const struct cache_query *q);

/* q's embedding, computed now by the builtin embedder when it was not yet
 * (and kept in q, as a lookup keeps it). NULL when q has no text or nothing
 * to embed, or when the remote embedder has not answered yet
 * (cache_wants_vector). */
const float *cache_query_vector(struct cache *c, struct cache_query *q);

/* ---- answers on their way in ----
 *
 * An answer the front end has sent but not yet stored (proxy/chat.c queues
 * it) is no entry yet, and a lookup that must see it decides whether to wait
 * for it from its question alone: these say whether an entry with that
 * question could be a semantic hit for q once it is stored. */

/* The least vector similarity (cache_similarity) at which an entry of
 * partition could score a semantic hit if the lexical part of its score
 * were a perfect match: below it, no lookup there accepts the entry. */
float cache_similarity_floor(struct cache *c, const uint8_t *partition);

/* The first of texts[0..n) (questions, NUL-terminated) that the hit verifier
 * accepts as asking q's question; n when none does. With the verifier off,
 * 0 (any). Nothing is counted: no entry was turned down. */
size_t cache_verify_first(struct cache *c, const struct cache_query *q, const char *const *texts,
                          size_t n);

/* Ask the remote embedder for q's vector. Returns 0, and wake(q) runs once,
 * on the embedder's thread, when q->vec is set or the embedding failed
 * (then q->vec stays NULL). Returns a negative code when the embedding
 * cannot start (the endpoint's breaker is open): wake never runs. */
int cache_embed(struct cache *c, struct cache_query *q, void (*wake)(struct cache_query *q));

/* Store payload (taken over, freed on failure too) under q's keys with
 * q's text and vector, for ttl ms (0: forever), then log it. The entry is
 * served at once; the log catches up on its own thread. *seq gets the log
 * record's sequence number (0: not logged). Returns 0 or -ENOMEM. */
int cache_put(struct cache *c, struct cache_query *q, void *payload, double cost, int64_t ttl,
              int64_t now, uint64_t *seq);

/* Between cache_log_hold and cache_log_release, the log's writer is not
 * woken for each cache_put: a thread storing a run of answers has them
 * written with one write. Durability is unchanged (wal_hold). No-op without
 * a log. */
void cache_log_hold(struct cache *c);
void cache_log_release(struct cache *c);

/* ---- entries ---- */

/* What an entry holds. Pointers stay valid while the caller holds the
 * entry (a reference, or a scan's visit). */
struct cache_entry_info {
    uint64_t id;
    const uint8_t *partition, *exact; /* CACHE_KEY_LEN bytes each */
    int64_t created, expires;         /* wall clock ms; expires 0 = never */
    uint64_t hits;
    size_t size; /* bytes accounted */
    double cost;
    const float *vec; /* dim floats, or NULL */
    const char *text; /* may be NULL */
    const void *payload;
    bool disputed; /* exact hits only (an audit found a semantic hit wrong) */
};

void cache_entry_describe(const struct cache_entry *e, struct cache_entry_info *out);
void cache_entry_unref(struct cache_entry *e); /* NULL is a no-op */
const void *cache_entry_payload(const struct cache_entry *e);

/* The entry with this id, or NULL; the caller owns a reference. Not a hit. */
struct cache_entry *cache_get_id(struct cache *c, uint64_t id);

/* Call visit on every entry, in no particular order, under the store's read
 * lock (visit must not block or call back into the cache); a non-zero
 * return stops the scan and is returned. */
int cache_scan(struct cache *c, int (*visit)(void *ud, const struct cache_entry *e), void *ud);

/* The similarity of two vectors of the cache's dimension, as lookups score
 * it (before the lexical part). */
float cache_similarity(const struct cache *c, const float *a, const float *b);

/* The dimension of the cache's vectors (floats). */
unsigned cache_dim(const struct cache *c);

/* An entry to remove: the one under exact, only if its id is id (0: any),
 * so a delete decided on an old entry spares the answer that replaced it. */
struct cache_ref {
    uint64_t id;
    uint8_t exact[CACHE_KEY_LEN];
};

/* Remove refs[0..n) and log one DEL record per REC_DEL_MAX removed keys, so
 * the removal survives a restart. *removed gets how many entries were
 * removed; *logged is false when the log could not take the record (the
 * entries are gone from memory all the same). Returns 0 or -ENOMEM. */
int cache_delete(struct cache *c, const struct cache_ref *refs, size_t n, size_t *removed,
                 bool *logged);

/* Embed text[0..len) with the cache's embedder into a malloc'd vector of
 * *dim floats comparable with the stored ones. The remote embedder is waited
 * for, at most its timeout: not for the request path. Returns 0; -ENODATA
 * when the text has nothing to embed; -EIO when the remote embedder failed
 * (*why names how); or -ENOMEM. */
int cache_embed_text(struct cache *c, const char *text, size_t len, float **vec, unsigned *dim,
                     const char **why);

/* ---- replication (cache/replica/replica.h, docs/scale-out.md) ----
 *
 * The service knows nothing of Redis: it reports every put and delete made
 * through it to one change hook, and takes the changes other replicas made
 * through cache_apply_put() and cache_apply_del(), which do not report them
 * again. An entry's id is a hash of its exact key and its creation time, so
 * every replica, every replay of the log and every snapshot name one entry
 * alike. */

enum cache_change_kind { CACHE_CHANGE_PUT, CACHE_CHANGE_DEL };

/* One change, borrowed for the hook's call only. */
struct cache_change {
    enum cache_change_kind kind;
    uint64_t seq; /* its log record's sequence number (0: not logged) */
    /* PUT: the entry, and its record (cache/persist/records.h) */
    uint64_t id;
    const uint8_t *exact; /* CACHE_KEY_LEN bytes */
    int64_t expires;      /* wall clock ms; 0 = never */
    const void *rec;
    size_t rec_len;
    /* DEL: the entries removed */
    const struct cache_ref *refs;
    size_t nrefs;
};

/* Report every later put and delete to hook(ud, change). The hook is called
 * on the thread that made the change, holding the lock that orders a put
 * and a delete of one key (see the top), so it must only copy the change
 * and return. Before the cache is shared. */
void cache_set_change_hook(struct cache *c, void (*hook)(void *ud, const struct cache_change *ch),
                           void *ud);

/* Store the entry another replica stored: rec is its PUT record. It gets
 * the same id, a vector from this cache's embedder (the remote one is
 * waited for), and is logged here. An entry that has expired by now is
 * skipped. *seq gets the log record's sequence number (0: not logged).
 * Returns 0, -EBADMSG for bytes that are not a record, or -ENOMEM. */
int cache_apply_put(struct cache *c, const void *rec, size_t len, int64_t now, uint64_t *seq);

/* Remove what another replica removed, as cache_delete() does, without
 * reporting it to the hook. *seq as for cache_apply_put(). 0 or -ENOMEM. */
int cache_apply_del(struct cache *c, const struct cache_ref *refs, size_t n, size_t *removed,
                    uint64_t *seq);

/* ---- single-flight ---- */

/* One provider call per exact key at a time (cache/flight.h): 1 when the
 * caller leads (it calls cache_flight_done later), 0 when w waits, or a
 * negative errno when it runs alone. */
int cache_flight_join(struct cache *c, const uint8_t *exact, struct flight_waiter *w);
void cache_flight_done(struct cache *c, const uint8_t *exact);

/* ---- audits (docs/audit.md) ---- */

/* What cache_audit_record() did. */
struct cache_audit_outcome {
    bool disputed;          /* the entry was found and flagged */
    bool moved;             /* the partition's threshold moved */
    bool tracked;           /* the partition has a state (the table was not full) */
    struct budget_part now; /* its state after the audit, when tracked */
};

/* Record an audit of a semantic hit on entry id (stored under exact, in
 * partition): its verdict goes into the partition's tallies, which may
 * move its threshold (cache/budget.h); a wrong hit disputes the entry,
 * which then serves exact hits only. Both are logged (DISPUTE and AUDIT
 * records), so they survive a restart. Returns 0, or -ENOMEM when the log
 * could not take a record (memory holds the change all the same). */
int cache_audit_record(struct cache *c, const uint8_t *partition, const uint8_t *exact, uint64_t id,
                       bool different, struct cache_audit_outcome *out);

/* Up to max partitions' audit states, most audited first; returns how many. */
size_t cache_audit_partitions(struct cache *c, struct budget_part *out, size_t max);

/* The hit verifier's tables (WordNet, word vectors), for judging answers
 * the way questions are checked; NULL when there are none. */
const struct verify_tables *cache_verify_tables(const struct cache *c);

/* The threshold a semantic lookup in partition runs at. */
float cache_threshold(struct cache *c, const uint8_t *partition);

/* ---- statistics ---- */

struct cache_stats {
    size_t entries, partitions, indexed_partitions, memory;
    uint64_t evictions, expirations, replaced;
    uint64_t rejected[VERIFY_REASONS]; /* semantic candidates turned down */
    uint64_t rejected_unreusable;      /* ... because the codec said so */
    uint64_t rejected_disputed;        /* ... because an audit disputed them */
    uint64_t disputes;                 /* entries disputed by audits (since start) */
    struct budget_totals audit;        /* audits recorded, partitions raised */
    float threshold;                   /* the configured (base) threshold */
    const char *embedder_name;
    bool remote; /* embed (below) is set */
    struct embed_client_stats embed;
    bool durable; /* the rest is set */
    uint64_t wal_appended, wal_last_seq, wal_durable_seq, wal_file_size, log_errors;
    bool wal_degraded;
    uint64_t snaps, snap_failures, snap_last_entries, snap_last_bytes, snap_last_ms_taken;
    uint64_t loaded_ms;
    /* cache_open's snapshot: graphs adopted as written, graphs rebuilt
     * (a graph that did not match its entries). */
    uint64_t loaded_graphs, rebuilt_graphs;
    bool snap_failing;
};

/* A consistent-enough copy of the counters (each read atomically). */
void cache_get_stats(struct cache *c, struct cache_stats *st);

#endif
