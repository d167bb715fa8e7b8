/* Unit tests for cache/embed.c: the built-in embedder's promises (unit
 * length, words as it sees them, what meets and what does not, threads).
 * Its hit quality on real paraphrases is measured by bench/eval.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/match/embed.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#define DIM_MAX 1024

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

static float cosine_with(const struct embedder *em, const char *a, const char *b)
{
    float va[DIM_MAX], vb[DIM_MAX], s = 0;
    unsigned d = embedder_dim(em);

    assert_true(d <= DIM_MAX);
    assert_int_equal(embedder_embed(em, a, strlen(a), va), 0);
    assert_int_equal(embedder_embed(em, b, strlen(b), vb), 0);
    for (unsigned i = 0; i < d; i++)
        s += va[i] * vb[i];
    return s;
}

static float cosine(const char *a, const char *b)
{
    return cosine_with(e, a, b);
}

static void test_identity(void **state)
{
    float v[DIM_MAX], n = 0;

    (void)state;
    assert_string_equal(embedder_name(e), "builtin");
    assert_int_equal(embedder_dim(e), 384);
    assert_true(embedder_threshold(e) > 0.5f && embedder_threshold(e) < 1.0f);
    assert_int_equal(embedder_embed(e, "Reset my password", 17, v), 0);
    for (unsigned i = 0; i < embedder_dim(e); i++)
        n += v[i] * v[i];
    assert_float_equal(n, 1.0f, 1e-4f);
    assert_float_equal(cosine("Reset my password", "Reset my password"), 1.0f, 1e-4f);
    /* Case and punctuation do not matter. */
    assert_float_equal(cosine("Reset my password!", "reset my PASSWORD"), 1.0f, 1e-4f);
}

/* A lookup splits its question once: embedding the words is embedding the
 * text, past the words the embedder reads too. */
static void test_embed_words(void **state)
{
    static char big[8192];
    static struct embed_word w[EMBED_MAX_WORDS];
    const char *texts[] = {"Reset my password", "What's the capital of France? Name a landmark.",
                           "wake me up at 6:30 am", big};
    float a[DIM_MAX], b[DIM_MAX];

    (void)state;
    memset(big, 'b', sizeof(big) - 1);
    for (size_t i = 3; i < sizeof(big) - 1; i += 4)
        big[i] = ' ';
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        size_t n = embed_split(texts[i], strlen(texts[i]), w, EMBED_MAX_WORDS);
        assert_int_equal(embedder_embed(e, texts[i], strlen(texts[i]), a), 0);
        assert_int_equal(embedder_embed_words(e, w, n, b), 0);
        assert_memory_equal(a, b, sizeof(float) * embedder_dim(e));
    }
    assert_int_equal(embedder_embed_words(e, w, 0, b), -EINVAL);
}

static void test_nothing_to_embed(void **state)
{
    float v[DIM_MAX];

    (void)state;
    assert_int_equal(embedder_embed(e, "?!  ...", 7, v), -EINVAL);
    assert_int_equal(embedder_embed(e, "", 0, v), -EINVAL);
    for (unsigned i = 0; i < embedder_dim(e); i++)
        assert_true(v[i] == 0.0f);
}

/* Contractions are spelled out, with or without the apostrophe (also the
 * typographic one), so every spelling embeds the same. */
static void test_contractions(void **state)
{
    (void)state;
    assert_float_equal(cosine("what's the weather", "what is the weather"), 1.0f, 1e-4f);
    assert_float_equal(cosine("whats the weather", "what is the weather"), 1.0f, 1e-4f);
    assert_float_equal(cosine("I don't know", "i do not know"), 1.0f, 1e-4f);
    assert_float_equal(cosine("I can't log in", "I cannot log in"), 1.0f, 1e-4f);
    assert_float_equal(cosine("I won\xe2\x80\x99t pay", "I will not pay"), 1.0f, 1e-4f);
    assert_float_equal(cosine("I'm locked out", "im locked out"), 1.0f, 1e-4f);
    /* Stray apostrophes, typographic or not, are not words. */
    assert_float_equal(cosine("\xe2\x80\x99locked\xe2\x80\x99 ' out '", "locked out"), 1.0f, 1e-4f);
}

/* Every contraction written without its apostrophe is spelled out (the
 * table is binary-searched: one out of order would be missed), and words
 * that only start like one are left alone. */
static void test_bare_contractions(void **state)
{
    static const char *const cases[][3] = {
        {"aint", "is", "not"},         {"arent", "are", "not"},
        {"cannot", "can", "not"},      {"cant", "can", "not"},
        {"couldnt", "could", "not"},   {"didnt", "did", "not"},
        {"doesnt", "does", "not"},     {"dont", "do", "not"},
        {"gonna", "going", "to"},      {"hadnt", "had", "not"},
        {"hasnt", "has", "not"},       {"havent", "have", "not"},
        {"hows", "how", "is"},         {"im", "i", "am"},
        {"isnt", "is", "not"},         {"ive", "i", "have"},
        {"shouldnt", "should", "not"}, {"thats", "that", "is"},
        {"theyre", "they", "are"},     {"wasnt", "was", "not"},
        {"werent", "were", "not"},     {"whats", "what", "is"},
        {"wheres", "where", "is"},     {"whos", "who", "is"},
        {"wont", "will", "not"},       {"wouldnt", "would", "not"},
        {"youre", "you", "are"},
    };
    struct embed_word w[4];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(embed_split(cases[i][0], strlen(cases[i][0]), w, 4), 2);
        assert_string_equal(w[0].text, cases[i][1]);
        assert_string_equal(w[1].text, cases[i][2]);
    }
    assert_int_equal(embed_split("imp", 3, w, 4), 1);
    assert_string_equal(w[0].text, "imp");
    assert_int_equal(embed_split("can", 3, w, 4), 1);
    assert_int_equal(embed_split("i", 1, w, 4), 1);
    assert_string_equal(w[0].text, "i");
}

/* Inflections meet through the stemmer. */
static void test_inflections(void **state)
{
    (void)state;
    assert_true(cosine("I changed my passwords", "change my password") > 0.9f);
    assert_true(cosine("cancelling the orders", "cancel the order") > 0.9f);
}

/* Paraphrases that differ in how the request is put score above the
 * threshold; questions about something else score below it. */
static void test_paraphrase_vs_unrelated(void **state)
{
    float t = embedder_threshold(e);

    (void)state;
    assert_true(cosine("How do I reset my password?", "how can I reset my password") > t);
    assert_true(cosine("What is the capital of France?", "what's the capital of france") > t);
    assert_true(cosine("Please tell me the weather today", "tell me the weather today") > t);
    assert_true(cosine("How do I reset my password?", "How do I change my email address?") < t);
    assert_true(cosine("Write a poem about the sea", "What is the weather in Paris?") < t);
    assert_true(cosine("What is the capital of France?", "What is the capital of Germany?") < t);
}

/* Content words outweigh function words and request framing: changing the
 * subject costs more than changing how the question is put. */
static void test_content_outweighs_framing(void **state)
{
    float framing, subject;

    (void)state;
    framing = cosine("can you tell me my account balance", "what is my account balance");
    subject = cosine("what is my account balance", "what is my account number");
    assert_true(framing > subject);
    /* Word order counts through word pairs. */
    assert_true(cosine("call me tom", "call me tom") > cosine("call me tom", "tom call me"));
}

static void test_split(void **state)
{
    struct embed_word w[16];
    size_t n;

    (void)state;
    n = embed_split("Please, what's 3.5 times ZYXQUV's cats?", 39, w, 16);
    assert_int_equal(n, 7);
    assert_string_equal(w[0].text, "please");
    assert_int_equal(w[0].kind, EMBED_FRAMING);
    assert_string_equal(w[1].text, "what");
    assert_int_equal(w[1].kind, EMBED_QUESTION);
    assert_string_equal(w[2].text, "is");
    assert_int_equal(w[2].kind, EMBED_FUNCTION);
    assert_string_equal(w[3].text, "3.5");
    assert_int_equal(w[3].kind, EMBED_NUMBER);
    assert_string_equal(w[4].text, "times");
    assert_string_equal(w[4].stem, "time");
    assert_int_equal(w[4].kind, EMBED_CONTENT);
    assert_true(w[4].rank > 0 && w[4].rank < 2000); /* a common word */
    assert_string_equal(w[5].text, "zyxquv");       /* possessive 's dropped */
    assert_int_equal(w[5].rank, 0);                 /* not in the table */
    assert_string_equal(w[6].stem, "cat");
    /* The word table is in frequency order. */
    n = embed_split("the password", 12, w, 16);
    assert_int_equal(n, 2);
    assert_int_equal(w[0].rank, 1);
    assert_true(w[1].rank > 1);
    /* max is respected; numbers drop thousands separators. */
    assert_int_equal(embed_split("one two three four", 18, w, 2), 2);
    assert_int_equal(embed_split("send 1,000", 10, w, 16), 2);
    assert_string_equal(w[1].text, "1000");
}

/* Porter's stemmer on examples from Porter (1980). */
static void test_stems(void **state)
{
    static const char *const cases[][2] = {
        {"caresses", "caress"},  {"ponies", "poni"},       {"cats", "cat"},
        {"agreed", "agre"},      {"plastered", "plaster"}, {"motoring", "motor"},
        {"hopping", "hop"},      {"filing", "file"},       {"happy", "happi"},
        {"relational", "relat"}, {"rational", "ration"},   {"hopeful", "hope"},
    };
    struct embed_word w;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(embed_split(cases[i][0], strlen(cases[i][0]), &w, 1), 1);
        assert_string_equal(w.stem, cases[i][1]);
    }
}

/* Without the word table the embedder still works: unit vectors, the same
 * contractions, paraphrases still close. */
static void test_without_word_table(void **state)
{
    struct embed_builtin_opts o = {.no_word_table = true};
    struct embedder *bare;
    float v[DIM_MAX], n = 0;

    (void)state;
    assert_int_equal(embed_builtin_new_opts(&o, &bare), 0);
    assert_int_equal(embedder_dim(bare), embedder_dim(e));
    assert_int_equal(embedder_embed(bare, "reset my password", 17, v), 0);
    for (unsigned i = 0; i < embedder_dim(bare); i++)
        n += v[i] * v[i];
    assert_float_equal(n, 1.0f, 1e-4f);
    assert_true(cosine_with(bare, "How do I reset my password?", "how can I reset my password") >
                embedder_threshold(bare));
    /* The table changes the weights: rarer words count more with it. */
    assert_true(fabsf(cosine_with(bare, "my account balance", "my balance") -
                      cosine("my account balance", "my balance")) > 1e-4f);
    embedder_free(bare);
}

/* Many threads embed at once (the word table is built on first use). */
#define THREADS 8

static const char *const texts[] = {
    "how do I reset my password",
    "what's the weather in Paris tomorrow",
    "cancel my order #12345",
    "I can't log in to my account",
};

static void *embed_many(void *arg)
{
    float(*out)[DIM_MAX] = arg;

    for (int round = 0; round < 200; round++)
        for (size_t i = 0; i < 4; i++)
            if (embedder_embed(e, texts[i], strlen(texts[i]), out[i]) != 0)
                return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    static float got[THREADS][4][DIM_MAX];
    static float want[4][DIM_MAX];
    pthread_t th[THREADS];

    (void)state;
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, embed_many, got[t]), 0);
    for (int t = 0; t < THREADS; t++) {
        void *rc;
        assert_int_equal(pthread_join(th[t], &rc), 0);
        assert_null(rc);
    }
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(embedder_embed(e, texts[i], strlen(texts[i]), want[i]), 0);
    for (int t = 0; t < THREADS; t++)
        assert_memory_equal(got[t], want, sizeof(want[0][0]) * DIM_MAX * 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads), /* first: the table is built under contention */
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_nothing_to_embed),
        cmocka_unit_test(test_embed_words),
        cmocka_unit_test(test_contractions),
        cmocka_unit_test(test_bare_contractions),
        cmocka_unit_test(test_inflections),
        cmocka_unit_test(test_paraphrase_vs_unrelated),
        cmocka_unit_test(test_content_outweighs_framing),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_stems),
        cmocka_unit_test(test_without_word_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
