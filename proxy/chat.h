/* chat.h - the cached chat-completions route: what to look up, what to
 * store, and how a hit is answered.
 *
 * server.c owns the HTTP plumbing; this module owns the cache policy for one
 * request (struct chat_req) and the state shared by all of them (struct chat:
 * the entry store, the embedder, the single-flight table, counters).
 *
 * Threads: struct chat is shared and thread-safe. A struct chat_req belongs
 * to one request; its owner serialises access to it.
 */
#ifndef PARROT_CHAT_H
#define PARROT_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/openai/canon.h"
#include "cache/base/buf.h"
#include "proxy/openai/completion.h"
#include "proxy/flight.h"
#include "proxy/headers.h"

/* Semantic candidates examined per lookup: the nearest by vector, then
 * tried best score first (the lexical part of the score reorders them). */
#define CHAT_CANDIDATES 16

struct cJSON;
struct cfg;
struct chat;
struct embedder;
struct store;
struct store_entry;
struct store_ref;

enum chat_verdict {
    CHAT_BYPASS, /* ask the provider; the cache is not involved (or only stores) */
    CHAT_HIT,    /* serve r->hit */
    CHAT_MISS,   /* ask the provider; store the answer if r->store */
    CHAT_REFUSE, /* only-if-cached and nothing cached: answer 504 */
    CHAT_EMBED,  /* the remote embedder must embed the lookup text first: call
                    chat_embed(), then chat_lookup() again */
};

struct chat_req {
    struct canon_key key;
    bool keyed;                             /* key is valid */
    float *vec;                             /* embedding of the lookup text, or NULL */
    bool vec_done;                          /* vec was computed (it may still be NULL) */
    const char *embed_result;               /* the remote embedding's outcome, or NULL */
    void (*embed_wake)(struct chat_req *r); /* chat_embed()'s callback */
    struct chat *embed_ch;                  /* and its cache */
    struct hdr_cache_control cc;
    int64_t ttl;        /* milliseconds, for storing */
    bool stream;        /* the client asked for SSE */
    bool include_usage; /* stream_options.include_usage */
    bool store;         /* the answer may be stored */
    const char *why;    /* why the cache was bypassed, for Cache-Status */
    char model[64];     /* the request's model (cut), for logs and metrics */

    /* Lookup result. */
    enum chat_verdict verdict;
    struct store_entry *hit;
    float sim;
    bool exact;
    bool coalesced; /* the hit came from waiting behind an identical request */

    /* Single-flight. */
    bool leader;
    struct flight_waiter waiter;
    void *owner; /* the caller's request, for waiter callbacks */

    /* A streamed answer being reassembled for storing. */
    struct cmpl_asm as;
    bool stored;
    uint64_t wal_seq; /* the stored answer's log record (0: not logged); never sent to clients */
};

/* The cache shared by all requests, from the options in c. */
int chat_new(const struct cfg *c, struct chat **out);
void chat_free(struct chat *ch);

/* Derive keys and controls. doc is the validated request body parsed from
 * raw[0..raw_len); the header values may be NULL. Never fails: problems turn
 * into a bypass verdict. */
void chat_req_init(struct chat *ch, struct chat_req *r, const struct cJSON *doc, const char *raw,
                   size_t raw_len, const char *authorization, const char *tenant_value,
                   const char *cache_control, const char *ttl_header);
void chat_req_fini(struct chat_req *r);

/* Times below (now) are wall clock milliseconds. */

/* Make the cache durable: open (or create) the write-ahead log in dir with
 * the fsync policy named by fsync, and load the entries it holds. Returns 0
 * with a one-line summary in msg, or a negative errno with the reason (for
 * a damaged log: the file, the offset and the repair command). */
int chat_open_journal(struct chat *ch, const char *dir, const char *fsync, int64_t now, char *msg,
                      size_t msglen);

/* Write a snapshot of the cache (cache/snapshot.h) and compact the log to
 * what came after it. Lookups go on meanwhile; stores wait while the store
 * is captured (a memory copy of the graphs, not the disk write). Returns 0
 * or a negative errno, with a one-line report in msg either way. For POST
 * /admin/snapshot, the timer, and shutdown. */
int chat_snapshot(struct chat *ch, char *msg, size_t msglen);

/* The log's or the last snapshot's trouble, for /readyz: NULL when healthy
 * or not logging. */
const char *chat_journal_problem(struct chat *ch);

/* Decide and, on a hit, set r->hit. Counts the outcome. */
enum chat_verdict chat_lookup(struct chat *ch, struct chat_req *r, int64_t now);

/* Ask the remote embedder for r's vector (after CHAT_EMBED). Returns 0, and
 * wake(r) runs once, on the embedder's thread, when r->vec is set or the
 * embedding failed (then r->vec stays NULL: the request goes on as a miss,
 * stored for exact hits only). Returns a negative code when the embedding
 * cannot start (the endpoint's breaker is open): wake never runs, and the
 * next chat_lookup() goes on without a vector. */
int chat_embed(struct chat *ch, struct chat_req *r, void (*wake)(struct chat_req *r));

/* Exact lookup only, for a request woken behind a single-flight leader. */
enum chat_verdict chat_relookup(struct chat *ch, struct chat_req *r, int64_t now);

/* The hit's response body (JSON, or the SSE replay when r->stream), written
 * to a malloc'd buffer. NULL when out of memory. */
char *chat_hit_body(const struct chat_req *r, int64_t now, size_t *len);

/* The cache headers for this request's response (Cache-Status, Age,
 * x-parrot-*), passed one by one to add(). */
void chat_headers(const struct chat_req *r, int64_t now,
                  void (*add)(void *ud, const char *name, const char *value), void *ud);

/* The outcome for the request log: "hit-exact", "hit-semantic",
 * "hit-coalesced", "miss", "bypass" or "refused". */
const char *chat_outcome(const struct chat_req *r);

/* Streamed answer bytes, as relayed to the client. */
void chat_feed(struct chat_req *r, const char *p, size_t n);

/* The provider's answer is complete: store it when allowed. body/len is the
 * whole body for a non-streamed answer (ignored for SSE, which was fed).
 * status is negative when the transfer failed: nothing is stored, and the
 * skip is counted. */
void chat_store(struct chat *ch, struct chat_req *r, long status, bool sse, const char *body,
                size_t len, int64_t now);

/* Single-flight for r's exact key. Returns true when r must wait (its
 * waiter.wake will be called); false when it leads or runs alone. */
bool chat_flight_join(struct chat *ch, struct chat_req *r, void (*wake)(struct flight_waiter *));

/* Close r's flight if it leads one. Idempotent. */
void chat_flight_done(struct chat *ch, struct chat_req *r);

/* The answer a hit serves (its model and original usage). r must be a hit. */
const struct cmpl_rendered *chat_hit_answer(const struct chat_req *r);

/* A snapshot of the cache's counters, for the dashboard. */
struct chat_stats {
    uint64_t hits_exact, hits_semantic, hits_coalesced, misses, bypasses, refused;
    uint64_t stores, store_skipped, journal_errors, rejected, evictions;
    size_t entries, memory;
};
void chat_get_stats(struct chat *ch, struct chat_stats *st);

/* Prometheus text for the cache's counters. */
int chat_metrics(struct chat *ch, struct buf *out);

/* ---- for the admin API ---- */

/* The entry store, for reading. Remove entries through chat_delete(),
 * which logs the removal. */
struct store *chat_entries(struct chat *ch);

/* Embed text[0..len) with the cache's embedder, whichever it is, into a
 * malloc'd vector of *dim floats comparable with the stored ones. The
 * remote embedder is waited for, at most its timeout: not for the request
 * path, which must not block. Returns 0; -ENODATA when the text has nothing
 * to embed; -EIO when the remote embedder failed (*why names how: timeout,
 * breaker_open, ...); or -ENOMEM. */
int chat_embed_text(struct chat *ch, const char *text, size_t len, float **vec, unsigned *dim,
                    const char **why);

/* Remove refs[0..n) (see store_remove) and log one DEL record per
 * JOURNAL_DEL_MAX removed keys, so the removal survives a restart. *removed
 * gets how many entries were removed; *logged is false when the log could
 * not take the record (the entries are gone from memory all the same).
 * Returns 0 or -ENOMEM. */
int chat_delete(struct chat *ch, const struct store_ref *refs, size_t n, size_t *removed,
                bool *logged);

#endif
