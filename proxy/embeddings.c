/* embeddings.c - the cache policy of POST /v1/embeddings; see embeddings.h. */
#include "proxy/embeddings.h"

#include "proxy/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char route[] = "/v1/embeddings";

/* The partition and one exact key per item. -1 when the request cannot be
 * keyed (it is then forwarded as a bypass). */
static int make_keys(struct chat *ch, struct emb_call *c, const struct chat_scope *scope)
{
    char tenant[CHAT_TENANT_MAX];
    struct canon_key k;
    cJSON *rest = oemb_without_items(&c->req);
    int rc;

    if (!rest)
        return -1;
    chat_tenant(ch, scope->authorization, scope->tenant_value, scope->ns, tenant, sizeof(tenant));
    rc = canon_request(rest, tenant, route, &k);
    cJSON_Delete(rest);
    if (rc != 0)
        return -1;
    memcpy(c->partition, k.partition, CACHE_KEY_LEN);
    canon_key_fini(&k);
    c->exact = calloc(c->req.n, sizeof(*c->exact));
    c->q = calloc(c->req.n, sizeof(*c->q));
    c->miss = calloc(c->req.n, sizeof(*c->miss));
    if (!c->exact || !c->q || !c->miss)
        return -1;
    for (size_t i = 0; i < c->req.n; i++) {
        if (canon_item_key(c->partition, c->req.items[i], c->exact[i]) != 0)
            return -1;
        c->q[i].partition = c->partition;
        c->q[i].exact = c->exact[i];
        c->q[i].max_age = chat_max_age(&c->cc);
    }
    return 0;
}

/* Look every item up; the misses go to c->miss in order. */
static void lookup(struct chat *ch, struct emb_call *c, int64_t now)
{
    struct cache *cache = chat_cache(ch);

    for (size_t i = 0; i < c->req.n; i++) {
        const struct cmpl_rendered *v;

        if (!c->cc.no_cache && cache_lookup_exact(cache, &c->q[i], now) == CACHE_HIT_EXACT &&
            (v = cache_entry_payload(c->q[i].hit))->kind == CMPL_EMBEDDING) {
            c->nhit++;
            c->saved_tokens += v->prompt_tokens;
            continue;
        }
        /* Not an embedding: nothing this route stored; ask again. */
        cache_query_fini(&c->q[i]);
        c->q[i].partition = c->partition;
        c->q[i].exact = c->exact[i];
        c->q[i].max_age = chat_max_age(&c->cc);
        c->miss[c->nmiss++] = i;
    }
}

int emb_call_init(struct chat *ch, struct emb_call *c, const char *content_type, const char *body,
                  size_t len, const struct chat_scope *scope, const char *cache_control,
                  const char *ttl_header, int64_t now, struct oai_error *e)
{
    memset(c, 0, sizeof(*c));
    c->verdict = CHAT_BYPASS;
    if (oemb_parse(content_type, body, len, &c->req, e) != 0)
        return -1;
    hdr_parse_cache_control(cache_control, &c->cc);
    c->ttl = chat_ttl(ch, ttl_header);
    /* An escaped NUL ends a cJSON string: two inputs differing after it
     * would share a key. Such requests go to the provider as sent. */
    if (!ch || memmem(body, len, "\\u0000", 6) || make_keys(ch, c, scope) != 0)
        return 0;
    c->keyed = true;
    c->store = !c->cc.no_store;
    lookup(ch, c, now);
    chat_count_items(ch, c->nhit, c->nmiss, c->cc.no_cache);
    if (c->nmiss == 0)
        c->verdict = CHAT_HIT;
    else if (c->cc.only_if_cached)
        c->verdict = CHAT_REFUSE;
    else
        c->verdict = c->cc.no_cache ? CHAT_BYPASS : CHAT_MISS;
    return 0;
}

void emb_call_fini(struct emb_call *c)
{
    for (size_t i = 0; c->q && i < c->req.n; i++)
        cache_query_fini(&c->q[i]);
    free(c->q);
    free(c->exact);
    free(c->miss);
    oemb_req_fini(&c->req);
    memset(c, 0, sizeof(*c));
}

bool emb_partial(const struct emb_call *c)
{
    return c->verdict == CHAT_MISS && c->nhit > 0;
}

char *emb_provider_body(const struct emb_call *c, size_t *len)
{
    return oemb_subrequest(&c->req, c->miss, c->nmiss, len);
}

/* The answer from every item's vector: cached ones from c->q, the others
 * from fresh (one per c->miss, or NULL when all are cached). */
static char *assemble(const struct emb_call *c, struct cmpl_rendered *const *fresh,
                      const char *model, int64_t tokens, size_t *len)
{
    const struct cmpl_rendered **vecs = calloc(c->req.n, sizeof(*vecs));
    char *out;

    if (!vecs)
        return NULL;
    for (size_t i = 0; i < c->req.n; i++)
        if (c->q[i].hit)
            vecs[i] = cache_entry_payload(c->q[i].hit);
    for (size_t k = 0; fresh && k < c->nmiss; k++)
        vecs[c->miss[k]] = fresh[k];
    out = oemb_render(&c->req, vecs, model, tokens, len);
    free(vecs);
    return out;
}

char *emb_hit_body(const struct emb_call *c, size_t *len)
{
    const struct cmpl_rendered *first = cache_entry_payload(c->q[0].hit);

    /* Nothing was billed for this answer. */
    return assemble(c, NULL, first->model, 0, len);
}

void emb_complete(struct chat *ch, struct emb_call *c, long status, const char *body, size_t len,
                  int64_t now, char **merged, size_t *merged_len, struct oai_error *e)
{
    bool partial = emb_partial(c);
    size_t m = partial ? c->nmiss : c->req.n;
    struct cmpl_rendered **fresh = NULL;
    size_t *all = NULL;
    const size_t *idx = c->miss;
    const char *why = NULL;
    int64_t tokens = 0;
    uint64_t seq;
    size_t stored = 0;

    *merged = NULL;
    if (!c->keyed || (!c->store && !partial) || status != 200)
        return;
    if (!partial) {
        /* The provider got the request as sent: all of its items. */
        all = malloc(m * sizeof(*all));
        if (!all)
            goto fail;
        for (size_t i = 0; i < m; i++)
            all[i] = i;
        idx = all;
    }
    fresh = calloc(m, sizeof(*fresh));
    if (!fresh)
        goto fail;
    if (oemb_answer(&c->req, idx, m, body, len, fresh, &tokens, &why) != 0)
        goto fail;
    if (partial) {
        *merged = assemble(c, fresh, fresh[0]->model, tokens, merged_len);
        if (!*merged) {
            why = "out of memory";
            goto fail;
        }
    }
    for (size_t k = 0; c->store && k < m; k++) {
        struct cache_query *q = &c->q[idx[k]];
        struct cmpl_rendered *v = fresh[k];

        fresh[k] = NULL;
        if (cache_put(chat_cache(ch), q, v, (double)v->prompt_tokens + 1, c->ttl, now, &seq) == 0)
            stored++;
    }
    c->stored = stored;
    chat_count_stores(ch, stored, c->store ? m - stored : 0);
    goto out;
fail:
    chat_count_stores(ch, 0, m);
    log_msg(LOG_DEBUG, "embeddings not stored", why ? why : "out of memory");
    if (partial)
        oai_error_set(e, 502, "upstream_error", NULL, "upstream_invalid_answer",
                      "The provider's embeddings answer could not be merged with the cached "
                      "inputs (%s).",
                      why ? why : "out of memory");
out:
    for (size_t k = 0; fresh && k < m; k++) {
        if (fresh[k]) {
            cmpl_rendered_fini(fresh[k]);
            free(fresh[k]);
        }
    }
    free(fresh);
    free(all);
}

void emb_headers(const struct emb_call *c,
                 void (*add)(void *ud, const char *name, const char *value), void *ud)
{
    char v[128];

    switch (c->verdict) {
    case CHAT_HIT:
        add(ud, "Cache-Status", "parrot; hit; detail=exact");
        add(ud, "x-parrot-cache", "hit");
        break;
    case CHAT_MISS:
    case CHAT_REFUSE:
    case CHAT_EMBED:
    case CHAT_WAIT:
        chat_fwd_headers(c->verdict, false,
                         c->verdict == CHAT_REFUSE ? "only-if-cached"
                         : c->nhit                 ? "partial"
                                                   : NULL,
                         c->stored, add, ud);
        break;
    case CHAT_BYPASS:
        chat_fwd_headers(c->verdict, c->cc.no_cache, c->cc.no_cache ? "no-cache" : "unkeyable",
                         c->stored, add, ud);
        return;
    }
    snprintf(v, sizeof(v), "%zu/%zu", c->nhit, c->req.n);
    add(ud, "x-parrot-cached-inputs", v);
}

const char *emb_outcome(const struct emb_call *c)
{
    switch (c->verdict) {
    case CHAT_HIT: return "hit-exact";
    case CHAT_MISS:
    case CHAT_EMBED:
    case CHAT_WAIT: return c->nhit ? "partial" : "miss";
    case CHAT_REFUSE: return "refused";
    case CHAT_BYPASS: break;
    }
    return "bypass";
}
