/* Unit tests for upstream/upstream.c's loops: a transfer runs and calls back
 * on the loop of the thread that submitted it, or on the pool's own thread
 * when that thread has none; shutdown cancels a transfer on its own loop's
 * thread; submits after it are refused; a watched client that hangs up ends
 * its transfer, one that sends data first does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What on_done saw, and on which thread. */
struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    pthread_t thread;
};

static void on_head(void *ud, const struct up_head *h)
{
    (void)ud;
    (void)h;
}

static int on_body(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
    return 0;
}

static void on_done(void *ud, int err, const char *detail, const struct up_result *r)
{
    struct outcome *o = ud;

    (void)detail;
    (void)r;
    pthread_mutex_lock(&o->mu);
    o->done = true;
    o->err = err;
    o->thread = pthread_self();
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static const struct up_handler handler = {on_head, on_body, on_done};

static void outcome_init(struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
}

static void outcome_fini(struct outcome *o)
{
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
}

static bool outcome_done(struct outcome *o)
{
    bool done;

    pthread_mutex_lock(&o->mu);
    done = o->done;
    pthread_mutex_unlock(&o->mu);
    return done;
}

/* A pool of one provider at base_url that never retries. */
static struct up_pool *pool_at(const char *base_url)
{
    struct up_provider_opts prov = {.base_url = base_url, .weight = 1};
    struct up_pool_opts o = {.providers = &prov,
                             .nproviders = 1,
                             .connect_timeout_ms = 5000,
                             .timeout_ms = 10000,
                             .idle_timeout_ms = 10000,
                             .breaker_failures = 100,
                             .breaker_cooldown_ms = 1000};
    struct up_pool *p = NULL;

    assert_int_equal(up_pool_new(&o, &p), 0);
    return p;
}

static int submit_watching(struct up_pool *p, struct outcome *o, struct up_xfer **x, int client_fd)
{
    struct up_req r = {.method = "GET", .path = "/models", .client_fd = client_fd};

    return up_pool_submit(p, &r, &handler, o, x);
}

static int submit(struct up_pool *p, struct outcome *o, struct up_xfer **x)
{
    return submit_watching(p, o, x, -1);
}

/* A provider that takes connections (the backlog does) and never answers:
 * its transfers run until something ends them. Returns the listening
 * socket; url gets its base URL. */
static int silent_provider(char *url, size_t len)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);

    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 8), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    snprintf(url, len, "http://127.0.0.1:%u/v1", ntohs(a.sin_port));
    return ls;
}

/* Turns l for about ms milliseconds, or until o is done. */
static void turn_for(struct up_loop *l, struct outcome *o, int ms)
{
    for (int i = 0; i < ms / 10 && !outcome_done(o); i++)
        up_loop_run(l, -1, 10);
}

static void transfer_stays_on_the_submitting_thread(void **state)
{
    /* Port 1 on loopback refuses connections at once. */
    struct up_pool *p = pool_at("http://127.0.0.1:1/v1");
    struct up_loop *l;
    struct up_xfer *x;
    struct outcome o;

    (void)state;
    outcome_init(&o);
    assert_int_equal(up_loop_new(p, &l), 0);
    up_loop_bind(l);
    assert_ptr_equal(up_loop_current(), l);
    assert_int_equal(submit(p, &o, &x), 0);
    /* Nothing runs inside the submit: the loop's next turn starts it. */
    assert_false(outcome_done(&o));
    for (int i = 0; i < 200 && !outcome_done(&o); i++)
        up_loop_run(l, -1, 50);
    assert_true(outcome_done(&o));
    assert_int_equal(o.err, UP_EUNREACH);
    assert_true(pthread_equal(o.thread, pthread_self()));
    up_loop_free(l);
    assert_null(up_loop_current());
    up_pool_free(p);
    outcome_fini(&o);
}

static void thread_without_loop_uses_the_pools(void **state)
{
    struct up_pool *p = pool_at("http://127.0.0.1:1/v1");
    struct up_xfer *x;
    struct outcome o;

    (void)state;
    outcome_init(&o);
    assert_null(up_loop_current());
    assert_int_equal(submit(p, &o, &x), 0);
    pthread_mutex_lock(&o.mu);
    while (!o.done)
        pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(o.err, UP_EUNREACH);
    assert_false(pthread_equal(o.thread, pthread_self()));
    up_pool_free(p);
    outcome_fini(&o);
}

/* A worker thread: its own loop, one transfer, turns until told to stop. */
struct worker {
    struct up_pool *pool;
    struct up_loop *loop;
    struct outcome o;
    atomic_bool submitted, stop;
    int rc;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct up_xfer *x;

    up_loop_bind(w->loop);
    w->rc = submit(w->pool, &w->o, &x);
    atomic_store(&w->submitted, true);
    while (!atomic_load(&w->stop))
        up_loop_run(w->loop, -1, 50);
    return NULL;
}

static void shutdown_cancels_on_the_loops_thread(void **state)
{
    /* The silent provider keeps the transfer running until it is cancelled. */
    char url[64];
    int ls = silent_provider(url, sizeof(url));
    struct worker w = {.rc = -1};
    struct outcome late;
    struct up_xfer *x;
    pthread_t t;

    (void)state;
    w.pool = pool_at(url);
    outcome_init(&w.o);
    outcome_init(&late);
    assert_int_equal(up_loop_new(w.pool, &w.loop), 0);
    atomic_init(&w.submitted, false);
    atomic_init(&w.stop, false);
    assert_int_equal(pthread_create(&t, NULL, worker_main, &w), 0);
    while (!atomic_load(&w.submitted))
        usleep(1000);
    assert_int_equal(w.rc, 0);
    /* Returns only once the worker's loop has cancelled its transfer. */
    up_pool_shutdown(w.pool);
    assert_true(outcome_done(&w.o));
    assert_int_equal(w.o.err, UP_ECANCELED);
    assert_false(pthread_equal(w.o.thread, pthread_self()));
    assert_int_equal(submit(w.pool, &late, &x), UP_ECANCELED);
    atomic_store(&w.stop, true);
    up_loop_wake(w.loop);
    pthread_join(t, NULL);
    up_loop_free(w.loop);
    up_pool_free(w.pool);
    outcome_fini(&late);
    outcome_fini(&w.o);
    close(ls);
}

/* A transfer to the silent provider on a loop of the test's thread,
 * watching one end of a socketpair (sv[0]) as its client's connection. */
struct watched {
    int ls, sv[2];
    struct up_pool *p;
    struct up_loop *l;
    struct up_xfer *x;
    struct outcome o;
};

static void watched_start(struct watched *w)
{
    char url[64];

    w->ls = silent_provider(url, sizeof(url));
    w->p = pool_at(url);
    outcome_init(&w->o);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, w->sv), 0);
    assert_int_equal(up_loop_new(w->p, &w->l), 0);
    up_loop_bind(w->l);
    assert_int_equal(submit_watching(w->p, &w->o, &w->x, w->sv[0]), 0);
    turn_for(w->l, &w->o, 300); /* past the first tick: watched by now */
    assert_false(outcome_done(&w->o));
}

static void watched_end(struct watched *w)
{
    up_loop_free(w->l);
    up_pool_free(w->p);
    outcome_fini(&w->o);
    close(w->sv[0]);
    close(w->ls);
}

/* Until the client hangs up the transfer runs on (the silent provider
 * never answers); then the loop's watch, set from the transfer's first
 * timer tick, ends it with UP_ECLIENT. */
static void client_hang_up_ends_the_transfer(void **state)
{
    struct watched w;

    (void)state;
    watched_start(&w);
    close(w.sv[1]);
    turn_for(w.l, &w.o, 2000);
    assert_true(outcome_done(&w.o));
    assert_int_equal(w.o.err, UP_ECLIENT);
    watched_end(&w);
}

/* Data the client sent before it hung up (a pipelined request) is
 * libmicrohttpd's to read: the watch stops and the transfer runs on until
 * it is cancelled. */
static void client_data_stops_the_watch(void **state)
{
    struct watched w;

    (void)state;
    watched_start(&w);
    assert_int_equal(write(w.sv[1], "G", 1), 1);
    close(w.sv[1]);
    turn_for(w.l, &w.o, 500);
    assert_false(outcome_done(&w.o));
    up_xfer_cancel(w.x);
    turn_for(w.l, &w.o, 1000);
    assert_true(outcome_done(&w.o));
    assert_int_equal(w.o.err, UP_ECANCELED);
    watched_end(&w);
}

/* A provider that answers each of n connections once, keeping the
 * connection alive as far as its answer says, and then closes it: the
 * client's next transfer finds a dead connection in its cache. */
struct closing_provider {
    int ls;
    int n;
    atomic_int closed; /* connections answered and closed */
    pthread_t thread;
};

static void *closing_main(void *arg)
{
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 2\r\n\r\n{}";
    struct closing_provider *cp = arg;

    for (int i = 0; i < cp->n; i++) {
        char buf[4096];
        size_t got = 0;
        int c = accept(cp->ls, NULL, NULL);

        if (c < 0)
            break;
        while (got < sizeof(buf) - 1) {
            ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        if (write(c, answer, sizeof(answer) - 1) < 0)
            break;
        close(c);
        atomic_fetch_add(&cp->closed, 1);
    }
    return NULL;
}

static void await_closed(struct closing_provider *cp, int n)
{
    for (int i = 0; i < 500 && atomic_load(&cp->closed) < n; i++)
        usleep(2000);
    assert_int_equal(atomic_load(&cp->closed), n);
    usleep(20000); /* the FIN on its way to the client's socket */
}

/* One transfer on l, run to its end: it must succeed. */
static void fetch_once(struct up_pool *p, struct up_loop *l)
{
    struct up_xfer *x;
    struct outcome o;

    outcome_init(&o);
    assert_int_equal(submit(p, &o, &x), 0);
    turn_for(l, &o, 3000);
    assert_true(outcome_done(&o));
    assert_int_equal(o.err, 0);
    outcome_fini(&o);
}

/* Between its transfers a kept-alive connection stays in the loop's epoll
 * set (parked). (1) Curl finds it dead when the next transfer starts,
 * closes it and opens a new socket, mostly under the same number: that
 * socket must be watched, or the transfer hangs until its timeout. (2) One
 * the provider closes while no transfer uses it must leave the set, or the
 * level-triggered set reports it on every turn and the loop spins. */
static void provider_closes_a_kept_alive_connection(void **state)
{
    struct closing_provider cp = {.n = 3};
    char url[64];
    struct up_pool *p;
    struct up_loop *l;
    int turns = 0;

    (void)state;
    atomic_init(&cp.closed, 0);
    cp.ls = silent_provider(url, sizeof(url));
    assert_int_equal(pthread_create(&cp.thread, NULL, closing_main, &cp), 0);
    p = pool_at(url);
    assert_int_equal(up_loop_new(p, &l), 0);
    up_loop_bind(l);
    fetch_once(p, l);

    /* (1): the next transfer starts before the loop looks at the socket. */
    await_closed(&cp, 1);
    fetch_once(p, l);

    /* (2): the loop turns while the closed connection sits in the cache.
     * Asleep, a turn waits its 50 ms; spinning, it returns at once, every
     * time. */
    await_closed(&cp, 2);
    for (; turns < 1000; turns++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        up_loop_run(l, -1, 50);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > 40000000L)
            break; /* it slept: nothing is ready any more */
    }
    assert_true(turns < 1000);
    fetch_once(p, l);

    up_loop_free(l);
    up_pool_free(p);
    pthread_join(cp.thread, NULL);
    close(cp.ls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transfer_stays_on_the_submitting_thread),
        cmocka_unit_test(thread_without_loop_uses_the_pools),
        cmocka_unit_test(shutdown_cancels_on_the_loops_thread),
        cmocka_unit_test(client_hang_up_ends_the_transfer),
        cmocka_unit_test(client_data_stops_the_watch),
        cmocka_unit_test(provider_closes_a_kept_alive_connection),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
