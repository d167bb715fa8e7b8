/* restart_bench.c - how long a restart of the cache takes with a snapshot,
 * against rebuilding the index from scratch.
 *
 *   make build/bench/restart_bench && build/bench/restart_bench DIR [ENTRIES [PARTITIONS [TAIL]]]
 *
 * Through cache/cache.h, the way parrot restarts. Stores ENTRIES (default
 * 100000) random unit vectors of the builtin embedder's dimension spread
 * over PARTITIONS (default 4) partitions, each far past the 256-entry scan
 * limit, so each has its own HNSW graph, and writes a snapshot
 * (cache_snapshot) covering them. Then it measures:
 *   snapshot_load_s    cache_open of a fresh cache: the snapshot, no log;
 *   restart_s          cache_open again after TAIL (default 1000) more
 *                      entries went to the log only (their lookup text is
 *                      embedded again on replay, as in a real restart);
 *   wal_tail_replay_s  the difference.
 * The snapshot's graphs must be adopted as they are: graphs_rebuilt must
 * print 0. For comparison, build_s is what the restart would cost without
 * a snapshot (every entry inserted again, graphs built from scratch;
 * embedding time not included).
 *
 * Output: one "key value" line per number.
 */
#include "cache/base/buf.h"
#include "cache/cache.h"
#include "cache/match/embed.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIM 384 /* the builtin embedder's, without word vectors */
#define NOW 1   /* wall clock ms of every put: nothing expires */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Entry k's vector, malloc'd: deterministic and unit length. */
static float *vec_of(uint64_t k)
{
    uint64_t st = k * 7919 + 1;
    float *v = malloc(sizeof(float) * DIM);
    double n = 0;

    if (!v)
        exit(1);
    for (unsigned i = 0; i < DIM; i++) {
        v[i] = (float)((double)(splitmix(&st) >> 11) * 0x1p-53 - 0.5);
        n += (double)v[i] * v[i];
    }
    for (unsigned i = 0; i < DIM; i++)
        v[i] = (float)(v[i] / sqrt(n));
    return v;
}

/* ---- the payload: the entry's number as a string ---- */

static int str_encode(const void *payload, uint64_t words[2], struct buf *tail)
{
    words[0] = words[1] = 0;
    return buf_puts(tail, payload, SIZE_MAX);
}

static int str_decode(const uint64_t words[2], const void *tail, size_t len, void **payload)
{
    char *s = malloc(len + 1);

    (void)words;
    if (!s)
        return -ENOMEM;
    memcpy(s, tail, len);
    s[len] = '\0';
    *payload = s;
    return 0;
}

static size_t str_size(const void *payload)
{
    return strlen(payload);
}

static bool str_reusable(const void *payload)
{
    (void)payload;
    return true;
}

static const struct cache_codec codec = {str_encode, str_decode, free, str_size, str_reusable};

/* A fresh cache that never evicts, and takes no timed or shutdown
 * snapshots: the bench decides when one is written. */
static struct cache *mkcache(void)
{
    struct cache_opts o = {.codec = &codec,
                           .embedder_name = "builtin",
                           .threshold = 0.5f,
                           .max_memory = (size_t)8 << 30};
    struct cache *c = NULL;

    if (embed_builtin_new(&o.emb) != 0 || embedder_dim(o.emb) != DIM || cache_new(&o, &c) != 0)
        exit(1);
    return c;
}

/* A fresh cache opened on dir; the seconds it took in *took. */
static struct cache *reopen(const char *dir, double *took)
{
    struct cache *c = mkcache();
    char msg[1200];
    double t0 = now_s();

    if (cache_open(c, dir, "off", NOW, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "%s\n", msg);
        exit(1);
    }
    *took = now_s() - t0;
    return c;
}

/* Entry k: partition k % parts, exact key k, payload "k"; with its random
 * vector, or (text) with its number as the lookup text, embedded. */
static int put(struct cache *c, uint64_t k, unsigned parts, bool text)
{
    uint8_t part[CACHE_KEY_LEN] = {0}, exact[CACHE_KEY_LEN] = {0};
    struct cache_query q = {.partition = part, .exact = exact, .max_age = -1};
    char s[32];
    uint64_t seq;
    int rc;

    part[0] = (uint8_t)(k % parts + 1);
    memcpy(exact, &k, sizeof(k));
    snprintf(s, sizeof(s), "entry %llu", (unsigned long long)k);
    if (text) {
        q.text = s;
        q.text_len = strlen(s);
    } else {
        q.vec = vec_of(k); /* freed by cache_query_fini */
        q.vec_done = true;
    }
    rc = cache_put(c, &q, strdup(s), 1, 0, NOW, &seq);
    cache_query_fini(&q);
    return rc;
}

static void remove_files(const char *dir)
{
    const char *names[] = {"wal.log", "snapshot.bin"};
    char path[1024];

    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL;
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    unsigned parts = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
    uint64_t tail = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
    struct cache *c;
    struct cache_stats st;
    double t0, t1, load_s, restart_s;
    char msg[1200];

    if (!dir || parts == 0 || n == 0) {
        fprintf(stderr, "usage: %s DIR [ENTRIES [PARTITIONS [TAIL]]]\n", argv[0]);
        return 2;
    }
    remove_files(dir);
    c = reopen(dir, &t0);

    t0 = now_s();
    for (uint64_t k = 0; k < n; k++)
        if (put(c, k, parts, false) != 0)
            return 1;
    t1 = now_s();
    printf("entries %llu\npartitions %u\ndim %d\n", (unsigned long long)n, parts, DIM);
    printf("build_s %.3f\n", t1 - t0);

    t0 = now_s();
    if (cache_snapshot(c, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    t1 = now_s();
    cache_get_stats(c, &st);
    printf("snapshot_write_s %.3f\nsnapshot_bytes %llu\n", t1 - t0,
           (unsigned long long)st.snap_last_bytes);
    cache_free(c);

    c = reopen(dir, &load_s);
    for (uint64_t k = n; k < n + tail; k++)
        if (put(c, k, parts, true) != 0)
            return 1;
    cache_free(c); /* the log flushed; no shutdown snapshot */

    c = reopen(dir, &restart_s);
    cache_get_stats(c, &st);
    printf("snapshot_load_s %.3f\nwal_tail_records %llu\nwal_tail_replay_s %.3f\n", load_s,
           (unsigned long long)tail, restart_s - load_s);
    printf("restart_s %.3f\nloaded_entries %zu\ngraphs_loaded %llu\ngraphs_rebuilt %llu\n",
           restart_s, st.entries, (unsigned long long)st.loaded_graphs,
           (unsigned long long)st.rebuilt_graphs);
    cache_free(c);
    return st.entries == n + tail && st.rebuilt_graphs == 0 ? 0 : 1;
}
