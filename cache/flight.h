/* flight.h - single-flight: one provider call per exact key at a time.
 *
 * The first request for a key leads and calls the provider; identical
 * requests that arrive meanwhile wait behind it and are woken when it is done,
 * to look the cache up again. A waiter that then still misses (the answer was
 * not cacheable, or the leader failed) goes to the provider on its own.
 *
 * Threads: any thread. wake() is called without the table lock held.
 */
#ifndef PARROT_FLIGHT_H
#define PARROT_FLIGHT_H

#include <stdint.h>

#define FLIGHT_KEY_LEN 32

struct flight_table;

struct flight_waiter {
    struct flight_waiter *next;
    void (*wake)(struct flight_waiter *w);
};

int flight_new(struct flight_table **out);
void flight_free(struct flight_table *t); /* NULL is a no-op; no flight may be open */

/* Returns 1 when the caller leads (it must call flight_done later), 0 when w
 * was queued behind the leader (w->wake will be called once), or -ENOMEM
 * (the caller proceeds on its own). */
int flight_join(struct flight_table *t, const uint8_t *key, struct flight_waiter *w);

/* The leader for key is done: wake every waiter and close the flight. */
void flight_done(struct flight_table *t, const uint8_t *key);

/* Open flights (for tests and metrics). */
unsigned long flight_open(struct flight_table *t);

#endif
