/* balance.c - smooth weighted round-robin and the circuit breaker; see
 * balance.h.
 *
 * The atomics are there only so that other threads can ask about readiness
 * and metrics without the owner's lock; relaxed order is enough, because no
 * other memory is published through them.
 */
#include "upstream/balance.h"

#include <errno.h>

/* ---- the breaker -------------------------------------------------------- */

void bal_breaker_init(struct bal_breaker *br, unsigned failures, long cooldown_ms)
{
    atomic_init(&br->state, BAL_CLOSED);
    atomic_init(&br->open_until, 0);
    br->fails = 0;
    br->probing = false;
    br->threshold = failures ? failures : 1;
    br->cooldown_ms = cooldown_ms;
}

static void set_state(struct bal_breaker *br, enum bal_state s)
{
    atomic_store_explicit(&br->state, s, memory_order_relaxed);
}

enum bal_state bal_breaker_state(const struct bal_breaker *br)
{
    return (enum bal_state)atomic_load_explicit(&br->state, memory_order_relaxed);
}

bool bal_breaker_allow(struct bal_breaker *br, long now)
{
    switch (bal_breaker_state(br)) {
    case BAL_CLOSED: return true;
    case BAL_OPEN:
        if (now < atomic_load_explicit(&br->open_until, memory_order_relaxed))
            return false;
        set_state(br, BAL_HALF_OPEN);
        br->probing = false;
        return true;
    case BAL_HALF_OPEN: return !br->probing;
    }
    return false;
}

void bal_breaker_begin(struct bal_breaker *br)
{
    if (bal_breaker_state(br) == BAL_HALF_OPEN)
        br->probing = true;
}

void bal_breaker_success(struct bal_breaker *br)
{
    br->fails = 0;
    br->probing = false;
    set_state(br, BAL_CLOSED);
}

void bal_breaker_failure(struct bal_breaker *br, long now)
{
    br->fails++;
    if (bal_breaker_state(br) == BAL_HALF_OPEN || br->fails >= br->threshold) {
        atomic_store_explicit(&br->open_until, now + br->cooldown_ms, memory_order_relaxed);
        set_state(br, BAL_OPEN);
        br->probing = false;
    }
}

void bal_breaker_release(struct bal_breaker *br)
{
    br->probing = false;
}

bool bal_breaker_ready(const struct bal_breaker *br, long now)
{
    return bal_breaker_state(br) != BAL_OPEN ||
           now >= atomic_load_explicit(&br->open_until, memory_order_relaxed);
}

/* ---- choice ------------------------------------------------------------- */

void bal_init(struct bal *b, unsigned failures, long cooldown_ms)
{
    b->n = 0;
    b->failures = failures;
    b->cooldown_ms = cooldown_ms;
}

int bal_add(struct bal *b, unsigned weight)
{
    struct bal_peer *pe;

    if (b->n >= BAL_MAX)
        return -ENOSPC;
    pe = &b->peer[b->n];
    pe->weight = weight ? (int)weight : 1;
    pe->current = 0;
    bal_breaker_init(&pe->br, b->failures, b->cooldown_ms);
    return (int)b->n++;
}

/* One smooth weighted round-robin step over the peers marked in ok. */
static int wrr(struct bal *b, const bool *ok)
{
    int best = -1, total = 0;

    for (size_t i = 0; i < b->n; i++) {
        struct bal_peer *pe = &b->peer[i];

        if (!ok[i])
            continue;
        pe->current += pe->weight;
        total += pe->weight;
        if (best < 0 || pe->current > b->peer[best].current)
            best = (int)i;
    }
    if (best >= 0)
        b->peer[best].current -= total;
    return best;
}

int bal_pick(struct bal *b, uint64_t tried, long now)
{
    bool ok[BAL_MAX];
    int best = -1;

    /* Pass 0: untried and allowed by the breaker; 1: untried; 2: any. Only
     * untried peers are asked in pass 0, so an open breaker is moved to
     * half-open only when its peer could be chosen. */
    for (int pass = 0; pass < 3 && best < 0; pass++) {
        for (size_t i = 0; i < b->n; i++) {
            bool untried = !(tried & (UINT64_C(1) << i));

            ok[i] = pass == 0   ? untried && bal_breaker_allow(&b->peer[i].br, now)
                    : pass == 1 ? untried
                                : true;
        }
        best = wrr(b, ok);
    }
    if (best >= 0)
        bal_breaker_begin(&b->peer[best].br);
    return best;
}

bool bal_ready(const struct bal *b, long now)
{
    for (size_t i = 0; i < b->n; i++)
        if (bal_breaker_ready(&b->peer[i].br, now))
            return true;
    return false;
}
