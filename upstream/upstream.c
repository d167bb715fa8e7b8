/* upstream.c - one thread, one curl multi handle, every upstream transfer.
 *
 * Other threads never touch a curl handle: they set request bits on the
 * transfer (submit, cancel, unpause) under the pool mutex, put it on the
 * pool's work list once, and wake the thread with curl_multi_wakeup(). The
 * thread applies the bits between curl_multi_perform() calls. A transfer is
 * reference counted: the pool holds one reference while it runs and the work
 * list holds one while the transfer is queued, so a cancel that races with
 * completion finds the struct still allocated and simply sees it is done.
 */
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WANT_SUBMIT  0x1
#define WANT_CANCEL  0x2
#define WANT_UNPAUSE 0x4

/* Response header block cap; a provider sending more is treated as broken. */
#define HEAD_MAX (64 * 1024)
#define HEAD_N   128
/* Client sockets watched per poll, at most; the rest are not watched. */
#define WATCH_MAX 8192
/* How often idle timers are checked. */
#define IDLE_TICK_MS 100

struct up_xfer {
    struct up_pool *pool;
    CURL *easy;
    struct curl_slist *headers;
    const struct up_handler *h;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];

    /* Received header block of the current response. */
    char *head;
    size_t head_len;
    bool head_done;
    bool head_overflow;

    /* Guarded by pool->lock. */
    unsigned refs;
    unsigned want;
    bool queued;
    struct up_xfer *qnext;

    /* Pool thread only. */
    bool active; /* added to the multi handle */
    bool done;
    bool paused;                 /* on_body asked for a pause: idle time does not count */
    int client_fd;               /* watched while >= 0 */
    long last_io;                /* monotonic ms of the last byte from the provider */
    struct up_xfer *prev, *next; /* active list */
};

struct up_pool {
    struct up_pool_opts o;
    char *base_url;
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stopping;             /* guarded by lock */
    bool joined;               /* guarded by lock */
    struct up_xfer *work;      /* guarded by lock */
    struct up_xfer *active;    /* pool thread only */
    struct curl_waitfd *watch; /* pool thread only: poll set for client fds */
    struct up_xfer **watch_x;
    long next_idle_check;
};

static long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void xfer_unref(struct up_xfer *x)
{
    struct up_pool *p = x->pool;
    unsigned left;

    pthread_mutex_lock(&p->lock);
    left = --x->refs;
    pthread_mutex_unlock(&p->lock);
    if (left == 0) {
        free(x->head);
        free(x);
    }
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

/* Pool thread: end x, tell its owner, drop the pool's reference. */
static void finish(struct up_xfer *x, int err, const char *detail)
{
    struct up_pool *p = x->pool;

    if (x->done)
        return;
    x->done = true;
    if (x->active) {
        curl_multi_remove_handle(p->multi, x->easy);
        x->active = false;
        if (x->prev)
            x->prev->next = x->next;
        else
            p->active = x->next;
        if (x->next)
            x->next->prev = x->prev;
    }
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->h->on_done(x->ud, err, detail);
    xfer_unref(x);
}

/* Splits the stored header block into name/value pairs and hands them over. */
static void deliver_head(struct up_xfer *x)
{
    struct up_header hs[HEAD_N];
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
    x->h->on_head(x->ud, status, hs, n, (int64_t)cl);
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct up_xfer *x = ud;
    size_t n = size * nmemb;

    x->last_io = mono_ms();
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
    if (!x->head) {
        x->head = malloc(HEAD_MAX);
        if (!x->head)
            return 0;
    }
    memcpy(x->head + x->head_len, p, n);
    x->head_len += n;
    return n;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct up_xfer *x = ud;
    size_t n = size * nmemb;

    x->last_io = mono_ms();
    if (!x->head_done)
        deliver_head(x);
    if (x->h->on_body(x->ud, p, n) == UP_PAUSE) {
        x->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

static int map_error(const struct up_xfer *x, CURLcode rc)
{
    if (rc == CURLE_OK)
        return UP_OK;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return UP_ETIMEDOUT;
    if (rc == CURLE_OUT_OF_MEMORY)
        return UP_ENOMEM;
    return x->head_done ? UP_EBROKEN : UP_EUNREACH;
}

static void apply(struct up_pool *p, struct up_xfer *x, unsigned want, bool stopping)
{
    if (x->done)
        return;
    if (stopping) {
        finish(x, UP_ECANCELED, "parrot is shutting down");
        return;
    }
    if (want & WANT_CANCEL) {
        finish(x, UP_ECANCELED, "cancelled");
        return;
    }
    if (want & WANT_SUBMIT) {
        if (curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
            finish(x, UP_ENOMEM, "curl_multi_add_handle failed");
            return;
        }
        x->active = true;
        x->prev = NULL;
        x->next = p->active;
        if (p->active)
            p->active->prev = x;
        p->active = x;
    }
    if ((want & WANT_UNPAUSE) && x->active) {
        x->paused = false;
        x->last_io = mono_ms();
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

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x->head_overflow)
            snprintf(detail, sizeof(detail), "upstream response headers exceed %d bytes", HEAD_MAX);
        else
            snprintf(detail, sizeof(detail), "%s%s%s", curl_easy_strerror(m->data.result),
                     x->errbuf[0] ? ": " : "", x->errbuf);
        if (m->data.result == CURLE_OK && !x->head_done)
            deliver_head(x);
        finish(x, x->head_overflow ? UP_EBROKEN : map_error(x, m->data.result), detail);
    }
}

/* Ends transfers that heard nothing from the provider for idle_timeout_ms.
 * curl's own low-speed limit averages over seconds and misses a provider
 * that goes quiet after a burst, so parrot keeps its own clock. */
static void check_idle(struct up_pool *p)
{
    long now = mono_ms();
    struct up_xfer *x, *next;

    if (now < p->next_idle_check)
        return;
    p->next_idle_check = now + IDLE_TICK_MS;
    for (x = p->active; x; x = next) {
        next = x->next;
        if (!x->paused && now - x->last_io > p->o.idle_timeout_ms) {
            char detail[96];
            snprintf(detail, sizeof(detail), "no data from the upstream for %ld ms",
                     now - x->last_io);
            finish(x, UP_ETIMEDOUT, detail);
        }
    }
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
            finish(x, UP_ECLIENT, "the client closed the connection");
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
                finish(x, UP_ECANCELED, "parrot is shutting down");
            }
            drain_work(p); /* requests queued meanwhile: release their references */
            break;
        }
        curl_multi_perform(p->multi, &running);
        reap(p);
        check_idle(p);
        nw = collect_watch(p);
        curl_multi_poll(p->multi, p->watch, nw, p->active ? IDLE_TICK_MS : 1000, NULL);
        check_watch(p, nw);
    }
    return NULL;
}

int up_pool_new(const struct up_pool_opts *o, struct up_pool **out)
{
    struct up_pool *p = calloc(1, sizeof(*p));
    size_t bl;

    if (!p)
        return UP_ENOMEM;
    p->o = *o;
    p->base_url = strdup(o->base_url);
    if (!p->base_url)
        goto fail;
    bl = strlen(p->base_url);
    while (bl > 0 && p->base_url[bl - 1] == '/')
        p->base_url[--bl] = '\0';
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
    free(p->watch);
    free(p->watch_x);
    free(p->base_url);
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
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->lock);
    free(p->watch);
    free(p->watch_x);
    free(p->base_url);
    free(p);
}

int up_pool_submit(struct up_pool *p, const struct up_req *r, const struct up_handler *h, void *ud,
                   struct up_xfer **out)
{
    struct up_xfer *x;
    char *url;
    size_t ul;

    x = calloc(1, sizeof(*x));
    if (!x)
        return UP_ENOMEM;
    x->pool = p;
    x->h = h;
    x->ud = ud;
    x->refs = 1; /* the pool's, dropped in finish() */
    x->client_fd = r->client_fd;
    x->last_io = mono_ms();
    x->easy = curl_easy_init();
    if (!x->easy)
        goto fail;
    for (size_t i = 0; i < r->nheaders; i++) {
        struct curl_slist *n = curl_slist_append(x->headers, r->headers[i]);
        if (!n)
            goto fail;
        x->headers = n;
    }
    ul = strlen(p->base_url) + strlen(r->path) + 1;
    url = malloc(ul);
    if (!url)
        goto fail;
    snprintf(url, ul, "%s%s", p->base_url, r->path);
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
    curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, p->o.connect_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, p->o.timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");

    if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(r->method, "POST") != 0)
            curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, r->method);
        if (r->body_len > 0 || strcmp(r->method, "POST") == 0) {
            curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
            curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
    }
    *out = x;
    if (!request(x, WANT_SUBMIT)) {
        *out = NULL;
        curl_slist_free_all(x->headers);
        curl_easy_cleanup(x->easy);
        free(x);
        return UP_ECANCELED;
    }
    return 0;
fail:
    curl_slist_free_all(x->headers);
    if (x->easy)
        curl_easy_cleanup(x->easy);
    free(x);
    return UP_ENOMEM;
}
