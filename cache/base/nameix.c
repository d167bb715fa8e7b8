/* nameix.c - ids found by their names; see nameix.h. */
#include "cache/base/nameix.h"

#include "cache/base/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int nameix_init(struct nameix *ix, size_t n)
{
    size_t slots = 16;

    while (slots < 2 * n)
        slots *= 2;
    ix->slot = calloc(slots, sizeof(*ix->slot));
    ix->mask = (uint32_t)(slots - 1);
    return ix->slot ? 0 : -ENOMEM;
}

/* The slot holding the id named w[0..len), or the empty one where it would
 * go. */
static uint32_t slot_of(const struct nameix *ix, const char *w, size_t len, nameix_name_fn name_of,
                        const void *ctx)
{
    uint32_t k = (uint32_t)hash_mix(hash_fnv(HASH_FNV_OFFSET, w, len)) & ix->mask;

    for (; ix->slot[k]; k = (k + 1) & ix->mask) {
        const char *s = name_of(ctx, ix->slot[k] - 1);
        if (strncmp(s, w, len) == 0 && s[len] == '\0')
            break;
    }
    return k;
}

bool nameix_add(struct nameix *ix, uint32_t id, nameix_name_fn name_of, const void *ctx)
{
    const char *name = name_of(ctx, id);
    uint32_t k = slot_of(ix, name, strlen(name), name_of, ctx);

    if (ix->slot[k])
        return false;
    ix->slot[k] = id + 1;
    return true;
}

long nameix_find(const struct nameix *ix, const char *w, size_t len, nameix_name_fn name_of,
                 const void *ctx)
{
    uint32_t v = ix->slot[slot_of(ix, w, len, name_of, ctx)];

    return v ? (long)v - 1 : -1;
}

void nameix_free(struct nameix *ix)
{
    free(ix->slot);
    ix->slot = NULL;
}
