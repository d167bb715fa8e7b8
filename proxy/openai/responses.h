/* responses.h - POST /v1/responses on the wire: which requests parrot may
 * answer from its cache, the form they are keyed in, and a stored response
 * (struct cmpl_rendered of kind CMPL_RESPONSE) and how a hit is written.
 *
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef PARROT_OPENAI_RESPONSES_H
#define PARROT_OPENAI_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/openai/completion.h"

struct cJSON;

/* The form a self-contained Responses request is keyed in: the request
 * with "input" replaced by "messages" (a string input as one user message;
 * an array of input items as they are, the last one's input_text parts
 * written as text parts so that the chat keys lift its text). NULL with
 * *why for a request parrot must not answer from its cache: background,
 * previous_response_id or conversation (state parrot cannot see), a hosted
 * tool (anything but function and custom tools: web and file search, code
 * interpreter, computer use, MCP, ... depend on time or have side effects),
 * or no usable input; or when out of
 * memory. Ownership passes to the caller. */
struct cJSON *oresp_keyed(const struct cJSON *req, const char **why);

/* Render a response object ("object": "response") for storing: only a
 * "completed" one. With "store": true its id is kept (the provider holds
 * that response, so a hit may only hand out that id, and only on exact
 * hits: out->tool_calls is set); otherwise every hit gets a fresh id.
 * Returns 0, -1 with *why, or -ENOMEM. */
int oresp_render(const struct cJSON *response, struct cmpl_rendered *out, const char **why);

/* Whether a stored response body carries its own id (it was stored with
 * "store": true). */
bool oresp_has_own_id(const char *body, size_t len);

/* Whether a stored response may be served on exact hits only: it carries
 * the provider's id, or calls the client acts on (function or custom tool
 * calls). cmpl_rendered.tool_calls holds it; the codec derives it again. */
bool oresp_exact_only(const char *body, size_t len);

/* The JSON of a hit: the stored response with created_at, and id when it
 * has none of its own. Returns the bytes needed; writes only when cap is
 * large enough. */
size_t oresp_write_json(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                        int64_t created_at);

/* The typed-event stream of a hit, as the provider streams a response:
 * response.created, response.in_progress, per output item
 * output_item.added, its content parts (content_part.added,
 * output_text.delta / refusal.delta, their .done, content_part.done), its
 * reasoning summary parts or its function-call arguments deltas,
 * output_item.done; then response.completed, with increasing
 * sequence_numbers. Each text comes in one delta. Returns the bytes
 * needed (0 when out of memory); writes only when cap is large enough. */
size_t oresp_write_sse(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                       int64_t created_at);

#endif
