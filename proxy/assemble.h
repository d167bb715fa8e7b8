/* assemble.h - builds the cache service from the options: the embedder
 * they name (builtin or remote), the OpenAI payload codec, thresholds and
 * snapshot policy. Used by the composition root (main.c) and by the benches
 * and tests that want the cache exactly as parrot runs it.
 *
 * Threads: call before the cache is shared (the remote embedder may be
 * asked its dimension, which blocks up to its timeout).
 */
#ifndef PARROT_ASSEMBLE_H
#define PARROT_ASSEMBLE_H

struct cache;
struct cfg;

/* A cache in memory (cache_open() makes it durable), from c. Logs why it
 * cannot start; returns 0 or a negative errno. */
int assemble_cache(const struct cfg *c, struct cache **out);

struct replica;

/* With the redis option set: start sharing cache (opened already) with the
 * other replicas (cache/replica/replica.h) and make the replica its change
 * hook. Before the cache is shared. Returns 0 or a negative errno. */
int assemble_replica(const struct cfg *c, struct cache *cache, struct replica **out);

#endif
