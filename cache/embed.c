/* embed.c - the built-in embedder.
 *
 * A question is lower-cased and split into words; each word is lightly
 * stemmed ("questions" and "question" meet). Three kinds of feature are
 * hashed into a fixed number of signed buckets (the hashing trick):
 *   - the word itself, weighted 1, or 0.15 for a function word;
 *   - each pair of adjacent content words, weighted 0.5: order carries
 *     meaning that a bag of words loses ("flight to paris" vs "from");
 *   - the character 3-grams of each content word, weighted so that together
 *     they count as much as half the word: typos and inflections still meet.
 * The vector is L2-normalised, so a dot product is the cosine. Embedding a
 * 20-word question touches a few hundred buckets: microseconds.
 */
#include "cache/embed.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUILTIN_DIM   384
#define MAX_WORDS     256
#define MAX_WORD      48
#define W_STOP        0.15f
#define W_PAIR        0.5f
#define W_GRAMS_TOTAL 0.5f

struct embedder {
    const char *name;
    unsigned dim;
    float threshold;
};

static const char *const stopwords[] = {
    "a",     "an",   "the",   "is",     "are",   "was",  "were",  "be",    "been",   "am",
    "do",    "does", "did",   "i",      "me",    "my",   "you",   "your",  "we",     "our",
    "it",    "its",  "of",    "to",     "in",    "on",   "at",    "for",   "and",    "or",
    "with",  "that", "this",  "these",  "those", "can",  "could", "would", "should", "will",
    "shall", "may",  "might", "please", "tell",  "what", "whats", "how",   "there",  "about",
    "so",    "if",   "as",    "by",     "just",  "any",  "some",  "have",  "has",    "had",
    "get",   "let",  "know",  "want",   "need",  "like", "hi",    "hello", "hey",    "thanks",
};

static uint64_t fnv1a(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    /* FNV's low bits are weak for short keys; finish with a mixer. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void add(float *v, unsigned dim, uint64_t h, float w)
{
    v[h % dim] += (h >> 63) ? -w : w;
}

static bool is_stop(const char *w, size_t n)
{
    for (size_t i = 0; i < sizeof(stopwords) / sizeof(stopwords[0]); i++)
        if (strlen(stopwords[i]) == n && memcmp(stopwords[i], w, n) == 0)
            return true;
    return false;
}

static bool ends(const char *w, size_t n, const char *suf)
{
    size_t s = strlen(suf);
    return n > s && memcmp(w + n - s, suf, s) == 0;
}

/* A few English suffix rules; enough to merge plurals and verb forms. */
static size_t stem(char *w, size_t n)
{
    if (n > 4 && ends(w, n, "ies")) {
        w[n - 3] = 'y';
        return n - 2;
    }
    if (n > 5 && ends(w, n, "sses"))
        return n - 2;
    if (n > 5 && ends(w, n, "ing"))
        return n - 3;
    if (n > 4 && ends(w, n, "ed"))
        return n - 2;
    if (n > 3 && ends(w, n, "s") && !ends(w, n, "ss") && !ends(w, n, "us"))
        return n - 1;
    return n;
}

struct word {
    char s[MAX_WORD + 2];
    size_t n;
    bool stop;
};

/* Splits text into lower-case words of letters, digits and UTF-8 bytes. */
static size_t tokenize(const char *text, size_t len, struct word *words)
{
    size_t nw = 0, i = 0;

    while (i < len && nw < MAX_WORDS) {
        struct word *w = &words[nw];
        w->n = 0;
        while (i < len && !(isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80))
            i++;
        while (i < len &&
               (isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80 ||
                (text[i] == '\'' && i + 1 < len && isalpha((unsigned char)text[i + 1])))) {
            if (text[i] != '\'' && w->n < MAX_WORD)
                w->s[w->n++] = (char)tolower((unsigned char)text[i]);
            i++;
        }
        if (w->n == 0)
            continue;
        w->stop = is_stop(w->s, w->n);
        if (!w->stop)
            w->n = stem(w->s, w->n);
        w->s[w->n] = '\0';
        nw++;
    }
    return nw;
}

int embedder_embed(const struct embedder *e, const char *text, size_t len, float *v)
{
    struct word words[MAX_WORDS];
    size_t nw = tokenize(text, len, words);
    const struct word *prev = NULL;
    double norm = 0;

    memset(v, 0, sizeof(float) * e->dim);
    for (size_t i = 0; i < nw; i++) {
        const struct word *w = &words[i];
        char g[MAX_WORD + 4];
        size_t ng;

        add(v, e->dim, fnv1a(w->s, w->n, 1), w->stop ? W_STOP : 1.0f);
        if (w->stop)
            continue;
        if (prev) {
            char pair[2 * MAX_WORD + 4];
            size_t pn = prev->n;
            memcpy(pair, prev->s, pn);
            pair[pn] = ' ';
            memcpy(pair + pn + 1, w->s, w->n);
            add(v, e->dim, fnv1a(pair, pn + 1 + w->n, 2), W_PAIR);
        }
        prev = w;
        /* "^word$" framed, so prefixes and suffixes are features too. */
        g[0] = '^';
        memcpy(g + 1, w->s, w->n);
        g[w->n + 1] = '$';
        ng = w->n; /* a framed word of n letters has n 3-grams */
        for (size_t k = 0; k + 3 <= w->n + 2; k++)
            add(v, e->dim, fnv1a(g + k, 3, 3), W_GRAMS_TOTAL / (float)ng);
    }
    for (unsigned i = 0; i < e->dim; i++)
        norm += (double)v[i] * v[i];
    if (norm == 0)
        return -EINVAL;
    norm = 1.0 / sqrt(norm);
    for (unsigned i = 0; i < e->dim; i++)
        v[i] = (float)(v[i] * norm);
    return 0;
}

int embed_builtin_new(struct embedder **out)
{
    struct embedder *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    e->name = "builtin";
    e->dim = BUILTIN_DIM;
    e->threshold = 0.80f;
    *out = e;
    return 0;
}

void embedder_free(struct embedder *e)
{
    free(e);
}

const char *embedder_name(const struct embedder *e)
{
    return e->name;
}

unsigned embedder_dim(const struct embedder *e)
{
    return e->dim;
}

float embedder_threshold(const struct embedder *e)
{
    return e->threshold;
}
