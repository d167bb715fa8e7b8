/* server.c - the libmicrohttpd daemon: start, drain and stop; see
 * server.h. The request machinery is in exchange.c, what a request means in
 * routes.c, connection deadlines in conns.c. */
#include "proxy/server.h"

#include "cache/base/clock.h"
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* MHD's per-connection memory pool: request line and headers must fit in it
 * (else MHD answers 431 itself). MHD zeroes the whole pool between requests
 * on a kept-alive connection, so its size is paid on every request: 64 KiB
 * holds any sane header block at half the cost of 128 KiB. */
#define CONN_POOL (64u << 10)

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

/* Everything server_start() built, after the daemon has stopped. */
static void server_free(struct server *s)
{
    conns_free(s->conns);
    audit_free(s->audit); /* before the policy it stores through */
    chat_free(s->chat);
    rl_free(s->rl);
    auth_free(s->auth);
    metrics_free(s->met);
    free(s);
}

int server_start(const struct cfg *c, struct up_pool *pool, struct cache *cache,
                 struct replica *rep, struct server **out, char *err, size_t errlen)
{
    struct server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sl;
    unsigned threads = (unsigned)c->threads;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    char host[INET6_ADDRSTRLEN];
    int rc;

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
    s->quiesced = MHD_INVALID_SOCKET;
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
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, xch_on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_URI_LOG_CALLBACK, xch_on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, xch_on_completed,
        s, MHD_OPTION_NOTIFY_CONNECTION, conns_event, s->conns, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections + RESERVE_CONNS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)((c->client_timeout_ms + 999) / 1000),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_POOL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not permitted)", c->listen);
        goto fail;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            snprintf(s->addr, sizeof(s->addr), "[%s]:%u", host, ntohs(a->sin6_port));
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            snprintf(s->addr, sizeof(s->addr), "%s:%u", host, ntohs(a->sin_port));
        }
    } else {
        snprintf(s->addr, sizeof(s->addr), "%s", c->listen);
    }
    *out = s;
    return 0;
fail:
    server_free(s);
    return -1;
}

const char *server_addr(const struct server *s)
{
    return s->addr;
}

void server_drain(struct server *s)
{
    MHD_socket fd;

    atomic_store(&s->draining, true);
    /* The listening socket becomes ours: shutting it down refuses new
     * clients at once instead of leaving them in the accept queue. It is
     * closed only once MHD has stopped: MHD's workers may still be taking it
     * out of their epoll sets, and closing it under them is a race. */
    fd = MHD_quiesce_daemon(s->mhd);
    s->quiesced = fd;
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
    MHD_stop_daemon(s->mhd);
    if (s->quiesced != MHD_INVALID_SOCKET)
        close(s->quiesced);
    server_free(s);
}
