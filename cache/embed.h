/* embed.h - embedders: text in, L2-normalised float vector out.
 *
 * Every embedder declares a name and a dimension; the store never mixes
 * vectors from different embedders in one index. Embedding functions may be
 * called from any thread at once.
 */
#ifndef PARROT_EMBED_H
#define PARROT_EMBED_H

#include <stddef.h>

struct embedder;

/* The built-in embedder: no network, no model file. Hashed, weighted word,
 * word-pair and character n-gram features (see embed.c). */
int embed_builtin_new(struct embedder **out);

void embedder_free(struct embedder *e);
const char *embedder_name(const struct embedder *e);
unsigned embedder_dim(const struct embedder *e);

/* The similarity above which a candidate counts as the same question,
 * calibrated per embedder. */
float embedder_threshold(const struct embedder *e);

/* Embed text[0..len) into out[dim]. Returns 0, or -EINVAL when the text has
 * nothing to embed (then out is all zero). */
int embedder_embed(const struct embedder *e, const char *text, size_t len, float *out);

#endif
