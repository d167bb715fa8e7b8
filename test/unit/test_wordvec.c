/* Unit tests for cache/wordvec.c and its use by the built-in embedder and
 * the verifier: a table round-trips, a damaged one is rejected whole, and
 * with a table "car" meets "automobile" where without one it does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/match/embed.h"
#include "cache/match/verify.h"
#include "cache/match/wordvec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define D 8

static char path[64];

/* car and automobile point the same way, the rest apart; pc is e7. */
static const char *const words[] = {"the",   "car", "automobile", "banana",
                                    "price", "how", "much",       "prize"};
#define N (sizeof(words) / sizeof(words[0]))

static void write_table(void)
{
    float v[N * D] = {0}, pc[D] = {0};

    for (size_t i = 0; i < N; i++)
        v[i * D + (i < 2 ? i : i - 1) % (D - 1)] = 1.0f + 0.1f * (float)i;
    v[2 * D + 0] = 0.1f; /* automobile: almost car */
    pc[D - 1] = 2.0f;    /* stored normalised */
    assert_int_equal(wordvec_write(path, D, N, words, v, pc), 0);
}

static int setup(void **state)
{
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/parrot-wv-XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_round_trip(void **state)
{
    struct wordvec *t;
    char err[128];
    float g[D] = {0};

    (void)state;
    write_table();
    assert_int_equal(wordvec_load(path, &t, err, sizeof(err)), 0);
    assert_int_equal(wordvec_dim(t), D);
    assert_int_equal(wordvec_count(t), N);
    assert_int_equal(wordvec_find(t, "the", 3), 0);
    assert_int_equal(wordvec_find(t, "banana", 6), 3);
    assert_int_equal(wordvec_find(t, "banan", 5), -1);
    assert_int_equal(wordvec_find(t, "bananas", 7), -1);
    assert_true(wordvec_cos(t, 1, 2) > 0.99f);
    assert_true(fabsf(wordvec_cos(t, 1, 3)) < 0.01f);
    assert_true(fabsf(wordvec_pc(t)[D - 1] - 1.0f) < 1e-6f);
    wordvec_add(t, 3, 2.0f, g); /* banana: 1.3 in dimension 2, int8-quantised */
    assert_true(fabsf(g[2] - 2.6f) < 0.03f);
    wordvec_free(t);
}

/* Flips one byte at off (or truncates at off when trunc) and expects the
 * load to fail with -EINVAL and a reason containing want. */
static void expect_rejected(long off, bool trunc, const char *want)
{
    struct wordvec *t = (struct wordvec *)1;
    char err[128];
    FILE *f;

    write_table();
    if (trunc) {
        assert_int_equal(truncate(path, off), 0);
    } else {
        int c;
        f = fopen(path, "r+b");
        assert_non_null(f);
        assert_int_equal(fseek(f, off, SEEK_SET), 0);
        c = fgetc(f);
        assert_int_equal(fseek(f, off, SEEK_SET), 0);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    assert_int_equal(wordvec_load(path, &t, err, sizeof(err)), -EINVAL);
    assert_null(t);
    assert_non_null(strstr(err, want));
}

static void test_damaged_rejected(void **state)
{
    (void)state;
    expect_rejected(0, false, "magic");
    expect_rejected(4, false, "version");
    expect_rejected(11, false, "dimension");
    expect_rejected(40, false, "checksum"); /* inside the common direction */
}

static void test_truncated_and_missing(void **state)
{
    struct wordvec *t;
    char err[128];
    FILE *f;
    long len;

    (void)state;
    write_table();
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fclose(f);
    expect_rejected(len - 1, true, "size");
    expect_rejected(10, true, "magic"); /* shorter than a header */
    assert_int_equal(wordvec_load("/nonexistent/parrot.bin", &t, err, sizeof(err)), -ENOENT);
    assert_null(t);
}

static void test_write_refuses_bad_input(void **state)
{
    const char *const dup[] = {"a", ""};
    float v[2 * D] = {0}, pc[D] = {1};

    (void)state;
    assert_int_equal(wordvec_write(path, D, 2, dup, v, pc), -EINVAL); /* empty word */
    assert_int_equal(wordvec_write(path, 0, 1, dup, v, pc), -EINVAL);
    pc[0] = 0;
    assert_int_equal(wordvec_write(path, D, 1, dup, v, pc), -EINVAL); /* no direction */
}

static float cosine(const struct embedder *e, const char *a, const char *b)
{
    float va[1024], vb[1024], s = 0;

    assert_int_equal(embedder_embed(e, a, strlen(a), va), 0);
    assert_int_equal(embedder_embed(e, b, strlen(b), vb), 0);
    for (unsigned i = 0; i < embedder_dim(e); i++)
        s += va[i] * vb[i];
    return s;
}

static void test_embedder_modes(void **state)
{
    struct embedder *lex, *vec, *none;
    struct embed_builtin_opts o = {.word_vectors = path};
    struct embed_builtin_opts missing = {.word_vectors = "/nonexistent/parrot.bin"};
    float v[1024], n = 0;

    (void)state;
    write_table();
    assert_int_equal(embed_builtin_new(&lex), 0);
    assert_int_equal(embed_builtin_new_opts(&o, &vec), 0);
    assert_int_equal(embed_builtin_new_opts(&missing, &none), 0);
    /* Vectors from the two modes must never meet: name and size differ. */
    assert_string_equal(embedder_name(lex), "builtin");
    assert_string_equal(embedder_name(none), "builtin");
    assert_int_equal(embedder_dim(none), 384);
    assert_null(embedder_word_vectors(none));
    assert_string_equal(embedder_name(vec), "builtin+vectors");
    assert_int_equal(embedder_dim(vec), 384 + D);
    assert_non_null(embedder_word_vectors(vec));
    assert_true(embedder_threshold(vec) > 0.5f && embedder_threshold(vec) < 1.0f);
    assert_int_equal(embedder_embed(vec, "the car price", 13, v), 0);
    for (unsigned i = 0; i < embedder_dim(vec); i++)
        n += v[i] * v[i];
    assert_true(fabsf(n - 1.0f) < 1e-4f);
    /* The table adds up to W_VECTORS (0.3) of cosine for words whose
     * vectors agree and nothing for words whose vectors are orthogonal. */
    assert_true(cosine(vec, "car", "automobile") > cosine(lex, "car", "automobile") + 0.25f);
    assert_true(cosine(vec, "car", "banana") < cosine(lex, "car", "banana") + 0.01f);
    /* Words the table does not know still embed, lexically. */
    assert_true(cosine(vec, "zxq price", "zxq price") > 0.999f);
    embedder_free(lex);
    embedder_free(vec);
    embedder_free(none);
}

static void test_embedder_rejects_damaged_table(void **state)
{
    struct embedder *e = NULL;
    char err[256] = "";
    struct embed_builtin_opts o = {.word_vectors = path, .err = err, .err_len = sizeof(err)};

    (void)state;
    write_table();
    assert_int_equal(truncate(path, 40), 0);
    assert_int_equal(embed_builtin_new_opts(&o, &e), -EINVAL);
    assert_null(e);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "size"));
}

/* Close vectors never make two words one: they put read / send and before
 * / later side by side as readily as car / automobile. Synonyms come from
 * WordNet (test_verify.c). */
static void test_verifier_vectors_never_pair(void **state)
{
    struct wordvec *t;
    char err[128];
    const char *a = "how much is the car", *b = "how much is the automobile";
    const char *c = "how much is the banana";

    (void)state;
    write_table();
    assert_int_equal(wordvec_load(path, &t, err, sizeof(err)), 0);
    assert_int_equal(verify_texts(a, strlen(a), b, strlen(b)), VERIFY_CONTENT);
    assert_int_equal(verify_texts_wv(a, strlen(a), b, strlen(b), t), VERIFY_CONTENT);
    assert_int_equal(verify_texts_wv(a, strlen(a), c, strlen(c), t), VERIFY_CONTENT);
    assert_int_equal(verify_texts_wv(a, strlen(a), a, strlen(a), t), VERIFY_OK);
    wordvec_free(t);
}

/* A word one edit from a word of the other side is a typo of it only when
 * the table does not know one of them. */
static void test_verifier_typos(void **state)
{
    struct wordvec *t;
    char err[128];
    const char *a = "how much is the price", *typo = "how much is the prise";
    const char *other = "how much is the prize", *far = "how much is the praise";

    (void)state;
    write_table();
    assert_int_equal(wordvec_load(path, &t, err, sizeof(err)), 0);
    assert_int_equal(verify_texts_wv(a, strlen(a), typo, strlen(typo), t), VERIFY_OK);
    assert_int_equal(verify_texts_wv(typo, strlen(typo), a, strlen(a), t), VERIFY_OK);
    assert_int_equal(verify_texts_wv(a, strlen(a), other, strlen(other), t), VERIFY_CONTENT);
    assert_int_equal(verify_texts_wv(a, strlen(a), far, strlen(far), t), VERIFY_CONTENT);
    /* Without a table nothing tells a typo from another word, and a word
     * no table knows is an argument (a name, a brand): it must match. */
    assert_int_equal(verify_texts(a, strlen(a), typo, strlen(typo)), VERIFY_ARGUMENT);
    wordvec_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_rejected),
        cmocka_unit_test(test_truncated_and_missing),
        cmocka_unit_test(test_write_refuses_bad_input),
        cmocka_unit_test(test_embedder_modes),
        cmocka_unit_test(test_embedder_rejects_damaged_table),
        cmocka_unit_test(test_verifier_vectors_never_pair),
        cmocka_unit_test(test_verifier_typos),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
