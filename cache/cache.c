/* cache.c - the cache service; see cache.h.
 *
 * Sections: building and freeing; lookups and puts; deletes; replaying the
 * log and loading a snapshot (cache_open); snapshots and their timer;
 * entries and statistics for the admin API.
 */
#include "cache/cache.h"

#include "cache/base/buf.h"
#include "cache/base/hash.h"
#include "cache/base/le.h"
#include "cache/base/thread.h"
#include "cache/index/hnsw.h"
#include "cache/index/store.h"
#include "cache/match/embed.h"
#include "cache/persist/records.h"
#include "cache/persist/snapshot.h"
#include "cache/persist/wal.h"

#include <errno.h>
#include <inttypes.h>
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

_Static_assert(CACHE_KEY_LEN == STORE_KEY_LEN, "cache keys are store keys");
_Static_assert(CACHE_KEY_LEN == REC_KEY_LEN, "cache keys are record keys");
_Static_assert(CACHE_KEY_LEN == FLIGHT_KEY_LEN, "cache keys are flight keys");

struct cache {
    struct store *store;
    const struct cache_codec *codec;
    struct embedder *emb;    /* the builtin embedder, or NULL */
    struct embed_client *ec; /* the remote one, or NULL */
    unsigned dim;
    char emb_name[200]; /* kind, model and dimension: vectors of two names never meet */
    struct flight_table *flights;
    float threshold;
    float lexical_weight; /* the store's: the lexical share of a lookup's score */
    bool verifier;
    void (*log)(enum cache_log level, const char *msg, const char *detail);
    atomic_uint_fast64_t rejected[VERIFY_REASONS];
    atomic_uint_fast64_t rejected_unreusable, rejected_disputed, disputes;
    struct budget *budget; /* audit tallies and thresholds per partition */
    struct wal *wal;       /* NULL: the cache lives in memory only */
    atomic_uint_fast64_t log_errors;
    /* Puts hold it shared and deletes exclusive, each across its store
     * change and its log append, so the log records a delete and a put of
     * the same key in the order they happened in memory. */
    pthread_rwlock_t log_order;
    /* cache_set_change_hook: called under log_order, so a replica hears a
     * put and a delete of one key in the order they happened here. */
    void (*on_change)(void *ud, const struct cache_change *ch);
    void *change_ud;

    /* Snapshots (cache_snapshot): one at a time, under snap_mu. The timer
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
    /* What cache_open's snapshot load found; written before the cache is
     * shared, read-only after. */
    uint64_t loaded_graphs, rebuilt_graphs;
};

static void say(const struct cache *c, enum cache_log level, const char *msg, const char *detail)
{
    if (c->log)
        c->log(level, msg, detail);
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An entry's id (see cache.h): a hash of its exact key, which is already a
 * SHA-256 of the request, and of its creation time, so it tells nothing of
 * other entries (clients see ids as x-parrot-entry). 0 means "none". */
static uint64_t entry_id(const uint8_t *exact, int64_t created)
{
    uint8_t t[8];
    uint64_t h;

    le_put64(t, (uint64_t)created);
    h = hash_mix(hash_fnv(hash_fnv(HASH_FNV_OFFSET, exact, CACHE_KEY_LEN), t, sizeof(t)));
    return h ? h : 1;
}

/* ---- building and freeing ---- */

int cache_new(const struct cache_opts *o, struct cache **out)
{
    struct cache *c = calloc(1, sizeof(*c));
    struct store_opts so = {0};
    int rc;

    if (!c) {
        embedder_free(o->emb);
        embed_client_free(o->ec);
        return -ENOMEM;
    }
    c->emb = o->emb;
    c->ec = o->ec;
    if (pthread_mutex_init(&c->snap_mu, NULL) != 0) {
        free(c);
        return -ENOMEM;
    }
    if (pthread_cond_init(&c->snap_cv, NULL) != 0) {
        pthread_mutex_destroy(&c->snap_mu);
        free(c);
        return -ENOMEM;
    }
    if (pthread_rwlock_init(&c->log_order, NULL) != 0) {
        free(c);
        return -ENOMEM;
    }
    c->codec = o->codec;
    c->dim = c->emb ? embedder_dim(c->emb) : c->ec ? embed_client_dim(c->ec) : 0;
    snprintf(c->emb_name, sizeof(c->emb_name), "%s", o->embedder_name ? o->embedder_name : "");
    so.dim = c->dim;
    so.max_memory = o->max_memory;
    so.exact_scan_max = EXACT_SCAN_MAX;
    /* The remote model's similarity is used as it is: mixing in the
     * lexical score would move its threshold, which is the operator's. */
    so.lexical_weight = c->emb ? embedder_lexical_weight(c->emb) : 0;
    c->lexical_weight = so.lexical_weight;
    so.payload_free = o->codec->free;
    if ((rc = store_new(&so, &c->store)) != 0)
        goto fail;
    if ((rc = flight_new(&c->flights)) != 0)
        goto fail;
    struct budget_opts bo = {
        .base = o->threshold, .max_rate = o->max_wrong_rate, .min_audits = o->audit_min};
    if ((rc = budget_new(&bo, &c->budget)) != 0)
        goto fail;
    c->threshold = o->threshold;
    c->verifier = o->verifier;
    c->log = o->log;
    c->snap_interval = o->snap_interval;
    c->snap_wal_size = o->snap_wal_size;
    c->snap_on_shutdown = o->snap_on_shutdown;
    *out = c;
    return 0;
fail:
    cache_free(c);
    return rc;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    if (c->snap_thread_on) {
        pthread_mutex_lock(&c->snap_mu);
        c->snap_stop = true;
        pthread_cond_signal(&c->snap_cv);
        pthread_mutex_unlock(&c->snap_mu);
        pthread_join(c->snap_thread, NULL);
    }
    if (c->wal && c->snap_on_shutdown) {
        /* So that the next start loads graphs instead of replaying the log. */
        char msg[1200];
        int rc = cache_snapshot(c, msg, sizeof(msg));
        say(c, rc ? CACHE_LOG_WARN : CACHE_LOG_INFO, rc ? "snapshot failed" : "snapshot written",
            msg);
    }
    wal_close(c->wal); /* flushes what is pending */
    embed_client_free(c->ec);
    pthread_cond_destroy(&c->snap_cv);
    pthread_mutex_destroy(&c->snap_mu);
    free(c->dir);
    store_free(c->store);
    embedder_free(c->emb);
    flight_free(c->flights);
    budget_free(c->budget);
    pthread_rwlock_destroy(&c->log_order);
    free(c);
}

/* ---- lookups and puts ---- */

/* The builtin embedding of text[0..len), or of its words w[0..nw) when
 * the caller has split it already (w may be NULL), malloc'd; NULL when
 * there is nothing to embed. */
static float *embed_local(struct cache *c, const char *text, size_t len, const struct embed_word *w,
                          size_t nw)
{
    float *v;

    if (!c->emb)
        return NULL;
    v = malloc(sizeof(float) * c->dim);
    if (v && (w ? embedder_embed_words(c->emb, w, nw, v) : embedder_embed(c->emb, text, len, v))) {
        free(v);
        v = NULL;
    }
    return v;
}

/* The embedding of the lookup text, computed on first use by the builtin
 * embedder (from its words w[0..nw) when given): an exact hit never needs
 * one. A remote embedding is never made here (it would block the calling
 * thread): cache_lookup() asks for it with CACHE_NEED_VECTOR. NULL when
 * there is no text or nothing to embed. */
static const float *vec_of(struct cache *c, struct cache_query *q, const struct embed_word *w,
                           size_t nw)
{
    if (q->vec || q->vec_done || !q->text || c->ec)
        return q->vec;
    q->vec_done = true;
    q->vec = embed_local(c, q->text, q->text_len, w, nw);
    return q->vec;
}

bool cache_wants_vector(const struct cache *c, const struct cache_query *q)
{
    return c->ec && !q->vec_done && q->text;
}

const float *cache_query_vector(struct cache *c, struct cache_query *q)
{
    return vec_of(c, q, NULL, 0);
}

/* The embedder's thread: q's vector arrived, or will not. */
static void embedded(void *ud, enum embed_result res, const float *vec)
{
    struct cache_query *q = ud;

    q->embed_result = embed_result_name(res);
    q->vec_done = true;
    if (vec) {
        q->vec = malloc(sizeof(float) * q->embed_cache->dim);
        if (q->vec)
            memcpy(q->vec, vec, sizeof(float) * q->embed_cache->dim);
    }
    q->embed_wake(q);
}

int cache_embed(struct cache *c, struct cache_query *q, void (*wake)(struct cache_query *q))
{
    int rc;

    q->embed_cache = c;
    q->embed_wake = wake;
    rc = embed_client_submit(c->ec, q->text, q->text_len, embedded, q);
    if (rc != 0) {
        q->vec_done = true;
        q->embed_result = embed_result_name(rc == -EAGAIN ? EMBED_BREAKER_OPEN : EMBED_CANCELLED);
    }
    return rc;
}

void cache_query_fini(struct cache_query *q)
{
    free(q->vec);
    store_entry_unref((struct store_entry *)q->hit);
    memset(q, 0, sizeof(*q));
}

struct verify_ctx {
    struct cache *c;
    struct verify_query *vq; /* the lookup's text for the verifier (NULL: out of memory) */
};

/* Called on each semantic candidate above the threshold: payloads that may
 * not answer another question are refused, then the hit verifier (when on)
 * decides. */
static bool accept_candidate(void *ud, const struct store_entry *e, float sim)
{
    struct verify_ctx *v = ud;
    const char *text = store_entry_text(e);
    enum verify_reason why;

    (void)sim;
    if (store_entry_disputed(e)) {
        atomic_fetch_add(&v->c->rejected_disputed, 1);
        return false;
    }
    if (!v->c->codec->reusable(store_entry_payload(e))) {
        atomic_fetch_add(&v->c->rejected_unreusable, 1);
        return false;
    }
    if (!v->c->verifier)
        return true;
    if (!text || !v->vq)
        return false; /* no text to compare, or out of memory: a miss */
    why = verify_query_check(v->vq, text, strlen(text));
    if (why == VERIFY_OK)
        return true;
    atomic_fetch_add(&v->c->rejected[why], 1);
    return false;
}

/* The group of text (cache_query_group()); a loaded or replicated
 * question's is worked out again here. */
static uint64_t group_of(const struct cache *c, const char *text, size_t len)
{
    return c->verifier && text ? verify_group(text, len) : 0;
}

uint64_t cache_query_group(struct cache *c, struct cache_query *q)
{
    if (!q->group_done) {
        q->group = group_of(c, q->text, q->text_len);
        q->group_done = true;
    }
    return q->group;
}

enum cache_result cache_lookup_exact(struct cache *c, struct cache_query *q, int64_t now)
{
    struct store_entry *e = store_get_exact(c->store, q->exact, now, q->max_age);

    if (!e)
        return CACHE_MISS;
    q->hit = (struct cache_entry *)e;
    q->sim = 1.0f;
    return CACHE_HIT_EXACT;
}

/* Dimensions of a builtin embedding that a lookup keeps on its stack. */
#define LOOKUP_DIM 1024

/* The lookup's vector, as vec_of() makes it, but a builtin embedding of up
 * to LOOKUP_DIM dimensions goes to local[] and not yet to q->vec: a hit
 * needs it only for the lookup (keep_vec() keeps it for a miss). */
static const float *lookup_vec(struct cache *c, struct cache_query *q, const struct embed_word *w,
                               size_t nw, float *local)
{
    if (q->vec || q->vec_done || !q->text || c->ec || !c->emb || c->dim > LOOKUP_DIM)
        return vec_of(c, q, w, nw);
    if (embedder_embed_words(c->emb, w, nw, local) != 0) {
        q->vec_done = true; /* nothing to embed, as vec_of() would say */
        return NULL;
    }
    return local;
}

/* A lookup that missed: its vector from local[] into q->vec, for the store
 * (malloc'd, as vec_of() makes it; none when out of memory, as there). */
static void keep_vec(struct cache *c, struct cache_query *q, const float *vec, const float *local)
{
    if (vec != local)
        return;
    q->vec_done = true;
    q->vec = malloc(sizeof(float) * c->dim);
    if (q->vec)
        memcpy(q->vec, local, sizeof(float) * c->dim);
}

enum cache_result cache_lookup(struct cache *c, struct cache_query *q, int64_t now)
{
    /* The question split once: the embedder, the lexical score and the
     * verifier of every candidate read the same words (19 KB of stack). */
    struct embed_word words[EMBED_MAX_WORDS];
    struct verify_ctx vc = {c, NULL};
    size_t nwords = 0;
    struct store_entry *e;
    float local[LOOKUP_DIM];
    const float *vec;

    q->last_sim = -1.0f;
    if (cache_lookup_exact(c, q, now) == CACHE_HIT_EXACT)
        return CACHE_HIT_EXACT;
    if (cache_wants_vector(c, q))
        return CACHE_NEED_VECTOR;
    if (q->text)
        nwords = embed_split(q->text, q->text_len, words, EMBED_MAX_WORDS);
    if ((vec = lookup_vec(c, q, words, nwords, local)) != NULL) {
        /* The verifier's query, made once for the group and every
         * candidate: the first goes on from what the group worked out. */
        if (c->verifier)
            vc.vq = verify_query_new(q->text, q->text_len, words, nwords, cache_verify_tables(c));
        if (vc.vq && !q->group_done) { /* group_of()'s value, worked out by vq already */
            q->group = verify_query_group(vc.vq);
            q->group_done = true;
        }
        struct store_query sq = {.partition = q->partition,
                                 .group = cache_query_group(c, q),
                                 .vec = vec,
                                 .text = q->text,
                                 .text_len = q->text_len,
                                 .words = words,
                                 .nwords = nwords,
                                 .threshold = budget_threshold(c->budget, q->partition),
                                 .now = now,
                                 .max_age = q->max_age,
                                 .candidates = CACHE_CANDIDATES,
                                 .accept = accept_candidate,
                                 .ud = &vc,
                                 .last_sim = &q->last_sim};
        e = store_get_semantic(c->store, &sq, &q->sim);
        verify_query_free(vc.vq);
        if (e) {
            q->hit = (struct cache_entry *)e;
            return CACHE_HIT_SEMANTIC;
        }
        keep_vec(c, q, vec, local);
    }
    return CACHE_MISS;
}

float cache_similarity_floor(struct cache *c, const uint8_t *partition)
{
    float t = budget_threshold(c->budget, partition), w = c->lexical_weight;

    /* score = (1 - w) * similarity + w * lexical, and lexical <= 1 */
    return w > 0 && w < 1 ? (t - w) / (1 - w) : w >= 1 ? -1.0f : t;
}

size_t cache_verify_first(struct cache *c, const struct cache_query *q, const char *const *texts,
                          size_t n)
{
    struct embed_word words[EMBED_MAX_WORDS]; /* split once, as cache_lookup does */
    struct verify_query *vq;
    size_t i = 0;

    if (!c->verifier || n == 0)
        return 0;
    if (!q->text)
        return n;
    vq = verify_query_new(q->text, q->text_len, words,
                          embed_split(q->text, q->text_len, words, EMBED_MAX_WORDS),
                          cache_verify_tables(c));
    if (!vq)
        return n; /* out of memory: none serves */
    while (i < n && !(texts[i] && verify_query_check(vq, texts[i], strlen(texts[i])) == VERIFY_OK))
        i++;
    verify_query_free(vq);
    return i;
}

/* The PUT record of an entry, for the log and snapshots. */
static int encode_put(const struct cache *c, struct rec_put *rp, const void *payload,
                      struct buf *out)
{
    struct buf tail = {0};
    int rc = c->codec->encode(payload, rp->words, &tail);

    rp->tail = tail.p;
    rp->tail_len = tail.len;
    if (rc == 0)
        rc = rec_encode_put(rp, out);
    buf_free(&tail);
    return rc;
}

int cache_put(struct cache *c, struct cache_query *q, void *payload, double cost, int64_t ttl,
              int64_t now, uint64_t *seq)
{
    struct store_put_args a = {0};
    struct buf rec = {0};
    uint64_t id;

    *seq = 0;
    a.id = entry_id(q->exact, now);
    a.partition = q->partition;
    a.group = cache_query_group(c, q);
    a.exact = q->exact;
    a.vec = vec_of(c, q, NULL, 0);
    a.text = q->text;
    a.payload = payload;
    a.payload_size = c->codec->size(payload);
    a.cost = cost;
    a.now = now;
    a.ttl = ttl;
    if (c->wal || c->on_change) {
        /* Encoded before store_put, which may evict (and free) the payload
         * at once. */
        struct rec_put rp = {.created = now,
                             .expires = ttl > 0 ? now + ttl : 0,
                             .cost = cost,
                             .text = (char *)q->text};
        memcpy(rp.partition, q->partition, REC_KEY_LEN);
        memcpy(rp.exact, q->exact, REC_KEY_LEN);
        buf_reset(&rec);
        if (encode_put(c, &rp, payload, &rec) != 0)
            buf_free(&rec);
    }
    pthread_rwlock_rdlock(&c->log_order);
    if (store_put(c->store, &a, &id) != 0) {
        pthread_rwlock_unlock(&c->log_order);
        buf_free(&rec);
        return -ENOMEM;
    }
    /* The entry is served from memory at once; the log catches up on the
     * WAL's own thread and never holds this request up. */
    if (c->wal && (!rec.p || wal_append(c->wal, REC_PUT, rec.p, rec.len, seq) != 0))
        atomic_fetch_add(&c->log_errors, 1);
    if (c->on_change && rec.p) {
        struct cache_change ch = {.kind = CACHE_CHANGE_PUT,
                                  .seq = *seq,
                                  .id = id,
                                  .exact = q->exact,
                                  .expires = ttl > 0 ? now + ttl : 0,
                                  .rec = rec.p,
                                  .rec_len = rec.len};
        c->on_change(c->change_ud, &ch);
    }
    pthread_rwlock_unlock(&c->log_order);
    buf_free(&rec);
    return 0;
}

void cache_log_hold(struct cache *c)
{
    if (c->wal)
        wal_hold(c->wal);
}

void cache_log_release(struct cache *c)
{
    if (c->wal)
        wal_release(c->wal);
}

/* ---- deletes ---- */

/* Log the keys of refs[0..n) (n <= REC_DEL_MAX) as one DEL record; false
 * when the log refused it. *seq gets its sequence number. */
static bool log_del(struct cache *c, const struct cache_ref *refs, size_t n, uint64_t *seq)
{
    uint8_t(*keys)[REC_KEY_LEN] = malloc(n * sizeof(*keys));
    struct buf b = {0};
    bool ok = keys != NULL;

    for (size_t i = 0; ok && i < n; i++)
        memcpy(keys[i], refs[i].exact, REC_KEY_LEN);
    ok = ok && rec_encode_del((const uint8_t(*)[REC_KEY_LEN])keys, n, &b) == 0 &&
         wal_append(c->wal, REC_DEL, b.p, b.len, seq) == 0;
    buf_free(&b);
    free(keys);
    if (!ok)
        atomic_fetch_add(&c->log_errors, 1);
    return ok;
}

/* cache_delete and cache_apply_del: remove refs[0..n), log what went, and
 * report it to the change hook when publish says so. */
static int remove_refs(struct cache *c, const struct cache_ref *refs, size_t n, bool publish,
                       size_t *removed, bool *logged, uint64_t *seq)
{
    bool notify = publish && c->on_change;
    struct cache_ref *gone = NULL;
    size_t ng = 0;

    *removed = 0;
    *logged = true;
    *seq = 0;
    if ((c->wal || notify) && n > 0 && !(gone = malloc(n * sizeof(*gone))))
        return -ENOMEM;
    pthread_rwlock_wrlock(&c->log_order);
    for (size_t i = 0; i < n; i++) {
        struct store_ref ref = {.id = refs[i].id};

        memcpy(ref.exact, refs[i].exact, STORE_KEY_LEN);
        if (store_remove(c->store, &ref) != 0)
            continue; /* gone already, or replaced by a newer answer */
        (*removed)++;
        if (gone)
            gone[ng++] = refs[i];
    }
    for (size_t i = 0; c->wal && i < ng; i += REC_DEL_MAX)
        *logged &= log_del(c, gone + i, ng - i < REC_DEL_MAX ? ng - i : REC_DEL_MAX, seq);
    if (notify && ng > 0) {
        struct cache_change ch = {.kind = CACHE_CHANGE_DEL, .seq = *seq, .refs = gone, .nrefs = ng};
        c->on_change(c->change_ud, &ch);
    }
    pthread_rwlock_unlock(&c->log_order);
    free(gone);
    return 0;
}

int cache_delete(struct cache *c, const struct cache_ref *refs, size_t n, size_t *removed,
                 bool *logged)
{
    uint64_t seq;

    return remove_refs(c, refs, n, true, removed, logged, &seq);
}

/* ---- replaying the log and loading a snapshot ---- */

/* A PUT record read back: its fields and its decoded payload. */
struct loaded {
    struct rec_put rec; /* rec.tail is not valid after decoding */
    void *payload;
};

static void loaded_fini(const struct cache *c, struct loaded *l)
{
    rec_put_fini(&l->rec);
    c->codec->free(l->payload);
    l->payload = NULL;
}

/* A PUT record into *l. 0 or -EBADMSG / -ENOMEM (then nothing is held). */
static int load_put(const struct cache *c, const void *data, size_t len, struct loaded *l)
{
    int rc = rec_decode_put(data, len, &l->rec);

    l->payload = NULL;
    if (rc == 0 &&
        (rc = c->codec->decode(l->rec.words, l->rec.tail, l->rec.tail_len, &l->payload)) != 0)
        rec_put_fini(&l->rec);
    l->rec.tail = NULL;
    l->rec.tail_len = 0;
    return rc;
}

/* A logged, snapshotted or replicated entry, into the store: under id (0:
 * the one its key and creation time make), with its vector (NULL: none,
 * exact hits only). Takes the payload. */
static int put_entry(struct cache *c, struct loaded *l, uint64_t id, const float *vec)
{
    struct store_put_args a = {.id = id ? id : entry_id(l->rec.exact, l->rec.created)};

    a.partition = l->rec.partition;
    a.group = group_of(c, l->rec.text, l->rec.text ? strlen(l->rec.text) : 0);
    a.exact = l->rec.exact;
    a.vec = vec;
    a.text = l->rec.text;
    a.payload = l->payload;
    a.payload_size = c->codec->size(l->payload);
    a.cost = l->rec.cost;
    a.disputed = (l->rec.flags & REC_FLAG_DISPUTED) != 0;
    a.now = l->rec.created;
    a.ttl = l->rec.expires ? l->rec.expires - l->rec.created : 0;
    l->payload = NULL; /* the store owns it now */
    return store_put(c->store, &a, &id);
}

struct replay_ctx {
    struct cache *c;
    int64_t now;
    uint64_t loaded, expired, unreadable, deleted, unembedded;
    /* With the remote embedder, entries wait here for their vectors, to be
     * embedded max_pending at a time; stored in log order all the same. */
    struct loaded *pending;
    size_t npending, cap, max_pending;
};

/* Embed the pending entries' texts in one go and store them in order. An
 * entry whose text could not be embedded is kept for exact hits. */
static int flush_pending(struct replay_ctx *rc)
{
    struct cache *c = rc->c;
    size_t n = rc->npending, m = 0;
    const char **texts = calloc(n ? n : 1, sizeof(*texts));
    size_t *slot = calloc(n ? n : 1, sizeof(*slot));
    enum embed_result *res = calloc(n ? n : 1, sizeof(*res));
    float *vecs = malloc(sizeof(float) * c->dim * (n ? n : 1));
    int err = 0;

    if (!texts || !slot || !res || !vecs)
        err = -ENOMEM;
    for (size_t i = 0; !err && i < n; i++)
        if (rc->pending[i].rec.text) {
            slot[i] = m;
            texts[m++] = rc->pending[i].rec.text;
        }
    if (!err)
        embed_client_embed_wait(c->ec, texts, m, vecs, res);
    for (size_t i = 0; i < n; i++) {
        struct loaded *l = &rc->pending[i];
        bool ok = !err && l->rec.text && res[slot[i]] == EMBED_OK;
        if (!err && put_entry(c, l, 0, ok ? vecs + slot[i] * c->dim : NULL) != 0)
            err = -ENOMEM;
        if (!err) {
            rc->loaded++;
            rc->unembedded += l->rec.text && !ok;
        }
        loaded_fini(c, l);
    }
    rc->npending = 0;
    free(texts);
    free(slot);
    free(res);
    free(vecs);
    return err;
}

/* Queue l, and its ownership, for flush_pending. A log replay flushes every
 * max_pending entries; a snapshot's (max_pending 0) wait until it is loaded. */
static int pend(struct replay_ctx *rc, struct loaded *l)
{
    if (rc->npending == rc->cap) {
        size_t cap = rc->cap ? 2 * rc->cap : 64;
        struct loaded *np = realloc(rc->pending, cap * sizeof(*np));
        if (!np) {
            loaded_fini(rc->c, l);
            return -ENOMEM;
        }
        rc->pending = np;
        rc->cap = cap;
    }
    rc->pending[rc->npending++] = *l;
    return rc->max_pending && rc->npending >= rc->max_pending ? flush_pending(rc) : 0;
}

/* What a failed replay left queued. */
static void pending_free(struct replay_ctx *rc)
{
    for (size_t i = 0; i < rc->npending; i++)
        loaded_fini(rc->c, &rc->pending[i]);
    free(rc->pending);
    rc->pending = NULL;
    rc->npending = rc->cap = 0;
}

/* A logged delete or dispute: drop or flag what the log holds under each
 * key by now. */
static void replay_keys(struct replay_ctx *rc, uint8_t type, const uint8_t (*keys)[REC_KEY_LEN],
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct store_ref ref = {.id = 0};
        memcpy(ref.exact, keys[i], REC_KEY_LEN);
        if (type == REC_DEL && store_remove(rc->c->store, &ref) == 0)
            rc->deleted++;
        else if (type == REC_DISPUTE)
            store_dispute(rc->c->store, &ref);
    }
}

static void budget_of(const struct rec_audit *ra, struct budget_part *bp)
{
    memcpy(bp->partition, ra->partition, BUDGET_KEY_LEN);
    bp->threshold = ra->threshold;
    bp->audits = ra->audits;
    bp->wrong = ra->wrong;
    bp->waudits = ra->waudits;
    bp->wwrong = ra->wwrong;
}

static int replay(uint8_t type, uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct replay_ctx *rc = ud;
    struct loaded l;
    const uint8_t(*keys)[REC_KEY_LEN];
    struct rec_audit ra;
    size_t nkeys;
    float *vec;
    int err = 0;

    (void)seq; /* wal_open replays only what the snapshot does not cover */
    if ((type == REC_DEL || type == REC_DISPUTE) &&
        rec_decode_del(payload, len, &keys, &nkeys) == 0) {
        /* Entries logged before the record must be in the store first. */
        if (rc->npending && (err = flush_pending(rc)) != 0)
            return err;
        replay_keys(rc, type, keys, nkeys);
        return 0;
    }
    if (type == REC_AUDIT && rec_decode_audit(payload, len, &ra) == 0) {
        struct budget_part bp;
        budget_of(&ra, &bp);
        /* A full table only loses this partition's tallies. */
        return budget_restore(rc->c->budget, &bp) == -ENOMEM ? -ENOMEM : 0;
    }
    if (type != REC_PUT || load_put(rc->c, payload, len, &l) != 0) {
        /* Valid framing (the CRC matched) but a record this version does
         * not know: skip it rather than refuse to start. */
        rc->unreadable++;
        return 0;
    }
    if (l.rec.expires && l.rec.expires <= rc->now) {
        rc->expired++;
    } else if (rc->c->ec) {
        return pend(rc, &l);
    } else {
        vec = l.rec.text ? embed_local(rc->c, l.rec.text, strlen(l.rec.text), NULL, 0) : NULL;
        if (put_entry(rc->c, &l, 0, vec) == 0)
            rc->loaded++;
        else
            err = -ENOMEM;
        free(vec);
    }
    loaded_fini(rc->c, &l);
    return err;
}

/* snap_codec: an entry's record in a snapshot is its PUT record. */
static int snap_encode(void *ud, const struct store_entry *e, const uint8_t *partition,
                       struct buf *out)
{
    struct replay_ctx *rc = ud;
    struct rec_put rp = {.flags = store_entry_disputed(e) ? REC_FLAG_DISPUTED : 0,
                         .created = store_entry_created(e),
                         .expires = store_entry_expires(e),
                         .cost = store_entry_cost(e),
                         .text = (char *)store_entry_text(e)};

    memcpy(rp.partition, partition, REC_KEY_LEN);
    memcpy(rp.exact, store_entry_exact(e), REC_KEY_LEN);
    return encode_put(rc->c, &rp, store_entry_payload(e), out);
}

static int snap_restore(void *ud, uint64_t id, const float *vec, const void *data, size_t len)
{
    struct replay_ctx *rc = ud;
    struct loaded l;
    int err;

    if (load_put(rc->c, data, len, &l) != 0) {
        rc->unreadable++;
        return 1;
    }
    if (l.rec.expires && l.rec.expires <= rc->now) {
        rc->expired++;
        err = 1;
    } else if (!vec && l.rec.text && rc->c->ec) {
        /* No usable vector (none was made, or another embedder made it):
         * the remote embedder makes one once the whole file is in. */
        return pend(rc, &l);
    } else {
        float *own =
            !vec && l.rec.text ? embed_local(rc->c, l.rec.text, strlen(l.rec.text), NULL, 0) : NULL;
        err = put_entry(rc->c, &l, id, vec ? vec : own);
        free(own);
    }
    loaded_fini(rc->c, &l);
    return err;
}

/* Where snapshots go and whose vectors they hold. */
static void snap_opts_init(const struct cache *c, struct snap_opts *so)
{
    memset(so, 0, sizeof(*so));
    so->dir = c->dir;
    so->dim = c->dim;
    so->embedder = wal_crc32c(0, c->emb_name, strlen(c->emb_name));
}

static void *snap_main(void *arg);

int cache_open(struct cache *c, const char *dir, const char *fsync, int64_t now, char *msg,
               size_t msglen)
{
    struct wal_opts o = {.dir = dir};
    struct wal_report rep;
    struct replay_ctx sctx = {.c = c, .now = now}, ctx = {.c = c, .now = now};
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
    if (!(c->dir = strdup(dir))) {
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    snap_opts_init(c, &so);
    rc = snap_load(&so, c->store, &codec, &srep);
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
    c->loaded_graphs = srep.foreign ? 0 : srep.graphs - srep.graphs_built;
    c->rebuilt_graphs = srep.graphs_built;
    ctx.max_pending = c->ec ? embed_client_batch(c->ec) : 0;
    rc = wal_open(&o, replay, &ctx, &rep, &c->wal);
    if (rc != 0)
        snprintf(msg, msglen, "%s", rep.message[0] ? rep.message : strerror(-rc));
    else if (ctx.npending && (rc = flush_pending(&ctx)) != 0)
        snprintf(msg, msglen, "reloading the cache: %s", strerror(-rc));
    pending_free(&ctx);
    if (rc != 0)
        return rc;
    c->snap_last_ms = wall_ms();
    atomic_store(&c->snap_loaded_ms, (uint64_t)(c->snap_last_ms - t0));
    store_get_stats(c->store, &held);
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
             held.entries, unembedded, c->snap_last_ms - t0);
    if (c->snap_interval > 0 || c->snap_wal_size > 0) {
        c->snap_thread_on = thread_start(&c->snap_thread, snap_main, c, "parrot-snapshot") == 0;
        if (!c->snap_thread_on)
            say(c, CACHE_LOG_WARN, "no timed snapshots", "cannot start the snapshot thread");
    }
    return 0;
}

/* ---- snapshots ---- */

/* Log partition's state as an AUDIT record; false when the log refused it.
 * The caller holds log_order. */
static bool log_audit(struct cache *c, const struct budget_part *bp)
{
    struct rec_audit ra = {.threshold = bp->threshold,
                           .audits = bp->audits,
                           .wrong = bp->wrong,
                           .waudits = bp->waudits,
                           .wwrong = bp->wwrong};
    struct buf b = {0};
    bool ok;

    memcpy(ra.partition, bp->partition, REC_KEY_LEN);
    ok = rec_encode_audit(&ra, &b) == 0 && wal_append(c->wal, REC_AUDIT, b.p, b.len, NULL) == 0;
    buf_free(&b);
    if (!ok)
        atomic_fetch_add(&c->log_errors, 1);
    return ok;
}

/* Snapshots hold entries, not audit tallies: after the log is compacted,
 * log every partition's state again so that the next start finds it.
 * Exclusive, so that no audit logs a newer state in between the copy and
 * its records (which would then be replayed over it). */
static void relog_audits(struct cache *c)
{
    struct budget_totals t;
    struct budget_part *all;
    size_t n;

    budget_get_totals(c->budget, &t);
    if (t.partitions == 0)
        return;
    all = malloc(t.partitions * sizeof(*all));
    if (!all) {
        atomic_fetch_add(&c->log_errors, 1);
        return;
    }
    pthread_rwlock_wrlock(&c->log_order);
    n = budget_list(c->budget, all, t.partitions);
    for (size_t i = 0; i < n; i++)
        log_audit(c, &all[i]);
    pthread_rwlock_unlock(&c->log_order);
    free(all);
}

int cache_snapshot(struct cache *c, char *msg, size_t msglen)
{
    struct replay_ctx unused = {.c = c};
    struct snap_codec codec = {snap_encode, snap_restore, &unused};
    struct snap_opts so;
    struct snap_report rep;
    int64_t t0 = wall_ms();
    uint64_t seq;
    int rc;

    if (!c || !c->wal) {
        snprintf(msg, msglen, "snapshots need persistence (persist = true)");
        return -EINVAL;
    }
    snap_opts_init(c, &so);
    so.now_ms = t0;
    pthread_mutex_lock(&c->snap_mu);
    /* Before the capture: see the ordering argument in cache/persist/snapshot.h. */
    seq = wal_last_seq(c->wal);
    rc = snap_write(&so, c->store, seq, &codec, &rep);
    if (rc == 0) {
        int rrc = wal_rotate(c->wal, seq);
        relog_audits(c);
        size_t n = strlen(rep.message);
        if (rrc)
            snprintf(rep.message + n, sizeof(rep.message) - n,
                     "; the log was not compacted (%s): the next start skips what the snapshot "
                     "covers",
                     strerror(-rrc));
        atomic_fetch_add(&c->snaps, 1);
        atomic_store(&c->snap_last_entries, rep.entries);
        atomic_store(&c->snap_last_bytes, rep.bytes);
    } else {
        atomic_fetch_add(&c->snap_failures, 1);
    }
    atomic_store(&c->snap_error, -rc);
    c->snap_last_ms = wall_ms();
    atomic_store(&c->snap_last_ms_taken, (uint64_t)(c->snap_last_ms - t0));
    pthread_mutex_unlock(&c->snap_mu);
    snprintf(msg, msglen, "%s (%" PRId64 " ms)", rep.message, c->snap_last_ms - t0);
    return rc;
}

/* Timed and log-size snapshots. Checks once a second; a failed attempt
 * waits for the next interval (or the next second when only the log size
 * triggers), so a full disk is retried without spinning. */
static void *snap_main(void *arg)
{
    struct cache *c = arg;

    pthread_mutex_lock(&c->snap_mu);
    while (!c->snap_stop) {
        struct timespec ts;
        struct wal_status ws;
        bool due;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&c->snap_cv, &c->snap_mu, &ts);
        if (c->snap_stop)
            break;
        wal_status(c->wal, &ws);
        due = (c->snap_interval > 0 && wall_ms() - c->snap_last_ms >= c->snap_interval) ||
              (c->snap_wal_size > 0 && ws.file_size >= c->snap_wal_size && !ws.error &&
               (!atomic_load(&c->snap_error) || wall_ms() - c->snap_last_ms >= SNAP_RETRY_MS));
        if (!due)
            continue;
        pthread_mutex_unlock(&c->snap_mu);
        char msg[1200];
        int rc = cache_snapshot(c, msg, sizeof(msg));
        say(c, rc ? CACHE_LOG_WARN : CACHE_LOG_INFO, rc ? "snapshot failed" : "snapshot written",
            msg);
        pthread_mutex_lock(&c->snap_mu);
    }
    pthread_mutex_unlock(&c->snap_mu);
    return NULL;
}

const char *cache_problem(struct cache *c)
{
    struct wal_status ws;

    if (!c || !c->wal)
        return NULL;
    wal_status(c->wal, &ws);
    if (!ws.error) {
        switch (atomic_load(&c->snap_error)) {
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

/* ---- audits ---- */

int cache_audit_record(struct cache *c, const uint8_t *partition, const uint8_t *exact, uint64_t id,
                       bool different, struct cache_audit_outcome *out)
{
    struct store_ref ref = {.id = id};
    bool ok = true;

    memset(out, 0, sizeof(*out));
    memcpy(ref.exact, exact, STORE_KEY_LEN);
    /* Shared, like a put: the flag and its record, the tallies and theirs,
     * reach the log in the order memory saw them. */
    pthread_rwlock_rdlock(&c->log_order);
    if (different && store_dispute(c->store, &ref) == 0) {
        out->disputed = true;
        atomic_fetch_add(&c->disputes, 1);
        if (c->wal) {
            struct buf b = {0};
            ok = rec_encode_del((const uint8_t(*)[REC_KEY_LEN])ref.exact, 1, &b) == 0 &&
                 wal_append(c->wal, REC_DISPUTE, b.p, b.len, NULL) == 0;
            buf_free(&b);
            if (!ok)
                atomic_fetch_add(&c->log_errors, 1);
        }
    }
    out->moved = budget_record(c->budget, partition, different, &out->now, &out->tracked);
    /* Every audit, not only those that move the threshold: the tallies are
     * the evidence a restarted parrot goes on from. */
    if (c->wal && out->tracked)
        ok &= log_audit(c, &out->now);
    pthread_rwlock_unlock(&c->log_order);
    return ok ? 0 : -ENOMEM;
}

size_t cache_audit_partitions(struct cache *c, struct budget_part *out, size_t max)
{
    return budget_list(c->budget, out, max);
}

const struct verify_tables *cache_verify_tables(const struct cache *c)
{
    return c->emb ? embedder_verify_tables(c->emb) : NULL;
}

float cache_threshold(struct cache *c, const uint8_t *partition)
{
    return budget_threshold(c->budget, partition);
}

/* ---- replication ---- */

void cache_set_change_hook(struct cache *c, void (*hook)(void *ud, const struct cache_change *ch),
                           void *ud)
{
    c->on_change = hook;
    c->change_ud = ud;
}

int cache_apply_put(struct cache *c, const void *rec, size_t len, int64_t now, uint64_t *seq)
{
    struct loaded l;
    float *vec = NULL;
    unsigned dim;
    const char *why;
    int rc;

    *seq = 0;
    if ((rc = load_put(c, rec, len, &l)) != 0)
        return rc;
    if (l.rec.expires && l.rec.expires <= now) {
        loaded_fini(c, &l);
        return 0;
    }
    /* Without a vector (nothing to embed, or the remote embedder failed)
     * the entry still answers exact hits. */
    if (l.rec.text)
        cache_embed_text(c, l.rec.text, strlen(l.rec.text), &vec, &dim, &why);
    pthread_rwlock_rdlock(&c->log_order);
    rc = put_entry(c, &l, 0, vec);
    if (rc == 0 && c->wal && wal_append(c->wal, REC_PUT, rec, len, seq) != 0)
        atomic_fetch_add(&c->log_errors, 1);
    pthread_rwlock_unlock(&c->log_order);
    free(vec);
    loaded_fini(c, &l);
    return rc == 0 ? 0 : -ENOMEM;
}

int cache_apply_del(struct cache *c, const struct cache_ref *refs, size_t n, size_t *removed,
                    uint64_t *seq)
{
    bool logged;

    return remove_refs(c, refs, n, false, removed, &logged, seq);
}

/* ---- entries, single-flight and statistics ---- */

void cache_entry_describe(const struct cache_entry *e, struct cache_entry_info *out)
{
    struct store_entry_info in;

    store_entry_describe((const struct store_entry *)e, &in);
    *out = (struct cache_entry_info){.id = in.id,
                                     .partition = in.partition,
                                     .exact = in.exact,
                                     .created = in.created,
                                     .expires = in.expires,
                                     .hits = in.hits,
                                     .size = in.size,
                                     .cost = in.cost,
                                     .vec = in.vec,
                                     .text = in.text,
                                     .payload = in.payload,
                                     .disputed = in.disputed};
}

void cache_entry_unref(struct cache_entry *e)
{
    store_entry_unref((struct store_entry *)e);
}

const void *cache_entry_payload(const struct cache_entry *e)
{
    return store_entry_payload((const struct store_entry *)e);
}

struct cache_entry *cache_get_id(struct cache *c, uint64_t id)
{
    return (struct cache_entry *)store_get_id(c->store, id);
}

struct scan_ctx {
    int (*visit)(void *ud, const struct cache_entry *e);
    void *ud;
};

/* A cache_entry is a store_entry under another name. */
static int scan_one(void *ud, const struct store_entry *e)
{
    struct scan_ctx *sc = ud;

    return sc->visit(sc->ud, (const struct cache_entry *)e);
}

int cache_scan(struct cache *c, int (*visit)(void *ud, const struct cache_entry *e), void *ud)
{
    struct scan_ctx sc = {visit, ud};

    return store_scan(c->store, scan_one, &sc);
}

float cache_similarity(const struct cache *c, const float *a, const float *b)
{
    return hnsw_dot(a, b, c->dim);
}

unsigned cache_dim(const struct cache *c)
{
    return c->dim;
}

int cache_embed_text(struct cache *c, const char *text, size_t len, float **vec, unsigned *dim,
                     const char **why)
{
    enum embed_result res = EMBED_CANCELLED;
    float *v = NULL;
    char *copy;

    *vec = NULL;
    *dim = c->dim;
    *why = NULL;
    if (!c->ec) {
        v = malloc(sizeof(float) * c->dim);
        if (!v)
            return -ENOMEM;
        if (embedder_embed(c->emb, text, len, v) != 0) {
            free(v);
            return -ENODATA;
        }
        *vec = v;
        return 0;
    }
    /* The remote client takes C strings. */
    copy = strndup(text, len);
    v = malloc(sizeof(float) * c->dim);
    if (!copy || !v) {
        free(copy);
        free(v);
        return -ENOMEM;
    }
    if (embed_client_embed_wait(c->ec, (const char *const *)&copy, 1, v, &res) != 1 ||
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

int cache_flight_join(struct cache *c, const uint8_t *exact, struct flight_waiter *w)
{
    return flight_join(c->flights, exact, w);
}

void cache_flight_done(struct cache *c, const uint8_t *exact)
{
    flight_done(c->flights, exact);
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
    struct store_stats ss;

    memset(st, 0, sizeof(*st));
    store_get_stats(c->store, &ss);
    st->entries = ss.entries;
    st->partitions = ss.partitions;
    st->indexed_partitions = ss.indexed_partitions;
    st->memory = ss.memory;
    st->evictions = ss.evictions;
    st->expirations = ss.expirations;
    st->replaced = ss.replaced;
    for (int i = 0; i < VERIFY_REASONS; i++)
        st->rejected[i] = atomic_load(&c->rejected[i]);
    st->rejected_unreusable = atomic_load(&c->rejected_unreusable);
    st->rejected_disputed = atomic_load(&c->rejected_disputed);
    st->disputes = atomic_load(&c->disputes);
    budget_get_totals(c->budget, &st->audit);
    st->threshold = c->threshold;
    st->embedder_name = c->emb_name;
    if (c->ec) {
        st->remote = true;
        embed_client_stats(c->ec, &st->embed);
    }
    if (c->wal) {
        struct wal_status ws;

        wal_status(c->wal, &ws);
        st->durable = true;
        st->wal_appended = ws.appended;
        st->wal_last_seq = ws.last_seq;
        st->wal_durable_seq = ws.durable_seq;
        st->wal_file_size = ws.file_size;
        st->wal_degraded = ws.error != 0;
        st->log_errors = atomic_load(&c->log_errors);
        st->snaps = atomic_load(&c->snaps);
        st->snap_failures = atomic_load(&c->snap_failures);
        st->snap_failing = atomic_load(&c->snap_error) != 0;
        st->snap_last_entries = atomic_load(&c->snap_last_entries);
        st->snap_last_bytes = atomic_load(&c->snap_last_bytes);
        st->snap_last_ms_taken = atomic_load(&c->snap_last_ms_taken);
        st->loaded_ms = atomic_load(&c->snap_loaded_ms);
        st->loaded_graphs = c->loaded_graphs;
        st->rebuilt_graphs = c->rebuilt_graphs;
    }
    st->log_errors = atomic_load(&c->log_errors);
}
