/* insert_bench.c - what an HNSW insert costs at several ef_construction
 * values, and the recall each buys, on the vectors the builtin embedder
 * makes of real questions: the shape of a cache partition (issue #21).
 *
 *   build/bench/insert_bench DATASETS WORD-VECTORS N EFC...
 *   build/bench/insert_bench --last DIR EFC
 *
 * DATASETS is ../shared/datasets: the questions of qqp (both sides),
 * clinc150, hwu64-dev and banking77, without repeats, in a fixed shuffled
 * order. The index holds N of them; the queries are 1000 other questions
 * (random) and the other side of 1000 qqp duplicate pairs whose first side
 * is indexed (paraphrases). DATASETS "unique" indexes bench/http.sh's
 * real-miss questions instead ("Tell me fact number 1-K about rivers."),
 * the partition of near-identical vectors that scenario fills (queries:
 * 1000 more of them, and none of the second kind).
 *
 * For each EFC, in turn: N inserts on one thread (M 16, the store's) into
 * a new index, timed, the last 1000 apart; then recall@1 and recall@10 of
 * hnsw_search (k 16, as a lookup asks) at ef 32, 64 (the lookups' ef) and
 * 128, against brute force. With INSERT_BENCH_KEEP=DIR set, it also writes
 * each graph as it was before the last 1000 inserts (DIR/graph-EFC) and
 * those 1000 vectors (DIR/last), for the second form: it loads them and
 * runs the 1000 inserts between CALLGRIND_START_ and
 * CALLGRIND_STOP_INSTRUMENTATION, so that under
 *   valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=F
 * F's total is the instructions of 1000 inserts into a partition of about
 * N (building the graph under valgrind would take hours).
 */
#include "cache/base/map.h"
#include "cache/base/sha256.h"
#include "cache/index/hnsw.h"
#include "cache/match/embed.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* valgrind's client requests (Debian's valgrind package); without its
 * header the second form counts everything it runs. */
#if defined(__has_include) && __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#define NQ       1000u
#define K        10u
#define SEARCH_K 16u
#define LAST     1000u /* inserts counted under callgrind */

struct texts {
    char **s;
    size_t n, cap;
    struct map seen; /* sha256 of a text -> itself */
};

/* Add t (copied) unless it is there already; returns its copy or the one
 * kept before. Exits when memory runs out (a bench). */
static const char *add(struct texts *t, const char *s)
{
    uint8_t h[SHA256_LEN];
    void *old;
    char *c;

    sha256(s, strlen(s), h);
    if ((c = map_get(&t->seen, h)))
        return c;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->s = realloc(t->s, t->cap * sizeof(*t->s));
    }
    c = strdup(s);
    if (!t->s || !c || map_put(&t->seen, h, c, &old) != 0) {
        fprintf(stderr, "insert_bench: out of memory\n");
        exit(1);
    }
    t->s[t->n++] = c;
    return c;
}

static FILE *open_in(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "r"))) {
        fprintf(stderr, "insert_bench: cannot read %s\n", path);
        exit(1);
    }
    return f;
}

/* The "text" of every line of a JSON-lines file. */
static void read_jsonl(struct texts *t, const char *dir, const char *name)
{
    FILE *f = open_in(dir, name);
    char *line = NULL;
    size_t cap = 0;

    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "text"));
        if (s)
            add(t, s);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

/* The first field of every record of a CSV file but its header (fields may
 * be quoted, with "" for a quote; banking77's have no line breaks). */
static void read_csv(struct texts *t, const char *dir, const char *name)
{
    FILE *f = open_in(dir, name);
    char *line = NULL, *out = NULL;
    size_t cap = 0;
    ssize_t len;
    bool header = true;

    while ((len = getline(&line, &cap, f)) > 0) {
        size_t o = 0;
        const char *p = line;

        out = realloc(out, (size_t)len + 1);
        if (!out)
            exit(1);
        if (*p == '"') {
            for (p++; *p && !(p[0] == '"' && p[1] != '"'); p++) {
                if (p[0] == '"')
                    p++;
                out[o++] = *p;
            }
        } else {
            while (*p && *p != ',' && *p != '\n')
                out[o++] = *p++;
        }
        out[o] = '\0';
        if (!header && o > 0)
            add(t, out);
        header = false;
    }
    free(out);
    free(line);
    fclose(f);
}

/* splitmix64: a fixed shuffle, the same on every run. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void shuffle(char **a, size_t n, uint64_t *seed)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = next(seed) % i;
        char *x = a[i - 1];
        a[i - 1] = a[j];
        a[j] = x;
    }
}

/* Whether s is in t already. */
static bool has(const struct texts *t, const char *s)
{
    uint8_t h[SHA256_LEN];

    sha256(s, strlen(s), h);
    return map_get(&t->seen, h) != NULL;
}

/* Every question, without repeats (x: the first n are indexed, the next NQ
 * are the random queries), and the paraphrase queries (*qn, *nqn of them):
 * the second sides of qqp duplicate pairs whose first side is indexed. */
static void load_questions(const char *dir, size_t n, char ***x, char ***qn, size_t *nqn)
{
    static const char *const jsonl[] = {"clinc150/train.jsonl",     "clinc150/val.jsonl",
                                        "clinc150/oos_train.jsonl", "clinc150/oos_val.jsonl",
                                        "hwu64-dev/train.jsonl",    "hwu64-dev/test.jsonl"};
    struct texts all = {0}, pairs = {0};
    char *line = NULL;
    size_t cap = 0, nfirst;
    uint64_t seed = 21;

    map_init(&all.seen);
    map_init(&pairs.seen);
    /* Two passes over qqp: the pairs, then every question not a pair's
     * second side. */
    for (int pass = 0; pass < 2; pass++) {
        FILE *f = open_in(dir, "qqp/dev.jsonl");

        while (getline(&line, &cap, f) > 0) {
            cJSON *o = cJSON_Parse(line);
            const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "a"));
            const char *b = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "b"));

            if (a && b && pass == 0) {
                if (pairs.n < NQ &&
                    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "duplicate")) == 1 &&
                    strcmp(a, b) != 0 && !has(&all, a) && !has(&all, b) && !has(&pairs, a) &&
                    !has(&pairs, b)) {
                    add(&all, a);
                    add(&pairs, b);
                }
            } else if (a && b) {
                if (!has(&pairs, a))
                    add(&all, a);
                if (!has(&pairs, b))
                    add(&all, b);
            }
            cJSON_Delete(o);
        }
        fclose(f);
    }
    free(line);
    nfirst = pairs.n;
    for (size_t i = 0; i < sizeof(jsonl) / sizeof(jsonl[0]); i++)
        read_jsonl(&all, dir, jsonl[i]);
    read_csv(&all, dir, "banking77/train.csv");
    read_csv(&all, dir, "banking77/test.csv");
    if (all.n < n + NQ || n < nfirst) {
        fprintf(stderr, "insert_bench: %zu questions, %zu needed\n", all.n, n + NQ);
        exit(1);
    }
    /* The pairs' first sides stay among the first n, which are shuffled
     * again so that they are not inserted first. */
    shuffle(all.s + nfirst, all.n - nfirst, &seed);
    shuffle(all.s, n, &seed);
    *x = all.s;
    *qn = pairs.s;
    *nqn = pairs.n;
}

/* bench/http.sh's real-miss questions (post_unique.lua, one thread). */
static char **unique_questions(size_t n)
{
    char **s = malloc(n * sizeof(*s));

    for (size_t i = 0; s && i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "Tell me fact number 1-%zu about rivers.", i + 1);
        if (!(s[i] = strdup(buf)))
            exit(1);
    }
    if (!s)
        exit(1);
    return s;
}

static float *embed_all(const struct embedder *e, char **s, size_t n)
{
    unsigned d = embedder_dim(e);
    float *v = calloc(n ? n * d : 1, sizeof(float));

    if (!v)
        exit(1);
    for (size_t i = 0; i < n; i++)
        if (embedder_embed(e, s[i], strlen(s[i]), v + i * d) != 0)
            v[i * d] = 1; /* nothing to embed: any unit vector */
    return v;
}

/* The K best of x[0..n) for each query, by brute force. */
static uint32_t *truth(const float *x, size_t n, const float *q, size_t nq, unsigned d)
{
    uint32_t *g = malloc(nq * K * sizeof(*g));

    if (!g)
        exit(1);
    for (size_t i = 0; i < nq; i++) {
        float best[K];
        size_t m = 0;

        for (size_t j = 0; j < n; j++) {
            float s = hnsw_dot(q + i * d, x + j * d, d);
            size_t k;
            if (m == K && s <= best[K - 1])
                continue;
            for (k = m < K ? m++ : K - 1; k > 0 && best[k - 1] < s; k--) {
                best[k] = best[k - 1];
                g[i * K + k] = g[i * K + k - 1];
            }
            best[k] = s;
            g[i * K + k] = (uint32_t)j;
        }
    }
    return g;
}

static void recall(const struct hnsw *h, unsigned ef, const char *name, const float *q, size_t nq,
                   const uint32_t *g, unsigned d)
{
    struct hnsw_hit hits[SEARCH_K];
    size_t at1 = 0, at10 = 0;

    for (size_t i = 0; i < nq; i++) {
        size_t got = hnsw_search(h, q + i * d, SEARCH_K, ef, hits);

        at1 += got > 0 && hits[0].id == g[i * K];
        for (size_t j = 0; j < got && j < K; j++)
            for (unsigned t = 0; t < K; t++)
                at10 += hits[j].id == g[i * K + t];
    }
    printf("  ef %3u %-11s recall@1 %.4f recall@10 %.4f\n", ef, name, (double)at1 / (double)nq,
           (double)at10 / (double)(nq * K));
}

static FILE *open_file(const char *dir, const char *name, unsigned efc, const char *mode)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), efc ? "%s/%s-%u" : "%s/%s", dir, name, efc);
    if (!(f = fopen(path, mode))) {
        fprintf(stderr, "insert_bench: cannot open %s\n", path);
        exit(1);
    }
    return f;
}

static int write_to(void *ud, const void *p, size_t n)
{
    return fwrite(p, 1, n, ud) == n ? 0 : -1;
}

static int read_from(void *ud, void *p, size_t n)
{
    return fread(p, 1, n, ud) == n ? 0 : -1;
}

/* The second form: the 1000 last inserts into a kept graph, counted. */
static int insert_last(const char *dir, unsigned efc)
{
    FILE *f = open_file(dir, "graph", efc, "rb");
    struct hnsw *h;
    uint32_t d;
    float *v;
    size_t n;

    if (hnsw_load(read_from, f, UINT64_MAX, &h) != 0) {
        fprintf(stderr, "insert_bench: %s/graph-%u is not a graph\n", dir, efc);
        return 1;
    }
    fclose(f);
    f = open_file(dir, "last", 0, "rb");
    if (fread(&d, sizeof(d), 1, f) != 1 || d != hnsw_dim(h) ||
        !(v = malloc((size_t)LAST * d * sizeof(float))) ||
        fread(v, sizeof(float) * d, LAST, f) != LAST) {
        fprintf(stderr, "insert_bench: %s/last does not match the graph\n", dir);
        return 1;
    }
    fclose(f);
    n = hnsw_count(h);
    CALLGRIND_START_INSTRUMENTATION;
    for (size_t i = 0; i < LAST; i++)
        if (hnsw_insert(h, n + i, v + i * d) != 0)
            return 1;
    CALLGRIND_STOP_INSTRUMENTATION;
    printf("efc %u: %u inserts after %zu\n", efc, LAST, n);
    hnsw_free(h);
    free(v);
    return 0;
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct embed_builtin_opts eo = {0};
    struct embedder *e;
    char **x, **q, **qn = NULL;
    size_t n, nqn = 0;
    float *xv, *qv, *qnv;
    uint32_t *g, *gn;
    const char *keep = getenv("INSERT_BENCH_KEEP");
    unsigned d;

    if (argc == 4 && strcmp(argv[1], "--last") == 0)
        return insert_last(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
    if (argc < 5 || (n = strtoul(argv[3], NULL, 10)) < LAST) {
        fprintf(stderr,
                "usage: %s DATASETS|unique WORD-VECTORS N EFC...  (N >= %u)\n"
                "       %s --last DIR EFC\n",
                argv[0], LAST, argv[0]);
        return 2;
    }
    eo.word_vectors = argv[2];
    if (embed_builtin_new_opts(&eo, &e) != 0) {
        fprintf(stderr, "insert_bench: cannot load %s\n", argv[2]);
        return 1;
    }
    d = embedder_dim(e);
    if (strcmp(argv[1], "unique") == 0) {
        x = unique_questions(n + NQ);
        q = x + n;
    } else {
        load_questions(argv[1], n, &x, &qn, &nqn);
        q = x + n;
    }
    xv = embed_all(e, x, n);
    qv = embed_all(e, q, NQ);
    qnv = embed_all(e, qn, nqn);
    g = truth(xv, n, qv, NQ, d);
    gn = truth(xv, n, qnv, nqn, d);
    if (keep) {
        FILE *f = open_file(keep, "last", 0, "wb");
        if (fwrite(&d, sizeof(d), 1, f) != 1 ||
            fwrite(xv + (n - LAST) * d, sizeof(float) * d, LAST, f) != LAST || fclose(f) != 0)
            return 1;
    }
    printf("%s: N=%zu D=%u M=16, %u random queries, %zu paraphrases\n", argv[1], n, d, NQ, nqn);
    for (int a = 4; a < argc; a++) {
        struct hnsw_opts o;
        struct hnsw *h;
        double t0, t1 = 0, t2;

        hnsw_opts_default(&o, d);
        o.ef_construction = (unsigned)strtoul(argv[a], NULL, 10);
        o.seed = 21;
        if (hnsw_new(&o, &h) != 0)
            return 1;
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            if (i == n - LAST) {
                if (keep) {
                    FILE *f = open_file(keep, "graph", o.ef_construction, "wb");
                    if (hnsw_save(h, write_to, f) != 0 || fclose(f) != 0)
                        return 1;
                }
                t1 = now_s();
            }
            if (hnsw_insert(h, i, xv + i * d) != 0)
                return 1;
        }
        t2 = now_s();
        printf("efc %u: %.1f s = %.0f inserts/s; the last %u at %.0f us each\n", o.ef_construction,
               t2 - t0, (double)n / (t2 - t0), LAST, (t2 - t1) / LAST * 1e6);
        for (unsigned ef = 32; ef <= 128; ef *= 2) {
            recall(h, ef, "random", qv, NQ, g, d);
            if (nqn)
                recall(h, ef, "paraphrase", qnv, nqn, gn, d);
        }
        fflush(stdout);
        hnsw_free(h);
    }
    embedder_free(e);
    return 0;
}
