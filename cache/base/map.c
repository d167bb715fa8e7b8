/* map.c - linear probing with backward-shift deletion; see map.h. */
#include "cache/base/map.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(const uint8_t *key)
{
    uint64_t z;

    memcpy(&z, key, sizeof(z));
    /* splitmix64 finaliser: spreads ids; harmless for digests. */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void map_init(struct map *m)
{
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void map_fini(struct map *m)
{
    free(m->slots);
    map_init(m);
}

static struct map_slot *find(const struct map *m, const uint8_t *key)
{
    size_t i;

    if (!m->slots)
        return NULL;
    for (i = mix(key) & m->mask;; i = (i + 1) & m->mask) {
        struct map_slot *s = &m->slots[i];
        if (!s->val)
            return NULL;
        if (memcmp(s->key, key, MAP_KEY_LEN) == 0)
            return s;
    }
}

void *map_get(const struct map *m, const uint8_t *key)
{
    struct map_slot *s = find(m, key);
    return s ? s->val : NULL;
}

static void place(struct map_slot *slots, size_t mask, const uint8_t *key, void *val)
{
    size_t i = mix(key) & mask;

    while (slots[i].val)
        i = (i + 1) & mask;
    memcpy(slots[i].key, key, MAP_KEY_LEN);
    slots[i].val = val;
}

static int grow(struct map *m)
{
    size_t cap = m->slots ? (m->mask + 1) * 2 : 16;
    struct map_slot *ns;

    if (cap > SIZE_MAX / sizeof(*ns))
        return -ENOMEM;
    ns = calloc(cap, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; m->slots && i <= m->mask; i++)
        if (m->slots[i].val)
            place(ns, cap - 1, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    m->slots = ns;
    m->mask = cap - 1;
    return 0;
}

int map_put(struct map *m, const uint8_t *key, void *val, void **old)
{
    struct map_slot *s = find(m, key);

    *old = NULL;
    if (s) {
        *old = s->val;
        s->val = val;
        return 0;
    }
    /* Keep the load under 3/4 so probe runs stay short. */
    if (!m->slots || (m->count + 1) * 4 > (m->mask + 1) * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    place(m->slots, m->mask, key, val);
    m->count++;
    return 0;
}

void *map_del(struct map *m, const uint8_t *key)
{
    struct map_slot *s = find(m, key);
    size_t i, j;
    void *val;

    if (!s)
        return NULL;
    val = s->val;
    i = (size_t)(s - m->slots);
    /* Backward shift: pull later members of the probe run into the hole
     * unless that would move one before its home slot. */
    for (j = (i + 1) & m->mask; m->slots[j].val; j = (j + 1) & m->mask) {
        size_t home = mix(m->slots[j].key) & m->mask;
        bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].val = NULL;
    m->count--;
    return val;
}

void map_id_key(uint64_t id, uint8_t key[MAP_KEY_LEN])
{
    memset(key, 0, MAP_KEY_LEN);
    memcpy(key, &id, sizeof(id));
}

size_t map_memory(const struct map *m)
{
    return m->slots ? (m->mask + 1) * sizeof(struct map_slot) : 0;
}
