/* upstream.c - one thread, one curl multi handle, every upstream transfer.
 *
 * Other threads never touch a curl handle: they set request bits on the
 * transfer (submit, cancel, unpause) under the pool mutex, put it on the
 * pool's work list once, and wake the thread with curl_multi_wakeup(). The
 * thread applies the bits between curl_multi_perform() calls. A transfer is
 * reference counted: the pool holds one reference while it runs and the work
 * list holds one while the transfer is queued, so a cancel that races with
 * completion finds the struct still allocated and simply sees it is done.
 *
 * Attempts: a transfer owns at most one curl easy handle at a time. When an
 * attempt fails in a retryable way, its handle is dropped and the transfer
 * waits on the active list with a due time (x->due) and no handle; the loop
 * starts the next attempt when it is due. Whether a response will be retried
 * is decided when its headers arrive: if so, its body is read and dropped and
 * the handler never hears of it; if not, it is delivered as the final answer.
 *
 * Choice and breakers are upstream/balance.c's (p->bal, pool thread only;
 * other threads only read breaker states). Failures that trip breakers are
 * the provider's own: connection errors, timeouts and 5xx. A 429 or 408 moves
 * the request to another provider but does not count against the breaker.
 */
#include "upstream/upstream.h"

#include "cache/base/clock.h"
#include "upstream/balance.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#define WANT_SUBMIT  0x1
#define WANT_CANCEL  0x2
#define WANT_UNPAUSE 0x4

/* Response header block cap; a provider sending more is treated as broken. */
#define HEAD_MAX (64 * 1024)
#define HEAD_MIN 2048 /* first allocation of a response header block; grows by doubling */
#define HEAD_N   128
/* Client sockets watched per poll, at most; the rest are not watched. */
#define WATCH_MAX 8192
/* How often timers are checked. */
#define TICK_MS 100
/* Backoff as the OpenAI SDKs do it: 0.5 s doubling, at most 8 s, minus up to
 * 25% jitter. */
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   8000
#define REQ_HEADERS_MAX  160
/* Reset easy handles kept for reuse, at most. */
#define EASY_SPARE 256

struct provider {
    char *base_url;
    char *auth;             /* "Authorization: Bearer KEY", or NULL to pass the client's */
    char name[UP_NAME_MAX]; /* weight and breaker: p->bal.peer[same index] */
    atomic_uint_fast64_t attempts, failures, retries, failovers;
};

struct up_xfer {
    struct up_pool *pool;
    CURL *easy;
    struct curl_slist *headers;
    const struct up_handler *h;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];

    /* The request, kept for later attempts. */
    char *method, *path;
    char **lines;
    size_t nlines;
    const char *body;
    size_t body_len;

    /* Received header block of the current response. */
    char *head;
    size_t head_len, head_cap;
    bool head_done;
    bool head_overflow;

    /* Guarded by pool->lock. */
    unsigned refs;
    unsigned want;
    bool queued;
    struct up_xfer *qnext;

    /* Pool thread only. */
    bool listed; /* on the active list */
    bool done;
    bool paused;         /* on_body asked for a pause: idle time does not count */
    bool discard;        /* this attempt's response will be retried: drop it */
    int client_fd;       /* watched while >= 0 */
    long last_io;        /* monotonic ms of the last byte from the provider */
    long started;        /* monotonic ms when the current attempt started */
    long deadline;       /* monotonic ms when the whole transfer must end */
    long due;            /* monotonic ms when the next attempt may start; 0 = running */
    long retry_after_ms; /* from the response being discarded, or -1 */
    unsigned attempts;
    uint64_t tried; /* providers tried, by index */
    int prov;       /* provider of the current or last attempt, -1 before */
    char last_error[160];
    struct up_xfer *prev, *next; /* active list */
};

_Static_assert(UP_MAX_PROVIDERS <= BAL_MAX, "a provider index must fit the balancer");

struct up_pool {
    struct up_pool_opts o;
    struct provider prov[UP_MAX_PROVIDERS];
    size_t nprov;
    struct bal bal; /* pool thread only, but for breaker states */
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stopping;             /* guarded by lock */
    bool joined;               /* guarded by lock */
    struct up_xfer *work;      /* guarded by lock */
    struct up_xfer *active;    /* pool thread only */
    struct curl_waitfd *watch; /* pool thread only: poll set for client fds */
    struct up_xfer **watch_x;
    CURL *spare[EASY_SPARE]; /* pool thread only */
    size_t nspare;
    long next_tick;
    uint64_t rng;
};

static void xfer_free(struct up_xfer *x)
{
    for (size_t i = 0; i < x->nlines; i++)
        free(x->lines[i]);
    free(x->lines);
    free(x->method);
    free(x->path);
    free(x->head);
    free(x);
}

static void xfer_unref(struct up_xfer *x)
{
    struct up_pool *p = x->pool;
    unsigned left;

    pthread_mutex_lock(&p->lock);
    left = --x->refs;
    pthread_mutex_unlock(&p->lock);
    if (left == 0)
        xfer_free(x);
}

/* Queues a request bit for the pool thread. A submit is refused once the
 * pool is stopping, so nothing new can slip in after its last drain. */
static bool request(struct up_xfer *x, unsigned bit)
{
    struct up_pool *p = x->pool;

    pthread_mutex_lock(&p->lock);
    if (bit == WANT_SUBMIT && p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return false;
    }
    x->want |= bit;
    if (!x->queued) {
        x->queued = true;
        x->refs++;
        x->qnext = p->work;
        p->work = x;
    }
    pthread_mutex_unlock(&p->lock);
    curl_multi_wakeup(p->multi);
    return true;
}

void up_xfer_cancel(struct up_xfer *x)
{
    request(x, WANT_CANCEL);
}

void up_xfer_unpause(struct up_xfer *x)
{
    request(x, WANT_UNPAUSE);
}

/* ---- providers ---------------------------------------------------------- */

static uint64_t rnd(struct up_pool *p)
{
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 0x2545f4914f6cdd1dULL;
}

/* The breaker of the provider with index i. */
static struct bal_breaker *breaker(struct up_pool *p, int i)
{
    return &p->bal.peer[i].br;
}

bool up_pool_ready(struct up_pool *p)
{
    return bal_ready(&p->bal, clock_mono_ms());
}

size_t up_pool_provider_stats(struct up_pool *p, struct up_provider_stats *out, size_t max)
{
    for (size_t i = 0; i < p->nprov && i < max; i++) {
        struct provider *pv = &p->prov[i];
        snprintf(out[i].name, sizeof(out[i].name), "%s", pv->name);
        out[i].weight = (unsigned)p->bal.peer[i].weight;
        out[i].breaker = (enum up_breaker)bal_breaker_state(breaker(p, (int)i));
        out[i].attempts = atomic_load(&pv->attempts);
        out[i].failures = atomic_load(&pv->failures);
        out[i].retries = atomic_load(&pv->retries);
        out[i].failovers = atomic_load(&pv->failovers);
    }
    return p->nprov;
}

/* ---- attempts ----------------------------------------------------------- */

static void unlist(struct up_pool *p, struct up_xfer *x)
{
    if (!x->listed)
        return;
    x->listed = false;
    if (x->prev)
        x->prev->next = x->next;
    else
        p->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

/* Easy handles are reset and kept for the next attempt: creating one costs
 * a large zeroed allocation and several more, on every request otherwise. */
static void drop_easy(struct up_xfer *x)
{
    struct up_pool *p = x->pool;

    if (x->easy) {
        curl_multi_remove_handle(p->multi, x->easy);
        if (p->nspare < EASY_SPARE) {
            curl_easy_reset(x->easy);
            p->spare[p->nspare++] = x->easy;
        } else {
            curl_easy_cleanup(x->easy);
        }
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
}

/* A retryable failure reaches the client only when parrot could not retry
 * it (attempts, time budget or Retry-After ran out): its SDK should not
 * retry either. With retries off, parrot did not try, so the SDK may. */
static bool exhausted_by(const struct up_xfer *x)
{
    return x->pool->o.retries > 0;
}

/* Pool thread: end x, tell its owner, drop the pool's reference. */
static void finish(struct up_xfer *x, int err, const char *detail, bool retryable)
{
    struct up_result res;

    if (x->done)
        return;
    x->done = true;
    drop_easy(x);
    unlist(x->pool, x);
    res.attempts = x->attempts;
    res.provider = x->prov >= 0 ? x->pool->prov[x->prov].name : "";
    res.exhausted = retryable && exhausted_by(x);
    x->h->on_done(x->ud, err, detail, &res);
    xfer_unref(x);
}

/* Can another attempt start `delay` ms from now? */
static bool can_retry(const struct up_xfer *x, long delay, long now)
{
    const struct up_pool *p = x->pool;

    return x->attempts <= p->o.retries && delay <= p->o.retry_max_delay_ms &&
           now + delay < x->deadline;
}

static long backoff(struct up_pool *p, unsigned attempts)
{
    long d = BACKOFF_FIRST_MS;

    for (unsigned i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return d - (long)(rnd(p) % (uint64_t)(d / 4 + 1));
}

static bool retryable_status(long s)
{
    return s == 408 || s == 409 || s == 429 || s >= 500;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *ud);
static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud);

/* Pool thread: build the easy handle for the next attempt and start it.
 * Returns false (and has finished x) when that is impossible. */
static bool start_attempt(struct up_pool *p, struct up_xfer *x, long now)
{
    struct provider *pv;
    char *url;
    size_t ul;
    int prev = x->prov;
    long left = x->deadline - now;

    x->prov = bal_pick(&p->bal, x->tried, now);
    pv = &p->prov[x->prov];
    x->tried |= UINT64_C(1) << x->prov;
    x->attempts++;
    atomic_fetch_add(&pv->attempts, 1);
    if (x->attempts > 1) {
        atomic_fetch_add(&pv->retries, 1);
        if (prev != x->prov)
            atomic_fetch_add(&pv->failovers, 1);
    }
    x->due = 0;
    x->discard = false;
    x->head_done = x->head_overflow = false;
    x->head_len = 0;
    x->retry_after_ms = -1;
    x->errbuf[0] = '\0';
    x->started = x->last_io = now;

    x->easy = p->nspare ? p->spare[--p->nspare] : curl_easy_init();
    if (!x->easy)
        goto oom;
    for (size_t i = 0; i < x->nlines; i++) {
        struct curl_slist *n;
        if (pv->auth && strncasecmp(x->lines[i], "authorization:", 14) == 0)
            continue;
        if (!(n = curl_slist_append(x->headers, x->lines[i])))
            goto oom;
        x->headers = n;
    }
    if (pv->auth) {
        struct curl_slist *n = curl_slist_append(x->headers, pv->auth);
        if (!n)
            goto oom;
        x->headers = n;
    }
    ul = strlen(pv->base_url) + strlen(x->path) + 1;
    url = malloc(ul);
    if (!url)
        goto oom;
    snprintf(url, ul, "%s%s", pv->base_url, x->path);
    curl_easy_setopt(x->easy, CURLOPT_URL, url); /* curl copies the string */
    free(url);

    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION,
                     p->o.http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, p->o.connect_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, left > 1 ? left : 1L);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(x->method, "GET") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(x->method, "HEAD") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(x->method, "POST") != 0)
            curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, x->method);
        if (x->body_len > 0 || strcmp(x->method, "POST") == 0) {
            curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
            curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body ? x->body : "");
        }
    }
    if (curl_multi_add_handle(p->multi, x->easy) != CURLM_OK)
        goto oom;
    return true;
oom:
    finish(x, UP_ENOMEM, "out of memory starting an upstream attempt", false);
    return false;
}

/* The current attempt failed before anything reached the handler: retry
 * when allowed, else finish with err. */
static void attempt_failed(struct up_pool *p, struct up_xfer *x, int err, const char *detail,
                           bool retryable, bool provider_fault)
{
    long now = clock_mono_ms(), delay;

    if (x->prov >= 0) {
        struct provider *pv = &p->prov[x->prov];
        atomic_fetch_add(&pv->failures, 1);
        if (provider_fault)
            bal_breaker_failure(breaker(p, x->prov), now);
        else
            bal_breaker_release(breaker(p, x->prov));
    }
    delay = x->retry_after_ms >= 0 ? x->retry_after_ms : backoff(p, x->attempts);
    snprintf(x->last_error, sizeof(x->last_error), "%s", detail);
    if (!retryable || !can_retry(x, delay, now)) {
        finish(x, err, detail, retryable);
        return;
    }
    drop_easy(x);
    x->due = now + (delay > 0 ? delay : 0);
    if (x->due == 0)
        x->due = 1;
}

/* ---- curl callbacks ----------------------------------------------------- */

/* retry-after-ms as milliseconds, else Retry-After as seconds or an HTTP
 * date, as the OpenAI SDKs read them; -1 when neither is usable. */
static long parse_retry_after(const struct up_header *h, size_t n)
{
    char v[64];

    for (size_t k = 0; k < 2 * n; k++) {
        size_t i = k % n;
        bool ms = h[i].name_len == 14 && strncasecmp(h[i].name, "retry-after-ms", 14) == 0;
        bool s = h[i].name_len == 11 && strncasecmp(h[i].name, "retry-after", 11) == 0;
        char *end;
        double d;

        /* First pass: retry-after-ms only; second pass: Retry-After. */
        if ((k < n ? !ms : !s) || h[i].value_len == 0 || h[i].value_len >= sizeof(v))
            continue;
        memcpy(v, h[i].value, h[i].value_len);
        v[h[i].value_len] = '\0';
        d = strtod(v, &end);
        if (end != v && *end == '\0' && d >= 0 && d < 1e9)
            return (long)(ms ? d : d * 1000);
        if (s) {
            time_t t = curl_getdate(v, NULL);
            if (t > 0) {
                time_t now = time(NULL);
                return t > now ? (long)(t - now) * 1000 : 0;
            }
        }
    }
    return -1;
}

/* Splits the stored header block into name/value pairs and decides whether
 * this response is the answer or will be retried. */
static void deliver_head(struct up_xfer *x)
{
    struct up_header hs[HEAD_N];
    struct up_head head = {0};
    size_t n = 0;
    long status = 0;
    curl_off_t cl = -1;
    char *line = x->head, *end = x->head + x->head_len;

    x->head_done = true;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    while (line && line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *eol = nl ? nl : end, *colon, *v, *ve;

        ve = eol;
        if (ve > line && ve[-1] == '\r')
            ve--;
        colon = memchr(line, ':', (size_t)(ve - line));
        if (colon && n < HEAD_N && colon > line) {
            v = colon + 1;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            hs[n].name = line;
            hs[n].name_len = (size_t)(colon - line);
            hs[n].value = v;
            hs[n].value_len = (size_t)(ve - v);
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (retryable_status(status)) {
        long ra = parse_retry_after(hs, n);
        long delay = ra >= 0 ? ra : backoff(x->pool, x->attempts);
        if (can_retry(x, delay, clock_mono_ms())) {
            /* Read the body to keep the connection reusable, then retry. */
            x->discard = true;
            x->retry_after_ms = ra;
            snprintf(x->last_error, sizeof(x->last_error), "HTTP %ld", status);
            return;
        }
    }
    head.status = status;
    head.content_length = (int64_t)cl;
    head.headers = hs;
    head.nheaders = n;
    head.exhausted = retryable_status(status) && exhausted_by(x);
    x->h->on_head(x->ud, &head);
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct up_xfer *x = ud;
    size_t n = size * nmemb;

    x->last_io = clock_mono_ms();
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response starts (after a 1xx, or the first one). */
        x->head_len = 0;
        return n;
    }
    if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && !x->head_done)
            deliver_head(x);
        return n;
    }
    if (x->head_len + n > HEAD_MAX) {
        x->head_overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->head_len + n > x->head_cap) {
        /* Grow from a small block: a fixed 64 KiB per transfer made glibc
         * trim and re-grow its heap on every request (sysmalloc, madvise). */
        size_t cap = x->head_cap ? x->head_cap : HEAD_MIN;
        char *h;

        while (cap < x->head_len + n)
            cap *= 2;
        h = realloc(x->head, cap < HEAD_MAX ? cap : HEAD_MAX);
        if (!h)
            return 0;
        x->head = h;
        x->head_cap = cap < HEAD_MAX ? cap : HEAD_MAX;
    }
    memcpy(x->head + x->head_len, p, n);
    x->head_len += n;
    return n;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct up_xfer *x = ud;
    size_t n = size * nmemb;

    x->last_io = clock_mono_ms();
    if (!x->head_done)
        deliver_head(x);
    if (x->discard)
        return n;
    if (x->h->on_body(x->ud, p, n) == UP_PAUSE) {
        x->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

/* ---- the loop ----------------------------------------------------------- */

static void apply(struct up_pool *p, struct up_xfer *x, unsigned want, bool stopping)
{
    if (x->done)
        return;
    if (stopping) {
        finish(x, UP_ECANCELED, "parrot is shutting down", false);
        return;
    }
    if (want & WANT_CANCEL) {
        finish(x, UP_ECANCELED, "cancelled", false);
        return;
    }
    if (want & WANT_SUBMIT) {
        x->listed = true;
        x->prev = NULL;
        x->next = p->active;
        if (p->active)
            p->active->prev = x;
        p->active = x;
        if (!start_attempt(p, x, clock_mono_ms()))
            return;
    }
    if ((want & WANT_UNPAUSE) && x->easy) {
        x->paused = false;
        x->last_io = clock_mono_ms();
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
}

/* Pool thread: takes the work list and applies what each entry asks. */
static bool drain_work(struct up_pool *p)
{
    struct up_xfer *list;
    bool stopping;

    pthread_mutex_lock(&p->lock);
    list = p->work;
    p->work = NULL;
    stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);

    while (list) {
        struct up_xfer *x = list;
        unsigned want;

        list = x->qnext;
        pthread_mutex_lock(&p->lock);
        want = x->want;
        x->want = 0;
        x->queued = false;
        pthread_mutex_unlock(&p->lock);
        apply(p, x, want, stopping);
        /* The queue's reference; apply() dropped only the pool's, if any. */
        xfer_unref(x); // NOLINT(clang-analyzer-unix.Malloc)
    }
    return stopping;
}

static void reap(struct up_pool *p)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(p->multi, &left))) {
        struct up_xfer *x = NULL;
        char detail[CURL_ERROR_SIZE + 64];
        CURLcode rc;
        long status = 0;

        if (m->msg != CURLMSG_DONE)
            continue;
        rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (x->head_overflow)
            snprintf(detail, sizeof(detail), "upstream response headers exceed %d bytes", HEAD_MAX);
        else
            snprintf(detail, sizeof(detail), "%s%s%s", curl_easy_strerror(rc),
                     x->errbuf[0] ? ": " : "", x->errbuf);
        if (x->discard) {
            /* A retryable status whose body we drained: retry (can_retry
             * held when its headers came; it is re-checked for the time). */
            snprintf(detail, sizeof(detail), "%s", x->last_error);
            attempt_failed(p, x, UP_EUNREACH, detail, true, status >= 500 || rc != CURLE_OK);
            continue;
        }
        if (rc == CURLE_OK && !x->head_done)
            deliver_head(x);
        if (rc == CURLE_OK && !x->head_overflow) {
            if (x->prov >= 0) {
                struct provider *pv = &p->prov[x->prov];
                if (retryable_status(status))
                    atomic_fetch_add(&pv->failures, 1);
                /* A relayed 429/408/409 says nothing about the provider's
                 * health: the breaker neither trips nor resets on it. */
                if (status >= 500)
                    bal_breaker_failure(breaker(p, x->prov), clock_mono_ms());
                else if (!retryable_status(status))
                    bal_breaker_success(breaker(p, x->prov));
                else
                    bal_breaker_release(breaker(p, x->prov));
            }
            finish(x, UP_OK, detail, false);
        } else if (!x->head_done) {
            /* Nothing reached the handler: another provider may do better. */
            int err = rc == CURLE_OPERATION_TIMEDOUT ? UP_ETIMEDOUT
                      : rc == CURLE_OUT_OF_MEMORY    ? UP_ENOMEM
                                                     : UP_EUNREACH;
            attempt_failed(p, x, err, detail, err != UP_ENOMEM, true);
        } else {
            if (x->prov >= 0) {
                atomic_fetch_add(&p->prov[x->prov].failures, 1);
                bal_breaker_failure(breaker(p, x->prov), clock_mono_ms());
            }
            finish(x, rc == CURLE_OPERATION_TIMEDOUT ? UP_ETIMEDOUT : UP_EBROKEN, detail, false);
        }
    }
}

/* Timers, every TICK_MS: attempts that are due, first-byte and idle
 * timeouts. curl's own low-speed limit averages over seconds and misses a
 * provider that goes quiet after a burst, so parrot keeps its own clock. */
static void tick(struct up_pool *p)
{
    long now = clock_mono_ms();
    struct up_xfer *x, *next;

    for (x = p->active; x; x = next) {
        char detail[96];

        next = x->next;
        if (x->due) {
            if (now >= x->due)
                start_attempt(p, x, now);
            continue;
        }
        if (now < p->next_tick)
            continue;
        if (!x->head_done && p->o.first_byte_timeout_ms > 0 &&
            now - x->started > p->o.first_byte_timeout_ms) {
            snprintf(detail, sizeof(detail), "no response headers from the upstream in %ld ms",
                     now - x->started);
            drop_easy(x);
            attempt_failed(p, x, UP_ETIMEDOUT, detail, true, true);
        } else if (!x->paused && now - x->last_io > p->o.idle_timeout_ms) {
            snprintf(detail, sizeof(detail), "no data from the upstream for %ld ms",
                     now - x->last_io);
            if (x->head_done && !x->discard) {
                finish(x, UP_ETIMEDOUT, detail, false);
            } else {
                drop_easy(x);
                attempt_failed(p, x, UP_ETIMEDOUT, detail, true, true);
            }
        }
    }
    if (now >= p->next_tick)
        p->next_tick = now + TICK_MS;
}

/* How long the loop may sleep: until the next due attempt or tick. */
static int sleep_ms(const struct up_pool *p)
{
    long now = clock_mono_ms(), until = now + 1000;

    for (const struct up_xfer *x = p->active; x; x = x->next) {
        long t = x->due ? x->due : p->next_tick;
        if (t < until)
            until = t;
    }
    return until <= now ? 0 : (int)(until - now);
}

/* Fills the poll set with the client sockets of active transfers. */
static unsigned collect_watch(struct up_pool *p)
{
    unsigned n = 0;

    for (struct up_xfer *x = p->active; x && n < WATCH_MAX; x = x->next) {
        if (x->client_fd < 0)
            continue;
        p->watch[n].fd = x->client_fd;
        p->watch[n].events = CURL_WAIT_POLLIN;
        p->watch[n].revents = 0;
        p->watch_x[n++] = x;
    }
    return n;
}

/* A watched client socket became readable: it hung up, or sent data. The
 * transfers behind it are only touched here, after the poll, while they are
 * still on the active list (finish() takes them off). */
static void check_watch(struct up_pool *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct up_xfer *x = p->watch_x[i];
        char c;
        ssize_t r;

        if (!p->watch[i].revents || x->done)
            continue;
        r = recv(x->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            finish(x, UP_ECLIENT, "the client closed the connection", false);
        else
            x->client_fd = -1; /* data, or not a socket: leave it to libmicrohttpd */
    }
}

static void *pool_main(void *arg)
{
    struct up_pool *p = arg;

    for (;;) {
        int running = 0;
        unsigned nw;

        if (drain_work(p)) {
            struct up_xfer *x = p->active, *next;
            for (; x; x = next) {
                next = x->next;
                finish(x, UP_ECANCELED, "parrot is shutting down", false);
            }
            drain_work(p); /* requests queued meanwhile: release their references */
            break;
        }
        curl_multi_perform(p->multi, &running);
        reap(p);
        tick(p);
        nw = collect_watch(p);
        curl_multi_poll(p->multi, p->watch, nw, sleep_ms(p), NULL);
        check_watch(p, nw);
    }
    return NULL;
}

static void provider_fini(struct provider *pv)
{
    free(pv->base_url);
    free(pv->auth);
}

/* "https://user:pw@api.openai.com/v1" -> "https://api.openai.com:443/v1",
 * the provider's label in metrics and logs. The userinfo is left out: it may
 * hold credentials. The port is always written and the path kept, so that
 * two providers on one host (two deployments, two ports) get two labels. */
static void provider_name(const char *url, char *out, size_t outlen)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url, *host, *at, *rb;
    size_t alen = strcspn(auth, "/?#"), hlen;
    const char *port = strncmp(url, "https", 5) == 0 ? ":443" : ":80";

    at = memrchr(auth, '@', alen);
    host = at ? at + 1 : auth;
    hlen = alen - (size_t)(host - auth);
    /* "[::1]:8080": the port's colon is the one after the bracket. */
    rb = memchr(host, ']', hlen);
    if (rb ? rb + 1 < host + hlen && rb[1] == ':' : memchr(host, ':', hlen) != NULL)
        port = "";
    snprintf(out, outlen, "%.*s://%.*s%s%s", sep ? (int)(sep - url) : 4, sep ? url : "http",
             (int)hlen, host, port, auth + alen);
}

int up_pool_new(const struct up_pool_opts *o, struct up_pool **out)
{
    struct up_pool *p;

    if (o->nproviders == 0 || o->nproviders > UP_MAX_PROVIDERS)
        return UP_EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return UP_ENOMEM;
    p->o = *o;
    p->o.providers = NULL; /* copied below; the caller's array may go */
    bal_init(&p->bal, o->breaker_failures, o->breaker_cooldown_ms);
    for (size_t i = 0; i < o->nproviders; i++) {
        struct provider *pv = &p->prov[i];
        size_t bl;

        pv->base_url = strdup(o->providers[i].base_url);
        if (!pv->base_url)
            goto fail;
        bl = strlen(pv->base_url);
        while (bl > 0 && pv->base_url[bl - 1] == '/')
            pv->base_url[--bl] = '\0';
        if (o->providers[i].key) {
            size_t kl = strlen(o->providers[i].key) + 32;
            pv->auth = malloc(kl);
            if (!pv->auth)
                goto fail;
            snprintf(pv->auth, kl, "Authorization: Bearer %s", o->providers[i].key);
        }
        bal_add(&p->bal, o->providers[i].weight); /* cannot fail: UP_MAX_PROVIDERS < BAL_MAX */
        provider_name(pv->base_url, pv->name, sizeof(pv->name));
        p->nprov++;
    }
    if (getrandom(&p->rng, sizeof(p->rng), 0) != sizeof(p->rng) || p->rng == 0)
        p->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL);
    p->multi = curl_multi_init();
    p->watch = malloc(WATCH_MAX * sizeof(*p->watch));
    p->watch_x = malloc(WATCH_MAX * sizeof(*p->watch_x));
    if (!p->multi || !p->watch || !p->watch_x)
        goto fail;
    /* Keep enough idle connections around for bursts of concurrent streams. */
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, 1024L);
    pthread_mutex_init(&p->lock, NULL);
    if (pthread_create(&p->thread, NULL, pool_main, p) != 0) {
        pthread_mutex_destroy(&p->lock);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    if (p->multi)
        curl_multi_cleanup(p->multi);
    for (size_t i = 0; i < UP_MAX_PROVIDERS; i++)
        provider_fini(&p->prov[i]);
    free(p->watch);
    free(p->watch_x);
    free(p);
    return UP_ENOMEM;
}

void up_pool_shutdown(struct up_pool *p)
{
    bool joined;

    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    joined = p->joined;
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    if (joined)
        return;
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
}

void up_pool_free(struct up_pool *p)
{
    if (!p)
        return;
    up_pool_shutdown(p);
    /* Requests queued after the thread's last drain only hold references. */
    while (p->work) {
        struct up_xfer *x = p->work;
        p->work = x->qnext;
        x->queued = false;
        xfer_unref(x);
    }
    while (p->nspare > 0)
        curl_easy_cleanup(p->spare[--p->nspare]);
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->lock);
    for (size_t i = 0; i < p->nprov; i++)
        provider_fini(&p->prov[i]);
    free(p->watch);
    free(p->watch_x);
    free(p);
}

int up_pool_submit(struct up_pool *p, const struct up_req *r, const struct up_handler *h, void *ud,
                   struct up_xfer **out)
{
    struct up_xfer *x;

    if (r->nheaders > REQ_HEADERS_MAX)
        return UP_EINVAL;
    x = calloc(1, sizeof(*x));
    if (!x)
        return UP_ENOMEM;
    x->pool = p;
    x->h = h;
    x->ud = ud;
    x->refs = 1; /* the pool's, dropped in finish() */
    x->client_fd = r->client_fd;
    x->prov = -1;
    x->deadline = clock_mono_ms() + p->o.timeout_ms;
    x->body = r->body;
    x->body_len = r->body_len;
    x->method = strdup(r->method);
    x->path = strdup(r->path);
    x->lines = calloc(r->nheaders ? r->nheaders : 1, sizeof(*x->lines));
    if (!x->method || !x->path || !x->lines)
        goto fail;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!(x->lines[i] = strdup(r->headers[i])))
            goto fail;
        x->nlines++;
    }
    *out = x;
    if (!request(x, WANT_SUBMIT)) {
        *out = NULL;
        xfer_free(x);
        return UP_ECANCELED;
    }
    return 0;
fail:
    xfer_free(x);
    return UP_ENOMEM;
}
