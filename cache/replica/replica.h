/* replica.h - replicas share one cache through Redis (docs/scale-out.md).
 *
 * Lookups never touch Redis: every replica holds the whole cache in its own
 * store. Only changes travel. A put or a delete made here reaches
 * replica_publish() (the cache's change hook), waits in a bounded queue and
 * is written by the writer thread, in one atomic script per change, as an
 * entry key (the entry's log record, with a Redis expiry equal to its TTL)
 * and as a message on the namespace's stream. The tail thread reads the
 * stream from the last id this replica applied and applies the other
 * replicas' messages with cache_apply_put() / cache_apply_del(); its own
 * are recognised by their origin and skipped. When the messages after that
 * id have been trimmed away (or the replica has no id yet) it re-seeds from
 * the entry keys (SCAN), then tails from the id it noted before the scan.
 *
 * Redis is never on a request's path and never a single point of failure:
 * with Redis down, publish() still only queues (what overflows the queue is
 * counted, not replicated), both threads reconnect with backoff, and the
 * tail catches up from its id.
 *
 * The last applied id is kept in state_file once the local log holds every
 * change up to it, so a replica killed with SIGKILL resumes where its own
 * log ends and loses nothing that Redis acknowledged.
 *
 * Cross-replica single-flight: a request that leads the misses for its
 * exact key here asks Redis (SET NX PX on the key) whether it leads for all
 * replicas. If another replica leads, it waits until that replica's answer
 * arrives on the stream (or that replica says it is done without one), at
 * most flight_wait, then looks the cache up again.
 *
 * Threads: replica_start(), replica_flight_release() and replica_stop() from
 * the main thread; the rest from any thread. The three threads (writer,
 * tail, flight) each own one Redis connection.
 */
#ifndef PARROT_REPLICA_H
#define PARROT_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

struct replica;

struct replica_opts {
    const char *host; /* Redis: host name or IPv4 address */
    int port;
    const char *user;     /* ACL user, or NULL / "": the default user */
    const char *password; /* or NULL: no AUTH; never logged */
    int db;
    const char *ns;         /* the namespace: replicas that share it share a cache */
    const char *state_file; /* where the last applied id is kept, or NULL: nowhere */
    size_t queue_max;       /* changes waiting for Redis, at most */
    long stream_maxlen;     /* changes the stream keeps, about */
    int64_t stream_max_age; /* ms; older changes are trimmed (0: by length only) */
    int64_t flight_wait;    /* ms a request waits for another replica's answer */
    struct cache *cache;    /* where other replicas' changes go; outlives the replica */
    /* Where connection trouble and re-seeds are reported, or NULL. Called
     * from the replica's threads. */
    void (*log)(enum cache_log level, const char *msg, const char *detail);
};

/* Start the writer and tail threads (they connect on their own: Redis need
 * not be up). The caller then sets replica_publish as the cache's change
 * hook, before the cache is shared. Returns 0 or a negative errno. */
int replica_start(const struct replica_opts *o, struct replica **out);

/* The cache's change hook (cache_set_change_hook with the replica as ud):
 * copy the change into the queue, or count it as dropped when the queue is
 * full. Never blocks on Redis. */
void replica_publish(void *ud, const struct cache_change *ch);

/* Write what is queued, for up to two seconds, stop both threads and free
 * everything. NULL is a no-op. */
void replica_stop(struct replica *r);

/* How a cross-replica single-flight wait ended. */
enum replica_flight {
    REPLICA_LEAD,    /* this request leads for every replica: it calls the provider */
    REPLICA_ARRIVED, /* the leader's answer arrived, or it finished without one */
    REPLICA_TIMEOUT, /* flight_wait passed, or Redis went away: go alone */
};

/* One request's place in a cross-replica single-flight. The owner keeps it
 * alive until wake runs. */
struct replica_waiter {
    struct replica_waiter *next;
    uint8_t exact[CACHE_KEY_LEN];
    int64_t deadline; /* 0 until Redis said another replica leads */
    enum replica_flight result;
    void (*wake)(struct replica_waiter *w); /* once, on a replica thread, without a lock */
};

/* Ask whether the caller, leading the misses for exact here, leads for
 * every replica. Returns true when w->wake will run once with w->result
 * set; false when the flight thread has no connection to Redis: then the
 * caller goes to the provider alone, without waiting. */
bool replica_flight_begin(struct replica *r, const uint8_t *exact, struct replica_waiter *w);

/* The caller that was told REPLICA_LEAD is done (its answer, if any, is
 * published): release the key and tell the waiting replicas. */
void replica_flight_end(struct replica *r, const uint8_t *exact);

/* Wake every waiting request now, as REPLICA_TIMEOUT (on shutdown, before
 * the server stops). */
void replica_flight_release(struct replica *r);

/* Shared rate limits: take one request from the client key's buckets in
 * Redis (rpm, tpm as proxy/ratelimit.h; one round trip, RL_TIMEOUT_MS at
 * most). Returns 0 with *wait (0: allowed; else ms until it would be) and
 * *which ("requests" or "tokens"), or -EAGAIN when Redis cannot answer:
 * the caller's local limiter decides (for a second before Redis is asked
 * again). Any thread; blocks for the round trip. */
int replica_rl_take(struct replica *r, const uint8_t *key, unsigned rpm, unsigned tpm,
                    int64_t *wait, const char **which);

/* Charge tokens to the key's token bucket in Redis, through the writer's
 * queue: never blocks. */
void replica_rl_charge(struct replica *r, const uint8_t *key, unsigned rpm, unsigned tpm,
                       int64_t tokens);

/* Live replicas of the namespace at the last heartbeat, this one included;
 * 0 until the first. */
unsigned replica_count(struct replica *r);

struct replica_stats {
    bool writer_connected, tail_connected;
    uint64_t queued;       /* changes waiting now */
    uint64_t published;    /* changes written to Redis */
    uint64_t dropped;      /* changes not replicated: the queue was full */
    uint64_t applied;      /* other replicas' changes applied here */
    uint64_t apply_errors; /* messages that could not be read or applied */
    uint64_t reseeds;      /* re-seeds from the entry keys */
    uint64_t reseeded;     /* entries applied by them */
    uint64_t redis_errors; /* failed connections and commands */
    uint64_t flights_led, flights_followed, flights_timed_out;
    unsigned replicas;  /* replica_count() */
    double lag_seconds; /* age of the last applied change when it was applied */
    double rtt_seconds; /* the writer's last round trip to Redis */
};

void replica_get_stats(struct replica *r, struct replica_stats *st);

#endif
