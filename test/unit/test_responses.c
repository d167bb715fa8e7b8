/* Unit tests for proxy/openai/responses.c: what is self-contained, what is
 * stored, and the typed-event replay of reasoning summaries, refusals and
 * function calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/openai/responses.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char RESPONSE[] =
    "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":5,\"status\":\"completed\","
    "\"error\":null,\"model\":\"m\",\"store\":false,\"output\":["
    "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":\"summary_text\",\"text\":"
    "\"thought\"}]},"
    "{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\","
    "\"content\":[{\"type\":\"refusal\",\"refusal\":\"no\"}]},"
    "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"f\","
    "\"arguments\":\"{\\\"a\\\":1}\",\"status\":\"completed\"}],"
    "\"usage\":{\"input_tokens\":3,\"output_tokens\":4,\"total_tokens\":7}}";

static void test_keyed(void **state)
{
    static const char *const refused[] = {
        "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"r\"}",
        "{\"model\":\"m\",\"input\":\"x\",\"conversation\":{\"id\":\"c\"}}",
        "{\"model\":\"m\",\"input\":\"x\",\"background\":true}",
        "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"file_search\"}]}",
        "{\"model\":\"m\",\"input\":\"x\",\"tools\":{\"type\":\"function\"}}",
        "{\"model\":\"m\"}",
    };
    const char *why = NULL;
    cJSON *req = cJSON_Parse("{\"model\":\"m\",\"previous_response_id\":null,\"input\":[{\"role\":"
                             "\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}]}]}");
    cJSON *k = oresp_keyed(req, &why);
    char *s;

    (void)state;
    s = cJSON_PrintUnformatted(k);
    assert_string_equal(s, "{\"model\":\"m\",\"previous_response_id\":null,\"messages\":[{\"role\":"
                           "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}");
    free(s);
    cJSON_Delete(k);
    cJSON_Delete(req);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        req = cJSON_Parse(refused[i]);
        assert_null(oresp_keyed(req, &why));
        assert_non_null(why);
        cJSON_Delete(req);
    }
}

static void test_render(void **state)
{
    cJSON *doc = cJSON_Parse(RESPONSE);
    struct cmpl_rendered r;
    const char *why = NULL;
    char json[4096];
    size_t n;

    (void)state;
    assert_int_equal(oresp_render(doc, &r, &why), 0);
    assert_int_equal(r.kind, CMPL_RESPONSE);
    assert_true(r.tool_calls); /* a function call: exact hits only */
    assert_false(oresp_has_own_id(r.body, r.body_len));
    assert_int_equal(r.prompt_tokens, 3);
    n = oresp_write_json(json, sizeof(json) - 1, &r, "resp_new", 9);
    json[n] = '\0';
    assert_non_null(strstr(json, "{\"id\":\"resp_new\",\"object\":\"response\",\"created_at\":9,"));
    cmpl_rendered_fini(&r);

    /* store: true keeps the provider's id, whatever id the hit is given. */
    cJSON_ReplaceItemInObject(doc, "store", cJSON_CreateTrue());
    assert_int_equal(oresp_render(doc, &r, &why), 0);
    assert_true(oresp_has_own_id(r.body, r.body_len));
    n = oresp_write_json(json, sizeof(json) - 1, &r, "resp_new", 9);
    json[n] = '\0';
    assert_non_null(strstr(json, "\"id\":\"resp_1\""));
    assert_null(strstr(json, "resp_new"));
    cmpl_rendered_fini(&r);

    cJSON_ReplaceItemInObject(doc, "status", cJSON_CreateString("incomplete"));
    assert_int_equal(oresp_render(doc, &r, &why), -1);
    cJSON_Delete(doc);
}

/* The event types of a replay, in order, checking sequence numbers. */
static void test_replay(void **state)
{
    static const char *const want[] = {
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    };
    cJSON *doc = cJSON_Parse(RESPONSE);
    struct cmpl_rendered r;
    const char *why = NULL, *p;
    size_t n, k = 0;
    char *sse;

    (void)state;
    assert_int_equal(oresp_render(doc, &r, &why), 0);
    n = oresp_write_sse(NULL, 0, &r, "resp_x", 9);
    assert_true(n > 0);
    sse = malloc(n + 1);
    assert_int_equal(oresp_write_sse(sse, n, &r, "resp_x", 9), n);
    sse[n] = '\0';
    for (p = sse; (p = strstr(p, "\ndata: ")) != NULL; p++, k++) {
        const char *end = strstr(p, "\n\n");
        cJSON *ev = cJSON_ParseWithLength(p + 7, (size_t)(end - p - 7));
        assert_true(k < sizeof(want) / sizeof(want[0]));
        assert_string_equal(cJSON_GetObjectItem(ev, "type")->valuestring, want[k]);
        assert_int_equal(cJSON_GetObjectItem(ev, "sequence_number")->valueint, (int)k);
        if (k == 4)
            assert_string_equal(cJSON_GetObjectItem(ev, "delta")->valuestring, "thought");
        if (k == 15)
            assert_string_equal(cJSON_GetObjectItem(ev, "delta")->valuestring, "{\"a\":1}");
        if (k == 0)
            assert_string_equal(
                cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "response"), "status")->valuestring,
                "in_progress");
        cJSON_Delete(ev);
    }
    assert_int_equal(k, sizeof(want) / sizeof(want[0]));
    free(sse);
    cmpl_rendered_fini(&r);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyed),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
