/* embedding.h - POST /v1/embeddings on the wire: the request's items, the
 * request that asks the provider for some of them, the provider's answer as
 * one stored vector per item, and an answer assembled from stored vectors.
 *
 * An embeddings request embeds each of its inputs on its own, so parrot
 * caches them one by one (proxy/embeddings.c): an item is one string or one
 * array of token ids. Vectors are kept as float32, which is what the
 * provider computes: its "float" answer prints float32 values as doubles and
 * its "base64" answer is their little-endian bytes, so both renderings of a
 * stored vector give a client the numbers it got live.
 *
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef PARROT_OPENAI_EMBEDDING_H
#define PARROT_OPENAI_EMBEDDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/openai/completion.h"
#include "proxy/openai/oai.h"

struct cJSON;

/* OpenAI's own limit on the inputs of one request. */
#define OEMB_MAX_ITEMS 2048
/* The longest vector parrot stores (OpenAI's largest is 3072). */
#define OEMB_MAX_DIM 16384

/* A parsed request. items point into doc. */
struct oemb_req {
    struct cJSON *doc;
    const struct cJSON **items;
    size_t n;
    bool base64; /* encoding_format "base64" (else "float") */
};

/* Parse and check a request body (oai_model_parse, then "input": a string,
 * an array of strings, an array of token ids or an array of such arrays,
 * at most OEMB_MAX_ITEMS items, none empty; "encoding_format" absent,
 * "float" or "base64"). Returns 0 and fills *r (release with
 * oemb_req_fini), or -1 with *e filled (400). */
int oemb_parse(const char *content_type, const char *body, size_t len, struct oemb_req *r,
               struct oai_error *e);
void oemb_req_fini(struct oemb_req *r);

/* The request without its items (what the partition is computed over);
 * ownership passes to the caller. NULL when out of memory. */
struct cJSON *oemb_without_items(const struct oemb_req *r);

/* The body of a request for items idx[0..m) only, in that order, with
 * everything else as the client sent it. malloc'd, length in *len; NULL
 * when out of memory. */
char *oemb_subrequest(const struct oemb_req *r, const size_t *idx, size_t m, size_t *len);

/* Turn the provider's answer to items idx[0..m) into one payload each
 * (kind CMPL_EMBEDDING; out[i] for idx[i], malloc'd, free with
 * cmpl_rendered_fini and free). The provider's prompt_tokens are shared
 * out over the items by their size (exact for one item); *tokens gets the
 * total it billed. Returns 0, -1 with *why for an answer that is not m
 * vectors of one dimension, or -ENOMEM. */
int oemb_answer(const struct oemb_req *r, const size_t *idx, size_t m, const char *body, size_t len,
                struct cmpl_rendered **out, int64_t *tokens, const char **why);

/* The answer to r assembled from one vector payload per item (vecs[0..r->n))
 * in r's encoding, naming model and billing tokens. malloc'd, length in
 * *len; NULL when out of memory. */
char *oemb_render(const struct oemb_req *r, const struct cmpl_rendered *const *vecs,
                  const char *model, int64_t tokens, size_t *len);

#endif
