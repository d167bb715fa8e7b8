/* map.h - open-addressing hash map from 32-byte keys to pointers.
 *
 * Keys are SHA-256 digests (uniform already), or a 64-bit id in the first
 * eight bytes with the rest zero (see map_id_key). Linear probing with
 * backward-shift deletion, so there are no tombstones and lookups never
 * degrade with churn. Not thread-safe: the owner locks.
 */
#ifndef PARROT_MAP_H
#define PARROT_MAP_H

#include <stddef.h>
#include <stdint.h>

#define MAP_KEY_LEN 32

struct map_slot {
    uint8_t key[MAP_KEY_LEN];
    void *val; /* NULL marks an empty slot, so values are never NULL */
};

struct map {
    struct map_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
};

/* An empty map; allocates on first insert. */
void map_init(struct map *m);
void map_fini(struct map *m);

/* The value stored under key, or NULL. */
void *map_get(const struct map *m, const uint8_t *key);

/* Store val (not NULL) under key, replacing any old value, which is returned
 * through *old (NULL if there was none). Returns 0 or -ENOMEM. */
int map_put(struct map *m, const uint8_t *key, void *val, void **old);

/* Remove key; returns its value or NULL. */
void *map_del(struct map *m, const uint8_t *key);

/* The 32-byte key for a 64-bit id. */
void map_id_key(uint64_t id, uint8_t key[MAP_KEY_LEN]);

/* Bytes allocated by the map. */
size_t map_memory(const struct map *m);

#endif
