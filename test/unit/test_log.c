/* Unit tests for proxy/log.c: escaping and bounded records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/log.h"

#include <cjson/cJSON.h>
#include <string.h>

static void test_escape(void **state)
{
    char out[64];
    size_t n;

    (void)state;
    n = log_json_escape(out, sizeof(out), "a\"b\\c\n\x01", 7);
    assert_string_equal(out, "\"a\\\"b\\\\c\\n\\u0001\"");
    assert_int_equal(n, strlen(out));
    assert_int_equal(log_json_escape(out, 4, "abcdef", 6), 4); /* does not fit */
}

/* A record stays valid JSON however long its values are. */
static void test_record_bounded(void **state)
{
    struct log_rec r;
    char big[5000];
    cJSON *doc;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_begin(&r, LOG_INFO, "request");
    log_str(&r, "id", "req_1");
    log_int(&r, "status", 200);
    log_str(&r, "path", big);
    log_int(&r, "after", 1);
    /* log_end writes to stderr; check the buffer it would write. */
    assert_true(r.full);
    assert_true(r.len < LOG_REC_MAX);
    memcpy(r.buf + r.len, "}", 2);
    doc = cJSON_Parse(r.buf);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "msg")->valuestring, "request");
    assert_int_equal(cJSON_GetObjectItem(doc, "status")->valueint, 200);
    assert_null(cJSON_GetObjectItem(doc, "path"));
    cJSON_Delete(doc);
}

static void test_numbers(void **state)
{
    struct log_rec r;
    cJSON *doc;

    (void)state;
    log_begin(&r, LOG_INFO, "request");
    log_num(&r, "similarity", 0.98765);
    log_ms(&r, "ms", 1.23456);
    memcpy(r.buf + r.len, "}", 2);
    assert_non_null(strstr(r.buf, ",\"similarity\":0.9877,"));
    doc = cJSON_Parse(r.buf);
    assert_non_null(doc);
    assert_true(cJSON_GetObjectItem(doc, "ms")->valuedouble == 1.235);
    cJSON_Delete(doc);
}

static void test_levels(void **state)
{
    (void)state;
    log_set_level(LOG_WARN);
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_ERROR));
    log_set_level(LOG_INFO);
    assert_true(log_enabled(LOG_INFO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_record_bounded),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
