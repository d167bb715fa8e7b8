/* nameix.h - ids found by their names: an open-addressing hash index over
 * ids 0..n-1 whose names live elsewhere (a loaded table's strings), given
 * by the caller's name_of(ctx, id). At most half full, linear probing, the
 * slots hold id + 1. The word-vector table and WordNet's lemmas and
 * exception forms use it; built at load, then only read (any thread).
 */
#ifndef PARROT_NAMEIX_H
#define PARROT_NAMEIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nameix {
    uint32_t *slot; /* id + 1; 0 = empty */
    uint32_t mask;
};

/* The NUL-terminated name of id, from the caller's table ctx. */
typedef const char *(*nameix_name_fn)(const void *ctx, uint32_t id);

/* An empty index with room for n names. Returns 0 or -ENOMEM. */
int nameix_init(struct nameix *ix, size_t n);

/* Adds id, unless a name equal to its name is in already: the first of
 * equal names stays. Returns whether it was added. At most the n of
 * nameix_init() ids may be added. */
bool nameix_add(struct nameix *ix, uint32_t id, nameix_name_fn name_of, const void *ctx);

/* The id named w[0..len) (not NUL-terminated), or -1. */
long nameix_find(const struct nameix *ix, const char *w, size_t len, nameix_name_fn name_of,
                 const void *ctx);

void nameix_free(struct nameix *ix);

#endif
