/* server.c - the HTTP workers: start, drain and stop; see server.h. The
 * request machinery is in exchange.c, what a request means in routes.c,
 * connection deadlines in conns.c.
 *
 * Each worker thread owns a libmicrohttpd daemon in external-epoll mode and
 * an upstream loop (upstream.h), and runs both from one event loop: a turn
 * of the daemon (MHD_run), then a turn of the loop, which sleeps in one
 * epoll set that holds the provider sockets and the daemon's epoll fd
 * together. A request's transfer therefore starts, runs and calls back on
 * the thread that serves its connection, and resuming that connection is a
 * call on the same thread. (libmicrohttpd's own thread pool would put every
 * daemon thread in its own epoll_wait, out of curl's reach.) A daemon in
 * this mode does not signal its resumed connections to anyone, so whoever
 * resumes one wakes its worker's loop (exchange.c, resume()).
 *
 * The daemons share one listening socket that parrot opens itself; each
 * daemon gets a dup() of it, which it closes on stop like a socket of its
 * own. A connection goes to whichever worker accepts it first; the others
 * get EAGAIN, which libmicrohttpd ignores. */
#include "proxy/server.h"

#include "cache/base/clock.h"
#include "cache/base/thread.h"
#include "config/config.h"
#include "proxy/auth.h"
#include "proxy/chat.h"
#include "proxy/conns.h"
#include "proxy/exchange.h"
#include "proxy/log.h"
#include "proxy/audit.h"
#include "proxy/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    log_msg(LOG_DEBUG, "libmicrohttpd", msg);
}

struct worker {
    struct server *srv;
    struct MHD_Daemon *mhd;
    int epoll_fd;         /* the daemon's, polled with the provider sockets */
    struct up_loop *loop; /* its transfers */
    pthread_t thread;
    bool running;
    MHD_socket quiesced; /* its listening socket after server_drain, closed by server_stop */
};

/* A worker's event loop: the daemon's turn, then the upstream loop's,
 * which sleeps until either has work or the daemon's next timeout. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;

    up_loop_bind(w->loop);
    while (!atomic_load(&w->srv->stopping)) {
        MHD_UNSIGNED_LONG_LONG t;
        long ms = -1;

        MHD_run(w->mhd);
        if (MHD_get_timeout(w->mhd, &t) == MHD_YES)
            ms = t < (MHD_UNSIGNED_LONG_LONG)INT_MAX ? (long)t : INT_MAX;
        up_loop_run(w->loop, w->epoll_fd, ms);
    }
    return NULL;
}

/* Stops the worker threads, then their daemons (closing every connection on
 * the calling thread), then their loops: no connection is left to wake a
 * loop once the loops go. */
static void stop_workers(struct server *s)
{
    atomic_store(&s->stopping, true);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].running)
            up_loop_wake(s->workers[i].loop);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].running)
            pthread_join(s->workers[i].thread, NULL);
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        /* The completion callbacks may cancel transfers on the loops. */
        if (w->mhd)
            MHD_stop_daemon(w->mhd);
        if (w->quiesced != MHD_INVALID_SOCKET)
            close(w->quiesced);
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        up_loop_free(s->workers[i].loop);
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
}

/* Stops the workers and frees everything server_start() built. */
static void server_free(struct server *s)
{
    stop_workers(s);
    conns_free(s->conns);
    audit_free(s->audit); /* before the policy it stores through */
    chat_free(s->chat);
    rl_free(s->rl);
    auth_free(s->auth);
    metrics_free(s->met);
    free(s);
}

/* The listening socket, non-blocking (the workers race to accept), with
 * the options libmicrohttpd would set on its own: SO_REUSEADDR, and
 * IPv6 only on an IPv6 address. Returns the fd, or -1. */
static int open_listener(const struct sockaddr_storage *ss, socklen_t sl)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)ss, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* "127.0.0.1:8080" or "[::1]:8080". */
static void format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(a->sin_port));
    }
}

int server_start(const struct cfg *c, struct up_pool *pool, struct cache *cache,
                 struct replica *rep, struct server **out, char *err, size_t errlen)
{
    struct server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sl;
    unsigned threads = (unsigned)c->threads;
    /* External epoll: the worker threads run the daemons themselves. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    unsigned total = (unsigned)c->max_connections + RESERVE_CONNS;
    const union MHD_DaemonInfo *info;
    int fd = -1, rc;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->cfg = c;
    s->pool = pool;
    s->cache = cache;
    s->rep = rep;
    if (cache && (rc = chat_new(c, cache, &s->chat)) != 0) {
        snprintf(err, errlen, "cannot set up the cache (%s)",
                 rc == -ENOMEM ? "out of memory" : "see the error logged above");
        goto fail;
    }
    if (s->chat)
        chat_set_replica(s->chat, rep);
    if (auth_new(c, &s->auth, err, errlen) != 0)
        goto fail;
    s->admin = (struct admin){.cache = cache, .chat = s->chat, .auth = s->auth, .cfg = c};
    if (metrics_new(c->prices, &s->met) != 0) {
        snprintf(err, errlen, "cannot set up metrics (out of memory)");
        goto fail;
    }
    struct audit_opts ao = {.rate = c->audit_rate,
                            .max_inflight = (unsigned)c->audit_max_inflight,
                            .log_prompts = c->log_prompts,
                            .pool = pool,
                            .chat = s->chat,
                            .met = s->met};
    if (s->chat && audit_new(&ao, &s->audit) != 0) {
        snprintf(err, errlen, "cannot start the audit thread");
        goto fail;
    }
    s->admin.audit = s->audit;
    if ((c->rate_limit_rpm || c->rate_limit_tpm) &&
        rl_new((unsigned)c->rate_limit_rpm, (unsigned)c->rate_limit_tpm, &s->rl) != 0) {
        snprintf(err, errlen, "cannot set up rate limits (out of memory)");
        goto fail;
    }
    if (s->rl && rep)
        rl_share(s->rl, rep);
    atomic_init(&s->draining, false);
    atomic_init(&s->stopping, false);
    atomic_init(&s->inflight, 0);
    if (conns_new((size_t)c->max_connections, c->header_timeout_ms, &s->conns) != 0) {
        snprintf(err, errlen, "cannot start the connection reaper thread");
        goto fail;
    }
    if (cfg_parse_addr(c->listen, &ss, &sl) != 0) {
        snprintf(err, errlen, "invalid listen address '%s'", c->listen);
        goto fail;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if ((fd = open_listener(&ss, sl)) < 0) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not permitted)", c->listen);
        goto fail;
    }
    s->workers = calloc(threads, sizeof(*s->workers));
    if (!s->workers) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < threads; i++) {
        s->workers[i].srv = s;
        s->workers[i].quiesced = MHD_INVALID_SOCKET;
    }
    s->nworkers = threads;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        format_addr(&ss, s->addr, sizeof(s->addr));
    else
        snprintf(s->addr, sizeof(s->addr), "%s", c->listen);
    for (unsigned i = 0; i < threads; i++) {
        struct worker *w = &s->workers[i];
        int wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        /* libmicrohttpd's own thread pool splits the limit the same way. */
        unsigned limit = total / threads + (i < total % threads);

        if (wfd < 0 || up_loop_new(pool, &w->loop) != 0) {
            if (wfd >= 0)
                close(wfd);
            snprintf(err, errlen, "cannot start the HTTP workers (out of memory)");
            goto fail;
        }
        /* A daemon that fails to start may or may not have closed wfd: it
         * is left alone, and the process exits. The connection pool
         * (header-buffer) holds the request head, and what is left of it a
         * streamed answer's chunks; MHD zeroes all of it before every
         * request on a kept-alive connection, and a memset past L1 evicts
         * what the next request reads: 16 KiB carried 3-33% (median 10%)
         * more exact hits per second than 64 KiB at -c64 (docs/bench.md). */
        w->mhd = MHD_start_daemon(
            flags, 0, NULL, NULL, xch_on_request, s, MHD_OPTION_LISTEN_SOCKET, wfd,
            MHD_OPTION_URI_LOG_CALLBACK, xch_on_uri, s, MHD_OPTION_NOTIFY_COMPLETED,
            xch_on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, conns_event, s->conns,
            MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)((c->client_timeout_ms + 999) / 1000), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            c->header_buffer, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
        info = w->mhd ? MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
        if (!info) {
            snprintf(err, errlen, "cannot start the HTTP server on %s", c->listen);
            goto fail;
        }
        w->epoll_fd = info->epoll_fd;
        if (thread_start(&w->thread, worker_main, w, "parrot-worker") != 0) {
            snprintf(err, errlen, "cannot start the HTTP worker threads");
            goto fail;
        }
        w->running = true;
    }
    close(fd); /* every daemon has its own */

    *out = s;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    server_free(s);
    return -1;
}

const char *server_addr(const struct server *s)
{
    return s->addr;
}

void server_drain(struct server *s)
{
    MHD_socket fd = MHD_INVALID_SOCKET;

    atomic_store(&s->draining, true);
    /* Each daemon's listening socket becomes ours; shutting down one of
     * them, a dup of the others, refuses new clients at once instead of
     * leaving them in the accept queue. They are closed only once the
     * daemons have stopped: a worker may still be taking its socket out of
     * its epoll set (libmicrohttpd allows a quiesce from another thread;
     * the wake-up makes the worker look), and closing it under it is a
     * race. */
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        if (w->quiesced == MHD_INVALID_SOCKET)
            w->quiesced = MHD_quiesce_daemon(w->mhd);
        if (w->quiesced != MHD_INVALID_SOCKET)
            fd = w->quiesced;
        up_loop_wake(w->loop);
    }
    if (fd != MHD_INVALID_SOCKET)
        shutdown(fd, SHUT_RDWR);
}

size_t server_inflight(const struct server *s)
{
    return atomic_load(&((struct server *)s)->inflight);
}

void server_stop(struct server *s)
{
    if (!s)
        return;
    server_free(s);
}
