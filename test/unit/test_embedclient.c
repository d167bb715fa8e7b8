/* Unit tests for upstream/embedclient.c: parsing /v1/embeddings answers, and
 * a client whose endpoint cannot be reached failing open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "upstream/embedclient.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static int parse(const char *body, size_t n, unsigned *dim, float *out)
{
    return embed_parse_response(body, strlen(body), n, dim, out);
}

static void vectors_normalised_and_placed_by_index(void **state)
{
    /* Out of order on purpose: index says where each vector goes. */
    const char *body = "{\"object\":\"list\",\"data\":["
                       "{\"object\":\"embedding\",\"index\":1,\"embedding\":[0,3,4]},"
                       "{\"object\":\"embedding\",\"index\":0,\"embedding\":[2,0,0]}],"
                       "\"model\":\"m\",\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}";
    float out[6];
    unsigned dim = 3;

    (void)state;
    assert_int_equal(parse(body, 2, &dim, out), 0);
    assert_true(fabsf(out[0] - 1.0f) < 1e-6f && out[1] == 0 && out[2] == 0);
    assert_true(out[3] == 0 && fabsf(out[4] - 0.6f) < 1e-6f && fabsf(out[5] - 0.8f) < 1e-6f);
}

static void dimension_learnt_when_zero(void **state)
{
    const char *body = "{\"data\":[{\"embedding\":[1,2,3,4,5]}]}";
    unsigned dim = 0;

    (void)state;
    assert_int_equal(parse(body, 1, &dim, NULL), 0);
    assert_int_equal(dim, 5);
}

static void wrong_dimension_is_erange(void **state)
{
    const char *mixed = "{\"data\":[{\"index\":0,\"embedding\":[1,2,3]},"
                        "{\"index\":1,\"embedding\":[1,2]}]}";
    float out[8];
    unsigned dim = 4;

    (void)state;
    assert_int_equal(parse("{\"data\":[{\"embedding\":[1,2,3]}]}", 1, &dim, out), -ERANGE);
    dim = 0;
    assert_int_equal(parse(mixed, 2, &dim, NULL), -ERANGE);
}

static void malformed_answers_are_ebadmsg(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "{\"data\":[{\"embedding\":[1,2]}",                         /* cut short */
        "{\"error\":{\"message\":\"no\"}}",                         /* no data */
        "{\"data\":{}}",                                            /* not a list */
        "{\"data\":[]}",                                            /* too few */
        "{\"data\":[{\"embedding\":[1,2]},{\"embedding\":[1,2]}]}", /* too many */
        "{\"data\":[{\"embedding\":\"AAAAAA==\"}]}",                /* base64 */
        "{\"data\":[{\"embedding\":[1,\"2\"]}]}",                   /* a string */
        "{\"data\":[{\"embedding\":[0,0]}]}",                       /* zero vector */
        "{\"data\":[{\"embedding\":[]}]}",                          /* empty */
        "{\"data\":[{\"index\":1,\"embedding\":[1,2]}]}",           /* index out of range */
        "{\"data\":[{\"index\":-1,\"embedding\":[1,2]}]}",          /* negative index */
        "{\"data\":[{\"index\":0.5,\"embedding\":[1,2]}]}",         /* fractional index */
        "{\"data\":[{\"index\":\"0\",\"embedding\":[1,2]}]}",       /* index not a number */
        "{\"data\":[{\"index\":0,\"embedding\":[1,2]},{\"index\":0,\"embedding\":[3,4]}]}",
    };
    float out[8];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned dim = 2;
        size_t n = i == 15 ? 2 : 1; /* two vectors for one text: duplicate index */
        int rc = parse(bad[i], n, &dim, out);
        if (rc != -EBADMSG)
            fail_msg("answer %zu (%s): %d, want -EBADMSG", i, bad[i], rc);
    }
}

static void unreachable_endpoint_fails_open_then_breaker(void **state)
{
    /* Port 1 on loopback refuses connections at once. */
    struct embed_client_opts o = {.url = "http://127.0.0.1:1/v1",
                                  .model = "m",
                                  .timeout_ms = 2000,
                                  .dim = 4,
                                  .batch = 8,
                                  .breaker_failures = 1,
                                  .breaker_cooldown_ms = 60000};
    struct embed_client *c;
    struct embed_client_stats st;
    const char *texts[] = {"one", "two"};
    enum embed_result res[2];
    float out[8];

    (void)state;
    assert_int_equal(embed_client_new(&o, &c), 0);
    assert_int_equal(embed_client_dim(c), 4);
    assert_int_equal(embed_client_embed_wait(c, texts, 1, out, res), 0);
    assert_int_equal(res[0], EMBED_UNREACHABLE);
    /* One failed call opened the breaker: nothing more is sent. */
    assert_int_equal(embed_client_embed_wait(c, texts, 2, out, res), 0);
    assert_int_equal(res[0], EMBED_BREAKER_OPEN);
    assert_int_equal(res[1], EMBED_BREAKER_OPEN);
    embed_client_stats(c, &st);
    assert_int_equal(st.calls, 1);
    assert_int_equal(st.texts[EMBED_UNREACHABLE], 1);
    assert_int_equal(st.texts[EMBED_BREAKER_OPEN], 2);
    assert_int_equal(st.breaker, 2);
    embed_client_free(c);
    embed_client_free(NULL);
}

static void bad_options_refused(void **state)
{
    struct embed_client_opts o = {.url = "http://127.0.0.1:1/v1", .model = "m", .timeout_ms = 1000};
    struct embed_client *c = NULL;

    (void)state;
    assert_int_equal(embed_client_new(&o, &c), -EINVAL); /* batch 0 */
    o.batch = 1;
    o.dim = EMBED_DIM_MAX + 1;
    assert_int_equal(embed_client_new(&o, &c), -EINVAL);
    assert_null(c);
    assert_string_equal(embed_result_name(EMBED_BAD_DIM), "bad_dimension");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vectors_normalised_and_placed_by_index),
        cmocka_unit_test(dimension_learnt_when_zero),
        cmocka_unit_test(wrong_dimension_is_erange),
        cmocka_unit_test(malformed_answers_are_ebadmsg),
        cmocka_unit_test(unreachable_endpoint_fails_open_then_breaker),
        cmocka_unit_test(bad_options_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
