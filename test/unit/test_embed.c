/* Unit tests for cache/embed.c: the built-in embedder's basic promises.
 * Its hit quality is measured by the evaluation harness, not here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/embed.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static struct embedder *e;

static int setup(void **state)
{
    (void)state;
    return embed_builtin_new(&e);
}

static int teardown(void **state)
{
    (void)state;
    embedder_free(e);
    return 0;
}

static float cosine(const char *a, const char *b)
{
    float va[1024], vb[1024], s = 0;
    unsigned d = embedder_dim(e);

    assert_true(d <= 1024);
    assert_int_equal(embedder_embed(e, a, strlen(a), va), 0);
    assert_int_equal(embedder_embed(e, b, strlen(b), vb), 0);
    for (unsigned i = 0; i < d; i++)
        s += va[i] * vb[i];
    return s;
}

static void test_identity(void **state)
{
    float v[1024], n = 0;

    (void)state;
    assert_string_equal(embedder_name(e), "builtin");
    assert_int_equal(embedder_embed(e, "Reset my password", 17, v), 0);
    for (unsigned i = 0; i < embedder_dim(e); i++)
        n += v[i] * v[i];
    assert_float_equal(n, 1.0f, 1e-4f);
    assert_float_equal(cosine("Reset my password", "Reset my password"), 1.0f, 1e-4f);
    /* Case and punctuation do not matter. */
    assert_float_equal(cosine("Reset my password!", "reset my PASSWORD"), 1.0f, 1e-4f);
}

static void test_nothing_to_embed(void **state)
{
    float v[1024];

    (void)state;
    assert_int_equal(embedder_embed(e, "?!  ...", 7, v), -EINVAL);
    assert_int_equal(embedder_embed(e, "", 0, v), -EINVAL);
}

/* Paraphrases sharing wording score above the threshold; other questions
 * below it. */
static void test_paraphrase_vs_unrelated(void **state)
{
    float t = embedder_threshold(e);

    (void)state;
    assert_true(cosine("How do I reset my password?", "how can I reset my password") > t);
    assert_true(cosine("What is the capital of France?", "what's the capital of france") > t);
    assert_true(cosine("How do I reset my password?", "How do I change my email address?") < t);
    assert_true(cosine("Write a poem about the sea", "What is the weather in Paris?") < t);
    assert_true(cosine("What is the capital of France?", "What is the capital of Germany?") < t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_nothing_to_embed),
        cmocka_unit_test(test_paraphrase_vs_unrelated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
