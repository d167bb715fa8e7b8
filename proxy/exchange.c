/* exchange.c - the machinery of one request; see exchange.h. */
#include "proxy/exchange.h"

#include "cache/base/clock.h"
#include "cache/base/rand.h"
#include "cache/base/sha256.h"
#include "config/config.h"
#include "proxy/auth.h"
#include "proxy/chat.h"
#include "proxy/conns.h"
#include "proxy/embeddings.h"
#include "proxy/headers.h"
#include "proxy/log.h"
#include "proxy/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FULL_MAX (1u << 20) /* collect whole responses up to 1 MiB */
/* An embeddings answer is collected whole up to this, to be stored, and
 * must be to be merged with cached vectors (2048 inputs of 3072 floats as
 * base64 take 33 MiB, as JSON numbers about 130). */
#define EMB_MERGE_MAX   (64u << 20)
#define OUT_HIGH        (256u << 10) /* pause the provider above this much unsent data */
#define OUT_LOW         (64u << 10)  /* and resume it below this */
#define REQ_HEADERS_MAX 128
/* A request refused before its body (no key, too large, ...) still has its
 * body read and thrown away, up to this much, so that a client that sends
 * without waiting for 100-continue reads the error instead of a reset. */
#define DRAIN_MIN (64u << 20)

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

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return clock_ms_between(a, b);
}

void xch_unref(struct exch *x)
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
    if (x->emb) {
        emb_call_fini(x->emb);
        free(x->emb);
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

static bool valid_client_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if ((unsigned char)s[n] <= ' ' || (unsigned char)s[n] >= 0x7f || s[n] == '"' ||
            s[n] == '\\')
            return false;
    return n > 0 && n <= REQ_ID_MAX;
}

static void add_header(void *r, const char *name, const char *value)
{
    MHD_add_response_header(r, name, value);
}

static bool happened(const struct timespec *t)
{
    return t->tv_sec || t->tv_nsec;
}

/* When the provider's part of x ended: at the end of its answer or, while
 * it is still answering, at *open_end (which may be NULL). NULL when x never
 * went to the provider. */
static const struct timespec *provider_end(const struct exch *x, const struct timespec *open_end)
{
    if (!happened(&x->t_up0))
        return NULL;
    return x->up_done ? &x->t_up1 : open_end;
}

/* parrot's own time in x from its arrival to now, in ms: all of it but the
 * provider's part (see provider_end), whose length goes to *up_ms, -1 when
 * there is none. */
static double own_ms(const struct exch *x, const struct timespec *now,
                     const struct timespec *open_end, double *up_ms)
{
    const struct timespec *end = provider_end(x, open_end);

    if (!end) {
        *up_ms = -1;
        return ms_between(&x->t0, now);
    }
    *up_ms = ms_between(&x->t_up0, end);
    /* Two spans that cannot be negative, rather than a difference that
     * rounding can take below zero. */
    return ms_between(&x->t0, &x->t_up0) + ms_between(end, now);
}

/* The cache's outcome for x as its x-parrot-cache header names it. */
static enum metrics_cache cache_outcome(const struct exch *x)
{
    enum chat_verdict v;

    if (x->chat)
        v = x->chat->verdict;
    else if (x->emb)
        v = x->emb->verdict;
    else
        return MC_NONE;
    return v == CHAT_HIT ? MC_HIT : v == CHAT_BYPASS ? MC_BYPASS : MC_MISS;
}

/* Server-Timing (W3C), in ms up to now, when the headers are made:
 * parrot's own time and the provider's, which add up to the time since
 * arrival, and the cache's outcome. A stream's headers leave before the
 * provider is done: its part then ends at its response head, and the wait
 * for an HTTP thread to take the stream up is parrot's. */
static void add_server_timing(const struct exch *x, struct MHD_Response *r)
{
    struct timespec now;
    enum metrics_cache c = cache_outcome(x);
    double up, own;
    char v[128], *p; /* the three parts, numbers of HDR_NUM_MAX at most */

    clock_gettime(CLOCK_MONOTONIC, &now);
    own = own_ms(x, &now, happened(&x->t_up_head) ? &x->t_up_head : NULL, &up);
    p = stpcpy(v, "parrot;dur=");
    p += hdr_fmt_fixed(p, own, 3);
    if (up >= 0) {
        p = stpcpy(p, ", upstream;dur=");
        p += hdr_fmt_fixed(p, up, 3);
    }
    if (c != MC_NONE) {
        p = stpcpy(p, ", cache;desc=");
        stpcpy(p, metrics_cache_names[c]);
    }
    MHD_add_response_header(r, "Server-Timing", v);
}

static void add_common_headers(struct exch *x, struct MHD_Response *r)
{
    MHD_add_response_header(r, "x-request-id", x->id);
    add_server_timing(x, r);
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
        chat_headers(x->chat, clock_wall_ms(), add_header, r);
    if (x->emb)
        emb_headers(x->emb, add_header, r);
    if (x->close || atomic_load(&x->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Adds parrot's headers to r and marks x answered, with the status for the
 * log. Where the upstream thread may still run, the caller holds x->lock. */
static struct MHD_Response *prepare(struct exch *x, int status, struct MHD_Response *r)
{
    add_common_headers(x, r);
    x->status = status;
    x->state = XS_RESPONDED;
    return r;
}

/* Queues a prepared response (the connection keeps its own reference).
 * Never with x->lock held: libmicrohttpd holds its response lock while it
 * calls stream_read, which takes x->lock. */
static enum MHD_Result submit(struct exch *x, struct MHD_Response *r)
{
    enum MHD_Result ret;

    if (!r)
        return MHD_NO;
    ret = MHD_queue_response(x->conn, (unsigned)x->status, r);
    MHD_destroy_response(r);
    return ret;
}

static struct MHD_Response *buffer_response(struct exch *x, int status, const char *ctype,
                                            char *body, size_t len,
                                            enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);

    if (!r)
        return NULL;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    x->bytes_out = len;
    return prepare(x, status, r);
}

enum MHD_Result xch_queue_buffer(struct exch *x, int status, const char *ctype, char *body,
                                 size_t len, enum MHD_ResponseMemoryMode mode)
{
    return submit(x, buffer_response(x, status, ctype, body, len, mode));
}

static struct MHD_Response *error_response(struct exch *x, const struct oai_error *e)
{
    size_t len = 0;
    char *json = oai_error_json(e, &len);

    return json
               ? buffer_response(x, e->status, "application/json", json, len, MHD_RESPMEM_MUST_FREE)
               : NULL;
}

enum MHD_Result xch_queue_error(struct exch *x, const struct oai_error *e)
{
    return submit(x, error_response(x, e));
}

enum MHD_Result xch_queue_json(struct exch *x, int status, const char *json)
{
    return xch_queue_buffer(x, status, "application/json", (char *)json, strlen(json),
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
    xch_unref(cls);
}

/* The streamed answer's response (x->lock held). */
static struct MHD_Response *stream_response(struct exch *x)
{
    uint64_t size = MHD_SIZE_UNKNOWN;
    struct MHD_Response *r;

    if (x->up_length >= 0 && !x->sse && strcmp(x->method, "HEAD") != 0)
        size = (uint64_t)x->up_length;
    atomic_fetch_add(&x->refs, 1);
    r = MHD_create_response_from_callback(size, 32 * 1024, stream_read, x, stream_free);
    if (!r) {
        xch_unref(x);
        return NULL;
    }
    add_relayed_headers(x, r);
    return prepare(x, (int)x->up_status, r);
}

/* The whole answer's response (x->lock held); it takes x->out over. */
static struct MHD_Response *full_response(struct exch *x)
{
    struct MHD_Response *r;
    size_t len = x->out.len;

    r = MHD_create_response_from_buffer(len, len ? x->out.p : (void *)"",
                                        len ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return NULL;
    if (len)
        buf_take(&x->out, NULL);
    add_relayed_headers(x, r);
    x->bytes_out = len;
    return prepare(x, (int)x->up_status, r);
}

static void resume(struct exch *x)
{
    if (x->suspended && !x->closed) {
        x->suspended = false;
        MHD_resume_connection(x->conn);
        /* A daemon its worker polls does not signal resumes itself. */
        up_loop_wake(x->loop);
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

/* Whether the answer must reach on_done whole: embeddings merged with
 * cached vectors. */
static bool must_merge(const struct exch *x)
{
    return x->emb && emb_partial(x->emb);
}

/* The most of a plain answer collected whole before it is streamed. */
static size_t collect_max(const struct exch *x)
{
    return x->emb && x->emb->keyed ? EMB_MERGE_MAX : FULL_MAX;
}

static void on_head(void *ud, const struct up_head *hd)
{
    struct exch *x = ud;
    const struct up_header *h = hd->headers;
    size_t n = hd->nheaders;
    long status = hd->status;
    int64_t length = hd->content_length;

    pthread_mutex_lock(&x->lock);
    clock_gettime(CLOCK_MONOTONIC, &x->t_up_head);
    metrics_observe(x->srv->met, MH_FIRST_BYTE, ms_between(&x->t_up0, &x->t_up_head) / 1e3);
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
    if ((x->sse || length > (int64_t)collect_max(x) || status < 200 || status == 204) &&
        !must_merge(x)) {
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
    if (!x->streaming && x->out.len + n > collect_max(x) && must_merge(x)) {
        /* Cannot be merged: on_done answers with an error instead. */
        x->overflow = true;
        pthread_mutex_unlock(&x->lock);
        return 0;
    }
    if (!x->streaming && x->out.len + n > collect_max(x)) {
        /* Larger than we collect whole: switch to streaming. */
        x->streaming = true;
        if (x->state == XS_WAIT) {
            x->state = XS_STREAM;
            resume(x);
        }
    }
    /* Out of memory pauses too: the client's draining frees room. The
     * buffer's own cap is never the limit: OUT_HIGH and FULL_MAX are. The
     * bytes already sent are dropped as it fills: a client that keeps up
     * but never drains it to empty would otherwise leave the whole stream
     * in it. */
    if ((x->streaming && x->out.len - x->out_off >= OUT_HIGH) ||
        buf_queue_append(&x->out, &x->out_off, p, n, SIZE_MAX / 2) != 0) {
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

/* Store an embeddings answer and, when only the missing inputs were
 * asked for, replace it with the whole answer (x->lock held). */
static void finish_embeddings(struct exch *x, int err)
{
    long status = err == UP_OK && !x->closed ? x->up_status : -1;
    char *merged = NULL;
    size_t len = 0;

    if (x->overflow) {
        x->unmerged = true;
        oai_error_set(&x->err, 502, "upstream_error", NULL, "upstream_answer_too_large",
                      "The provider's embeddings answer is larger than parrot merges with cached "
                      "inputs (%u MiB); send fewer inputs per request.",
                      EMB_MERGE_MAX >> 20);
        return;
    }
    emb_complete(x->srv->chat, x->emb, status, x->streaming ? NULL : x->out.p,
                 x->streaming ? 0 : x->out.len, clock_wall_ms(), &merged, &len, &x->err);
    if (merged) {
        buf_free(&x->out);
        x->out = (struct buf){.p = merged, .len = len, .cap = len + 1};
    } else if (must_merge(x) && status == 200) {
        x->unmerged = true;
    }
}

/* The store thread is done with x's answer (chat_store_later). Whether it
 * was stored is for metrics: the client's headers are long gone. */
static void stored(void *ud, bool ok, uint64_t wal_seq)
{
    struct exch *x = ud;

    (void)ok;
    pthread_mutex_lock(&x->lock); /* the log line reads it */
    x->chat->wal_seq = wal_seq;
    pthread_mutex_unlock(&x->lock);
    xch_unref(x);
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
        rl_charge(x->srv->rl, x->client, tail_tokens(x), clock_wall_ms());
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
        /* The client is answered first; the store thread parses, indexes
         * and logs the answer, then lets the requests waiting behind this
         * one look again. The job holds a reference to x. */
        atomic_fetch_add(&x->refs, 1);
        if (!chat_store_later(x->srv->chat, x->chat, err == UP_OK && !x->closed ? x->up_status : -1,
                              x->sse, x->streaming ? NULL : x->out.p, x->streaming ? 0 : x->out.len,
                              clock_wall_ms(), stored, x))
            atomic_fetch_sub(&x->refs, 1); /* not the last: the transfer holds one */
    }
    if (x->emb)
        finish_embeddings(x, err);
    if (x->state == XS_WAIT) {
        if (x->unmerged) {
            x->state = XS_FAILED;
        } else if (err == UP_OK) {
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
    xch_unref(x);
}

static const struct up_handler handler = {on_head, on_body, on_done};

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
    sha256(v ? v : "", n, key);
}

/* A request about to cost provider budget: within the client's limits? */
static bool within_limits(struct exch *x)
{
    const char *which = "requests";
    int64_t wait;

    client_key(x, x->client);
    wait = rl_take(x->srv->rl, x->client, clock_wall_ms(), &which);
    if (wait <= 0)
        return true;
    oai_error_set(&x->err, 429, which, NULL, "rate_limit_exceeded",
                  "Rate limit reached for this client on %s per minute. Retry in %lld ms.", which,
                  (long long)wait);
    x->retry_after = true;
    snprintf(x->retry_after_s, sizeof(x->retry_after_s), "%lld", (long long)(wait + 999) / 1000);
    return false;
}

enum MHD_Result xch_forward(struct exch *x, const char *path)
{
    struct server *s = x->srv;
    struct hdr_list l = {.n = 0};
    struct up_req req;
    enum metrics_upstream why;
    int rc;

    const char *lines[REQ_HEADERS_MAX + 4];
    const union MHD_ConnectionInfo *ci;

    if (s->rl && !within_limits(x)) {
        if (x->chat)
            chat_flight_done(s->chat, x->chat);
        return xch_queue_error(x, &x->err);
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
        return xch_queue_error(x, &x->err);
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

    why = !x->chat ? MU_PASSTHROUGH : x->chat->verdict == CHAT_BYPASS ? MU_BYPASS : MU_MISS;
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
        return xch_queue_error(x, &x->err);
    }
    metrics_upstream(s->met, why);
    /* on_head/on_done wait for x->lock, so they see the suspension. */
    x->suspended = true;
    MHD_suspend_connection(x->conn);
    pthread_mutex_unlock(&x->lock);
    return MHD_YES;
}

/* Wake a suspended request into state st and drop the reference its waker
 * held (any thread). */
void xch_wake_as(struct exch *x, enum xstate st)
{
    pthread_mutex_lock(&x->lock);
    x->state = st;
    resume(x);
    pthread_mutex_unlock(&x->lock);
    xch_unref(x);
}

/* Suspend x in state st when start(x) arranged a wake-up (wake_as), which
 * then owns a reference to x. Returns false, x untouched, when start
 * declined. */
bool xch_wait_suspended(struct exch *x, enum xstate st, bool (*start)(struct exch *x))
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

/* Answers a request refused from its head (admit()). */
enum MHD_Result xch_answer_early(struct exch *x)
{
    char *body = x->early_reply;

    if (!body)
        return xch_queue_error(x, &x->err);
    x->early_reply = NULL;
    return xch_queue_buffer(x, x->err.status, "application/json", body, x->early_len,
                            MHD_RESPMEM_MUST_FREE);
}

/* How much of a refused request's body is read and dropped. */
uint64_t xch_drain_limit(const struct server *s)
{
    uint64_t twice = 2 * (uint64_t)s->cfg->max_body_size;
    return twice > DRAIN_MIN ? twice : DRAIN_MIN;
}

void *xch_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
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
    x->track = conns_of(conn);
    x->loop = up_loop_current();
    if (x->track)
        conn_request_line(x->track, s->cfg->header_timeout_ms);
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    atomic_fetch_add(&s->inflight, 1);
    return x;
}

/* The head has been read: check it, decide the route, and either go on to
 * the body or refuse. */
static enum MHD_Result on_head_received(struct exch *x, const char *version)
{
    const char *cid = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-id");

    if (cid && valid_client_id(cid)) {
        snprintf(x->id, sizeof(x->id), "%s", cid);
        x->client_id = true;
    } else {
        /* Random, not counted: a counter would tell every client how many
         * requests others made. */
        snprintf(x->id, sizeof(x->id), "req_%016llx", (unsigned long long)rand_u64());
    }
    x->state = XS_BODY;
    if (x->track)
        conn_head_done(x->track);
    return route_head(x, version);
}

enum MHD_Result xch_on_request(void *cls, struct MHD_Connection *conn, const char *url,
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
                conn_body_bytes(x->track, *upload_size);
            if ((x->early || x->too_large) && x->bytes_in > xch_drain_limit(s)) {
                x->close = true;
                return x->early ? xch_answer_early(x) : route_dispatch(x) /* the 413 */;
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
            conn_busy(x->track);
        return x->early ? xch_answer_early(x) : route_dispatch(x);
    default: break;
    }
    /* Resumed by the upstream side, or by a single-flight leader. */
    pthread_mutex_lock(&x->lock);
    st = x->state;
    if (st == XS_RETRY || st == XS_EMBEDDED || st == XS_PEER_END || st == XS_STORED) {
        pthread_mutex_unlock(&x->lock);
        return route_woken(x, st);
    }
    /* The response is made under x->lock (the upstream thread may still be
     * feeding a stream) and queued after it. */
    struct MHD_Response *r = st == XS_STREAM   ? stream_response(x)
                             : st == XS_FULL   ? full_response(x)
                             : st == XS_FAILED ? error_response(x, &x->err)
                                               : NULL;
    pthread_mutex_unlock(&x->lock);
    if (st != XS_STREAM && st != XS_FULL && st != XS_FAILED)
        return MHD_YES;
    if (!r)
        return MHD_NO;
    return submit(x, r);
}

/* The request's metrics: route and status, parrot's overhead, and for a
 * chat completion its latency by outcome, what a hit saved and where a miss
 * happened. Requests libmicrohttpd rejected on its own are not counted. */
static void count_request(struct exch *x, const struct timespec *now)
{
    struct metrics *m = x->srv->met;
    const char *q = strchr(x->uri, '?');
    enum metrics_route rt;
    double up_ms;

    /* libmicrohttpd answered a malformed request itself (e.g. a negative
     * Content-Length) before the handler saw it: no method, no status. */
    if (!x->method)
        return;
    rt = metrics_route_of(x->uri, q ? (size_t)(q - x->uri) : strlen(x->uri), x->method);
    metrics_request(m, rt, x->status);
    /* A transfer still running (the client left) was the provider's until
     * now. */
    metrics_overhead(m, rt, cache_outcome(x), own_ms(x, now, now, &up_ms) / 1e3);
    if (x->emb && x->emb->nhit && x->status == 200)
        metrics_saved(
            m, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x->emb->req.doc, "model")),
            x->emb->saved_tokens, 0);
    if (!x->chat) /* chat and legacy completions */
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
    case CHAT_EMBED: /* ended (client gone) while its vector was on the way, */
    case CHAT_WAIT: /* or while it waited for the store queue */ break;
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

void xch_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
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
        conn_idle(x->track, x->srv->cfg->client_timeout_ms + x->srv->cfg->header_timeout_ms);
    }
    pthread_mutex_lock(&x->lock);
    x->closed = true;
    if (x->xfer)
        up_xfer_cancel(x->xfer);
    clock_gettime(CLOCK_MONOTONIC, &now);
    count_request(x, &now);
    if (log_enabled(LOG_INFO)) {
        const char *q = strchr(x->uri, '?');
        const struct timespec *up_end = provider_end(x, &now);
        log_begin(&r, LOG_INFO, "request");
        log_str(&r, "id", x->id);
        log_str(&r, "method", x->method);
        log_strn(&r, "path", x->uri, q ? (size_t)(q - x->uri) : strlen(x->uri));
        log_int(&r, "status", x->status);
        log_ms(&r, "ms", ms_between(&x->t0, &now));
        log_int(&r, "bytes_in", (long long)x->bytes_in);
        log_int(&r, "bytes_out", (long long)x->bytes_out);
        if (up_end) {
            log_ms(&r, "upstream_ms", ms_between(&x->t_up0, up_end));
            log_int(&r, "attempts", x->attempts);
            log_str(&r, "provider", x->provider);
        }
        if (x->chat)
            log_chat(&r, x);
        if (x->emb)
            log_str(&r, "cache", emb_outcome(x->emb));
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
    xch_unref(x);
}
