/* responses.c - POST /v1/responses on the wire; see responses.h. */
#include "proxy/openai/responses.h"

#include "cache/base/buf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Members whose presence means state or effects parrot cannot see. */
static const char *const stateful[] = {"previous_response_id", "conversation", NULL};

static bool present(const cJSON *v)
{
    return v && !cJSON_IsNull(v);
}

/* Only tools the client runs itself: their calls come back to it. */
static bool client_tools_only(const cJSON *tools)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, tools)
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
        if (!type || (strcmp(type, "function") != 0 && strcmp(type, "custom") != 0))
            return false;
    }
    return true;
}

/* The last input item's input_text parts as the chat text parts the keys
 * lift; other parts (images, files) stay as they are. */
static void lift_parts(cJSON *content)
{
    cJSON *part;

    cJSON_ArrayForEach(part, content)
    {
        cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const char *t = cJSON_GetStringValue(type);
        if (t && strcmp(t, "input_text") == 0)
            cJSON_SetValuestring(type, "text");
    }
}

/* "input" as chat messages, or NULL. */
static cJSON *messages_of(const cJSON *input)
{
    cJSON *msgs, *last, *content;

    if (cJSON_IsString(input)) {
        cJSON *m = cJSON_CreateObject();

        msgs = cJSON_CreateArray();
        if (!msgs || !m || !cJSON_AddItemToArray(msgs, m)) {
            cJSON_Delete(m);
            cJSON_Delete(msgs);
            return NULL;
        }
        if (!cJSON_AddStringToObject(m, "role", "user") ||
            !cJSON_AddStringToObject(m, "content", input->valuestring)) {
            cJSON_Delete(msgs);
            return NULL;
        }
        return msgs;
    }
    if (!cJSON_IsArray(input) || !input->child)
        return NULL;
    msgs = cJSON_Duplicate(input, 1);
    last = msgs ? cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1) : NULL;
    content = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (cJSON_IsArray(content))
        lift_parts(content);
    return msgs;
}

cJSON *oresp_keyed(const cJSON *req, const char **why)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools");
    cJSON *keyed, *msgs;

    for (size_t i = 0; stateful[i]; i++) {
        if (present(cJSON_GetObjectItemCaseSensitive(req, stateful[i]))) {
            *why = stateful[i];
            return NULL;
        }
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "background"))) {
        *why = "background";
        return NULL;
    }
    if (present(tools) && (!cJSON_IsArray(tools) || !client_tools_only(tools))) {
        *why = "hosted tool";
        return NULL;
    }
    *why = "no usable input";
    if (cJSON_GetObjectItemCaseSensitive(req, "messages"))
        return NULL;
    msgs = messages_of(cJSON_GetObjectItemCaseSensitive(req, "input"));
    keyed = msgs ? cJSON_Duplicate(req, 1) : NULL;
    if (!keyed) {
        cJSON_Delete(msgs);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(keyed, "input");
    if (!cJSON_AddItemToObject(keyed, "messages", msgs)) {
        cJSON_Delete(msgs);
        cJSON_Delete(keyed);
        return NULL;
    }
    return keyed;
}

static int64_t usage_field(const cJSON *usage, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

bool oresp_has_own_id(const char *body, size_t len)
{
    return len > 6 && memcmp(body, "\"id\":\"", 6) == 0;
}

bool oresp_exact_only(const char *body, size_t len)
{
    return oresp_has_own_id(body, len) || memmem(body, len, "\"type\":\"function_call\"", 22) ||
           memmem(body, len, "\"type\":\"custom_tool_call\"", 25);
}

int oresp_render(const cJSON *response, struct cmpl_rendered *out, const char **why)
{
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(response, "status");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(response, "usage");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(response, "model");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(response, "id");
    bool own_id = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(response, "store"));
    cJSON *body;

    memset(out, 0, sizeof(*out));
    if (!cJSON_GetStringValue(status) || strcmp(cJSON_GetStringValue(status), "completed") != 0 ||
        present(cJSON_GetObjectItemCaseSensitive(response, "error"))) {
        *why = "status is not completed";
        return -1;
    }
    if (own_id && !cJSON_IsString(id)) {
        *why = "a stored response without an id";
        return -1;
    }
    body = cJSON_CreateObject();
    /* The provider's id first, when it is to be kept (oresp_has_own_id). */
    if (body && own_id)
        cJSON_AddStringToObject(body, "id", id->valuestring);
    for (const cJSON *m = response->child; body && m; m = m->next) {
        if (strcmp(m->string, "id") == 0 || strcmp(m->string, "object") == 0 ||
            strcmp(m->string, "created_at") == 0)
            continue;
        cJSON_AddItemToObject(body, m->string, cJSON_Duplicate(m, 1));
    }
    out->body = cmpl_print_members(body, &out->body_len);
    out->sse = strdup("");
    out->model = strdup(cJSON_IsString(model) ? model->valuestring : "");
    if (!out->body || !out->sse || !out->model) {
        cmpl_rendered_fini(out);
        *why = "out of memory";
        return -ENOMEM;
    }
    out->kind = CMPL_RESPONSE;
    out->prompt_tokens = usage_field(usage, "input_tokens");
    out->completion_tokens = usage_field(usage, "output_tokens");
    out->tool_calls = oresp_exact_only(out->body, out->body_len);
    return 0;
}

size_t oresp_write_json(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                        int64_t created_at)
{
    char pre[256];
    int n = oresp_has_own_id(r->body, r->body_len)
                ? snprintf(pre, sizeof(pre), "{\"object\":\"response\",\"created_at\":%" PRId64 ",",
                           created_at)
                : snprintf(pre, sizeof(pre),
                           "{\"id\":\"%s\",\"object\":\"response\",\"created_at\":%" PRId64 ",", id,
                           created_at);
    size_t pn = n > 0 ? (size_t)n : 0;

    if (out && pn + r->body_len <= cap) {
        memcpy(out, pre, pn);
        memcpy(out + pn, r->body, r->body_len);
    }
    return pn + r->body_len;
}

/* ---- the typed-event replay ---------------------------------------------- */

/* Replays never grow past this (a stored response is at most CMPL_MAX_BYTES;
 * its text appears three times in the events, its items twice more). */
#define REPLAY_MAX ((size_t)8 * CMPL_MAX_BYTES)

struct replay {
    struct buf out;
    int seq; /* sequence_number of the next event */
    int rc;
};

/* Appends "event: TYPE\ndata: {...}\n\n" for ev (consumed), numbered. */
static void emit(struct replay *rp, const char *type, cJSON *ev)
{
    char *json;

    if (!ev || rp->rc) {
        cJSON_Delete(ev);
        rp->rc = rp->rc ? rp->rc : -ENOMEM;
        return;
    }
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddNumberToObject(ev, "sequence_number", rp->seq++);
    json = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (!json) {
        rp->rc = -ENOMEM;
        return;
    }
    rp->rc = buf_puts(&rp->out, "event: ", REPLAY_MAX);
    rp->rc = rp->rc ? rp->rc : buf_puts(&rp->out, type, REPLAY_MAX);
    rp->rc = rp->rc ? rp->rc : buf_puts(&rp->out, "\ndata: ", REPLAY_MAX);
    rp->rc = rp->rc ? rp->rc : buf_puts(&rp->out, json, REPLAY_MAX);
    rp->rc = rp->rc ? rp->rc : buf_puts(&rp->out, "\n\n", REPLAY_MAX);
    free(json);
}

/* An event about item i's part j: item_id, output_index, and an index
 * named idx_name (content_index, summary_index) when idx_name is set. */
static cJSON *about(const cJSON *item, int i, const char *idx_name, int j)
{
    cJSON *ev = cJSON_CreateObject();
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "id"));

    cJSON_AddStringToObject(ev, "item_id", id ? id : "");
    cJSON_AddNumberToObject(ev, "output_index", i);
    if (idx_name)
        cJSON_AddNumberToObject(ev, idx_name, j);
    return ev;
}

/* Sets o's member name to v (taken over), replacing it or adding it. */
static void set_member(cJSON *o, const char *name, cJSON *v)
{
    if (!v || (o && cJSON_ReplaceItemInObjectCaseSensitive(o, name, v)))
        return;
    if (!o || !cJSON_AddItemToObject(o, name, v))
        cJSON_Delete(v);
}

/* A copy of v with member name set to with (taken over). */
static cJSON *with_member(const cJSON *v, const char *name, cJSON *with)
{
    cJSON *c = cJSON_Duplicate(v, 1);

    if (c)
        set_member(c, name, with);
    else
        cJSON_Delete(with);
    return c;
}

/* The delta, done pair of a text-like field (text, refusal, arguments,
 * summary text): prefix.delta with the whole text, then prefix.done. */
static void text_events(struct replay *rp, const cJSON *item, int i, const char *idx_name, int j,
                        const char *prefix, const char *field, const char *text)
{
    char type[96];
    cJSON *ev = about(item, i, idx_name, j);
    bool output_text = strcmp(prefix, "response.output_text") == 0;

    snprintf(type, sizeof(type), "%s.delta", prefix);
    cJSON_AddStringToObject(ev, "delta", text);
    if (output_text)
        cJSON_AddArrayToObject(ev, "logprobs");
    emit(rp, type, ev);
    ev = about(item, i, idx_name, j);
    snprintf(type, sizeof(type), "%s.done", prefix);
    cJSON_AddStringToObject(ev, field, text);
    if (output_text)
        cJSON_AddArrayToObject(ev, "logprobs");
    emit(rp, type, ev);
}

/* A part (content or summary) as it is announced: its text empty. */
static cJSON *empty_part(const cJSON *part, const char *field)
{
    return with_member(part, field, cJSON_CreateString(""));
}

static void replay_parts(struct replay *rp, const cJSON *item, int i, const char *list,
                         const char *idx_name, const char *added, const char *done)
{
    const cJSON *part;
    int j = 0;

    cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(item, list))
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "type"));
        const char *field = type && strcmp(type, "refusal") == 0 ? "refusal" : "text";
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, field));
        const char *prefix = strcmp(list, "summary") == 0    ? "response.reasoning_summary_text"
                             : strcmp(field, "refusal") == 0 ? "response.refusal"
                                                             : "response.output_text";
        cJSON *ev = about(item, i, idx_name, j);

        cJSON_AddItemToObject(ev, "part", empty_part(part, field));
        emit(rp, added, ev);
        if (text)
            text_events(rp, item, i, idx_name, j, prefix, field, text);
        ev = about(item, i, idx_name, j);
        cJSON_AddItemToObject(ev, "part", cJSON_Duplicate(part, 1));
        emit(rp, done, ev);
        j++;
    }
}

/* One output item: added (in progress, empty), its parts or arguments,
 * done (as stored). */
static void replay_item(struct replay *rp, const cJSON *item, int i)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "type"));
    const char *args = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "arguments"));
    cJSON *start = with_member(item, "status", cJSON_CreateString("in_progress")), *ev;
    bool message = type && strcmp(type, "message") == 0;
    bool reasoning = type && strcmp(type, "reasoning") == 0;

    if (message)
        set_member(start, "content", cJSON_CreateArray());
    if (reasoning)
        set_member(start, "summary", cJSON_CreateArray());
    if (args)
        set_member(start, "arguments", cJSON_CreateString(""));
    ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "output_index", i);
    cJSON_AddItemToObject(ev, "item", start);
    emit(rp, "response.output_item.added", ev);
    if (message)
        replay_parts(rp, item, i, "content", "content_index", "response.content_part.added",
                     "response.content_part.done");
    else if (reasoning)
        replay_parts(rp, item, i, "summary", "summary_index",
                     "response.reasoning_summary_part.added",
                     "response.reasoning_summary_part.done");
    else if (args)
        text_events(rp, item, i, NULL, 0, "response.function_call_arguments", "arguments", args);
    ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "output_index", i);
    cJSON_AddItemToObject(ev, "item", cJSON_Duplicate(item, 1));
    emit(rp, "response.output_item.done", ev);
}

/* The response as announced before any output: in progress, no output,
 * no usage yet. */
static cJSON *response_started(const cJSON *resp)
{
    cJSON *r = with_member(resp, "status", cJSON_CreateString("in_progress"));

    set_member(r, "output", cJSON_CreateArray());
    set_member(r, "usage", cJSON_CreateNull());
    return r;
}

static void replay_response(struct replay *rp, const cJSON *resp)
{
    const cJSON *item;
    int i = 0;
    cJSON *ev;

    for (int k = 0; k < 2; k++) {
        ev = cJSON_CreateObject();
        cJSON_AddItemToObject(ev, "response", response_started(resp));
        emit(rp, k == 0 ? "response.created" : "response.in_progress", ev);
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(resp, "output"))
    {
        replay_item(rp, item, i++);
    }
    ev = cJSON_CreateObject();
    cJSON_AddItemToObject(ev, "response", cJSON_Duplicate(resp, 1));
    emit(rp, "response.completed", ev);
}

size_t oresp_write_sse(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                       int64_t created_at)
{
    size_t jn = oresp_write_json(NULL, 0, r, id, created_at), n = 0;
    char *json = malloc(jn + 1);
    struct replay rp = {.out = {0}};
    cJSON *resp;

    if (!json)
        return 0;
    oresp_write_json(json, jn, r, id, created_at);
    resp = cJSON_ParseWithLength(json, jn);
    free(json);
    if (!resp)
        return 0;
    replay_response(&rp, resp);
    cJSON_Delete(resp);
    if (rp.rc == 0) {
        n = rp.out.len;
        if (n <= cap)
            memcpy(out, rp.out.p, n);
    }
    buf_free(&rp.out);
    return n;
}
