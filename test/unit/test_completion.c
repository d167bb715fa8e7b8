/* Unit tests for proxy/completion.c: stream reassembly, rendering, replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/openai/completion.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char STREAM[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    ": keep-alive comment\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\r\n\r\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w\\u00f6rld\"},\"finish_reason\":null}]}"
    "\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}"
    "\n\n"
    "data: [DONE]\n\n";

static const char *content_of(const cJSON *doc, int choice)
{
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), choice);
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static cJSON *assemble(const char *s, size_t n, size_t step)
{
    struct cmpl_asm a;
    cJSON *doc;

    cmpl_asm_init(&a);
    for (size_t i = 0; i < n; i += step)
        cmpl_asm_feed(&a, s + i, i + step <= n ? step : n - i);
    doc = cmpl_asm_take(&a);
    cmpl_asm_fini(&a);
    return doc;
}

/* However the bytes are split, the same completion comes out. */
static void test_assemble_any_split(void **state)
{
    (void)state;
    for (size_t step = 1; step <= 64; step = step * 2 + 1) {
        cJSON *doc = assemble(STREAM, sizeof(STREAM) - 1, step);
        assert_non_null(doc);
        assert_string_equal(content_of(doc, 0), "Hello w\xc3\xb6rld");
        assert_string_equal(cJSON_GetObjectItem(doc, "object")->valuestring, "chat.completion");
        assert_string_equal(cJSON_GetObjectItem(doc, "system_fingerprint")->valuestring, "fp");
        assert_int_equal(
            cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "total_tokens")->valueint, 9);
        cJSON_Delete(doc);
    }
}

static void test_assemble_rejects(void **state)
{
    static const char no_done[] = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":"
                                  "{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n";
    static const char error[] = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":"
                                "{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"x\"}}"
                                "\n\ndata: [DONE]\n\n";
    static const char garbage[] = "data: {not json\n\ndata: [DONE]\n\n";
    static const char logprobs[] =
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},"
        "\"logprobs\":{\"content\":[]},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    (void)state;
    assert_null(assemble(no_done, sizeof(no_done) - 1, 7));
    assert_null(assemble(error, sizeof(error) - 1, 7));
    assert_null(assemble(garbage, sizeof(garbage) - 1, 7));
    assert_null(assemble(logprobs, sizeof(logprobs) - 1, 7));
}

static void test_assemble_tool_calls(void **state)
{
    static const char s[] =
        "data: {\"id\":\"t\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n"
        "data: {\"id\":\"t\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n"
        "data: {\"id\":\"t\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]}}]}\n\n"
        "data: {\"id\":\"t\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},"
        "\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
    cJSON *doc = assemble(s, sizeof(s) - 1, 5), *tc, *msg;

    (void)state;
    assert_non_null(doc);
    msg =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0), "message");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(msg, "content")));
    tc = cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "tool_calls"), 0);
    assert_string_equal(cJSON_GetObjectItem(tc, "id")->valuestring, "call_1");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "arguments")->valuestring,
        "{\"city\":\"Oslo\"}");
    cJSON_Delete(doc);
}

static char *write_json(const struct cmpl_rendered *r, const char *id, int64_t created)
{
    size_t n = cmpl_write_json(NULL, 0, r, id, created);
    char *s = malloc(n + 1);

    assert_int_equal(cmpl_write_json(s, n, r, id, created), n);
    s[n] = '\0';
    return s;
}

static char *write_sse(const struct cmpl_rendered *r, bool usage, size_t *len)
{
    size_t n = cmpl_write_sse(NULL, 0, r, "chatcmpl-new", 99, usage);
    char *s = malloc(n + 1);

    assert_int_equal(cmpl_write_sse(s, n, r, "chatcmpl-new", 99, usage), n);
    s[n] = '\0';
    *len = n;
    return s;
}

/* Stored from a stream, served as JSON and replayed as a stream again. */
static void test_render_round_trip(void **state)
{
    cJSON *doc = assemble(STREAM, sizeof(STREAM) - 1, 4096), *served, *again;
    struct cmpl_rendered r;
    const char *why = NULL;
    char *json, *sse;
    size_t n;

    (void)state;
    assert_non_null(doc);
    assert_int_equal(cmpl_render(doc, &r, &why), 0);
    assert_int_equal(r.prompt_tokens, 7);
    assert_int_equal(r.completion_tokens, 2);
    assert_string_equal(r.model, "m");

    json = write_json(&r, "chatcmpl-new", 1234);
    served = cJSON_Parse(json);
    assert_non_null(served);
    assert_string_equal(cJSON_GetObjectItem(served, "id")->valuestring, "chatcmpl-new");
    assert_int_equal(cJSON_GetObjectItem(served, "created")->valueint, 1234);
    assert_string_equal(content_of(served, 0), "Hello w\xc3\xb6rld");
    assert_non_null(cJSON_GetObjectItem(served, "usage"));

    sse = write_sse(&r, true, &n);
    assert_non_null(strstr(sse, "\"id\":\"chatcmpl-new\",\"object\":\"chat.completion.chunk\""));
    assert_non_null(strstr(sse, "\"choices\":[],\"usage\":{\"prompt_tokens\":7"));
    assert_int_equal(memcmp(sse + n - 14, "data: [DONE]\n\n", 14), 0);
    again = assemble(sse, n, 3);
    assert_non_null(again);
    assert_string_equal(content_of(again, 0), "Hello w\xc3\xb6rld");
    free(sse);

    sse = write_sse(&r, false, &n);
    assert_null(strstr(sse, "\"usage\""));
    free(sse);

    free(json);
    cJSON_Delete(served);
    cJSON_Delete(again);
    cJSON_Delete(doc);
    cmpl_rendered_fini(&r);
}

static void test_render_refuses(void **state)
{
    static const char *const bad[] = {
        "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]"
        "}",
        "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"},\"finish_reason\":null}]}",
        "{\"choices\":[]}",
        "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"},\"logprobs\":{\"content\":[]},"
        "\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"},\"finish_reason\":\"stop\"},"
        "{\"index\":1,\"message\":{\"content\":\"b\"},\"finish_reason\":\"content_filter\"}]}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *doc = cJSON_Parse(bad[i]);
        struct cmpl_rendered r;
        const char *why = NULL;
        assert_non_null(doc);
        assert_int_equal(cmpl_render(doc, &r, &why), -1);
        assert_non_null(why);
        cJSON_Delete(doc);
    }
}

/* tool_calls is what keeps an answer to exact hits: set from the message,
 * never from text that only mentions tool calls. */
static void test_render_marks_tool_calls(void **state)
{
    static const struct {
        const char *json;
        bool tools;
    } cases[] = {
        {"{\"choices\":[{\"index\":0,\"message\":{\"content\":null,\"tool_calls\":[{\"id\":"
         "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
         "\"finish_reason\":\"tool_calls\"}]}",
         true},
        {"{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\",\"tool_calls\":[]},"
         "\"finish_reason\":\"stop\"}]}",
         false},
        {"{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\",\"tool_calls\":null},"
         "\"finish_reason\":\"stop\"}]}",
         false},
        {"{\"choices\":[{\"index\":0,\"message\":{\"content\":\"say \\\"tool_calls\\\":[1]\"},"
         "\"finish_reason\":\"stop\"}]}",
         false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *doc = cJSON_Parse(cases[i].json);
        struct cmpl_rendered r;
        const char *why = NULL;
        assert_non_null(doc);
        assert_int_equal(cmpl_render(doc, &r, &why), 0);
        assert_int_equal(r.tool_calls, cases[i].tools);
        assert_int_equal(cmpl_body_has_tool_calls(r.body, r.body_len), cases[i].tools);
        cJSON_Delete(doc);
        cmpl_rendered_fini(&r);
    }
    assert_false(cmpl_body_has_tool_calls(NULL, 0));
    {
        static const char legacy[] = "\"function_call\":{\"name\":\"f\"}";
        assert_true(cmpl_body_has_tool_calls(legacy, sizeof(legacy) - 1));
    }
}

static const char LEGACY[] =
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"i\","
    "\"choices\":[{\"text\":\"Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"i\","
    "\"choices\":[{\"text\":\" upon\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}"
    "\n\n"
    "data: [DONE]\n\n";

static const char *text_of(const cJSON *doc)
{
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
    return cJSON_GetObjectItem(ch, "text")->valuestring;
}

/* A legacy completion's stream reassembles into a text_completion, which
 * is replayed in its own shape. */
static void test_legacy_round_trip(void **state)
{
    cJSON *doc = assemble(LEGACY, sizeof(LEGACY) - 1, 7), *served, *again;
    struct cmpl_rendered r;
    const char *why = NULL;
    char *json, *sse;
    size_t n;

    (void)state;
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "object")->valuestring, "text_completion");
    assert_int_equal(cmpl_render(doc, &r, &why), 0);
    assert_int_equal(r.kind, CMPL_TEXT);
    assert_false(r.tool_calls);
    json = write_json(&r, "cmpl-new", 9);
    served = cJSON_Parse(json);
    assert_string_equal(cJSON_GetObjectItem(served, "object")->valuestring, "text_completion");
    assert_string_equal(text_of(served), "Once upon");
    sse = write_sse(&r, false, &n);
    assert_null(strstr(sse, "chat.completion"));
    again = assemble(sse, n, 5);
    assert_non_null(again);
    assert_string_equal(text_of(again), "Once upon");
    free(sse);
    free(json);
    cJSON_Delete(served);
    cJSON_Delete(again);
    cJSON_Delete(doc);
    cmpl_rendered_fini(&r);

    /* Cut short by max_tokens: not stored. */
    doc = cJSON_Parse("{\"object\":\"text_completion\",\"model\":\"i\",\"choices\":[{\"text\":"
                      "\"x\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}]}");
    assert_int_equal(cmpl_render(doc, &r, &why), -1);
    cJSON_Delete(doc);
}

/* The stored body keeps every member in order but the answer's own id,
 * object and created (each copy of them, when a provider repeats a key):
 * a hit gets fresh ones, never a second of either. */
static void test_render_body_members(void **state)
{
    cJSON *doc = cJSON_Parse(
        "{\"id\":\"a\",\"model\":\"m\",\"object\":\"chat.completion\",\"choices\":[{"
        "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
        "\"finish_reason\":\"stop\"}],\"created\":5,\"id\":\"b\",\"x\":{\"k\":[1,2.5,null]}}");
    struct cmpl_rendered r;
    const char *why = NULL;

    (void)state;
    assert_non_null(doc);
    assert_int_equal(cmpl_render(doc, &r, &why), 0);
    assert_string_equal(r.body, "\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{"
                                "\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":"
                                "\"stop\"}],\"x\":{\"k\":[1,2.5,null]}}");
    /* The answer itself is left as it was. */
    assert_string_equal(cJSON_GetObjectItem(doc, "id")->valuestring, "a");
    assert_int_equal(cJSON_GetArraySize(doc), 7);
    cmpl_rendered_fini(&r);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assemble_any_split),  cmocka_unit_test(test_assemble_rejects),
        cmocka_unit_test(test_assemble_tool_calls), cmocka_unit_test(test_render_round_trip),
        cmocka_unit_test(test_render_refuses),      cmocka_unit_test(test_render_marks_tool_calls),
        cmocka_unit_test(test_legacy_round_trip),   cmocka_unit_test(test_render_body_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
