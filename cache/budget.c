/* budget.c - audit tallies and raised thresholds per partition; see
 * budget.h. */
#include "cache/budget.h"

#include "cache/base/beta.h"
#include "cache/base/map.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(BUDGET_KEY_LEN == MAP_KEY_LEN, "partition keys are map keys");

struct budget {
    struct budget_opts o;
    pthread_rwlock_t lock;
    struct map parts; /* partition -> struct budget_part */
    uint64_t audits, wrong;
    /* Partitions above the base: while none is, lookups skip the lock. */
    atomic_size_t raised;
};

int budget_new(const struct budget_opts *o, struct budget **out)
{
    struct budget *b = calloc(1, sizeof(*b));

    if (!b)
        return -ENOMEM;
    if (pthread_rwlock_init(&b->lock, NULL) != 0) {
        free(b);
        return -ENOMEM;
    }
    b->o = *o;
    map_init(&b->parts);
    *out = b;
    return 0;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    for (size_t i = 0; b->parts.slots && i <= b->parts.mask; i++)
        free(b->parts.slots[i].val);
    map_fini(&b->parts);
    pthread_rwlock_destroy(&b->lock);
    free(b);
}

static bool is_raised(const struct budget *b, const struct budget_part *p)
{
    return p->threshold > b->o.base;
}

float budget_threshold(struct budget *b, const uint8_t *partition)
{
    const struct budget_part *p;
    float t = b->o.base;

    if (atomic_load_explicit(&b->raised, memory_order_acquire) == 0)
        return t;
    pthread_rwlock_rdlock(&b->lock);
    p = map_get(&b->parts, partition);
    if (p && is_raised(b, p))
        t = p->threshold;
    pthread_rwlock_unlock(&b->lock);
    return t;
}

/* The partition's entry, created at the base when there is room. Under the
 * write lock. */
static struct budget_part *part_of(struct budget *b, const uint8_t *partition)
{
    struct budget_part *p = map_get(&b->parts, partition);
    void *old;

    if (p || b->parts.count >= BUDGET_MAX_PARTS)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    memcpy(p->partition, partition, BUDGET_KEY_LEN);
    p->threshold = b->o.base;
    if (map_put(&b->parts, partition, p, &old) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Apply the rule of budget.h to p after an audit; true when the threshold
 * moved. Either rule restarts the window, also at the cap: the audits in
 * it have been acted on. */
static bool steer(struct budget *b, struct budget_part *p)
{
    bool was = is_raised(b, p);
    float before = p->threshold;

    if (p->audits >= b->o.min_audits && p->wwrong > 0 &&
        beta_cp_upper(p->wwrong, p->waudits, BUDGET_CONF) > b->o.max_rate) {
        p->threshold = p->threshold + BUDGET_STEP < 1 ? p->threshold + BUDGET_STEP : 1;
    } else if (p->wwrong == 0 && was &&
               beta_cp_upper(0, p->waudits, BUDGET_CONF) <= b->o.max_rate) {
        float down = p->threshold - BUDGET_STEP / 2;
        p->threshold = down > b->o.base ? down : b->o.base;
    } else {
        return false;
    }
    p->waudits = p->wwrong = 0;
    if (was != is_raised(b, p))
        atomic_fetch_add_explicit(&b->raised, was ? (size_t)-1 : 1, memory_order_release);
    return p->threshold != before;
}

bool budget_record(struct budget *b, const uint8_t *partition, bool different,
                   struct budget_part *after, bool *tracked)
{
    struct budget_part *p;
    bool moved = false;

    pthread_rwlock_wrlock(&b->lock);
    b->audits++;
    b->wrong += different;
    p = part_of(b, partition);
    *tracked = p != NULL;
    if (p) {
        p->audits++;
        p->wrong += different;
        p->waudits++;
        p->wwrong += different;
        moved = steer(b, p);
        *after = *p;
    }
    pthread_rwlock_unlock(&b->lock);
    return moved;
}

int budget_restore(struct budget *b, const struct budget_part *in)
{
    struct budget_part *p;
    bool was;
    int rc = 0;

    pthread_rwlock_wrlock(&b->lock);
    p = part_of(b, in->partition);
    if (!p) {
        rc = b->parts.count >= BUDGET_MAX_PARTS ? -ENOSPC : -ENOMEM;
        goto out;
    }
    was = is_raised(b, p);
    b->audits += in->audits - p->audits;
    b->wrong += in->wrong - p->wrong;
    *p = *in;
    /* A threshold logged under another base never runs below this one. */
    if (p->threshold < b->o.base)
        p->threshold = b->o.base;
    if (was != is_raised(b, p))
        atomic_fetch_add_explicit(&b->raised, was ? (size_t)-1 : 1, memory_order_release);
out:
    pthread_rwlock_unlock(&b->lock);
    return rc;
}

static int by_audits(const void *x, const void *y)
{
    const struct budget_part *a = x, *b = y;

    return a->audits < b->audits ? 1 : a->audits > b->audits ? -1 : 0;
}

size_t budget_list(struct budget *b, struct budget_part *out, size_t max)
{
    struct budget_part *all;
    size_t n = 0;

    pthread_rwlock_rdlock(&b->lock);
    all = malloc((b->parts.count ? b->parts.count : 1) * sizeof(*all));
    for (size_t i = 0; all && b->parts.slots && i <= b->parts.mask; i++)
        if (b->parts.slots[i].val)
            all[n++] = *(const struct budget_part *)b->parts.slots[i].val;
    pthread_rwlock_unlock(&b->lock);
    if (!all)
        return 0;
    qsort(all, n, sizeof(*all), by_audits);
    n = n < max ? n : max;
    memcpy(out, all, n * sizeof(*out));
    free(all);
    return n;
}

void budget_get_totals(struct budget *b, struct budget_totals *t)
{
    memset(t, 0, sizeof(*t));
    t->max_threshold = b->o.base;
    pthread_rwlock_rdlock(&b->lock);
    t->audits = b->audits;
    t->wrong = b->wrong;
    t->partitions = b->parts.count;
    for (size_t i = 0; b->parts.slots && i <= b->parts.mask; i++) {
        const struct budget_part *p = b->parts.slots[i].val;
        if (!p || !is_raised(b, p))
            continue;
        t->raised++;
        if (p->threshold > t->max_threshold)
            t->max_threshold = p->threshold;
    }
    pthread_rwlock_unlock(&b->lock);
}
