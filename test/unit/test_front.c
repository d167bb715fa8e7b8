/* test_front.c - the front door's target normaliser and header checks. */
#include "proxy/front.h"
#include "proxy/headers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static const char *norm(const char *in, size_t *plen)
{
    static char out[FRONT_TARGET_MAX + 1];
    const char *why = NULL;

    if (front_target(in, out, plen, &why) != 0) {
        assert_non_null(why);
        return NULL;
    }
    assert_null(why);
    return out;
}

static void test_target_normalised(void **state)
{
    static const struct {
        const char *in, *out;
        size_t plen;
    } ok[] = {
        {"/v1/models", "/v1/models", 10},
        {"/v1//chat///completions", "/v1/chat/completions", 20},
        {"/v1/chat/%63ompletions", "/v1/chat/completions", 20},
        {"/v1/files/a%3fb", "/v1/files/a%3Fb", 15},
        {"/v1/files/%7e~%2D", "/v1/files/~~-", 13},
        {"/v1/models?limit=2&after=a%2Fb", "/v1/models?limit=2&after=a%2Fb", 10},
        {"/v1/x?a=/b?c", "/v1/x?a=/b?c", 5},
        {"/", "/", 1},
        {"/v1/a.b/c..d/...", "/v1/a.b/c..d/...", 16},
        {"/v1/models/", "/v1/models/", 11},
    };
    size_t plen;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        const char *o = norm(ok[i].in, &plen);
        assert_non_null(o);
        assert_string_equal(o, ok[i].out);
        assert_int_equal(plen, ok[i].plen);
        /* Normalising twice changes nothing. */
        char again[FRONT_TARGET_MAX + 1];
        snprintf(again, sizeof(again), "%s", o);
        assert_string_equal(norm(again, &plen), ok[i].out);
    }
}

static void test_target_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "v1/models",
        "http://evil/v1/models",
        "*",
        "/v1/../admin",
        "/v1/..",
        "/v1/./models",
        "/./v1",
        "/v1/models/.",
        "/v1/%2e%2e/admin",
        "/v1/%2E./admin",
        "/v1/.%2e/admin",
        "/v1/a%2fb",
        "/v1/a%2Fb",
        "/v1/a%5cb",
        "/v1/a\\b",
        "/v1/a%00b",
        "/v1/a%0ab",
        "/v1/a%7fb",
        "/v1/a%",
        "/v1/a%4",
        "/v1/a%zz",
        "/v1/a b",
        "/v1/a\"b",
        "/v1/a<b>",
        "/v1/a#frag",
        "/v1/\xc3\xa9",
        "/v1/x?a=%00",
        "/v1/x?a b",
        "/v1/x?a=%0",
        "/v1/x?a#b",
        "/v1/x?a=\x01",
    };
    size_t plen;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (norm(bad[i], &plen))
            fail_msg("accepted: %s", bad[i]);
    }
}

static void test_target_length_bound(void **state)
{
    static char big[FRONT_TARGET_MAX + 16];
    size_t plen;

    (void)state;
    big[0] = '/';
    memset(big + 1, 'a', sizeof(big) - 2);
    big[sizeof(big) - 1] = '\0';
    assert_null(norm(big, &plen));
    big[FRONT_TARGET_MAX] = '\0';
    assert_non_null(norm(big, &plen));
}

static bool add(struct front_head *h, const char *name, const char *value)
{
    return front_head_add(h, name, strlen(name), value, strlen(value));
}

static void test_header_syntax(void **state)
{
    struct front_head h;

    (void)state;
    front_head_init(&h, NULL);
    assert_true(add(&h, "X-Fine", "a b\tc \x80\xff"));
    assert_false(add(&h, "X-Bad", "a\rContent-Length: 0"));
    assert_int_equal(h.status, 400);
    assert_string_equal(h.code, "invalid_header");
    front_head_init(&h, NULL);
    assert_false(add(&h, "X-Bad", "a\nb"));
    front_head_init(&h, NULL);
    assert_false(front_head_add(&h, "X-Bad", 5, "a\0b", 3));
    front_head_init(&h, NULL);
    assert_false(add(&h, "Transfer-Encoding ", "chunked"));
    front_head_init(&h, NULL);
    assert_false(add(&h, "X Y", "z"));
    front_head_init(&h, NULL);
    assert_false(add(&h, "X:Y", "z"));
    front_head_init(&h, NULL);
    assert_false(add(&h, "", "z"));
    front_head_init(&h, NULL);
    assert_false(add(&h, "X-Del", "a\x7f"));
}

static void test_framing(void **state)
{
    struct front_head h;

    (void)state;
#define HEAD(...)                                                                                  \
    do {                                                                                           \
        const char *kv[] = {__VA_ARGS__};                                                          \
        front_head_init(&h, "x-tenant");                                                           \
        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i += 2)                                 \
            assert_true(add(&h, kv[i], kv[i + 1]));                                                \
    } while (0)
    HEAD("Host", "a", "Content-Length", "12");
    assert_true(front_head_done(&h, true));
    HEAD("Host", "a", "Transfer-Encoding", " Chunked ");
    assert_true(front_head_done(&h, true));
    HEAD("Host", "a", "Content-Length", "3", "content-length", "3");
    assert_false(front_head_done(&h, true));
    assert_string_equal(h.code, "ambiguous_framing");
    HEAD("Host", "a", "Content-Length", "3", "Transfer-Encoding", "chunked");
    assert_false(front_head_done(&h, true));
    assert_string_equal(h.code, "ambiguous_framing");
    HEAD("Host", "a", "Content-Length", "-1");
    assert_false(front_head_done(&h, true));
    HEAD("Host", "a", "Content-Length", "99999999999999999999");
    assert_false(front_head_done(&h, true));
    HEAD("Host", "a", "Transfer-Encoding", "xchunked");
    assert_false(front_head_done(&h, true));
    assert_int_equal(h.status, 501);
    HEAD("Host", "a", "Transfer-Encoding", "chunked, identity");
    assert_false(front_head_done(&h, true));
    assert_int_equal(h.status, 501);
    HEAD("Host", "a", "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked");
    assert_false(front_head_done(&h, true));
    HEAD("Host", "a", "Host", "b");
    assert_false(front_head_done(&h, true));
    HEAD("X-A", "b");
    assert_false(front_head_done(&h, true));
    assert_true(front_head_done(&h, false)); /* HTTP/1.0 needs no Host */
    HEAD("Host", "a", "X-Tenant", "t", "x-tenant", "u");
    assert_false(front_head_done(&h, true));
    HEAD("Host", "a", "X-Tenant", "t");
    assert_true(front_head_done(&h, true));
    HEAD("Host", "a", "x-parrot-namespace", "a", "X-Parrot-Namespace", "a");
    assert_false(front_head_done(&h, true));
#undef HEAD
}

static void test_forwarding_filter(void **state)
{
    (void)state;
    assert_false(hdr_to_upstream("Proxy-Anything", 14));
    assert_false(hdr_to_upstream("proxy-", 6));
    assert_true(hdr_to_upstream("Proxyish", 8));
    assert_true(hdr_listed("keep-alive, X-Secret", "x-secret", 8));
    assert_true(hdr_listed(" close ,,\tX-A\t", "X-A", 3));
    assert_false(hdr_listed("close, X-Secrets", "x-secret", 8));
    assert_false(hdr_listed(NULL, "x", 1));
    assert_false(hdr_listed("", "x", 1));
    assert_false(hdr_to_upstream("X-Parrot-Namespace", 18));
}

static void test_namespace_syntax(void **state)
{
    char longest[FRONT_NAMESPACE_MAX + 2];

    (void)state;
    assert_true(front_namespace_ok("team-a.v2_test"));
    assert_false(front_namespace_ok(""));
    assert_false(front_namespace_ok("a b"));
    assert_false(front_namespace_ok("tenant:x")); /* ':' would blur the tenant prefix */
    assert_false(front_namespace_ok("a/b"));
    assert_false(front_namespace_ok("caf\xc3\xa9"));
    memset(longest, 'n', FRONT_NAMESPACE_MAX);
    longest[FRONT_NAMESPACE_MAX] = '\0';
    assert_true(front_namespace_ok(longest));
    longest[FRONT_NAMESPACE_MAX] = 'n';
    longest[FRONT_NAMESPACE_MAX + 1] = '\0';
    assert_false(front_namespace_ok(longest));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_normalised),
        cmocka_unit_test(test_target_refused),
        cmocka_unit_test(test_target_length_bound),
        cmocka_unit_test(test_header_syntax),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_forwarding_filter),
        cmocka_unit_test(test_namespace_syntax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
