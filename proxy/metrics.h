/* metrics.h - request counters, latency histograms, savings and top misses.
 *
 * The cache's and the pool's own counters live in their modules (cache.c,
 * chat.c, upstream.c), which expose them as stats structs; this module
 * renders all of them as Prometheus text, and keeps what the HTTP front end
 * observes per request:
 * requests by route and status, latency histograms, tokens and money the
 * cache saved, and the partitions that miss most. It renders them as
 * Prometheus text (exposition format 0.0.4) and as JSON for the dashboard.
 *
 * Threads: every function may be called from any thread once metrics_new()
 * returned. Counters and histogram buckets are atomics, so the hot path
 * takes no lock; only metrics_miss() (a provider call follows it anyway)
 * takes a mutex.
 */
#ifndef PARROT_METRICS_H
#define PARROT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cache/base/buf.h"

struct cJSON;
struct metrics;

/* Routes for parrot_http_requests_total; a fixed set keeps cardinality low. */
enum metrics_route {
    MR_CHAT,      /* POST /v1/chat/completions */
    MR_V1,        /* every other /v1/... passed through */
    MR_HEALTH,    /* /healthz, /readyz */
    MR_METRICS,   /* /metrics */
    MR_DASHBOARD, /* /dashboard... */
    MR_ADMIN,     /* /admin/... */
    MR_OTHER,     /* anything else (404) */
    MR_ROUTES
};

/* Latency histograms, all in seconds with the same buckets. */
enum metrics_hist {
    MH_HIT,        /* chat completion answered from the cache, arrival to last byte */
    MH_MISS,       /* chat completion sent to the provider after a miss */
    MH_BYPASS,     /* chat completion that skipped the cache */
    MH_FIRST_BYTE, /* upstream: submit to response headers, retries included */
    MH_UPSTREAM,   /* upstream: submit to the end of the answer */
    MH_COUNT
};

/* Why parrot called the provider, for parrot_upstream_requests_total. */
enum metrics_upstream {
    MU_MISS,        /* a chat completion the cache could not answer */
    MU_BYPASS,      /* a chat completion that skipped the cache */
    MU_PASSTHROUGH, /* any other /v1 route */
    MU_AUDIT,       /* an audit of a semantic hit (proxy/audit.h) */
    MU_REASONS
};

/* A request's cache outcome for parrot_overhead_seconds: what its
 * x-parrot-cache header says, or none where the cache was not asked (other
 * routes, a request refused before its lookup). */
enum metrics_cache { MC_HIT, MC_MISS, MC_BYPASS, MC_NONE, MC_OUTCOMES };

/* The outcomes' label values, which Server-Timing's cache metric uses too. */
extern const char *const metrics_cache_names[MC_OUTCOMES];

/* One request submitted to the provider pool. */
void metrics_upstream(struct metrics *m, enum metrics_upstream r);

/* Finite bucket bounds; one more bucket (+Inf) follows. */
#define METRICS_BUCKETS 19

/* prices is the validated `prices` option (NULL: no money is counted).
 * Returns 0, -EINVAL for an invalid table, or -ENOMEM. */
int metrics_new(const char *prices, struct metrics **out);
void metrics_free(struct metrics *m); /* NULL is a no-op */

/* The route a request path (without its query string) is counted under. */
enum metrics_route metrics_route_of(const char *path, size_t len, const char *method);

/* One finished request; status 0 (the client left before any answer) is
 * counted as 499. */
void metrics_request(struct metrics *m, enum metrics_route r, int status);

void metrics_observe(struct metrics *m, enum metrics_hist h, double seconds);

/* One finished request's overhead: its whole time minus the provider's, in
 * seconds (parrot_overhead_seconds, with buckets of its own). */
void metrics_overhead(struct metrics *m, enum metrics_route r, enum metrics_cache c,
                      double seconds);

/* A hit saved the provider call an answer of this model and usage. */
void metrics_saved(struct metrics *m, const char *model, int64_t prompt_tokens,
                   int64_t completion_tokens);

/* A miss in partition (its hash, CANON_HASH_LEN bytes) for model: kept in a
 * bounded table of the most frequent ones (Space-Saving), never the text. */
void metrics_miss(struct metrics *m, const uint8_t *partition, const char *model);

/* The money an answer of this model and usage costs, in picodollars (0 when
 * the model has no price). Exposed for the unit tests. */
uint64_t metrics_price(const struct metrics *m, const char *model, int64_t prompt_tokens,
                       int64_t completion_tokens);

/* Estimate quantile q (0..1) of histogram h from its buckets, as Prometheus'
 * histogram_quantile() does (linear within a bucket). Returns -1 when the
 * histogram is empty. */
double metrics_quantile(struct metrics *m, enum metrics_hist h, double q);

/* Append a family's "# HELP" and "# TYPE" lines. Returns 0 or -ENOMEM /
 * -E2BIG. */
int metrics_family(struct buf *b, const char *name, const char *type, const char *help);

/* Append the Prometheus text of every family kept here. Returns 0 or
 * -ENOMEM / -E2BIG. */
int metrics_render(struct metrics *m, struct buf *out);

/* Prometheus text for the cache: the request policy's verdict counters and
 * the cache service's own. 0 or -ENOMEM. */
struct cache_stats;
struct chat_stats;
int metrics_cache(struct buf *b, const struct chat_stats *cs, const struct cache_stats *st);

struct replica_stats;

/* Prometheus text for the replication through Redis. 0 or -ENOMEM. */
int metrics_replica(struct buf *b, const struct replica_stats *st);

struct up_provider_stats;
struct audit_stats;
struct budget_part;

/* Append the audits' families: the verdicts and drops since start (st),
 * and from the cache's tallies (cs: they survive restarts) the estimated
 * wrong-hit rate and its 95% Clopper-Pearson upper bound, overall and for
 * parts[0..n) (the most audited partitions, labelled by a hash prefix),
 * with the thresholds. Returns 0, or -ENOMEM. */
int metrics_audit(struct buf *b, const struct audit_stats *st, const struct cache_stats *cs,
                  const struct budget_part *parts, size_t n);

/* Append the provider pool's per-provider counters (attempts, failures,
 * retries, failovers, breaker state) for st[0..n). Returns 0, or -ENOMEM. */
int metrics_providers(struct buf *b, const struct up_provider_stats *st, size_t n);

/* Append the server's own gauges and counters: the build (version and git
 * revision), requests in flight and slow clients cut off (proxy/conns.h).
 * Returns 0, or -ENOMEM. */
int metrics_server(struct buf *b, size_t inflight, uint64_t slow_cut);

/* Add this module's numbers to the dashboard's JSON object. Returns 0 or
 * -ENOMEM. */
int metrics_json(struct metrics *m, struct cJSON *obj);

#endif
