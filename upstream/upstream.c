/* upstream.c - curl multi loops that drive every upstream transfer.
 *
 * A loop (struct up_loop) is one curl multi handle and the transfers on it;
 * one thread drives it (up_loop_run). Each HTTP worker owns a loop and runs
 * it between its own libmicrohttpd turns, so that a transfer a request
 * starts stays on the request's thread from the client's read to the
 * provider's write and back: no queue hop, no wake-up. The pool keeps one
 * loop of its own with its own thread for threads that have none (the audit
 * thread, tests). up_pool_submit() picks the calling thread's loop
 * (up_loop_bind) when it has one, else the pool's.
 *
 * A loop's curl handles are touched only by its thread. Other threads, and
 * the loop's own thread from inside a libmicrohttpd or curl callback, set
 * request bits on the transfer (submit, cancel, unpause) under the loop's
 * mutex and put it on the loop's work list once; the thread applies the bits
 * at the start of its next turn. Only a request from another thread wakes
 * the loop (an eventfd): the loop's own thread drains its list before it
 * next sleeps. Applying later rather than at once is what lets a handler
 * that holds its own lock call cancel or unpause: curl may call it back from
 * curl_easy_pause(), and on_done() from a cancel takes that lock.
 * A transfer is reference counted: the loop holds one reference while it
 * runs and the work list holds one while the transfer is queued, so a
 * cancel that races with completion finds the struct still allocated and
 * simply sees it is done.
 *
 * Events: a loop sleeps in one epoll set that holds curl's sockets (curl
 * names them and what to wait for through CURLMOPT_SOCKETFUNCTION, and its
 * next deadline through CURLMOPT_TIMERFUNCTION), the client sockets it
 * watches for a hang-up (from a transfer's first timer tick on), the
 * wake-up eventfd and the caller's fd (an HTTP worker's libmicrohttpd epoll
 * fd). A ready curl socket is handed to
 * curl_multi_socket_action(), which touches only the transfers on it:
 * curl_multi_perform() and curl_multi_poll() walked every transfer and
 * polled every socket on every turn, several turns a request.
 *
 * Attempts: a transfer owns at most one curl easy handle at a time. When an
 * attempt fails in a retryable way, its handle is dropped and the transfer
 * waits on the active list with a due time (x->due) and no handle; the loop
 * starts the next attempt when it is due. Whether a response will be retried
 * is decided when its headers arrive: if so, its body is read and dropped and
 * the handler never hears of it; if not, it is delivered as the final answer.
 *
 * Choice and breakers are upstream/balance.c's (p->bal), shared by every
 * loop under p->bal_lock; other threads only read breaker states. Failures
 * that trip breakers are the provider's own: connection errors, timeouts and
 * 5xx. A 429 or 408 moves the request to another provider but does not count
 * against the breaker.
 */
#include "upstream/upstream.h"

#include "cache/base/clock.h"
#include "cache/base/thread.h"
#include "upstream/balance.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#define WANT_SUBMIT  0x1
#define WANT_CANCEL  0x2
#define WANT_UNPAUSE 0x4

/* Response header block cap; a provider sending more is treated as broken. */
#define HEAD_MAX (64 * 1024)
#define HEAD_MIN 2048 /* first allocation of a response header block; grows by doubling */
#define HEAD_N   128
/* Events taken from the epoll set per wait. */
#define EVENTS 64
/* Turns in a row that may skip a non-blocking look at the epoll set. */
#define SKIP_MAX 2
/* Descriptors the first fd table covers; it grows by doubling. */
#define FDS_FIRST 1024
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
    struct up_loop *loop; /* the loop that runs it, for its whole life */
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

    /* Guarded by loop->lock. */
    unsigned refs;
    unsigned want;
    bool queued;
    struct up_xfer *qnext;

    /* The loop's thread only. */
    bool listed; /* on the active list */
    bool done;
    bool paused;         /* on_body asked for a pause: idle time does not count */
    bool discard;        /* this attempt's response will be retried: drop it */
    int client_fd;       /* to watch for a hang-up while >= 0 */
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

struct up_loop {
    struct up_pool *pool;
    CURLM *multi;
    pthread_mutex_t lock;
    bool stopping;        /* guarded by lock: submits are refused */
    struct up_xfer *work; /* guarded by lock */
    bool stopped;         /* guarded by pool->lock: every transfer cancelled */
    struct up_loop *next; /* the pool's list, guarded by pool->lock */
    bool kicked;          /* the loop's thread only, as the rest: take another turn */
    struct up_xfer *active;
    int ep;             /* the epoll set the thread sleeps in */
    int wakefd;         /* an eventfd in ep: other threads' wake-ups */
    int caller_fd;      /* the caller's fd in ep, or -1 */
    long curl_due;      /* monotonic ms curl's timer fires at, or -1 */
    unsigned skipped;   /* turns in a row that did not look at the epoll set */
    struct fdslot *fds; /* by descriptor: what ep watches each socket for */
    size_t nfds;
    CURL *spare[EASY_SPARE];
    size_t nspare;
    long next_tick;
    uint64_t rng;
};

/* What a loop's epoll set watches a socket for. One slot per descriptor
 * number: a socket is either curl's or a watched client's, and a number
 * closed by libmicrohttpd and reused by curl (or the other way) finds its
 * slot still describing the old socket, which ep_set() copes with. */
struct fdslot {
    uint32_t events;        /* registered in ep, as far as the loop knows; 0 = none */
    bool parked;            /* curl's, idle between its transfers (on_socket) */
    struct up_xfer *client; /* the transfer watching this client socket, or NULL */
};

struct up_pool {
    struct up_pool_opts o;
    struct provider prov[UP_MAX_PROVIDERS];
    size_t nprov;
    pthread_mutex_t bal_lock;
    struct bal bal; /* under bal_lock, but for breaker states */
    pthread_mutex_t lock;
    pthread_cond_t stopped; /* a loop has cancelled its transfers, or is gone */
    bool stopping;          /* guarded by lock */
    struct up_loop *loops;  /* guarded by lock */
    struct up_loop *own;    /* the loop of the pool's thread */
    pthread_t thread;
};

/* The loop the calling thread drives (up_loop_bind), or NULL. */
static thread_local struct up_loop *current;

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
    struct up_loop *l = x->loop;
    unsigned left;

    pthread_mutex_lock(&l->lock);
    left = --x->refs;
    pthread_mutex_unlock(&l->lock);
    if (left == 0)
        xfer_free(x);
}

/* Queues a request bit for x's loop. A submit is refused once the loop is
 * stopping, so nothing new can slip in after its last drain. */
static bool request(struct up_xfer *x, unsigned bit)
{
    struct up_loop *l = x->loop;

    pthread_mutex_lock(&l->lock);
    if (bit == WANT_SUBMIT && l->stopping) {
        pthread_mutex_unlock(&l->lock);
        return false;
    }
    x->want |= bit;
    if (!x->queued) {
        x->queued = true;
        x->refs++;
        x->qnext = l->work;
        l->work = x;
    }
    pthread_mutex_unlock(&l->lock);
    up_loop_wake(l);
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

static uint64_t rnd(struct up_loop *l)
{
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * 0x2545f4914f6cdd1dULL;
}

/* What an attempt's outcome says about its provider's health. */
enum verdict { V_HEALTHY, V_FAULT, V_NONE };

/* Reports an attempt's outcome to the breaker of the provider with index i;
 * every loop's thread shares the breakers. */
static void judge(struct up_pool *p, int i, enum verdict v, long now)
{
    struct bal_breaker *br = &p->bal.peer[i].br;

    pthread_mutex_lock(&p->bal_lock);
    if (v == V_HEALTHY)
        bal_breaker_success(br);
    else if (v == V_FAULT)
        bal_breaker_failure(br, now);
    else
        bal_breaker_release(br);
    pthread_mutex_unlock(&p->bal_lock);
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
        out[i].breaker = (enum up_breaker)bal_breaker_state(&p->bal.peer[i].br);
        out[i].attempts = atomic_load(&pv->attempts);
        out[i].failures = atomic_load(&pv->failures);
        out[i].retries = atomic_load(&pv->retries);
        out[i].failovers = atomic_load(&pv->failovers);
    }
    return p->nprov;
}

/* ---- the epoll set ------------------------------------------------------ */

/* fd's slot, the table grown to hold it; NULL when out of memory. */
static struct fdslot *slot(struct up_loop *l, int fd)
{
    if ((size_t)fd >= l->nfds) {
        size_t n = l->nfds ? l->nfds : FDS_FIRST;
        struct fdslot *t;

        while (n <= (size_t)fd)
            n *= 2;
        t = realloc(l->fds, n * sizeof(*t));
        if (!t)
            return NULL;
        memset(t + l->nfds, 0, (n - l->nfds) * sizeof(*t));
        l->fds = t;
        l->nfds = n;
    }
    return &l->fds[fd];
}

/* Makes ep watch fd for ev (0: not at all), the slot saying what it watched
 * it for. A slot can be stale: its socket closed (which took it out of ep)
 * and the number reused; so a change that fails because fd is not in ep,
 * or already is, is retried the other way. Returns false when fd cannot be
 * watched. */
static bool ep_set(struct up_loop *l, int fd, struct fdslot *f, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.fd = fd};
    int op = f->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

    f->events = 0;
    f->parked = false;
    if (ev == 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL); /* ENOENT: closed, gone already */
        return true;
    }
    if (epoll_ctl(l->ep, op, fd, &e) != 0) {
        if (errno != (op == EPOLL_CTL_MOD ? ENOENT : EEXIST))
            return false;
        op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(l->ep, op, fd, &e) != 0)
            return false;
    }
    f->events = ev;
    return true;
}

/* CURLMOPT_SOCKETFUNCTION: curl says what it waits for on socket s. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct up_loop *l = userp;
    struct fdslot *f = slot(l, s);
    uint32_t ev = what == CURL_POLL_IN      ? EPOLLIN
                  : what == CURL_POLL_OUT   ? EPOLLOUT
                  : what == CURL_POLL_INOUT ? EPOLLIN | EPOLLOUT
                                            : 0;

    (void)e;
    (void)socketp;
    if (!f)
        return -1;
    if (f->client) {
        /* A client socket's number, closed and now curl's. */
        f->client->client_fd = -1;
        f->client = NULL;
    } else if (ev == 0 && f->events == EPOLLIN) {
        /* Curl is done with the socket for now: mostly a kept-alive
         * connection going back to its cache, for the next transfer to the
         * provider, which will wait on it for EPOLLIN again. It stays in
         * ep, parked: two epoll_ctl calls a request fewer. If it turns
         * ready while parked (the provider closed it), dispatch() takes it
         * out. If curl closes it, it leaves ep by itself, and the number's
         * next socket from curl finds its slot cleared (on_sockopt). */
        f->parked = true;
        return 0;
    } else if (f->events == ev) {
        f->parked = false;
        return 0;
    }
    return ep_set(l, s, f, ev) ? 0 : -1;
}

/* CURLOPT_SOCKOPTFUNCTION: curl made a new socket. Its number may be that
 * of a parked one curl closed since: the slot no longer says anything
 * true, and a skipped epoll_ctl would leave the socket unwatched. */
static int on_sockopt(void *clientp, curl_socket_t s, curlsocktype purpose)
{
    struct up_loop *l = clientp;

    (void)purpose;
    if (s >= 0 && (size_t)s < l->nfds && !l->fds[s].client) {
        l->fds[s].events = 0;
        l->fds[s].parked = false;
    }
    return CURL_SOCKOPT_OK;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants CURL_SOCKET_TIMEOUT next. */
static int on_timer(CURLM *m, long ms, void *userp)
{
    struct up_loop *l = userp;

    (void)m;
    l->curl_due = ms < 0 ? -1 : clock_mono_ms() + ms;
    return 0;
}

/* Runs curl's timers when they are due. */
static void curl_timers(struct up_loop *l)
{
    int running;

    if (l->curl_due >= 0 && clock_mono_ms() >= l->curl_due) {
        l->curl_due = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* Starts watching x's client socket for a hang-up: EPOLLRDHUP only, so that
 * the client's next request on a kept-alive connection is not an event. */
static void watch_client(struct up_loop *l, struct up_xfer *x)
{
    struct fdslot *f = slot(l, x->client_fd);

    /* Another transfer's client had this number, closed since: that
     * transfer's number now names this connection, not its own. */
    if (f && f->client) {
        f->client->client_fd = -1;
        f->client = NULL;
    }
    if (!f || !ep_set(l, x->client_fd, f, EPOLLRDHUP)) {
        x->client_fd = -1; /* not a socket epoll takes, or no memory: unwatched */
        return;
    }
    f->client = x;
}

/* x's slot, when x watches its client: the slot says whose it is. */
static struct fdslot *watching(const struct up_loop *l, const struct up_xfer *x)
{
    struct fdslot *f;

    if (x->client_fd < 0 || (size_t)x->client_fd >= l->nfds)
        return NULL;
    f = &l->fds[x->client_fd];
    return f->client == x ? f : NULL;
}

/* Stops watching x's client socket, unless its number is already another's. */
static void unwatch_client(struct up_loop *l, struct up_xfer *x)
{
    struct fdslot *f = watching(l, x);

    if (f) {
        f->client = NULL;
        ep_set(l, x->client_fd, f, 0);
    }
}

/* ---- attempts ----------------------------------------------------------- */

static void unlist(struct up_loop *l, struct up_xfer *x)
{
    if (!x->listed)
        return;
    x->listed = false;
    if (x->prev)
        x->prev->next = x->next;
    else
        l->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

/* Easy handles are reset and kept for the next attempt: creating one costs
 * a large zeroed allocation and several more, on every request otherwise. */
static void drop_easy(struct up_xfer *x)
{
    struct up_loop *l = x->loop;

    if (x->easy) {
        curl_multi_remove_handle(l->multi, x->easy);
        if (l->nspare < EASY_SPARE) {
            curl_easy_reset(x->easy);
            l->spare[l->nspare++] = x->easy;
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

/* The loop's thread: end x, tell its owner, drop the loop's reference. */
static void finish(struct up_xfer *x, int err, const char *detail, bool retryable)
{
    struct up_result res;

    if (x->done)
        return;
    x->done = true;
    drop_easy(x);
    unwatch_client(x->loop, x);
    unlist(x->loop, x);
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

static long backoff(struct up_loop *l, unsigned attempts)
{
    long d = BACKOFF_FIRST_MS;

    for (unsigned i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return d - (long)(rnd(l) % (uint64_t)(d / 4 + 1));
}

static bool retryable_status(long s)
{
    return s == 408 || s == 409 || s == 429 || s >= 500;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *ud);
static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud);

/* The loop's thread: build the easy handle for the next attempt and start
 * it. Returns false (and has finished x) when that is impossible. */
static bool start_attempt(struct up_loop *l, struct up_xfer *x, long now)
{
    struct up_pool *p = l->pool;
    struct provider *pv;
    char *url;
    size_t ul;
    int prev = x->prov;
    long left = x->deadline - now;

    pthread_mutex_lock(&p->bal_lock);
    x->prov = bal_pick(&p->bal, x->tried, now);
    pthread_mutex_unlock(&p->bal_lock);
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

    x->easy = l->nspare ? l->spare[--l->nspare] : curl_easy_init();
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
    curl_easy_setopt(x->easy, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    curl_easy_setopt(x->easy, CURLOPT_SOCKOPTDATA, l);
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
    if (curl_multi_add_handle(l->multi, x->easy) != CURLM_OK)
        goto oom;
    return true;
oom:
    finish(x, UP_ENOMEM, "out of memory starting an upstream attempt", false);
    return false;
}

/* The current attempt failed before anything reached the handler: retry
 * when allowed, else finish with err. */
static void attempt_failed(struct up_xfer *x, int err, const char *detail, bool retryable,
                           bool provider_fault)
{
    long now = clock_mono_ms(), delay;

    if (x->prov >= 0) {
        atomic_fetch_add(&x->pool->prov[x->prov].failures, 1);
        judge(x->pool, x->prov, provider_fault ? V_FAULT : V_NONE, now);
    }
    delay = x->retry_after_ms >= 0 ? x->retry_after_ms : backoff(x->loop, x->attempts);
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
        long delay = ra >= 0 ? ra : backoff(x->loop, x->attempts);
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

static void apply(struct up_loop *l, struct up_xfer *x, unsigned want, bool stopping)
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
        x->next = l->active;
        if (l->active)
            l->active->prev = x;
        l->active = x;
        if (!start_attempt(l, x, clock_mono_ms()))
            return;
    }
    if ((want & WANT_UNPAUSE) && x->easy) {
        x->paused = false;
        x->last_io = clock_mono_ms();
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
        /* What curl held back is delivered on its next timeout action. */
        l->curl_due = x->last_io;
    }
}

/* The loop's thread: takes the work list and applies what each entry asks.
 * Returns whether the loop is stopping. */
static bool drain_work(struct up_loop *l)
{
    struct up_xfer *list;
    bool stopping;

    pthread_mutex_lock(&l->lock);
    list = l->work;
    l->work = NULL;
    stopping = l->stopping;
    pthread_mutex_unlock(&l->lock);

    while (list) {
        struct up_xfer *x = list;
        unsigned want;

        list = x->qnext;
        pthread_mutex_lock(&l->lock);
        want = x->want;
        x->want = 0;
        x->queued = false;
        pthread_mutex_unlock(&l->lock);
        apply(l, x, want, stopping);
        /* The queue's reference; apply() dropped only the loop's, if any. */
        xfer_unref(x); // NOLINT(clang-analyzer-unix.Malloc)
    }
    return stopping;
}

/* Ends every transfer of a stopping loop (each gets on_done(UP_ECANCELED))
 * and releases what was queued meanwhile. */
static void cancel_all(struct up_loop *l)
{
    struct up_xfer *x = l->active, *next;

    drain_work(l);
    for (; x; x = next) {
        next = x->next;
        finish(x, UP_ECANCELED, "parrot is shutting down", false);
    }
    drain_work(l);
}

static void reap(struct up_loop *l)
{
    struct up_pool *p = l->pool;
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(l->multi, &left))) {
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
            attempt_failed(x, UP_EUNREACH, detail, true, status >= 500 || rc != CURLE_OK);
            continue;
        }
        if (rc == CURLE_OK && !x->head_done)
            deliver_head(x);
        if (rc == CURLE_OK && !x->head_overflow) {
            if (x->prov >= 0) {
                if (retryable_status(status))
                    atomic_fetch_add(&p->prov[x->prov].failures, 1);
                /* A relayed 429/408/409 says nothing about the provider's
                 * health: the breaker neither trips nor resets on it. */
                judge(p, x->prov,
                      status >= 500               ? V_FAULT
                      : !retryable_status(status) ? V_HEALTHY
                                                  : V_NONE,
                      clock_mono_ms());
            }
            finish(x, UP_OK, detail, false);
        } else if (!x->head_done) {
            /* Nothing reached the handler: another provider may do better. */
            int err = rc == CURLE_OPERATION_TIMEDOUT ? UP_ETIMEDOUT
                      : rc == CURLE_OUT_OF_MEMORY    ? UP_ENOMEM
                                                     : UP_EUNREACH;
            attempt_failed(x, err, detail, err != UP_ENOMEM, true);
        } else {
            if (x->prov >= 0) {
                atomic_fetch_add(&p->prov[x->prov].failures, 1);
                judge(p, x->prov, V_FAULT, clock_mono_ms());
            }
            finish(x, rc == CURLE_OPERATION_TIMEDOUT ? UP_ETIMEDOUT : UP_EBROKEN, detail, false);
        }
    }
}

/* Timers, every TICK_MS: attempts that are due, first-byte and idle
 * timeouts, and the watch on the client. curl's own low-speed limit
 * averages over seconds and misses a provider that goes quiet after a
 * burst, so parrot keeps its own clock. */
static void tick(struct up_loop *l)
{
    const struct up_pool_opts *o = &l->pool->o;
    long now = clock_mono_ms();
    struct up_xfer *x, *next;

    for (x = l->active; x; x = next) {
        char detail[96];

        next = x->next;
        /* A client is watched from the first tick of its transfer on: a
         * provider answering within milliseconds costs no epoll_ctl. */
        if (now >= l->next_tick && x->client_fd >= 0 && !watching(l, x))
            watch_client(l, x);
        if (x->due) {
            if (now >= x->due)
                start_attempt(l, x, now);
            continue;
        }
        if (now < l->next_tick)
            continue;
        if (!x->head_done && o->first_byte_timeout_ms > 0 &&
            now - x->started > o->first_byte_timeout_ms) {
            snprintf(detail, sizeof(detail), "no response headers from the upstream in %ld ms",
                     now - x->started);
            drop_easy(x);
            attempt_failed(x, UP_ETIMEDOUT, detail, true, true);
        } else if (!x->paused && now - x->last_io > o->idle_timeout_ms) {
            snprintf(detail, sizeof(detail), "no data from the upstream for %ld ms",
                     now - x->last_io);
            if (x->head_done && !x->discard) {
                finish(x, UP_ETIMEDOUT, detail, false);
            } else {
                drop_easy(x);
                attempt_failed(x, UP_ETIMEDOUT, detail, true, true);
            }
        }
    }
    if (now >= l->next_tick)
        l->next_tick = now + TICK_MS;
}

/* How long the loop may sleep: until the next due attempt or tick. */
static int sleep_ms(const struct up_loop *l)
{
    long now = clock_mono_ms(), until = now + 1000;

    for (const struct up_xfer *x = l->active; x; x = x->next) {
        long t = x->due ? x->due : l->next_tick;
        if (t < until)
            until = t;
    }
    return until <= now ? 0 : (int)(until - now);
}

/* A watched client socket hung up, or seems to. The transfer behind it is
 * found through its slot, never through the event, so one that ended
 * earlier in the same batch of events is not touched. */
static void client_event(struct up_loop *l, struct up_xfer *x)
{
    char c;
    ssize_t r = recv(x->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        finish(x, UP_ECLIENT, "the client closed the connection", false);
    } else {
        unwatch_client(l, x); /* data before the hang-up: leave it to libmicrohttpd */
        x->client_fd = -1;
    }
}

/* The caller's fd joins the epoll set once, and leaves it when it changes. */
static void watch_caller(struct up_loop *l, int fd)
{
    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};

    if (fd == l->caller_fd)
        return;
    if (l->caller_fd >= 0)
        epoll_ctl(l->ep, EPOLL_CTL_DEL, l->caller_fd, NULL);
    l->caller_fd = fd >= 0 && epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &e) == 0 ? fd : -1;
}

static void dispatch(struct up_loop *l, const struct epoll_event *e)
{
    int fd = e->data.fd, running, act = 0;
    struct fdslot *f;

    if (fd == l->wakefd) {
        uint64_t n;
        ssize_t r = read(fd, &n, sizeof(n)); /* the count does not matter */

        (void)r;
        return;
    }
    if (fd == l->caller_fd || (size_t)fd >= l->nfds)
        return;
    f = &l->fds[fd];
    if (f->client) {
        client_event(l, f->client);
        return;
    }
    if (f->parked) {
        /* No transfer of curl's waits on it: out of ep, or the level-
         * triggered set reports it on every turn. Curl finds the
         * connection dead when it next looks at it. */
        ep_set(l, fd, f, 0);
        return;
    }
    if (!(f->events & (EPOLLIN | EPOLLOUT)))
        return; /* curl gave it up earlier in this batch */
    if (e->events & (EPOLLIN | EPOLLHUP))
        act |= CURL_CSELECT_IN;
    if (e->events & EPOLLOUT)
        act |= CURL_CSELECT_OUT;
    if (e->events & EPOLLERR)
        act |= CURL_CSELECT_ERR;
    curl_multi_socket_action(l->multi, fd, act, &running);
}

void up_loop_run(struct up_loop *l, int fd, long timeout_ms)
{
    struct up_pool *p = l->pool;
    struct epoll_event ev[EVENTS];
    int wait, n;

    if (drain_work(l) && !l->stopped) {
        cancel_all(l);
        pthread_mutex_lock(&p->lock);
        l->stopped = true;
        pthread_cond_broadcast(&p->stopped);
        pthread_mutex_unlock(&p->lock);
        /* No sleep on this turn: the pool's own thread ends as soon as it
         * returns (up_pool_shutdown joins it), a worker goes on serving. */
        l->kicked = true;
    }
    watch_caller(l, fd);
    /* A transfer just added is due at once: its request goes out now, not
     * after a wait that returns at once. */
    curl_timers(l);
    reap(l);
    tick(l);
    wait = sleep_ms(l);
    if (l->curl_due >= 0) {
        long d = l->curl_due - clock_mono_ms();
        if (d < wait)
            wait = d > 0 ? (int)d : 0;
    }
    if (timeout_ms >= 0 && timeout_ms < wait)
        wait = (int)timeout_ms;
    /* Something on this thread asked for another turn, without a wake-up. */
    if (l->kicked)
        wait = 0;
    l->kicked = false;
    /* A turn that must not wait is mostly the caller's (libmicrohttpd
     * walking a resumed connection through its states takes three). Its
     * look at the epoll set is left out up to SKIP_MAX times in a row: the
     * set is level-triggered, so what is ready now is still there then. */
    if (wait == 0 && l->skipped < SKIP_MAX) {
        l->skipped++;
        return;
    }
    l->skipped = 0;
    n = epoll_wait(l->ep, ev, EVENTS, wait);
    for (int i = 0; i < n; i++)
        dispatch(l, &ev[i]);
    curl_timers(l);
    reap(l);
}

/* Ends the wait of l's thread, or its next one. */
static void wake(struct up_loop *l)
{
    uint64_t one = 1;
    /* It cannot fail but with EAGAIN, when the count is full: a wake-up is
     * pending then anyway. */
    ssize_t r = write(l->wakefd, &one, sizeof(one));

    (void)r;
}

void up_loop_wake(struct up_loop *l)
{
    /* The loop's own thread is awake: it only must not sleep next. */
    if (l == current)
        l->kicked = true;
    else
        wake(l);
}

void up_loop_bind(struct up_loop *l)
{
    current = l;
}

struct up_loop *up_loop_current(void)
{
    return current;
}

static void *pool_main(void *arg)
{
    struct up_loop *l = arg;

    up_loop_bind(l);
    while (!l->stopped)
        up_loop_run(l, -1, -1);
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

/* Frees what up_loop_new() allocated, its easy handles kept for reuse too. */
static void loop_destroy(struct up_loop *l)
{
    while (l->nspare > 0)
        curl_easy_cleanup(l->spare[--l->nspare]);
    if (l->multi)
        curl_multi_cleanup(l->multi); /* may still tell on_socket() about its sockets */
    if (l->ep >= 0)
        close(l->ep);
    if (l->wakefd >= 0)
        close(l->wakefd);
    free(l->fds);
    free(l);
}

int up_loop_new(struct up_pool *p, struct up_loop **out)
{
    struct up_loop *l = calloc(1, sizeof(*l));

    if (!l)
        return UP_ENOMEM;
    l->pool = p;
    l->caller_fd = -1;
    l->curl_due = -1;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->multi = curl_multi_init();
    if (l->ep < 0 || l->wakefd < 0 || !l->multi ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wakefd,
                  &(struct epoll_event){.events = EPOLLIN, .data.fd = l->wakefd}) != 0) {
        loop_destroy(l);
        return UP_ENOMEM;
    }
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    /* Keep enough idle connections around for bursts of concurrent streams. */
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, 1024L);
    if (getrandom(&l->rng, sizeof(l->rng), 0) != sizeof(l->rng) || l->rng == 0)
        l->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)l;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_lock(&p->lock);
    /* Born after a shutdown: stopped, so that submits to it are refused. */
    l->stopping = l->stopped = p->stopping;
    l->next = p->loops;
    p->loops = l;
    pthread_mutex_unlock(&p->lock);
    *out = l;
    return 0;
}

void up_loop_free(struct up_loop *l)
{
    struct up_pool *p;

    if (!l)
        return;
    p = l->pool;
    pthread_mutex_lock(&p->lock);
    for (struct up_loop **pp = &p->loops; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    /* A shutdown waiting for this loop to stop waits no more. */
    pthread_cond_broadcast(&p->stopped);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    pthread_mutex_unlock(&l->lock);
    cancel_all(l);
    if (current == l)
        current = NULL;
    pthread_mutex_destroy(&l->lock);
    loop_destroy(l);
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
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->bal_lock, NULL);
    pthread_cond_init(&p->stopped, NULL);
    if (up_loop_new(p, &p->own) != 0)
        goto fail_sync;
    if (thread_start(&p->thread, pool_main, p->own, "parrot-upstream") != 0) {
        up_loop_free(p->own);
        goto fail_sync;
    }
    *out = p;
    return 0;
fail_sync:
    pthread_cond_destroy(&p->stopped);
    pthread_mutex_destroy(&p->bal_lock);
    pthread_mutex_destroy(&p->lock);
fail:
    for (size_t i = 0; i < UP_MAX_PROVIDERS; i++)
        provider_fini(&p->prov[i]);
    free(p);
    return UP_ENOMEM;
}

/* Whether every loop has cancelled its transfers (p->lock held). */
static bool all_stopped(const struct up_pool *p)
{
    for (const struct up_loop *l = p->loops; l; l = l->next)
        if (!l->stopped)
            return false;
    return true;
}

void up_pool_shutdown(struct up_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->stopping = true;
    for (struct up_loop *l = p->loops; l; l = l->next) {
        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        pthread_mutex_unlock(&l->lock);
        wake(l);
    }
    /* Each loop's thread cancels its own transfers, so that every on_done
     * runs on the thread its handler expects. */
    while (!all_stopped(p))
        pthread_cond_wait(&p->stopped, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
}

void up_pool_free(struct up_pool *p)
{
    if (!p)
        return;
    up_pool_shutdown(p);
    up_loop_free(p->own); /* the other loops are their owners' to free, before this */
    pthread_cond_destroy(&p->stopped);
    pthread_mutex_destroy(&p->bal_lock);
    pthread_mutex_destroy(&p->lock);
    for (size_t i = 0; i < p->nprov; i++)
        provider_fini(&p->prov[i]);
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
    /* The calling thread's own loop when it has one: no hand-off. */
    x->loop = current && current->pool == p ? current : p->own;
    x->h = h;
    x->ud = ud;
    x->refs = 1; /* the loop's, dropped in finish() */
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
