/* completion.c - reassemble streamed completions, render stored ones; see
 * completion.h. */
#include "proxy/openai/completion.h"

#include "proxy/openai/canon.h"
#include "proxy/openai/responses.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHOICES    16
#define MAX_TOOL_CALLS 64

struct cmpl_tool {
    cJSON *id, *type; /* copies from the first delta that carried them */
    struct buf name, args;
};

struct cmpl_choice {
    bool used;
    char *role;
    bool has_content, has_refusal;
    struct buf content, refusal;
    struct cmpl_tool tools[MAX_TOOL_CALLS];
    size_t ntools;
    char *finish;
};

void cmpl_asm_init(struct cmpl_asm *a)
{
    memset(a, 0, sizeof(*a));
}

static void choice_fini(struct cmpl_choice *c)
{
    free(c->role);
    free(c->finish);
    buf_free(&c->content);
    buf_free(&c->refusal);
    for (size_t i = 0; i < c->ntools; i++) {
        cJSON_Delete(c->tools[i].id);
        cJSON_Delete(c->tools[i].type);
        buf_free(&c->tools[i].name);
        buf_free(&c->tools[i].args);
    }
}

void cmpl_asm_fini(struct cmpl_asm *a)
{
    buf_free(&a->line);
    buf_free(&a->data);
    cJSON_Delete(a->first);
    cJSON_Delete(a->usage);
    for (size_t i = 0; i < a->nchoices; i++)
        choice_fini(&a->choices[i]);
    free(a->choices);
    memset(a, 0, sizeof(*a));
}

static void fail(struct cmpl_asm *a, const char *why)
{
    if (!a->failed) {
        a->failed = true;
        a->why = why;
    }
}

static int set_str(char **dst, const char *s)
{
    char *d = strdup(s);

    if (!d)
        return -ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

static struct cmpl_choice *choice_at(struct cmpl_asm *a, int index)
{
    if (index < 0 || index >= MAX_CHOICES)
        return NULL;
    if (!a->choices) {
        a->choices = calloc(MAX_CHOICES, sizeof(*a->choices));
        if (!a->choices)
            return NULL;
    }
    if ((size_t)index >= a->nchoices)
        a->nchoices = (size_t)index + 1;
    a->choices[index].used = true;
    return &a->choices[index];
}

static int merge_tool(struct cmpl_choice *c, const cJSON *tc)
{
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(tc, "index");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(tc, "id");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    struct cmpl_tool *t;
    int i;

    if (!cJSON_IsNumber(idx) || idx->valueint < 0 || idx->valueint >= MAX_TOOL_CALLS)
        return -1;
    i = idx->valueint;
    if ((size_t)i >= c->ntools)
        c->ntools = (size_t)i + 1;
    t = &c->tools[i];
    if (cJSON_IsString(id) && !t->id)
        t->id = cJSON_Duplicate(id, 1);
    if (cJSON_IsString(type) && !t->type)
        t->type = cJSON_Duplicate(type, 1);
    if (cJSON_IsString(name) && buf_puts(&t->name, name->valuestring, CMPL_MAX_BYTES))
        return -1;
    if (cJSON_IsString(args) && buf_puts(&t->args, args->valuestring, CMPL_MAX_BYTES))
        return -1;
    return 0;
}

static void merge_choice(struct cmpl_asm *a, const cJSON *ch)
{
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(ch, "index");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    const cJSON *logprobs = cJSON_GetObjectItemCaseSensitive(ch, "logprobs");
    const cJSON *v;
    struct cmpl_choice *c;

    c = choice_at(a, cJSON_IsNumber(index) ? index->valueint : -1);
    if (!c)
        return fail(a, "choice index out of range");
    if (logprobs && !cJSON_IsNull(logprobs))
        return fail(a, "logprobs are not replayed");
    if (cJSON_IsString(finish) && set_str(&c->finish, finish->valuestring))
        return fail(a, "out of memory");
    /* A legacy completion's chunk carries its text in the choice itself. */
    v = cJSON_GetObjectItemCaseSensitive(ch, "text");
    if (cJSON_IsString(v)) {
        c->has_content = true;
        if (buf_puts(&c->content, v->valuestring, CMPL_MAX_BYTES))
            return fail(a, "content too large");
    }
    if (!cJSON_IsObject(delta))
        return;
    if (cJSON_GetObjectItemCaseSensitive(delta, "audio") ||
        cJSON_GetObjectItemCaseSensitive(delta, "function_call"))
        return fail(a, "audio and legacy function_call are not replayed");
    v = cJSON_GetObjectItemCaseSensitive(delta, "role");
    if (cJSON_IsString(v) && set_str(&c->role, v->valuestring))
        return fail(a, "out of memory");
    v = cJSON_GetObjectItemCaseSensitive(delta, "content");
    if (cJSON_IsString(v)) {
        c->has_content = true;
        if (buf_puts(&c->content, v->valuestring, CMPL_MAX_BYTES))
            return fail(a, "content too large");
    }
    v = cJSON_GetObjectItemCaseSensitive(delta, "refusal");
    if (cJSON_IsString(v)) {
        c->has_refusal = true;
        if (buf_puts(&c->refusal, v->valuestring, CMPL_MAX_BYTES))
            return fail(a, "refusal too large");
    }
    v = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
    if (cJSON_IsArray(v)) {
        const cJSON *tc;
        cJSON_ArrayForEach(tc, v)
        {
            if (merge_tool(c, tc) != 0)
                return fail(a, "unusable tool_calls delta");
        }
    }
}

/* A Responses stream's typed event (consumes ev): the response.completed
 * event carries the whole response, which is all parrot keeps; one that
 * failed or stopped short is not stored. */
static void response_event(struct cmpl_asm *a, cJSON *ev)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));

    if (strcmp(type, "response.completed") == 0 && !a->done) {
        cJSON *resp = cJSON_DetachItemFromObjectCaseSensitive(ev, "response");
        cJSON_Delete(a->first);
        a->first = resp;
        a->done = cJSON_IsObject(resp);
    } else if (strcmp(type, "response.failed") == 0 || strcmp(type, "response.incomplete") == 0 ||
               strcmp(type, "error") == 0) {
        fail(a, "the response did not complete");
    }
    cJSON_Delete(ev);
}

static void dispatch(struct cmpl_asm *a)
{
    cJSON *chunk, *choices, *usage, *ch;

    if (a->data.len == 0)
        return;
    if (strcmp(a->data.p, "[DONE]") == 0) {
        a->done = true;
        return;
    }
    if (a->done)
        return fail(a, "data after [DONE]");
    chunk = cJSON_ParseWithLength(a->data.p, a->data.len);
    if (!cJSON_IsObject(chunk)) {
        cJSON_Delete(chunk);
        return fail(a, "unparseable chunk");
    }
    if (cJSON_GetObjectItemCaseSensitive(chunk, "error")) {
        cJSON_Delete(chunk);
        return fail(a, "error event in stream");
    }
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(chunk, "type")))
        return response_event(a, chunk);
    choices = cJSON_GetObjectItemCaseSensitive(chunk, "choices");
    cJSON_ArrayForEach(ch, choices)
    {
        merge_choice(a, ch);
    }
    usage = cJSON_GetObjectItemCaseSensitive(chunk, "usage");
    if (cJSON_IsObject(usage)) {
        cJSON_Delete(a->usage);
        a->usage = cJSON_DetachItemViaPointer(chunk, usage);
    }
    if (!a->first) {
        cJSON_DeleteItemFromObjectCaseSensitive(chunk, "choices");
        a->first = chunk;
    } else {
        cJSON_Delete(chunk);
    }
}

/* One SSE line (without its end of line). */
static void line(struct cmpl_asm *a, const char *p, size_t n)
{
    if (n == 0) {
        dispatch(a);
        buf_reset(&a->data);
        return;
    }
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        p += 5;
        n -= 5;
        if (n && *p == ' ') {
            p++;
            n--;
        }
        if ((a->data.len && buf_append(&a->data, "\n", 1, CMPL_MAX_LINE)) ||
            buf_append(&a->data, p, n, CMPL_MAX_LINE))
            fail(a, "event too large");
    }
    /* event:, id:, retry: and comments carry nothing a completion needs. */
}

void cmpl_asm_feed(struct cmpl_asm *a, const char *p, size_t n)
{
    const char *end = p + n;

    if (a->failed)
        return;
    a->bytes += n;
    if (a->bytes > CMPL_MAX_BYTES)
        return fail(a, "stream too large");
    while (p < end && !a->failed) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;

        if (buf_append(&a->line, p, (size_t)(stop - p), CMPL_MAX_LINE))
            return fail(a, "line too large");
        if (!nl)
            break;
        if (a->line.len && a->line.p[a->line.len - 1] == '\r')
            a->line.len--;
        line(a, a->line.p ? a->line.p : "", a->line.len);
        buf_reset(&a->line);
        p = nl + 1;
    }
}

static cJSON *string_or_null(const struct buf *b, bool present)
{
    return present ? cJSON_CreateString(b->p ? b->p : "") : cJSON_CreateNull();
}

static cJSON *build_message(const struct cmpl_choice *c)
{
    cJSON *m = cJSON_CreateObject();

    if (!m)
        return NULL;
    cJSON_AddStringToObject(m, "role", c->role ? c->role : "assistant");
    /* With only tool calls, OpenAI sends "content": null. */
    cJSON_AddItemToObject(m, "content", string_or_null(&c->content, c->has_content));
    cJSON_AddItemToObject(m, "refusal", string_or_null(&c->refusal, c->has_refusal));
    if (c->ntools) {
        cJSON *arr = cJSON_AddArrayToObject(m, "tool_calls");
        for (size_t i = 0; arr && i < c->ntools; i++) {
            const struct cmpl_tool *t = &c->tools[i];
            cJSON *tc = cJSON_CreateObject(), *fn;
            if (!tc)
                break;
            cJSON_AddItemToArray(arr, tc);
            cJSON_AddItemToObject(tc, "id", t->id ? cJSON_Duplicate(t->id, 1) : cJSON_CreateNull());
            cJSON_AddItemToObject(
                tc, "type", t->type ? cJSON_Duplicate(t->type, 1) : cJSON_CreateString("function"));
            fn = cJSON_AddObjectToObject(tc, "function");
            cJSON_AddStringToObject(fn, "name", t->name.p ? t->name.p : "");
            cJSON_AddStringToObject(fn, "arguments", t->args.p ? t->args.p : "");
        }
    }
    return m;
}

/* Whether c's "object" is name: "response", or "text_completion" for a
 * legacy completion or one of its chunks (whose object is the same). */
static bool object_is(const cJSON *c, const char *name)
{
    const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "object"));
    return o && strcmp(o, name) == 0;
}

cJSON *cmpl_asm_take(struct cmpl_asm *a)
{
    cJSON *doc, *choices;
    bool legacy;

    if (!a->done && !a->failed)
        fail(a, "stream ended without [DONE]");
    if (!a->failed && object_is(a->first, "response")) {
        doc = a->first;
        a->first = NULL;
        return doc;
    }
    if (a->failed || !a->first || a->nchoices == 0)
        return NULL;
    doc = a->first;
    a->first = NULL;
    legacy = object_is(doc, "text_completion");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "object");
    cJSON_AddStringToObject(doc, "object", legacy ? "text_completion" : "chat.completion");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "usage");
    choices = cJSON_AddArrayToObject(doc, "choices");
    for (size_t i = 0; choices && i < a->nchoices; i++) {
        const struct cmpl_choice *c = &a->choices[i];
        cJSON *ch;

        if (!c->used) {
            cJSON_Delete(doc);
            fail(a, "missing choice");
            return NULL;
        }
        ch = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, ch);
        if (legacy)
            cJSON_AddStringToObject(ch, "text", c->content.p ? c->content.p : "");
        cJSON_AddNumberToObject(ch, "index", (double)i);
        if (!legacy)
            cJSON_AddItemToObject(ch, "message", build_message(c));
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddItemToObject(ch, "finish_reason",
                              c->finish ? cJSON_CreateString(c->finish) : cJSON_CreateNull());
    }
    if (a->usage) {
        cJSON_AddItemToObject(doc, "usage", a->usage);
        a->usage = NULL;
    }
    return doc;
}

/* ---- rendering ---------------------------------------------------------- */

char *cmpl_print_members(cJSON *obj, size_t *len)
{
    char *s = NULL;
    size_t n = 0, cap = 0;
    int rc = obj ? canon_print(obj, &s, &n, &cap, SIZE_MAX) : -EINVAL;

    cJSON_Delete(obj);
    if (rc != 0 || n < 2 || s[0] != '{') {
        free(s);
        return NULL;
    }
    memmove(s, s + 1, n); /* includes the NUL */
    *len = n - 1;
    return s;
}

/* The fields every chunk repeats: model, system_fingerprint, service_tier,
 * as references to c's: the chunk is printed and deleted while c lives. */
static cJSON *chunk_base(const cJSON *c)
{
    static const char *const keep[] = {"model", "system_fingerprint", "service_tier"};
    cJSON *o = cJSON_CreateObject();

    for (size_t i = 0; o && i < sizeof(keep) / sizeof(keep[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, keep[i]);
        if (v)
            cJSON_AddItemReferenceToObject(o, keep[i], (cJSON *)v);
    }
    return o;
}

/* One chunk of choice index: a chat chunk with delta (taken over), or,
 * when text is not NULL, a legacy completion's, whose choice holds the
 * text itself. */
static int put_chunk(struct buf *out, const cJSON *c, int index, const char *text, cJSON *delta,
                     const char *finish)
{
    cJSON *o = chunk_base(c), *arr, *ch;
    char *rest;
    size_t n;
    int rc;

    if (!o || (!delta && !text)) {
        cJSON_Delete(o);
        cJSON_Delete(delta);
        return -ENOMEM;
    }
    arr = cJSON_AddArrayToObject(o, "choices");
    ch = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, ch);
    if (text)
        cJSON_AddStringToObject(ch, "text", text);
    cJSON_AddNumberToObject(ch, "index", index);
    if (delta)
        cJSON_AddItemToObject(ch, "delta", delta);
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddItemToObject(ch, "finish_reason",
                          finish ? cJSON_CreateString(finish) : cJSON_CreateNull());
    rest = cmpl_print_members(o, &n);
    if (!rest)
        return -ENOMEM;
    rc = buf_append(out, rest, n, SIZE_MAX / 2);
    if (rc == 0)
        rc = buf_append(out, "\n", 1, SIZE_MAX / 2);
    free(rest);
    return rc;
}

static int add_chunk(struct buf *out, const cJSON *c, int index, cJSON *delta, const char *finish)
{
    return put_chunk(out, c, index, NULL, delta, finish);
}

/* The stream a provider would have sent for one choice, in three or four
 * chunks: the role, the content (or refusal), the tool calls, the finish. */
static int render_choice(struct buf *out, const cJSON *c, int index, const cJSON *msg,
                         const char *finish)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const cJSON *refusal = cJSON_GetObjectItemCaseSensitive(msg, "refusal");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
    cJSON *d = cJSON_CreateObject();
    int rc;

    if (!d)
        return -ENOMEM;
    cJSON_AddStringToObject(d, "role", cJSON_IsString(role) ? role->valuestring : "assistant");
    /* As the provider streams it: "" before text, null before tool calls. */
    if (cJSON_IsString(content))
        cJSON_AddStringToObject(d, "content", "");
    else
        cJSON_AddNullToObject(d, "content");
    if ((rc = add_chunk(out, c, index, d, NULL)))
        return rc;
    if (cJSON_IsString(content) && content->valuestring[0]) {
        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "content", content->valuestring);
        if ((rc = add_chunk(out, c, index, d, NULL)))
            return rc;
    }
    if (cJSON_IsString(refusal)) {
        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "refusal", refusal->valuestring);
        if ((rc = add_chunk(out, c, index, d, NULL)))
            return rc;
    }
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0) {
        cJSON *arr, *tc;
        int k = 0;

        d = cJSON_CreateObject();
        arr = cJSON_AddArrayToObject(d, "tool_calls");
        cJSON_ArrayForEach(tc, tools)
        {
            cJSON *t = cJSON_Duplicate(tc, 1);
            if (!t)
                break;
            /* Stream deltas carry an index per tool call. */
            cJSON_AddNumberToObject(t, "index", k++);
            cJSON_AddItemToArray(arr, t);
        }
        if ((rc = add_chunk(out, c, index, d, NULL)))
            return rc;
    }
    return add_chunk(out, c, index, cJSON_CreateObject(), finish);
}

/* A legacy completion's stream for one choice: its text, then the finish. */
static int render_text_choice(struct buf *out, const cJSON *c, int index, const cJSON *text,
                              const char *finish)
{
    int rc;

    if (text->valuestring[0] && (rc = put_chunk(out, c, index, text->valuestring, NULL, NULL)) != 0)
        return rc;
    return put_chunk(out, c, index, "", NULL, finish);
}

static int64_t usage_field(const cJSON *usage, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

int cmpl_render(const cJSON *c, struct cmpl_rendered *out, const char **why)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(c, "choices");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(c, "usage");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(c, "model");
    const cJSON *ch;
    struct buf sse = {0};
    bool legacy = object_is(c, "text_completion");
    cJSON *body;
    int i = 0;

    if (object_is(c, "response"))
        return oresp_render(c, out, why);
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(c) || !cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        *why = "no choices";
        return -1;
    }
    cJSON_ArrayForEach(ch, choices)
    {
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(ch, "logprobs");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");

        if (legacy) {
            /* A legacy completion knows no tool calls; anything but stop was
             * cut short. */
            if (!cJSON_IsString(fr) || strcmp(fr->valuestring, "stop") != 0) {
                *why = "finish_reason is not stop";
                return -1;
            }
            if ((lp && !cJSON_IsNull(lp)) ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ch, "text"))) {
                *why = "logprobs cannot be replayed";
                return -1;
            }
            continue;
        }
        if (!cJSON_IsString(fr) ||
            (strcmp(fr->valuestring, "stop") != 0 && strcmp(fr->valuestring, "tool_calls") != 0)) {
            *why = "finish_reason is not stop or tool_calls";
            return -1;
        }
        if ((lp && !cJSON_IsNull(lp)) || !cJSON_IsObject(msg) ||
            cJSON_GetObjectItemCaseSensitive(msg, "audio") ||
            cJSON_GetObjectItemCaseSensitive(msg, "function_call")) {
            *why = "logprobs, audio or function_call cannot be replayed";
            return -1;
        }
    }

    /* The body is c's members but id, object and created, printed through
     * references: a deep copy of the answer only to drop three of them
     * cost the store thread more than printing it. */
    body = cJSON_CreateObject();
    for (const cJSON *m = c->child; body && m; m = m->next) {
        if (strcmp(m->string, "id") == 0 || strcmp(m->string, "object") == 0 ||
            strcmp(m->string, "created") == 0)
            continue;
        if (!cJSON_AddItemReferenceToObject(body, m->string, (cJSON *)m)) {
            cJSON_Delete(body);
            body = NULL;
        }
    }
    out->body = cmpl_print_members(body, &out->body_len);
    if (!out->body)
        goto fail;

    cJSON_ArrayForEach(ch, choices)
    {
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        int rc =
            legacy ? render_text_choice(&sse, c, i++, cJSON_GetObjectItemCaseSensitive(ch, "text"),
                                        fr->valuestring)
                   : render_choice(&sse, c, i++, cJSON_GetObjectItemCaseSensitive(ch, "message"),
                                   fr->valuestring);
        if (rc)
            goto fail;
    }
    out->sse = buf_take(&sse, &out->sse_len);
    if (cJSON_IsObject(usage)) {
        cJSON *u = chunk_base(c);
        if (!u)
            goto fail;
        cJSON_AddArrayToObject(u, "choices");
        cJSON_AddItemReferenceToObject(u, "usage", (cJSON *)usage);
        out->usage = cmpl_print_members(u, &out->usage_len);
        if (!out->usage)
            goto fail;
        out->prompt_tokens = usage_field(usage, "prompt_tokens");
        out->completion_tokens = usage_field(usage, "completion_tokens");
    }
    out->model = strdup(cJSON_IsString(model) ? model->valuestring : "");
    if (!out->model)
        goto fail;
    out->kind = legacy ? CMPL_TEXT : CMPL_CHAT;
    out->tool_calls = !legacy && cmpl_body_has_tool_calls(out->body, out->body_len);
    return 0;
fail:
    buf_free(&sse);
    cmpl_rendered_fini(out);
    *why = "out of memory";
    return -ENOMEM;
}

/* True when body holds the key `name` with a value other than null or an
 * empty array. The body is cJSON's unformatted print, where every '"' inside
 * a string is escaped: an unescaped quote, the name, a quote and a colon can
 * only be a key. A key of that name anywhere counts, which errs towards
 * serving the answer on exact hits only. */
static bool has_key_with_value(const char *body, size_t len, const char *name)
{
    size_t n = strlen(name);
    const char *p = body, *end = body + len;

    while (p < end && (p = memmem(p, (size_t)(end - p), name, n)) != NULL) {
        const char *v = p + n;
        size_t rest = (size_t)(end - v);

        p = v;
        if (rest >= 4 && memcmp(v, "null", 4) == 0)
            continue;
        if (rest >= 2 && memcmp(v, "[]", 2) == 0)
            continue;
        return true;
    }
    return false;
}

bool cmpl_body_has_tool_calls(const char *body, size_t len)
{
    return body && (has_key_with_value(body, len, "\"tool_calls\":") ||
                    has_key_with_value(body, len, "\"function_call\":"));
}

void cmpl_rendered_fini(struct cmpl_rendered *r)
{
    free(r->body);
    free(r->sse);
    free(r->usage);
    free(r->model);
    memset(r, 0, sizeof(*r));
}

/* Appends n bytes at *o if they fit in cap; always advances *o. */
static void put(char *out, size_t cap, size_t *o, const char *p, size_t n)
{
    if (*o + n <= cap)
        memcpy(out + *o, p, n);
    *o += n;
}

static size_t prefix(char *buf, size_t cap, const char *object, const char *id, int64_t created)
{
    int n = snprintf(buf, cap, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%" PRId64 ",", id,
                     object, created);
    return n > 0 ? (size_t)n : 0;
}

size_t cmpl_write_json(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                       int64_t created)
{
    if (r->kind == CMPL_RESPONSE)
        return oresp_write_json(out, cap, r, id, created);
    char pre[256];
    size_t o = 0,
           pn = prefix(pre, sizeof(pre),
                       r->kind == CMPL_TEXT ? "text_completion" : "chat.completion", id, created);

    put(out, cap, &o, pre, pn);
    put(out, cap, &o, r->body, r->body_len);
    return o;
}

size_t cmpl_write_sse(char *out, size_t cap, const struct cmpl_rendered *r, const char *id,
                      int64_t created, bool include_usage)
{
    if (r->kind == CMPL_RESPONSE)
        return oresp_write_sse(out, cap, r, id, created);
    static const char done[] = "data: [DONE]\n\n";
    char pre[256];
    /* Legacy chunks are text_completion objects too. */
    size_t o = 0, pn = prefix(pre, sizeof(pre),
                              r->kind == CMPL_TEXT ? "text_completion" : "chat.completion.chunk",
                              id, created);
    const char *p = r->sse, *end = r->sse + r->sse_len;

    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        put(out, cap, &o, "data: ", 6);
        put(out, cap, &o, pre, pn);
        put(out, cap, &o, p, n);
        put(out, cap, &o, "\n\n", 2);
        p += n + 1;
    }
    if (include_usage && r->usage) {
        put(out, cap, &o, "data: ", 6);
        put(out, cap, &o, pre, pn);
        put(out, cap, &o, r->usage, r->usage_len);
        put(out, cap, &o, "\n\n", 2);
    }
    put(out, cap, &o, done, sizeof(done) - 1);
    return o;
}

cJSON *cmpl_rendered_doc(const struct cmpl_rendered *r)
{
    char *text = malloc(r->body_len + 2);
    cJSON *doc;

    if (!text)
        return NULL;
    /* The body is the object's text after its opening brace and the
     * fields a hit writes fresh. */
    text[0] = '{';
    memcpy(text + 1, r->body, r->body_len);
    text[r->body_len + 1] = '\0';
    doc = cJSON_ParseWithLength(text, r->body_len + 1);
    free(text);
    return doc;
}

const char *cmpl_content(const cJSON *completion)
{
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(completion, "choices"), 0);

    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c, "message"), "content"));
}
