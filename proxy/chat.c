/* chat.c - cache policy for POST /v1/chat/completions; see chat.h. */
#include "proxy/chat.h"

#include "cache/embed.h"
#include "cache/store.h"
#include "cache/verify.h"
#include "cache/wal.h"
#include "proxy/journal.h"
#include "config/config.h"
#include "proxy/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Partitions up to this many vectors are scanned rather than indexed: a
 * scan of 256 x 384 floats is a few microseconds and needs no graph. */
#define EXACT_SCAN_MAX 256
/* Semantic candidates examined per lookup, best first. */
#define CANDIDATES 4

struct chat {
    struct store *store;
    struct embedder *emb;
    struct flight_table *flights;
    float threshold;
    bool verifier;
    int64_t ttl;
    const char *shared_tenant;
    uint64_t id_seed;
    atomic_uint_fast64_t next_id;
    atomic_uint_fast64_t hits_exact, hits_semantic, hits_coalesced, misses, bypasses, refused;
    atomic_uint_fast64_t stores, store_skipped;
    atomic_uint_fast64_t rejected[VERIFY_REASONS];
    struct wal *wal; /* NULL: the cache lives in memory only */
    atomic_uint_fast64_t journal_errors;
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

int chat_new(const struct cfg *c, struct chat **out)
{
    struct chat *ch = calloc(1, sizeof(*ch));
    struct store_opts so = {0};
    char err[256] = "";
    struct embed_builtin_opts eo = {
        .word_vectors = c->word_vectors, .err = err, .err_len = sizeof(err)};
    struct log_rec lr;
    int rc;

    if (!ch)
        return -ENOMEM;
    if ((rc = embed_builtin_new_opts(&eo, &ch->emb)) != 0) {
        log_msg(LOG_ERROR, "word-vector table rejected", err);
        goto fail;
    }
    /* Which mode the embedder is in: with a table it finds synonyms. */
    log_begin(&lr, LOG_INFO, "embedder");
    log_str(&lr, "name", embedder_name(ch->emb));
    log_int(&lr, "dim", embedder_dim(ch->emb));
    log_str(&lr, "word_vectors",
            embedder_word_vectors(ch->emb) ? c->word_vectors : "none (lexical features only)");
    log_end(&lr);
    so.dim = embedder_dim(ch->emb);
    so.max_memory = c->cache_max_memory;
    so.exact_scan_max = EXACT_SCAN_MAX;
    so.payload_free = payload_free;
    if ((rc = store_new(&so, &ch->store)) != 0)
        goto fail;
    if ((rc = flight_new(&ch->flights)) != 0)
        goto fail;
    ch->threshold =
        c->similarity_threshold > 0 ? (float)c->similarity_threshold : embedder_threshold(ch->emb);
    ch->ttl = c->cache_ttl_ms;
    ch->verifier = c->verifier;
    ch->shared_tenant = c->shared_tenant;
    if (getrandom(&ch->id_seed, sizeof(ch->id_seed), 0) != sizeof(ch->id_seed))
        ch->id_seed = (uint64_t)time(NULL);
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
    wal_close(ch->wal); /* flushes what is pending */
    store_free(ch->store);
    embedder_free(ch->emb);
    flight_free(ch->flights);
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

    memset(r, 0, sizeof(*r));
    r->verdict = CHAT_BYPASS; /* until chat_lookup() decides */
    cmpl_asm_init(&r->as);
    hdr_parse_cache_control(cache_control, &r->cc);
    r->stream = json_true(doc, "stream");
    r->include_usage =
        json_true(cJSON_GetObjectItemCaseSensitive(doc, "stream_options"), "include_usage");
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
        r->why = "nul-in-string";
        return;
    }
    tenant_of(ch, authorization, tenant_value, tenant, sizeof(tenant));
    if (canon_request(doc, tenant, "/v1/chat/completions", &r->key) != 0) {
        r->why = "unkeyable";
        return;
    }
    r->keyed = true;
    r->store = !r->cc.no_store;
}

/* The embedding of the lookup text, computed on first use: an exact hit
 * never needs one. NULL when there is no text or nothing to embed. */
static const float *vec_of(struct chat *ch, struct chat_req *r)
{
    if (r->vec || r->vec_done || !r->key.lookup_text)
        return r->vec;
    r->vec_done = true;
    r->vec = malloc(sizeof(float) * embedder_dim(ch->emb));
    if (r->vec && embedder_embed(ch->emb, r->key.lookup_text, r->key.lookup_len, r->vec) != 0) {
        free(r->vec);
        r->vec = NULL;
    }
    return r->vec;
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

/* The hit verifier, called on each semantic candidate above the threshold. */
static bool accept_candidate(void *ud, const struct store_entry *e, float sim)
{
    struct verify_ctx *v = ud;
    const char *text = store_entry_text(e);
    enum verify_reason why;

    (void)sim;
    if (!text)
        return false;
    why = verify_texts_wv(v->r->key.lookup_text, v->r->key.lookup_len, text, strlen(text),
                          embedder_word_vectors(v->ch->emb));
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
        if (!r->why)
            r->why = "no-cache";
        atomic_fetch_add(&ch->bypasses, 1);
        return r->verdict = r->cc.only_if_cached && !r->keyed ? CHAT_REFUSE : CHAT_BYPASS;
    }
    e = store_get_exact(ch->store, r->key.exact, now, max_age_ms(r));
    if (e) {
        r->hit = e;
        r->exact = true;
        r->sim = 1.0f;
        atomic_fetch_add(&ch->hits_exact, 1);
        return r->verdict = CHAT_HIT;
    }
    if (vec_of(ch, r)) {
        e = store_get_semantic(ch->store, r->key.partition, r->vec, ch->threshold, now,
                               max_age_ms(r), CANDIDATES, ch->verifier ? accept_candidate : NULL,
                               &vc, &r->sim);
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
    /* A fresh id per answer, as the provider would give. */
    static atomic_uint_fast64_t seq;
    uint64_t n = atomic_fetch_add(&seq, 1) + 1;
    char id[48], *out;
    size_t need;

    uint64_t a = (store_entry_id(r->hit) * UINT64_C(0x9e3779b97f4a7c15)) ^ (uint64_t)now;

    snprintf(id, sizeof(id), "chatcmpl-parrot-%016" PRIx64 "%08" PRIx64, a,
             n & UINT64_C(0xffffffff));
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
    case CHAT_MISS: return "miss";
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
    if (store_put(ch->store, &a, &id) != 0) {
        why = "out of memory";
        goto skip;
    }
    /* The entry is served from memory at once; the log catches up on the
     * WAL's own thread and never holds this request up. */
    if (ch->wal && (!jbuf.p || wal_append(ch->wal, JOURNAL_PUT, jbuf.p, jbuf.len, NULL) != 0))
        atomic_fetch_add(&ch->journal_errors, 1);
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

/* Vector and payload for a logged or replayed entry, into the store. */
static int put_entry(struct chat *ch, struct journal_put *p, uint64_t *id)
{
    struct store_put_args a = {0};
    struct cmpl_rendered *cr = malloc(sizeof(*cr));
    float *vec = NULL;
    int rc;

    if (!cr)
        return -ENOMEM;
    *cr = p->r;
    memset(&p->r, 0, sizeof(p->r)); /* the store owns it now */
    if (p->text) {
        vec = malloc(sizeof(float) * embedder_dim(ch->emb));
        if (vec && embedder_embed(ch->emb, p->text, strlen(p->text), vec) != 0) {
            free(vec);
            vec = NULL;
        }
    }
    a.partition = p->partition;
    a.exact = p->exact;
    a.vec = vec;
    a.text = p->text;
    a.payload = cr;
    a.payload_size = rendered_size(cr);
    a.cost = p->cost;
    a.now = p->created;
    a.ttl = p->expires ? p->expires - p->created : 0;
    rc = store_put(ch->store, &a, id);
    free(vec);
    return rc;
}

struct replay_ctx {
    struct chat *ch;
    int64_t now;
    uint64_t loaded, expired, unreadable;
};

static int replay(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct replay_ctx *rc = ud;
    struct journal_put p;
    uint64_t id;

    (void)seq;
    if (type != JOURNAL_PUT || journal_decode_put(payload, len, &p) != 0) {
        /* Valid framing (the CRC matched) but a record this version does
         * not know: skip it rather than refuse to start. */
        rc->unreadable++;
        return 0;
    }
    if (p.expires && p.expires <= rc->now) {
        rc->expired++;
    } else if (put_entry(rc->ch, &p, &id) == 0) {
        rc->loaded++;
    } else {
        journal_put_fini(&p);
        return -ENOMEM;
    }
    journal_put_fini(&p);
    return 0;
}

const char *chat_journal_problem(struct chat *ch)
{
    struct wal_status ws;

    if (!ch || !ch->wal)
        return NULL;
    wal_status(ch->wal, &ws);
    if (!ws.error)
        return NULL;
    /* Static texts: readiness bodies are built without allocation. */
    switch (ws.error) {
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
    struct replay_ctx ctx = {.ch = ch, .now = now};
    int rc;

    if (wal_policy_parse(fsync, &o.policy) != 0) {
        snprintf(msg, msglen, "invalid wal-fsync '%s' (always, batch, everysec or off)", fsync);
        return -EINVAL;
    }
    rc = wal_open(&o, replay, &ctx, &rep, &ch->wal);
    if (rc != 0) {
        snprintf(msg, msglen, "%s", rep.message[0] ? rep.message : strerror(-rc));
        return rc;
    }
    snprintf(msg, msglen,
             "%s: %llu entries loaded, %llu expired, %llu unreadable records skipped%s%s", rep.path,
             (unsigned long long)ctx.loaded, (unsigned long long)ctx.expired,
             (unsigned long long)ctx.unreadable, rep.truncated ? "; " : "",
             rep.truncated ? rep.message : "");
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

static int metric(struct buf *b, const char *name, const char *type, const char *help,
                  const char *labels, uint64_t v, bool header)
{
    char line[512];

    if (header) {
        snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
        if (buf_puts(b, line, 1u << 20))
            return -ENOMEM;
    }
    snprintf(line, sizeof(line), "%s%s %" PRIu64 "\n", name, labels, v);
    return buf_puts(b, line, 1u << 20);
}

int chat_metrics(struct chat *ch, struct buf *b)
{
    struct store_stats st;
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
    rc |= metric(b, "parrot_cache_bypasses_total", "counter",
                 "Chat completions that skipped the lookup (no-cache, unkeyable).", "",
                 atomic_load(&ch->bypasses), true);
    rc |= metric(b, "parrot_cache_refused_total", "counter",
                 "only-if-cached requests that found nothing (504).", "", atomic_load(&ch->refused),
                 true);
    rc |= metric(b, "parrot_cache_stores_total", "counter", "Answers stored in the cache.", "",
                 atomic_load(&ch->stores), true);
    rc |= metric(b, "parrot_cache_store_skipped_total", "counter",
                 "Answers not stored: error status, truncated, unfinished or unreplayable.", "",
                 atomic_load(&ch->store_skipped), true);
    for (int i = VERIFY_OK + 1; i < VERIFY_REASONS; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "{reason=\"%s\"}", verify_reason_name(i));
        rc |= metric(b, "parrot_cache_verifier_rejections_total", "counter",
                     "Semantic candidates the hit verifier turned down, by reason.", labels,
                     atomic_load(&ch->rejected[i]), i == VERIFY_OK + 1);
    }
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
        rc |= metric(b, "parrot_wal_durable_seq", "gauge",
                     "Highest log sequence number durable under the fsync policy.", "",
                     ws.durable_seq, true);
        rc |= metric(b, "parrot_wal_dropped_total", "counter",
                     "Entries served but not logged (disk full, I/O error, log backlog).", "",
                     atomic_load(&ch->journal_errors), true);
        rc |= metric(b, "parrot_wal_degraded", "gauge",
                     "1 while the log cannot write (the cache keeps serving from memory).", "",
                     ws.error != 0, true);
    }
    return rc ? -ENOMEM : 0;
}
