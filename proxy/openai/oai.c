/* oai.c - OpenAI-shaped errors and chat request validation; see oai.h. */
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
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
