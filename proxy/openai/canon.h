/* canon.h - cache keys from a parsed chat-completions request, and the
 * canonical JSON they are built on.
 *
 * A request yields two keys: the partition (everything that can change the
 * answer except the text of the last user message) and the exact key (the
 * partition plus that text, whitespace-normalised). Similarity search never
 * crosses a partition. The byte-exact form that is hashed is documented at the
 * top of canon.c and must not change without bumping CANON_VERSION.
 *
 * Pure functions over caller-owned memory; any thread may call any of them
 * concurrently. Serialisation recurses once per nesting level, at most
 * CANON_MAX_DEPTH levels (a few hundred KiB of stack at the limit).
 * Number formatting assumes the "C" LC_NUMERIC locale (parrot never calls
 * setlocale).
 */
#ifndef PARROT_CANON_H
#define PARROT_CANON_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define CANON_HASH_LEN 32
/* Version tag hashed into every partition; bump it when the form changes. */
#define CANON_VERSION "parrot-partition-v1"
/* Hard cap on a canonical form, and separately on the lookup text (bytes). */
#define CANON_MAX ((size_t)8 << 20)
/* Deepest nesting of arrays/objects serialised; cJSON parses at most 1000
 * (CJSON_NESTING_LIMIT) and the partition form adds one level. */
#define CANON_MAX_DEPTH 1024

struct canon_key {
    uint8_t partition[CANON_HASH_LEN]; /* SHA-256 of the canonical partition form */
    uint8_t exact[CANON_HASH_LEN];     /* SHA-256 of partition || 0x00 || normalised text */
    char *lookup_text; /* malloc'd, NUL-terminated text of the last user message, or NULL
                        * (no text, or only whitespace: the request can only match exactly) */
    size_t lookup_len;
};

/* Computes both keys of a chat-completions request.
 * req: the parsed body (an object; "model" and "messages" are expected but not
 * required). tenant: opaque tenant scope chosen by the caller (e.g. the hex hash
 * of the Authorization header); route: e.g. "/v1/chat/completions". Either may
 * be NULL, which is keyed as JSON null, distinct from "".
 * Returns 0 and fills *out (release with canon_key_fini), or a negative errno
 * with *out zeroed: -E2BIG when the partition form or the lookup text would
 * exceed CANON_MAX or nesting exceeds CANON_MAX_DEPTH, -ENOMEM, -EINVAL when req
 * is not an object or the tree holds something JSON cannot (cJSON_Raw, NaN, a
 * member without a name), -EIO when libcrypto fails. On any error the caller
 * should bypass the cache. */
int canon_request(const struct cJSON *req, const char *tenant, const char *route,
                  struct canon_key *out);

/* canon_request, given also the text req was parsed from (src[0..src_len),
 * whose members and elements cJSON keeps in order): an integer written
 * without fraction or exponent that no double holds (9007199254740993, or
 * beyond the double range) is keyed by its digits rather than by the double
 * cJSON made of it, so two such numbers differing by 1 get different keys.
 * Only the text's number tokens are read, and only when the tree holds such
 * a value (integral, |v| >= 2^53 or infinite). If src turns out not to be
 * req's text, numbers are keyed by their doubles, as canon_request does. */
int canon_request_src(const struct cJSON *req, const char *src, size_t src_len, const char *tenant,
                      const char *route, struct canon_key *out);

/* The exact key of one item of a request that is answered item by item (an
 * embeddings input: a string or an array of token ids), within partition
 * (canon_request's, computed over the request without its items):
 * SHA-256(partition || 0x01 || canonical JSON of item). The 0x01 keeps these
 * keys apart from canon_request's exact keys (0x00). Returns 0, or the
 * errors of canon_json. */
int canon_item_key(const uint8_t *partition, const struct cJSON *item, uint8_t out[CANON_HASH_LEN]);

/* Frees k->lookup_text and zeroes *k; safe on a zeroed struct. */
void canon_key_fini(struct canon_key *k);

/* Appends the canonical JSON of v to a growable buffer: object members sorted
 * by the bytes of their names (duplicates kept, in their original order), no
 * insignificant whitespace, numbers and strings in one spelling each (see
 * canon.c). *buf is NULL with *cap 0, or a malloc'd block of *cap bytes holding
 * *len bytes of earlier output; it may be reallocated (free it in any case).
 * The output never makes *len exceed max. On success *buf is NUL-terminated
 * (the NUL is not counted in *len) and 0 is returned; on failure *len is
 * unchanged and the result is -E2BIG (max or CANON_MAX_DEPTH exceeded),
 * -ENOMEM or -EINVAL (see canon_request). */
int canon_json(const struct cJSON *v, char **buf, size_t *len, size_t *cap, size_t max);

/* Appends v as canon_json does, but with object members in their own order:
 * compact JSON, not canonical, so never for a key (the stored forms of
 * answers are printed with it). Strings come out as cJSON prints them, and
 * so do integers; unlike cJSON, which prints every number with printf "%g"
 * and reads it back with sscanf, an integer costs no floating-point
 * formatting. */
int canon_print(const struct cJSON *v, char **buf, size_t *len, size_t *cap, size_t max);

/* Appends the canonical partition form of a request, the exact bytes whose
 * SHA-256 is canon_key.partition, to a buffer as canon_json does. For debugging
 * ("why did these two requests not share a partition?"). Same errors as
 * canon_request, with max in place of CANON_MAX for the form. */
int canon_partition_form(const struct cJSON *req, const char *tenant, const char *route, char **buf,
                         size_t *len, size_t *cap, size_t max);

/* Writes the n bytes at h as 2n lower-case hex digits and a NUL (out must hold
 * 2n+1 bytes, i.e. 2*CANON_HASH_LEN+1 for a key). */
void canon_hex(const uint8_t *h, size_t n, char *out);

#endif
