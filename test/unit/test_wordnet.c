/* Unit tests for cache/match/wordnet.c and deploy/wordnet_convert.c: the converter's
 * table of the hand-written fixture in test/fixtures/wordnet, a damaged
 * table, and a few facts of the real WordNet 3.0 table that make test builds
 * from Debian's wordnet-base (the Makefile passes both paths). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/match/wordnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef WORDNET_FIXTURE
#define WORDNET_FIXTURE "build/test/wordnet-fixture.bin"
#endif
#ifndef WORDNET_TABLE
#define WORDNET_TABLE "build/wordnet.bin"
#endif

#define S(x) x, strlen(x)

static struct wordnet *load(const char *path)
{
    struct wordnet *wn = NULL;
    char err[128] = "";
    int rc = wordnet_load(path, &wn, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "%s: %d %s\n", path, rc, err);
    assert_int_equal(rc, 0);
    return wn;
}

static void test_fixture_counts(void **state)
{
    struct wordnet *wn = load(WORDNET_FIXTURE);

    (void)state;
    assert_int_equal(wordnet_synset_count(wn), 20);
    assert_int_equal(wordnet_lemma_count(wn), 33);
    wordnet_free(wn);
    wordnet_free(NULL);
}

static void test_fixture_lemmatise(void **state)
{
    struct wordnet *wn = load(WORDNET_FIXTURE);
    const char *out[8];

    (void)state;
    /* the exception list */
    assert_int_equal(wordnet_lemmatise(wn, S("wrote"), WORDNET_ANY, out, 8), 1);
    assert_string_equal(out[0], "write");
    assert_int_equal(wordnet_lemmatise(wn, S("Cities"), WORDNET_NOUN, out, 8), 1);
    assert_string_equal(out[0], "city");
    /* detachment rules, checked against the part of speech */
    assert_int_equal(wordnet_lemmatise(wn, S("writers"), WORDNET_ANY, out, 8), 1);
    assert_string_equal(out[0], "writer");
    assert_int_equal(wordnet_lemmatise(wn, S("writing"), WORDNET_VERB, out, 8), 1);
    assert_string_equal(out[0], "write");
    assert_int_equal(wordnet_lemmatise(wn, S("writes"), WORDNET_NOUN, out, 8), 0);
    /* multiword lemmas from text */
    assert_int_equal(wordnet_lemmatise(wn, S("European Country"), WORDNET_ANY, out, 8), 1);
    assert_string_equal(out[0], "european_country");
    assert_int_equal(wordnet_lemmatise(wn, S("zebra"), WORDNET_ANY, out, 8), 0);
    assert_int_equal(wordnet_lemmatise(wn, S(""), WORDNET_ANY, out, 8), 0);
    wordnet_free(wn);
}

static void test_fixture_relations(void **state)
{
    struct wordnet *wn = load(WORDNET_FIXTURE);

    (void)state;
    assert_true(wordnet_synonyms(wn, S("author"), S("writer"), 0));
    assert_true(wordnet_synonyms(wn, S("authors"), S("Writer"), 0));
    assert_false(wordnet_synonyms(wn, S("author"), S("person"), 0));
    assert_true(wordnet_derivationally_related(wn, S("wrote"), S("writer")));
    /* derivations are word to word: writer, not its synonym author */
    assert_false(wordnet_derivationally_related(wn, S("author"), S("write")));
    assert_false(wordnet_derivationally_related(wn, S("compose"), S("writer")));
    assert_true(wordnet_antonyms(wn, S("safe"), S("unsafe")));
    assert_true(wordnet_antonyms(wn, S("unsafe"), S("safe")));
    assert_false(wordnet_antonyms(wn, S("safe"), S("secure")));
    /* an attribute joins every word of the noun's synset to the adjective */
    assert_true(wordnet_attribute(wn, S("tall"), S("height")));
    assert_true(wordnet_attribute(wn, S("tallness"), S("tall")));
    assert_false(wordnet_attribute(wn, S("tall"), S("city")));
    assert_false(wordnet_derivationally_related(wn, S("tall"), S("height")));
    assert_true(wordnet_cohyponyms(wn, S("Germany"), S("France")));
    assert_true(wordnet_cohyponyms(wn, S("blue"), S("green")));
    assert_false(wordnet_cohyponyms(wn, S("germany"), S("deutschland"))); /* synonyms */
    assert_false(wordnet_cohyponyms(wn, S("blue"), S("germany")));
    assert_true(wordnet_is_instance(wn, S("Germany")));
    assert_false(wordnet_is_instance(wn, S("country")));
    assert_int_equal(wordnet_closed_class(wn, S("germany")), WORDNET_CLASS_COUNTRY);
    assert_int_equal(wordnet_closed_class(wn, S("blue")), WORDNET_CLASS_COLOR);
    assert_int_equal(wordnet_closed_class(wn, S("color")), WORDNET_CLASS_NONE);
    assert_int_equal(wordnet_closed_class(wn, S("writer")), WORDNET_CLASS_NONE);
    assert_false(wordnet_in_closed_class(wn, S("zebra")));
    assert_string_equal(wordnet_class_name(WORDNET_CLASS_COLOR), "color");
    wordnet_free(wn);
}

/* The fixture table's bytes into buf; returns how many. */
static size_t fixture_bytes(uint8_t *buf, size_t cap)
{
    FILE *in = fopen(WORDNET_FIXTURE, "rb");
    size_t n;

    assert_non_null(in);
    n = fread(buf, 1, cap, in);
    fclose(in);
    return n;
}

/* wordnet_load() of buf[0..n) written to a file of its own. */
static int load_bytes(const uint8_t *buf, size_t n, struct wordnet **out, char *err, size_t errlen)
{
    char path[] = "/tmp/parrot-wordnet-XXXXXX";
    int fd = mkstemp(path), rc;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
    rc = wordnet_load(path, out, err, errlen);
    unlink(path);
    return rc;
}

/* A copy of the fixture table with byte at changed (or cut at at when cut). */
static int damaged(size_t at, bool cut, char *err, size_t errlen)
{
    uint8_t buf[1 << 16];
    size_t n = fixture_bytes(buf, sizeof(buf));
    struct wordnet *wn = NULL;
    int rc;

    assert_true(n > at);
    if (cut)
        n = at;
    else
        buf[at] ^= 0x40;
    rc = load_bytes(buf, n, &wn, err, errlen);
    assert_null(wn);
    return rc;
}

/* A table of version 1 (before attributes) still loads: the same layout,
 * its last lemma field reserved and not read. The version is in the header,
 * outside the checksum. */
static void test_version_1(void **state)
{
    uint8_t buf[1 << 16];
    size_t n = fixture_bytes(buf, sizeof(buf));
    struct wordnet *wn = NULL;

    (void)state;
    assert_int_equal(buf[4], 2);
    buf[4] = 1;
    assert_int_equal(load_bytes(buf, n, &wn, NULL, 0), 0);
    assert_false(wordnet_attribute(wn, S("tall"), S("height")));
    assert_true(wordnet_antonyms(wn, S("safe"), S("unsafe")));
    assert_true(wordnet_derivationally_related(wn, S("wrote"), S("writer")));
    wordnet_free(wn);
    /* and a version from the future does not */
    assert_int_equal(damaged(4, false, NULL, 0), -EINVAL);
}

static void test_damaged(void **state)
{
    char err[128];
    struct wordnet *wn = (struct wordnet *)1;

    (void)state;
    assert_int_equal(damaged(0, false, err, sizeof(err)), -EINVAL);   /* magic */
    assert_int_equal(damaged(100, false, err, sizeof(err)), -EINVAL); /* body: checksum */
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(damaged(200, true, err, sizeof(err)), -EINVAL); /* truncated */
    assert_int_equal(wordnet_load("/nonexistent/wordnet.bin", &wn, err, sizeof(err)), -ENOENT);
    assert_null(wn);
}

/* The real table: facts the verifier will lean on. */
static void test_real_wordnet(void **state)
{
    struct wordnet *wn = load(WORDNET_TABLE);
    const char *out[8];
    struct timespec t0, t1;

    (void)state;
    assert_true(wordnet_synset_count(wn) > 100000);
    /* synonyms in what the words mostly mean, not in a late sense */
    assert_true(wordnet_synonyms(wn, S("buy"), S("purchase"), 1));
    assert_true(wordnet_synonyms(wn, S("cancel"), S("delete"), 4));
    assert_false(wordnet_synonyms(wn, S("cancel"), S("delete"), 3));
    assert_false(wordnet_synonyms(wn, S("list"), S("number"), 4));
    assert_true(wordnet_synonyms(wn, S("list"), S("number"), 0));
    assert_false(wordnet_synonyms(wn, S("bill"), S("card"), 4));
    {
        /* by part of speech: "mother" and "father" share only a verb's
         * synset ("beget"); "hungry" and "thirsty" share a late adjective
         * sense ("eager": hungry's 2nd, thirsty's 3rd) */
        static const unsigned nouns[] = {0, 4, 0, 0, 0}, any[] = {0, 4, 4, 4, 4},
                              adj2[] = {0, 4, 4, 2, 2};
        assert_true(wordnet_synonyms_ranked(wn, S("mother"), S("father"), any));
        assert_false(wordnet_synonyms_ranked(wn, S("mother"), S("father"), nouns));
        assert_true(wordnet_synonyms_ranked(wn, S("author"), S("writer"), nouns));
        assert_true(wordnet_synonyms_ranked(wn, S("hungry"), S("thirsty"), any));
        assert_false(wordnet_synonyms_ranked(wn, S("hungry"), S("thirsty"), adj2));
        assert_true(wordnet_synonyms_ranked(wn, S("book"), S("reserve"), adj2));
        assert_true(wordnet_synonyms_ranked(wn, S("big"), S("large"), adj2));
    }
    assert_true(wordnet_verb_hypernym(wn, S("reduce"), S("decrease"), 1, 2));
    assert_false(wordnet_verb_hypernym(wn, S("list"), S("number"), 1, 4));
    assert_true(wordnet_verb_hypernym(wn, S("list"), S("number"), 1, 0));
    assert_true(wordnet_cohyponyms(wn, S("germany"), S("france")));
    assert_true(wordnet_is_instance(wn, S("Germany")));
    assert_int_equal(wordnet_closed_class(wn, S("germany")), WORDNET_CLASS_COUNTRY);
    assert_int_equal(wordnet_closed_class(wn, S("France")), WORDNET_CLASS_COUNTRY);
    assert_int_equal(wordnet_closed_class(wn, S("blue")), WORDNET_CLASS_COLOR);
    assert_int_equal(wordnet_closed_class(wn, S("green")), WORDNET_CLASS_COLOR);
    assert_true(wordnet_cohyponyms(wn, S("blue"), S("green")));
    assert_int_equal(wordnet_closed_class(wn, S("spanish")), WORDNET_CLASS_LANGUAGE);
    assert_int_equal(wordnet_closed_class(wn, S("january")), WORDNET_CLASS_MONTH);
    assert_int_equal(wordnet_closed_class(wn, S("tuesday")), WORDNET_CLASS_WEEKDAY);
    assert_int_equal(wordnet_closed_class(wn, S("kilometer")), WORDNET_CLASS_UNIT);
    assert_true(wordnet_antonyms(wn, S("safe"), S("unsafe")));
    assert_true(wordnet_antonyms(wn, S("legal"), S("illegal")));
    assert_false(wordnet_antonyms(wn, S("safe"), S("secure")));
    assert_true(wordnet_derivationally_related(wn, S("write"), S("writer")));
    assert_true(wordnet_derivationally_related(wn, S("wrote"), S("writer")));
    assert_true(wordnet_attribute(wn, S("tall"), S("height")));
    assert_true(wordnet_attribute(wn, S("age"), S("old")));
    assert_true(wordnet_attribute(wn, S("far"), S("distance")));
    assert_false(wordnet_attribute(wn, S("tall"), S("age")));
    assert_true(wordnet_synonyms(wn, S("author"), S("writer"), 0));
    assert_false(wordnet_synonyms(wn, S("germany"), S("france"), 0));
    assert_int_equal(wordnet_lemmatise(wn, S("wrote"), WORDNET_VERB, out, 8), 1);
    assert_string_equal(out[0], "write");
    wordnet_free(wn);
    /* Loading is one read and one pass of checks: well under a second. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    wn = load(WORDNET_TABLE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("wordnet: %zu lemmas, %zu synsets, loaded in %.1f ms\n", wordnet_lemma_count(wn),
           wordnet_synset_count(wn),
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    wordnet_free(wn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_counts),    cmocka_unit_test(test_fixture_lemmatise),
        cmocka_unit_test(test_fixture_relations), cmocka_unit_test(test_version_1),
        cmocka_unit_test(test_damaged),           cmocka_unit_test(test_real_wordnet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
