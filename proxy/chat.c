/* chat.c - cache policy for POST /v1/chat/completions; see chat.h. */
#include "proxy/chat.h"

#include "cache/match/embed.h"
#include "cache/base/rand.h"
#include "cache/persist/snapshot.h"
#include "cache/index/store.h"
#include "cache/match/verify.h"
#include "cache/persist/wal.h"
#include "proxy/journal.h"
#include "config/config.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "upstream/embedclient.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Partitions up to this many vectors are scanned rather than indexed: a
 * scan of 256 x 384 floats is a few microseconds and needs no graph. */
#define EXACT_SCAN_MAX 256
/* After a failed snapshot, the log-size trigger waits this long to retry. */
#define SNAP_RETRY_MS 10000
/* Default threshold of the openai embedder. Not calibrated on the dev sets
 * (that needs the real model): paraphrases typically score 0.85-0.95 with
 * OpenAI's text-embedding-3-small, so 0.90 keeps to the safe end and leaves
 * the rest to the hit verifier. See docs/embedders.md. */
#define OPENAI_THRESHOLD 0.90f

/* Why a request skipped the lookup: r->why, and a counter each. */
static const char *const bypass_reasons[] = {"no-cache", "unkeyable", "nul-in-string"};
#define BYPASS_REASONS (sizeof(bypass_reasons) / sizeof(bypass_reasons[0]))

struct chat {
    struct store *store;
    struct embedder *emb;    /* the builtin embedder, or NULL */
    struct embed_client *ec; /* the remote one, or NULL */
    unsigned dim;
    char emb_name[200]; /* kind, model and dimension: vectors of two names never meet */
    struct flight_table *flights;
    float threshold;
    bool verifier;
    int64_t ttl;
    const char *shared_tenant;
    atomic_uint_fast64_t hits_exact, hits_semantic, hits_coalesced, misses, refused, no_store;
    atomic_uint_fast64_t bypasses[BYPASS_REASONS];
    atomic_uint_fast64_t stores, store_skipped;
    atomic_uint_fast64_t rejected[VERIFY_REASONS];
    atomic_uint_fast64_t rejected_tool_calls; /* candidates whose answer calls tools */
    struct wal *wal;                          /* NULL: the cache lives in memory only */
    atomic_uint_fast64_t journal_errors;
    /* Stores hold it shared and deletes exclusive, each across its store
     * change and its log append, so the log records a delete and a store
     * of the same key in the order they happened in memory. */
    pthread_rwlock_t log_order;

    /* Snapshots (chat_snapshot): one at a time, under snap_mu. The timer
     * thread runs while snap_thread_on; it wakes on snap_cv to stop. */
    char *dir;
    int64_t snap_interval; /* ms; 0: no timed snapshots */
    size_t snap_wal_size;  /* bytes of log that trigger one; 0: none */
    bool snap_on_shutdown;
    pthread_mutex_t snap_mu;
    pthread_cond_t snap_cv;
    pthread_t snap_thread;
    bool snap_thread_on, snap_stop;
    int64_t snap_last_ms;  /* wall clock of the last attempt's end (or of the load) */
    atomic_int snap_error; /* errno of the last failed attempt, 0 after a success */
    atomic_uint_fast64_t snaps, snap_failures, snap_last_entries, snap_last_bytes;
    atomic_uint_fast64_t snap_last_ms_taken, snap_loaded_ms;
};

/* Bytes an answer occupies in the store, for its memory accounting. */
static size_t rendered_size(const struct cmpl_rendered *cr)
{
    return sizeof(*cr) + cr->body_len + cr->sse_len + cr->usage_len + strlen(cr->model) + 4;
}

static void payload_free(void *p)
{
    struct cmpl_rendered *r = p;

    if (r) {
        cmpl_rendered_fini(r);
        free(r);
    }
}

/* The openai embedder from c: its client, and its dimension, asked of the
 * endpoint when not configured. Logs why it cannot start. */
static int remote_new(struct chat *ch, const struct cfg *c)
{
    struct embed_client_opts o = {.url = c->embed_url,
                                  .model = c->embed_model,
                                  .key = c->embed_key,
                                  .timeout_ms = c->embed_timeout_ms,
                                  .dim = (unsigned)c->embed_dim,
                                  .batch = (unsigned)c->embed_batch,
                                  .breaker_failures = (unsigned)c->breaker_failures,
                                  .breaker_cooldown_ms = c->breaker_cooldown_ms};
    const char *probe = "parrot";
    enum embed_result r;
    char msg[160];
    int rc;

    if (!c->embed_url) {
        log_msg(LOG_ERROR, "embedder=openai needs embed-url", "e.g. https://api.openai.com/v1");
        return -EINVAL;
    }
    if (c->embed_timeout_ms <= 0) {
        log_msg(LOG_ERROR, "embed-timeout must be above 0", NULL);
        return -EINVAL;
    }
    if ((rc = embed_client_new(&o, &ch->ec)) != 0)
        return rc;
    if (!o.dim && embed_client_embed_wait(ch->ec, &probe, 1, NULL, &r) != 1) {
        snprintf(msg, sizeof(msg), "%s: %s; set embed-dim to start without asking", c->embed_url,
                 embed_result_name(r));
        log_msg(LOG_ERROR, "cannot learn the embedding dimension", msg);
        return -EHOSTUNREACH;
    }
    ch->dim = embed_client_dim(ch->ec);
    snprintf(ch->emb_name, sizeof(ch->emb_name), "openai:%.120s:%u", c->embed_model, ch->dim);
    /* The name is a metric label value: keep it free of quoting. */
    for (char *p = ch->emb_name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ')
            *p = '_';
    ch->threshold = OPENAI_THRESHOLD;
    return 0;
}

/* The embedder c names. Logs why it cannot start. */
static int embedder_new(struct chat *ch, const struct cfg *c)
{
    char err[256] = "";
    struct embed_builtin_opts eo = {
        .word_vectors = c->word_vectors, .err = err, .err_len = sizeof(err)};
    struct log_rec lr;
    int rc;

    if (c->embedder && strcmp(c->embedder, "openai") == 0)
        return remote_new(ch, c);
    if (c->embedder && strcmp(c->embedder, "builtin") != 0) {
        log_msg(LOG_ERROR, "unknown embedder (builtin or openai)", c->embedder);
        return -EINVAL;
    }
    if ((rc = embed_builtin_new_opts(&eo, &ch->emb)) != 0) {
        log_msg(LOG_ERROR, "word-vector table rejected", err);
        return rc;
    }
    /* Which mode the embedder is in: with a table it finds synonyms. */
    log_begin(&lr, LOG_INFO, "embedder");
    log_str(&lr, "name", embedder_name(ch->emb));
    log_int(&lr, "dim", embedder_dim(ch->emb));
    log_str(&lr, "word_vectors",
            embedder_word_vectors(ch->emb) ? c->word_vectors : "none (lexical features only)");
    log_end(&lr);
    ch->dim = embedder_dim(ch->emb);
    snprintf(ch->emb_name, sizeof(ch->emb_name), "%s:%u", embedder_name(ch->emb), ch->dim);
    ch->threshold = embedder_threshold(ch->emb);
    return 0;
}

int chat_new(const struct cfg *c, struct chat **out)
{
    struct chat *ch = calloc(1, sizeof(*ch));
    struct store_opts so = {0};
    int rc;

    if (!ch)
        return -ENOMEM;
    if (pthread_mutex_init(&ch->snap_mu, NULL) != 0) {
        free(ch);
        return -ENOMEM;
    }
    if (pthread_cond_init(&ch->snap_cv, NULL) != 0) {
        pthread_mutex_destroy(&ch->snap_mu);
        free(ch);
        return -ENOMEM;
    }
    if (pthread_rwlock_init(&ch->log_order, NULL) != 0) {
        free(ch);
        return -ENOMEM;
    }
    if ((rc = embedder_new(ch, c)) != 0)
        goto fail;
    so.dim = ch->dim;
    so.max_memory = c->cache_max_memory;
    so.exact_scan_max = EXACT_SCAN_MAX;
    /* The remote model's similarity is used as it is: mixing in the
     * lexical score would move its threshold, which is the operator's. */
    so.lexical_weight = ch->emb ? embedder_lexical_weight(ch->emb) : 0;
    so.payload_free = payload_free;
    if ((rc = store_new(&so, &ch->store)) != 0)
        goto fail;
    if ((rc = flight_new(&ch->flights)) != 0)
        goto fail;
    if (c->similarity_threshold > 0)
        ch->threshold = (float)c->similarity_threshold;
    ch->ttl = c->cache_ttl_ms;
    ch->verifier = c->verifier;
    ch->shared_tenant = c->shared_tenant;
    ch->snap_interval = c->snapshot_interval_ms;
    ch->snap_wal_size = c->snapshot_wal_size;
    ch->snap_on_shutdown = c->snapshot_on_shutdown;
    *out = ch;
    return 0;
fail:
    chat_free(ch);
    return rc;
}

void chat_free(struct chat *ch)
{
    if (!ch)
        return;
    if (ch->snap_thread_on) {
        pthread_mutex_lock(&ch->snap_mu);
        ch->snap_stop = true;
        pthread_cond_signal(&ch->snap_cv);
        pthread_mutex_unlock(&ch->snap_mu);
        pthread_join(ch->snap_thread, NULL);
    }
    if (ch->wal && ch->snap_on_shutdown) {
        /* So that the next start loads graphs instead of replaying the log. */
        char msg[1200];
        int rc = chat_snapshot(ch, msg, sizeof(msg));
        log_msg(rc ? LOG_WARN : LOG_INFO, rc ? "snapshot failed" : "snapshot written", msg);
    }
    wal_close(ch->wal); /* flushes what is pending */
    embed_client_free(ch->ec);
    pthread_cond_destroy(&ch->snap_cv);
    pthread_mutex_destroy(&ch->snap_mu);
    free(ch->dir);
    store_free(ch->store);
    embedder_free(ch->emb);
    flight_free(ch->flights);
    pthread_rwlock_destroy(&ch->log_order);
    free(ch);
}

/* The tenant: the operator's shared scope, else the configured tenant
 * header, else the client's key. Hashed, so that a key never sits in
 * memory longer than the request and a client with a bogus key can only
 * ever reach its own, empty, partition. */
static void tenant_of(const struct chat *ch, const char *authorization, const char *tenant_value,
                      char *out, size_t outlen)
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    const char *kind = "auth:", *v = authorization ? authorization : "";

    if (ch->shared_tenant) {
        snprintf(out, outlen, "shared:%s", ch->shared_tenant);
        return;
    }
    if (tenant_value) {
        kind = "header:";
        v = tenant_value;
    }
    SHA256((const unsigned char *)v, strlen(v), h);
    canon_hex(h, sizeof(h), hex);
    snprintf(out, outlen, "%s%s", kind, hex);
}

static bool json_true(const cJSON *o, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

void chat_req_init(struct chat *ch, struct chat_req *r, const cJSON *doc, const char *raw,
                   size_t raw_len, const char *authorization, const char *tenant_value,
                   const char *cache_control, const char *ttl_header)
{
    char tenant[160];
    const char *model;

    memset(r, 0, sizeof(*r));
    r->verdict = CHAT_BYPASS; /* until chat_lookup() decides */
    cmpl_asm_init(&r->as);
    hdr_parse_cache_control(cache_control, &r->cc);
    r->stream = json_true(doc, "stream");
    r->include_usage =
        json_true(cJSON_GetObjectItemCaseSensitive(doc, "stream_options"), "include_usage");
    model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "model"));
    snprintf(r->model, sizeof(r->model), "%s", model ? model : "");
    r->ttl = ch ? ch->ttl : 0;
    if (ttl_header) {
        char *end;
        long long t = strtoll(ttl_header, &end, 10);
        if (end != ttl_header && *end == '\0' && t >= 0 && t < INT64_MAX / 1000)
            r->ttl = t * 1000;
    }
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
    tenant_of(ch, authorization, tenant_value, tenant, sizeof(tenant));
    if (canon_request_src(doc, raw, raw ? raw_len : 0, tenant, "/v1/chat/completions", &r->key) !=
        0) {
        r->why = bypass_reasons[1];
        return;
    }
    r->keyed = true;
    r->store = !r->cc.no_store;
}

/* The builtin embedding of text[0..len), malloc'd; NULL when there is
 * nothing to embed. */
static float *embed_local(struct chat *ch, const char *text, size_t len)
{
    float *v = malloc(sizeof(float) * ch->dim);

    if (v && embedder_embed(ch->emb, text, len, v) != 0) {
        free(v);
        v = NULL;
    }
    return v;
}

/* The embedding of the lookup text, computed on first use by the builtin
 * embedder: an exact hit never needs one. A remote embedding is never made
 * here (it would block the calling thread): chat_lookup() asks for it with
 * CHAT_EMBED. NULL when there is no text or nothing to embed. */
static const float *vec_of(struct chat *ch, struct chat_req *r)
{
    if (r->vec || r->vec_done || !r->key.lookup_text || ch->ec)
        return r->vec;
    r->vec_done = true;
    r->vec = embed_local(ch, r->key.lookup_text, r->key.lookup_len);
    return r->vec;
}

/* Must the remote embedder be asked before the lookup goes on? */
static bool wants_remote(const struct chat *ch, const struct chat_req *r)
{
    return ch->ec && !r->vec_done && r->key.lookup_text;
}

/* The embedder's thread: r's vector arrived, or will not. */
static void embedded(void *ud, enum embed_result res, const float *vec)
{
    struct chat_req *r = ud;

    r->embed_result = embed_result_name(res);
    r->vec_done = true;
    if (vec) {
        r->vec = malloc(sizeof(float) * r->embed_ch->dim);
        if (r->vec)
            memcpy(r->vec, vec, sizeof(float) * r->embed_ch->dim);
    }
    r->embed_wake(r);
}

int chat_embed(struct chat *ch, struct chat_req *r, void (*wake)(struct chat_req *r))
{
    int rc;

    r->embed_ch = ch;
    r->embed_wake = wake;
    rc = embed_client_submit(ch->ec, r->key.lookup_text, r->key.lookup_len, embedded, r);
    if (rc != 0) {
        r->vec_done = true;
        r->embed_result = embed_result_name(rc == -EAGAIN ? EMBED_BREAKER_OPEN : EMBED_CANCELLED);
    }
    return rc;
}

void chat_req_fini(struct chat_req *r)
{
    canon_key_fini(&r->key);
    free(r->vec);
    store_entry_unref(r->hit);
    cmpl_asm_fini(&r->as);
    memset(r, 0, sizeof(*r));
}

struct verify_ctx {
    struct chat *ch;
    const struct chat_req *r;
};

/* Called on each semantic candidate above the threshold: answers that call
 * tools are refused, then the hit verifier (when on) decides. */
static bool accept_candidate(void *ud, const struct store_entry *e, float sim)
{
    struct verify_ctx *v = ud;
    const struct cmpl_rendered *cr = store_entry_payload(e);
    const char *text = store_entry_text(e);
    enum verify_reason why;

    (void)sim;
    /* A tool call's arguments are the stored question's (its recipient, its
     * amounts), and the client acts on them: only an exact hit may replay. */
    if (cr->tool_calls) {
        atomic_fetch_add(&v->ch->rejected_tool_calls, 1);
        return false;
    }
    if (!v->ch->verifier)
        return true;
    if (!text)
        return false;
    why = verify_texts_wv(v->r->key.lookup_text, v->r->key.lookup_len, text, strlen(text),
                          v->ch->emb ? embedder_word_vectors(v->ch->emb) : NULL);
    if (why == VERIFY_OK)
        return true;
    atomic_fetch_add(&v->ch->rejected[why], 1);
    return false;
}

static int64_t max_age_ms(const struct chat_req *r)
{
    return r->cc.max_age < 0 || r->cc.max_age > INT64_MAX / 1000 ? -1 : r->cc.max_age * 1000;
}

enum chat_verdict chat_lookup(struct chat *ch, struct chat_req *r, int64_t now)
{
    struct verify_ctx vc = {ch, r};

    struct store_entry *e;

    if (!r->keyed || r->cc.no_cache) {
        size_t why = 0;

        /* No lookup, but the answer is stored: with its vector. */
        if (r->keyed && r->store && wants_remote(ch, r))
            return r->verdict = CHAT_EMBED;
        if (!r->why)
            r->why = bypass_reasons[0];
        while (why + 1 < BYPASS_REASONS && r->why != bypass_reasons[why])
            why++;
        atomic_fetch_add(&ch->bypasses[why], 1);
        return r->verdict = r->cc.only_if_cached && !r->keyed ? CHAT_REFUSE : CHAT_BYPASS;
    }
    if (!r->store)
        atomic_fetch_add(&ch->no_store, 1);
    e = store_get_exact(ch->store, r->key.exact, now, max_age_ms(r));
    if (e) {
        r->hit = e;
        r->exact = true;
        r->sim = 1.0f;
        atomic_fetch_add(&ch->hits_exact, 1);
        return r->verdict = CHAT_HIT;
    }
    if (wants_remote(ch, r))
        return r->verdict = CHAT_EMBED;
    if (vec_of(ch, r)) {
        struct store_query q = {.partition = r->key.partition,
                                .vec = r->vec,
                                .text = r->key.lookup_text,
                                .text_len = r->key.lookup_len,
                                .threshold = ch->threshold,
                                .now = now,
                                .max_age = max_age_ms(r),
                                .candidates = CHAT_CANDIDATES,
                                .accept = accept_candidate,
                                .ud = &vc};
        e = store_get_semantic(ch->store, &q, &r->sim);
        if (e) {
            r->hit = e;
            atomic_fetch_add(&ch->hits_semantic, 1);
            return r->verdict = CHAT_HIT;
        }
    }
    if (r->cc.only_if_cached) {
        atomic_fetch_add(&ch->refused, 1);
        return r->verdict = CHAT_REFUSE;
    }
    return r->verdict = CHAT_MISS;
}

enum chat_verdict chat_relookup(struct chat *ch, struct chat_req *r, int64_t now)
{
    struct store_entry *e = store_get_exact(ch->store, r->key.exact, now, max_age_ms(r));

    if (e) {
        r->hit = e;
        r->exact = r->coalesced = true;
        r->sim = 1.0f;
        atomic_fetch_add(&ch->hits_coalesced, 1);
        return r->verdict = CHAT_HIT;
    }
    atomic_fetch_add(&ch->misses, 1);
    return r->verdict = CHAT_MISS;
}

char *chat_hit_body(const struct chat_req *r, int64_t now, size_t *len)
{
    const struct cmpl_rendered *cr = store_entry_payload(r->hit);
    char id[48], *out;
    size_t need;

    /* A fresh id per answer, as the provider would give: random, since a
     * counter would tell a client how many hits others had in between. */
    snprintf(id, sizeof(id), "chatcmpl-parrot-%016" PRIx64 "%08" PRIx64, rand_u64(),
             rand_u64() & UINT64_C(0xffffffff));
    need = r->stream ? cmpl_write_sse(NULL, 0, cr, id, now / 1000, r->include_usage)
                     : cmpl_write_json(NULL, 0, cr, id, now / 1000);
    out = malloc(need ? need : 1);
    if (!out)
        return NULL;
    if (r->stream)
        cmpl_write_sse(out, need, cr, id, now / 1000, r->include_usage);
    else
        cmpl_write_json(out, need, cr, id, now / 1000);
    *len = need;
    return out;
}

void chat_headers(const struct chat_req *r, int64_t now,
                  void (*add)(void *ud, const char *name, const char *value), void *ud)
{
    char v[128];

    switch (r->verdict) {
    case CHAT_HIT: {
        int64_t age = now - store_entry_created(r->hit);
        snprintf(v, sizeof(v), "parrot; hit; detail=%s",
                 r->coalesced ? "coalesced"
                 : r->exact   ? "exact"
                              : "semantic");
        add(ud, "Cache-Status", v);
        snprintf(v, sizeof(v), "%" PRId64, age > 0 ? age / 1000 : 0);
        add(ud, "Age", v);
        add(ud, "x-parrot-cache", "hit");
        snprintf(v, sizeof(v), "%.4f", (double)r->sim);
        add(ud, "x-parrot-similarity", v);
        snprintf(v, sizeof(v), "%016" PRIx64, store_entry_id(r->hit));
        add(ud, "x-parrot-entry", v);
        break;
    }
    case CHAT_MISS:
    case CHAT_REFUSE:
    case CHAT_EMBED:
        snprintf(v, sizeof(v), "parrot; fwd=uri-miss%s%s",
                 r->verdict == CHAT_REFUSE ? "; detail=only-if-cached" : "",
                 r->stored ? "; stored" : "");
        add(ud, "Cache-Status", v);
        add(ud, "x-parrot-cache", "miss");
        break;
    case CHAT_BYPASS:
        snprintf(v, sizeof(v), "parrot; fwd=%s; detail=%s%s", r->cc.no_cache ? "request" : "bypass",
                 r->why ? r->why : "bypass", r->stored ? "; stored" : "");
        add(ud, "Cache-Status", v);
        add(ud, "x-parrot-cache", "bypass");
        break;
    }
}

const char *chat_outcome(const struct chat_req *r)
{
    switch (r->verdict) {
    case CHAT_HIT: return r->coalesced ? "hit-coalesced" : r->exact ? "hit-exact" : "hit-semantic";
    case CHAT_MISS:
    case CHAT_EMBED: return "miss";
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

void chat_store(struct chat *ch, struct chat_req *r, long status, bool sse, const char *body,
                size_t len, int64_t now)
{
    struct store_put_args a = {0};
    struct cmpl_rendered *cr = NULL;
    cJSON *doc;
    const char *why = NULL;
    uint64_t id;
    struct buf jbuf = {0};

    if (!ch || !r->keyed || !r->store)
        return;
    if (status != 200) { /* an error answer, or a failed transfer (< 0) */
        atomic_fetch_add(&ch->store_skipped, 1);
        return;
    }
    doc = sse ? cmpl_asm_take(&r->as) : cJSON_ParseWithLength(body, len);
    if (!doc) {
        why = sse ? r->as.why : "unparseable response";
        goto skip;
    }
    cr = malloc(sizeof(*cr));
    if (!cr || cmpl_render(doc, cr, &why) != 0) {
        free(cr);
        cr = NULL;
        goto skip;
    }
    cJSON_Delete(doc);
    doc = NULL;
    a.partition = r->key.partition;
    a.exact = r->key.exact;
    a.vec = vec_of(ch, r);
    a.text = r->key.lookup_text;
    a.payload = cr;
    a.payload_size = rendered_size(cr);
    a.cost = (double)(cr->prompt_tokens + cr->completion_tokens);
    a.now = now;
    a.ttl = r->ttl;
    if (ch->wal) {
        /* Encoded before store_put, which may evict (and free) cr at once. */
        struct journal_put jp = {.created = now,
                                 .expires = r->ttl > 0 ? now + r->ttl : 0,
                                 .cost = a.cost,
                                 .text = r->key.lookup_text,
                                 .r = *cr};
        memcpy(jp.partition, r->key.partition, JOURNAL_KEY_LEN);
        memcpy(jp.exact, r->key.exact, JOURNAL_KEY_LEN);
        buf_reset(&jbuf);
        if (journal_encode_put(&jp, &jbuf) != 0)
            buf_free(&jbuf);
    }
    pthread_rwlock_rdlock(&ch->log_order);
    if (store_put(ch->store, &a, &id) != 0) {
        pthread_rwlock_unlock(&ch->log_order);
        why = "out of memory";
        goto skip;
    }
    /* The entry is served from memory at once; the log catches up on the
     * WAL's own thread and never holds this request up. */
    if (ch->wal &&
        (!jbuf.p || wal_append(ch->wal, JOURNAL_PUT, jbuf.p, jbuf.len, &r->wal_seq) != 0))
        atomic_fetch_add(&ch->journal_errors, 1);
    pthread_rwlock_unlock(&ch->log_order);
    buf_free(&jbuf);
    r->stored = true;
    atomic_fetch_add(&ch->stores, 1);
    return;
skip:
    buf_free(&jbuf);
    cJSON_Delete(doc);
    atomic_fetch_add(&ch->store_skipped, 1);
    log_msg(LOG_DEBUG, "answer not stored", why);
}

/* A logged or snapshotted entry, into the store: under id (0: a new one),
 * with its vector (NULL: none, exact hits only). */
static int put_entry(struct chat *ch, struct journal_put *p, uint64_t id, const float *vec)
{
    struct store_put_args a = {.id = id};
    struct cmpl_rendered *cr = malloc(sizeof(*cr));

    if (!cr)
        return -ENOMEM;
    *cr = p->r;
    memset(&p->r, 0, sizeof(p->r)); /* the store owns it now */
    a.partition = p->partition;
    a.exact = p->exact;
    a.vec = vec;
    a.text = p->text;
    a.payload = cr;
    a.payload_size = rendered_size(cr);
    a.cost = p->cost;
    a.now = p->created;
    a.ttl = p->expires ? p->expires - p->created : 0;
    return store_put(ch->store, &a, &id);
}

struct replay_ctx {
    struct chat *ch;
    int64_t now;
    uint64_t loaded, expired, unreadable, deleted, unembedded;
    /* With the remote embedder, entries wait here for their vectors, to be
     * embedded max_pending at a time; stored in log order all the same. */
    struct journal_put *pending;
    size_t npending, cap, max_pending;
};

/* Embed the pending entries' texts in one go and store them in order. An
 * entry whose text could not be embedded is kept for exact hits. */
static int flush_pending(struct replay_ctx *rc)
{
    struct chat *ch = rc->ch;
    size_t n = rc->npending, m = 0;
    const char **texts = calloc(n ? n : 1, sizeof(*texts));
    size_t *slot = calloc(n ? n : 1, sizeof(*slot));
    enum embed_result *res = calloc(n ? n : 1, sizeof(*res));
    float *vecs = malloc(sizeof(float) * ch->dim * (n ? n : 1));
    int err = 0;

    if (!texts || !slot || !res || !vecs)
        err = -ENOMEM;
    for (size_t i = 0; !err && i < n; i++)
        if (rc->pending[i].text) {
            slot[i] = m;
            texts[m++] = rc->pending[i].text;
        }
    if (!err)
        embed_client_embed_wait(ch->ec, texts, m, vecs, res);
    for (size_t i = 0; i < n; i++) {
        struct journal_put *p = &rc->pending[i];
        bool ok = !err && p->text && res[slot[i]] == EMBED_OK;
        if (!err && put_entry(ch, p, 0, ok ? vecs + slot[i] * ch->dim : NULL) != 0)
            err = -ENOMEM;
        if (!err) {
            rc->loaded++;
            rc->unembedded += p->text && !ok;
        }
        journal_put_fini(p);
    }
    rc->npending = 0;
    free(texts);
    free(slot);
    free(res);
    free(vecs);
    return err;
}

/* Queue p, and its ownership, for flush_pending. A log replay flushes every
 * max_pending entries; a snapshot's (max_pending 0) wait until it is loaded. */
static int pend(struct replay_ctx *rc, struct journal_put *p)
{
    if (rc->npending == rc->cap) {
        size_t cap = rc->cap ? 2 * rc->cap : 64;
        struct journal_put *np = realloc(rc->pending, cap * sizeof(*np));
        if (!np) {
            journal_put_fini(p);
            return -ENOMEM;
        }
        rc->pending = np;
        rc->cap = cap;
    }
    rc->pending[rc->npending++] = *p;
    return rc->max_pending && rc->npending >= rc->max_pending ? flush_pending(rc) : 0;
}

/* What a failed replay left queued. */
static void pending_free(struct replay_ctx *rc)
{
    for (size_t i = 0; i < rc->npending; i++)
        journal_put_fini(&rc->pending[i]);
    free(rc->pending);
    rc->pending = NULL;
    rc->npending = rc->cap = 0;
}

/* A logged admin delete: drop what the log holds under each key by now. */
static void replay_del(struct replay_ctx *rc, const uint8_t (*keys)[JOURNAL_KEY_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct store_ref ref = {.id = 0};
        memcpy(ref.exact, keys[i], JOURNAL_KEY_LEN);
        if (store_remove(rc->ch->store, &ref) == 0)
            rc->deleted++;
    }
}

static int replay(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct replay_ctx *rc = ud;
    struct journal_put p;
    const uint8_t(*keys)[JOURNAL_KEY_LEN];
    size_t nkeys;
    float *vec;
    int err = 0;

    (void)seq; /* wal_open replays only what the snapshot does not cover */
    if (type == JOURNAL_DEL && journal_decode_del(payload, len, &keys, &nkeys) == 0) {
        /* Entries logged before the delete must be in the store first. */
        if (rc->npending && (err = flush_pending(rc)) != 0)
            return err;
        replay_del(rc, keys, nkeys);
        return 0;
    }
    if (type != JOURNAL_PUT || journal_decode_put(payload, len, &p) != 0) {
        /* Valid framing (the CRC matched) but a record this version does
         * not know: skip it rather than refuse to start. */
        rc->unreadable++;
        return 0;
    }
    if (p.expires && p.expires <= rc->now) {
        rc->expired++;
    } else if (rc->ch->ec) {
        return pend(rc, &p);
    } else {
        vec = p.text ? embed_local(rc->ch, p.text, strlen(p.text)) : NULL;
        if (put_entry(rc->ch, &p, 0, vec) == 0)
            rc->loaded++;
        else
            err = -ENOMEM;
        free(vec);
    }
    journal_put_fini(&p);
    return err;
}

/* snap_codec: an entry's record in a snapshot is its journal PUT payload. */
static int snap_encode(void *ud, const struct store_entry *e, const uint8_t *partition,
                       struct buf *out)
{
    struct journal_put jp = {.created = store_entry_created(e),
                             .expires = store_entry_expires(e),
                             .cost = store_entry_cost(e),
                             .text = (char *)store_entry_text(e),
                             .r = *(const struct cmpl_rendered *)store_entry_payload(e)};

    (void)ud;
    memcpy(jp.partition, partition, JOURNAL_KEY_LEN);
    memcpy(jp.exact, store_entry_exact(e), JOURNAL_KEY_LEN);
    return journal_encode_put(&jp, out);
}

static int snap_restore(void *ud, uint64_t id, const float *vec, const void *rec, size_t len)
{
    struct replay_ctx *rc = ud;
    struct journal_put p;
    int err;

    if (journal_decode_put(rec, len, &p) != 0) {
        rc->unreadable++;
        return 1;
    }
    if (p.expires && p.expires <= rc->now) {
        rc->expired++;
        err = 1;
    } else if (!vec && p.text && rc->ch->ec) {
        /* No usable vector (none was made, or another embedder made it):
         * the remote embedder makes one once the whole file is in. */
        return pend(rc, &p);
    } else {
        float *own = !vec && p.text ? embed_local(rc->ch, p.text, strlen(p.text)) : NULL;
        err = put_entry(rc->ch, &p, id, vec ? vec : own);
        free(own);
    }
    journal_put_fini(&p);
    return err;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Where snapshots go and whose vectors they hold. */
static void snap_opts_init(const struct chat *ch, struct snap_opts *so)
{
    memset(so, 0, sizeof(*so));
    so->dir = ch->dir;
    so->dim = ch->dim;
    so->embedder = wal_crc32c(0, ch->emb_name, strlen(ch->emb_name));
}

int chat_snapshot(struct chat *ch, char *msg, size_t msglen)
{
    struct replay_ctx unused = {.ch = ch};
    struct snap_codec codec = {snap_encode, snap_restore, &unused};
    struct snap_opts so;
    struct snap_report rep;
    int64_t t0 = wall_ms();
    uint64_t seq;
    int rc;

    if (!ch || !ch->wal) {
        snprintf(msg, msglen, "snapshots need persistence (persist = true)");
        return -EINVAL;
    }
    snap_opts_init(ch, &so);
    so.now_ms = t0;
    pthread_mutex_lock(&ch->snap_mu);
    /* Before the capture: see the ordering argument in cache/snapshot.h. */
    seq = wal_last_seq(ch->wal);
    rc = snap_write(&so, ch->store, seq, &codec, &rep);
    if (rc == 0) {
        int rrc = wal_rotate(ch->wal, seq);
        size_t n = strlen(rep.message);
        if (rrc)
            snprintf(rep.message + n, sizeof(rep.message) - n,
                     "; the log was not compacted (%s): the next start skips what the snapshot "
                     "covers",
                     strerror(-rrc));
        atomic_fetch_add(&ch->snaps, 1);
        atomic_store(&ch->snap_last_entries, rep.entries);
        atomic_store(&ch->snap_last_bytes, rep.bytes);
    } else {
        atomic_fetch_add(&ch->snap_failures, 1);
    }
    atomic_store(&ch->snap_error, -rc);
    ch->snap_last_ms = wall_ms();
    atomic_store(&ch->snap_last_ms_taken, (uint64_t)(ch->snap_last_ms - t0));
    pthread_mutex_unlock(&ch->snap_mu);
    snprintf(msg, msglen, "%s (%" PRId64 " ms)", rep.message, ch->snap_last_ms - t0);
    return rc;
}

/* Timed and log-size snapshots. Checks once a second; a failed attempt
 * waits for the next interval (or the next second when only the log size
 * triggers), so a full disk is retried without spinning. */
static void *snap_main(void *arg)
{
    struct chat *ch = arg;

    pthread_mutex_lock(&ch->snap_mu);
    while (!ch->snap_stop) {
        struct timespec ts;
        struct wal_status ws;
        bool due;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&ch->snap_cv, &ch->snap_mu, &ts);
        if (ch->snap_stop)
            break;
        wal_status(ch->wal, &ws);
        due = (ch->snap_interval > 0 && wall_ms() - ch->snap_last_ms >= ch->snap_interval) ||
              (ch->snap_wal_size > 0 && ws.file_size >= ch->snap_wal_size && !ws.error &&
               (!atomic_load(&ch->snap_error) || wall_ms() - ch->snap_last_ms >= SNAP_RETRY_MS));
        if (!due)
            continue;
        pthread_mutex_unlock(&ch->snap_mu);
        char msg[1200];
        int rc = chat_snapshot(ch, msg, sizeof(msg));
        log_msg(rc ? LOG_WARN : LOG_INFO, rc ? "snapshot failed" : "snapshot written", msg);
        pthread_mutex_lock(&ch->snap_mu);
    }
    pthread_mutex_unlock(&ch->snap_mu);
    return NULL;
}

const char *chat_journal_problem(struct chat *ch)
{
    struct wal_status ws;

    if (!ch || !ch->wal)
        return NULL;
    wal_status(ch->wal, &ws);
    if (!ws.error) {
        switch (atomic_load(&ch->snap_error)) {
        case 0: return NULL;
        case ENOSPC: return "snapshot failed: disk full; the write-ahead log still has every entry";
        default: return "snapshot failed; the write-ahead log still has every entry";
        }
    }
    /* Static texts: readiness bodies are built without allocation. The
     * WAL's errors are negative errno values. */
    switch (-ws.error) {
    case ENOSPC: return "write-ahead log degraded: disk full; serving from memory";
    case EIO: return "write-ahead log degraded: I/O error; serving from memory";
    default: return "write-ahead log degraded; serving from memory";
    }
}

int chat_open_journal(struct chat *ch, const char *dir, const char *fsync, int64_t now, char *msg,
                      size_t msglen)
{
    struct wal_opts o = {.dir = dir};
    struct wal_report rep;
    struct replay_ctx sctx = {.ch = ch, .now = now}, ctx = {.ch = ch, .now = now};
    struct snap_codec codec = {snap_encode, snap_restore, &sctx};
    struct snap_opts so;
    struct snap_report srep;
    struct store_stats held;
    int64_t t0 = wall_ms();
    char unembedded[96] = "";
    int rc;

    if (wal_policy_parse(fsync, &o.policy) != 0) {
        snprintf(msg, msglen, "invalid wal-fsync '%s' (always, batch, everysec or off)", fsync);
        return -EINVAL;
    }
    if (!(ch->dir = strdup(dir))) {
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    snap_opts_init(ch, &so);
    rc = snap_load(&so, ch->store, &codec, &srep);
    /* Entries waiting for a remote vector: every id the snapshot assigns is
     * taken before they are stored under new ones. */
    if (rc == 0 && sctx.npending)
        rc = flush_pending(&sctx);
    pending_free(&sctx);
    if (rc != 0) {
        snprintf(msg, msglen, "%s", srep.message[0] ? srep.message : strerror(-rc));
        return rc;
    }
    o.min_seq = srep.wal_seq;
    ctx.max_pending = ch->ec ? embed_client_batch(ch->ec) : 0;
    rc = wal_open(&o, replay, &ctx, &rep, &ch->wal);
    if (rc != 0)
        snprintf(msg, msglen, "%s", rep.message[0] ? rep.message : strerror(-rc));
    else if (ctx.npending && (rc = flush_pending(&ctx)) != 0)
        snprintf(msg, msglen, "reloading the cache: %s", strerror(-rc));
    pending_free(&ctx);
    if (rc != 0)
        return rc;
    ch->snap_last_ms = wall_ms();
    atomic_store(&ch->snap_loaded_ms, (uint64_t)(ch->snap_last_ms - t0));
    store_get_stats(ch->store, &held);
    if (ctx.unembedded + sctx.unembedded)
        snprintf(unembedded, sizeof(unembedded),
                 " (%" PRIu64 " for exact hits only: the embedder failed)",
                 ctx.unembedded + sctx.unembedded);
    snprintf(msg, msglen,
             "%s; %s: %" PRIu64 " entries loaded, %" PRIu64 " expired, %" PRIu64
             " deleted, %" PRIu64 " unreadable records skipped%s%s%s; the cache holds %zu entries%s"
             " (%" PRId64 " ms)",
             srep.message, rep.path, ctx.loaded, ctx.expired + sctx.expired, ctx.deleted,
             ctx.unreadable + sctx.unreadable, rep.truncated ? "; " : "",
             rep.truncated ? rep.message : "",
             rep.base_seq > srep.wal_seq + 1
                 ? "; the log starts after the snapshot ends: entries in between are lost"
                 : "",
             held.entries, unembedded, ch->snap_last_ms - t0);
    if (ch->snap_interval > 0 || ch->snap_wal_size > 0) {
        ch->snap_thread_on = pthread_create(&ch->snap_thread, NULL, snap_main, ch) == 0;
        if (!ch->snap_thread_on)
            log_msg(LOG_WARN, "no timed snapshots", "cannot start the snapshot thread");
    }
    return 0;
}

bool chat_flight_join(struct chat *ch, struct chat_req *r, void (*wake)(struct flight_waiter *))
{
    int rc;

    if (!r->keyed || r->cc.no_cache) {
        return false;
    }
    r->waiter.wake = wake;
    rc = flight_join(ch->flights, r->key.exact, &r->waiter);
    if (rc == 0)
        return true;
    r->leader = rc == 1;
    atomic_fetch_add(&ch->misses, 1);
    return false;
}

void chat_flight_done(struct chat *ch, struct chat_req *r)
{
    if (r->leader) {
        r->leader = false;
        flight_done(ch->flights, r->key.exact);
    }
}

const struct cmpl_rendered *chat_hit_answer(const struct chat_req *r)
{
    return store_entry_payload(r->hit);
}

void chat_get_stats(struct chat *ch, struct chat_stats *st)
{
    struct store_stats ss;

    memset(st, 0, sizeof(*st));
    store_get_stats(ch->store, &ss);
    st->hits_exact = atomic_load(&ch->hits_exact);
    st->hits_semantic = atomic_load(&ch->hits_semantic);
    st->hits_coalesced = atomic_load(&ch->hits_coalesced);
    st->misses = atomic_load(&ch->misses);
    for (size_t i = 0; i < BYPASS_REASONS; i++)
        st->bypasses += atomic_load(&ch->bypasses[i]);
    st->refused = atomic_load(&ch->refused);
    st->stores = atomic_load(&ch->stores);
    st->store_skipped = atomic_load(&ch->store_skipped);
    st->journal_errors = atomic_load(&ch->journal_errors);
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++)
        st->rejected += atomic_load(&ch->rejected[i]);
    st->rejected += atomic_load(&ch->rejected_tool_calls);
    st->evictions = ss.evictions;
    st->entries = ss.entries;
    st->memory = ss.memory;
}

/* One sample, after the family's HELP and TYPE when header is set. */
static int metric(struct buf *b, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t v, bool header)
{
    char line[512];

    if (header && metrics_family(b, name, type, help) != 0)
        return -ENOMEM;
    snprintf(line, sizeof(line), "%s%s %" PRIu64 "\n", name, labels, v);
    return buf_puts(b, line, 1u << 20);
}

/* A gauge of milliseconds, exposed in seconds as Prometheus wants units. */
static int gauge_seconds(struct buf *b, const char *name, const char *help, uint64_t ms)
{
    char line[256];

    if (metrics_family(b, name, "gauge", help) != 0)
        return -ENOMEM;
    snprintf(line, sizeof(line), "%s %" PRIu64 ".%03u\n", name, ms / 1000, (unsigned)(ms % 1000));
    return buf_puts(b, line, 1u << 20);
}

/* The remote embedder's counters, latency histogram and breaker. */
static int embed_metrics(struct chat *ch, struct buf *b)
{
    struct embed_client_stats st;
    char labels[64], line[160];
    int rc = 0;

    embed_client_stats(ch->ec, &st);
    for (int i = 0; i < EMBED_RESULTS; i++) {
        snprintf(labels, sizeof(labels), "{result=\"%s\"}", embed_result_name(i));
        rc |= metric(b, "parrot_embed_requests_total", "counter",
                     "Lookup texts sent to the embeddings endpoint, by outcome.", labels,
                     st.texts[i], i == 0);
    }
    rc |= metric(b, "parrot_embed_calls_total", "counter", "Calls made to the embeddings endpoint.",
                 "", st.calls, true);
    rc |= metric(b, "parrot_embed_batched_texts_total", "counter",
                 "Texts carried by those calls (divide by the calls for the batch size).", "",
                 st.batched, true);
    rc |= metric(b, "parrot_embed_queue_depth", "gauge",
                 "Texts waiting for the embeddings call in flight to end.", "", st.queued, true);
    rc |= metric(b, "parrot_embed_breaker_state", "gauge",
                 "Embeddings endpoint circuit breaker: 0 closed, 1 half-open, 2 open.", "",
                 (uint64_t)st.breaker, true);
    /* The family's HELP and TYPE name the histogram, not its series. */
    rc |= buf_puts(b,
                   "# HELP parrot_embed_call_duration_seconds Duration of calls to the "
                   "embeddings endpoint.\n# TYPE parrot_embed_call_duration_seconds histogram\n",
                   1u << 20);
    for (int i = 0; i < EMBED_LATENCY_BUCKETS; i++) {
        snprintf(labels, sizeof(labels), "{le=\"%g\"}", st.bucket_le[i]);
        rc |= metric(b, "parrot_embed_call_duration_seconds_bucket", "", "", labels, st.bucket[i],
                     false);
    }
    snprintf(line, sizeof(line),
             "parrot_embed_call_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64
             "\nparrot_embed_call_duration_seconds_sum %.6f\n"
             "parrot_embed_call_duration_seconds_count %" PRIu64 "\n",
             st.calls, st.seconds_sum, st.calls);
    rc |= buf_puts(b, line, 1u << 20);
    return rc;
}

int chat_metrics(struct chat *ch, struct buf *b)
{
    struct store_stats st;
    char labels[240];
    int rc = 0;

    store_get_stats(ch->store, &st);
    rc |= metric(b, "parrot_cache_hits_total", "counter",
                 "Chat completions answered from the cache, by how they matched.",
                 "{kind=\"exact\"}", atomic_load(&ch->hits_exact), true);
    rc |= metric(b, "parrot_cache_hits_total", "", "", "{kind=\"semantic\"}",
                 atomic_load(&ch->hits_semantic), false);
    rc |= metric(b, "parrot_cache_hits_total", "", "", "{kind=\"coalesced\"}",
                 atomic_load(&ch->hits_coalesced), false);
    rc |= metric(b, "parrot_cache_misses_total", "counter",
                 "Chat completions sent to the provider after a cache miss.", "",
                 atomic_load(&ch->misses), true);
    for (size_t i = 0; i < BYPASS_REASONS; i++) {
        snprintf(labels, sizeof(labels), "{reason=\"%s\"}", bypass_reasons[i]);
        rc |= metric(b, "parrot_cache_bypasses_total", "counter",
                     "Chat completions that skipped the lookup, by reason.", labels,
                     atomic_load(&ch->bypasses[i]), i == 0);
    }
    rc |= metric(b, "parrot_cache_no_store_total", "counter",
                 "Chat completions looked up but not to be stored (Cache-Control: no-store).", "",
                 atomic_load(&ch->no_store), true);
    rc |= metric(b, "parrot_cache_refused_total", "counter",
                 "only-if-cached requests that found nothing (504).", "", atomic_load(&ch->refused),
                 true);
    rc |= metric(b, "parrot_cache_stores_total", "counter", "Answers stored in the cache.", "",
                 atomic_load(&ch->stores), true);
    rc |= metric(b, "parrot_cache_store_skipped_total", "counter",
                 "Answers not stored: error status, truncated, unfinished or unreplayable.", "",
                 atomic_load(&ch->store_skipped), true);
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++) {
        snprintf(labels, sizeof(labels), "{reason=\"%s\"}", verify_reason_name(i));
        rc |= metric(b, "parrot_cache_verifier_rejections_total", "counter",
                     "Semantic candidates the hit verifier turned down, by reason.", labels,
                     atomic_load(&ch->rejected[i]), i == VERIFY_OK + 1);
    }
    rc |= metric(b, "parrot_cache_verifier_rejections_total", "", "", "{reason=\"tool_calls\"}",
                 atomic_load(&ch->rejected_tool_calls), false);
    snprintf(labels, sizeof(labels), "{name=\"%s\"}", ch->emb_name);
    rc |= metric(b, "parrot_embedder_info", "gauge",
                 "The embedder in use: kind, model and dimension.", labels, 1, true);
    if (ch->ec)
        rc |= embed_metrics(ch, b);
    rc |= metric(b, "parrot_cache_entries", "gauge", "Entries in the cache.", "", st.entries, true);
    rc |= metric(b, "parrot_cache_partitions", "gauge", "Partitions with at least one entry.", "",
                 st.partitions, true);
    rc |= metric(b, "parrot_cache_memory_bytes", "gauge",
                 "Bytes used by entries, vectors and indexes.", "", st.memory, true);
    rc |= metric(b, "parrot_cache_evictions_total", "counter",
                 "Entries evicted to stay within cache-max-memory.", "", st.evictions, true);
    rc |= metric(b, "parrot_cache_expirations_total", "counter", "Entries dropped after their TTL.",
                 "", st.expirations, true);
    if (ch->wal) {
        struct wal_status ws;
        wal_status(ch->wal, &ws);
        rc |= metric(b, "parrot_wal_records_total", "counter",
                     "Cache entries appended to the write-ahead log.", "", ws.appended, true);
        /* Sequence numbers are for the operator only, never in a client's
         * response: they count every tenant's stores. A record appended
         * before a scrape is durable once durable_seq reaches that scrape's
         * last_seq. */
        rc |= metric(b, "parrot_wal_last_seq", "gauge",
                     "Highest log sequence number handed out (appended, maybe not yet durable).",
                     "", ws.last_seq, true);
        rc |= metric(b, "parrot_wal_durable_seq", "gauge",
                     "Highest log sequence number durable under the fsync policy.", "",
                     ws.durable_seq, true);
        rc |= metric(b, "parrot_wal_dropped_total", "counter",
                     "Entries served but not logged (disk full, I/O error, log backlog).", "",
                     atomic_load(&ch->journal_errors), true);
        rc |= metric(b, "parrot_wal_degraded", "gauge",
                     "1 while the log cannot write (the cache keeps serving from memory).", "",
                     ws.error != 0, true);
        rc |=
            metric(b, "parrot_wal_file_bytes", "gauge",
                   "Size of the write-ahead log (a snapshot compacts it).", "", ws.file_size, true);
        rc |= metric(b, "parrot_snapshots_total", "counter", "Snapshots written.", "",
                     atomic_load(&ch->snaps), true);
        rc |= metric(b, "parrot_snapshot_failures_total", "counter",
                     "Snapshot attempts that failed (disk full, I/O error).", "",
                     atomic_load(&ch->snap_failures), true);
        rc |= metric(b, "parrot_snapshot_failing", "gauge",
                     "1 while the last snapshot attempt failed.", "",
                     atomic_load(&ch->snap_error) != 0, true);
        rc |= metric(b, "parrot_snapshot_entries", "gauge", "Entries in the last snapshot.", "",
                     atomic_load(&ch->snap_last_entries), true);
        rc |= metric(b, "parrot_snapshot_bytes", "gauge", "Size of the last snapshot.", "",
                     atomic_load(&ch->snap_last_bytes), true);
        rc |= gauge_seconds(b, "parrot_snapshot_duration_seconds",
                            "How long the last snapshot took, capture to log compaction.",
                            atomic_load(&ch->snap_last_ms_taken));
        rc |= gauge_seconds(b, "parrot_cache_load_seconds",
                            "Start-up time to load the snapshot and replay the log.",
                            atomic_load(&ch->snap_loaded_ms));
    }
    return rc ? -ENOMEM : 0;
}

struct store *chat_entries(struct chat *ch)
{
    return ch->store;
}

int chat_embed_text(struct chat *ch, const char *text, size_t len, float **vec, unsigned *dim,
                    const char **why)
{
    enum embed_result res = EMBED_CANCELLED;
    float *v = NULL;
    char *copy;

    *vec = NULL;
    *dim = ch->dim;
    *why = NULL;
    if (!ch->ec) {
        v = malloc(sizeof(float) * ch->dim);
        if (!v)
            return -ENOMEM;
        if (embedder_embed(ch->emb, text, len, v) != 0) {
            free(v);
            return -ENODATA;
        }
        *vec = v;
        return 0;
    }
    /* The remote client takes C strings. */
    copy = strndup(text, len);
    v = malloc(sizeof(float) * ch->dim);
    if (!copy || !v) {
        free(copy);
        free(v);
        return -ENOMEM;
    }
    if (embed_client_embed_wait(ch->ec, (const char *const *)&copy, 1, v, &res) != 1 ||
        res != EMBED_OK) {
        free(copy);
        free(v);
        *why = embed_result_name(res);
        return -EIO;
    }
    free(copy);
    *vec = v;
    return 0;
}

/* Log keys[0..n) as one DEL record; false when the log refused it. */
static bool log_del(struct chat *ch, const uint8_t (*keys)[JOURNAL_KEY_LEN], size_t n)
{
    struct buf b = {0};
    bool ok = journal_encode_del(keys, n, &b) == 0 &&
              wal_append(ch->wal, JOURNAL_DEL, b.p, b.len, NULL) == 0;

    buf_free(&b);
    if (!ok)
        atomic_fetch_add(&ch->journal_errors, 1);
    return ok;
}

int chat_delete(struct chat *ch, const struct store_ref *refs, size_t n, size_t *removed,
                bool *logged)
{
    uint8_t(*keys)[JOURNAL_KEY_LEN] = NULL;
    size_t nk = 0;

    *removed = 0;
    *logged = true;
    if (ch->wal && n > 0) {
        keys = malloc((n < JOURNAL_DEL_MAX ? n : JOURNAL_DEL_MAX) * sizeof(*keys));
        if (!keys)
            return -ENOMEM;
    }
    pthread_rwlock_wrlock(&ch->log_order);
    for (size_t i = 0; i < n; i++) {
        if (store_remove(ch->store, &refs[i]) != 0)
            continue; /* gone already, or replaced by a newer answer */
        (*removed)++;
        if (!keys)
            continue;
        memcpy(keys[nk++], refs[i].exact, JOURNAL_KEY_LEN);
        if (nk == JOURNAL_DEL_MAX) {
            *logged &= log_del(ch, keys, nk);
            nk = 0;
        }
    }
    if (nk > 0)
        *logged &= log_del(ch, keys, nk);
    pthread_rwlock_unlock(&ch->log_order);
    free(keys);
    return 0;
}
