/* server.h - parrot's HTTP front end (libmicrohttpd).
 *
 * `threads` worker threads serve every client connection; each runs its own
 * libmicrohttpd daemon and its own upstream loop (upstream.h) from one event
 * loop, so a request that needs the provider starts its transfer on its own
 * thread, and its connection is suspended until there is something to send:
 * thousands of concurrent streams need no extra threads, and a miss costs no
 * hand-off between threads.
 *
 * Threads: server_start() and server_stop() from the main thread; the other
 * functions from any thread. up_pool_shutdown() of the pool the server was
 * given must come before server_stop(), or after it; not during it.
 */
#ifndef PARROT_SERVER_H
#define PARROT_SERVER_H

#include <stddef.h>

struct cache;
struct cfg;
struct up_pool;
struct replica;
struct server;

/* Bind and start serving. c, pool, cache (NULL: the cache is off; else
 * opened already, see cache/cache.h) and rep (NULL: no replication; else
 * started, see cache/replica/replica.h; only its statistics are read here)
 * are the caller's and must outlive the server. Returns 0, or -1 with a
 * reason in err. */
int server_start(const struct cfg *c, struct up_pool *pool, struct cache *cache,
                 struct replica *rep, struct server **out, char *err, size_t errlen);

/* The bound address as text ("127.0.0.1:8080"), for the start-up log. */
const char *server_addr(const struct server *s);

/* Stop accepting connections and answer /readyz with 503; requests already
 * in flight go on. */
void server_drain(struct server *s);

/* Requests that have started and not yet finished. */
size_t server_inflight(const struct server *s);

/* Close every connection and free the server. NULL is a no-op. */
void server_stop(struct server *s);

#endif
