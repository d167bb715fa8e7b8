/* oai.h - the OpenAI API's shapes: error bodies and request validation.
 *
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef PARROT_OAI_H
#define PARROT_OAI_H

#include <stddef.h>

struct cJSON;

/* An error as OpenAI reports it:
 *   {"error":{"message":...,"type":...,"param":...|null,"code":...|null}} */
struct oai_error {
    int status;        /* HTTP status */
    const char *type;  /* e.g. "invalid_request_error" */
    const char *param; /* NULL -> null */
    const char *code;  /* NULL -> null */
    char message[512];
};

/* Fill *e; message is printf-formatted. */
void oai_error_set(struct oai_error *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Render *e as JSON. Returns a malloc'd NUL-terminated string (length in
 * *len), or NULL when out of memory. */
char *oai_error_json(const struct oai_error *e, size_t *len);

/* Returns 0 for "application/json", optionally followed by parameters such
 * as charset (case-insensitive); else -1 with *e set to a 415. */
int oai_check_json_type(const char *content_type, struct oai_error *e);

/* The parse budget: a body with more JSON values than this is refused
 * before cJSON allocates a node (80 bytes with malloc's overhead) for each.
 * A dense array ("[0,0,0,...]") of 30 MiB would otherwise cost 1.2 GB; at
 * this bound the nodes of one request cost at most about 20 MiB. Real chat
 * requests hold hundreds or thousands of values. */
#define OAI_JSON_VALUES_MAX (1 << 18)

/* One pass over body[0..len), no allocation. Returns the offset of the
 * first control byte (0x00-0x1F) that JSON forbids: any inside a string
 * (they must be escaped there), any but tab, LF and CR between tokens; or
 * -1 when there is none, and then, if values is not NULL, an upper bound on
 * the number of JSON values in it. cJSON accepts some of these bytes (it
 * ends a string at a NUL and skips any byte up to 0x20 as blank), so a body
 * that contains one means one thing to parrot's key and another to the
 * provider. */
long oai_json_scan(const char *body, size_t len, size_t *values);

/* Checks the body of a POST to a cached route: a JSON content type, a body
 * with no raw control byte and at most OAI_JSON_VALUES_MAX values (see
 * oai_json_scan) that parses to an object with a non-empty string "model".
 * Returns 0 with the parsed document in *out (free with cJSON_Delete), or
 * -1 with *e filled. */
int oai_model_parse(const char *content_type, const char *body, size_t len, struct cJSON **out,
                    struct oai_error *e);

/* Checks a POST /v1/chat/completions request: oai_model_parse, and a
 * non-empty array "messages". On success returns 0 and, if out is not NULL,
 * the parsed document (free with cJSON_Delete). On failure returns -1 and
 * fills *e. */
int oai_chat_parse(const char *content_type, const char *body, size_t len, struct cJSON **out,
                   struct oai_error *e);

/* The items of an embeddings "input" or a legacy completion's "prompt"
 * (param names it in errors): v itself when it is one non-empty string or
 * one non-empty array of token ids, else each element of a non-empty array
 * of those, all strings or all token arrays, at most max. Returns 0 with a
 * malloc'd array in *items (pointing into v) and the count in *n, or -1
 * with *e filled (400 naming param; 500 when out of memory). */
int oai_items(const struct cJSON *v, const char *param, size_t max, const struct cJSON ***items,
              size_t *n, struct oai_error *e);

/* The form a legacy completion with one prompt is keyed in: the request
 * with "prompt" replaced by "messages" holding one user message whose
 * content is the prompt (a string, or token ids), so that the chat keys
 * lift its text (proxy/openai/canon.h; token ids stay in the partition:
 * exact hits only). "x" and ["x"] are one prompt. NULL for anything else
 * (a batch of prompts, no usable prompt, a request that has "messages") or
 * when out of memory: such requests are keyed as they are. Ownership passes
 * to the caller. */
struct cJSON *oai_prompt_as_chat(const struct cJSON *req);

#endif
