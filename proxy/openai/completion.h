/* completion.h - chat completions as parrot stores and replays them.
 *
 * A provider answers either with one `chat.completion` JSON object or with a
 * stream of `chat.completion.chunk` SSE events. Both are reduced to one
 * completion (the assembler below reassembles streams) and rendered once, at
 * store time, into the pieces a hit needs: the JSON body and the SSE replay,
 * each without its `id` and `created`, which every hit gets fresh. Serving a
 * hit is then a few memcpy()s, with no JSON parsing.
 *
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef PARROT_COMPLETION_H
#define PARROT_COMPLETION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/base/buf.h"

struct cJSON;

/* Hard caps: an answer larger than this is relayed but never stored. */
#define CMPL_MAX_BYTES (8u << 20)
#define CMPL_MAX_LINE  (1u << 20)

struct cmpl_choice;

/* Reassembles an SSE stream of chat.completion.chunk events, or of a legacy
 * completion's text_completion events (choices with "text"), or follows a
 * Responses stream's typed events to its response.completed (which holds
 * the whole response; done is set there, as [DONE] sets it for the
 * others). */
struct cmpl_asm {
    struct buf line;     /* the line being read */
    struct buf data;     /* the data: lines of the event being read */
    struct cJSON *first; /* the first chunk: id, created, model, fingerprint */
    struct cJSON *usage;
    struct cmpl_choice *choices;
    size_t nchoices;
    size_t bytes;    /* stream bytes seen */
    bool done;       /* saw data: [DONE] */
    bool failed;     /* unparseable, an error event, over a cap, or unsupported */
    const char *why; /* when failed: a short reason */
};

void cmpl_asm_init(struct cmpl_asm *a);
void cmpl_asm_fini(struct cmpl_asm *a);

/* Feed stream bytes in any split. Never fails loudly: a stream parrot cannot
 * reassemble faithfully just marks a->failed. */
void cmpl_asm_feed(struct cmpl_asm *a, const char *p, size_t n);

/* The reassembled completion if the stream ended with [DONE] and nothing
 * failed; ownership passes to the caller (cJSON_Delete). Else NULL. */
struct cJSON *cmpl_asm_take(struct cmpl_asm *a);

/* What a stored answer is. Chat completions are the first kind, and every
 * record written before kinds existed is one. */
enum cmpl_kind {
    CMPL_CHAT = 0,      /* body and sse as below */
    CMPL_EMBEDDING = 1, /* body: one vector, float32 little-endian; sse empty,
                           no usage; prompt_tokens: the input's share */
    CMPL_TEXT = 2,      /* a legacy text_completion: body and sse as for chat */
    CMPL_RESPONSE = 3,  /* a Responses API response: body only (responses.h) */
    CMPL_KINDS
};

/* What a hit is served from. Strings are malloc'd and NUL-terminated. */
struct cmpl_rendered {
    enum cmpl_kind kind;
    char *body; /* JSON object text after `{"id":..,"object":..,"created":..,` */
    size_t body_len;
    char *sse; /* chunk objects after the same prefix, one per line */
    size_t sse_len;
    char *usage; /* the usage chunk, same form, or NULL */
    size_t usage_len;
    char *model; /* for logs and admin */
    int64_t prompt_tokens, completion_tokens;
    bool tool_calls; /* the answer calls tools: served on exact hits only */
};

/* Checks that a completion may be cached (every choice finished with "stop"
 * or "tool_calls", no logprobs or audio parrot cannot replay) and renders it.
 * A legacy completion ("object": "text_completion", choices with "text")
 * becomes a CMPL_TEXT answer; it must have finished with "stop". A
 * Responses API response ("object": "response") is oresp_render's. Returns 0,
 * -1 with *why set when it must not be stored, or -ENOMEM. */
int cmpl_render(const struct cJSON *completion, struct cmpl_rendered *out, const char **why);
void cmpl_rendered_fini(struct cmpl_rendered *r);

/* The stored answer as a completion object again (its body, without the
 * fields a hit writes fresh), for reading its content; NULL when out of
 * memory. The caller deletes it. */
struct cJSON *cmpl_rendered_doc(const struct cmpl_rendered *r);

/* The first choice's message content of a completion object, or NULL. */
const char *cmpl_content(const struct cJSON *completion);

/* Print obj compactly (canon_print: its members in their order) and keep
 * what follows its opening brace (its members and the closing brace), the
 * form bodies are stored in. Consumes obj. malloc'd; NULL when out of
 * memory. */
char *cmpl_print_members(struct cJSON *obj, size_t *len);

/* Whether a rendered body (cmpl_rendered.body) holds tool calls or a legacy
 * function call. cmpl_render sets tool_calls from it; a decoder of stored
 * bodies (the log and snapshot records) calls it to set the flag again. */
bool cmpl_body_has_tool_calls(const char *body, size_t len);

/* Writers for a hit, in the form of r's kind (chat or legacy text); the
 * object names follow it. Each returns the bytes needed; it writes only when cap
 * is large enough, so call once with cap 0 to size the buffer. */
size_t cmpl_write_json(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                       int64_t created);
size_t cmpl_write_sse(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                      int64_t created, bool include_usage);

#endif
