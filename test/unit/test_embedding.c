/* Unit tests for proxy/openai/embedding.c and the embedding kind of the
 * stored codec: request items, the provider request for some of them, the
 * provider's answer as stored vectors, and the answers assembled from
 * them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/base/buf.h"
#include "cache/cache.h"
#include "proxy/openai/canon.h"
#include "proxy/openai/embedding.h"
#include "proxy/openai/stored.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *JSON = "application/json";

static int parse(const char *body, struct oemb_req *r, struct oai_error *e)
{
    return oemb_parse(JSON, body, strlen(body), r, e);
}

static void test_items(void **state)
{
    struct oemb_req r;
    struct oai_error e;

    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"one\"}", &r, &e), 0);
    assert_int_equal(r.n, 1);
    assert_false(r.base64);
    oemb_req_fini(&r);
    /* One token array is one input; an array of them is several. */
    assert_int_equal(parse("{\"model\":\"m\",\"input\":[1,2,3]}", &r, &e), 0);
    assert_int_equal(r.n, 1);
    oemb_req_fini(&r);
    assert_int_equal(
        parse("{\"model\":\"m\",\"input\":[[1],[2,3]],\"encoding_format\":\"base64\"}", &r, &e), 0);
    assert_int_equal(r.n, 2);
    assert_true(r.base64);
    oemb_req_fini(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"input\":[\"a\",\"b\",\"c\"]}", &r, &e), 0);
    assert_int_equal(r.n, 3);
    oemb_req_fini(&r);

    static const char *const bad[] = {
        "{\"model\":\"m\"}",
        "{\"model\":\"m\",\"input\":\"\"}",
        "{\"model\":\"m\",\"input\":[]}",
        "{\"model\":\"m\",\"input\":[\"a\",[1]]}",
        "{\"model\":\"m\",\"input\":[-1]}",
        "{\"model\":\"m\",\"input\":[1.5]}",
        "{\"model\":\"m\",\"input\":[[]]}",
        "{\"model\":\"m\",\"input\":{\"a\":1}}",
        "{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"int8\"}",
        "{\"input\":\"a\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &r, &e), -1);
        assert_int_equal(e.status, 400);
        assert_null(r.doc);
    }
}

static void test_too_many_items(void **state)
{
    struct buf b = {0};
    struct oemb_req r;
    struct oai_error e;

    (void)state;
    assert_int_equal(buf_puts(&b, "{\"model\":\"m\",\"input\":[\"x\"", 1 << 20), 0);
    for (int i = 1; i <= OEMB_MAX_ITEMS; i++)
        assert_int_equal(buf_puts(&b, ",\"x\"", 1 << 20), 0);
    assert_int_equal(buf_puts(&b, "]}", 1 << 20), 0);
    assert_int_equal(oemb_parse(JSON, b.p, b.len, &r, &e), -1);
    assert_string_equal(e.param, "input");
    buf_free(&b);
}

static void test_keys(void **state)
{
    struct oemb_req a, b;
    struct oai_error e;
    uint8_t p[CANON_HASH_LEN] = {1}, k1[CANON_HASH_LEN], k2[CANON_HASH_LEN], k3[CANON_HASH_LEN];
    cJSON *ra, *rb;
    char *fa = NULL, *fb = NULL;
    size_t la = 0, lb = 0, ca = 0, cb = 0;

    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":[\"a\",\"[1]\"]}", &a, &e), 0);
    assert_int_equal(
        parse("{\"encoding_format\":\"base64\",\"input\":[[1]],\"model\":\"m\"}", &b, &e), 0);
    /* The items and the encoding are not in the partition. */
    ra = oemb_without_items(&a);
    rb = oemb_without_items(&b);
    assert_int_equal(canon_json(ra, &fa, &la, &ca, 1024), 0);
    assert_int_equal(canon_json(rb, &fb, &lb, &cb, 1024), 0);
    assert_string_equal(fa, fb);
    /* A string and a token array with the same characters differ. */
    assert_int_equal(canon_item_key(p, a.items[1], k1), 0);
    assert_int_equal(canon_item_key(p, b.items[0], k2), 0);
    assert_memory_not_equal(k1, k2, CANON_HASH_LEN);
    p[0] = 2;
    assert_int_equal(canon_item_key(p, b.items[0], k3), 0);
    assert_memory_not_equal(k2, k3, CANON_HASH_LEN);
    free(fa);
    free(fb);
    cJSON_Delete(ra);
    cJSON_Delete(rb);
    oemb_req_fini(&a);
    oemb_req_fini(&b);
}

static void test_subrequest(void **state)
{
    struct oemb_req r;
    struct oai_error e;
    size_t idx[] = {2, 0}, len = 0;
    char *s;

    (void)state;
    assert_int_equal(
        parse("{\"model\":\"m\",\"input\":[\"a\",\"b\",\"c\"],\"dimensions\":4,\"user\":\"u\"}", &r,
              &e),
        0);
    s = oemb_subrequest(&r, idx, 2, &len);
    assert_non_null(s);
    assert_string_equal(
        s, "{\"model\":\"m\",\"input\":[\"c\",\"a\"],\"dimensions\":4,\"user\":\"u\"}");
    assert_int_equal(len, strlen(s));
    free(s);
    oemb_req_fini(&r);
}

static void free_all(struct cmpl_rendered **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cmpl_rendered_fini(v[i]);
        free(v[i]);
    }
}

static void test_answer_and_render(void **state)
{
    /* 0.1f printed as the double it is, and 1.5f as base64 (0x3fc00000). */
    static const char answer[] =
        "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":1,\"embedding\":"
        "\"AADAPwAAAAA=\"},{\"object\":\"embedding\",\"index\":0,\"embedding\":[0."
        "10000000149011612,-2]}],\"model\":\"m-1\",\"usage\":{\"prompt_tokens\":7,\"total_"
        "tokens\":7}}";
    struct oemb_req r;
    struct oai_error e;
    struct cmpl_rendered *v[2];
    const struct cmpl_rendered *in[2];
    size_t idx[] = {0, 1}, len = 0;
    int64_t tokens = 0;
    const char *why = NULL;
    char *out;

    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":[\"abc\",\"defg\"]}", &r, &e), 0);
    assert_int_equal(oemb_answer(&r, idx, 2, answer, strlen(answer), v, &tokens, &why), 0);
    assert_int_equal(tokens, 7);
    assert_int_equal(v[0]->prompt_tokens + v[1]->prompt_tokens, 7);
    assert_int_equal(v[0]->kind, CMPL_EMBEDDING);
    assert_int_equal(v[0]->body_len, 8);
    assert_string_equal(v[1]->model, "m-1");
    in[0] = v[0];
    in[1] = v[1];
    out = oemb_render(&r, in, "m-1", 7, &len);
    assert_string_equal(out, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                             "\"embedding\":[0.10000000149011612,-2]},{\"object\":\"embedding\","
                             "\"index\":1,\"embedding\":[1.5,0]}],\"model\":\"m-1\",\"usage\":{"
                             "\"prompt_tokens\":7,\"total_tokens\":7}}");
    free(out);
    r.base64 = true;
    out = oemb_render(&r, in, "m-1", 0, &len);
    assert_non_null(strstr(out, "\"embedding\":\"AADAPwAAAAA=\""));
    assert_non_null(strstr(out, "\"usage\":{\"prompt_tokens\":0,\"total_tokens\":0}"));
    free(out);
    free_all(v, 2);

    /* What is not one vector per input of one dimension is not stored. */
    static const char *const bad[] = {
        "{\"data\":[{\"index\":0,\"embedding\":[1]}]}",
        "{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":0,\"embedding\":[2]}]}",
        "{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":1,\"embedding\":[2,3]}]}",
        "{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":2,\"embedding\":[2]}]}",
        "{\"data\":[{\"index\":0,\"embedding\":\"AAA\"},{\"index\":1,\"embedding\":[2]}]}",
        "{\"data\":[{\"index\":0,\"embedding\":[\"x\"]},{\"index\":1,\"embedding\":[2]}]}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oemb_answer(&r, idx, 2, bad[i], strlen(bad[i]), v, &tokens, &why), -1);
    oemb_req_fini(&r);
}

static void test_stored_kind(void **state)
{
    struct oemb_req r;
    struct oai_error e;
    struct cmpl_rendered *v[1], *back = NULL;
    static const char answer[] = "{\"data\":[{\"index\":0,\"embedding\":[0.5,0.25]}],\"model\":"
                                 "\"m\",\"usage\":{\"prompt_tokens\":3}}";
    size_t idx[] = {0};
    uint64_t words[2];
    struct buf tail = {0};
    int64_t tokens;
    const char *why;

    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\"}", &r, &e), 0);
    assert_int_equal(oemb_answer(&r, idx, 1, answer, strlen(answer), v, &tokens, &why), 0);
    assert_int_equal(stored_codec.encode(v[0], words, &tail), 0);
    assert_int_equal(words[1] >> 56, CMPL_EMBEDDING);
    assert_int_equal(stored_codec.decode(words, tail.p, tail.len, (void **)&back), 0);
    assert_int_equal(back->kind, CMPL_EMBEDDING);
    assert_int_equal(back->prompt_tokens, 3);
    assert_int_equal(back->completion_tokens, 0);
    assert_memory_equal(back->body, v[0]->body, 8);
    assert_false(back->tool_calls);
    stored_codec.free(back);
    /* A kind this parrot does not know is not a payload. */
    words[1] = (uint64_t)CMPL_KINDS << 56;
    assert_int_equal(stored_codec.decode(words, tail.p, tail.len, (void **)&back), -EBADMSG);
    buf_free(&tail);
    free_all(v, 1);
    oemb_req_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_too_many_items),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_subrequest),
        cmocka_unit_test(test_answer_and_render),
        cmocka_unit_test(test_stored_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
