/* upstream.h - the libcurl transfer engine behind parrot.
 *
 * One thread owns a curl multi handle and drives every upstream transfer;
 * no thread per request. Connections to the provider are kept alive and
 * reused by that multi handle.
 *
 * Threads: up_pool_submit(), up_xfer_cancel() and up_xfer_unpause() may be
 * called from any thread. All handler callbacks run on the pool's thread, so
 * they must not block: they copy bytes into a buffer and return.
 *
 * Lifetime: the struct up_xfer returned by up_pool_submit() stays valid until
 * the handler's on_done() returns. on_done() runs exactly once for every
 * successful submit, also when the transfer is cancelled or the pool is shut
 * down. Callers that may cancel from another thread guard their pointer with
 * their own lock and clear it inside on_done() (see proxy/server.c).
 */
#ifndef PARROT_UPSTREAM_H
#define PARROT_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

/* Results given to on_done(). */
#define UP_OK        0
#define UP_ENOMEM    (-12)
#define UP_EBROKEN   (-32)  /* the connection failed after the response began */
#define UP_ETIMEDOUT (-110) /* connect, idle or total timeout */
#define UP_EUNREACH  (-111) /* no response: refused, DNS, TLS, reset, empty reply */
#define UP_ECANCELED (-125) /* up_xfer_cancel() or pool shutdown */
#define UP_ECLIENT   (-104) /* the watched client connection closed */
#define UP_EINVAL    (-22)

/* on_body() returns this to make the pool hold the bytes and stop reading
 * from the provider until up_xfer_unpause(). */
#define UP_PAUSE 1

struct up_pool;
struct up_xfer;

struct up_pool_opts {
    const char *base_url; /* e.g. "https://api.openai.com/v1" (no trailing slash needed) */
    long connect_timeout_ms;
    long timeout_ms;      /* whole transfer */
    long idle_timeout_ms; /* no byte received for this long (paused time excluded) */
};

struct up_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct up_handler {
    /* Final status and headers (1xx are skipped). The array lives only for
     * the call. content_length is -1 when the provider did not announce it. */
    void (*on_head)(void *ud, long status, const struct up_header *h, size_t n,
                    int64_t content_length);
    /* Body bytes, as received. Return 0 when consumed or UP_PAUSE. */
    int (*on_body)(void *ud, const char *p, size_t n);
    /* Last call; err is UP_OK or a negative UP_E* code, detail a short text. */
    void (*on_done)(void *ud, int err, const char *detail);
};

struct up_req {
    const char *method;
    const char *path;           /* appended to base_url, e.g. "/chat/completions?x=1" */
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;
    const char *body; /* not copied: must stay valid until on_done() */
    size_t body_len;
    /* The client's socket, or -1. While the client waits, libmicrohttpd does
     * not poll its connection, so the pool does: when the client hangs up,
     * the transfer ends with UP_ECLIENT instead of running on for nothing.
     * Data from the client (a pipelined request) stops the watch. */
    int client_fd;
};

/* Start the pool's thread. Returns 0 or a negative UP_E* code. */
int up_pool_new(const struct up_pool_opts *o, struct up_pool **out);

/* Cancel every transfer (each gets on_done(UP_ECANCELED)) and stop the
 * thread. Later submits fail with UP_ECANCELED; cancel and unpause stay
 * safe to call. Idempotent. */
void up_pool_shutdown(struct up_pool *p);

/* up_pool_shutdown() and free the pool. NULL is a no-op. */
void up_pool_free(struct up_pool *p);

/* Queue a transfer. On success returns 0 and *out; the handler will be
 * called. On failure returns a negative code and the handler never runs. */
int up_pool_submit(struct up_pool *p, const struct up_req *r, const struct up_handler *h, void *ud,
                   struct up_xfer **out);

/* Ask the pool to abort x; on_done(UP_ECANCELED) follows unless the transfer
 * finished first. Only before x's on_done() has returned. */
void up_xfer_cancel(struct up_xfer *x);

/* Resume reading after on_body() returned UP_PAUSE. Same rule as cancel. */
void up_xfer_unpause(struct up_xfer *x);

#endif
