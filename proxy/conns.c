/* conns.c - connection deadlines and the reaper; see conns.h. */
#include "proxy/conns.h"

#include "cache/base/clock.h"
#include "cache/base/thread.h"
#include "proxy/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

#define REAP_EVERY_MS 250

enum cphase { CP_HEAD, CP_BODY, CP_BUSY };

struct conn {
    struct conn *prev, *next; /* guarded by conns.lock */
    int fd;
    bool reserve;                    /* accepted beyond max-connections */
    bool cut;                        /* the reaper shut it down; guarded by conns.lock */
    _Atomic int phase;               /* enum cphase */
    atomic_int_fast64_t deadline;    /* CP_HEAD: head due by (monotonic ms) */
    atomic_int_fast64_t body_start;  /* CP_BODY: when the head was complete */
    atomic_uint_fast64_t body_bytes; /* CP_BODY: bytes read since */
};

struct conns {
    size_t max;
    long head_ms;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct conn *list;
    size_t n;
    bool stop;
    pthread_t reaper;
    atomic_uint_fast64_t cut_total;
};

/* True when c is past its deadline: a head not complete in time, or a body
 * slower than MIN_BODY_RATE after the head timeout's grace. */
static bool overdue(const struct conns *cs, struct conn *c, int64_t now)
{
    int phase = atomic_load(&c->phase);

    if (phase == CP_HEAD)
        return now > atomic_load(&c->deadline);
    if (phase == CP_BODY) {
        int64_t allowed =
            cs->head_ms + (int64_t)(atomic_load(&c->body_bytes) * 1000 / MIN_BODY_RATE);
        return now - atomic_load(&c->body_start) > allowed;
    }
    return false;
}

static void *reaper_main(void *arg)
{
    struct conns *cs = arg;

    pthread_mutex_lock(&cs->lock);
    while (!cs->stop) {
        int64_t now = clock_mono_ms();
        unsigned cut = 0;
        struct timespec ts;

        for (struct conn *c = cs->list; c; c = c->next)
            if (!c->cut && overdue(cs, c, now)) {
                c->cut = true;
                shutdown(c->fd, SHUT_RDWR);
                cut++;
            }
        if (cut) {
            atomic_fetch_add(&cs->cut_total, cut);
            log_msg(LOG_WARN, "slow clients cut off",
                    "a request head or body did not arrive in time (header-timeout)");
        }
        ts = clock_deadline_ms(REAP_EVERY_MS);
        pthread_cond_timedwait(&cs->wake, &cs->lock, &ts);
    }
    pthread_mutex_unlock(&cs->lock);
    return NULL;
}

int conns_new(size_t max_connections, long header_timeout_ms, struct conns **out)
{
    struct conns *cs = calloc(1, sizeof(*cs));

    if (!cs)
        return -1;
    cs->max = max_connections;
    cs->head_ms = header_timeout_ms;
    atomic_init(&cs->cut_total, 0);
    pthread_mutex_init(&cs->lock, NULL);
    pthread_cond_init(&cs->wake, NULL);
    if (thread_start(&cs->reaper, reaper_main, cs, "parrot-reaper") != 0) {
        pthread_mutex_destroy(&cs->lock);
        pthread_cond_destroy(&cs->wake);
        free(cs);
        return -1;
    }
    *out = cs;
    return 0;
}

void conns_free(struct conns *cs)
{
    if (!cs)
        return;
    pthread_mutex_lock(&cs->lock);
    cs->stop = true;
    pthread_cond_signal(&cs->wake);
    pthread_mutex_unlock(&cs->lock);
    pthread_join(cs->reaper, NULL);
    pthread_mutex_destroy(&cs->lock);
    pthread_cond_destroy(&cs->wake);
    free(cs);
}

void conns_event(void *cls, struct MHD_Connection *connection, void **socket_context,
                 enum MHD_ConnectionNotificationCode code)
{
    struct conns *cs = cls;
    struct conn *c = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || !(c = calloc(1, sizeof(*c))))
            return; /* untracked: libmicrohttpd's idle timer still applies */
        c->fd = ci->connect_fd;
        atomic_init(&c->phase, CP_HEAD);
        atomic_init(&c->body_start, 0);
        atomic_init(&c->body_bytes, 0);
        pthread_mutex_lock(&cs->lock);
        c->reserve = cs->n >= cs->max;
        atomic_init(&c->deadline,
                    clock_mono_ms() + (c->reserve && cs->head_ms > RESERVE_HEAD_MS ? RESERVE_HEAD_MS
                                                                                   : cs->head_ms));
        c->next = cs->list;
        if (cs->list)
            cs->list->prev = c;
        cs->list = c;
        cs->n++;
        pthread_mutex_unlock(&cs->lock);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* libmicrohttpd closes the socket after this returns: once c is off the
     * list under the lock, the reaper can no longer shut down its fd, which
     * may be reused. */
    pthread_mutex_lock(&cs->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    cs->n--;
    pthread_mutex_unlock(&cs->lock);
    *socket_context = NULL;
    free(c);
}

struct conn *conns_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

uint64_t conns_cut_total(const struct conns *cs)
{
    return atomic_load(&((struct conns *)cs)->cut_total);
}

bool conn_reserve(const struct conn *c)
{
    return c->reserve;
}

void conn_request_line(struct conn *c, long header_timeout_ms)
{
    int64_t due = clock_mono_ms() + header_timeout_ms;

    if (atomic_load(&c->deadline) > due)
        atomic_store(&c->deadline, due);
}

void conn_head_done(struct conn *c)
{
    atomic_store(&c->body_start, clock_mono_ms());
    atomic_store(&c->body_bytes, 0);
    atomic_store(&c->phase, CP_BODY);
}

void conn_body_bytes(struct conn *c, size_t n)
{
    atomic_fetch_add(&c->body_bytes, n);
}

void conn_busy(struct conn *c)
{
    atomic_store(&c->phase, CP_BUSY);
}

void conn_idle(struct conn *c, long allowance_ms)
{
    atomic_store(&c->deadline, clock_mono_ms() + allowance_ms);
    atomic_store(&c->phase, CP_HEAD);
}
