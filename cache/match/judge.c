/* judge.c - compare a cached answer with a fresh one; see judge.h. */
#include "cache/match/judge.h"

#include "cache/base/hash.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Part of a word: ASCII letters and digits, and every byte of a UTF-8
 * sequence (so other scripts are words too). */
static bool wordish(char ch)
{
    unsigned char c = (unsigned char)ch;

    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Words as hashes, in order, ASCII folded to lower case: comparing these
 * sequences compares the texts with case, spacing and punctuation
 * normalised away. Returns how many were written (at most max). */
static size_t words_of(const char *s, size_t len, uint64_t *out, size_t max)
{
    size_t n = 0, i = 0;

    while (i < len && n < max) {
        uint64_t h = HASH_FNV_OFFSET;
        size_t start;

        while (i < len && !wordish(s[i]))
            i++;
        start = i;
        for (; i < len && wordish(s[i]); i++) {
            char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
            h = hash_fnv(h, &c, 1);
        }
        if (i > start)
            out[n++] = h;
    }
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The cosine of the two bags of words (sorted in place). */
static float bag_cosine(uint64_t *a, size_t na, uint64_t *b, size_t nb)
{
    double dot = 0, sa = 0, sb = 0;
    size_t i = 0, j = 0;

    qsort(a, na, sizeof(*a), cmp_u64);
    qsort(b, nb, sizeof(*b), cmp_u64);
    while (i < na || j < nb) {
        uint64_t w = i < na && (j >= nb || a[i] <= b[j]) ? a[i] : b[j];
        double ca = 0, cb = 0;

        for (; i < na && a[i] == w; i++)
            ca++;
        for (; j < nb && b[j] == w; j++)
            cb++;
        dot += ca * cb;
        sa += ca * ca;
        sb += cb * cb;
    }
    return sa > 0 && sb > 0 ? (float)(dot / sqrt(sa * sb)) : 0;
}

/* Words that deny or negate. The verifier looks for negation the way a
 * question carries it; an answer says "No, you cannot" or "without", so
 * the judge also compares how often each of these occurs on either side
 * ("can't" is split into "can" and "t" by words_of). */
static const char *const negations[] = {"not", "no",      "never",   "cannot",
                                        "t",   "none",    "nothing", "neither",
                                        "nor", "without", "nobody",  "nowhere"};
#define NNEG (sizeof(negations) / sizeof(negations[0]))

static bool same_negations(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    for (size_t k = 0; k < NNEG; k++) {
        uint64_t h = hash_fnv_str(HASH_FNV_OFFSET, negations[k]);
        size_t ca = 0, cb = 0;

        for (size_t i = 0; i < na; i++)
            ca += a[i] == h;
        for (size_t i = 0; i < nb; i++)
            cb += b[i] == h;
        if (ca != cb)
            return false;
    }
    return true;
}

/* The verifier's checks that concern what an answer asserts: its numbers,
 * negation, polarity, arguments and their roles. The others (question
 * word, tense, action, content words) describe the shape of a question and
 * would turn every rewording into a disagreement. */
static bool asserts_differently(enum verify_reason r)
{
    switch (r) {
    case VERIFY_NUMBERS:
    case VERIFY_NEGATION:
    case VERIFY_OPPOSITE:
    case VERIFY_ARGUMENT:
    case VERIFY_ROLE: return true;
    default: return false;
    }
}

void judge_answers(const char *a, size_t alen, const char *b, size_t blen,
                   const struct verify_tables *t, struct judge_result *out)
{
    uint64_t *wa = malloc(sizeof(*wa) * JUDGE_MAX_WORDS);
    uint64_t *wb = malloc(sizeof(*wb) * JUDGE_MAX_WORDS);
    enum verify_reason r;
    size_t na, nb;

    *out = (struct judge_result){.same = false, .score = 0, .why = "unsure"};
    if (!wa || !wb)
        goto done; /* unsure is different */
    na = words_of(a, alen, wa, JUDGE_MAX_WORDS);
    nb = words_of(b, blen, wb, JUDGE_MAX_WORDS);
    if (na == nb && memcmp(wa, wb, na * sizeof(*wa)) == 0) {
        *out = (struct judge_result){.same = true, .score = 1, .why = "identical"};
        goto done;
    }
    if (na == 0 || nb == 0) {
        out->why = "empty";
        goto done;
    }
    /* Before the cosine, which sorts the words in place. */
    if (!same_negations(wa, na, wb, nb)) {
        out->score = bag_cosine(wa, na, wb, nb);
        out->why = verify_reason_name(VERIFY_NEGATION);
        goto done;
    }
    out->score = bag_cosine(wa, na, wb, nb);
    r = verify_texts_with(a, alen, b, blen, t);
    if (asserts_differently(r)) {
        out->why = verify_reason_name(r);
        goto done;
    }
    out->same = out->score >= JUDGE_FLOOR;
    out->why = out->same ? "similar" : "dissimilar";
done:
    free(wa);
    free(wb);
}
