/* stored.h - OpenAI chat completions as the cache's payloads: the codec
 * (cache/cache.h) that the composition root hands the cache.
 *
 * A payload is a malloc'd struct cmpl_rendered (proxy/openai/completion.h).
 * In a record (cache/persist/records.h) its two words are the prompt token
 * count and, in word 1, the completion token count in the low 56 bits and
 * the kind (enum cmpl_kind) in the top 8: records written before kinds
 * existed have 0 there, a chat completion. Its tail is four strs: model,
 * body (a chat completion's JSON, or an embedding's float32 vector), SSE
 * replay (empty for an embedding), usage chunk (absent when there is none).
 * tool_calls is not written: it is derived from a chat body again, as
 * cmpl_render derives it.
 *
 * Pure functions; any thread.
 */
#ifndef PARROT_STORED_H
#define PARROT_STORED_H

#include <stddef.h>

struct cache_codec;
struct cmpl_rendered;

/* The codec for struct cmpl_rendered payloads. */
extern const struct cache_codec stored_codec;

/* Bytes an answer occupies in the store, for its memory accounting. */
size_t stored_size(const struct cmpl_rendered *cr);

#endif
