/* verify.c - the hit verifier; see verify.h.
 *
 * Numbers: every run of digits (with its decimal part) in the query must
 * appear in the candidate as often, and the other way round. "3 pm" vs
 * "4 pm", "2+2" vs "2+3", "iPhone 14" vs "iPhone 15" all fail here.
 *
 * Negation: the number of negating words must have the same parity, so "can
 * I" vs "can't I" fails while a double negative on both sides passes.
 */
#include "cache/verify.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define MAX_NUMS 32
#define NUM_LEN  24

static const char *const names[VERIFY_REASONS] = {"ok", "numbers", "negation"};

const char *verify_reason_name(enum verify_reason r)
{
    return (unsigned)r < VERIFY_REASONS ? names[r] : "?";
}

struct nums {
    char v[MAX_NUMS][NUM_LEN];
    int n;
    bool overflow;
};

/* Collects digit runs, "3.5" as one number, "1,000" as "1000". */
static void numbers(const char *s, size_t len, struct nums *out)
{
    out->n = 0;
    out->overflow = false;
    for (size_t i = 0; i < len;) {
        size_t k = 0;
        char *d;

        if (!isdigit((unsigned char)s[i])) {
            i++;
            continue;
        }
        if (out->n == MAX_NUMS) {
            out->overflow = true;
            return;
        }
        d = out->v[out->n];
        while (i < len && k + 1 < NUM_LEN) {
            char ch = s[i];
            if (isdigit((unsigned char)ch)) {
                d[k++] = ch;
                i++;
                continue;
            }
            if ((ch != '.' && ch != ',') || i + 1 >= len || !isdigit((unsigned char)s[i + 1]))
                break;
            if (ch == '.')
                d[k++] = '.'; /* a decimal point is kept; a thousands comma is not */
            i++;
        }
        while (i < len && isdigit((unsigned char)s[i]))
            i++; /* an absurdly long number: its prefix stands for it */
        d[k] = '\0';
        out->n++;
    }
}

/* Same multiset of numbers on both sides. */
static bool same_numbers(const struct nums *a, const struct nums *b)
{
    bool used[MAX_NUMS] = {false};

    if (a->n != b->n || a->overflow != b->overflow)
        return false;
    for (int i = 0; i < a->n; i++) {
        int j;
        for (j = 0; j < b->n; j++)
            if (!used[j] && strcmp(a->v[i], b->v[j]) == 0)
                break;
        if (j == b->n)
            return false;
        used[j] = true;
    }
    return true;
}

static bool negating(const char *w, size_t n)
{
    static const char *const neg[] = {"not",    "no",      "never", "none",    "nothing",
                                      "cannot", "without", "nor",   "neither", NULL};

    if (n > 3 && strncasecmp(w + n - 3, "n't", 3) == 0)
        return true;
    if (n > 2 && strncasecmp(w + n - 2, "nt", 2) == 0) {
        /* "dont", "cant", "wont": apostrophes are often dropped. */
        static const char *const bare[] = {"dont",     "cant",    "wont",  "isnt",   "arent",
                                           "doesnt",   "didnt",   "wasnt", "werent", "couldnt",
                                           "shouldnt", "wouldnt", "hasnt", "havent", NULL};
        for (int i = 0; bare[i]; i++)
            if (strlen(bare[i]) == n && strncasecmp(w, bare[i], n) == 0)
                return true;
    }
    for (int i = 0; neg[i]; i++)
        if (strlen(neg[i]) == n && strncasecmp(w, neg[i], n) == 0)
            return true;
    return false;
}

static int negations(const char *s, size_t len)
{
    int count = 0;

    for (size_t i = 0; i < len;) {
        size_t start;
        if (!isalpha((unsigned char)s[i])) {
            i++;
            continue;
        }
        start = i;
        while (i < len && (isalpha((unsigned char)s[i]) || s[i] == '\''))
            i++;
        count += negating(s + start, i - start);
    }
    return count;
}

enum verify_reason verify_texts(const char *q, size_t ql, const char *c, size_t cl)
{
    struct nums a, b;

    numbers(q, ql, &a);
    numbers(c, cl, &b);
    if (!same_numbers(&a, &b))
        return VERIFY_NUMBERS;
    if ((negations(q, ql) & 1) != (negations(c, cl) & 1))
        return VERIFY_NEGATION;
    return VERIFY_OK;
}
