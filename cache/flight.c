/* flight.c - single-flight table; see flight.h. */
#include "cache/flight.h"

#include "cache/base/map.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

_Static_assert(FLIGHT_KEY_LEN == MAP_KEY_LEN, "flight keys are map keys");

struct flight {
    struct flight_waiter *waiters;
};

struct flight_table {
    pthread_mutex_t lock;
    struct map open;
};

int flight_new(struct flight_table **out)
{
    struct flight_table *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    map_init(&t->open);
    *out = t;
    return 0;
}

void flight_free(struct flight_table *t)
{
    if (!t)
        return;
    map_fini(&t->open);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int flight_join(struct flight_table *t, const uint8_t *key, struct flight_waiter *w)
{
    struct flight *f;
    void *old;
    int rc = 0;

    pthread_mutex_lock(&t->lock);
    f = map_get(&t->open, key);
    if (f) {
        w->next = f->waiters;
        f->waiters = w;
    } else if (!(f = calloc(1, sizeof(*f))) || map_put(&t->open, key, f, &old) != 0) {
        free(f);
        rc = -ENOMEM;
    } else {
        rc = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void flight_done(struct flight_table *t, const uint8_t *key)
{
    struct flight *f;
    struct flight_waiter *w;

    pthread_mutex_lock(&t->lock);
    f = map_del(&t->open, key);
    pthread_mutex_unlock(&t->lock);
    if (!f)
        return;
    w = f->waiters;
    free(f);
    while (w) {
        struct flight_waiter *next = w->next;
        w->wake(w);
        w = next;
    }
}

unsigned long flight_open(struct flight_table *t)
{
    unsigned long n;

    pthread_mutex_lock(&t->lock);
    n = (unsigned long)t->open.count;
    pthread_mutex_unlock(&t->lock);
    return n;
}
