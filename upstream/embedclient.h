/* embedclient.h - the remote embeddings client: any OpenAI-compatible
 * POST /v1/embeddings endpoint (OpenAI, Ollama, TEI, vLLM).
 *
 * Texts submitted by concurrent requests are coalesced: while one call is
 * on the wire, new texts queue, and the next call carries up to `batch` of
 * them as one "input" array. One call at a time keeps batches as large as
 * the arrival rate allows; a text never waits longer than timeout_ms in all
 * (the call that carries it is given the remaining time of its oldest text).
 *
 * Fail open: every failure (timeout, connection error, non-2xx, a body that
 * is not a valid embeddings list, a vector of the wrong dimension) is a
 * result code, never a crash or a guess. A circuit breaker skips the
 * endpoint for breaker_cooldown_ms after breaker_failures failed calls in a
 * row, so a dead endpoint does not add the timeout to every request; then
 * one call probes it.
 *
 * Threads: the client's own thread makes the calls, one at a time, with a
 * blocking libcurl easy handle (kept, so its connection is reused). Every
 * function may be called from any thread, except embed_client_free().
 * Callbacks run on the client's thread, never inside embed_client_submit(),
 * and must not block.
 */
#ifndef PARROT_EMBEDCLIENT_H
#define PARROT_EMBEDCLIENT_H

#include <stddef.h>
#include <stdint.h>

#define EMBED_DIM_MAX 16384

/* Outcome of one text. */
enum embed_result {
    EMBED_OK,
    EMBED_TIMEOUT,      /* no answer within timeout_ms */
    EMBED_UNREACHABLE,  /* connection refused, reset, DNS, TLS */
    EMBED_HTTP_ERROR,   /* the endpoint answered a non-2xx status */
    EMBED_BAD_RESPONSE, /* not an embeddings list for the texts sent */
    EMBED_BAD_DIM,      /* a vector of another dimension than expected */
    EMBED_BREAKER_OPEN, /* skipped: the endpoint failed recently */
    EMBED_CANCELLED,    /* shutting down, or out of memory */
    EMBED_RESULTS
};

struct embed_client_opts {
    const char *url;   /* base URL including /v1, e.g. "http://127.0.0.1:11434/v1" */
    const char *model; /* sent as "model" */
    const char *key;   /* sent as Authorization: Bearer KEY, or NULL */
    long timeout_ms;   /* per text, queueing included */
    unsigned dim;      /* expected dimension; 0 = take the first answer's */
    unsigned batch;    /* most texts per call, >= 1 */
    unsigned breaker_failures;
    long breaker_cooldown_ms;
};

/* Called once per submitted text with its result; vec is its L2-normalised
 * embedding (embed_client_dim() floats) when result is EMBED_OK, else NULL.
 * vec is valid only during the call. */
typedef void (*embed_done_fn)(void *ud, enum embed_result result, const float *vec);

struct embed_client;

/* Start the client. Returns 0, -EINVAL for unusable options, or -ENOMEM. */
int embed_client_new(const struct embed_client_opts *o, struct embed_client **out);

/* Fail what is queued or on the wire (EMBED_CANCELLED) and free the client.
 * NULL is a no-op. Not from a callback. */
void embed_client_free(struct embed_client *c);

/* The dimension: the configured one, or the one the first answer had (0
 * before it). */
unsigned embed_client_dim(const struct embed_client *c);

/* The most texts sent in one call. */
unsigned embed_client_batch(const struct embed_client *c);

/* Queue text[0..len) (copied). Returns 0, and done() will run exactly once
 * on the client's thread; or a negative code and done() never runs:
 * -EAGAIN while the breaker is open (counted as EMBED_BREAKER_OPEN),
 * -ECANCELED after embed_client_free() began, -ENOMEM. */
int embed_client_submit(struct embed_client *c, const char *text, size_t len, embed_done_fn done,
                        void *ud);

/* Embed n texts and wait for all of them (for start-up: learning the
 * dimension, reloading the log). out, when not NULL, receives n vectors of
 * embed_client_dim() floats; results[i] the outcome of text i. Returns the
 * number of texts embedded. Never from a callback. */
size_t embed_client_embed_wait(struct embed_client *c, const char *const *texts, size_t n,
                               float *out, enum embed_result *results);

/* A result's metric label: "ok", "timeout", ... */
const char *embed_result_name(enum embed_result r);

#define EMBED_LATENCY_BUCKETS 10

struct embed_client_stats {
    uint64_t texts[EMBED_RESULTS]; /* texts by outcome */
    uint64_t calls;                /* HTTP calls made */
    uint64_t batched;              /* texts carried by those calls */
    uint64_t queued;               /* texts waiting for a call now */
    int breaker;                   /* 0 closed, 1 half-open, 2 open */
    /* Call latency: cumulative counts per upper bound (seconds), as a
     * Prometheus histogram. */
    const double *bucket_le; /* EMBED_LATENCY_BUCKETS bounds */
    uint64_t bucket[EMBED_LATENCY_BUCKETS];
    double seconds_sum;
};

void embed_client_stats(struct embed_client *c, struct embed_client_stats *st);

/* Parse an embeddings response for n texts: data[i].embedding (numbers) at
 * data[i].index, each of *dim floats (when *dim is 0, the first vector's
 * length is taken and written to *dim). Vectors are L2-normalised into
 * out[index * dim]; out may be NULL when *dim is 0 to learn the dimension
 * only. Returns 0, -EBADMSG (not a list of n numeric vectors with distinct
 * indexes, or a zero vector) or -ERANGE (a vector of another length, or
 * longer than EMBED_DIM_MAX). Pure; any thread. */
int embed_parse_response(const char *body, size_t len, size_t n, unsigned *dim, float *out);

#endif
