/* wal_bench.c - durable inserts through cache/wal.c against the raw
 * group-commit bound of the same disk, in one run.
 *
 *   make build/bench/wal_bench && build/bench/wal_bench DIR [SECONDS [THREADS [BYTES [ROUNDS]]]]
 *
 * Durable section (defaults: 2 s, 50 threads, 1 KiB records, 5 rounds): every
 * thread appends a record and waits until it is durable before the next one.
 * Three contenders take turns, round after round, on the same directory (a
 * shared virtual disk's fsync speed drifts by 2x within a minute, so only
 * runs close in time compare):
 *   raw     leader/follower group commit straight on a file: the first waiter
 *           writes everything appended so far with one write() and
 *           fdatasync()s it while the others wait (the algorithm of
 *           ../shared/bench/fsyncbench.c's threaded mode: the bound);
 *   always  wal_append + wal_wait, policy always;
 *   batch   wal_append + wal_wait, policy batch.
 * Reported: records/s, latency p50/p99 (append to durable), syncs/s and
 * records per sync, and for each WAL policy the median over rounds of its
 * throughput divided by that round's raw throughput. The project's bar is 0.5.
 *
 * Async sections: 4 threads append without ever waiting (as the proxy does),
 * under each policy. Paced: 4000 records/s in all, a busy proxy's miss rate;
 * reported: syncs per second (the disk load the policy causes) and the
 * durability lag (how long a record waits to become durable, sampled every
 * millisecond). Flat out: as fast as the WAL accepts; reported: records/s and
 * MB/s accepted, appends refused with -ENOBUFS.
 */
#include "cache/persist/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS   256
#define ASYNC_THREADS 4
#define PACED_RATE    4000.0
#define MAX_ROUNDS    64

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Latencies of one thread, in seconds. */
struct lat {
    double *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, double x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        double *v = realloc(l->v, cap * sizeof(*v));

        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

struct result {
    double rate, p50, p99;
};

/* Merges the threads' latencies and reports. */
static struct result summarise(const char *name, struct lat *lats, int n, size_t records,
                               double secs, uint64_t syncs)
{
    struct result r = {0};
    size_t total = 0, k = 0;
    double *all;

    for (int i = 0; i < n; i++)
        total += lats[i].n;
    all = malloc((total ? total : 1) * sizeof(*all));
    if (!all)
        exit(1);
    for (int i = 0; i < n; i++) {
        memcpy(all + k, lats[i].v, lats[i].n * sizeof(*all));
        k += lats[i].n;
        free(lats[i].v);
        memset(&lats[i], 0, sizeof(lats[i]));
    }
    qsort(all, total, sizeof(*all), cmp_double);
    r.rate = (double)records / secs;
    if (total) {
        r.p50 = all[total / 2] * 1e6;
        r.p99 = all[(size_t)((double)total * 0.99)] * 1e6;
    }
    printf("  %-8s %8zu recs %9.0f recs/s  p50 %8.1f us  p99 %8.1f us  %6.1f syncs/s %5.1f "
           "recs/sync\n",
           name, records, r.rate, r.p50, r.p99, (double)syncs / secs,
           syncs ? (double)records / (double)syncs : 0.0);
    fflush(stdout);
    free(all);
    return r;
}

static atomic_bool stop;
static size_t rec_size = 1024;
static uint8_t *rec;

/* ---- raw leader/follower group commit ---- */

struct raw {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;
    uint8_t *buf, *spare;
    size_t len, cap;
    uint64_t appended, durable, syncs;
    bool flushing;
};

static struct raw raw;

struct thr {
    struct wal *w;
    struct lat lat;
    size_t done;
};

static void *raw_writer(void *arg)
{
    struct thr *t = arg;

    while (!atomic_load(&stop)) {
        double t0 = now_s();
        uint64_t mine;

        pthread_mutex_lock(&raw.mu);
        if (raw.len + rec_size > raw.cap) {
            size_t cap = raw.cap ? 2 * raw.cap : 1u << 20;

            raw.buf = realloc(raw.buf, cap);
            raw.spare = realloc(raw.spare, cap);
            if (!raw.buf || !raw.spare)
                exit(1);
            raw.cap = cap;
        }
        memcpy(raw.buf + raw.len, rec, rec_size);
        raw.len += rec_size;
        mine = ++raw.appended;
        while (raw.durable < mine) {
            if (!raw.flushing) {
                /* Lead: take everything, write and sync it without the lock. */
                uint8_t *b = raw.buf;
                size_t len = raw.len;
                uint64_t upto = raw.appended;

                raw.flushing = true;
                raw.buf = raw.spare;
                raw.spare = b;
                raw.len = 0;
                pthread_mutex_unlock(&raw.mu);
                if (write(raw.fd, b, len) != (ssize_t)len || fdatasync(raw.fd) != 0) {
                    perror("raw write");
                    exit(1);
                }
                pthread_mutex_lock(&raw.mu);
                raw.durable = upto;
                raw.syncs++;
                raw.flushing = false;
                pthread_cond_broadcast(&raw.cv);
            } else {
                pthread_cond_wait(&raw.cv, &raw.mu);
            }
        }
        pthread_mutex_unlock(&raw.mu);
        lat_add(&t->lat, now_s() - t0);
        t->done++;
    }
    return NULL;
}

static void *wal_writer(void *arg)
{
    struct thr *t = arg;

    while (!atomic_load(&stop)) {
        double t0 = now_s();
        uint64_t seq;
        int rc = wal_append(t->w, 1, rec, rec_size, &seq);

        if (rc == -ENOBUFS) {
            usleep(100);
            continue;
        }
        if (rc == 0)
            rc = wal_wait(t->w, seq, -1);
        if (rc) {
            fprintf(stderr, "wal: %s\n", strerror(-rc));
            exit(1);
        }
        lat_add(&t->lat, now_s() - t0);
        t->done++;
    }
    return NULL;
}

static void clean_dir(const char *dir)
{
    char p[1024];

    snprintf(p, sizeof(p), "%s/%s", dir, "wal_bench.log");
    unlink(p);
    snprintf(p, sizeof(p), "%s/%s", dir, "wal_bench.raw");
    unlink(p);
}

/* One durable run: "raw", or a WAL policy. */
static struct result run_durable(const char *dir, enum wal_policy policy, bool is_raw, int threads,
                                 double secs)
{
    static struct thr t[MAX_THREADS];
    struct lat lats[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    struct wal_opts o = {.dir = dir, .name = "wal_bench.log", .policy = policy};
    struct wal *w = NULL;
    struct wal_status st = {0};
    size_t records = 0;
    double t0, elapsed;

    clean_dir(dir);
    if (is_raw) {
        char p[1024];

        snprintf(p, sizeof(p), "%s/wal_bench.raw", dir);
        memset(&raw, 0, sizeof(raw));
        pthread_mutex_init(&raw.mu, NULL);
        pthread_cond_init(&raw.cv, NULL);
        raw.fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (raw.fd < 0) {
            perror(p);
            exit(1);
        }
    } else if (wal_open(&o, NULL, NULL, NULL, &w) != 0) {
        fprintf(stderr, "wal_open %s failed\n", dir);
        exit(1);
    }
    atomic_store(&stop, false);
    t0 = now_s();
    for (int i = 0; i < threads; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].w = w;
        pthread_create(&th[i], NULL, is_raw ? raw_writer : wal_writer, &t[i]);
    }
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        records += t[i].done;
        lats[i] = t[i].lat;
    }
    elapsed = now_s() - t0;
    if (is_raw) {
        st.syncs = raw.syncs;
        close(raw.fd);
        free(raw.buf);
        free(raw.spare);
        pthread_cond_destroy(&raw.cv);
        pthread_mutex_destroy(&raw.mu);
    } else {
        wal_status(w, &st);
        wal_close(w);
    }
    clean_dir(dir);
    return summarise(is_raw ? "raw" : wal_policy_name(policy), lats, threads, records, elapsed,
                     st.syncs);
}

/* ---- async appends ---- */

static double pace; /* records/s per async thread; 0: flat out */

static void *async_appender(void *arg)
{
    struct thr *t = arg;
    double next = now_s();

    while (!atomic_load(&stop)) {
        int rc = wal_append(t->w, 1, rec, rec_size, NULL);

        if (rc == 0)
            t->done++;
        else if (rc == -ENOBUFS)
            usleep(50);
        else
            exit(1);
        if (pace > 0) {
            double wait;

            next += 1.0 / pace;
            wait = next - now_s();
            if (wait > 0)
                usleep((useconds_t)(wait * 1e6));
        }
    }
    return NULL;
}

static void run_async(const char *dir, enum wal_policy policy, double secs)
{
    struct thr t[ASYNC_THREADS];
    pthread_t th[ASYNC_THREADS];
    struct wal_opts o = {.dir = dir, .name = "wal_bench.log", .policy = policy};
    struct wal_status st;
    struct lat lag = {0};
    struct wal *w = NULL;
    /* A ring of (time, seq) samples not yet durable. */
    enum { RING = 1 << 16 };
    static double ring_t[RING];
    static uint64_t ring_s[RING];
    size_t head = 0, tail = 0, records = 0;
    double t0, elapsed, p50 = 0, p99 = 0;

    clean_dir(dir);
    if (wal_open(&o, NULL, NULL, NULL, &w) != 0)
        exit(1);
    atomic_store(&stop, false);
    t0 = now_s();
    for (int i = 0; i < ASYNC_THREADS; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].w = w;
        pthread_create(&th[i], NULL, async_appender, &t[i]);
    }
    while (now_s() - t0 < secs) {
        double now = now_s();
        uint64_t d = wal_durable_seq(w);

        while (tail != head && ring_s[tail % RING] <= d) {
            lat_add(&lag, now - ring_t[tail % RING]);
            tail++;
        }
        if (head - tail < RING) {
            ring_t[head % RING] = now;
            ring_s[head % RING] = wal_last_seq(w);
            head++;
        }
        usleep(1000);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < ASYNC_THREADS; i++) {
        pthread_join(th[i], NULL);
        records += t[i].done;
    }
    elapsed = now_s() - t0;
    wal_status(w, &st);
    wal_close(w);
    clean_dir(dir);
    if (lag.n) {
        qsort(lag.v, lag.n, sizeof(double), cmp_double);
        p50 = lag.v[lag.n / 2] * 1e3;
        p99 = lag.v[(size_t)((double)lag.n * 0.99)] * 1e3;
    }
    if (pace > 0)
        printf("  %-8s %7.0f recs/s  %7.1f syncs/s  durability lag p50 %7.2f ms  p99 %7.2f ms\n",
               wal_policy_name(policy), (double)records / elapsed, (double)st.syncs / elapsed, p50,
               p99);
    else
        printf("  %-8s %7.0f recs/s  %6.1f MB/s accepted  %7.1f syncs/s  %8llu refused\n",
               wal_policy_name(policy), (double)records / elapsed,
               (double)records * (double)rec_size / elapsed / 1e6, (double)st.syncs / elapsed,
               (unsigned long long)st.nobufs_records);
    fflush(stdout);
    free(lag.v);
}

int main(int argc, char **argv)
{
    const enum wal_policy durable[] = {WAL_SYNC_ALWAYS, WAL_SYNC_BATCH};
    const enum wal_policy async[] = {WAL_SYNC_ALWAYS, WAL_SYNC_BATCH, WAL_SYNC_EVERYSEC,
                                     WAL_SYNC_OFF};
    double secs = argc > 2 ? atof(argv[2]) : 2;
    int threads = argc > 3 ? atoi(argv[3]) : 50;
    int rounds = argc > 5 ? atoi(argv[5]) : 5;
    double raw_sum = 0, sum[2] = {0}, ratio[2][MAX_ROUNDS];

    if (argc < 2 || secs <= 0 || threads < 1 || threads > MAX_THREADS || rounds < 1 ||
        rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: %s DIR [SECONDS [THREADS [BYTES [ROUNDS]]]]\n", argv[0]);
        return 2;
    }
    if (argc > 4)
        rec_size = (size_t)atol(argv[4]);
    rec = malloc(rec_size ? rec_size : 1);
    if (!rec)
        return 1;
    memset(rec, 'r', rec_size);
    printf("wal_bench: %s, %d threads, %zu-byte records, %.0f s per run, crc32c %s\n", argv[1],
           threads, rec_size, secs, wal_crc32c_hw() ? "sse4.2" : "portable");
    printf("durable inserts (append, then wait until durable):\n");
    for (int r = 0; r < rounds; r++) {
        double raw_rate = run_durable(argv[1], WAL_SYNC_ALWAYS, true, threads, secs).rate;

        raw_sum += raw_rate;
        for (int p = 0; p < 2; p++) {
            double rate = run_durable(argv[1], durable[p], false, threads, secs).rate;

            sum[p] += rate;
            ratio[p][r] = rate / raw_rate;
        }
    }
    for (int p = 0; p < 2; p++) {
        qsort(ratio[p], (size_t)rounds, sizeof(double), cmp_double);
        printf("  => %-8s %7.0f recs/s (raw %.0f): median %.2fx raw per round (range %.2f..%.2f)\n",
               wal_policy_name(durable[p]), sum[p] / rounds, raw_sum / rounds, ratio[p][rounds / 2],
               ratio[p][0], ratio[p][rounds - 1]);
    }
    pace = PACED_RATE / ASYNC_THREADS;
    printf("async appends, paced at %.0f recs/s (%d threads, never waiting):\n", PACED_RATE,
           ASYNC_THREADS);
    for (size_t p = 0; p < sizeof(async) / sizeof(async[0]); p++)
        run_async(argv[1], async[p], secs + 1);
    pace = 0;
    printf("async appends, flat out (%d threads, never waiting):\n", ASYNC_THREADS);
    for (size_t p = 0; p < sizeof(async) / sizeof(async[0]); p++)
        run_async(argv[1], async[p], secs);
    free(rec);
    return 0;
}
