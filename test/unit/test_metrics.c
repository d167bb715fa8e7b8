/* Unit tests for proxy/metrics.c: routes, prices, quantiles, top misses and
 * the Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum metrics_route route(const char *path, const char *method)
{
    return metrics_route_of(path, strlen(path), method);
}

static void test_routes(void **state)
{
    (void)state;
    assert_int_equal(route("/v1/chat/completions", "POST"), MR_CHAT);
    assert_int_equal(route("/v1/chat/completions", "GET"), MR_V1);
    assert_int_equal(route("/v1/models", "GET"), MR_V1);
    assert_int_equal(route("/v1", "GET"), MR_V1);
    assert_int_equal(route("/v10", "GET"), MR_OTHER);
    assert_int_equal(route("/healthz", "GET"), MR_HEALTH);
    assert_int_equal(route("/readyz", "GET"), MR_HEALTH);
    assert_int_equal(route("/metrics", "GET"), MR_METRICS);
    assert_int_equal(route("/dashboard", "GET"), MR_DASHBOARD);
    assert_int_equal(route("/dashboard/stats.json", "GET"), MR_DASHBOARD);
    assert_int_equal(route("/dashboardx", "GET"), MR_OTHER);
    assert_int_equal(route("/admin/stats", "GET"), MR_ADMIN);
    assert_int_equal(route("/", "GET"), MR_OTHER);
}

static void test_prices(void **state)
{
    struct metrics *m;

    (void)state;
    assert_int_equal(metrics_new("gpt-4o=2.5/10,gpt-4o-mini=0.15/0.6", &m), 0);
    /* 1000 prompt tokens at $2.5/M + 100 completion at $10/M = $0.0035. */
    assert_int_equal(metrics_price(m, "gpt-4o", 1000, 100), 3500000000ULL);
    /* A dated snapshot takes its family's price; another family does not. */
    assert_int_equal(metrics_price(m, "gpt-4o-2024-08-06", 1000, 100), 3500000000ULL);
    assert_int_equal(metrics_price(m, "gpt-4o-mini-2024-07-18", 1000000, 0), 150000000000ULL);
    assert_int_equal(metrics_price(m, "gpt-4o-realtime", 1000, 100), 0);
    assert_int_equal(metrics_price(m, "gpt-4", 1000, 100), 0);
    assert_int_equal(metrics_price(m, "gpt-4o", -5, 0), 0);
    /* Saturates instead of wrapping. */
    assert_int_equal(metrics_price(m, "gpt-4o", INT64_MAX, INT64_MAX), UINT64_MAX);
    metrics_free(m);

    assert_int_equal(metrics_new("not a table", &m), -EINVAL);
    assert_int_equal(metrics_new(NULL, &m), 0);
    assert_int_equal(metrics_price(m, "gpt-4o", 1000, 100), 0);
    metrics_free(m);
    metrics_free(NULL);
}

static void test_quantiles(void **state)
{
    struct metrics *m;

    (void)state;
    assert_int_equal(metrics_new(NULL, &m), 0);
    assert_true(metrics_quantile(m, MH_HIT, 0.5) < 0);
    /* 100 observations in (0.001, 0.0025]: the median interpolates to the
     * middle of that bucket, as histogram_quantile() would. */
    for (int i = 0; i < 100; i++)
        metrics_observe(m, MH_HIT, 0.002);
    assert_true(fabs(metrics_quantile(m, MH_HIT, 0.5) - 0.00175) < 1e-9);
    /* One slow outlier in (1, 2.5] moves p99.9 there, not p50. */
    metrics_observe(m, MH_HIT, 2.0);
    assert_true(metrics_quantile(m, MH_HIT, 0.5) < 0.0025);
    assert_true(metrics_quantile(m, MH_HIT, 0.999) > 1.0);
    /* Beyond the last bound: the largest finite bound is reported. */
    metrics_observe(m, MH_UPSTREAM, 1000);
    assert_true(fabs(metrics_quantile(m, MH_UPSTREAM, 0.5) - 120) < 1e-9);
    /* Negative or NaN durations land in the first bucket. */
    metrics_observe(m, MH_MISS, -1);
    metrics_observe(m, MH_MISS, NAN);
    assert_true(metrics_quantile(m, MH_MISS, 1) <= 0.0001);
    metrics_free(m);
}

/* The value of the sample line starting with `series ` in text, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void test_render(void **state)
{
    struct metrics *m;
    struct buf b = {0};

    (void)state;
    assert_int_equal(metrics_new("gpt-fake=1/2", &m), 0);
    metrics_request(m, MR_CHAT, 200);
    metrics_request(m, MR_CHAT, 200);
    metrics_request(m, MR_V1, 502);
    metrics_request(m, MR_CHAT, 0); /* client gone before an answer */
    metrics_observe(m, MH_HIT, 0.00005);
    metrics_observe(m, MH_HIT, 0.003);
    metrics_observe(m, MH_FIRST_BYTE, 0.2);
    metrics_saved(m, "gpt-fake", 1000000, 500000);
    metrics_saved(m, "unpriced", 7, 3);
    metrics_overhead(m, MR_CHAT, MC_MISS, 0.00003);
    metrics_overhead(m, MR_CHAT, MC_MISS, 0.0002);
    metrics_overhead(m, MR_CHAT, MC_MISS, 5); /* beyond the last bound */
    metrics_overhead(m, MR_HEALTH, MC_NONE, -1);
    assert_int_equal(metrics_render(m, &b), 0);
    assert_non_null(strstr(b.p, "# TYPE parrot_http_requests_total counter\n"));
    assert_true(sample(b.p, "parrot_http_requests_total{route=\"chat\",code=\"200\"}") == 2);
    assert_true(sample(b.p, "parrot_http_requests_total{route=\"v1\",code=\"502\"}") == 1);
    assert_true(sample(b.p, "parrot_http_requests_total{route=\"chat\",code=\"499\"}") == 1);
    assert_true(sample(b.p, "parrot_http_requests_total{route=\"metrics\",code=\"200\"}") < 0);
    /* Buckets are cumulative and end in +Inf == _count. */
    assert_true(
        sample(b.p, "parrot_chat_request_duration_seconds_bucket{cache=\"hit\",le=\"0.0001\"}") ==
        1);
    assert_true(
        sample(b.p, "parrot_chat_request_duration_seconds_bucket{cache=\"hit\",le=\"0.0025\"}") ==
        1);
    assert_true(
        sample(b.p, "parrot_chat_request_duration_seconds_bucket{cache=\"hit\",le=\"0.005\"}") ==
        2);
    assert_true(
        sample(b.p, "parrot_chat_request_duration_seconds_bucket{cache=\"hit\",le=\"+Inf\"}") == 2);
    assert_true(sample(b.p, "parrot_chat_request_duration_seconds_count{cache=\"hit\"}") == 2);
    assert_true(fabs(sample(b.p, "parrot_chat_request_duration_seconds_sum{cache=\"hit\"}") -
                     0.00305) < 1e-6);
    assert_true(sample(b.p, "parrot_chat_request_duration_seconds_count{cache=\"miss\"}") == 0);
    assert_true(sample(b.p, "parrot_upstream_first_byte_seconds_bucket{le=\"0.25\"}") == 1);
    assert_true(sample(b.p, "parrot_upstream_first_byte_seconds_count") == 1);
    /* The overhead has finer buckets of its own, from 25 µs, and shows
     * only the route and outcome pairs that happened. */
    assert_non_null(strstr(b.p, "# TYPE parrot_overhead_seconds histogram\n"));
    assert_true(sample(b.p, "parrot_overhead_seconds_bucket{route=\"chat\",cache=\"miss\","
                            "le=\"2.5e-05\"}") == 0);
    assert_true(sample(b.p, "parrot_overhead_seconds_bucket{route=\"chat\",cache=\"miss\","
                            "le=\"5e-05\"}") == 1);
    assert_true(sample(b.p, "parrot_overhead_seconds_bucket{route=\"chat\",cache=\"miss\","
                            "le=\"0.00025\"}") == 2);
    assert_true(
        sample(b.p, "parrot_overhead_seconds_bucket{route=\"chat\",cache=\"miss\",le=\"1\"}") == 2);
    assert_true(sample(b.p, "parrot_overhead_seconds_bucket{route=\"chat\",cache=\"miss\","
                            "le=\"+Inf\"}") == 3);
    assert_true(fabs(sample(b.p, "parrot_overhead_seconds_sum{route=\"chat\",cache=\"miss\"}") -
                     5.00023) < 1e-6);
    assert_true(sample(b.p, "parrot_overhead_seconds_count{route=\"health\",cache=\"none\"}") == 1);
    assert_true(sample(b.p, "parrot_overhead_seconds_bucket{route=\"health\",cache=\"none\","
                            "le=\"2.5e-05\"}") == 1);
    assert_true(sample(b.p, "parrot_overhead_seconds_count{route=\"chat\",cache=\"hit\"}") < 0);
    assert_true(sample(b.p, "parrot_tokens_saved_total{kind=\"prompt\"}") == 1000007);
    assert_true(sample(b.p, "parrot_tokens_saved_total{kind=\"completion\"}") == 500003);
    /* $1 for the prompt tokens + $1 for the completion; the unpriced
     * model's tokens count but cost nothing. */
    assert_true(fabs(sample(b.p, "parrot_cost_saved_usd_total") - 2.0) < 1e-9);
    buf_free(&b);
    metrics_free(m);
}

static void test_top_misses(void **state)
{
    struct metrics *m;
    uint8_t hot[32], other[32];
    cJSON *o = cJSON_CreateObject(), *top;

    (void)state;
    assert_int_equal(metrics_new(NULL, &m), 0);
    memset(hot, 0xab, sizeof(hot));
    for (int i = 0; i < 50; i++)
        metrics_miss(m, hot, "gpt-hot");
    /* Far more distinct one-off partitions than there are slots. */
    for (int i = 0; i < 1000; i++) {
        memset(other, 0, sizeof(other));
        memcpy(other, &i, sizeof(i));
        metrics_miss(m, other, "gpt-cold");
    }
    metrics_miss(m, hot, "gpt-other"); /* same partition hash, another model */
    assert_int_equal(metrics_json(m, o), 0);
    top = cJSON_GetObjectItem(o, "top_misses");
    assert_true(cJSON_IsArray(top));
    assert_true(cJSON_GetArraySize(top) == 10);
    /* The frequent partition survives the stream of one-offs, first. */
    cJSON *first = cJSON_GetArrayItem(top, 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(first, "partition")),
                        "abababababababab");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(first, "model")), "gpt-hot");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(first, "count")) >= 50);
    for (int i = 1; i < cJSON_GetArraySize(top); i++)
        assert_true(
            cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(top, i - 1), "count")) >=
            cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(top, i), "count")));
    cJSON_Delete(o);
    metrics_free(m);
}

static void *hammer(void *arg)
{
    struct metrics *m = arg;

    for (int i = 0; i < 100000; i++) {
        metrics_observe(m, MH_MISS, 0.01);
        metrics_request(m, MR_CHAT, 200);
    }
    return NULL;
}

/* No lock, yet no lost update: the counters are atomics. */
static void test_concurrent(void **state)
{
    struct metrics *m;
    pthread_t t[4];
    struct buf b = {0};

    (void)state;
    assert_int_equal(metrics_new(NULL, &m), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(metrics_render(m, &b), 0);
    assert_true(sample(b.p, "parrot_chat_request_duration_seconds_count{cache=\"miss\"}") ==
                400000);
    assert_true(sample(b.p, "parrot_http_requests_total{route=\"chat\",code=\"200\"}") == 400000);
    buf_free(&b);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),     cmocka_unit_test(test_prices),
        cmocka_unit_test(test_quantiles),  cmocka_unit_test(test_render),
        cmocka_unit_test(test_top_misses), cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
