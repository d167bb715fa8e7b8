/* hnsw_bench.c - parrot's HNSW on the data ../shared/bench/hnswlib_bench.py
 * indexes, with the peer's parameters and measurements, for a ratio in one run.
 *
 *   /usr/bin/python3 bench/hnsw_data.py N DIR && build/bench/hnsw_bench DIR N
 *
 * Build: N inserts on one thread with M 16 and ef_construction 200 (the
 * peer's settings); reported as inserts per second and the growth of the
 * resident set (what the peer reports), plus hnsw_memory(). Queries: for each
 * ef and each query set (random, near-duplicate), the 1000 queries one after
 * another on one thread, top 10; QPS, recall@1 and recall@10 against the
 * brute-force truth the data script wrote, and per-query latency p50/p99.
 * Output lines have the peer's shape so bench/run.sh can read both alike.
 */
#include "cache/index/hnsw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D  384u
#define NQ 1000u
#define K  10u

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double rss_mib(void)
{
    char line[256];
    double kib = 0;
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %lf", &kib) == 1)
            break;
    fclose(f);
    return kib / 1024;
}

/* Read exactly n elements of size sz from DIR/name into a new buffer. */
static void *load(const char *dir, const char *name, size_t sz, size_t n)
{
    char path[4096];
    void *p = malloc(sz * n);
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!p || !f || fread(p, sz, n, f) != n || fgetc(f) != EOF) {
        fprintf(stderr, "hnsw_bench: %s: missing or not %zu x %zu bytes\n", path, n, sz);
        exit(1);
    }
    fclose(f);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void run(const struct hnsw *h, unsigned ef, const char *name, const float *q,
                const int32_t *truth)
{
    static double lat[NQ];
    struct hnsw_hit hits[K];
    size_t at1 = 0, at10 = 0;
    double t0 = now_s();

    for (unsigned i = 0; i < NQ; i++) {
        double t = now_s();
        size_t got = hnsw_search(h, q + (size_t)i * D, K, ef, hits);

        lat[i] = now_s() - t;
        if (got > 0 && hits[0].id == (uint64_t)truth[i * K])
            at1++;
        for (size_t j = 0; j < got; j++)
            for (unsigned t10 = 0; t10 < K; t10++)
                if (hits[j].id == (uint64_t)truth[i * K + t10])
                    at10++;
    }
    double secs = now_s() - t0;

    qsort(lat, NQ, sizeof(lat[0]), cmp_double);
    printf("ef=%4u %-8s batchQPS(1thr)=%8.0f recall@1=%.3f recall@10=%.3f per-call p50=%.0fus "
           "p99=%.0fus\n",
           ef, name, NQ / secs, (double)at1 / NQ, (double)at10 / (NQ * K), lat[NQ / 2] * 1e6,
           lat[NQ * 99 / 100] * 1e6);
}

int main(int argc, char **argv)
{
    static const unsigned efs[] = {16, 32, 64, 128, 256};
    struct hnsw_opts o;
    struct hnsw *h;
    size_t n;

    if (argc != 3 || (n = strtoul(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "usage: %s DIR N   (DIR written by bench/hnsw_data.py N DIR)\n", argv[0]);
        return 2;
    }
    float *x = load(argv[1], "X.f32", sizeof(float), n * D);
    float *q = load(argv[1], "Q.f32", sizeof(float), (size_t)NQ * D);
    float *qn = load(argv[1], "QN.f32", sizeof(float), (size_t)NQ * D);
    int32_t *g = load(argv[1], "G.i32", sizeof(int32_t), (size_t)NQ * K);
    int32_t *gn = load(argv[1], "GN.i32", sizeof(int32_t), (size_t)NQ * K);

    hnsw_opts_default(&o, D);
    o.m = 16;
    o.ef_construction = 200;
    o.seed = 100;
    if (hnsw_new(&o, &h) != 0) {
        fprintf(stderr, "hnsw_bench: hnsw_new failed\n");
        return 1;
    }
    double r0 = rss_mib(), t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if (hnsw_insert(h, i, x + i * D) != 0) {
            fprintf(stderr, "hnsw_bench: insert %zu failed\n", i);
            return 1;
        }
    double secs = now_s() - t0;
    printf("N=%zu D=%u\n", n, D);
    printf("BUILD threads=1: %.1fs = %.0f inserts/s ; index RSS delta %.0f MiB (hnsw_memory %.0f "
           "MiB)\n",
           secs, n / secs, rss_mib() - r0, hnsw_memory(h) / 1048576.0);
    for (size_t i = 0; i < sizeof(efs) / sizeof(efs[0]); i++) {
        run(h, efs[i], "random", q, g);
        run(h, efs[i], "near-dup", qn, gn);
    }
    hnsw_free(h);
    free(x);
    free(q);
    free(qn);
    free(g);
    free(gn);
    return 0;
}
