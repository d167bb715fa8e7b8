/* restart_bench.c - how long a restart takes with a snapshot, against
 * rebuilding the index from the log.
 *
 *   make build/bench/restart_bench && build/bench/restart_bench DIR [ENTRIES [PARTITIONS [TAIL]]]
 *
 * Stores ENTRIES (default 100000) random unit 384-d vectors spread over
 * PARTITIONS (default 4) partitions, each far past the 256-entry scan limit,
 * so each has its own HNSW graph, the way the cache's store builds it. Then
 * writes a snapshot (cache/snapshot.c) covering them and TAIL (default 1000)
 * more entries to a write-ahead log, and measures a restart: snapshot load
 * plus replay of the log tail into a fresh store. The snapshot's graphs must
 * be adopted as they are: graphs_rebuilt must print 0. For comparison,
 * build_s is what the restart would cost without a snapshot (every entry
 * inserted again, graphs built from scratch; embedding time not included).
 *
 * Output: one "key value" line per number.
 */
#include "cache/persist/snapshot.h"
#include "cache/index/store.h"
#include "cache/persist/wal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIM 384

struct ctx {
    struct store *s;
    unsigned parts;
};

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

/* Entry k's vector: deterministic, so the log tail can be replayed from k. */
static void vec_of(uint64_t k, float *v)
{
    uint64_t st = k * 7919 + 1;
    double n = 0;

    for (unsigned i = 0; i < DIM; i++) {
        v[i] = (float)((double)(splitmix(&st) >> 11) * 0x1p-53 - 0.5);
        n += (double)v[i] * v[i];
    }
    for (unsigned i = 0; i < DIM; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

/* Entry k: partition k % parts, exact key k, payload "k". */
static int put(struct ctx *c, uint64_t k, uint64_t id, const float *vec)
{
    uint8_t part[STORE_KEY_LEN] = {0}, exact[STORE_KEY_LEN] = {0};
    char text[32];
    float v[DIM];
    uint64_t got;

    part[0] = (uint8_t)(k % c->parts + 1);
    memcpy(exact, &k, sizeof(k));
    snprintf(text, sizeof(text), "%llu", (unsigned long long)k);
    if (!vec) {
        vec_of(k, v);
        vec = v;
    }
    struct store_put_args a = {.partition = part,
                               .exact = exact,
                               .vec = vec,
                               .payload = strdup(text),
                               .payload_size = strlen(text),
                               .cost = 1,
                               .now = 1,
                               .id = id};
    return store_put(c->s, &a, &got);
}

static int encode(void *ud, const struct store_entry *e, const uint8_t *partition, struct buf *out)
{
    const char *p = store_entry_payload(e);

    (void)ud;
    (void)partition;
    return buf_append(out, p, strlen(p), SIZE_MAX);
}

static int restore(void *ud, uint64_t id, const float *vec, const void *rec, size_t len)
{
    char text[32];

    if (len >= sizeof(text))
        return -EBADMSG;
    memcpy(text, rec, len);
    text[len] = '\0';
    return put(ud, strtoull(text, NULL, 10), id, vec);
}

static int replay(uint8_t type, uint64_t seq, const void *p, size_t len, void *ud)
{
    uint64_t k;

    (void)type;
    (void)seq;
    if (len != sizeof(k))
        return -EBADMSG;
    memcpy(&k, p, sizeof(k));
    return put(ud, k, 0, NULL);
}

static struct store *mkstore(void)
{
    struct store_opts o = {
        .dim = DIM, .max_memory = (size_t)8 << 30, .exact_scan_max = 256, .payload_free = free};
    struct store *s = NULL;

    if (store_new(&o, &s) != 0)
        exit(1);
    return s;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL;
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    unsigned parts = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
    uint64_t tail = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
    struct ctx a = {mkstore(), parts}, b = {mkstore(), parts};
    struct snap_opts so = {.dir = dir, .dim = DIM};
    struct snap_codec codec = {encode, restore, &b};
    struct wal_opts wo = {.dir = dir, .policy = WAL_SYNC_OFF};
    struct snap_report rep;
    struct wal_report wrep;
    struct store_stats st;
    struct wal *w;
    double t0, t1;
    char path[1024];

    if (!dir || parts == 0 || n == 0) {
        fprintf(stderr, "usage: %s DIR [ENTRIES [PARTITIONS [TAIL]]]\n", argv[0]);
        return 2;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, WAL_DEFAULT_NAME);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s", dir, SNAP_NAME);
    unlink(path);

    t0 = now_s();
    for (uint64_t k = 0; k < n; k++)
        if (put(&a, k, 0, NULL) != 0)
            return 1;
    t1 = now_s();
    printf("entries %llu\npartitions %u\ndim %d\n", (unsigned long long)n, parts, DIM);
    printf("build_s %.3f\n", t1 - t0);

    if (wal_open(&wo, NULL, NULL, &wrep, &w) != 0)
        return 1;
    t0 = now_s();
    if (snap_write(&so, a.s, wal_last_seq(w), &codec, &rep) != 0) {
        fprintf(stderr, "%s\n", rep.message);
        return 1;
    }
    t1 = now_s();
    printf("snapshot_write_s %.3f\nsnapshot_bytes %llu\n", t1 - t0, (unsigned long long)rep.bytes);
    for (uint64_t k = n; k < n + tail; k++)
        if (wal_append(w, 1, &k, sizeof(k), NULL) != 0)
            return 1;
    if (wal_close(w) != 0)
        return 1;

    t0 = now_s();
    if (snap_load(&so, b.s, &codec, &rep) != 0) {
        fprintf(stderr, "%s\n", rep.message);
        return 1;
    }
    t1 = now_s();
    wo.min_seq = rep.wal_seq;
    if (wal_open(&wo, replay, &b, &wrep, &w) != 0) {
        fprintf(stderr, "%s\n", wrep.message);
        return 1;
    }
    double t2 = now_s();
    wal_close(w);
    store_get_stats(b.s, &st);
    printf("snapshot_load_s %.3f\nwal_tail_records %llu\nwal_tail_replay_s %.3f\n", t1 - t0,
           (unsigned long long)tail, t2 - t1);
    printf("restart_s %.3f\nloaded_entries %zu\ngraphs_loaded %llu\ngraphs_rebuilt %llu\n", t2 - t0,
           st.entries, (unsigned long long)(rep.graphs - rep.graphs_built),
           (unsigned long long)rep.graphs_built);
    store_free(a.s);
    store_free(b.s);
    return st.entries == n + tail && rep.graphs_built == 0 ? 0 : 1;
}
