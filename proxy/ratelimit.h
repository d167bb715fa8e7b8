/* ratelimit.h - per-client request and token budgets (token buckets).
 *
 * A client is a tenant key (see proxy/chat.c: a hash of its Authorization
 * header). Each has two buckets refilled continuously: requests per minute
 * and provider tokens per minute. A request that would go to the provider
 * takes one request token up front; the tokens its answer used (usage) are
 * charged when it completes, so a client that overspent waits until its
 * bucket is positive again. Cache hits cost nothing: they spend no provider
 * budget. Thread-safe.
 *
 * Shared (rl_share): the buckets live in Redis, so that a limit means the
 * same with one replica or ten; while Redis cannot answer, the local
 * buckets decide, with the limits divided by the last known number of
 * replicas.
 */
#ifndef PARROT_RATELIMIT_H
#define PARROT_RATELIMIT_H

#include <stdint.h>

#define RL_KEY_LEN 32

struct ratelimit;

/* rpm / tpm of 0 switch that budget off. Returns 0 or -ENOMEM. */
int rl_new(unsigned rpm, unsigned tpm, struct ratelimit **out);
void rl_free(struct ratelimit *rl); /* NULL is a no-op */

struct replica;

/* Keep the buckets in Redis through rep (cache/replica/replica.h), which
 * outlives rl. Before rl is shared. */
void rl_share(struct ratelimit *rl, struct replica *rep);

/* Take one request for key at now_ms. Returns 0 when allowed, else the
 * milliseconds until it would be (for Retry-After); *which says which
 * budget ran out ("requests" or "tokens"). */
int64_t rl_take(struct ratelimit *rl, const uint8_t *key, int64_t now_ms, const char **which);

/* Charge the provider tokens a request used. */
void rl_charge(struct ratelimit *rl, const uint8_t *key, int64_t tokens, int64_t now_ms);

#endif
