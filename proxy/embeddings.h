/* embeddings.h - the cache policy of POST /v1/embeddings: exact caching per
 * input item.
 *
 * Each input (a string or an array of token ids) has its own exact key:
 * tenant and namespace, route, and every request field but "input" and
 * "encoding_format" (the partition, proxy/openai/canon.c), then the item. A
 * request whose items are all cached is answered here; one with some
 * cached sends only the others to the provider, in one call and in their
 * order, and its answer is merged with the cached vectors in the original
 * order, with the usage the provider billed. A request with none cached is
 * forwarded as sent and relayed as answered. There is no semantic layer
 * (two texts close in meaning have different vectors), no single-flight
 * (a batch's items rarely coincide whole) and no streaming.
 *
 * The chat policy (proxy/chat.h) lends the tenant, the TTL, Cache-Control
 * and the counters; the wire format is proxy/openai/embedding.h.
 *
 * Threads: a struct emb_call belongs to one request; its owner serialises
 * access to it (the transfer's on_done calls emb_complete under the request's
 * lock).
 */
#ifndef PARROT_EMBEDDINGS_H
#define PARROT_EMBEDDINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "proxy/chat.h"
#include "proxy/headers.h"
#include "proxy/openai/embedding.h"

struct emb_call {
    struct oemb_req req;
    struct hdr_cache_control cc;
    int64_t ttl;
    bool keyed; /* the keys below are valid */
    bool store; /* answers may be stored */
    uint8_t partition[CACHE_KEY_LEN];
    uint8_t (*exact)[CACHE_KEY_LEN]; /* one per item */
    struct cache_query *q;           /* one per item; q[i].hit when cached */
    size_t *miss;                    /* items to ask the provider for, in order */
    size_t nmiss, nhit;
    enum chat_verdict verdict;
    size_t stored; /* items stored from the provider's answer */
    int64_t saved_tokens;
};

/* Parse, key and look up a request. Returns 0 with the verdict in
 * c->verdict (CHAT_HIT: every item cached; CHAT_MISS: ask the provider for
 * c->miss; CHAT_BYPASS: forward as sent; CHAT_REFUSE: only-if-cached and
 * something is missing), or -1 with *e filled for a bad request. ch may be
 * NULL (the cache is off: a bypass). Release with emb_call_fini. */
int emb_call_init(struct chat *ch, struct emb_call *c, const char *content_type, const char *body,
                  size_t len, const struct chat_scope *scope, const char *cache_control,
                  const char *ttl_header, int64_t now, struct oai_error *e);
void emb_call_fini(struct emb_call *c);

/* Whether the provider's answer must be merged with cached vectors: only
 * c->miss goes to the provider (emb_provider_body). */
bool emb_partial(const struct emb_call *c);

/* The body for the provider when emb_partial(): the missing items only.
 * malloc'd; NULL when out of memory. */
char *emb_provider_body(const struct emb_call *c, size_t *len);

/* The answer when every item is cached (CHAT_HIT). malloc'd; NULL when
 * out of memory. */
char *emb_hit_body(const struct emb_call *c, size_t *len);

/* The provider answered (status < 0: the transfer failed) with body/len:
 * store the new vectors when allowed. When emb_partial(), *merged gets the
 * whole answer (malloc'd, length in *merged_len), or NULL with *e set for
 * the client (a provider's answer parrot could not read); for a non-200 it
 * stays NULL and the provider's answer is relayed. */
void emb_complete(struct chat *ch, struct emb_call *c, long status, const char *body, size_t len,
                  int64_t now, char **merged, size_t *merged_len, struct oai_error *e);

/* The cache headers (Cache-Status, x-parrot-cache, x-parrot-cached-inputs). */
void emb_headers(const struct emb_call *c,
                 void (*add)(void *ud, const char *name, const char *value), void *ud);

/* The outcome for the request log: "hit-exact", "miss", "partial",
 * "bypass" or "refused". */
const char *emb_outcome(const struct emb_call *c);

#endif
