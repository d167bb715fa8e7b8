/* wordvec.c - the word-vector table; see wordvec.h for the file format.
 *
 * The file is read whole into one buffer and checked before anything in it
 * is used; lookups go through an open-addressing hash of the words. After
 * wordvec_load() returns, the table is only read: any thread.
 */
#include "cache/match/wordvec.h"

#include "cache/base/hash.h"
#include "cache/base/le.h"
#include "cache/base/nameix.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC   "PRWV"
#define VERSION 1
#define HEADER  32

struct wordvec {
    uint8_t *buf; /* the whole file */
    unsigned dim;
    size_t n;
    float pc[WORDVEC_MAX_DIM];
    const int8_t *vec;
    const char **word; /* into buf */
    float *scale;
    float *norm;      /* |vec| in int8 units, for cosines */
    struct nameix ix; /* the words' indexes by word */
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
    return hash_fnv(HASH_FNV_OFFSET, p, n);
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = le_get32(p);
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    le_put32(p, u);
}

/* nameix_name_fn over the words. */
static const char *word_of(const void *ctx, uint32_t i)
{
    const struct wordvec *t = ctx;

    return t->word[i];
}

long wordvec_find(const struct wordvec *t, const char *w, size_t n)
{
    return nameix_find(&t->ix, w, n, word_of, t);
}

void wordvec_free(struct wordvec *t)
{
    if (!t)
        return;
    free(t->buf);
    free(t->word);
    free(t->scale);
    free(t->norm);
    nameix_free(&t->ix);
    free(t);
}

/* Checks and indexes t->buf[0..len). Returns 0 or -EINVAL with err set. */
static int parse(struct wordvec *t, size_t len, char *err, size_t errlen)
{
    const uint8_t *p = t->buf;
    size_t words_len, off, size;
    const char *w;
    double pn = 0;

    if (len < HEADER || memcmp(p, MAGIC, 4) != 0) {
        snprintf(err, errlen, "not a word-vector table (bad magic)");
        return -EINVAL;
    }
    if (le_get32(p + 4) != VERSION) {
        snprintf(err, errlen, "unsupported version %u", (unsigned)le_get32(p + 4));
        return -EINVAL;
    }
    t->dim = le_get32(p + 8);
    t->n = le_get32(p + 12);
    words_len = le_get32(p + 16);
    if (t->dim < 1 || t->dim > WORDVEC_MAX_DIM || t->n < 1 || t->n > WORDVEC_MAX_WORDS) {
        snprintf(err, errlen, "bad dimension %u or word count %zu", t->dim, t->n);
        return -EINVAL;
    }
    size = HEADER + 4 * (size_t)t->dim + 4 * t->n + t->n * t->dim + words_len;
    if (size != len) {
        snprintf(err, errlen, "size %zu, header says %zu", len, size);
        return -EINVAL;
    }
    if (fnv(p + HEADER, len - HEADER) != le_get64(p + 24)) {
        snprintf(err, errlen, "checksum mismatch");
        return -EINVAL;
    }
    off = HEADER;
    for (unsigned k = 0; k < t->dim; k++, off += 4) {
        t->pc[k] = get_f32(p + off);
        pn += (double)t->pc[k] * t->pc[k];
    }
    if (!(fabs(pn - 1) < 1e-3)) {
        snprintf(err, errlen, "common direction is not unit length");
        return -EINVAL;
    }
    t->word = malloc(t->n * sizeof(*t->word));
    t->scale = malloc(t->n * sizeof(*t->scale));
    t->norm = malloc(t->n * sizeof(*t->norm));
    if (!t->word || !t->scale || !t->norm || nameix_init(&t->ix, t->n) != 0)
        return -ENOMEM;
    for (size_t i = 0; i < t->n; i++, off += 4) {
        t->scale[i] = get_f32(p + off);
        if (!isfinite(t->scale[i]) || t->scale[i] < 0) {
            snprintf(err, errlen, "bad scale of word %zu", i);
            return -EINVAL;
        }
    }
    t->vec = (const int8_t *)(p + off);
    for (size_t i = 0; i < t->n; i++) {
        double s = 0;
        for (unsigned k = 0; k < t->dim; k++)
            s += (double)t->vec[i * t->dim + k] * t->vec[i * t->dim + k];
        t->norm[i] = (float)sqrt(s);
    }
    off += t->n * t->dim;
    w = (const char *)p + off;
    for (size_t i = 0; i < t->n; i++) {
        const char *end = memchr(w, '\0', (size_t)((const char *)p + len - w));
        size_t wl = end ? (size_t)(end - w) : 0;
        if (!end || wl == 0 || wl > WORDVEC_WORD_MAX) {
            snprintf(err, errlen, "bad word list at word %zu", i);
            return -EINVAL;
        }
        t->word[i] = w;
        if (!nameix_add(&t->ix, (uint32_t)i, word_of, t)) {
            snprintf(err, errlen, "word %zu (%s) repeated", i, w);
            return -EINVAL;
        }
        w = end + 1;
    }
    if (w != (const char *)p + len) {
        snprintf(err, errlen, "trailing bytes after the word list");
        return -EINVAL;
    }
    return 0;
}

int wordvec_load(const char *path, struct wordvec **out, char *err, size_t errlen)
{
    struct wordvec *t = calloc(1, sizeof(*t));
    FILE *f = fopen(path, "rb");
    long len;
    int rc = -EIO;

    *out = NULL;
    snprintf(err, errlen, "%s", "");
    if (!t || !f) {
        rc = !t ? -ENOMEM : -errno;
        snprintf(err, errlen, "%s", strerror(-rc));
        goto fail;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read");
        goto fail;
    }
    if ((unsigned long)len > 2ul * WORDVEC_MAX_WORDS * (WORDVEC_MAX_DIM + 64)) {
        rc = -EINVAL;
        snprintf(err, errlen, "file too large");
        goto fail;
    }
    t->buf = malloc(len ? (size_t)len : 1);
    if (!t->buf) {
        rc = -ENOMEM;
        goto fail;
    }
    if (fread(t->buf, 1, (size_t)len, f) != (size_t)len) {
        snprintf(err, errlen, "short read");
        goto fail;
    }
    if ((rc = parse(t, (size_t)len, err, errlen)) != 0)
        goto fail;
    fclose(f);
    *out = t;
    return 0;
fail:
    if (f)
        fclose(f);
    wordvec_free(t);
    return rc;
}

int wordvec_write(const char *path, unsigned dim, size_t nwords, const char *const *words,
                  const float *vecs, const float *pc)
{
    size_t words_len = 0, size, off;
    uint8_t *b;
    double pn = 0;
    FILE *f;
    int rc = 0;

    if (dim < 1 || dim > WORDVEC_MAX_DIM || nwords < 1 || nwords > WORDVEC_MAX_WORDS)
        return -EINVAL;
    for (size_t i = 0; i < nwords; i++) {
        size_t wl = strlen(words[i]);
        if (wl == 0 || wl > WORDVEC_WORD_MAX)
            return -EINVAL;
        words_len += wl + 1;
    }
    for (unsigned k = 0; k < dim; k++)
        pn += (double)pc[k] * pc[k];
    if (pn <= 0)
        return -EINVAL;
    pn = sqrt(pn);
    size = HEADER + 4 * (size_t)dim + 4 * nwords + nwords * dim + words_len;
    if (!(b = calloc(1, size)))
        return -ENOMEM;
    memcpy(b, MAGIC, 4);
    le_put32(b + 4, VERSION);
    le_put32(b + 8, dim);
    le_put32(b + 12, (uint32_t)nwords);
    le_put32(b + 16, (uint32_t)words_len);
    off = HEADER;
    for (unsigned k = 0; k < dim; k++, off += 4)
        put_f32(b + off, (float)(pc[k] / pn));
    for (size_t i = 0; i < nwords; i++) {
        const float *v = vecs + i * dim;
        float m = 0, s;
        for (unsigned k = 0; k < dim; k++)
            m = fmaxf(m, fabsf(v[k]));
        s = m / 127.0f;
        put_f32(b + HEADER + 4 * (size_t)dim + 4 * i, s);
        for (unsigned k = 0; k < dim; k++)
            b[HEADER + 4 * (size_t)dim + 4 * nwords + i * dim + k] =
                (uint8_t)(int8_t)(s > 0 ? lrintf(v[k] / s) : 0);
    }
    off = HEADER + 4 * (size_t)dim + 4 * nwords + nwords * dim;
    for (size_t i = 0; i < nwords; i++) {
        size_t wl = strlen(words[i]) + 1;
        memcpy(b + off, words[i], wl);
        off += wl;
    }
    le_put64(b + 24, fnv(b + HEADER, size - HEADER));
    f = fopen(path, "wb");
    if (!f || fwrite(b, 1, size, f) != size)
        rc = -EIO;
    if (f && fclose(f) != 0)
        rc = -EIO;
    free(b);
    return rc;
}

unsigned wordvec_dim(const struct wordvec *t)
{
    return t->dim;
}

size_t wordvec_count(const struct wordvec *t)
{
    return t->n;
}

const float *wordvec_pc(const struct wordvec *t)
{
    return t->pc;
}

/* Sixteen lanes at a time, converted before any is added: then gcc -O2 and
 * clang see that the stores cannot change the bytes still to be read (int8
 * may alias a float) and turn both inner loops into vector instructions,
 * half the instructions of one lane at a time. Each lane is rounded as the
 * plain loop rounds it, so the sums are the same bits. The embedder adds a
 * vector per word of every question it embeds. */
void wordvec_add(const struct wordvec *t, long i, float weight, float *out)
{
    const int8_t *v = t->vec + (size_t)i * t->dim;
    float s = weight * t->scale[i];
    size_t k = 0, n = t->dim;

    for (; k + 16 <= n; k += 16) {
        float x[16];
        for (size_t j = 0; j < 16; j++)
            x[j] = (float)v[k + j];
        for (size_t j = 0; j < 16; j++)
            out[k + j] += s * x[j];
    }
    for (; k < n; k++)
        out[k] += s * (float)v[k];
}

float wordvec_cos(const struct wordvec *t, long i, long j)
{
    const int8_t *a = t->vec + (size_t)i * t->dim, *b = t->vec + (size_t)j * t->dim;
    int32_t dot = 0;

    if (t->norm[i] == 0 || t->norm[j] == 0)
        return 0;
    for (unsigned k = 0; k < t->dim; k++)
        dot += (int32_t)a[k] * b[k];
    return (float)dot / (t->norm[i] * t->norm[j]);
}
