/* responses.c - POST /v1/responses on the wire; see responses.h. */
#include "proxy/openai/responses.h"

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
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "stream"))) {
        *why = "stream";
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
