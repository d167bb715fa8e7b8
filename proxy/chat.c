/* chat.c - the request policy for POST /v1/chat/completions; see chat.h. */
#include "proxy/chat.h"

#include "cache/base/map.h"
#include "cache/base/rand.h"
#include "cache/base/sha256.h"
#include "cache/base/workq.h"
#include "config/config.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/openai/stored.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why a request skipped the lookup: r->why, and a counter each. */
const char *const chat_bypass_reasons[CHAT_BYPASS_REASONS] = {"no-cache", "unkeyable",
                                                              "nul-in-string", "uncacheable"};
#define bypass_reasons chat_bypass_reasons
#define BYPASS_REASONS CHAT_BYPASS_REASONS

/* The store queue: at most store-queue answers wait for the store thread,
 * holding at most STORE_QUEUE_BYTES between them (one body may be 1 MiB),
 * so that memory stays bounded whatever comes; beyond it a store is dropped
 * (counted), never the answer. */
#define STORE_QUEUE_BYTES (64u << 20)
/* Back-pressure (chat_lookup) begins at this many queued answers, or at
 * half of store-queue when that is less, or at half the bytes: the rest of
 * the queue is room for the answers already on their way from the
 * provider when new misses begin to wait, so that none is dropped. Under a
 * sustained burst a busy partition keeps about this many queued, and each
 * of its lookups compares its question with those of its group among them
 * (pending_scan). All in one group, with 64 queued (484 floats each, the
 * builtin embedder's) a lookup costs
 * 1.12x one with none, with 256 queued 1.34x (336,000 and 402,000
 * instructions against 300,000, callgrind), and on a machine whose cores
 * are busy every instruction of it is a store less. It also bounds how far
 * the store lags behind the answers: 64 stores, a few to tens of ms. */
#define STORE_PACE 64u
/* The store thread takes up to this many queued answers at a time and has
 * the log written once for them (cache_log_hold): woken for each answer,
 * the WAL writer's wake-up and write cost the two threads about 40 of the
 * 200 us of CPU an answer took to store (perf, real misses at -c64). Each
 * answer is still indexed, and its waiters woken, as soon as it is stored. */
#define STORE_BATCH 16u

struct chat {
    struct cache *cache;                /* borrowed */
    struct workq *storeq;               /* NULL when cache is */
    atomic_size_t store_bytes;          /* held by the jobs waiting in storeq */
    atomic_uint_fast64_t store_dropped; /* answered, not queued: full, or no memory */
    atomic_bool store_drop_said;
    /* Read-your-writes and back-pressure. Jobs are numbered in queue order
     * and run in it, so "stored up to seq" says which are done; a lookup
     * that must see a queued answer, or must let the queue catch up, waits
     * (chat_await) until stored_seq reaches a number.
     *
     * Locks: pend_mu alone guards pend, the partitions' rings of jobs and
     * the waiters, and orders the sequences' writes with them. It is taken
     * after x->lock (chat_await and chat_store_later run under it), and the
     * only lock taken under it is the store queue's mutex (a job is
     * numbered and pushed under it): the cache's checks of queued
     * questions (the verifier) run after it is released, on jobs held by a
     * reference, and waiters are woken after it is released. */
    pthread_mutex_t pend_mu;
    pthread_cond_t pend_cv;   /* stored_seq moved (chat_settle) */
    struct map pend;          /* partition -> its last queued job, whose next is its oldest */
    struct chat_req *waiters; /* chat_await's, by await_seq, lowest first */
    struct chat_req *waiters_tail;
    size_t pace; /* back-pressure from this many queued answers */
    atomic_uint_fast64_t queued_seq, stored_seq;
    struct replica *rep; /* borrowed; NULL: single-flight stays in this process */
    int64_t ttl;
    const char *shared_tenant;
    atomic_uint_fast64_t hits_exact, hits_semantic, hits_coalesced, misses, refused, no_store;
    atomic_uint_fast64_t bypasses[BYPASS_REASONS];
    atomic_uint_fast64_t stores, store_skipped;
    atomic_uint_fast64_t item_hits, item_misses, item_bypasses;
};

/* An answered miss waiting to be stored (chat_store_later). Lookups on any
 * worker compare their questions with it (pending_scan), and may hold it
 * after it has run: what they read is the job's own copy, never r's. */
struct store_job {
    struct chat *ch;
    struct chat_req *r; /* until done runs */
    long status;
    bool sse;
    int64_t now;
    void (*done)(void *ud, bool stored, uint64_t wal_seq);
    void *ud;
    uint64_t seq;           /* in queue order */
    atomic_uint refs;       /* the queue's, and one per lookup comparing with it */
    struct store_job *next; /* in its partition's ring, under pend_mu; NULL: in none */
    uint8_t exact[CACHE_KEY_LEN];
    uint64_t group;   /* the question's (cache_query_group()) */
    const char *text; /* the question, NUL-terminated, or NULL */
    bool has_vec;     /* vec holds its embedding (cache_dim floats) */
    const char *body; /* len bytes */
    size_t len;
    size_t size; /* of the block after the header, for store_bytes */
    float vec[]; /* the embedding when has_vec, then the text, then the body */
};

static void store_batch(void **jobs, size_t n);

int chat_new(const struct cfg *c, struct cache *cache, struct chat **out)
{
    struct chat *ch = calloc(1, sizeof(*ch));
    int rc;

    if (!ch)
        return -ENOMEM;
    map_init(&ch->pend);
    if (pthread_mutex_init(&ch->pend_mu, NULL) != 0 || pthread_cond_init(&ch->pend_cv, NULL) != 0) {
        free(ch);
        return -ENOMEM;
    }
    ch->pace = (size_t)c->store_queue / 2 < STORE_PACE ? (size_t)c->store_queue / 2 : STORE_PACE;
    if (ch->pace == 0)
        ch->pace = 1;
    if (cache && (rc = workq_new_batched((size_t)c->store_queue, STORE_BATCH, store_batch,
                                         "parrot-store", &ch->storeq)) != 0) {
        pthread_cond_destroy(&ch->pend_cv);
        pthread_mutex_destroy(&ch->pend_mu);
        free(ch);
        return rc;
    }
    ch->cache = cache;
    ch->ttl = c->cache_ttl_ms;
    ch->shared_tenant = c->shared_tenant;
    *out = ch;
    return 0;
}

void chat_free(struct chat *ch)
{
    if (!ch)
        return;
    workq_free(ch->storeq); /* stores what is still queued */
    map_fini(&ch->pend);
    pthread_cond_destroy(&ch->pend_cv);
    pthread_mutex_destroy(&ch->pend_mu);
    free(ch);
}

void chat_tenant(const struct chat *ch, const char *authorization, const char *tenant_value,
                 const char *ns, char *out, size_t outlen)
{
    uint8_t h[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    const char *kind = "auth:", *v = authorization ? authorization : "";
    int n = 0;

    /* A namespace comes first: "ns:NAME:" cannot begin a tenant without
     * one, and NAME holds no ':', so no namespace and tenant pair spells
     * another. */
    if (ns)
        n = snprintf(out, outlen, "ns:%s:", ns);
    if (n < 0 || (size_t)n >= outlen)
        n = 0;
    out += n;
    outlen -= (size_t)n;
    if (ch->shared_tenant) {
        snprintf(out, outlen, "shared:%s", ch->shared_tenant);
        return;
    }
    if (tenant_value) {
        kind = "header:";
        v = tenant_value;
    }
    sha256(v, strlen(v), h);
    canon_hex(h, sizeof(h), hex);
    snprintf(out, outlen, "%s%s", kind, hex);
}

int64_t chat_ttl(const struct chat *ch, const char *ttl_header)
{
    if (ttl_header) {
        char *end;
        long long t = strtoll(ttl_header, &end, 10);
        if (end != ttl_header && *end == '\0' && t >= 0 && t < INT64_MAX / 1000)
            return t * 1000;
    }
    return ch ? ch->ttl : 0;
}

int64_t chat_max_age(const struct hdr_cache_control *cc)
{
    return cc->max_age < 0 || cc->max_age > INT64_MAX / 1000 ? -1 : cc->max_age * 1000;
}

static bool json_true(const cJSON *o, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

void chat_req_init(struct chat *ch, struct chat_req *r, const cJSON *doc, const char *raw,
                   size_t raw_len, const struct chat_scope *scope, const char *cache_control,
                   const char *ttl_header)
{
    chat_req_init_as(ch, r, CMPL_CHAT, doc, raw, raw_len, scope, cache_control, ttl_header);
}

void chat_req_init_as(struct chat *ch, struct chat_req *r, enum cmpl_kind kind, const cJSON *doc,
                      const char *raw, size_t raw_len, const struct chat_scope *scope,
                      const char *cache_control, const char *ttl_header)
{
    char tenant[CHAT_TENANT_MAX];
    const char *model;

    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->verdict = CHAT_BYPASS; /* until chat_lookup() decides */
    cmpl_asm_init(&r->as);
    hdr_parse_cache_control(cache_control, &r->cc);
    r->stream = json_true(doc, "stream");
    r->include_usage =
        json_true(cJSON_GetObjectItemCaseSensitive(doc, "stream_options"), "include_usage");
    model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "model"));
    snprintf(r->model, sizeof(r->model), "%s", model ? model : "");
    r->ttl = chat_ttl(ch, ttl_header);
    if (!ch) {
        r->why = "disabled";
        return;
    }
    /* cJSON ends a string at an escaped NUL, so two bodies differing only
     * after one would share keys: such requests are not cached. */
    if (raw && memmem(raw, raw_len, "\\u0000", 6)) {
        r->why = bypass_reasons[2];
        return;
    }
    chat_tenant(ch, scope->authorization, scope->tenant_value, scope->ns, tenant, sizeof(tenant));
    /* A legacy completion or a response is keyed in its chat form
     * (oai_prompt_as_chat, oresp_keyed), whose numbers are not in raw's
     * order: they are keyed by their doubles. */
    if (kind != CMPL_CHAT)
        raw = NULL;
    if (canon_request_src(doc, raw, raw ? raw_len : 0, tenant,
                          kind == CMPL_TEXT       ? "/v1/completions"
                          : kind == CMPL_RESPONSE ? "/v1/responses"
                                                  : "/v1/chat/completions",
                          &r->key) != 0) {
        r->why = bypass_reasons[1];
        return;
    }
    r->keyed = true;
    r->store = !r->cc.no_store;
    r->q.partition = r->key.partition;
    r->q.exact = r->key.exact;
    r->q.text = r->key.lookup_text;
    r->q.text_len = r->key.lookup_len;
    r->q.max_age = chat_max_age(&r->cc);
}

/* cache_embed()'s callback, on the embedder's thread. */
static void embedded(struct cache_query *q)
{
    struct chat_req *r = (struct chat_req *)((char *)q - offsetof(struct chat_req, q));

    r->embed_wake(r);
}

int chat_embed(struct chat *ch, struct chat_req *r, void (*wake)(struct chat_req *r))
{
    r->embed_wake = wake;
    return cache_embed(ch->cache, &r->q, embedded);
}

void chat_req_uncacheable(struct chat_req *r)
{
    r->keyed = false;
    r->store = false;
    r->why = bypass_reasons[3];
}

void chat_req_fini(struct chat_req *r)
{
    canon_key_fini(&r->key);
    cache_query_fini(&r->q);
    cmpl_asm_fini(&r->as);
    memset(r, 0, sizeof(*r));
}

/* Whether answers are queued and not yet stored: the cheap test before
 * any wait. */
static bool stores_pending(struct chat *ch)
{
    return atomic_load(&ch->queued_seq) != atomic_load(&ch->stored_seq);
}

void chat_settle(struct chat *ch)
{
    uint64_t until;

    if (!ch || !stores_pending(ch))
        return;
    pthread_mutex_lock(&ch->pend_mu);
    until = atomic_load(&ch->queued_seq);
    while (atomic_load(&ch->stored_seq) < until)
        pthread_cond_wait(&ch->pend_cv, &ch->pend_mu);
    pthread_mutex_unlock(&ch->pend_mu);
}

static void job_unref(struct store_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1)
        free(j);
}

/* The answers queued in a lookup's partition that could serve it once
 * stored: the CACHE_CANDIDATES nearest by vector, best first, each held by
 * a reference (pending_release). */
struct pending {
    struct store_job *job[CACHE_CANDIDATES];
    float sim[CACHE_CANDIDATES];
    size_t n;
};

/* Compare r's question with the answers queued in its partition: returns
 * the queue number of one under r's exact key (an exact hit once stored),
 * else 0 with p holding the nearest whose vector similarity could still
 * reach the partition's threshold, for pending_verify. Like the lookup,
 * only the CACHE_CANDIDATES nearest of its own group count: the others
 * would not be candidates once stored either. A dot product per queued
 * answer of the group, under pend_mu. */
static uint64_t pending_scan(struct chat *ch, struct chat_req *r, int64_t now, struct pending *p)
{
    const float *vec = cache_query_vector(ch->cache, &r->q);
    float floor = cache_similarity_floor(ch->cache, r->key.partition);
    uint64_t group = cache_query_group(ch->cache, &r->q);
    struct store_job *last, *j;
    uint64_t seq = 0;

    p->n = 0;
    pthread_mutex_lock(&ch->pend_mu);
    last = map_get(&ch->pend, r->key.partition);
    for (j = last ? last->next : NULL; j; j = j == last ? NULL : j->next) {
        float sim;
        size_t k;

        if (memcmp(j->exact, r->key.exact, CACHE_KEY_LEN) == 0) {
            seq = j->seq;
            p->n = 0;
            break;
        }
        /* An answer older than max-age when stored would not be served. */
        if (j->group != group || !vec || !j->has_vec ||
            (r->q.max_age >= 0 && now - j->now > r->q.max_age))
            continue;
        sim = cache_similarity(ch->cache, vec, j->vec);
        if (sim < floor || (p->n == CACHE_CANDIDATES && sim <= p->sim[p->n - 1]))
            continue;
        for (k = p->n < CACHE_CANDIDATES ? p->n++ : p->n - 1; k > 0 && p->sim[k - 1] < sim; k--) {
            p->job[k] = p->job[k - 1];
            p->sim[k] = p->sim[k - 1];
        }
        p->job[k] = j;
        p->sim[k] = sim;
    }
    for (size_t k = 0; k < p->n; k++)
        atomic_fetch_add(&p->job[k]->refs, 1);
    pthread_mutex_unlock(&ch->pend_mu);
    return seq;
}

/* After the lookup missed: the queue number of the first of p's answers the
 * hit verifier accepts as answering r, or 0. Those farther than the
 * lookup's farthest candidate are left out: once stored, they would not be
 * among the candidates either (r->q.last_sim). */
static uint64_t pending_verify(struct chat *ch, struct chat_req *r, const struct pending *p)
{
    const char *texts[CACHE_CANDIDATES];
    size_t n = 0, k;

    while (n < p->n && p->sim[n] >= r->q.last_sim) {
        texts[n] = p->job[n]->text;
        n++;
    }
    k = cache_verify_first(ch->cache, &r->q, texts, n);
    return k < n ? p->job[k]->seq : 0;
}

static void pending_release(struct pending *p)
{
    for (size_t k = 0; k < p->n; k++)
        job_unref(p->job[k]);
    p->n = 0;
}

/* Back-pressure: the queue number a new miss waits for before it goes to
 * the provider (as many answers ahead of it stored as keep the queue under
 * its pace), or 0 when the queue is not behind. */
static uint64_t backlog_wait(struct chat *ch)
{
    /* stored first: queued, read after it, is never less */
    uint64_t stored = atomic_load(&ch->stored_seq), queued = atomic_load(&ch->queued_seq);

    if (atomic_load(&ch->store_bytes) > STORE_QUEUE_BYTES / 2)
        return queued;
    return queued - stored >= ch->pace ? queued - ch->pace + 1 : 0;
}

enum chat_verdict chat_lookup(struct chat *ch, struct chat_req *r, int64_t now)
{
    enum cache_result res;

    /* Back from waiting for the queue (below): the lookup missed already. */
    if (r->verdict == CHAT_WAIT && r->paced)
        return r->verdict = CHAT_MISS;
    if (!r->keyed || r->cc.no_cache) {
        size_t why = 0;

        /* No lookup, but the answer is stored: with its vector. */
        if (r->keyed && r->store && cache_wants_vector(ch->cache, &r->q))
            return r->verdict = CHAT_EMBED;
        if (!r->why)
            r->why = bypass_reasons[0];
        while (why + 1 < BYPASS_REASONS && r->why != bypass_reasons[why])
            why++;
        atomic_fetch_add(&ch->bypasses[why], 1);
        return r->verdict = r->cc.only_if_cached && !r->keyed ? CHAT_REFUSE : CHAT_BYPASS;
    }
    if (!stores_pending(ch)) {
        res = cache_lookup(ch->cache, &r->q, now);
    } else if ((res = cache_lookup_exact(ch->cache, &r->q, now)) != CACHE_HIT_EXACT) {
        struct pending p;

        /* Answers are being stored. The queued ones are gathered before the
         * lookup: one stored after the lookup looked would be seen by
         * neither. The verifier runs on them only if the lookup misses. */
        if (cache_wants_vector(ch->cache, &r->q))
            return r->verdict = CHAT_EMBED;
        if ((r->await_seq = pending_scan(ch, r, now, &p)) == 0) {
            res = cache_lookup(ch->cache, &r->q, now);
            if (res == CACHE_MISS)
                r->await_seq = pending_verify(ch, r, &p);
            pending_release(&p);
        }
        if (r->await_seq)
            return r->verdict = CHAT_WAIT;
    }
    if (res == CACHE_NEED_VECTOR)
        return r->verdict = CHAT_EMBED;
    if (!r->store)
        atomic_fetch_add(&ch->no_store, 1);
    switch (res) {
    case CACHE_HIT_EXACT:
        r->exact = true;
        atomic_fetch_add(&ch->hits_exact, 1);
        return r->verdict = CHAT_HIT;
    case CACHE_HIT_SEMANTIC: atomic_fetch_add(&ch->hits_semantic, 1); return r->verdict = CHAT_HIT;
    case CACHE_NEED_VECTOR:
    case CACHE_MISS: break;
    }
    if (r->cc.only_if_cached) {
        atomic_fetch_add(&ch->refused, 1);
        return r->verdict = CHAT_REFUSE;
    }
    if (r->store && !r->paced && (r->await_seq = backlog_wait(ch)) != 0) {
        r->paced = true;
        return r->verdict = CHAT_WAIT;
    }
    return r->verdict = CHAT_MISS;
}

bool chat_await(struct chat *ch, struct chat_req *r, void (*wake)(struct chat_req *r))
{
    struct chat_req **at;

    pthread_mutex_lock(&ch->pend_mu);
    if (atomic_load(&ch->stored_seq) >= r->await_seq) {
        pthread_mutex_unlock(&ch->pend_mu);
        return false;
    }
    r->await_wake = wake;
    /* Kept in order, so that each store wakes a prefix. Waits for the
     * queue to catch up come in order and go last at once. */
    if (!ch->waiters_tail || ch->waiters_tail->await_seq <= r->await_seq)
        at = ch->waiters_tail ? &ch->waiters_tail->await_next : &ch->waiters;
    else
        for (at = &ch->waiters; (*at)->await_seq <= r->await_seq; at = &(*at)->await_next)
            ;
    r->await_next = *at;
    *at = r;
    if (!r->await_next)
        ch->waiters_tail = r;
    pthread_mutex_unlock(&ch->pend_mu);
    return true;
}

enum chat_verdict chat_relookup(struct chat *ch, struct chat_req *r, int64_t now)
{
    if (cache_lookup_exact(ch->cache, &r->q, now) == CACHE_HIT_EXACT) {
        r->exact = r->coalesced = true;
        atomic_fetch_add(&ch->hits_coalesced, 1);
        return r->verdict = CHAT_HIT;
    }
    atomic_fetch_add(&ch->misses, 1);
    return r->verdict = CHAT_MISS;
}

char *chat_hit_body(const struct chat_req *r, int64_t now, size_t *len)
{
    const struct cmpl_rendered *cr = cache_entry_payload(r->q.hit);
    char id[48], *out;
    size_t need;

    /* A fresh id per answer, as the provider would give: random, since a
     * counter would tell a client how many hits others had in between. */
    snprintf(id, sizeof(id), "%s-parrot-%016" PRIx64 "%08" PRIx64,
             cr->kind == CMPL_TEXT       ? "cmpl"
             : cr->kind == CMPL_RESPONSE ? "resp"
                                         : "chatcmpl",
             rand_u64(), rand_u64() & UINT64_C(0xffffffff));
    need = r->stream ? cmpl_write_sse(NULL, 0, cr, id, now / 1000, r->include_usage)
                     : cmpl_write_json(NULL, 0, cr, id, now / 1000);
    /* 0 is a writer out of memory (a Responses replay is built per hit). */
    out = need ? malloc(need) : NULL;
    if (!out)
        return NULL;
    if (r->stream)
        cmpl_write_sse(out, need, cr, id, now / 1000, r->include_usage);
    else
        cmpl_write_json(out, need, cr, id, now / 1000);
    *len = need;
    return out;
}

void chat_fwd_headers(enum chat_verdict v, bool no_cache, const char *detail, bool stored,
                      void (*add)(void *ud, const char *name, const char *value), void *ud)
{
    char s[160];

    if (v == CHAT_BYPASS)
        snprintf(s, sizeof(s), "parrot; fwd=%s; detail=%s%s", no_cache ? "request" : "bypass",
                 detail, stored ? "; stored" : "");
    else
        snprintf(s, sizeof(s), "parrot; fwd=uri-miss%s%s%s", detail ? "; detail=" : "",
                 detail ? detail : "", stored ? "; stored" : "");
    add(ud, "Cache-Status", s);
    add(ud, "x-parrot-cache", v == CHAT_BYPASS ? "bypass" : "miss");
}

void chat_headers(const struct chat_req *r, int64_t now,
                  void (*add)(void *ud, const char *name, const char *value), void *ud)
{
    char v[HDR_NUM_MAX];

    switch (r->verdict) {
    case CHAT_HIT: {
        struct cache_entry_info in;
        int64_t age;

        cache_entry_describe(r->q.hit, &in);
        age = now - in.created;
        add(ud, "Cache-Status",
            r->coalesced ? "parrot; hit; detail=coalesced"
            : r->exact   ? "parrot; hit; detail=exact"
                         : "parrot; hit; detail=semantic");
        hdr_fmt_u64(v, age > 0 ? (uint64_t)(age / 1000) : 0);
        add(ud, "Age", v);
        add(ud, "x-parrot-cache", "hit");
        hdr_fmt_fixed(v, (double)r->q.sim, 4);
        add(ud, "x-parrot-similarity", v);
        hdr_fmt_hex(v, in.id);
        add(ud, "x-parrot-entry", v);
        break;
    }
    /* Never "stored": an answer is stored after its client has it
     * (chat_store_later), so its headers cannot know. */
    case CHAT_MISS:
    case CHAT_REFUSE:
    case CHAT_EMBED:
    case CHAT_WAIT:
        chat_fwd_headers(r->verdict, false, r->verdict == CHAT_REFUSE ? "only-if-cached" : NULL,
                         false, add, ud);
        break;
    case CHAT_BYPASS:
        chat_fwd_headers(r->verdict, r->cc.no_cache, r->why ? r->why : "bypass", false, add, ud);
        break;
    }
}

const char *chat_outcome(const struct chat_req *r)
{
    switch (r->verdict) {
    case CHAT_HIT: return r->coalesced ? "hit-coalesced" : r->exact ? "hit-exact" : "hit-semantic";
    case CHAT_MISS:
    case CHAT_EMBED:
    case CHAT_WAIT: return "miss";
    case CHAT_REFUSE: return "refused";
    case CHAT_BYPASS: break;
    }
    return "bypass";
}

void chat_feed(struct chat_req *r, const char *p, size_t n)
{
    if (r->keyed && r->store)
        cmpl_asm_feed(&r->as, p, n);
}

/* Render doc (taken) and put it under q's keys for ttl ms. 0, or -1 with
 * *why set (the answer may not be cached, or memory ran out). */
static int store_doc(struct chat *ch, struct cache_query *q, enum cmpl_kind kind, cJSON *doc,
                     int64_t ttl, int64_t now, uint64_t *seq, const char **why)
{
    struct cmpl_rendered *cr = malloc(sizeof(*cr));

    if (!cr || cmpl_render(doc, cr, why) != 0) {
        free(cr);
        cJSON_Delete(doc);
        return -1;
    }
    cJSON_Delete(doc);
    if (cr->kind != kind) {
        /* A hit must answer in the route's own shape. */
        *why = "an answer of another route's shape";
        cmpl_rendered_fini(cr);
        free(cr);
        return -1;
    }
    if (cache_put(ch->cache, q, cr, (double)(cr->prompt_tokens + cr->completion_tokens), ttl, now,
                  seq) != 0) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

/* Store r's answer when allowed; true when it was. *seq gets its log
 * record (0: not logged). */
static bool store_answer(struct chat *ch, struct chat_req *r, long status, bool sse,
                         const char *body, size_t len, int64_t now, uint64_t *seq)
{
    cJSON *doc;
    const char *why = NULL;

    *seq = 0;
    if (status != 200) { /* an error answer, or a failed transfer (< 0) */
        atomic_fetch_add(&ch->store_skipped, 1);
        return false;
    }
    doc = sse ? cmpl_asm_take(&r->as) : cJSON_ParseWithLength(body, len);
    if (!doc) {
        why = sse ? r->as.why : "unparseable response";
        goto skip;
    }
    if (store_doc(ch, &r->q, r->kind, doc, r->ttl, now, seq, &why) != 0)
        goto skip;
    atomic_fetch_add(&ch->stores, 1);
    return true;
skip:
    atomic_fetch_add(&ch->store_skipped, 1);
    log_msg(LOG_DEBUG, "answer not stored", why);
    return false;
}

void chat_store(struct chat *ch, struct chat_req *r, long status, bool sse, const char *body,
                size_t len, int64_t now)
{
    if (ch && r->keyed && r->store)
        store_answer(ch, r, status, sse, body, len, now, &r->wal_seq);
}

/* Append j, the newest, to partition's ring. Under pend_mu. */
static void pend_link(struct chat *ch, const uint8_t *partition, struct store_job *j)
{
    struct store_job *last = map_get(&ch->pend, partition);
    void *old;

    if (map_put(&ch->pend, partition, j, &old) != 0) {
        log_msg(LOG_WARN, "store not awaited", "out of memory"); /* only visibility is late */
        return;
    }
    j->next = last ? last->next : j;
    if (last)
        last->next = j;
}

/* Take j, its oldest, out of partition's ring. Under pend_mu. */
static void pend_unlink(struct chat *ch, const uint8_t *partition, struct store_job *j)
{
    struct store_job *last;

    if (!j->next)
        return; /* pend_link ran out of memory */
    last = map_get(&ch->pend, partition);
    if (last == j)
        map_del(&ch->pend, partition);
    else
        last->next = j->next;
    j->next = NULL;
}

/* Unlink the waiters whose answer is stored once seq is, and return them
 * linked through await_next. Under pend_mu. */
static struct chat_req *waiters_upto(struct chat *ch, uint64_t seq)
{
    struct chat_req *first = ch->waiters, *w = first;

    if (!w || w->await_seq > seq)
        return NULL;
    while (w->await_next && w->await_next->await_seq <= seq)
        w = w->await_next;
    ch->waiters = w->await_next;
    if (!ch->waiters)
        ch->waiters_tail = NULL;
    w->await_next = NULL;
    return first;
}

static void store_run(void *job)
{
    struct store_job *j = job;
    struct chat *ch = j->ch;
    struct chat_req *woken;
    uint64_t seq;
    bool stored = store_answer(ch, j->r, j->status, j->sse, j->body, j->len, j->now, &seq);

    atomic_fetch_sub(&ch->store_bytes, j->size);
    pthread_mutex_lock(&ch->pend_mu);
    atomic_store(&ch->stored_seq, j->seq);
    pend_unlink(ch, j->r->key.partition, j);
    woken = waiters_upto(ch, j->seq);
    pthread_cond_broadcast(&ch->pend_cv);
    pthread_mutex_unlock(&ch->pend_mu);
    /* Only now may the requests waiting behind r look again: they find the
     * entry instead of asking the provider a second time. */
    chat_flight_done(ch, j->r);
    while (woken) {
        struct chat_req *w = woken;

        woken = w->await_next; /* w is its owner's again once woken */
        w->await_wake(w);
    }
    j->done(j->ud, stored, seq);
    job_unref(j);
}

static void store_batch(void **jobs, size_t n)
{
    struct chat *ch = ((struct store_job *)jobs[0])->ch;

    cache_log_hold(ch->cache);
    for (size_t i = 0; i < n; i++)
        store_run(jobs[i]);
    cache_log_release(ch->cache);
}

bool chat_store_later(struct chat *ch, struct chat_req *r, long status, bool sse, const char *body,
                      size_t len, int64_t now,
                      void (*done)(void *ud, bool stored, uint64_t wal_seq), void *ud)
{
    struct store_job *j;
    const float *vec;
    size_t dim, tlen, size;
    char *p;

    if (!ch)
        return false; /* no cache: r cannot lead a flight */
    if (!r->keyed || !r->store)
        goto now;
    if (status != 200) { /* nothing to parse: counted here, at once */
        atomic_fetch_add(&ch->store_skipped, 1);
        goto now;
    }
    if (sse)
        len = 0; /* the stream was fed to r->as */
    /* The question goes with the answer, for the lookups that compare
     * theirs with it; a no-cache request has no vector yet, and gets the
     * one storing would make. */
    vec = cache_query_vector(ch->cache, &r->q);
    dim = vec ? cache_dim(ch->cache) : 0;
    tlen = r->q.text ? r->q.text_len + 1 : 0;
    size = dim * sizeof(float) + tlen + len;
    if (atomic_fetch_add(&ch->store_bytes, size) + size > STORE_QUEUE_BYTES)
        goto undo;
    j = malloc(sizeof(*j) + size);
    if (!j)
        goto undo;
    *j = (struct store_job){.ch = ch,
                            .r = r,
                            .status = status,
                            .sse = sse,
                            .now = now,
                            .done = done,
                            .ud = ud,
                            .group = cache_query_group(ch->cache, &r->q),
                            .has_vec = dim > 0,
                            .len = len,
                            .size = size};
    atomic_init(&j->refs, 1);
    memcpy(j->exact, r->key.exact, CACHE_KEY_LEN);
    if (dim)
        memcpy(j->vec, vec, dim * sizeof(float));
    p = (char *)(j->vec + dim);
    if (tlen) {
        memcpy(p, r->q.text, tlen - 1);
        p[tlen - 1] = '\0';
        j->text = p;
        p += tlen;
    }
    if (len)
        memcpy(p, body, len);
    j->body = p;
    /* Numbered, pushed and linked under pend_mu: job order is queue order,
     * and the job cannot finish before its partition records it. */
    pthread_mutex_lock(&ch->pend_mu);
    j->seq = atomic_load(&ch->queued_seq) + 1;
    if (workq_push(ch->storeq, j) == 0) {
        pend_link(ch, r->key.partition, j);
        atomic_store(&ch->queued_seq, j->seq);
        pthread_mutex_unlock(&ch->pend_mu);
        return true;
    }
    pthread_mutex_unlock(&ch->pend_mu);
    free(j);
undo:
    atomic_fetch_sub(&ch->store_bytes, size);
    atomic_fetch_add(&ch->store_dropped, 1);
    /* Said once: every drop is counted (parrot_cache_stores_dropped_total). */
    if (!atomic_exchange(&ch->store_drop_said, true))
        log_msg(LOG_WARN, "answer not stored",
                "the store queue is full (or memory ran out); further drops are only "
                "counted");
now:
    chat_flight_done(ch, r);
    return false;
}

int chat_store_fresh(struct chat *ch, struct cache_query *q, cJSON *doc, int64_t now)
{
    const char *why = NULL;
    uint64_t seq;

    if (store_doc(ch, q, CMPL_CHAT, doc, ch->ttl, now, &seq, &why) != 0) {
        atomic_fetch_add(&ch->store_skipped, 1);
        log_msg(LOG_DEBUG, "audit answer not stored", why);
        return -1;
    }
    atomic_fetch_add(&ch->stores, 1);
    return 0;
}

bool chat_flight_join(struct chat *ch, struct chat_req *r, void (*wake)(struct flight_waiter *))
{
    int rc;

    if (!r->keyed || r->cc.no_cache) {
        return false;
    }
    r->waiter.wake = wake;
    rc = cache_flight_join(ch->cache, r->key.exact, &r->waiter);
    if (rc == 0)
        return true;
    r->leader = rc == 1;
    atomic_fetch_add(&ch->misses, 1);
    return false;
}

void chat_flight_done(struct chat *ch, struct chat_req *r)
{
    if (r->shared_lead) {
        r->shared_lead = false;
        replica_flight_end(ch->rep, r->key.exact);
    }
    if (r->leader) {
        r->leader = false;
        cache_flight_done(ch->cache, r->key.exact);
    }
}

void chat_set_replica(struct chat *ch, struct replica *rep)
{
    ch->rep = rep;
}

bool chat_shared_join(struct chat *ch, struct chat_req *r, void (*wake)(struct replica_waiter *))
{
    if (!ch->rep || !r->leader)
        return false;
    r->rwaiter.wake = wake;
    return replica_flight_begin(ch->rep, r->key.exact, &r->rwaiter);
}

enum chat_verdict chat_shared_verdict(struct chat *ch, struct chat_req *r, int64_t now)
{
    r->shared_lead = r->rwaiter.result == REPLICA_LEAD;
    /* Whatever the verdict: the answer may have arrived before r asked. */
    if (cache_lookup_exact(ch->cache, &r->q, now) == CACHE_HIT_EXACT) {
        /* The miss counted when r joined becomes a coalesced hit. */
        atomic_fetch_sub(&ch->misses, 1);
        atomic_fetch_add(&ch->hits_coalesced, 1);
        r->exact = r->coalesced = true;
        chat_flight_done(ch, r);
        return r->verdict = CHAT_HIT;
    }
    return r->verdict = CHAT_MISS;
}

const struct cmpl_rendered *chat_hit_answer(const struct chat_req *r)
{
    return cache_entry_payload(r->q.hit);
}

void chat_get_counters(struct chat *ch, struct chat_counters *out)
{
    memset(out, 0, sizeof(*out));
    out->hits_exact = atomic_load(&ch->hits_exact);
    out->hits_semantic = atomic_load(&ch->hits_semantic);
    out->hits_coalesced = atomic_load(&ch->hits_coalesced);
    out->misses = atomic_load(&ch->misses);
    for (size_t i = 0; i < BYPASS_REASONS; i++) {
        out->bypass[i] = atomic_load(&ch->bypasses[i]);
        out->bypasses += out->bypass[i];
    }
    out->no_store = atomic_load(&ch->no_store);
    out->refused = atomic_load(&ch->refused);
    out->stores = atomic_load(&ch->stores);
    out->store_skipped = atomic_load(&ch->store_skipped);
    out->store_dropped = atomic_load(&ch->store_dropped);
    /* By sequence, not by the queue's waiting jobs: the store thread takes
     * a batch at once, and each is waiting until it has run. stored first:
     * queued, read after it, is never less. */
    uint64_t stored = atomic_load(&ch->stored_seq);
    out->store_queued = (size_t)(atomic_load(&ch->queued_seq) - stored);
    out->item_hits = atomic_load(&ch->item_hits);
    out->item_misses = atomic_load(&ch->item_misses);
    out->item_bypasses = atomic_load(&ch->item_bypasses);
}

void chat_count_items(struct chat *ch, size_t hits, size_t misses, bool bypass)
{
    atomic_fetch_add(&ch->item_hits, hits);
    atomic_fetch_add(bypass ? &ch->item_bypasses : &ch->item_misses, misses);
}

void chat_count_stores(struct chat *ch, size_t stored, size_t skipped)
{
    atomic_fetch_add(&ch->stores, stored);
    atomic_fetch_add(&ch->store_skipped, skipped);
}

struct cache *chat_cache(struct chat *ch)
{
    return ch->cache;
}

void chat_get_stats(struct chat *ch, struct chat_stats *st)
{
    struct chat_counters cc;
    struct cache_stats cs;

    memset(st, 0, sizeof(*st));
    chat_get_counters(ch, &cc);
    cache_get_stats(ch->cache, &cs);
    st->hits_exact = cc.hits_exact;
    st->hits_semantic = cc.hits_semantic;
    st->hits_coalesced = cc.hits_coalesced;
    st->misses = cc.misses;
    st->bypasses = cc.bypasses;
    memcpy(st->bypass, cc.bypass, sizeof(st->bypass));
    st->no_store = cc.no_store;
    st->refused = cc.refused;
    st->stores = cc.stores;
    st->store_skipped = cc.store_skipped;
    st->store_dropped = cc.store_dropped;
    st->store_queued = cc.store_queued;
    st->item_hits = cc.item_hits;
    st->item_misses = cc.item_misses;
    st->item_bypasses = cc.item_bypasses;
    st->log_errors = cs.log_errors;
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++)
        st->rejected += cs.rejected[i];
    st->rejected += cs.rejected_unreusable + cs.rejected_disputed;
    st->evictions = cs.evictions;
    st->entries = cs.entries;
    st->memory = cs.memory;
}
