/* upstream.h - the provider pool: libcurl transfers, weighted failover,
 * retries and circuit breakers.
 *
 * Transfers run on loops: a loop is a curl multi handle that one thread
 * drives. A thread that serves requests (an HTTP worker) owns a loop and
 * runs it from its own event loop (up_loop_run), so that the transfers it
 * submits start, run and call back on that thread: no hand-off, no wake-up.
 * The pool has one loop with a thread of its own for submits from threads
 * that own none. No thread per request. Connections to providers are kept
 * alive and reused, per loop.
 *
 * A transfer may take several attempts. Each attempt goes to a provider
 * chosen by smooth weighted round-robin among those not yet tried for this
 * request whose breaker lets traffic through. An attempt that fails the way
 * the OpenAI SDKs retry (connection error, timeout, 408, 409, 429, 5xx) is
 * retried after an exponential backoff with jitter, or after the provider's
 * retry-after-ms / Retry-After, within retry_max_delay and the request's
 * total time budget. The handler only ever sees the attempt that counts: a
 * response is delivered (on_head) only when no retry will follow it, so once
 * bytes reach the client the provider is fixed.
 *
 * Threads: up_pool_submit(), up_xfer_cancel(), up_xfer_unpause(),
 * up_pool_ready(), up_pool_provider_stats() and up_loop_wake() may be called
 * from any thread. A transfer runs on the loop of the thread that submitted
 * it (up_loop_bind), else on the pool's; its handler callbacks run on that
 * loop's thread and must not block. Cancel and unpause take effect on that
 * thread's next turn, never inside the call, so a handler may call them
 * while it holds a lock that its callbacks take.
 *
 * Lifetime: the struct up_xfer returned by up_pool_submit() stays valid until
 * the handler's on_done() returns. on_done() runs exactly once for every
 * successful submit, also when the transfer is cancelled or the pool is shut
 * down. Callers that may cancel from another thread guard their pointer with
 * their own lock and clear it inside on_done() (see proxy/exchange.c).
 */
#ifndef PARROT_UPSTREAM_H
#define PARROT_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Results given to on_done(). */
#define UP_OK        0
#define UP_ENOMEM    (-12)
#define UP_EBROKEN   (-32)  /* the connection failed after the response began */
#define UP_ECLIENT   (-104) /* the watched client connection closed */
#define UP_ETIMEDOUT (-110) /* connect, first-byte, idle or total timeout */
#define UP_EUNREACH  (-111) /* no response: refused, DNS, TLS, reset, empty reply */
#define UP_ECANCELED (-125) /* up_xfer_cancel() or pool shutdown */
#define UP_EINVAL    (-22)

/* on_body() returns this to make the pool hold the bytes and stop reading
 * from the provider until up_xfer_unpause(). */
#define UP_PAUSE 1

#define UP_NAME_MAX      160 /* a provider label, NUL included */
#define UP_MAX_PROVIDERS 32

struct up_pool;
struct up_loop;
struct up_xfer;

struct up_provider_opts {
    const char *base_url; /* e.g. "https://api.openai.com/v1" */
    const char *key;      /* sent as Authorization: Bearer KEY, or NULL */
    unsigned weight;      /* >= 1 */
};

struct up_pool_opts {
    const struct up_provider_opts *providers;
    size_t nproviders;          /* 1..UP_MAX_PROVIDERS */
    long connect_timeout_ms;    /* per attempt */
    long first_byte_timeout_ms; /* per attempt, until the headers; 0 = none */
    long timeout_ms;            /* the whole transfer, all attempts */
    long idle_timeout_ms;       /* no byte received for this long (paused time excluded) */
    unsigned retries;           /* extra attempts after a retryable failure */
    long retry_max_delay_ms;    /* longest backoff or Retry-After honoured */
    unsigned breaker_failures;  /* consecutive failures that open a breaker */
    long breaker_cooldown_ms;   /* open time before a half-open probe */
    bool http2;                 /* HTTP/2 over TLS when the provider offers it */
};

struct up_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct up_head {
    long status;
    int64_t content_length;          /* -1 when not announced */
    const struct up_header *headers; /* valid only during on_head */
    size_t nheaders;
    /* The status is one the SDKs would retry, and parrot has used up its own
     * retries: tell the client not to multiply them (x-should-retry: false). */
    bool exhausted;
};

struct up_result {
    unsigned attempts;
    const char *provider; /* the last provider tried, "host:port" */
    bool exhausted;       /* a retryable failure with no retry left */
};

struct up_handler {
    void (*on_head)(void *ud, const struct up_head *h);
    /* Body bytes, as received. Return 0 when consumed or UP_PAUSE. */
    int (*on_body)(void *ud, const char *p, size_t n);
    /* Last call; err is UP_OK or a negative UP_E* code, detail a short text. */
    void (*on_done)(void *ud, int err, const char *detail, const struct up_result *r);
};

struct up_req {
    const char *method;
    const char *path;           /* appended to the base URL, e.g. "/chat/completions?x=1" */
    const char *const *headers; /* "Name: value" lines (copied); an Authorization line is
                                   replaced by a provider's own key when it has one */
    size_t nheaders;
    const char *body; /* not copied: must stay valid until on_done() */
    size_t body_len;
    /* The client's socket, or -1. While the client waits, libmicrohttpd does
     * not poll its connection, so the pool does (from the transfer's first
     * timer tick on, within 100 ms): when the client hangs up, the transfer
     * ends with UP_ECLIENT instead of running on for nothing. Data the client
     * sent before hanging up stops the watch: libmicrohttpd will read it. */
    int client_fd;
};

enum up_breaker { UP_BREAKER_CLOSED = 0, UP_BREAKER_HALF_OPEN = 1, UP_BREAKER_OPEN = 2 };

struct up_provider_stats {
    char name[UP_NAME_MAX]; /* scheme://host:port/path, no credentials */
    unsigned weight;
    enum up_breaker breaker;
    uint64_t attempts;  /* requests sent to it */
    uint64_t failures;  /* attempts that failed (error, timeout, 408, 409, 429, 5xx) */
    uint64_t retries;   /* attempts that were a retry */
    uint64_t failovers; /* retries that moved to it from another provider */
};

/* Start the pool's thread. Returns 0 or a negative UP_E* code. */
int up_pool_new(const struct up_pool_opts *o, struct up_pool **out);

/* Cancel every transfer on every loop (each gets on_done(UP_ECANCELED) on
 * its loop's thread) and stop the pool's thread; returns when all are done,
 * so every loop's thread must be running up_loop_run() meanwhile (or its
 * loop freed). Later submits fail with UP_ECANCELED; cancel and unpause stay
 * safe to call. Idempotent. */
void up_pool_shutdown(struct up_pool *p);

/* up_pool_shutdown() and free the pool. Every loop made with up_loop_new()
 * must be freed before. NULL is a no-op. */
void up_pool_free(struct up_pool *p);

/* A loop for a thread that has an event loop of its own. Returns 0 or
 * UP_ENOMEM. */
int up_loop_new(struct up_pool *p, struct up_loop **out);

/* Make l the calling thread's loop: its up_pool_submit() calls run there.
 * Called once by the thread that will run l. */
void up_loop_bind(struct up_loop *l);

/* One turn of l, on its thread: apply what was asked, drive the transfers,
 * run their callbacks, then wait up to timeout_ms (< 0: no limit of the
 * caller's) for provider I/O, a timer, a wake-up or fd (>= 0, e.g. an HTTP
 * server's epoll fd) becoming readable. */
void up_loop_run(struct up_loop *l, int fd, long timeout_ms);

/* Make l's thread take another turn at once (any thread): from another
 * thread this ends its wait, or its next one; on l's own thread its next
 * wait does not start. For whoever shares l's thread, e.g. an HTTP server
 * whose resumed connections the thread must serve. */
void up_loop_wake(struct up_loop *l);

/* The calling thread's loop (up_loop_bind), or NULL. */
struct up_loop *up_loop_current(void);

/* Cancel l's transfers (their on_done runs on the calling thread) and free
 * it, once no thread runs it any more. NULL is a no-op. */
void up_loop_free(struct up_loop *l);

/* Queue a transfer. On success returns 0 and *out; the handler will be
 * called. On failure returns a negative code and the handler never runs. */
int up_pool_submit(struct up_pool *p, const struct up_req *r, const struct up_handler *h, void *ud,
                   struct up_xfer **out);

/* Ask the pool to abort x; on_done(UP_ECANCELED) follows unless the transfer
 * finished first. Only before x's on_done() has returned. */
void up_xfer_cancel(struct up_xfer *x);

/* Resume reading after on_body() returned UP_PAUSE. Same rule as cancel. */
void up_xfer_unpause(struct up_xfer *x);

/* True when at least one provider's breaker lets traffic through. */
bool up_pool_ready(struct up_pool *p);

/* Copy per-provider counters into out[0..max); returns the provider count. */
size_t up_pool_provider_stats(struct up_pool *p, struct up_provider_stats *out, size_t max);

#endif
