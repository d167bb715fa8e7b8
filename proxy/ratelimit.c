/* ratelimit.c - token buckets per client; see ratelimit.h. */
#include "proxy/ratelimit.h"

#include "cache/base/map.h"
#include "cache/replica/replica.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(RL_KEY_LEN == MAP_KEY_LEN, "rate limit keys are map keys");

/* Clients tracked at most; past it, clients whose buckets are full again
 * (idle for a minute or more) are forgotten first. */
#define MAX_CLIENTS 100000

struct bucket {
    double req, tok; /* tokens available; may go negative (tok) */
    int64_t at;      /* when they were last refilled */
};

struct ratelimit {
    pthread_mutex_t lock;
    struct map clients;
    double rpm, tpm;     /* per minute; 0 = off */
    struct replica *rep; /* NULL: the local buckets are the limit */
};

int rl_new(unsigned rpm, unsigned tpm, struct ratelimit **out)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));

    if (!rl)
        return -ENOMEM;
    pthread_mutex_init(&rl->lock, NULL);
    map_init(&rl->clients);
    rl->rpm = rpm;
    rl->tpm = tpm;
    *out = rl;
    return 0;
}

static void forget_all(struct ratelimit *rl)
{
    for (size_t i = 0; rl->clients.slots && i <= rl->clients.mask; i++)
        free(rl->clients.slots[i].val);
    map_fini(&rl->clients);
}

void rl_share(struct ratelimit *rl, struct replica *rep)
{
    rl->rep = rep;
}

void rl_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    forget_all(rl);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

/* The local limits: the whole when this process is the limit; a share
 * when the replicas' shared buckets cannot be reached. */
struct rates {
    double rpm, tpm;
};

static struct rates local_rates(const struct ratelimit *rl)
{
    unsigned n = rl->rep ? replica_count(rl->rep) : 1;

    if (n == 0)
        n = 1;
    return (struct rates){rl->rpm / n, rl->tpm / n};
}

static void refill(struct rates r, struct bucket *b, int64_t now)
{
    double minutes = (double)(now - b->at) / 60000.0;

    if (minutes <= 0)
        return;
    b->req += minutes * r.rpm;
    if (b->req > r.rpm)
        b->req = r.rpm;
    b->tok += minutes * r.tpm;
    if (b->tok > r.tpm)
        b->tok = r.tpm;
    b->at = now;
}

/* The bucket for key, created full; NULL when out of memory. */
static struct bucket *find(struct ratelimit *rl, struct rates r, const uint8_t *key, int64_t now)
{
    struct bucket *b = map_get(&rl->clients, key);
    void *old;

    if (b) {
        refill(r, b, now);
        return b;
    }
    /* A table at its cap is simply reset: every client starts full again,
     * which errs on the side of serving. */
    if (rl->clients.count >= MAX_CLIENTS)
        forget_all(rl);
    b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    b->req = r.rpm;
    b->tok = r.tpm;
    b->at = now;
    if (map_put(&rl->clients, key, b, &old) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

int64_t rl_take(struct ratelimit *rl, const uint8_t *key, int64_t now, const char **which)
{
    struct bucket *b;
    struct rates r;
    int64_t wait = 0;

    if (rl->rep &&
        replica_rl_take(rl->rep, key, (unsigned)rl->rpm, (unsigned)rl->tpm, &wait, which) == 0)
        return wait;
    r = local_rates(rl);
    pthread_mutex_lock(&rl->lock);
    b = find(rl, r, key, now);
    if (b && r.rpm > 0 && b->req < 1.0) {
        *which = "requests";
        wait = (int64_t)((1.0 - b->req) * 60000.0 / r.rpm) + 1;
    } else if (b && r.tpm > 0 && b->tok <= 0) {
        *which = "tokens";
        wait = (int64_t)((1.0 - b->tok) * 60000.0 / r.tpm) + 1;
    } else if (b && r.rpm > 0) {
        b->req -= 1.0;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

void rl_charge(struct ratelimit *rl, const uint8_t *key, int64_t tokens, int64_t now)
{
    struct bucket *b;

    if (rl->tpm <= 0 || tokens <= 0)
        return;
    if (rl->rep)
        replica_rl_charge(rl->rep, key, (unsigned)rl->rpm, (unsigned)rl->tpm, tokens);
    /* Locally too: the fallback then knows what was spent. */
    pthread_mutex_lock(&rl->lock);
    b = find(rl, local_rates(rl), key, now);
    if (b)
        b->tok -= (double)tokens;
    pthread_mutex_unlock(&rl->lock);
}
