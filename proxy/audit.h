/* audit.h - sampled audits of semantic hits (docs/audit.md).
 *
 * A share (audit-rate) of semantic hits is asked again of the provider in
 * the background, with the client's credentials, non-streamed; the judge
 * (cache/match/judge.h) compares the fresh answer with the one the cache
 * served. The verdict goes to the cache (cache_audit_record: the
 * partition's tallies and threshold; a wrong hit disputes its entry, and
 * the fresh answer is stored as its own entry), to the counters, to the
 * log, and a disagreement to the list GET /admin/audits shows.
 *
 * An audit never delays or changes the client's answer: audit_offer()
 * copies what the audit needs and returns; the provider call runs on the
 * upstream pool's own thread (the audit thread has no loop of its own; see
 * upstream/upstream.h), never counted against the client's rate limit, and
 * the rest on the audit thread. At most
 * max_inflight audits exist at once; an offer beyond that, or while every
 * provider's breaker is open, is dropped and counted, as is an audit whose
 * provider call fails.
 *
 * Threads: audit_offer() from HTTP workers; audit_get_stats(),
 * audit_recent_json() from any thread. The audit thread (audit_main) owns
 * the jobs once queued; the pool's callbacks only fill a job's response
 * and hand it back under the module's mutex.
 */
#ifndef PARROT_AUDIT_H
#define PARROT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

struct audit;
struct chat;
struct cJSON;
struct metrics;
struct up_pool;

#define AUDIT_RECENT 100 /* disagreements GET /admin/audits keeps */

struct audit_opts {
    double rate;           /* share of semantic hits audited, 0..1 */
    unsigned max_inflight; /* audits at once, >= 1 */
    bool log_prompts;      /* texts in the log and the list */
    struct up_pool *pool;  /* borrowed */
    struct chat *chat;     /* borrowed: the cache and the answer codec */
    struct metrics *met;   /* borrowed: parrot_upstream_requests_total */
};

/* Start the audit thread. 0 or -ENOMEM. With rate 0 no thread starts and
 * every offer is ignored. */
int audit_new(const struct audit_opts *o, struct audit **out);

/* Cancel the audits in flight, wait for their transfers to end, stop the
 * thread. NULL is a no-op. The pool must still exist (shut down or not). */
void audit_free(struct audit *a);

/* A semantic hit that was just served. Pointers are borrowed for the call. */
struct audit_hit {
    const char *body; /* the client's request body */
    size_t len;
    const char *authorization, *organization, *project; /* the client's, or NULL */
    const char *request_id;
    const uint8_t *partition, *exact; /* the request's keys, CACHE_KEY_LEN each */
    const char *text;                 /* its lookup text */
    size_t text_len;
    uint64_t entry; /* the id of the entry that answered */
    float sim;
};

/* Audit h with probability rate (an HTTP worker; copies, never blocks). */
void audit_offer(struct audit *a, const struct audit_hit *h);

enum audit_drop {
    AUDIT_DROP_BUSY,
    AUDIT_DROP_PROVIDER,
    AUDIT_DROP_FAILED,
    AUDIT_DROP_GONE,
    AUDIT_DROPS
};
extern const char *const audit_drop_names[AUDIT_DROPS];

struct audit_stats {
    double rate;
    uint64_t sampled, sent, same, different;
    uint64_t dropped[AUDIT_DROPS];
    unsigned inflight, max_inflight;
};
void audit_get_stats(struct audit *a, struct audit_stats *st);

/* The audit summary, added to obj: the counters since start, and from the
 * cache's tallies (which survive restarts) the audits and disagreements,
 * the estimated wrong-hit rate and its 95% Clopper-Pearson upper bound,
 * overall and for the AUDIT_PARTS_SHOWN most audited partitions, with
 * their thresholds. a may be NULL (the counters are then 0). 0 or -ENOMEM. */
#define AUDIT_PARTS_SHOWN 10
int audit_summary_json(struct audit *a, struct cache *c, double max_rate, struct cJSON *obj);

/* The kept disagreements, newest first, as a JSON array added to obj under
 * name. 0 or -ENOMEM. */
int audit_recent_json(struct audit *a, struct cJSON *obj, const char *name);

#endif
