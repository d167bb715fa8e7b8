/* store.c - entries, partitions, lookups and eviction; see store.h.
 *
 * Layout: every entry sits in four places, all updated under the write lock:
 *   exact map    exact key -> entry        (exact hits)
 *   id map       id -> entry               (HNSW results, deletes)
 *   partition    key -> struct part        (members array + optional HNSW)
 *   all[]        dense array of entries    (uniform random eviction samples)
 * Each entry records its position in all[] and in its partition's members
 * array, so removal is a swap with the last element: O(1).
 */
#include "cache/index/store.h"

#include "cache/index/hnsw.h"
#include "cache/base/map.h"
#include "cache/base/rand.h"
#include "cache/base/hash.h"
#include "cache/match/terms.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define EVICT_SAMPLES  5
#define EXPIRE_SAMPLES 3
#define MAX_CANDIDATES 16

/* A partition, or one of its groups (store_query.group): the entries a
 * lookup searches. A partition holds its entries of group 0 and the
 * document counts of all its groups; it lives while it has members or
 * groups, a group while it has members. */
struct part {
    uint8_t key[STORE_KEY_LEN]; /* in parts: the partition's, or group_key() */
    struct part *base;          /* a group's partition; NULL: this is one */
    size_t groups;              /* a partition's groups */
    struct store_entry **members;
    size_t n, cap;
    size_t nvec;          /* members with a vector */
    struct hnsw *idx;     /* once nvec > exact_scan_max */
    size_t idx_mem;       /* idx's bytes as last accounted */
    struct termstats *df; /* a partition's: the terms of all its groups' members
                             (lexical score), so that a word weighs the same in
                             every group */
    size_t df_mem;        /* df's bytes as last accounted */
};

struct store_entry {
    atomic_uint refs; /* one for the store while it holds the entry, one per lookup */
    uint64_t id;
    uint8_t exact[STORE_KEY_LEN];
    /* The partition's key, for readers without the lock: part is cleared
     * and the partition may be freed when the entry leaves the store while
     * a lookup still holds it. in_store says whether it is still there. */
    uint8_t part_key[STORE_KEY_LEN];
    atomic_bool in_store;
    struct part *part; /* under the store's lock */
    size_t part_pos, all_pos;
    float *vec;
    char *text;
    uint64_t *terms; /* the text's terms (cache/terms.h), with a lexical weight */
    size_t nterms;
    void *payload;
    void (*payload_free)(void *);
    size_t size;
    double cost;
    int64_t created, expires; /* expires 0: never */
    atomic_uint_fast64_t hits;
    _Atomic double base; /* the store's L when inserted or last hit */
    /* An audit judged a semantic hit on it wrong: exact hits only. The one
     * field that changes after insertion, hence atomic. */
    atomic_bool disputed;
};

struct store {
    struct store_opts o;
    pthread_rwlock_t lock;
    struct map exact, ids, parts;
    struct store_entry **all;
    size_t nall, cap_all;
    size_t memory;
    _Atomic double L; /* GDSF inflation: priority of the last victim */
    uint64_t rng;
    bool loading; /* store_load_begin: partitions wait for store_load_end to be indexed */
    struct store_stats st;
};

static uint64_t rnd(struct store *s)
{
    /* xorshift64*: only picks eviction samples, under the write lock. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545f4914f6cdd1dULL;
}

void store_entry_unref(struct store_entry *e)
{
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    if (e->payload_free)
        e->payload_free(e->payload);
    free(e->vec);
    free(e->text);
    free(e->terms);
    free(e);
}

uint64_t store_entry_id(const struct store_entry *e)
{
    return e->id;
}

int64_t store_entry_created(const struct store_entry *e)
{
    return e->created;
}

int64_t store_entry_expires(const struct store_entry *e)
{
    return e->expires;
}

double store_entry_cost(const struct store_entry *e)
{
    return e->cost;
}

const uint8_t *store_entry_exact(const struct store_entry *e)
{
    return e->exact;
}

const float *store_entry_vec(const struct store_entry *e)
{
    return e->vec;
}

const char *store_entry_text(const struct store_entry *e)
{
    return e->text;
}

void *store_entry_payload(const struct store_entry *e)
{
    return e->payload;
}

/* The entry with this id, or NULL; under either lock. */
static struct store_entry *by_id(const struct store *s, uint64_t id)
{
    uint8_t key[MAP_KEY_LEN];

    map_id_key(id, key);
    return map_get(&s->ids, key);
}

static bool fresh(const struct store_entry *e, int64_t now, int64_t max_age)
{
    if (e->expires && now >= e->expires)
        return false;
    return max_age < 0 || now - e->created <= max_age;
}

static double priority(const struct store_entry *e)
{
    double hits = (double)atomic_load_explicit(&e->hits, memory_order_relaxed);
    return atomic_load_explicit(&e->base, memory_order_relaxed) +
           (hits + 1.0) * e->cost / (double)(e->size ? e->size : 1);
}

/* A lookup found e: count the hit and restart its ageing from now. */
static void touch(struct store *s, struct store_entry *e)
{
    atomic_fetch_add(&e->refs, 1);
    atomic_fetch_add_explicit(&e->hits, 1, memory_order_relaxed);
    atomic_store_explicit(&e->base, atomic_load_explicit(&s->L, memory_order_relaxed),
                          memory_order_relaxed);
}

static void account_index(struct store *s, struct part *p)
{
    size_t now = p->idx ? hnsw_memory(p->idx) : 0;

    s->memory = s->memory - p->idx_mem + now;
    p->idx_mem = now;
}

static void account_terms(struct store *s, struct part *p)
{
    size_t now = p->df ? termstats_memory(p->df) : 0;

    s->memory = s->memory - p->df_mem + now;
    p->df_mem = now;
}

/* The key group (not 0) of partition is kept under in parts: the
 * partition's, its first eight bytes XORed with the group mixed. The mix is
 * a bijection, so two groups of one partition never share a key (nor one
 * with the partition: only 0 mixes to 0), and a key of another partition
 * would have to share the other 24 bytes of a SHA-256. */
static void group_key(const uint8_t *partition, uint64_t group, uint8_t *out)
{
    uint64_t head;

    memcpy(out, partition, STORE_KEY_LEN);
    memcpy(&head, out, sizeof(head));
    head ^= hash_mix(group);
    memcpy(out, &head, sizeof(head));
}

/* The key in parts of the entries a put or a lookup of group in partition
 * goes to, into buf[STORE_KEY_LEN] when it is not the partition's own. */
static const uint8_t *part_key(const uint8_t *partition, uint64_t group, uint8_t *buf)
{
    if (group == 0)
        return partition;
    group_key(partition, group, buf);
    return buf;
}

/* The part kept under key, made empty (as a group of base, or as a
 * partition when base is NULL) if there is none. NULL when out of memory. */
static struct part *part_get(struct store *s, const uint8_t *key, struct part *base)
{
    struct part *p = map_get(&s->parts, key);
    void *prev;

    if (p)
        return p;
    if (!(p = calloc(1, sizeof(*p))))
        return NULL;
    memcpy(p->key, key, STORE_KEY_LEN);
    p->base = base;
    if (map_put(&s->parts, p->key, p, &prev) != 0) {
        free(p);
        return NULL;
    }
    if (base)
        base->groups++;
    else
        s->st.partitions++;
    return p;
}

/* Free p if it is left empty, and then its partition if that is too; a
 * partition whose groups still live keeps its counts, not an index of
 * nothing. */
static void part_release(struct store *s, struct part *p)
{
    struct part *base = p->base;

    if (p->n > 0)
        return;
    if (p->idx) {
        s->memory -= p->idx_mem;
        hnsw_free(p->idx);
        p->idx = NULL;
        p->idx_mem = 0;
        s->st.indexed_partitions--;
    }
    if (p->groups > 0)
        return;
    map_del(&s->parts, p->key);
    s->memory -= p->df_mem;
    termstats_free(p->df);
    free(p->members);
    free(p);
    if (base) {
        base->groups--;
        part_release(s, base);
    } else {
        s->st.partitions--;
    }
}

/* The partition of p, which holds the document counts. */
static struct part *part_base(const struct part *p)
{
    return p->base ? p->base : (struct part *)p;
}

/* Drop e from every structure and release the store's reference. */
static void remove_entry(struct store *s, struct store_entry *e)
{
    uint8_t key[MAP_KEY_LEN];
    struct part *p = e->part;

    if (map_get(&s->exact, e->exact) == e)
        map_del(&s->exact, e->exact);
    map_id_key(e->id, key);
    map_del(&s->ids, key);
    if (p) {
        struct store_entry *last = p->members[--p->n];
        last->part_pos = e->part_pos;
        p->members[e->part_pos] = last;
        if (e->terms) {
            termstats_remove(part_base(p)->df, e->terms, e->nterms);
            account_terms(s, part_base(p));
        }
        if (e->vec) {
            p->nvec--;
            if (p->idx) {
                hnsw_delete(p->idx, e->id);
                account_index(s, p);
            }
        }
        part_release(s, p);
        e->part = NULL;
        atomic_store_explicit(&e->in_store, false, memory_order_relaxed);
    }
    if (s->all[e->all_pos] == e) {
        struct store_entry *last = s->all[--s->nall];
        last->all_pos = e->all_pos;
        s->all[e->all_pos] = last;
    }
    s->memory -= e->size;
    s->st.entries--;
    store_entry_unref(e);
}

/* Build an index for a partition that outgrew exhaustive scans. */
static int index_part(struct store *s, struct part *p)
{
    struct hnsw_opts ho;
    int rc;

    hnsw_opts_default(&ho, s->o.dim);
    if (s->o.hnsw_m)
        ho.m = s->o.hnsw_m;
    if (s->o.hnsw_ef_construction)
        ho.ef_construction = s->o.hnsw_ef_construction;
    if (s->o.hnsw_ef_search)
        ho.ef_search = s->o.hnsw_ef_search;
    memcpy(&ho.seed, p->key, sizeof(ho.seed));
    if ((rc = hnsw_new(&ho, &p->idx)) != 0)
        return rc;
    for (size_t i = 0; i < p->n; i++) {
        if (p->members[i]->vec &&
            (rc = hnsw_insert(p->idx, p->members[i]->id, p->members[i]->vec))) {
            hnsw_free(p->idx);
            p->idx = NULL;
            return rc;
        }
    }
    s->st.indexed_partitions++;
    account_index(s, p);
    return 0;
}

/* Add e to p, indexing its vector (with plan's searches if they are still
 * current: see plan_insert). */
static int part_add(struct store *s, struct part *p, struct store_entry *e,
                    const struct hnsw_plan *plan)
{
    int rc;

    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 4;
        struct store_entry **nm = realloc(p->members, nc * sizeof(*nm));
        if (!nm)
            return -ENOMEM;
        p->members = nm;
        p->cap = nc;
    }
    if (e->terms) {
        struct part *b = part_base(p);
        if (!b->df && !(b->df = termstats_new()))
            return -ENOMEM;
        if (termstats_add(b->df, e->terms, e->nterms) != 0)
            return -ENOMEM;
        account_terms(s, b);
    }
    p->members[p->n] = e;
    e->part_pos = p->n++;
    e->part = p;
    memcpy(e->part_key, part_base(p)->key, STORE_KEY_LEN);
    atomic_store_explicit(&e->in_store, true, memory_order_relaxed);
    if (!e->vec)
        return 0;
    p->nvec++;
    if (p->idx) {
        rc = hnsw_insert_planned(p->idx, e->id, e->vec, plan);
        account_index(s, p);
    } else if (p->nvec > s->o.exact_scan_max && !s->loading) {
        rc = index_part(s, p); /* inserts e too */
    } else {
        rc = 0;
    }
    return rc;
}

static void evict(struct store *s, const struct store_entry *keep)
{
    /* Active expiry: a few random entries per insert, as Redis does. */
    for (int i = 0; i < EXPIRE_SAMPLES && s->nall > 0; i++) {
        struct store_entry *e = s->all[rnd(s) % s->nall];
        if (e != keep && e->expires && e->expires <= keep->created) {
            remove_entry(s, e);
            s->st.expirations++;
        }
    }
    while (s->memory > s->o.max_memory && s->nall > 1) {
        struct store_entry *victim = NULL;
        double best = 0;

        for (int i = 0; i < EVICT_SAMPLES; i++) {
            struct store_entry *e = s->all[rnd(s) % s->nall];
            double pr;
            if (e == keep)
                continue;
            pr = (e->expires && e->expires <= keep->created) ? -1.0 : priority(e);
            if (!victim || pr < best) {
                victim = e;
                best = pr;
            }
        }
        if (!victim)
            continue;
        if (best > 0)
            atomic_store(&s->L, best);
        remove_entry(s, victim);
        s->st.evictions++;
    }
}

static int put_terms(struct store_entry *e, const char *text)
{
    uint64_t t[TERMS_MAX];

    e->nterms = terms_of(text, strlen(text), t);
    if (e->nterms == 0)
        return 0;
    e->terms = malloc(e->nterms * sizeof(*t));
    if (!e->terms)
        return -ENOMEM;
    memcpy(e->terms, t, e->nterms * sizeof(*t));
    e->size += e->nterms * sizeof(*t);
    return 0;
}

/* The searches that indexing vec in the part under key will need, done
 * under the read lock so that lookups go on meanwhile: in a large partition
 * they are most of an insert, which then holds the write lock only to link.
 * NULL when there is no index to search yet (or no memory: the insert then
 * searches itself). If another writer gets the lock first, the plan is
 * stale and the insert does not use it. */
static struct hnsw_plan *plan_insert(struct store *s, const uint8_t *key, const float *vec)
{
    struct hnsw_plan *plan = NULL;
    const struct part *p;

    if (!vec)
        return NULL;
    pthread_rwlock_rdlock(&s->lock);
    p = map_get(&s->parts, key);
    if (p && p->idx)
        plan = hnsw_plan(p->idx, vec);
    pthread_rwlock_unlock(&s->lock);
    return plan;
}

int store_put(struct store *s, struct store_put_args *a, uint64_t *id)
{
    struct store_entry *e = calloc(1, sizeof(*e)), *old = NULL;
    struct hnsw_plan *plan = NULL;
    uint8_t key[MAP_KEY_LEN], gkey[STORE_KEY_LEN];
    const uint8_t *pkey = part_key(a->partition, a->group, gkey);
    struct part *base, *p;
    void *prev;
    int rc = -ENOMEM;

    if (!e)
        goto fail_payload;
    atomic_init(&e->refs, 1);
    memcpy(e->exact, a->exact, STORE_KEY_LEN);
    e->payload = a->payload;
    e->payload_free = s->o.payload_free;
    e->cost = a->cost >= 1 ? a->cost : 1;
    e->created = a->now;
    e->expires = a->ttl > 0 ? a->now + a->ttl : 0;
    atomic_init(&e->disputed, a->disputed);
    e->size = sizeof(*e) + a->payload_size;
    if (a->vec) {
        e->vec = malloc(sizeof(float) * s->o.dim);
        if (!e->vec)
            goto fail_entry;
        memcpy(e->vec, a->vec, sizeof(float) * s->o.dim);
        e->size += sizeof(float) * s->o.dim;
    }
    if (a->text) {
        e->text = strdup(a->text);
        if (!e->text)
            goto fail_entry;
        e->size += strlen(a->text) + 1;
        if (s->o.lexical_weight > 0 && (rc = put_terms(e, a->text)) != 0)
            goto fail_entry;
    }

    plan = plan_insert(s, pkey, e->vec);
    pthread_rwlock_wrlock(&s->lock);
    if (a->id) {
        struct store_entry *same = by_id(s, a->id);
        /* The same id under the same key is the same entry stored again
         * (a replica applying a change it already holds): replace it. */
        if (same && memcmp(same->exact, a->exact, STORE_KEY_LEN) != 0) {
            rc = -EEXIST;
            goto fail_locked;
        }
        if (same) {
            remove_entry(s, same);
            s->st.replaced++;
        }
        e->id = a->id;
    } else {
        /* Random, not counted: clients see ids (x-parrot-entry), and two
         * consecutive ones must not tell how many entries other tenants
         * stored in between. 0 means "none"; a repeat is retried. */
        do
            e->id = rand_u64();
        while (e->id == 0 || by_id(s, e->id));
    }
    atomic_init(&e->base, atomic_load(&s->L));
    if (s->nall == s->cap_all) {
        size_t nc = s->cap_all ? s->cap_all * 2 : 64;
        struct store_entry **na = realloc(s->all, nc * sizeof(*na));
        if (!na)
            goto fail_locked;
        s->all = na;
        s->cap_all = nc;
    }
    if (!(base = part_get(s, a->partition, NULL)))
        goto fail_locked;
    if (!(p = a->group ? part_get(s, pkey, base) : base)) {
        part_release(s, base);
        goto fail_locked;
    }
    map_id_key(e->id, key);
    if (map_put(&s->ids, key, e, &prev) != 0)
        goto fail_part;
    if (map_put(&s->exact, e->exact, e, (void **)&old) != 0) {
        map_del(&s->ids, key);
        goto fail_part;
    }
    s->all[s->nall] = e;
    e->all_pos = s->nall++;
    s->memory += e->size;
    s->st.entries++;
    rc = part_add(s, p, e, plan);
    if (rc != 0) {
        /* Not indexed, so not findable by similarity: take it out again. */
        if (old)
            map_put(&s->exact, old->exact, old, &prev);
        remove_entry(s, e);
        pthread_rwlock_unlock(&s->lock);
        hnsw_plan_free(plan);
        return rc;
    }
    if (old) {
        remove_entry(s, old);
        s->st.replaced++;
    }
    evict(s, e);
    *id = e->id;
    pthread_rwlock_unlock(&s->lock);
    hnsw_plan_free(plan);
    return 0;

fail_part:
    part_release(s, p);
fail_locked:
    pthread_rwlock_unlock(&s->lock);
    hnsw_plan_free(plan);
fail_entry:
    e->payload = NULL;
    store_entry_unref(e);
fail_payload:
    if (s->o.payload_free)
        s->o.payload_free(a->payload);
    return rc;
}

struct store_entry *store_get_exact(struct store *s, const uint8_t *exact, int64_t now,
                                    int64_t max_age)
{
    struct store_entry *e;

    pthread_rwlock_rdlock(&s->lock);
    e = map_get(&s->exact, exact);
    if (e && fresh(e, now, max_age))
        touch(s, e);
    else
        e = NULL;
    pthread_rwlock_unlock(&s->lock);
    return e;
}

/* Exhaustive scan of a small partition: the best `k` by similarity. */
static size_t scan(const struct store *s, const struct part *p, const float *vec, size_t k,
                   struct hnsw_hit *out)
{
    size_t n = 0;

    for (size_t i = 0; i < p->n; i++) {
        const struct store_entry *e = p->members[i];
        float sim;
        size_t j;

        if (!e->vec)
            continue;
        sim = hnsw_dot(vec, e->vec, s->o.dim);
        if (n == k && sim <= out[n - 1].sim)
            continue;
        j = n < k ? n++ : n - 1;
        while (j > 0 && out[j - 1].sim < sim) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].id = e->id;
        out[j].sim = sim;
    }
    return n;
}

/* A candidate of a semantic lookup, with its score. */
struct cand {
    struct store_entry *e;
    float score;
};

/* Score every candidate of hits[0..n), best first. The lexical part needs
 * the partition's counts, so it runs under the read lock; qt is NULL for
 * vector similarity alone. */
static size_t score_cands(struct store *s, const struct part *p, const struct store_query *q,
                          const struct hnsw_hit *hits, size_t n, const uint64_t *qt, size_t nqt,
                          struct cand *out)
{
    const struct termstats *df = part_base(p)->df;
    struct term_weights qw, cw;
    float w = s->o.lexical_weight;
    size_t m = 0;

    if (qt && df)
        terms_weigh(df, qt, nqt, &qw);
    for (size_t i = 0; i < n; i++) {
        struct store_entry *e = by_id(s, hits[i].id);
        float score = hits[i].sim;
        size_t j;

        if (!e || !fresh(e, q->now, q->max_age))
            continue;
        if (qt && df) {
            /* What it would score were its terms all the question's (a
             * cosine is at most 1, and the sum can only grow with it). Below
             * the threshold it can never be served, and where it sorts among
             * the others below the threshold changes nothing: its weights are
             * not worked out. */
            float top = (1.0f - w) * score + w * 1.0f;
            if (top < q->threshold) {
                score = top;
            } else {
                /* An entry without terms (no text) scores its similarity's share. */
                terms_weigh(df, e->terms, e->nterms, &cw);
                score = (1.0f - w) * score + w * terms_cos(&qw, &cw);
            }
        }
        for (j = m++; j > 0 && out[j - 1].score < score; j--)
            out[j] = out[j - 1];
        out[j] = (struct cand){e, score};
    }
    return m;
}

struct store_entry *store_get_semantic(struct store *s, const struct store_query *q, float *score)
{
    struct hnsw_hit hits[MAX_CANDIDATES];
    struct cand cands[MAX_CANDIDATES];
    uint64_t qt[TERMS_MAX];
    uint8_t gkey[STORE_KEY_LEN];
    size_t nqt = 0, n;
    unsigned k = q->candidates;
    bool lexical = s->o.lexical_weight > 0 && q->text;
    struct store_entry *found = NULL;
    const struct part *p;

    if (k == 0)
        k = 1;
    if (k > MAX_CANDIDATES)
        k = MAX_CANDIDATES;
    if (q->last_sim)
        *q->last_sim = -1.0f;
    if (lexical)
        nqt =
            q->words ? terms_of_words(q->words, q->nwords, qt) : terms_of(q->text, q->text_len, qt);
    pthread_rwlock_rdlock(&s->lock);
    p = map_get(&s->parts, part_key(q->partition, q->group, gkey));
    if (!p || p->nvec == 0) {
        pthread_rwlock_unlock(&s->lock);
        return NULL;
    }
    n = p->idx ? hnsw_search(p->idx, q->vec, k, 0, hits) : scan(s, p, q->vec, k, hits);
    if (q->last_sim && n == k)
        *q->last_sim = hits[n - 1].sim;
    n = score_cands(s, p, q, hits, n, lexical ? qt : NULL, nqt, cands);
    for (size_t i = 0; i < n && cands[i].score >= q->threshold; i++) {
        if (q->accept && !q->accept(q->ud, cands[i].e, cands[i].score))
            continue;
        touch(s, cands[i].e);
        *score = cands[i].score;
        found = cands[i].e;
        break;
    }
    pthread_rwlock_unlock(&s->lock);
    return found;
}

int store_delete(struct store *s, uint64_t id)
{
    struct store_entry *e;

    pthread_rwlock_wrlock(&s->lock);
    e = by_id(s, id);
    if (e)
        remove_entry(s, e);
    pthread_rwlock_unlock(&s->lock);
    return e ? 0 : -ENOENT;
}

/* The entry r names: the one under r->exact, if its id is r->id (0: any).
 * Under the lock. */
static struct store_entry *by_ref(struct store *s, const struct store_ref *r)
{
    struct store_entry *e = map_get(&s->exact, r->exact);

    return e && r->id && e->id != r->id ? NULL : e;
}

int store_remove(struct store *s, const struct store_ref *r)
{
    struct store_entry *e;

    pthread_rwlock_wrlock(&s->lock);
    e = by_ref(s, r);
    if (e)
        remove_entry(s, e);
    pthread_rwlock_unlock(&s->lock);
    return e ? 0 : -ENOENT;
}

int store_dispute(struct store *s, const struct store_ref *r)
{
    struct store_entry *e;

    /* Read lock: the flag is atomic, and lookups need not wait. */
    pthread_rwlock_rdlock(&s->lock);
    e = by_ref(s, r);
    if (e)
        atomic_store(&e->disputed, true);
    pthread_rwlock_unlock(&s->lock);
    return e ? 0 : -ENOENT;
}

bool store_entry_disputed(const struct store_entry *e)
{
    return atomic_load(&e->disputed);
}

void store_entry_describe(const struct store_entry *e, struct store_entry_info *out)
{
    out->id = e->id;
    out->partition = atomic_load_explicit(&e->in_store, memory_order_relaxed) ? e->part_key : NULL;
    out->exact = e->exact;
    out->created = e->created;
    out->expires = e->expires;
    out->hits = atomic_load_explicit(&e->hits, memory_order_relaxed);
    out->size = e->size;
    out->cost = e->cost;
    out->vec = e->vec;
    out->text = e->text;
    out->payload = e->payload;
    out->disputed = store_entry_disputed(e);
}

int store_scan(struct store *s, store_visit_fn visit, void *ud)
{
    int rc = 0;

    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->nall && rc == 0; i++)
        rc = visit(ud, s->all[i]);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int store_capture(struct store *s, store_graph_fn graph, void *ud, struct store_snap_item **items,
                  size_t *n)
{
    struct store_snap_item *it;
    int rc = 0;

    *items = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&s->lock);
    it = malloc((s->nall ? s->nall : 1) * sizeof(*it));
    if (!it) {
        pthread_rwlock_unlock(&s->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->nall; i++) {
        struct store_entry *e = s->all[i];
        atomic_fetch_add(&e->refs, 1);
        it[i].e = e;
        memcpy(it[i].partition, e->part_key, STORE_KEY_LEN);
        memcpy(it[i].graph, e->part->key, STORE_KEY_LEN);
        it[i].indexed = e->vec && e->part->idx;
    }
    *n = s->nall;
    for (size_t i = 0; i < s->nall && rc == 0; i++) {
        const struct part *p = s->all[i]->part;
        /* Once per partition or group: at its first member in members[] order. */
        if (p->idx && p->members[0] == s->all[i])
            rc = graph(ud, p->key, p->idx);
    }
    pthread_rwlock_unlock(&s->lock);
    *items = it;
    return rc;
}

void store_capture_free(struct store_snap_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_entry_unref(items[i].e);
    free(items);
}

void store_load_begin(struct store *s)
{
    pthread_rwlock_wrlock(&s->lock);
    s->loading = true;
    pthread_rwlock_unlock(&s->lock);
}

int store_adopt_index(struct store *s, const uint8_t *key, struct hnsw *idx)
{
    struct part *p;
    int rc = 0;

    pthread_rwlock_wrlock(&s->lock);
    p = map_get(&s->parts, key);
    if (!p || p->idx || hnsw_dim(idx) != s->o.dim || hnsw_count(idx) != p->nvec) {
        rc = -ESTALE;
    } else {
        for (size_t i = 0; i < p->n && rc == 0; i++)
            if (p->members[i]->vec && !hnsw_vector(idx, p->members[i]->id))
                rc = -ESTALE;
    }
    if (rc == 0) {
        p->idx = idx;
        s->st.indexed_partitions++;
        account_index(s, p);
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc)
        hnsw_free(idx);
    return rc;
}

int store_load_end(struct store *s, size_t *built)
{
    int rc = 0;

    *built = 0;
    pthread_rwlock_wrlock(&s->lock);
    s->loading = false;
    for (size_t i = 0; i < s->nall && rc == 0; i++) {
        struct part *p = s->all[i]->part;
        if (!p->idx && p->nvec > s->o.exact_scan_max) {
            rc = index_part(s, p);
            *built += rc == 0;
        }
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

struct store_entry *store_get_id(struct store *s, uint64_t id)
{
    struct store_entry *e;

    pthread_rwlock_rdlock(&s->lock);
    e = by_id(s, id);
    if (e)
        atomic_fetch_add(&e->refs, 1);
    pthread_rwlock_unlock(&s->lock);
    return e;
}

void store_get_stats(struct store *s, struct store_stats *st)
{
    pthread_rwlock_rdlock(&s->lock);
    *st = s->st;
    st->memory = s->memory;
    pthread_rwlock_unlock(&s->lock);
}

int store_new(const struct store_opts *o, struct store **out)
{
    struct store *s;

    if (o->dim == 0 || o->dim > HNSW_DIM_MAX)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = *o;
    map_init(&s->exact);
    map_init(&s->ids);
    map_init(&s->parts);
    atomic_init(&s->L, 0.0);
    s->rng = 0x9e3779b97f4a7c15ULL;
    if (pthread_rwlock_init(&s->lock, NULL) != 0) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    while (s->nall > 0)
        remove_entry(s, s->all[s->nall - 1]);
    map_fini(&s->exact);
    map_fini(&s->ids);
    map_fini(&s->parts);
    free(s->all);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}
