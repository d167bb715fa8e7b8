/* exchange.h - one request's exchange and the server state it runs in,
 * shared by the three files of the HTTP front end (private to proxy/):
 *
 *   server.c    the libmicrohttpd daemon: start, drain, stop
 *   exchange.c  the machinery of one request: body, responses, the hand-off
 *               to the upstream pool and back, suspensions and wake-ups,
 *               the request's metrics and log line
 *   routes.c    what a request is: the head's checks, the route, the cache
 *               policy's verdicts, and the operational endpoints
 *
 * Every request gets a struct exch ("exchange"). Up to four parties hold a
 * reference to it and each drops its own: libmicrohttpd (until the request
 * completes), the upstream transfer (until on_done), a streaming response
 * (until libmicrohttpd frees it), and a pending wake-up (from
 * xch_wait_suspended until xch_wake_as). x->lock guards everything the
 * transfer's callbacks and a wake-up from another thread may touch. The
 * transfer runs on the upstream loop of the worker thread that serves the
 * connection (x->loop), so its callbacks run on that thread too.
 *
 * The life of a proxied request:
 *   1. The head arrives: routes.c checks it (route_head) before a byte of
 *      the body is read; the body is collected (capped), and route_dispatch
 *      validates it and submits the upstream transfer (xch_forward), which
 *      suspends the connection (XS_WAIT).
 *   2. In the worker's upstream loop, on_head decides the mode. SSE, or a
 *      body larger than FULL_MAX, is streamed: the connection is resumed
 *      (XS_STREAM) and the handler queues a response whose reader pulls from
 *      x->out. Anything else is collected whole (XS_FULL) and sent with a
 *      Content-Length when the transfer ends, which costs one resume instead
 *      of several.
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
 * up again when it is woken (XS_RETRY). The answer to a miss is queued for
 * storing from on_done and stored after the client has it (proxy/chat.c); a
 * lookup that a queued answer could serve waits suspended for it
 * (XS_STORING) and looks again when it is stored (XS_STORED), so the next
 * identical or paraphrased request hits.
 * With a remote embedder, a lookup that needs a vector waits suspended for
 * it (XS_EMBED) and finishes when the embedder's thread wakes it
 * (XS_EMBEDDED): no HTTP thread is held while the embedding is computed.
 */
#ifndef PARROT_EXCHANGE_H
#define PARROT_EXCHANGE_H

#include "cache/base/buf.h"
#include "proxy/admin.h"
#include "proxy/openai/oai.h"
#include "proxy/ratelimit.h"
#include "upstream/upstream.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define REQ_ID_MAX 128

struct cfg;
struct cache;
struct chat;
struct chat_req;
struct audit;
struct emb_call;
struct auth;
struct metrics;
struct conns;
struct conn;
struct worker;

/* Where a request goes, decided from its head before any body is read. */
enum rkind {
    RK_HEALTH,      /* /healthz */
    RK_READY,       /* /readyz */
    RK_METRICS,     /* /metrics */
    RK_ADMIN,       /* /admin/... */
    RK_DASHBOARD,   /* /dashboard, /dashboard/stats.json */
    RK_CHAT,        /* POST /v1/chat/completions: through the cache */
    RK_EMBED,       /* POST /v1/embeddings: through the cache, input by input */
    RK_COMPLETIONS, /* POST /v1/completions (legacy): through the cache, as chat */
    RK_RESPONSES,   /* POST /v1/responses: through the cache when self-contained */
    RK_V1,          /* anything else under /v1: passed through */
};

enum xstate {
    XS_NEW,       /* the handler has not seen the request yet */
    XS_BODY,      /* collecting the request body */
    XS_FLIGHT,    /* waiting behind an identical request, connection suspended */
    XS_RETRY,     /* woken from XS_FLIGHT: look the cache up again */
    XS_EMBED,     /* waiting for the remote embedder, connection suspended */
    XS_EMBEDDED,  /* woken from XS_EMBED: finish the lookup */
    XS_PEER,      /* leading here, waiting while another replica leads (suspended) */
    XS_PEER_END,  /* woken from XS_PEER: look again, or go to the provider */
    XS_STORING,   /* waiting for an answer in the store queue (suspended) */
    XS_STORED,    /* woken from XS_STORING: look again */
    XS_WAIT,      /* upstream submitted, connection suspended */
    XS_STREAM,    /* headers known: queue a streaming response */
    XS_FULL,      /* whole body in x->out: queue it */
    XS_FAILED,    /* nothing from the provider: queue x->err */
    XS_RESPONDED, /* a response is queued */
};

struct server {
    const struct cfg *cfg;
    struct up_pool *pool;
    struct cache *cache;  /* the caller's; NULL when the cache is off */
    struct replica *rep;  /* the caller's; NULL without the redis option */
    struct chat *chat;    /* the request policy over it, or NULL */
    struct audit *audit;  /* audits of semantic hits, or NULL with the cache off */
    struct ratelimit *rl; /* NULL when no rate limit is set */
    struct auth *auth;
    struct admin admin;
    struct metrics *met;
    struct worker *workers; /* the HTTP threads: a daemon and an upstream loop each */
    unsigned nworkers;
    atomic_bool stopping; /* the workers leave their loops */
    char addr[64];
    atomic_bool draining;
    atomic_size_t inflight;

    struct conns *conns; /* connection deadlines */
};

struct exch {
    atomic_uint refs;
    pthread_mutex_t lock;
    struct server *srv;
    struct MHD_Connection *conn;
    struct conn *track;
    struct up_loop *loop; /* its worker's: the thread that serves the connection */
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
    /* Cache policy for embeddings; NULL on other routes. */
    struct emb_call *emb;

    /* Upstream side; guarded by lock from XS_WAIT on. */
    enum xstate state;
    struct up_xfer *xfer; /* NULL once on_done ran */
    bool suspended;       /* we suspended the connection and owe it a resume */
    bool closed;          /* libmicrohttpd completed the request */
    bool streaming;
    bool sse;
    bool paused;   /* the transfer is paused for back-pressure */
    bool overflow; /* an answer that must be whole outgrew EMB_MERGE_MAX */
    bool unmerged; /* an embeddings answer could not be merged: x->err says why */
    bool up_done;
    int up_err;
    long up_status;
    int64_t up_length;
    struct buf rh;  /* relayed response headers, "name\0value\0" pairs */
    struct buf out; /* response bytes; those from out_off on are not yet sent */
    size_t out_off; /* (0 in XS_FULL: the whole answer) */
    struct oai_error err;
    struct timespec t_up0, t_up1;
    struct timespec t_up_head; /* the provider's response head arrived; zero before */
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

/* ---- exchange.c ---------------------------------------------------------- */

/* Drop one reference; the last frees x. */
void xch_unref(struct exch *x);

/* Queue a response of len bytes (mode as for MHD_create_response_from_buffer)
 * with parrot's headers, and record the status for the log. */
enum MHD_Result xch_queue_buffer(struct exch *x, int status, const char *ctype, char *body,
                                 size_t len, enum MHD_ResponseMemoryMode mode);

/* Queue *e as an OpenAI-shaped error. */
enum MHD_Result xch_queue_error(struct exch *x, const struct oai_error *e);

/* Queue a constant JSON body. */
enum MHD_Result xch_queue_json(struct exch *x, int status, const char *json);

/* Submit x to the provider (path: the part after /v1, with its query) and
 * suspend its connection; rate limits are taken here. */
enum MHD_Result xch_forward(struct exch *x, const char *path);

/* Wake a suspended request into state st and drop the reference its waker
 * held (any thread). */
void xch_wake_as(struct exch *x, enum xstate st);

/* Suspend x in state st when start(x) arranged a wake-up (xch_wake_as), which
 * then owns a reference to x. Returns false, x untouched, when start
 * declined. */
bool xch_wait_suspended(struct exch *x, enum xstate st, bool (*start)(struct exch *x));

/* Answer a request refused from its head (x->err, or the admin API's own
 * reply in x->early_reply). */
enum MHD_Result xch_answer_early(struct exch *x);

/* How much of a refused request's body is read and dropped. */
uint64_t xch_drain_limit(const struct server *s);

/* libmicrohttpd's callbacks (cls: the server). */
void *xch_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
enum MHD_Result xch_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_size, void **con_cls);
void xch_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe);

/* ---- routes.c ------------------------------------------------------------ */

/* The head has arrived (x->id and x->method are set): check it and decide
 * the route. MHD_YES to go on to the body; otherwise the answer is queued
 * (at once, or, x->early, after the body is drained). */
enum MHD_Result route_head(struct exch *x, const char *version);

/* The body is complete: serve the route route_head() chose. */
enum MHD_Result route_dispatch(struct exch *x);

/* A cache lookup woken from XS_FLIGHT (XS_RETRY), XS_EMBED (XS_EMBEDDED),
 * XS_PEER (XS_PEER_END) or XS_STORING (XS_STORED). */
enum MHD_Result route_woken(struct exch *x, enum xstate st);

#endif
