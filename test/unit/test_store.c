/* Unit tests for cache/store.c and cache/map.c: exact and semantic lookup,
 * partition walls, TTL, replacement, eviction, indexing of big partitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/map.h"
#include "cache/index/hnsw.h"
#include "cache/index/store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DIM 16

static int freed;

static void payload_free(void *p)
{
    freed++;
    free(p);
}

static struct store *mk(size_t max_memory, size_t scan_max)
{
    struct store_opts o = {.dim = DIM,
                           .max_memory = max_memory,
                           .exact_scan_max = scan_max,
                           .payload_free = payload_free};
    struct store *s = NULL;

    assert_int_equal(store_new(&o, &s), 0);
    return s;
}

static void key(uint8_t *k, int tag)
{
    memset(k, 0, STORE_KEY_LEN);
    k[0] = (uint8_t)tag;
    k[1] = (uint8_t)(tag >> 8);
    k[31] = 0xa5;
}

/* A unit vector pointing mostly along axis a, tilted towards axis b. */
static void vec(float *v, int a, int b, float tilt)
{
    float n;

    memset(v, 0, sizeof(float) * DIM);
    v[a % DIM] = 1.0f;
    v[b % DIM] += tilt;
    n = sqrtf(1.0f + tilt * tilt + (a % DIM == b % DIM ? 2 * tilt : 0));
    for (int i = 0; i < DIM; i++)
        v[i] /= n;
}

static uint64_t put_text(struct store *s, int part, int exact, const float *v, const char *text,
                         int64_t now, int64_t ttl, size_t size)
{
    uint8_t pk[STORE_KEY_LEN], ek[STORE_KEY_LEN];
    struct store_put_args a = {0};
    uint64_t id = 0;

    key(pk, part);
    key(ek, exact + 1000);
    a.partition = pk;
    a.exact = ek;
    a.vec = v;
    a.text = text;
    a.payload = malloc(8);
    a.payload_size = size;
    a.cost = 10;
    a.now = now;
    a.ttl = ttl;
    assert_int_equal(store_put(s, &a, &id), 0);
    return id;
}

static uint64_t put(struct store *s, int part, int exact, const float *v, int64_t now, int64_t ttl,
                    size_t size)
{
    return put_text(s, part, exact, v, "question", now, ttl, size);
}

static struct store_entry *get_exact(struct store *s, int exact, int64_t now, int64_t max_age)
{
    uint8_t ek[STORE_KEY_LEN];

    key(ek, exact + 1000);
    return store_get_exact(s, ek, now, max_age);
}

/* A semantic lookup; text NULL: by vector alone. */
static struct store_entry *query(struct store *s, int part, const float *v, const char *text,
                                 float thr, int64_t now, unsigned candidates, float *score)
{
    uint8_t pk[STORE_KEY_LEN];

    key(pk, part);
    struct store_query q = {.partition = pk,
                            .vec = v,
                            .text = text,
                            .text_len = text ? strlen(text) : 0,
                            .threshold = thr,
                            .now = now,
                            .max_age = -1,
                            .candidates = candidates};
    return store_get_semantic(s, &q, score);
}

static struct store_entry *get_sem_at(struct store *s, int part, const float *v, float thr,
                                      int64_t now, float *sim)
{
    return query(s, part, v, NULL, thr, now, 4, sim);
}

static struct store_entry *get_sem(struct store *s, int part, const float *v, float thr, float *sim)
{
    return get_sem_at(s, part, v, thr, 100, sim);
}

static void test_exact_and_semantic(void **state)
{
    struct store *s = mk(1 << 20, 8);
    float v[DIM], q[DIM], far[DIM], sim = 0;
    struct store_entry *e;
    uint64_t id;

    (void)state;
    vec(v, 0, 1, 0.1f);
    id = put(s, 1, 1, v, 100, 0, 100);
    e = get_exact(s, 1, 100, -1);
    assert_non_null(e);
    assert_int_equal(store_entry_id(e), id);
    assert_string_equal(store_entry_text(e), "question");
    store_entry_unref(e);

    vec(q, 0, 2, 0.2f); /* close to v */
    e = get_sem(s, 1, q, 0.9f, &sim);
    assert_non_null(e);
    assert_true(sim > 0.9f && sim <= 1.0001f);
    store_entry_unref(e);

    vec(far, 5, 6, 0.1f);
    assert_null(get_sem(s, 1, far, 0.5f, &sim));
    /* The same vector in another partition is never a candidate. */
    assert_null(get_sem(s, 2, v, 0.0f, &sim));
    assert_null(get_exact(s, 2, 100, -1));
    store_free(s);
}

static void test_ttl_and_max_age(void **state)
{
    struct store *s = mk(1 << 20, 8);
    float v[DIM], sim;
    struct store_entry *e;

    (void)state;
    vec(v, 3, 4, 0.1f);
    put(s, 1, 1, v, 100, 10, 100);
    e = get_exact(s, 1, 105, -1);
    assert_non_null(e);
    store_entry_unref(e);
    assert_null(get_exact(s, 1, 110, -1)); /* expired */
    assert_null(get_exact(s, 1, 105, 4));  /* older than max-age */
    e = get_exact(s, 1, 105, 5);
    assert_non_null(e);
    store_entry_unref(e);
    e = get_sem_at(s, 1, v, 0.1f, 109, &sim);
    assert_non_null(e);
    store_entry_unref(e);
    assert_null(get_sem_at(s, 1, v, 0.1f, 110, &sim));
    store_free(s);
}

static void test_replace_same_exact_key(void **state)
{
    struct store *s = mk(1 << 20, 8);
    float v[DIM];
    struct store_stats st;
    struct store_entry *e;
    uint64_t a, b;

    (void)state;
    vec(v, 0, 1, 0.1f);
    freed = 0;
    a = put(s, 1, 7, v, 100, 0, 100);
    b = put(s, 1, 7, v, 101, 0, 100);
    assert_int_not_equal(a, b);
    store_get_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(freed, 1);
    e = get_exact(s, 7, 101, -1);
    assert_int_equal(store_entry_id(e), b);
    /* A reference keeps a deleted entry alive until it is dropped. */
    assert_int_equal(store_delete(s, b), 0);
    assert_int_equal(freed, 1);
    assert_string_equal(store_entry_text(e), "question");
    store_entry_unref(e);
    assert_int_equal(freed, 2);
    assert_int_equal(store_delete(s, b), -ENOENT);
    store_free(s);
}

static int count_visit(void *ud, const struct store_entry *e)
{
    (void)e;
    return ++*(int *)ud == 2 ? 7 : 0;
}

/* The admin API's view: scan, look up by id, and remove by exact key only
 * while the id still matches (a replaced entry is not removed by mistake). */
static void test_scan_and_remove(void **state)
{
    struct store *s = mk(1 << 20, 8);
    float v[DIM];
    struct store_entry *e;
    struct store_entry_info in;
    struct store_ref ref;
    uint64_t a, b;
    int visited = 0;

    (void)state;
    vec(v, 0, 1, 0.1f);
    a = put(s, 1, 7, v, 100, 0, 100);
    put(s, 2, 8, v, 100, 0, 100);
    assert_int_equal(store_scan(s, count_visit, &visited), 7); /* stopped at the second */
    assert_int_equal(visited, 2);
    e = store_get_id(s, a);
    assert_non_null(e);
    store_entry_describe(e, &in);
    assert_int_equal(in.id, a);
    assert_int_equal(in.hits, 0);
    assert_non_null(in.vec);
    ref.id = a;
    memcpy(ref.exact, in.exact, STORE_KEY_LEN);
    store_entry_unref(e);
    b = put(s, 1, 7, v, 101, 0, 100); /* replaces a under the same key */
    assert_int_equal(store_remove(s, &ref), -ENOENT);
    ref.id = b;
    assert_int_equal(store_remove(s, &ref), 0);
    assert_null(store_get_id(s, b));
    ref.id = 0;
    key(ref.exact, 8 + 1000);                   /* as put() spells exact keys */
    assert_int_equal(store_remove(s, &ref), 0); /* id 0: whatever holds the key */
    visited = 0;
    assert_int_equal(store_scan(s, count_visit, &visited), 0);
    assert_int_equal(visited, 0);
    store_free(s);
}

/* Past max_memory, entries go; hits protect an entry (GDSF). */
static void test_eviction(void **state)
{
    struct store *s = mk(64 * 1024, 8);
    struct store_stats st;
    float v[DIM];
    int hot_hits = 0;

    (void)state;
    vec(v, 0, 1, 0.1f);
    put(s, 1, 0, v, 100, 0, 1000); /* the hot entry */
    for (int i = 1; i < 400; i++) {
        struct store_entry *e = get_exact(s, 0, 100, -1);
        if (e) {
            hot_hits++;
            store_entry_unref(e);
        }
        put(s, 2 + i % 7, i, v, 100, 0, 1000);
    }
    store_get_stats(s, &st);
    assert_true(st.memory <= 64 * 1024);
    assert_true(st.evictions > 300);
    assert_true(st.entries < 64);
    /* Hit on every round, so it should have survived nearly all of them. */
    assert_true(hot_hits > 350);
    store_free(s);
}

/* A partition past exact_scan_max switches to an HNSW index and still finds
 * its entries; deletes keep working on the index. */
static void test_partition_index(void **state)
{
    struct store *s = mk(64 << 20, 8);
    struct store_stats st;
    float v[DIM], sim;
    uint64_t ids[40];

    (void)state;
    for (int i = 0; i < 40; i++) {
        vec(v, i % DIM, (i / DIM) + 3, 0.05f * (float)(i / DIM + 1));
        ids[i] = put(s, 1, i, v, 100, 0, 100);
    }
    store_get_stats(s, &st);
    assert_int_equal(st.indexed_partitions, 1);
    for (int i = 0; i < 40; i++) {
        struct store_entry *e;
        vec(v, i % DIM, (i / DIM) + 3, 0.05f * (float)(i / DIM + 1));
        e = get_sem(s, 1, v, 0.999f, &sim);
        assert_non_null(e);
        assert_int_equal(store_entry_id(e), ids[i]);
        store_entry_unref(e);
    }
    assert_int_equal(store_delete(s, ids[5]), 0);
    vec(v, 5, 3, 0.05f);
    {
        struct store_entry *e = get_sem(s, 1, v, 0.999f, &sim);
        if (e)
            assert_int_not_equal(store_entry_id(e), ids[5]);
        store_entry_unref(e);
    }
    store_free(s);
}

/* Inserts into an indexed partition plan their searches under the read
 * lock (hnsw_plan) while lookups run: two writers and two readers on one
 * partition (run under TSan in CI), then every entry is found by its own
 * vector and the index is sound. */
enum { CW_EACH = 300 };

struct cw {
    struct store *s;
    int base; /* writers: first exact key; readers: 0 */
    uint64_t ids[CW_EACH];
};

static void cw_vec(float *v, int i)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    float n = 0;

    for (int d = 0; d < DIM; d++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ULL;
        v[d] = (float)((double)(x >> 11) * 0x1p-53 - 0.5);
        n += v[d] * v[d];
    }
    for (int d = 0; d < DIM; d++)
        v[d] /= sqrtf(n);
}

static void *cw_writer(void *arg)
{
    struct cw *w = arg;
    float v[DIM];

    for (int i = 0; i < CW_EACH; i++) {
        cw_vec(v, w->base + i);
        w->ids[i] = put(w->s, 1, w->base + i, v, 100, 0, 100);
    }
    hnsw_thread_release();
    return NULL;
}

static void *cw_reader(void *arg)
{
    struct cw *r = arg;
    float v[DIM], sim;

    for (int i = 0; i < 2 * CW_EACH; i++) {
        cw_vec(v, i);
        store_entry_unref(get_sem(r->s, 1, v, 0.5f, &sim));
    }
    hnsw_thread_release();
    return NULL;
}

static void test_concurrent_put(void **state)
{
    struct store *s = mk(64 << 20, 8);
    struct cw w[2] = {{.s = s, .base = 0}, {.s = s, .base = CW_EACH}}, r[2] = {{.s = s}, {.s = s}};
    pthread_t th[4];
    struct store_stats st;
    float v[DIM], sim;

    (void)state;
    for (int t = 0; t < 2; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, cw_writer, &w[t]), 0);
        assert_int_equal(pthread_create(&th[2 + t], NULL, cw_reader, &r[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.entries, 2 * CW_EACH);
    assert_int_equal(st.indexed_partitions, 1);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < CW_EACH; i++) {
            cw_vec(v, w[t].base + i);
            struct store_entry *e = get_sem(s, 1, v, 0.999f, &sim);
            assert_non_null(e);
            assert_int_equal(store_entry_id(e), w[t].ids[i]);
            store_entry_unref(e);
        }
    }
    store_free(s);
}

/* A semantic miss says how similar its farthest candidate was when the
 * partition held a full set of candidates (an entry less similar would
 * not have been one), and -1 when it held fewer. */
static void test_last_candidate(void **state)
{
    struct store *s = mk(64 << 20, 256);
    uint8_t pk[STORE_KEY_LEN];
    float v[DIM], q[DIM], last = 0, score;
    struct store_query sq = {.partition = pk,
                             .vec = q,
                             .threshold = 2.0f, /* nothing is a hit */
                             .max_age = -1,
                             .candidates = 4,
                             .last_sim = &last};

    (void)state;
    key(pk, 1);
    vec(q, 0, 0, 0.0f);
    /* Tilted ever further from q: the 4th nearest is i = 3. */
    for (int i = 0; i < 3; i++) {
        vec(v, 0, 1, 0.1f * (float)(i + 1));
        put(s, 1, i, v, 100, 0, 100);
    }
    assert_null(store_get_semantic(s, &sq, &score));
    assert_true(last == -1.0f);
    for (int i = 3; i < 6; i++) {
        vec(v, 0, 1, 0.1f * (float)(i + 1));
        put(s, 1, i, v, 100, 0, 100);
    }
    assert_null(store_get_semantic(s, &sq, &score));
    vec(v, 0, 1, 0.4f);
    assert_float_equal(last, hnsw_dot(q, v, DIM), 1e-6);
    store_free(s);
}

static void test_map_churn(void **state)
{
    struct map m;
    uint8_t k[MAP_KEY_LEN];
    void *old;

    (void)state;
    map_init(&m);
    for (uintptr_t i = 1; i <= 5000; i++) {
        map_id_key(i, k);
        assert_int_equal(map_put(&m, k, (void *)i, &old), 0);
        assert_null(old);
    }
    for (uintptr_t i = 1; i <= 5000; i += 2) {
        map_id_key(i, k);
        assert_ptr_equal(map_del(&m, k), (void *)i);
    }
    for (uintptr_t i = 1; i <= 5000; i++) {
        map_id_key(i, k);
        if (i % 2)
            assert_null(map_get(&m, k));
        else
            assert_ptr_equal(map_get(&m, k), (void *)i);
    }
    assert_int_equal(m.count, 2500);
    map_fini(&m);
}

/* The lexical score: entries with the same vector are told apart by their
 * words, weighed by the partition's own counts, which follow deletes. */
static struct store_entry *get_text(struct store *s, const float *v, const char *text, float *score)
{
    return query(s, 1, v, text, 0.1f, 100, 16, score);
}

static void test_lexical_score(void **state)
{
    struct store_opts o = {
        .dim = DIM, .max_memory = 1 << 20, .exact_scan_max = 4, .lexical_weight = 0.5f};
    static const char *texts[] = {"how do i reset my password", "how do i change my email",
                                  "what is my balance",         "where is my card",
                                  "how do i close my account",  "when is my bill due"};
    struct store_stats st;
    struct store *s = NULL;
    struct store_entry *e;
    uint64_t ids[6];
    float v[DIM], score = 0;

    (void)state;
    o.payload_free = payload_free;
    assert_int_equal(store_new(&o, &s), 0);
    vec(v, 1, 2, 0.1f);
    /* Six entries (more than exact_scan_max: indexed), one vector. */
    for (int i = 0; i < 6; i++)
        ids[i] = put_text(s, 1, i, v, texts[i], 100, 0, 8);
    e = get_text(s, v, "reset my password please", &score);
    assert_non_null(e);
    assert_int_equal(store_entry_id(e), ids[0]);
    /* Half the vector's 1.0, half a lexical cosine below 1. */
    assert_true(score > 0.5f + 1e-3f && score < 1.0f - 1e-3f);
    store_entry_unref(e);
    e = get_text(s, v, "how do i change my email address", &score);
    assert_int_equal(store_entry_id(e), ids[1]);
    store_entry_unref(e);
    /* No text: the vector alone. */
    e = get_text(s, v, NULL, &score);
    assert_non_null(e);
    assert_float_equal(score, 1.0f, 1e-5);
    store_entry_unref(e);
    /* Without the password entry its words are unknown: the best is what
     * "how do i" and "my" still match, at a lower score. */
    assert_int_equal(store_delete(s, ids[0]), 0);
    e = get_text(s, v, "how do i reset my password", &score);
    assert_non_null(e);
    assert_true(store_entry_id(e) == ids[1] || store_entry_id(e) == ids[4]);
    assert_true(score < 0.9f);
    store_entry_unref(e);
    /* The counts' memory is accounted and given back. */
    for (int i = 1; i < 6; i++)
        assert_int_equal(store_delete(s, ids[i]), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.memory, 0);
    store_free(s);
}

/* Six texts, one vector, into partition 1: entry i in group i % 3, or all
 * in group 0. */
static void put_groups(struct store *s, bool grouped, uint64_t *ids)
{
    static const char *texts[] = {"how do i reset my password", "how do i change my email",
                                  "what is my balance",         "where is my card",
                                  "how do i close my account",  "when is my bill due"};
    uint8_t pk[STORE_KEY_LEN], ek[STORE_KEY_LEN];
    float v[DIM];

    vec(v, 1, 2, 0.1f);
    key(pk, 1);
    for (int i = 0; i < 6; i++) {
        struct store_put_args a = {.partition = pk,
                                   .group = grouped ? (uint64_t)(i % 3) : 0,
                                   .exact = ek,
                                   .vec = v,
                                   .text = texts[i],
                                   .payload = malloc(8),
                                   .payload_size = 8,
                                   .cost = 1,
                                   .now = 100};
        key(ek, i + 1000);
        assert_int_equal(store_put(s, &a, &ids[i]), 0);
    }
}

static struct store_entry *in_group(struct store *s, uint64_t group, const char *text, float *score)
{
    uint8_t pk[STORE_KEY_LEN];
    float v[DIM];

    vec(v, 1, 2, 0.1f);
    key(pk, 1);
    struct store_query q = {.partition = pk,
                            .group = group,
                            .vec = v,
                            .text = text,
                            .text_len = strlen(text),
                            .threshold = 0.1f,
                            .now = 100,
                            .max_age = -1,
                            .candidates = 16};
    return store_get_semantic(s, &q, score);
}

/* A lookup searches its own group of the partition; a word weighs what it
 * weighs in the whole partition, whatever the group; the stats count
 * partitions, and a group goes with its last entry, the partition with its
 * last group. */
static void test_groups(void **state)
{
    struct store_opts o = {.dim = DIM,
                           .max_memory = 1 << 20,
                           .exact_scan_max = 4,
                           .lexical_weight = 0.5f,
                           .payload_free = payload_free};
    struct store *s = NULL, *flat = NULL;
    struct store_entry_info info;
    struct store_stats st;
    struct store_entry *e, *f;
    uint64_t ids[6], flat_ids[6];
    uint8_t pk[STORE_KEY_LEN];
    float score = 0, flat_score = 0;

    (void)state;
    assert_int_equal(store_new(&o, &s), 0);
    assert_int_equal(store_new(&o, &flat), 0);
    put_groups(s, true, ids);
    put_groups(flat, false, flat_ids);
    store_get_stats(s, &st);
    assert_int_equal(st.partitions, 1);
    assert_int_equal(st.entries, 6);
    /* Group 0 holds entries 0 and 3: the same best as among all six, at the
     * same score to the bit. */
    e = in_group(s, 0, "reset my password please", &score);
    f = in_group(flat, 0, "reset my password please", &flat_score);
    assert_non_null(e);
    assert_non_null(f);
    assert_int_equal(store_entry_id(e), ids[0]);
    assert_int_equal(store_entry_id(f), flat_ids[0]);
    assert_memory_equal(&score, &flat_score, sizeof(score));
    store_entry_describe(e, &info);
    key(pk, 1);
    assert_memory_equal(info.partition, pk, STORE_KEY_LEN);
    store_entry_unref(e);
    store_entry_unref(f);
    /* Group 1 holds entries 1 and 4; group 5 none. */
    e = in_group(s, 1, "reset my password please", &score);
    assert_non_null(e);
    assert_true(store_entry_id(e) == ids[1] || store_entry_id(e) == ids[4]);
    store_entry_unref(e);
    assert_null(in_group(s, 5, "reset my password please", &score));
    /* Group 0 emptied: group 2 still finds its own, and the partition stays. */
    assert_int_equal(store_delete(s, ids[0]), 0);
    assert_int_equal(store_delete(s, ids[3]), 0);
    assert_null(in_group(s, 0, "reset my password please", &score));
    e = in_group(s, 2, "what is my balance", &score);
    assert_non_null(e);
    assert_int_equal(store_entry_id(e), ids[2]);
    store_entry_unref(e);
    store_get_stats(s, &st);
    assert_int_equal(st.partitions, 1);
    for (int i = 0; i < 6; i++)
        if (i % 3)
            assert_int_equal(store_delete(s, ids[i]), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.partitions, 0);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.memory, 0);
    store_free(s);
    store_free(flat);
}

/* A partition whose own entries all leave while a group lives drops its
 * index at once, and the memory goes back. */
static void test_group_outlives_index(void **state)
{
    struct store *s = mk(1 << 20, 4);
    struct store_stats st;
    uint8_t pk[STORE_KEY_LEN], ek[STORE_KEY_LEN];
    uint64_t ids[7];
    float v[DIM], sim;

    (void)state;
    key(pk, 1);
    for (int i = 0; i < 7; i++) {
        vec(v, i, i + 1, 0.2f);
        key(ek, i + 1000);
        struct store_put_args a = {.partition = pk,
                                   .group = i == 6 ? 7 : 0,
                                   .exact = ek,
                                   .vec = v,
                                   .payload = malloc(8),
                                   .payload_size = 8,
                                   .cost = 1,
                                   .now = 100};
        assert_int_equal(store_put(s, &a, &ids[i]), 0);
    }
    store_get_stats(s, &st);
    assert_int_equal(st.indexed_partitions, 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(store_delete(s, ids[i]), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.partitions, 1);
    assert_int_equal(st.indexed_partitions, 0);
    vec(v, 6, 7, 0.2f);
    struct store_query q = {.partition = pk,
                            .group = 7,
                            .vec = v,
                            .threshold = 0.5f,
                            .now = 100,
                            .max_age = -1,
                            .candidates = 4};
    struct store_entry *e = store_get_semantic(s, &q, &sim);
    assert_non_null(e);
    assert_int_equal(store_entry_id(e), ids[6]);
    store_entry_unref(e);
    assert_int_equal(store_delete(s, ids[6]), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.partitions, 0);
    assert_int_equal(st.memory, 0);
    store_free(s);
}

/* Ids are shown to clients: never a counter (two consecutive stores must not
 * reveal how many others came between), never 0, never a taken one. */
static void test_ids_random(void **state)
{
    enum { N = 64 };
    struct store *s = mk(1 << 20, 8);
    float v[DIM];
    uint64_t ids[N];
    int near = 0;

    (void)state;
    vec(v, 0, 1, 0.1f);
    for (int i = 0; i < N; i++) {
        ids[i] = put(s, 1, i, v, 100, 0, 100);
        assert_true(ids[i] != 0);
        for (int j = 0; j < i; j++) {
            assert_true(ids[i] != ids[j]);
            /* 64 random bits: two within 2^32 of each other is a 1 in 2^31 event. */
            near += (ids[i] > ids[j] ? ids[i] - ids[j] : ids[j] - ids[i]) < (UINT64_C(1) << 32);
        }
    }
    assert_int_equal(near, 0);
    store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_semantic),
        cmocka_unit_test(test_ttl_and_max_age),
        cmocka_unit_test(test_replace_same_exact_key),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_partition_index),
        cmocka_unit_test(test_concurrent_put),
        cmocka_unit_test(test_last_candidate),
        cmocka_unit_test(test_map_churn),
        cmocka_unit_test(test_scan_and_remove),
        cmocka_unit_test(test_lexical_score),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_group_outlives_index),
        cmocka_unit_test(test_ids_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
