/* Unit tests for cache/match/judge.c: the audit judge on hand-made cases
 * and its error on the dev pairs (test/data/judge_pairs.tsv), reported in
 * docs/audit.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/match/judge.h"
#include "cache/match/wordnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The verifier's tables for this run: none, or WordNet (as parrot runs
 * after make wordnet). */
static const struct verify_tables *tables;

static struct judge_result judge(const char *a, const char *b)
{
    struct judge_result r;

    judge_answers(a, strlen(a), b, strlen(b), tables, &r);
    return r;
}

static void test_cases(void **state)
{
    struct judge_result r;

    (void)state;
    r = judge("Paris.", "  paris ");
    assert_true(r.same);
    assert_string_equal(r.why, "identical");
    assert_float_equal(r.score, 1, 0);
    r = judge("The answer is 42.", "The answer is 43.");
    assert_false(r.same);
    assert_string_equal(r.why, "numbers");
    r = judge("You can delete it.", "You cannot delete it.");
    assert_false(r.same);
    r = judge("", "Something.");
    assert_false(r.same);
    assert_string_equal(r.why, "empty");
    r = judge("Bananas are yellow fruit rich in potassium.", "Rust has no garbage collector.");
    assert_false(r.same);
    assert_true(r.score < JUDGE_FLOOR);
    r = judge("Spiders have 8 legs.", "A spider has 8 legs.");
    assert_true(r.score > 0 && r.score < 1);
}

/* A long answer is bounded: only its first JUDGE_MAX_WORDS words count. */
static void test_long_answer(void **state)
{
    size_t n = (JUDGE_MAX_WORDS + 100) * 4;
    char *a = malloc(n + 1), *b = malloc(n + 1);
    struct judge_result r;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (size_t i = 0; i < n; i += 4)
        memcpy(a + i, "abc ", 4);
    a[n] = '\0';
    memcpy(b, a, n + 1);
    b[n - 2] = 'x'; /* beyond the words compared */
    judge_answers(a, n, b, n, NULL, &r);
    assert_true(r.same);
    free(a);
    free(b);
}

/* Judge every dev pair; *wrong_same counts pairs labelled different that
 * the judge called the same (the error that hides a wrong hit),
 * *wrong_diff the reverse. */
static void run_dev(int *pairs, int *wrong_same, int *wrong_diff)
{
    FILE *f = fopen("test/data/judge_pairs.tsv", "r");
    char line[2048];

    assert_non_null(f);
    *pairs = *wrong_same = *wrong_diff = 0;
    while (fgets(line, sizeof(line), f)) {
        char *a, *b, *nl;
        struct judge_result r;

        if (line[0] == '#' || line[0] == '\n')
            continue;
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        a = strchr(line, '\t');
        assert_non_null(a);
        *a++ = '\0';
        b = strchr(a, '\t');
        assert_non_null(b);
        *b++ = '\0';
        r = judge(a, b);
        (*pairs)++;
        if (strcmp(line, "same") == 0 && !r.same) {
            (*wrong_diff)++;
            printf("# judged different (%s, %.2f): %s | %s\n", r.why, (double)r.score, a, b);
        } else if (strcmp(line, "diff") == 0 && r.same) {
            (*wrong_same)++;
            printf("# judged same (%s, %.2f): %s | %s\n", r.why, (double)r.score, a, b);
        }
    }
    fclose(f);
}

static void test_dev_pairs(void **state)
{
    int pairs, wrong_same, wrong_diff;

    (void)state;
    run_dev(&pairs, &wrong_same, &wrong_diff);
    printf("# judge on %d dev pairs: %d different judged same, %d same judged different\n", pairs,
           wrong_same, wrong_diff);
    assert_int_equal(pairs, 42);
    /* The numbers docs/audit.md reports. Without WordNet a colour is one
     * word like any other: "blue cable" and "red cable" pass as the same. */
    assert_int_equal(wrong_same, 1);
    assert_int_equal(wrong_diff, 2);
}

/* With the real WordNet table (make wordnet; skipped without it), as a
 * server started by make run judges. */
static void test_dev_pairs_wordnet(void **state)
{
    struct wordnet *wn = NULL;
    struct verify_tables t = {0};
    int pairs, wrong_same, wrong_diff;
    char err[256];

    (void)state;
    if (access("build/wordnet.bin", R_OK) != 0 ||
        wordnet_load("build/wordnet.bin", &wn, err, sizeof(err)) != 0) {
        skip();
        return;
    }
    t.wn = wn;
    tables = &t;
    run_dev(&pairs, &wrong_same, &wrong_diff);
    tables = NULL;
    printf("# judge with WordNet on %d dev pairs: %d different judged same, %d same judged "
           "different\n",
           pairs, wrong_same, wrong_diff);
    /* Co-hyponyms are told apart; one more rewording is called different. */
    assert_int_equal(wrong_same, 0);
    assert_int_equal(wrong_diff, 3);
    wordnet_free(wn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_long_answer),
        cmocka_unit_test(test_dev_pairs),
        cmocka_unit_test(test_dev_pairs_wordnet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
