/* oai.c - OpenAI-shaped errors and chat request validation; see oai.h. */
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void oai_error_set(struct oai_error *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...)
{
    va_list ap;

    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static cJSON *str_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *oai_error_json(const struct oai_error *e, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *err = cJSON_CreateObject();
    char *out = NULL;

    if (!root || !err) {
        cJSON_Delete(root);
        cJSON_Delete(err);
        return NULL;
    }
    cJSON_AddItemToObject(root, "error", err);
    cJSON_AddItemToObject(err, "message", cJSON_CreateString(e->message));
    cJSON_AddItemToObject(err, "type", cJSON_CreateString(e->type));
    cJSON_AddItemToObject(err, "param", str_or_null(e->param));
    cJSON_AddItemToObject(err, "code", str_or_null(e->code));
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (out && len)
        *len = strlen(out);
    return out;
}

/* "application/json", optionally followed by parameters such as charset. */
static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;

    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

int oai_check_json_type(const char *content_type, struct oai_error *e)
{
    if (is_json_type(content_type))
        return 0;
    oai_error_set(e, 415, "invalid_request_error", NULL, "unsupported_media_type",
                  "Content-Type must be application/json, got '%.100s'.",
                  content_type ? content_type : "");
    return -1;
}

long oai_json_scan(const char *body, size_t len, size_t *values)
{
    const unsigned char *s = (const unsigned char *)body, *p = s, *end = s + len;
    size_t n = 1;

    while (p < end) {
        /* Between strings: every container and every separator may start
         * a value. */
        for (; p < end && *p != '"'; p++) {
            if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
                return (long)(p - s);
            n += *p == ',' || *p == '[' || *p == '{';
        }
        if (p < end)
            n++; /* a string: a value, or a key (counted once with its value's comma) */
        /* Inside one, from its opening quote to its closing one. An escape
         * covers the next byte, which must not be a control byte either. */
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end)
                p++;
            if (*p < 0x20)
                return (long)(p - s);
        }
        p++;
    }
    if (values)
        *values = n;
    return -1;
}

int oai_model_parse(const char *content_type, const char *body, size_t len, cJSON **out,
                    struct oai_error *e)
{
    static const char *const irq = "invalid_request_error";
    cJSON *doc, *model;
    const char *end = body;
    long bad;
    size_t values = 0;

    if (oai_check_json_type(content_type, e) != 0)
        return -1;
    if (len == 0) {
        oai_error_set(e, 400, irq, NULL, "invalid_json",
                      "The request body is empty; expected a JSON object.");
        return -1;
    }
    if ((bad = oai_json_scan(body, len, &values)) >= 0) {
        oai_error_set(e, 400, irq, NULL, "invalid_json",
                      "We could not parse the JSON body of your request (raw control character "
                      "0x%02x at byte %ld: JSON allows none inside a string, where it must be "
                      "escaped as \\u%04x, and only tab, LF and CR between values). The OpenAI "
                      "API expects a JSON payload.",
                      (unsigned char)body[bad], bad, (unsigned char)body[bad]);
        return -1;
    }
    if (values > OAI_JSON_VALUES_MAX) {
        oai_error_set(e, 400, irq, NULL, "invalid_json",
                      "The request body holds more than %d JSON values; parrot refuses to parse "
                      "it (each costs memory before anything is validated).",
                      OAI_JSON_VALUES_MAX);
        return -1;
    }
    doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    /* cJSON stops after the first value; what follows must be blank. */
    while (doc && end < body + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (doc && end < body + len) {
        cJSON_Delete(doc);
        oai_error_set(e, 400, irq, NULL, "invalid_json",
                      "We could not parse the JSON body of your request (unexpected data after "
                      "the JSON value at byte %ld). The OpenAI API expects a JSON payload.",
                      (long)(end - body));
        return -1;
    }
    if (!doc) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= body && at <= body + len) ? (long)(at - body) : -1;
        oai_error_set(e, 400, irq, NULL, "invalid_json",
                      "We could not parse the JSON body of your request (error near byte %ld). "
                      "The OpenAI API expects a JSON payload.",
                      off);
        return -1;
    }
    if (!cJSON_IsObject(doc)) {
        oai_error_set(e, 400, irq, NULL, "invalid_json", "The request body must be a JSON object.");
        goto fail;
    }
    model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    if (!model) {
        oai_error_set(e, 400, irq, "model", "missing_required_parameter",
                      "Missing required parameter: 'model'.");
        goto fail;
    }
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        oai_error_set(e, 400, irq, "model", "invalid_type",
                      "Invalid type for 'model': expected a non-empty string.");
        goto fail;
    }
    *out = doc;
    return 0;
fail:
    cJSON_Delete(doc);
    return -1;
}

int oai_chat_parse(const char *content_type, const char *body, size_t len, cJSON **out,
                   struct oai_error *e)
{
    static const char *const irq = "invalid_request_error";
    cJSON *doc, *msgs;

    if (oai_model_parse(content_type, body, len, &doc, e) != 0)
        return -1;
    msgs = cJSON_GetObjectItemCaseSensitive(doc, "messages");
    if (!msgs) {
        oai_error_set(e, 400, irq, "messages", "missing_required_parameter",
                      "Missing required parameter: 'messages'.");
        goto fail;
    }
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        oai_error_set(e, 400, irq, "messages", "invalid_type",
                      "Invalid type for 'messages': expected a non-empty array of messages.");
        goto fail;
    }
    if (out)
        *out = doc;
    else
        cJSON_Delete(doc);
    return 0;
fail:
    cJSON_Delete(doc);
    return -1;
}

/* A token id: a whole number a provider could mean as one. */
static bool token_id(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 4294967295.0 &&
           floor(v->valuedouble) == v->valuedouble;
}

static bool token_array(const cJSON *v)
{
    const cJSON *t;

    if (!cJSON_IsArray(v) || !v->child)
        return false;
    cJSON_ArrayForEach(t, v)
    {
        if (!token_id(t))
            return false;
    }
    return true;
}

static bool item_ok(const cJSON *v)
{
    return (cJSON_IsString(v) && v->valuestring[0]) || token_array(v);
}

int oai_items(const cJSON *input, const char *param, size_t max, const cJSON ***items,
              size_t *count, struct oai_error *e)
{
    static const char *const irq = "invalid_request_error";
    const cJSON *it;
    size_t n = 0;

    *items = NULL;
    *count = 0;
    if (cJSON_IsString(input) || token_array(input)) {
        if (!item_ok(input))
            goto bad;
        *items = malloc(sizeof(**items));
        if (!*items)
            goto oom;
        (*items)[0] = input;
        *count = 1;
        return 0;
    }
    if (!cJSON_IsArray(input) || !input->child)
        goto bad;
    cJSON_ArrayForEach(it, input)
    {
        /* One kind of item per request, as the API takes them. */
        if (!item_ok(it) || cJSON_IsString(it) != cJSON_IsString(input->child))
            goto bad;
        n++;
    }
    if (n > max) {
        oai_error_set(e, 400, irq, param, "invalid_value",
                      "'%s' holds %zu items; at most %zu are allowed per request.", param, n, max);
        return -1;
    }
    *items = malloc(n * sizeof(**items));
    if (!*items)
        goto oom;
    cJSON_ArrayForEach(it, input)
    {
        (*items)[(*count)++] = it;
    }
    return 0;
bad:
    oai_error_set(e, 400, irq, param, "invalid_value",
                  "'%s' must be a non-empty string, an array of non-empty strings, an array of "
                  "token ids or an array of non-empty arrays of token ids.",
                  param);
    return -1;
oom:
    oai_error_set(e, 500, "server_error", NULL, "out_of_memory", "Out of memory.");
    return -1;
}

cJSON *oai_prompt_as_chat(const cJSON *req)
{
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON **items = NULL;
    cJSON *keyed, *msgs, *msg, *content;
    struct oai_error e;
    size_t n = 0;

    if (cJSON_GetObjectItemCaseSensitive(req, "messages") ||
        oai_items(prompt, "prompt", 1, &items, &n, &e) != 0)
        return NULL;
    /* Each piece joins the tree as soon as it exists: one Delete frees all. */
    keyed = cJSON_Duplicate(req, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(keyed, "prompt");
    msgs = cJSON_AddArrayToObject(keyed, "messages");
    msg = cJSON_CreateObject();
    if (!msgs || !msg || !cJSON_AddItemToArray(msgs, msg)) {
        cJSON_Delete(msg);
        goto fail;
    }
    content = cJSON_Duplicate(items[0], 1);
    if (!cJSON_AddStringToObject(msg, "role", "user") || !content ||
        !cJSON_AddItemToObject(msg, "content", content)) {
        cJSON_Delete(content);
        goto fail;
    }
    free(items);
    return keyed;
fail:
    free(items);
    cJSON_Delete(keyed);
    return NULL;
}
