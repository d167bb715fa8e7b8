/* chat.h - the request policy of POST /v1/chat/completions: what to look
 * up, what to store, and how a hit is answered.
 *
 * server.c owns the HTTP plumbing and the cache service (cache/cache.h)
 * owns the entries, their log and snapshots; this module turns one request
 * (struct chat_req) into keys and a verdict: Cache-Control, the tenant's
 * partition, TTL, bypasses, the verdict counters, and rendering a hit.
 *
 * Threads: struct chat is shared and thread-safe. A struct chat_req belongs
 * to one request; its owner serialises access to it.
 */
#ifndef PARROT_CHAT_H
#define PARROT_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/base/buf.h"
#include "cache/cache.h"
#include "cache/replica/replica.h"
#include "proxy/headers.h"
#include "proxy/openai/canon.h"
#include "proxy/openai/completion.h"

struct cJSON;
struct cfg;
struct chat;

enum chat_verdict {
    CHAT_BYPASS, /* ask the provider; the cache is not involved (or only stores) */
    CHAT_HIT,    /* serve r->hit */
    CHAT_MISS,   /* ask the provider; store the answer if r->store */
    CHAT_REFUSE, /* only-if-cached and nothing cached: answer 504 */
    CHAT_EMBED,  /* the remote embedder must embed the lookup text first: call
                    chat_embed(), then chat_lookup() again */
    CHAT_WAIT,   /* an answer still queued for storing could serve r, or the queue
                    is behind: call chat_await(), then chat_lookup() again */
};

struct chat_req {
    enum cmpl_kind kind; /* CMPL_CHAT, CMPL_TEXT (legacy) or CMPL_RESPONSE */
    struct canon_key key;
    bool keyed;                             /* key is valid */
    struct cache_query q;                   /* the lookup, over key's bytes */
    void (*embed_wake)(struct chat_req *r); /* chat_embed()'s callback */
    struct hdr_cache_control cc;
    int64_t ttl;        /* milliseconds, for storing */
    bool stream;        /* the client asked for SSE */
    bool include_usage; /* stream_options.include_usage */
    bool store;         /* the answer may be stored */
    const char *why;    /* why the cache was bypassed, for Cache-Status */
    char model[64];     /* the request's model (cut), for logs and metrics */

    /* Lookup result. */
    enum chat_verdict verdict;
    bool exact;     /* r->q.hit and r->q.sim hold the hit */
    bool coalesced; /* the hit came from waiting behind an identical request */

    /* Waiting for the store queue (CHAT_WAIT, chat_await). */
    uint64_t await_seq;                     /* until this queued answer is stored */
    bool paced;                             /* waited once for a queue behind already */
    struct chat_req *await_next;            /* chat's list of waiters */
    void (*await_wake)(struct chat_req *r); /* chat_await()'s callback */

    /* Single-flight: here, and across replicas (chat_shared_join). */
    bool leader;
    struct flight_waiter waiter;
    bool shared_lead; /* leads for every replica: releases the lock when done */
    struct replica_waiter rwaiter;
    void *owner; /* the caller's request, for waiter callbacks */

    /* A streamed answer being reassembled for storing. */
    struct cmpl_asm as;
    uint64_t wal_seq; /* the stored answer's log record (0: not logged); never sent to clients */
};

/* The policy shared by all requests, from the options in c, over cache
 * (borrowed; NULL: the cache is off and every request bypasses it). */
int chat_new(const struct cfg *c, struct cache *cache, struct chat **out);
void chat_free(struct chat *ch);

/* Who a request's answers belong to: the request's Authorization header,
 * its tenant (a client key's tenant, or the configured tenant header's
 * value) and its x-parrot-namespace (checked by front_namespace_ok). Each
 * may be NULL. */
struct chat_scope {
    const char *authorization;
    const char *tenant_value;
    const char *ns;
};

/* Enough for any tenant chat_tenant() writes but the longest shared scopes
 * (which it cuts). */
#define CHAT_TENANT_MAX 256

/* The tenant string hashed into every key of a request of this scope: the
 * namespace, if any, then the operator's shared scope, else a hash of the
 * tenant value, else a hash of the Authorization header. Hashed, so that a
 * key never sits in memory longer than the request and a client with a
 * bogus key can only ever reach its own, empty, partition. Written to
 * out[0..outlen), NUL-terminated. */
void chat_tenant(const struct chat *ch, const char *authorization, const char *tenant_value,
                 const char *ns, char *out, size_t outlen);

/* The TTL (ms) of what a request stores: its x-parrot-ttl header (whole
 * seconds, checked by the front door) or the configured cache-ttl. */
int64_t chat_ttl(const struct chat *ch, const char *ttl_header);

/* A request's Cache-Control max-age in ms for struct cache_query, -1 for
 * none. */
int64_t chat_max_age(const struct hdr_cache_control *cc);

/* Derive keys and controls. doc is the validated request body parsed from
 * raw[0..raw_len); the header values may be NULL. Never fails: problems turn
 * into a bypass verdict. */
void chat_req_init(struct chat *ch, struct chat_req *r, const struct cJSON *doc, const char *raw,
                   size_t raw_len, const struct chat_scope *scope, const char *cache_control,
                   const char *ttl_header);

/* chat_req_init for a route answered in the chat shape, the legacy
 * completion's (kind CMPL_TEXT: doc is oai_prompt_as_chat's form, or the
 * request itself when it has none) or a response's (CMPL_RESPONSE: doc is
 * oresp_keyed's form); raw is checked, not keyed. */
void chat_req_init_as(struct chat *ch, struct chat_req *r, enum cmpl_kind kind,
                      const struct cJSON *doc, const char *raw, size_t raw_len,
                      const struct chat_scope *scope, const char *cache_control,
                      const char *ttl_header);
void chat_req_fini(struct chat_req *r);

/* The request must neither be answered from the cache nor stored (a
 * Responses request that depends on state parrot cannot see): a bypass,
 * detail=uncacheable. After chat_req_init*. */
void chat_req_uncacheable(struct chat_req *r);

/* Times below (now) are wall clock milliseconds. */

/* Decide and, on a hit, set r->hit. Counts the outcome.
 *
 * Read-your-writes: an answer is stored after its client has it
 * (chat_store_later), so a lookup compares its question with the answers
 * of its partition still queued for storing. When one of them could serve
 * it (the same exact key, or a question the semantic lookup would accept:
 * its vector near enough and the hit verifier agreeing), the verdict is
 * CHAT_WAIT: the request waits, suspended, until that answer is stored and
 * then looks again. Questions that no queued answer could serve never wait.
 *
 * Back-pressure: a miss whose answer will be stored also gets CHAT_WAIT,
 * once, while the store queue is behind (half of store-queue, at most 64
 * answers, or half of its bytes): it goes to the provider only as answers
 * ahead of it are stored, so that a sustained burst of new questions slows
 * to the store thread's pace instead of dropping stores. */
enum chat_verdict chat_lookup(struct chat *ch, struct chat_req *r, int64_t now);

/* After CHAT_WAIT: wake(r) runs once, on the store thread, when the queued
 * answer r waits for (or waits behind) is stored or turned down. Returns
 * false, and wake never runs, when it is already: look again at once. */
bool chat_await(struct chat *ch, struct chat_req *r, void (*wake)(struct chat_req *r));

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

/* Cache-Status and x-parrot-cache for a request that went to the provider
 * (v is not CHAT_HIT): detail names why (NULL: nothing to say on a miss; a
 * bypass needs one), stored says its answer was stored. */
void chat_fwd_headers(enum chat_verdict v, bool no_cache, const char *detail, bool stored,
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

/* chat_store on the policy's store thread, after the caller has answered
 * its client: the answer is parsed, rendered, indexed and logged off the
 * request's path. The body is copied; r must stay valid and unchanged until
 * done runs. Returns true when queued: done(ud, stored, wal_seq) then runs
 * on the store thread once the answer is stored (or turned down) and r's
 * flight is closed, so that requests waiting behind r find the entry.
 * Returns false when nothing was queued (nothing to store, or the queue was
 * full: a drop, counted): r's flight is closed already and done never
 * runs. */
bool chat_store_later(struct chat *ch, struct chat_req *r, long status, bool sse, const char *body,
                      size_t len, int64_t now,
                      void (*done)(void *ud, bool stored, uint64_t wal_seq), void *ud);

/* Wait until every answer queued so far is stored (or turned down): what
 * the admin API, /metrics and the dashboard read then reflects every
 * request answered before it. Bounded by the queue; NULL is a no-op. */
void chat_settle(struct chat *ch);

/* Store doc (taken over), a provider's non-streamed answer that an audit
 * fetched, under q's keys with the default TTL, as chat_store() would
 * have. 0, or -1 when it may not be cached or memory ran out. Any thread. */
int chat_store_fresh(struct chat *ch, struct cache_query *q, struct cJSON *doc, int64_t now);

/* Single-flight for r's exact key. Returns true when r must wait (its
 * waiter.wake will be called); false when it leads or runs alone. */
bool chat_flight_join(struct chat *ch, struct chat_req *r, void (*wake)(struct flight_waiter *));

/* Close r's flight if it leads one (here, and across replicas). Idempotent. */
void chat_flight_done(struct chat *ch, struct chat_req *r);

/* Share single-flight with the other replicas through rep (NULL: this
 * process alone). Before requests arrive. */
void chat_set_replica(struct chat *ch, struct replica *rep);

/* After chat_flight_join made r the leader here: ask whether r leads for
 * every replica (cache/replica/replica.h). Returns true when r must wait
 * (wake runs once, on a replica thread); false when r goes to the provider
 * now. */
bool chat_shared_join(struct chat *ch, struct chat_req *r, void (*wake)(struct replica_waiter *));

/* r was woken from chat_shared_join: CHAT_HIT when another replica's answer
 * is here by now (a coalesced hit; r's own waiters are released to find it
 * too), else CHAT_MISS: r goes to the provider, still leading here. */
enum chat_verdict chat_shared_verdict(struct chat *ch, struct chat_req *r, int64_t now);

/* The answer a hit serves (its model and original usage). r must be a hit. */
const struct cmpl_rendered *chat_hit_answer(const struct chat_req *r);

#define CHAT_BYPASS_REASONS 4
extern const char *const chat_bypass_reasons[CHAT_BYPASS_REASONS];

/* The request policy's own counters: its verdicts and what it chose to
 * store. What the cache holds and turned down is the cache's to count
 * (cache_get_stats on chat_cache()). Each read atomically; any thread. */
struct chat_counters {
    uint64_t hits_exact, hits_semantic, hits_coalesced, misses, bypasses, refused;
    uint64_t stores, store_skipped, no_store;
    uint64_t store_dropped; /* answered, not stored: the store queue was full (or no memory) */
    size_t store_queued;    /* answers waiting on the store thread */
    uint64_t bypass[CHAT_BYPASS_REASONS]; /* by chat_bypass_reasons */
    /* Routes cached item by item (embeddings inputs). */
    uint64_t item_hits, item_misses, item_bypasses;
};
void chat_get_counters(struct chat *ch, struct chat_counters *out);

/* Count the items of a request cached item by item (embeddings inputs):
 * found, and not found (or not looked up, bypass). Any thread. */
void chat_count_items(struct chat *ch, size_t hits, size_t misses, bool bypass);

/* Count answers stored, and answers that were to be stored but were not.
 * Any thread. */
void chat_count_stores(struct chat *ch, size_t stored, size_t skipped);

/* The cache the policy runs over (borrowed from chat_new's caller). */
struct cache *chat_cache(struct chat *ch);

/* The policy's counters with a summary of the cache's, for the admin API
 * and metrics. */
struct chat_stats {
    uint64_t hits_exact, hits_semantic, hits_coalesced, misses, bypasses, refused;
    uint64_t stores, store_skipped, store_dropped, log_errors, rejected, evictions;
    size_t store_queued;
    size_t entries, memory;
    uint64_t bypass[CHAT_BYPASS_REASONS]; /* by chat_bypass_reasons */
    uint64_t no_store;
    uint64_t item_hits, item_misses, item_bypasses;
};
void chat_get_stats(struct chat *ch, struct chat_stats *st);

#endif
