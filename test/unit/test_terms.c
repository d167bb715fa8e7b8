/* Unit tests for cache/terms.c: n-gram terms, document counts that come and
 * go (the table's deletion), and the TF-IDF cosine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/match/embed.h"
#include "cache/match/terms.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t terms(const char *text, uint64_t *out)
{
    return terms_of(text, strlen(text), out);
}

static void add(struct termstats *st, const char *text)
{
    uint64_t t[TERMS_MAX];
    size_t n = terms(text, t);

    assert_int_equal(termstats_add(st, t, n), 0);
}

static void del(struct termstats *st, const char *text)
{
    uint64_t t[TERMS_MAX];
    size_t n = terms(text, t);

    termstats_remove(st, t, n);
}

static float cos_of(const struct termstats *st, const char *a, const char *b)
{
    static struct term_weights wa, wb;
    uint64_t t[TERMS_MAX];
    size_t n;

    n = terms(a, t);
    terms_weigh(st, t, n, &wa);
    n = terms(b, t);
    terms_weigh(st, t, n, &wb);
    return terms_cos(&wa, &wb);
}

/* Words, pairs and triples; sorted; word order matters through the runs. */
static void test_terms_of(void **state)
{
    uint64_t a[TERMS_MAX], b[TERMS_MAX];
    size_t na = terms("schedule a meeting", a), nb = terms("meeting a schedule", b);
    size_t common = 0;

    (void)state;
    assert_int_equal(na, 3 + 2 + 1);
    assert_int_equal(nb, 6);
    for (size_t i = 1; i < na; i++)
        assert_true(a[i - 1] <= a[i]);
    /* The same three words, so the same three unigrams; no run in common. */
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            common += a[i] == b[j];
    assert_int_equal(common, 3);
    /* Stemmed and lower-cased like the embedder: the same terms. */
    nb = terms("Scheduling a MEETING", b);
    assert_int_equal(nb, na);
    assert_memory_equal(a, b, na * sizeof(*a));
    assert_int_equal(terms("", a), 0);
    assert_int_equal(terms("hello", a), 1);
    /* A repeated word repeats its term. */
    assert_int_equal(terms("yes yes", a), 3);
    assert_true(a[0] == a[1] || a[1] == a[2]);
}

/* Identical texts score 1, disjoint ones 0; a word that every text has
 * counts for less than one that sets a text apart. */
static void test_cosine_and_idf(void **state)
{
    struct termstats *st = termstats_new();
    static const char *corpus[] = {
        "help me with my account balance",   "help me with my account password",
        "help me with my account statement", "help me with my account limit",
        "help me with my account transfer",  "what is the weather in paris",
        "what is the weather in rome",
    };

    (void)state;
    assert_non_null(st);
    for (size_t i = 0; i < sizeof(corpus) / sizeof(*corpus); i++)
        add(st, corpus[i]);
    assert_int_equal(termstats_texts(st), 7);
    assert_float_equal(cos_of(st, corpus[0], corpus[0]), 1.0f, 1e-5);
    assert_float_equal(cos_of(st, corpus[0], corpus[5]), 0.0f, 1e-6);
    /* "weather in" is rarer than "help me with my account": sharing it
     * says more, though both pairs share most of their words. */
    assert_true(cos_of(st, corpus[5], corpus[6]) > cos_of(st, corpus[0], corpus[1]));
    /* Terms no text holds have no say: the known part alone is compared. */
    assert_float_equal(cos_of(st, "zyxxy qwopp", corpus[0]), 0.0f, 1e-6);
    assert_float_equal(cos_of(st, "help me with my account balance zyxxy", corpus[0]),
                       cos_of(st, corpus[0], corpus[0]), 1e-5);
    termstats_free(st);
}

/* A lookup splits its question once: the terms of its words are the terms
 * of its text, past the words that count too. */
static void test_terms_of_words(void **state)
{
    static char big[2048];
    static struct embed_word w[EMBED_MAX_WORDS];
    const char *texts[] = {"how do i reset my password", "What's the weather in Paris?", big};
    uint64_t a[TERMS_MAX], b[TERMS_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = i % 3 == 2 ? ' ' : (char)('a' + i % 7);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        size_t n = embed_split(texts[i], strlen(texts[i]), w, EMBED_MAX_WORDS);
        size_t na = terms(texts[i], a), nb = terms_of_words(w, n, b);
        assert_true(na > 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(a[0]));
    }
}

/* Counts that go back to what they were: removing a text undoes adding it,
 * so scores do not drift as entries come and go. */
static void test_add_remove_restores(void **state)
{
    struct termstats *st = termstats_new();
    float before, after;

    (void)state;
    add(st, "how do i reset my password");
    add(st, "how do i change my password");
    add(st, "what is my balance");
    before = cos_of(st, "reset my password", "how do i reset my password");
    add(st, "reset my password now");
    assert_true(fabsf(cos_of(st, "reset my password", "how do i reset my password") - before) >
                1e-4);
    del(st, "reset my password now");
    after = cos_of(st, "reset my password", "how do i reset my password");
    assert_float_equal(after, before, 1e-6);
    assert_int_equal(termstats_texts(st), 3);
    termstats_free(st);
}

/* The table against a reference count, through growth, shrinking and many
 * removals (each removal shifts the rest of a probe run back). */
static void test_churn_matches_reference(void **state)
{
    enum { WORDS = 3000, OPS = 40000 };
    struct termstats *st = termstats_new();
    static uint64_t term[WORDS];
    static int count[WORDS];
    static struct term_weights w;
    size_t empty_mem, peak = 0;
    unsigned rng = 12345;

    (void)state;
    assert_non_null(st);
    empty_mem = termstats_memory(st);
    for (int i = 0; i < WORDS; i++) {
        char word[16];
        uint64_t t[TERMS_MAX];
        /* Letters only, so each text is one word and one term. */
        snprintf(word, sizeof(word), "q%c%c%cz", 'a' + i % 26, 'a' + i / 26 % 26,
                 'a' + i / 676 % 26);
        assert_int_equal(terms(word, t), 1);
        term[i] = t[0];
    }
    for (int op = 0; op < OPS; op++) {
        int i;
        rng = rng * 1103515245u + 12345u;
        i = (int)((rng >> 8) % WORDS);
        if (count[i] > 0 && (rng >> 4) % 2) {
            termstats_remove(st, &term[i], 1);
            count[i]--;
        } else {
            assert_int_equal(termstats_add(st, &term[i], 1), 0);
            count[i]++;
        }
        if (termstats_memory(st) > peak)
            peak = termstats_memory(st);
        if (op % 4000 != 3999)
            continue;
        for (int k = 0; k < WORDS; k++) {
            terms_weigh(st, &term[k], 1, &w);
            assert_int_equal(w.n, count[k] > 0 ? 1 : 0);
        }
    }
    for (int k = 0; k < WORDS; k++)
        while (count[k]-- > 0)
            termstats_remove(st, &term[k], 1);
    assert_int_equal(termstats_texts(st), 0);
    for (int k = 0; k < WORDS; k++) {
        terms_weigh(st, &term[k], 1, &w);
        assert_int_equal(w.n, 0);
    }
    /* It grew, and gave the room back as the terms went. */
    assert_true(peak > 8 * empty_mem);
    assert_int_equal(termstats_memory(st), empty_mem);
    termstats_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_terms_of_words),          cmocka_unit_test(test_terms_of),
        cmocka_unit_test(test_cosine_and_idf),          cmocka_unit_test(test_add_remove_restores),
        cmocka_unit_test(test_churn_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
