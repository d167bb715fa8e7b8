/* Unit tests for proxy/oai.c and proxy/headers.c: error shapes, chat
 * request validation, header filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/headers.h"
#include "proxy/openai/oai.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *JSON = "application/json";

static void check_error(const char *ctype, const char *body, int status, const char *param,
                        const char *code)
{
    struct oai_error e;

    assert_int_equal(oai_chat_parse(ctype, body, strlen(body), NULL, &e), -1);
    assert_int_equal(e.status, status);
    if (param)
        assert_string_equal(e.param, param);
    else
        assert_null(e.param);
    assert_string_equal(e.code, code);
    assert_true(strlen(e.message) > 0);
}

static void test_chat_validation(void **state)
{
    (void)state;
    check_error(JSON, "", 400, NULL, "invalid_json");
    check_error(JSON, "{\"model\":", 400, NULL, "invalid_json");
    check_error(JSON, "[1,2]", 400, NULL, "invalid_json");
    check_error(JSON, "{\"messages\":[{}]}", 400, "model", "missing_required_parameter");
    check_error(JSON, "{\"model\":5,\"messages\":[{}]}", 400, "model", "invalid_type");
    check_error(JSON, "{\"model\":\"\",\"messages\":[{}]}", 400, "model", "invalid_type");
    check_error(JSON, "{\"model\":\"m\"}", 400, "messages", "missing_required_parameter");
    check_error(JSON, "{\"model\":\"m\",\"messages\":[]}", 400, "messages", "invalid_type");
    check_error(JSON, "{\"model\":\"m\",\"messages\":{}}", 400, "messages", "invalid_type");
    check_error("text/plain", "{}", 415, NULL, "unsupported_media_type");
    check_error(NULL, "{}", 415, NULL, "unsupported_media_type");
    check_error("application/jsonx", "{}", 415, NULL, "unsupported_media_type");
}

static void test_chat_ok(void **state)
{
    struct oai_error e;
    cJSON *doc = NULL;
    const char *b = "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

    (void)state;
    assert_int_equal(oai_chat_parse("application/json; charset=utf-8", b, strlen(b), &doc, &e), 0);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "model")->valuestring, "gpt");
    cJSON_Delete(doc);
    /* The length bounds the parse: trailing garbage past it is not read. */
    assert_int_equal(oai_chat_parse("Application/JSON", b, strlen(b), NULL, &e), 0);
}

/* A raw control byte inside a string is refused wherever it is (cJSON would
 * end the string at a NUL, and the key would miss what the provider reads);
 * JSON's blanks between values are fine. */
#define BAD(lit) oai_json_scan(lit, sizeof(lit) - 1, NULL)

static void test_chat_raw_control_bytes(void **state)
{
    static const char pre[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a";
    static const char post[] = "b\"}]}";
    char body[128];
    struct oai_error e;

    (void)state;
    for (unsigned c = 0; c < 0x20; c++) {
        size_t n = 0;
        memcpy(body, pre, sizeof(pre) - 1);
        n += sizeof(pre) - 1;
        body[n++] = (char)c;
        memcpy(body + n, post, sizeof(post) - 1);
        n += sizeof(post) - 1;
        assert_int_equal(oai_chat_parse(JSON, body, n, NULL, &e), -1);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.type, "invalid_request_error");
        assert_string_equal(e.code, "invalid_json");
        assert_non_null(strstr(e.message, "raw control character"));
        assert_int_equal(oai_json_scan(body, n, NULL), (long)sizeof(pre) - 1);
    }
    /* After an escape, in a key, and between values other than tab/LF/CR. */
    assert_int_equal(BAD("{\"a\\\n\":1}"), 4);
    assert_int_equal(BAD("{\"a\n\":1}"), 3);
    assert_int_equal(BAD("{\"a\":\x01 1}"), 5);
    assert_int_equal(BAD("{\"a\":\"\\\"\x00\"}"), 8);
    /* Fine: blanks between values, escapes, an escaped quote, bytes >= 0x20. */
    assert_int_equal(BAD("{\r\n\t\"a\\\"\\n\\u0001\" : \"\xc3\xa9\"\n}"), -1);
    assert_int_equal(BAD(""), -1);
    /* The length bounds the scan. */
    assert_int_equal(oai_json_scan("{}\0", 2, NULL), -1);
}

/* The parse budget: a dense array is refused before cJSON allocates it;
 * an ordinary request is far under it, and the count is an upper bound. */
static void test_chat_value_budget(void **state)
{
    static const char head[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                               "\"content\":\"a, [b] {c}\"}],\"x\":[";
    size_t n = OAI_JSON_VALUES_MAX + 8, len = sizeof(head) - 1 + 2 * n + 2, values = 0;
    char *body = malloc(len);
    struct oai_error e;

    (void)state;
    assert_non_null(body);
    memcpy(body, head, sizeof(head) - 1);
    for (size_t i = 0; i < n; i++)
        memcpy(body + sizeof(head) - 1 + 2 * i, i + 1 < n ? "0," : "0]", 2);
    body[len - 2] = '}';
    body[len - 1] = '}';
    assert_int_equal(oai_chat_parse(JSON, body, len - 1, NULL, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "invalid_json");
    assert_non_null(strstr(e.message, "JSON values"));
    /* Within the budget the same shape parses. */
    memcpy(body + sizeof(head) - 1 + 2 * 999, "0]}", 3);
    assert_int_equal(oai_chat_parse(JSON, body, sizeof(head) - 1 + 2 * 1000 + 1, NULL, &e), 0);
    /* Strings' commas and brackets are not counted; the count bounds from above. */
    assert_int_equal(oai_json_scan(head, sizeof(head) - 1, &values), -1);
    assert_true(values >= 7 && values <= 16); /* 7 values, 16 counted */
    free(body);
}

static void test_error_json_shape(void **state)
{
    struct oai_error e;
    size_t len = 0;
    char *s;
    cJSON *doc, *err;

    (void)state;
    oai_error_set(&e, 404, "invalid_request_error", NULL, "unknown_url", "Invalid URL (%s \"%s\")",
                  "GET", "/x\n");
    s = oai_error_json(&e, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    doc = cJSON_Parse(s);
    assert_non_null(doc);
    err = cJSON_GetObjectItem(doc, "error");
    assert_string_equal(cJSON_GetObjectItem(err, "message")->valuestring,
                        "Invalid URL (GET \"/x\n\")");
    assert_string_equal(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    assert_string_equal(cJSON_GetObjectItem(err, "code")->valuestring, "unknown_url");
    cJSON_Delete(doc);
    free(s);
}

static void test_header_filters(void **state)
{
    (void)state;
    assert_true(hdr_is_hop_by_hop("Connection", 10));
    assert_true(hdr_is_hop_by_hop("TRANSFER-ENCODING", 17));
    assert_false(hdr_is_hop_by_hop("Content-Type", 12));
    assert_true(hdr_to_upstream("Authorization", 13));
    assert_true(hdr_to_upstream("OpenAI-Organization", 19));
    assert_false(hdr_to_upstream("Host", 4));
    assert_false(hdr_to_upstream("Accept-Encoding", 15));
    assert_false(hdr_to_upstream("keep-alive", 10));
    assert_true(hdr_to_client("x-ratelimit-remaining-requests", 30));
    assert_false(hdr_to_client("content-length", 14));
    assert_false(hdr_to_client("X-Request-Id", 12));
    /* Length, not the NUL, delimits the name. */
    assert_false(hdr_to_upstream("Hostile", 4));
    assert_true(hdr_to_upstream("Hostile", 7));
}

static void test_cache_control(void **state)
{
    struct hdr_cache_control cc;

    (void)state;
    hdr_parse_cache_control(NULL, &cc);
    assert_false(cc.no_cache || cc.no_store || cc.only_if_cached);
    assert_int_equal(cc.max_age, -1);
    hdr_parse_cache_control("No-Cache, no-store", &cc);
    assert_true(cc.no_cache && cc.no_store && !cc.only_if_cached);
    hdr_parse_cache_control("max-age=60, only-if-cached", &cc);
    assert_true(cc.only_if_cached);
    assert_int_equal(cc.max_age, 60);
    hdr_parse_cache_control("max-age=\"30\",max-age=90,private", &cc);
    assert_int_equal(cc.max_age, 30);
    hdr_parse_cache_control("max-age=abc, no-cachex, x=no-store", &cc);
    assert_int_equal(cc.max_age, -1);
    assert_false(cc.no_cache || cc.no_store);
}

/* The header numbers read as printf writes them: decimal and hex edges,
 * and fixed-point values at every precision, both signs, an exact tie
 * (123456789.125, to even) among them. The formatter rounds the scaled
 * product, printf the binary value: a value within a rounding error of a
 * tie may differ in its last digit, which a timing header can bear. */
static void test_header_numbers(void **state)
{
    static const uint64_t ints[] = {0, 1, 9, 10, 99, 1000, 4294967296ULL, UINT64_MAX};
    static const double fixed[] = {0,      0.1234,  0.99996, 1.5,        12.0004,
                                   0.8731, 999.999, 3600000, 0.00049999, 123456789.125};
    char got[HDR_NUM_MAX], want[64];

    (void)state;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        snprintf(want, sizeof(want), "%" PRIu64, ints[i]);
        assert_int_equal(hdr_fmt_u64(got, ints[i]), strlen(want));
        assert_string_equal(got, want);
        snprintf(want, sizeof(want), "%016" PRIx64, ints[i]);
        assert_int_equal(hdr_fmt_hex(got, ints[i]), 16);
        assert_string_equal(got, want);
    }
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        for (int places = 0; places <= 6; places++) {
            for (int sign = 1; sign >= -1; sign -= 2) {
                double v = sign * fixed[i];
                snprintf(want, sizeof(want), "%.*f", places, v);
                assert_int_equal(hdr_fmt_fixed(got, v, places), strlen(want));
                assert_string_equal(got, want);
            }
        }
    }
}

/* A legacy completion's one prompt is keyed as a chat question. */
static void test_prompt_as_chat(void **state)
{
    static const char *const none[] = {
        "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}",
        "{\"model\":\"m\"}",
        "{\"model\":\"m\",\"prompt\":\"\"}",
        "{\"model\":\"m\",\"prompt\":\"a\",\"messages\":[]}",
    };
    cJSON *req = cJSON_Parse("{\"model\":\"m\",\"prompt\":[\"hi there\"],\"n\":2}");
    cJSON *k = oai_prompt_as_chat(req);
    char *s;

    (void)state;
    assert_non_null(k);
    s = cJSON_PrintUnformatted(k);
    assert_string_equal(s, "{\"model\":\"m\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"hi there\"}]}");
    free(s);
    cJSON_Delete(k);
    cJSON_Delete(req);
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        req = cJSON_Parse(none[i]);
        assert_null(oai_prompt_as_chat(req));
        cJSON_Delete(req);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_as_chat),    cmocka_unit_test(test_chat_validation),
        cmocka_unit_test(test_chat_ok),           cmocka_unit_test(test_error_json_shape),
        cmocka_unit_test(test_header_filters),    cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_header_numbers),    cmocka_unit_test(test_chat_raw_control_bytes),
        cmocka_unit_test(test_chat_value_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
