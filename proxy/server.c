/* server.c - routes, request bodies, and the hand-off between libmicrohttpd
 * and the upstream pool.
 *
 * Every request gets a struct exch ("exchange"). Three parties hold a
 * reference to it and each drops its own: libmicrohttpd (until the request
 * completes), the upstream transfer (until on_done), and a streaming
 * response (until libmicrohttpd frees it). x->lock guards everything the
 * upstream thread and the HTTP threads both touch.
 *
 * The life of a proxied request:
 *   1. The access handler collects the body (capped), validates it and submits
 *      the upstream transfer, then suspends the connection (XS_WAIT).
 *   2. On the upstream thread, on_head decides the mode. SSE, or a body larger
 *      than FULL_MAX, is streamed: the connection is resumed (XS_STREAM) and
 *      the handler queues a response whose reader pulls from x->out. Anything
 *      else is collected whole (XS_FULL) and sent with a Content-Length when
 *      the transfer ends, which costs one resume instead of several.
 *   3. In streaming mode the reader suspends the connection when x->out is
 *      empty and on_body resumes it. When x->out is above OUT_HIGH, on_body
 *      pauses the transfer; the reader unpauses it below OUT_LOW. A slow client
 *      therefore slows the provider instead of growing memory.
 *   4. When the client goes away, the completion callback cancels the
 *      transfer. A suspended connection is not polled by libmicrohttpd, so a
 *      disconnect is noticed at the next byte from the provider; for a stream
 *      that is the next event.
 *
 * Chat completions first ask the cache (proxy/chat.c). A hit is answered on
 * the spot from the HTTP thread. A miss whose exact key is already being
 * fetched waits suspended behind that request (XS_FLIGHT) and looks the cache
 * up again when it is woken (XS_RETRY). The answer to a miss is stored from
 * on_done, before the client is resumed, so the next identical request hits.
 * With a remote embedder, a lookup that needs a vector waits suspended for
 * it (XS_EMBED) and finishes when the embedder's thread wakes it
 * (XS_EMBEDDED): no HTTP thread is held while the embedding is computed.
 */
#include "proxy/server.h"

#include "cache/base/clock.h"
#include "cache/base/rand.h"
#include "config/config.h"
#include "proxy/admin.h"
#include "proxy/auth.h"
#include "cache/base/buf.h"
#include "proxy/chat.h"
#include "proxy/dashboard.h"
#include "proxy/front.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/openai/oai.h"
#include "proxy/ratelimit.h"
#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FULL_MAX        (1u << 20)   /* collect whole responses up to 1 MiB */
#define OUT_HIGH        (256u << 10) /* pause the provider above this much unsent data */
#define OUT_LOW         (64u << 10)  /* and resume it below this */
#define REQ_HEADERS_MAX 128
/* MHD's per-connection memory pool: request line and headers must fit in it
 * (else MHD answers 431 itself). MHD zeroes the whole pool between requests
 * on a kept-alive connection, so its size is paid on every request: 64 KiB
 * holds any sane header block at half the cost of 128 KiB. */
#define CONN_POOL  (64u << 10)
#define REQ_ID_MAX 128
/* Connections accepted beyond max-connections, for health probes only, so
 * that /healthz and /readyz answer while clients hold every slot. */
#define RESERVE_CONNS   16
#define RESERVE_HEAD_MS 2000 /* a reserve connection's whole head, in ms */
/* After the head, a body must arrive at this average rate or the connection
 * is cut (the head timeout is its grace period). */
#define MIN_BODY_RATE (16u << 10) /* bytes per second */
/* A request refused before its body (no key, too large, ...) still has its
 * body read and thrown away, up to this much, so that a client that sends
 * without waiting for 100-continue reads the error instead of a reset. */
#define DRAIN_MIN (64u << 20)

/* Where a request goes, decided from its head before any body is read. */
enum rkind {
    RK_HEALTH,    /* /healthz */
    RK_READY,     /* /readyz */
    RK_METRICS,   /* /metrics */
    RK_ADMIN,     /* /admin/... */
    RK_DASHBOARD, /* /dashboard, /dashboard/stats.json */
    RK_CHAT,      /* POST /v1/chat/completions: through the cache */
    RK_V1,        /* anything else under /v1: passed through */
};

enum xstate {
    XS_NEW,       /* the handler has not seen the request yet */
    XS_BODY,      /* collecting the request body */
    XS_FLIGHT,    /* waiting behind an identical request, connection suspended */
    XS_RETRY,     /* woken from XS_FLIGHT: look the cache up again */
    XS_EMBED,     /* waiting for the remote embedder, connection suspended */
    XS_EMBEDDED,  /* woken from XS_EMBED: finish the lookup */
    XS_WAIT,      /* upstream submitted, connection suspended */
    XS_STREAM,    /* headers known: queue a streaming response */
    XS_FULL,      /* whole body in x->out: queue it */
    XS_FAILED,    /* nothing from the provider: queue x->err */
    XS_RESPONDED, /* a response is queued */
};

/* One client connection, tracked for the deadlines libmicrohttpd does not
 * have: its idle timer restarts on every byte, so a client that sends one
 * byte a second would hold a slot for ever. The reaper thread cuts a
 * connection whose head is late or whose body is too slow by shutting its
 * socket down; libmicrohttpd then sees the end and closes it. */
enum cphase { CP_HEAD, CP_BODY, CP_BUSY };

struct conn {
    struct conn *prev, *next; /* guarded by server.conns_lock */
    int fd;
    bool reserve;                    /* accepted beyond max-connections */
    bool cut;                        /* the reaper shut it down */
    _Atomic int phase;               /* enum cphase */
    atomic_int_fast64_t deadline;    /* CP_HEAD: head due by (monotonic ms) */
    atomic_int_fast64_t body_start;  /* CP_BODY: when the head was complete */
    atomic_uint_fast64_t body_bytes; /* CP_BODY: bytes read since */
};

struct server {
    const struct cfg *cfg;
    struct up_pool *pool;
    struct cache *cache;  /* the caller's; NULL when the cache is off */
    struct chat *chat;    /* the request policy over it, or NULL */
    struct ratelimit *rl; /* NULL when no rate limit is set */
    struct auth *auth;
    struct admin admin;
    struct metrics *met;
    struct MHD_Daemon *mhd;
    char addr[64];
    atomic_bool draining;
    MHD_socket quiesced; /* the listening socket after server_drain, closed by server_stop */
    atomic_size_t inflight;

    /* Connection deadlines (struct conn). */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_wake;
    struct conn *conns;
    size_t nconns;
    bool reaper_on, reaper_stop;
    pthread_t reaper;
    atomic_uint_fast64_t cut_total;
};

struct exch {
    atomic_uint refs;
    pthread_mutex_t lock;
    struct server *srv;
    struct MHD_Connection *conn;
    struct conn *track;
    /* The request target: as received until the head is checked, then
     * normalised (front_target); routed and forwarded as it is then. */
    char *uri;
    size_t plen; /* length of its path (before '?') */
    enum rkind kind;
    bool early;        /* refused from the head: answer x->err once the body is drained */
    bool close;        /* close the connection after the answer */
    bool www_basic;    /* a 401 that asks a browser for the admin key */
    char *early_reply; /* the admin API's own refusal (status in err.status), or NULL */
    size_t early_len;
    const char *allow; /* methods for the Allow header of a 405 */
    const char *method;
    char id[REQ_ID_MAX + 1];
    bool client_id;     /* the client chose the request id */
    const char *tenant; /* the client key's tenant, when client keys are on */
    struct timespec t0;

    /* Request body. */
    struct buf body;
    bool too_large;

    /* Cache policy for a chat completion; NULL on other routes. */
    struct chat_req *chat;

    /* Upstream side; guarded by lock from XS_WAIT on. */
    enum xstate state;
    struct up_xfer *xfer; /* NULL once on_done ran */
    bool suspended;       /* we suspended the connection and owe it a resume */
    bool closed;          /* libmicrohttpd completed the request */
    bool streaming;
    bool sse;
    bool paused; /* the transfer is paused for back-pressure */
    bool up_done;
    int up_err;
    long up_status;
    int64_t up_length;
    struct buf rh;  /* relayed response headers, "name\0value\0" pairs */
    struct buf out; /* response bytes not yet sent (all of them in XS_FULL) */
    size_t out_off;
    struct oai_error err;
    struct timespec t_up0, t_up1;
    unsigned attempts;
    char provider[UP_NAME_MAX];
    uint8_t client[RL_KEY_LEN]; /* rate-limit key, when rate limits are on */
    char tail[512];             /* the answer's last bytes, for its usage */
    size_t tail_len;
    bool no_retry;    /* send x-should-retry: false */
    bool retry_after; /* send Retry-After: retry_after_s (rate limited) */
    char retry_after_s[24];

    /* Accounting for the log line. */
    int status;
    size_t bytes_in, bytes_out;
};

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return clock_ms_between(a, b);
}

static void exch_unref(struct exch *x)
{
    if (atomic_fetch_sub(&x->refs, 1) != 1)
        return;
    if (x->chat) {
        /* A leader that never reached on_done must still release its
         * waiters. */
        chat_flight_done(x->srv->chat, x->chat);
        chat_req_fini(x->chat);
        free(x->chat);
    }
    atomic_fetch_sub(&x->srv->inflight, 1);
    pthread_mutex_destroy(&x->lock);
    free(x->uri);
    free(x->early_reply);
    buf_free(&x->body);
    buf_free(&x->rh);
    buf_free(&x->out);
    free(x);
}

/* Wall clock in milliseconds, the cache's time base. */
static int64_t wall_now(void)
{
    return clock_wall_ms();
}

/* Monotonic clock in milliseconds, for connection deadlines. */
static int64_t mono_ms(void)
{
    return clock_mono_ms();
}

static bool valid_client_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if ((unsigned char)s[n] <= ' ' || (unsigned char)s[n] >= 0x7f || s[n] == '"' ||
            s[n] == '\\')
            return false;
    return n > 0 && n <= REQ_ID_MAX;
}

/* ---- responses ---------------------------------------------------------- */

static void add_header(void *r, const char *name, const char *value)
{
    MHD_add_response_header(r, name, value);
}

static void add_common_headers(struct exch *x, struct MHD_Response *r)
{
    MHD_add_response_header(r, "x-request-id", x->id);
    if (x->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, x->allow);
    if (x->www_basic)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"parrot dashboard\", charset=\"UTF-8\"");
    if (x->no_retry)
        MHD_add_response_header(r, "x-should-retry", "false");
    if (x->retry_after)
        MHD_add_response_header(r, "Retry-After", x->retry_after_s);
    if (x->chat)
        chat_headers(x->chat, wall_now(), add_header, r);
    if (x->close || atomic_load(&x->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Adds parrot's headers, queues r (the connection keeps its own reference)
 * and records the status for the log. */
static enum MHD_Result respond(struct exch *x, int status, struct MHD_Response *r)
{
    enum MHD_Result ret;

    add_common_headers(x, r);
    ret = MHD_queue_response(x->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    x->status = status;
    x->state = XS_RESPONDED;
    return ret;
}

static enum MHD_Result queue_buffer(struct exch *x, int status, const char *ctype, char *body,
                                    size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);

    if (!r)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    x->bytes_out = len;
    return respond(x, status, r);
}

static enum MHD_Result queue_error(struct exch *x, const struct oai_error *e)
{
    size_t len = 0;
    char *json = oai_error_json(e, &len);

    if (!json)
        return MHD_NO;
    return queue_buffer(x, e->status, "application/json", json, len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result queue_json(struct exch *x, int status, const char *json)
{
    return queue_buffer(x, status, "application/json", (char *)json, strlen(json),
                        MHD_RESPMEM_PERSISTENT);
}

static void add_relayed_headers(struct exch *x, struct MHD_Response *r)
{
    size_t off = 0;

    while (off < x->rh.len) {
        const char *name = x->rh.p + off;
        const char *value = name + strlen(name) + 1;
        off = (size_t)(value - x->rh.p) + strlen(value) + 1;
        MHD_add_response_header(r, name, value);
    }
}

/* libmicrohttpd pulls streamed body bytes from here (an HTTP worker thread). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct exch *x = cls;
    ssize_t ret;

    (void)pos;
    pthread_mutex_lock(&x->lock);
    if (x->out_off < x->out.len) {
        size_t n = x->out.len - x->out_off;
        if (n > max)
            n = max;
        memcpy(buf, x->out.p + x->out_off, n);
        x->out_off += n;
        if (x->out_off == x->out.len) {
            x->out_off = 0;
            buf_reset(&x->out);
        }
        if (x->paused && x->xfer && x->out.len - x->out_off < OUT_LOW) {
            x->paused = false;
            up_xfer_unpause(x->xfer);
        }
        x->bytes_out += n;
        ret = (ssize_t)n;
    } else if (x->up_done) {
        /* A plain body that stopped short must not look complete: close the
         * connection. SSE got an error event appended in on_done instead. */
        ret = (x->up_err == UP_OK || x->sse) ? MHD_CONTENT_READER_END_OF_STREAM
                                             : MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        x->suspended = true;
        MHD_suspend_connection(x->conn);
        ret = 0;
    }
    pthread_mutex_unlock(&x->lock);
    return ret;
}

static void stream_free(void *cls)
{
    exch_unref(cls);
}

static enum MHD_Result queue_stream(struct exch *x)
{
    uint64_t size = MHD_SIZE_UNKNOWN;
    struct MHD_Response *r;

    if (x->up_length >= 0 && !x->sse && strcmp(x->method, "HEAD") != 0)
        size = (uint64_t)x->up_length;
    atomic_fetch_add(&x->refs, 1);
    r = MHD_create_response_from_callback(size, 32 * 1024, stream_read, x, stream_free);
    if (!r) {
        exch_unref(x);
        return MHD_NO;
    }
    add_relayed_headers(x, r);
    return respond(x, (int)x->up_status, r);
}

static enum MHD_Result queue_full(struct exch *x)
{
    struct MHD_Response *r;
    size_t len = x->out.len;

    /* The response takes the buffer over. */
    r = MHD_create_response_from_buffer(len, len ? x->out.p : (void *)"",
                                        len ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    if (len)
        buf_take(&x->out, NULL);
    add_relayed_headers(x, r);
    x->bytes_out = len;
    return respond(x, (int)x->up_status, r);
}

/* ---- upstream callbacks (upstream thread) ------------------------------- */

static void resume(struct exch *x)
{
    if (x->suspended && !x->closed) {
        x->suspended = false;
        MHD_resume_connection(x->conn);
    }
}

static bool name_is(const struct up_header *h, const char *name)
{
    return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

static void keep_header(struct exch *x, const char *name, size_t nl, const char *v, size_t vl)
{
    static const char nul = '\0';
    /* The provider's header block is capped at 64 KiB by the pool. */
    const size_t cap = 128 * 1024;

    if (buf_append(&x->rh, name, nl, cap) || buf_append(&x->rh, &nul, 1, cap) ||
        buf_append(&x->rh, v, vl, cap) || buf_append(&x->rh, &nul, 1, cap))
        log_msg(LOG_WARN, "response header dropped", "out of memory");
}

/* Tokens the answer used, from the usage in its last bytes; 0 if none. */
static int64_t tail_tokens(const struct exch *x)
{
    static const char key[] = "\"total_tokens\":";
    const char *p = NULL;

    for (size_t i = 0; i + sizeof(key) - 1 <= x->tail_len; i++)
        if (memcmp(x->tail + i, key, sizeof(key) - 1) == 0)
            p = x->tail + i + sizeof(key) - 1;
    if (!p)
        return 0;
    return strtoll(p, NULL, 10);
}

static void keep_tail(struct exch *x, const char *p, size_t n)
{
    if (n >= sizeof(x->tail)) {
        memcpy(x->tail, p + n - sizeof(x->tail), sizeof(x->tail));
        x->tail_len = sizeof(x->tail);
        return;
    }
    if (x->tail_len + n > sizeof(x->tail)) {
        size_t drop = x->tail_len + n - sizeof(x->tail);
        memmove(x->tail, x->tail + drop, x->tail_len - drop);
        x->tail_len -= drop;
    }
    memcpy(x->tail + x->tail_len, p, n);
    x->tail_len += n;
}

/* Record the time since t0 in histogram h. */
static void observe_since(struct metrics *m, enum metrics_hist h, const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_observe(m, h, ms_between(t0, &now) / 1e3);
}

static void on_head(void *ud, const struct up_head *hd)
{
    struct exch *x = ud;
    const struct up_header *h = hd->headers;
    size_t n = hd->nheaders;
    long status = hd->status;
    int64_t length = hd->content_length;

    pthread_mutex_lock(&x->lock);
    observe_since(x->srv->met, MH_FIRST_BYTE, &x->t_up0);
    x->up_status = status;
    x->up_length = length;
    /* parrot already retried; an SDK retrying too would multiply them. */
    x->no_retry = hd->exhausted;
    for (size_t i = 0; i < n; i++) {
        if (name_is(&h[i], "content-type") && h[i].value_len >= 17 &&
            strncasecmp(h[i].value, "text/event-stream", 17) == 0)
            x->sse = true;
        if (name_is(&h[i], "x-request-id"))
            keep_header(x, "x-upstream-request-id", 21, h[i].value, h[i].value_len);
        else if (hdr_to_client(h[i].name, h[i].name_len))
            keep_header(x, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (x->sse || length > (int64_t)FULL_MAX || status < 200 || status == 204) {
        x->streaming = true;
        if (x->state == XS_WAIT) {
            x->state = XS_STREAM;
            resume(x);
        }
    }
    pthread_mutex_unlock(&x->lock);
}

static int on_body(void *ud, const char *p, size_t n)
{
    struct exch *x = ud;
    int ret = 0;

    pthread_mutex_lock(&x->lock);
    if (x->closed) {
        /* The client is gone; the cancel is on its way. Drop the bytes. */
        pthread_mutex_unlock(&x->lock);
        return 0;
    }
    if (!x->streaming && x->out.len + n > FULL_MAX) {
        /* Larger than we collect whole: switch to streaming. */
        x->streaming = true;
        if (x->state == XS_WAIT) {
            x->state = XS_STREAM;
            resume(x);
        }
    }
    /* Out of memory pauses too: the client's draining frees room. The
     * buffer's own cap is never the limit: OUT_HIGH and FULL_MAX are. */
    if ((x->streaming && x->out.len - x->out_off >= OUT_HIGH) ||
        buf_append(&x->out, p, n, SIZE_MAX / 2) != 0) {
        x->paused = true;
        ret = UP_PAUSE;
    } else if (x->streaming) {
        if (x->chat && x->sse)
            chat_feed(x->chat, p, n);
        if (x->srv->rl)
            keep_tail(x, p, n);
        resume(x);
    }
    pthread_mutex_unlock(&x->lock);
    return ret;
}

static void set_upstream_error(struct exch *x, int err, const char *detail)
{
    static const char *const ue = "upstream_error";

    switch (err) {
    case UP_ETIMEDOUT:
        oai_error_set(&x->err, 504, ue, NULL, "upstream_timeout",
                      "The upstream provider did not answer in time (%s).", detail);
        break;
    case UP_ECLIENT:
        /* Nobody will read this; the status is for the log (nginx's 499). */
        oai_error_set(&x->err, 499, ue, NULL, "client_closed",
                      "The client closed the connection before the answer arrived.");
        break;
    case UP_ECANCELED:
        oai_error_set(&x->err, 503, ue, NULL, "shutting_down",
                      "parrot is shutting down; retry the request.");
        break;
    case UP_EBROKEN:
        oai_error_set(&x->err, 502, ue, NULL, "upstream_unreachable",
                      "The upstream connection broke before the response was complete (%s).",
                      detail);
        break;
    default:
        oai_error_set(&x->err, 502, ue, NULL, "upstream_unreachable",
                      "The upstream provider could not be reached (%s).", detail);
        break;
    }
}

static void on_done(void *ud, int err, const char *detail, const struct up_result *res)
{
    struct exch *x = ud;

    pthread_mutex_lock(&x->lock);
    clock_gettime(CLOCK_MONOTONIC, &x->t_up1);
    /* A cancelled transfer says nothing about the provider's speed. */
    if (err != UP_ECANCELED && err != UP_ECLIENT)
        metrics_observe(x->srv->met, MH_UPSTREAM, ms_between(&x->t_up0, &x->t_up1) / 1e3);
    x->attempts = res->attempts;
    if (x->srv->rl && err == UP_OK) {
        if (!x->streaming)
            keep_tail(x, x->out.p, x->out.len);
        rl_charge(x->srv->rl, x->client, tail_tokens(x), wall_now());
    }
    snprintf(x->provider, sizeof(x->provider), "%s", res->provider);
    if (err != UP_OK && res->exhausted)
        x->no_retry = true;
    x->xfer = NULL;
    x->up_done = true;
    x->up_err = err;
    if (err != UP_OK && err != UP_ECANCELED && err != UP_ECLIENT)
        log_msg(LOG_WARN, "upstream failed", detail);
    if (x->chat) {
        /* Store before the client is resumed, then let the requests waiting
         * behind this one look again. */
        chat_store(x->srv->chat, x->chat, err == UP_OK && !x->closed ? x->up_status : -1, x->sse,
                   x->streaming ? NULL : x->out.p, x->streaming ? 0 : x->out.len, wall_now());
        chat_flight_done(x->srv->chat, x->chat);
    }
    if (x->state == XS_WAIT) {
        if (err == UP_OK) {
            x->state = XS_FULL;
        } else {
            set_upstream_error(x, err, detail);
            x->state = XS_FAILED;
        }
    } else if (err != UP_OK && x->sse && !x->closed) {
        /* Mid-stream failure: the client already has a 200, so tell it in
         * the stream, as the OpenAI API does. */
        struct oai_error e;
        char *json;
        size_t jl = 0;

        set_upstream_error(x, err, detail);
        e = x->err;
        oai_error_set(&e, x->err.status, x->err.type, NULL, "upstream_stream_error", "%s",
                      x->err.message);
        json = oai_error_json(&e, &jl);
        if (json) {
            if (buf_append(&x->out, "data: ", 6, SIZE_MAX / 2) ||
                buf_append(&x->out, json, jl, SIZE_MAX / 2) ||
                buf_append(&x->out, "\n\n", 2, SIZE_MAX / 2))
                log_msg(LOG_WARN, "stream error event dropped", "out of memory");
            free(json);
        }
    }
    resume(x);
    pthread_mutex_unlock(&x->lock);
    exch_unref(x);
}

static const struct up_handler handler = {on_head, on_body, on_done};

/* ---- requests ----------------------------------------------------------- */

/* Request headers for the provider: "Name: value" lines, NUL-separated in one
 * buffer so that a single free() releases them. */
struct hdr_list {
    struct buf b;
    size_t off[REQ_HEADERS_MAX + 4];
    size_t n;
    const char *connection; /* the client's Connection header: what it names stays here */
    bool has_id;
    bool has_ctype;
    bool oom;
};

static void add_line(struct hdr_list *l, const char *name, const char *sep, const char *value)
{
    static const char nul = '\0';

    if (l->n >= sizeof(l->off) / sizeof(l->off[0])) {
        l->oom = true;
        return;
    }
    l->off[l->n] = l->b.len;
    /* libmicrohttpd's connection memory limit already bounds the total. */
    if (buf_puts(&l->b, name, SIZE_MAX / 2) || buf_puts(&l->b, sep, SIZE_MAX / 2) ||
        buf_puts(&l->b, value, SIZE_MAX / 2) || buf_append(&l->b, &nul, 1, SIZE_MAX / 2)) {
        l->oom = true;
        return;
    }
    l->n++;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct hdr_list *l = cls;
    size_t kl = strlen(key);

    (void)kind;
    if (!value || !hdr_to_upstream(key, kl) || hdr_listed(l->connection, key, kl))
        return MHD_YES;
    if (strcasecmp(key, "x-request-id") == 0)
        l->has_id = true;
    if (strcasecmp(key, "content-type") == 0)
        l->has_ctype = true;
    if (l->n >= REQ_HEADERS_MAX) {
        l->oom = true;
        return MHD_NO;
    }
    add_line(l, key, ": ", value);
    return l->oom ? MHD_NO : MHD_YES;
}

/* The client for rate limits, hashed: the client key's tenant when client
 * keys are on, else the configured tenant header's value, else the bearer
 * token. The token, not the header: "Bearer k", "bearer k" and "Bearer  k"
 * are one credential and must share one bucket. */
static void client_key(struct exch *x, uint8_t *key)
{
    const char *h = x->srv->cfg->tenant_header;
    const char *v = x->tenant;
    size_t n = 0;

    if (!v && h)
        v = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, h);
    if (v) {
        n = strlen(v);
    } else {
        v = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization");
        const char *token = auth_bearer(v, &n);
        if (token)
            v = token;
        else
            n = v ? strlen(v) : 0;
    }
    SHA256((const unsigned char *)(v ? v : ""), n, key);
}

/* A request about to cost provider budget: within the client's limits? */
static bool within_limits(struct exch *x)
{
    const char *which = "requests";
    int64_t wait;

    client_key(x, x->client);
    wait = rl_take(x->srv->rl, x->client, wall_now(), &which);
    if (wait <= 0)
        return true;
    oai_error_set(&x->err, 429, which, NULL, "rate_limit_exceeded",
                  "Rate limit reached for this client on %s per minute. Retry in %lld ms.", which,
                  (long long)wait);
    x->retry_after = true;
    snprintf(x->retry_after_s, sizeof(x->retry_after_s), "%lld", (long long)(wait + 999) / 1000);
    return false;
}

static enum MHD_Result forward(struct exch *x, const char *path)
{
    struct server *s = x->srv;
    struct hdr_list l = {.n = 0};
    struct up_req req;
    int rc;

    const char *lines[REQ_HEADERS_MAX + 4];
    const union MHD_ConnectionInfo *ci;

    if (s->rl && !within_limits(x)) {
        if (x->chat)
            chat_flight_done(s->chat, x->chat);
        return queue_error(x, &x->err);
    }

    l.connection =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    MHD_get_connection_values(x->conn, MHD_HEADER_KIND, collect_header, &l);
    if (!l.has_id)
        add_line(&l, "x-request-id", ": ", x->id);
    /* Keep curl from inventing a form content type or a 100-continue. */
    if (!l.has_ctype)
        add_line(&l, "Content-Type", ":", "");
    add_line(&l, "Expect", ":", "");
    if (l.oom) {
        buf_free(&l.b);
        if (x->chat)
            chat_flight_done(s->chat, x->chat);
        oai_error_set(&x->err, 431, "invalid_request_error", NULL, "headers_too_large",
                      "Too many request headers (at most %d are forwarded).", REQ_HEADERS_MAX);
        return queue_error(x, &x->err);
    }
    for (size_t i = 0; i < l.n; i++)
        lines[i] = l.b.p + l.off[i];
    req = (struct up_req){.method = x->method,
                          .path = path,
                          .headers = lines,
                          .nheaders = l.n,
                          .body = x->body.p,
                          .body_len = x->body.len,
                          .client_fd = -1};
    ci = MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        req.client_fd = ci->connect_fd;

    pthread_mutex_lock(&x->lock);
    atomic_fetch_add(&x->refs, 1); /* the transfer's, dropped in on_done */
    clock_gettime(CLOCK_MONOTONIC, &x->t_up0);
    x->state = XS_WAIT;
    rc = up_pool_submit(s->pool, &req, &handler, x, &x->xfer);
    buf_free(&l.b); /* curl copied the lines */
    if (rc != 0) {
        pthread_mutex_unlock(&x->lock);
        atomic_fetch_sub(&x->refs, 1);
        if (x->chat)
            chat_flight_done(s->chat, x->chat);
        set_upstream_error(x, rc, "could not start the transfer");
        return queue_error(x, &x->err);
    }
    /* on_head/on_done wait for x->lock, so they see the suspension. */
    x->suspended = true;
    MHD_suspend_connection(x->conn);
    pthread_mutex_unlock(&x->lock);
    return MHD_YES;
}

/* ---- chat completions through the cache ------------------------------- */

static enum MHD_Result serve_hit(struct exch *x)
{
    size_t len = 0;
    char *body = chat_hit_body(x->chat, wall_now(), &len);

    if (!body) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return queue_error(x, &x->err);
    }
    return queue_buffer(x, 200, x->chat->stream ? "text/event-stream" : "application/json", body,
                        len, MHD_RESPMEM_MUST_FREE);
}

/* Wake a suspended request into state st and drop the reference its waker
 * held (any thread). */
static void wake_as(struct exch *x, enum xstate st)
{
    pthread_mutex_lock(&x->lock);
    x->state = st;
    resume(x);
    pthread_mutex_unlock(&x->lock);
    exch_unref(x);
}

/* Suspend x in state st when start(x) arranged a wake-up (wake_as), which
 * then owns a reference to x. Returns false, x untouched, when start
 * declined. */
static bool wait_suspended(struct exch *x, enum xstate st, bool (*start)(struct exch *x))
{
    pthread_mutex_lock(&x->lock);
    atomic_fetch_add(&x->refs, 1);
    if (start(x)) {
        /* The wake-up takes x->lock, so it sees the suspension. */
        x->state = st;
        x->suspended = true;
        MHD_suspend_connection(x->conn);
        pthread_mutex_unlock(&x->lock);
        return true;
    }
    pthread_mutex_unlock(&x->lock);
    atomic_fetch_sub(&x->refs, 1);
    return false;
}

/* A request waiting behind an identical one is woken (any thread). */
static void flight_wake(struct flight_waiter *w)
{
    struct chat_req *cr = (struct chat_req *)((char *)w - offsetof(struct chat_req, waiter));

    wake_as(cr->owner, XS_RETRY);
}

static bool join_flight(struct exch *x)
{
    return chat_flight_join(x->srv->chat, x->chat, flight_wake);
}

/* After the cache said miss: wait behind an identical request in flight,
 * or go to the provider. */
static enum MHD_Result chat_miss(struct exch *x)
{
    if (wait_suspended(x, XS_FLIGHT, join_flight))
        return MHD_YES;
    return forward(x, x->uri + 3);
}

/* The remote embedder finished x's vector (its thread). */
static void embed_wake(struct chat_req *cr)
{
    wake_as(cr->owner, XS_EMBEDDED);
}

static bool start_embed(struct exch *x)
{
    return chat_embed(x->srv->chat, x->chat, embed_wake) == 0;
}

static enum MHD_Result chat_verdict(struct exch *x, enum chat_verdict v);

/* The lookup needs a remote embedding: wait for it suspended, or go on
 * without one when the embedder cannot take it. */
static enum MHD_Result chat_embed_wait(struct exch *x)
{
    if (wait_suspended(x, XS_EMBED, start_embed))
        return MHD_YES;
    return chat_verdict(x, chat_lookup(x->srv->chat, x->chat, wall_now()));
}

static enum MHD_Result chat_verdict(struct exch *x, enum chat_verdict v)
{
    switch (v) {
    case CHAT_EMBED: return chat_embed_wait(x);
    case CHAT_HIT: return serve_hit(x);
    case CHAT_REFUSE:
        oai_error_set(&x->err, 504, "invalid_request_error", NULL, "cache_miss",
                      "Nothing cached answers this request and Cache-Control says "
                      "only-if-cached.");
        return queue_error(x, &x->err);
    case CHAT_MISS: return chat_miss(x);
    case CHAT_BYPASS: break;
    }
    return forward(x, x->uri + 3);
}

static enum MHD_Result chat_route(struct exch *x)
{
    struct server *s = x->srv;
    const char *ct =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    cJSON *doc = NULL;

    if (oai_chat_parse(ct, x->body.p, x->body.len, &doc, &x->err) != 0)
        return queue_error(x, &x->err);
    x->chat = malloc(sizeof(*x->chat));
    if (!x->chat) {
        cJSON_Delete(doc);
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return queue_error(x, &x->err);
    }
    /* With client keys the key's tenant is the scope, not the key itself. */
    chat_req_init(
        s->chat, x->chat, doc, x->body.p, x->body.len,
        x->tenant ? NULL : MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization"),
        x->tenant ? x->tenant
        : s->cfg->tenant_header
            ? MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, s->cfg->tenant_header)
            : NULL,
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Cache-Control"),
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-ttl"));
    x->chat->owner = x;
    cJSON_Delete(doc);
    if (!s->chat)
        return forward(x, x->uri + 3);
    return chat_verdict(x, chat_lookup(s->chat, x->chat, wall_now()));
}

/* Per-provider counters from the pool, in Prometheus text. */
/* The cache's Prometheus text. */
static int cache_metrics(struct server *s, struct buf *b)
{
    struct chat_stats cs;
    struct cache_stats st;

    chat_get_stats(s->chat, &cs);
    cache_get_stats(s->cache, &st);
    return metrics_cache(b, &cs, &st);
}

static int provider_metrics(struct up_pool *pool, struct buf *b)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"parrot_upstream_attempts_total", "counter", "Requests sent to each provider."},
        {"parrot_upstream_failures_total", "counter",
         "Attempts that failed: connection error, timeout, 408, 409, 429 or 5xx."},
        {"parrot_upstream_retries_total", "counter", "Attempts that were retries."},
        {"parrot_upstream_failovers_total", "counter",
         "Retries that moved to this provider from another."},
        {"parrot_upstream_breaker_state", "gauge",
         "Circuit breaker: 0 closed, 1 half-open, 2 open."},
    };
    struct up_provider_stats st[UP_MAX_PROVIDERS];
    size_t n = up_pool_provider_stats(pool, st, UP_MAX_PROVIDERS);
    char line[512];
    int rc = 0;

    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        rc |= metrics_family(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v = f == 0   ? st[i].attempts
                         : f == 1 ? st[i].failures
                         : f == 2 ? st[i].retries
                         : f == 3 ? st[i].failovers
                                  : (uint64_t)st[i].breaker;
            snprintf(line, sizeof(line), "%s{provider=\"%.159s\"} %llu\n", fam[f].name, st[i].name,
                     (unsigned long long)v);
            rc |= buf_puts(b, line, 1u << 20);
        }
    }
    return rc;
}

static enum MHD_Result metrics(struct exch *x)
{
    struct buf b = {0};
    char line[256];

    snprintf(line, sizeof(line),
             "# HELP parrot_inflight_requests Requests being served.\n"
             "# TYPE parrot_inflight_requests gauge\nparrot_inflight_requests %zu\n",
             atomic_load(&x->srv->inflight));
    if (buf_puts(&b, line, 1u << 20) || provider_metrics(x->srv->pool, &b) ||
        (x->srv->chat && cache_metrics(x->srv, &b)) || metrics_render(x->srv->met, &b)) {
        buf_free(&b);
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return queue_error(x, &x->err);
    }
    return queue_buffer(x, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
                        MHD_RESPMEM_MUST_FREE);
}

static const char *query_arg(void *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result admin_route(struct exch *x, const char *path)
{
    struct admin_reply rep;
    struct admin_call c = {
        .method = x->method,
        .path = path,
        .authorization = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization"),
        .body = x->body.p,
        .body_len = x->body.len,
        .arg = query_arg,
        .arg_ud = x->conn,
    };

    if (admin_handle(&x->srv->admin, &c, wall_now(), &rep) != 0) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return queue_error(x, &x->err);
    }
    return queue_buffer(x, rep.status, "application/json", rep.body, rep.len,
                        MHD_RESPMEM_MUST_FREE);
}

/* /dashboard (the page) and /dashboard/stats.json (what it polls). Both
 * show aggregate numbers only, like /metrics: no prompts, no keys. */
static enum MHD_Result dashboard(struct exch *x, const char *path)
{
    struct server *s = x->srv;
    size_t len = 0;
    char *json;

    if (path[10] == '\0' || path[11] == '\0') {
        const char *page = dashboard_page(&len);
        return queue_buffer(x, 200, "text/html; charset=utf-8", (char *)page, len,
                            MHD_RESPMEM_PERSISTENT);
    }
    json = dashboard_stats(s->chat, s->pool, s->met, atomic_load(&s->inflight), &len);
    if (!json) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return queue_error(x, &x->err);
    }
    return queue_buffer(x, 200, "application/json", json, len, MHD_RESPMEM_MUST_FREE);
}

/* /readyz: ready while parrot can serve, which it can with every provider
 * down (hits still work; misses get a clear 502), so that an orchestrator
 * does not take the application's pod out of service for the provider's
 * outage. /readyz?upstream=1 also asks for a provider whose breaker is not
 * open, for a check that wants that. */
static enum MHD_Result ready(struct exch *x)
{
    struct server *s = x->srv;
    const char *up = MHD_lookup_connection_value(x->conn, MHD_GET_ARGUMENT_KIND, "upstream");
    const char *problem = cache_problem(s->cache);
    char body[256];
    char *copy;

    if (atomic_load(&s->draining))
        return queue_json(x, 503, "{\"status\":\"draining\"}");
    if (up && strcmp(up, "0") != 0 && !up_pool_ready(s->pool))
        return queue_json(x, 503,
                          "{\"status\":\"no_upstream\",\"detail\":\"every "
                          "provider's circuit breaker is open\"}");
    if (!problem)
        return queue_json(x, 200, "{\"status\":\"ready\"}");
    /* Still ready: answers are served and forwarded, only not logged. */
    snprintf(body, sizeof(body), "{\"status\":\"ready\",\"detail\":\"%s\"}", problem);
    copy = strdup(body);
    if (!copy)
        return queue_json(x, 200, "{\"status\":\"ready\"}");
    return queue_buffer(x, 200, "application/json", copy, strlen(copy), MHD_RESPMEM_MUST_FREE);
}

/* The request's path: the normalised target up to its query. */
static const char *req_path(const struct exch *x)
{
    return x->uri + strlen(x->uri) + 1;
}

/* Routes a request whose body has been read (admit() accepted its head). */
static enum MHD_Result route(struct exch *x)
{
    struct server *s = x->srv;

    if (x->too_large) {
        oai_error_set(&x->err, 413, "invalid_request_error", NULL, "request_too_large",
                      "The request body exceeds the limit of %zu bytes (max-body-size).",
                      s->cfg->max_body_size);
        return queue_error(x, &x->err);
    }
    switch (x->kind) {
    case RK_HEALTH: return queue_json(x, 200, "{\"status\":\"ok\"}");
    case RK_READY: return ready(x);
    case RK_METRICS: return metrics(x);
    case RK_ADMIN: return admin_route(x, req_path(x));
    case RK_DASHBOARD: return dashboard(x, req_path(x));
    case RK_CHAT: return chat_route(x);
    case RK_V1: break;
    }
    /* Everything under /v1 goes to the provider, query string and all. */
    return forward(x, x->uri + 3);
}

/* ---- the request head --------------------------------------------------- */

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    return front_head_add(cls, key, key_size, value ? value : "", value ? value_size : 0) ? MHD_YES
                                                                                          : MHD_NO;
}

/* The head as received is well-formed: header names and values, framing,
 * Host, and a target that normalises. On false x->err says why; the
 * request must be answered at once and the connection closed, since its
 * framing cannot be trusted. */
static bool head_ok(struct exch *x, const char *version)
{
    char target[FRONT_TARGET_MAX + 1];
    struct front_head h;
    const char *why;
    size_t plen, tl;
    char *t;

    front_head_init(&h, x->srv->cfg->tenant_header);
    MHD_get_connection_values_n(x->conn, MHD_HEADER_KIND, scan_header, &h);
    if (h.status || !front_head_done(&h, strcmp(version, MHD_HTTP_VERSION_1_1) == 0)) {
        oai_error_set(&x->err, h.status, "invalid_request_error", NULL, h.code, "%s", h.why);
        return false;
    }
    if (front_target(x->uri, target, &plen, &why) != 0) {
        oai_error_set(&x->err, 400, "invalid_request_error", NULL, "invalid_path", "%s", why);
        return false;
    }
    /* One allocation: "path?query\0path\0" (req_path() finds the second). */
    tl = strlen(target);
    t = malloc(tl + plen + 2);
    if (!t) {
        oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
        return false;
    }
    memcpy(t, target, tl + 1);
    memcpy(t + tl + 1, target, plen);
    t[tl + 1 + plen] = '\0';
    free(x->uri);
    x->uri = t;
    x->plen = plen;
    return true;
}

static bool path_is(const struct exch *x, const char *p)
{
    return strlen(p) == x->plen && memcmp(x->uri, p, x->plen) == 0;
}

static bool path_under(const struct exch *x, const char *p)
{
    size_t n = strlen(p);
    return x->plen >= n && memcmp(x->uri, p, n) == 0 && (x->plen == n || x->uri[n] == '/');
}

static bool peer_on_loopback(const struct exch *x)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct sockaddr_storage ss = {0};

    if (!ci || !ci->client_addr)
        return false;
    memcpy(&ss, ci->client_addr,
           ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    return cfg_addr_is_loopback(&ss);
}

/* Sets x->err to a 405 that names the allowed methods. */
static bool not_allowed(struct exch *x, const char *allow)
{
    x->allow = allow;
    oai_error_set(&x->err, 405, "invalid_request_error", NULL, "method_not_allowed",
                  "Method %s is not allowed on %.200s; use %s.", x->method, req_path(x), allow);
    return false;
}

static bool unauthorized(struct exch *x, const char *message)
{
    oai_error_set(&x->err, 401, "invalid_request_error", NULL, "invalid_api_key", "%s", message);
    return false;
}

/* The route, decided from the path alone; false with x->err for a 404. */
static bool classify(struct exch *x)
{
    if (path_is(x, "/healthz"))
        x->kind = RK_HEALTH;
    else if (path_is(x, "/readyz"))
        x->kind = RK_READY;
    else if (path_is(x, "/metrics"))
        x->kind = RK_METRICS;
    else if (path_under(x, "/admin"))
        x->kind = RK_ADMIN;
    else if (path_is(x, "/dashboard") || path_is(x, "/dashboard/") ||
             path_is(x, "/dashboard/stats.json"))
        x->kind = RK_DASHBOARD;
    else if (path_is(x, "/v1/chat/completions") && strcmp(x->method, "POST") == 0)
        x->kind = RK_CHAT;
    else if (path_under(x, "/v1"))
        x->kind = RK_V1;
    else {
        /* The commonest set-up mistake: a base URL without /v1. */
        oai_error_set(&x->err, 404, "invalid_request_error", NULL, "unknown_url",
                      "Invalid URL (%s %.200s). parrot serves the OpenAI API under /v1: set the "
                      "client's base URL to http://HOST:PORT/v1.",
                      x->method, req_path(x));
        return false;
    }
    return true;
}

/* Whether the request may go on to its body, decided from its head: the
 * route, the method, the keys and the declared length. Nothing of the body
 * is read (and so no memory spent on it) before this says yes. Returns
 * false with x->err set to refuse. */
static bool admit(struct exch *x)
{
    struct server *s = x->srv;
    const struct cfg *c = s->cfg;
    const char *authz = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Authorization");
    const char *cl =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *ttl;
    bool get = strcmp(x->method, "GET") == 0 || strcmp(x->method, "HEAD") == 0;

    if (!classify(x))
        return false;
    if (x->track && x->track->reserve && x->kind != RK_HEALTH && x->kind != RK_READY) {
        x->close = true;
        oai_error_set(&x->err, 503, "server_error", NULL, "too_many_connections",
                      "parrot is at its connection limit (max-connections); retry shortly.");
        return false;
    }
    switch (x->kind) {
    case RK_HEALTH:
    case RK_READY:
    case RK_METRICS:
    case RK_DASHBOARD:
        if (!get)
            return not_allowed(x, "GET, HEAD");
        /* /metrics names models and providers: only loopback (a sidecar's
         * scraper, an operator's curl) reads it without the admin key,
         * unless the operator opened it. */
        if (x->kind == RK_METRICS && !c->metrics_open && !peer_on_loopback(x) &&
            !auth_admin(s->auth, authz))
            return unauthorized(x, "/metrics needs the admin key off loopback (Authorization: "
                                   "Bearer <admin key>), or start parrot with --metrics-open.");
        /* With client keys, clients are not trusted to see each other's
         * models and savings: the dashboard takes the admin key (a browser
         * asks for it: type it as the password). */
        if (x->kind == RK_DASHBOARD && auth_has_client_keys(s->auth) &&
            !auth_admin(s->auth, authz)) {
            x->www_basic = true;
            return unauthorized(x, "The dashboard needs the admin key when client keys are on: "
                                   "send Authorization: Bearer <admin key>, or give it as the "
                                   "password when the browser asks.");
        }
        break;
    case RK_ADMIN:
        if (!auth_admin(s->auth, authz)) {
            /* The admin API answers (and logs) a refused call itself; asked
             * here, before the body is read, with no body. */
            struct admin_reply rep;
            struct admin_call ac = {.method = x->method,
                                    .path = req_path(x),
                                    .authorization = authz,
                                    .arg = query_arg,
                                    .arg_ud = x->conn};
            if (admin_handle(&s->admin, &ac, wall_now(), &rep) != 0) {
                oai_error_set(&x->err, 500, "server_error", NULL, "out_of_memory",
                              "Out of memory.");
                return false;
            }
            x->early_reply = rep.body;
            x->early_len = rep.len;
            x->err.status = rep.status;
            return false;
        }
        break;
    case RK_CHAT:
    case RK_V1:
        if (atomic_load(&s->draining)) {
            oai_error_set(&x->err, 503, "upstream_error", NULL, "shutting_down",
                          "parrot is shutting down; retry the request.");
            return false;
        }
        if (auth_has_client_keys(s->auth) && !(x->tenant = auth_client(s->auth, authz)))
            return unauthorized(x, "Missing or unknown API key: send Authorization: Bearer <key> "
                                   "with a client key configured in this parrot.");
        if (x->kind == RK_CHAT &&
            oai_check_json_type(
                MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
                &x->err) != 0)
            return false;
        ttl = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-parrot-ttl");
        if (x->kind == RK_CHAT && ttl &&
            (!*ttl || strspn(ttl, "0123456789") != strlen(ttl) || strlen(ttl) > 12)) {
            oai_error_set(&x->err, 400, "invalid_request_error", NULL, "invalid_header",
                          "x-parrot-ttl must be a whole number of seconds (got '%.40s').", ttl);
            return false;
        }
        break;
    }
    if (cl && strtoull(cl, NULL, 10) > c->max_body_size) {
        x->too_large = true;
        oai_error_set(&x->err, 413, "invalid_request_error", NULL, "request_too_large",
                      "The request body exceeds the limit of %zu bytes (max-body-size).",
                      c->max_body_size);
        return false;
    }
    return true;
}

/* Answers a request refused from its head (admit()). */
static enum MHD_Result answer_early(struct exch *x)
{
    char *body = x->early_reply;

    if (!body)
        return queue_error(x, &x->err);
    x->early_reply = NULL;
    return queue_buffer(x, x->err.status, "application/json", body, x->early_len,
                        MHD_RESPMEM_MUST_FREE);
}

/* How much of a refused request's body is read and dropped. */
static uint64_t drain_limit(const struct server *s)
{
    uint64_t twice = 2 * (uint64_t)s->cfg->max_body_size;
    return twice > DRAIN_MIN ? twice : DRAIN_MIN;
}

/* The tracked connection of conn (NULL if it could not be tracked). */
static struct conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct server *s = cls;
    struct exch *x = calloc(1, sizeof(*x));

    if (!x)
        return NULL;
    x->uri = strdup(uri);
    if (!x->uri) {
        free(x);
        return NULL;
    }
    atomic_init(&x->refs, 1);
    pthread_mutex_init(&x->lock, NULL);
    x->srv = s;
    x->up_length = -1;
    x->track = conn_of(conn);
    if (x->track) {
        /* A request line has arrived: the rest of its head is due within
         * the head timeout (the first request's since the accept). */
        int64_t due = mono_ms() + s->cfg->header_timeout_ms;
        if (atomic_load(&x->track->deadline) > due)
            atomic_store(&x->track->deadline, due);
    }
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    atomic_fetch_add(&s->inflight, 1);
    return x;
}

/* The head has been read: check it, decide the route, and either go on to
 * the body or refuse. */
static enum MHD_Result on_head_received(struct exch *x, const char *version)
{
    struct server *s = x->srv;
    const char *cid = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-id");
    const char *cl =
        MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (cid && valid_client_id(cid)) {
        snprintf(x->id, sizeof(x->id), "%s", cid);
        x->client_id = true;
    } else {
        /* Random, not counted: a counter would tell every client how many
         * requests others made. */
        snprintf(x->id, sizeof(x->id), "req_%016llx", (unsigned long long)rand_u64());
    }
    x->state = XS_BODY;
    if (x->track) {
        atomic_store(&x->track->body_start, mono_ms());
        atomic_store(&x->track->body_bytes, 0);
        atomic_store(&x->track->phase, CP_BODY);
    }
    if (!head_ok(x, version)) {
        /* Framing that cannot be trusted: answer now and close, without
         * reading what may be another request. */
        x->close = true;
        return queue_error(x, &x->err);
    }
    if (!admit(x)) {
        x->early = true;
        /* Too much to drain: answer now; the client may see a reset. */
        if (x->close || (cl && strtoull(cl, NULL, 10) > drain_limit(s))) {
            x->close = true;
            return answer_early(x);
        }
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    struct server *s = cls;
    struct exch *x = *con_cls;
    enum xstate st;

    (void)url; /* decoded by libmicrohttpd: parrot routes on its own normalised target */
    if (!x)
        return MHD_NO; /* out of memory in on_uri */
    switch (x->state) {
    case XS_NEW:
        x->conn = conn;
        x->method = method;
        return on_head_received(x, version);
    case XS_BODY:
        if (*upload_size) {
            x->bytes_in += *upload_size;
            if (x->track)
                atomic_fetch_add(&x->track->body_bytes, *upload_size);
            if ((x->early || x->too_large) && x->bytes_in > drain_limit(s)) {
                x->close = true;
                return x->early ? answer_early(x) : route(x) /* the 413 */;
            }
            if (!x->early && !x->too_large) {
                int rc = buf_append(&x->body, upload_data, *upload_size, s->cfg->max_body_size);
                if (rc == -E2BIG) {
                    x->too_large = true;
                    buf_free(&x->body);
                } else if (rc != 0) {
                    return MHD_NO;
                }
            }
            *upload_size = 0;
            return MHD_YES;
        }
        if (x->track)
            atomic_store(&x->track->phase, CP_BUSY);
        return x->early ? answer_early(x) : route(x);
    default: break;
    }
    /* Resumed by the upstream side, or by a single-flight leader. */
    pthread_mutex_lock(&x->lock);
    st = x->state;
    if (st == XS_RETRY) {
        pthread_mutex_unlock(&x->lock);
        if (chat_relookup(s->chat, x->chat, wall_now()) == CHAT_HIT)
            return serve_hit(x);
        return forward(x, x->uri + 3);
    }
    if (st == XS_EMBEDDED) {
        pthread_mutex_unlock(&x->lock);
        return chat_verdict(x, chat_lookup(s->chat, x->chat, wall_now()));
    }
    enum MHD_Result ret = MHD_YES;
    if (st == XS_STREAM)
        ret = queue_stream(x);
    else if (st == XS_FULL)
        ret = queue_full(x);
    else if (st == XS_FAILED)
        ret = queue_error(x, &x->err);
    pthread_mutex_unlock(&x->lock);
    return ret;
}

/* The request's metrics: route and status, and for a chat completion its
 * latency by outcome, what a hit saved and where a miss happened. Requests
 * libmicrohttpd rejected on its own are not counted. */
static void count_request(struct exch *x, const struct timespec *now)
{
    struct metrics *m = x->srv->met;
    const char *q = strchr(x->uri, '?');
    enum metrics_route rt;

    /* libmicrohttpd answered a malformed request itself (e.g. a negative
     * Content-Length) before the handler saw it: no method, no status. */
    if (!x->method)
        return;
    rt = metrics_route_of(x->uri, q ? (size_t)(q - x->uri) : strlen(x->uri), x->method);
    metrics_request(m, rt, x->status);
    if (!x->chat || rt != MR_CHAT)
        return;
    switch (x->chat->verdict) {
    case CHAT_HIT: {
        const struct cmpl_rendered *a = chat_hit_answer(x->chat);
        metrics_observe(m, MH_HIT, ms_between(&x->t0, now) / 1e3);
        metrics_saved(m, a->model, a->prompt_tokens, a->completion_tokens);
        break;
    }
    case CHAT_MISS:
        metrics_observe(m, MH_MISS, ms_between(&x->t0, now) / 1e3);
        metrics_miss(m, x->chat->key.partition, x->chat->model);
        break;
    case CHAT_BYPASS: metrics_observe(m, MH_BYPASS, ms_between(&x->t0, now) / 1e3); break;
    case CHAT_REFUSE:
    case CHAT_EMBED: /* ended (client gone) while its vector was on the way */ break;
    }
}

/* The cache's fields of a chat completion's log line: never the question,
 * unless log-prompts is set. */
static void log_chat(struct log_rec *r, const struct exch *x)
{
    const struct chat_req *c = x->chat;
    char part[17];

    log_str(r, "cache", chat_outcome(c));
    log_str(r, "model", c->model);
    if (c->keyed) {
        /* 64 bits of the partition hash: enough to group requests, and a
         * hash of the tenant and parameters, not of any text. */
        canon_hex(c->key.partition, 8, part);
        log_str(r, "partition", part);
    }
    if (c->verdict == CHAT_HIT) {
        const struct cmpl_rendered *a = chat_hit_answer(c);
        log_num(r, "similarity", c->q.sim);
        log_int(r, "tokens_saved", (long long)a->prompt_tokens + (long long)a->completion_tokens);
    }
    if (c->wal_seq)
        log_int(r, "wal_seq", (long long)c->wal_seq); /* for operators; never sent to clients */
    if (x->srv->cfg->log_prompts && c->key.lookup_text)
        log_strn(r, "prompt", c->key.lookup_text, c->key.lookup_len);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct exch *x = *con_cls;
    struct log_rec r;
    struct timespec now;
    static const char *const why[] = {"ok",       "error",      "timeout",
                                      "shutdown", "read_error", "client_closed"};

    (void)cls;
    (void)conn;
    if (!x)
        return;
    *con_cls = NULL;
    if (x->track) {
        /* Idle until the next request: libmicrohttpd's idle timer
         * (client-timeout) closes a silent connection; this bounds one that
         * trickles bytes. */
        atomic_store(&x->track->deadline,
                     mono_ms() + x->srv->cfg->client_timeout_ms + x->srv->cfg->header_timeout_ms);
        atomic_store(&x->track->phase, CP_HEAD);
    }
    pthread_mutex_lock(&x->lock);
    x->closed = true;
    if (x->xfer)
        up_xfer_cancel(x->xfer);
    clock_gettime(CLOCK_MONOTONIC, &now);
    count_request(x, &now);
    if (log_enabled(LOG_INFO)) {
        const char *q = strchr(x->uri, '?');
        log_begin(&r, LOG_INFO, "request");
        log_str(&r, "id", x->id);
        log_str(&r, "method", x->method);
        log_strn(&r, "path", x->uri, q ? (size_t)(q - x->uri) : strlen(x->uri));
        log_int(&r, "status", x->status);
        log_ms(&r, "ms", ms_between(&x->t0, &now));
        log_int(&r, "bytes_in", (long long)x->bytes_in);
        log_int(&r, "bytes_out", (long long)x->bytes_out);
        if (x->t_up0.tv_sec) {
            log_ms(&r, "upstream_ms", ms_between(&x->t_up0, x->up_done ? &x->t_up1 : &now));
            log_int(&r, "attempts", x->attempts);
            log_str(&r, "provider", x->provider);
        }
        if (x->chat)
            log_chat(&r, x);
        if (x->chat && x->chat->q.embed_result)
            log_str(&r, "embed", x->chat->q.embed_result);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            log_str(&r, "end", (unsigned)toe < sizeof(why) / sizeof(why[0]) ? why[toe] : "?");
        if (x->up_done && x->up_err != UP_OK && x->state == XS_RESPONDED && x->streaming)
            log_str(&r, "upstream_end", "broken");
    }
    pthread_mutex_unlock(&x->lock);
    if (log_enabled(LOG_INFO))
        log_end(&r);
    exch_unref(x);
}

/* ---- connection deadlines ---------------------------------------------- */

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *s = cls;
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
        pthread_mutex_lock(&s->conns_lock);
        c->reserve = s->nconns >= (size_t)s->cfg->max_connections;
        atomic_init(&c->deadline,
                    mono_ms() + (c->reserve && s->cfg->header_timeout_ms > RESERVE_HEAD_MS
                                     ? RESERVE_HEAD_MS
                                     : s->cfg->header_timeout_ms));
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* libmicrohttpd closes the socket after this returns: once c is off the
     * list under the lock, the reaper can no longer shut down its fd, which
     * may be reused. */
    pthread_mutex_lock(&s->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    pthread_mutex_unlock(&s->conns_lock);
    *socket_context = NULL;
    free(c);
}

/* True when c is past its deadline: a head not complete in time, or a body
 * slower than MIN_BODY_RATE after the head timeout's grace. */
static bool overdue(const struct server *s, struct conn *c, int64_t now)
{
    int phase = atomic_load(&c->phase);

    if (phase == CP_HEAD)
        return now > atomic_load(&c->deadline);
    if (phase == CP_BODY) {
        int64_t allowed = s->cfg->header_timeout_ms +
                          (int64_t)(atomic_load(&c->body_bytes) * 1000 / MIN_BODY_RATE);
        return now - atomic_load(&c->body_start) > allowed;
    }
    return false;
}

static void *reaper_main(void *arg)
{
    struct server *s = arg;
    struct timespec ts;

    pthread_mutex_lock(&s->conns_lock);
    while (!s->reaper_stop) {
        int64_t now = mono_ms();
        unsigned cut = 0;

        for (struct conn *c = s->conns; c; c = c->next)
            if (!c->cut && overdue(s, c, now)) {
                c->cut = true;
                shutdown(c->fd, SHUT_RDWR);
                cut++;
            }
        if (cut) {
            atomic_fetch_add(&s->cut_total, cut);
            log_msg(LOG_WARN, "slow clients cut off",
                    "a request head or body did not arrive in time (header-timeout)");
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->reaper_wake, &s->conns_lock, &ts);
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}

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
    if (s->reaper_on) {
        pthread_mutex_lock(&s->conns_lock);
        s->reaper_stop = true;
        pthread_cond_signal(&s->reaper_wake);
        pthread_mutex_unlock(&s->conns_lock);
        pthread_join(s->reaper, NULL);
        pthread_mutex_destroy(&s->conns_lock);
        pthread_cond_destroy(&s->reaper_wake);
    }
    chat_free(s->chat);
    rl_free(s->rl);
    auth_free(s->auth);
    metrics_free(s->met);
    free(s);
}

int server_start(const struct cfg *c, struct up_pool *pool, struct cache *cache,
                 struct server **out, char *err, size_t errlen)
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
    if (cache && (rc = chat_new(c, cache, &s->chat)) != 0) {
        snprintf(err, errlen, "cannot set up the cache (%s)",
                 rc == -ENOMEM ? "out of memory" : "see the error logged above");
        goto fail;
    }
    if (auth_new(c, &s->auth, err, errlen) != 0)
        goto fail;
    s->admin = (struct admin){.cache = cache, .chat = s->chat, .auth = s->auth, .cfg = c};
    if (metrics_new(c->prices, &s->met) != 0) {
        snprintf(err, errlen, "cannot set up metrics (out of memory)");
        goto fail;
    }
    if ((c->rate_limit_rpm || c->rate_limit_tpm) &&
        rl_new((unsigned)c->rate_limit_rpm, (unsigned)c->rate_limit_tpm, &s->rl) != 0) {
        snprintf(err, errlen, "cannot set up rate limits (out of memory)");
        goto fail;
    }
    atomic_init(&s->draining, false);
    s->quiesced = MHD_INVALID_SOCKET;
    atomic_init(&s->inflight, 0);
    atomic_init(&s->cut_total, 0);
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_cond_init(&s->reaper_wake, NULL);
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        snprintf(err, errlen, "cannot start the connection reaper thread");
        goto fail;
    }
    s->reaper_on = true;
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
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections + RESERVE_CONNS,
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
