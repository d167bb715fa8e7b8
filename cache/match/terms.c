/* terms.c - word n-gram terms and their document frequencies; see terms.h.
 *
 * The counts live in an open-addressing table of (term, count) with linear
 * probing; a term whose count drops to zero is removed by shifting the rest
 * of its probe run back (no tombstones, so a long-lived cache that sees
 * terms come and go never slows down). The table doubles before it is half
 * full and halves when it falls under an eighth full, so its memory follows
 * the entries as they are evicted.
 */
#include "cache/match/terms.h"

#include "cache/match/embed.h"
#include "cache/base/hash.h"
#include "cache/base/prefetch.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NGRAM     3
#define MIN_SLOTS 64

struct slot {
    uint64_t term; /* 0: empty */
    uint32_t count;
};

struct termstats {
    struct slot *slots;
    size_t mask;  /* slots - 1 */
    size_t used;  /* distinct terms */
    size_t texts; /* N */
};

static uint64_t feed(uint64_t h, const char *s)
{
    /* A separator after each word, so that "ab c" and "a bc" differ. */
    return hash_fnv(hash_fnv_str(h, s), "\x1f", 1);
}

static uint64_t finish(uint64_t h)
{
    h = hash_mix(h);  /* the table indexes by the low bits */
    return h ? h : 1; /* 0 marks an empty slot */
}

/* Runs of eight sorted by insertion, then merged pairwise through a
 * scratch buffer: a text's terms are a few dozen to TERMS_MAX, where
 * qsort()'s comparator calls and scratch buffer cost more than the sorting
 * (7% of a semantic hit on a 20-word question), and a Shell sort still
 * makes about twice the comparisons of this. */
#define SORT_RUN 8

static void sort_u64(uint64_t *v, size_t n)
{
    uint64_t tmp[TERMS_MAX], *a = v, *b = tmp;

    for (size_t lo = 0; lo < n; lo += SORT_RUN) {
        size_t hi = lo + SORT_RUN < n ? lo + SORT_RUN : n;
        for (size_t i = lo + 1; i < hi; i++) {
            uint64_t x = v[i];
            size_t j = i;
            for (; j > lo && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
    }
    for (size_t w = SORT_RUN; w < n; w *= 2) {
        uint64_t *t;
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = a[j] < a[i] ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        t = a;
        a = b;
        b = t;
    }
    if (a != v)
        memcpy(v, a, n * sizeof(*v));
}

size_t terms_of(const char *text, size_t len, uint64_t *out)
{
    struct embed_word w[TERMS_WORDS];

    return terms_of_words(w, embed_split(text, len, w, TERMS_WORDS), out);
}

size_t terms_of_words(const struct embed_word *w, size_t nw, uint64_t *out)
{
    size_t n = 0;

    if (nw > TERMS_WORDS)
        nw = TERMS_WORDS;
    for (size_t i = 0; i < nw; i++) {
        uint64_t h = HASH_FNV_OFFSET;
        /* Each start word opens one, two and three word runs; the run
         * length is part of the hash because every word adds a separator. */
        for (size_t g = 0; g < NGRAM && i + g < nw; g++) {
            h = feed(h, w[i + g].stem);
            out[n++] = finish(h);
        }
    }
    sort_u64(out, n);
    return n;
}

struct termstats *termstats_new(void)
{
    struct termstats *st = calloc(1, sizeof(*st));

    if (st && !(st->slots = calloc(MIN_SLOTS, sizeof(*st->slots)))) {
        free(st);
        return NULL;
    }
    if (st)
        st->mask = MIN_SLOTS - 1;
    return st;
}

void termstats_free(struct termstats *st)
{
    if (!st)
        return;
    free(st->slots);
    free(st);
}

/* Asks for the home slot of each of t[0..n) before any is read: in a
 * partition of tens of thousands of questions the table is tens of MB, and
 * each term's first probe misses every cache. Issued together, the misses
 * overlap instead of being waited for one after another: in one partition
 * filled by real misses, terms_weigh went from 5.6% to 2.9% of parrot's
 * samples (perf, docs/bench.md session 15). */
static void prefetch_terms(const struct termstats *st, const uint64_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        prefetch_read(&st->slots[t[i] & st->mask]);
}

static size_t find(const struct termstats *st, uint64_t term)
{
    size_t i = term & st->mask;

    while (st->slots[i].term && st->slots[i].term != term)
        i = (i + 1) & st->mask;
    return i;
}

/* Rehash into n slots (a power of two, more than twice the terms). */
static int resize(struct termstats *st, size_t n)
{
    size_t oldn = st->mask + 1;
    struct slot *old = st->slots, *ns = calloc(n, sizeof(*ns));

    if (!ns)
        return -ENOMEM;
    st->slots = ns;
    st->mask = n - 1;
    for (size_t i = 0; i < oldn; i++)
        if (old[i].term)
            ns[find(st, old[i].term)] = old[i];
    free(old);
    return 0;
}

/* Distinct terms of a sorted list, one at a time: *i is the next run. */
static bool next_term(const uint64_t *t, size_t n, size_t *i, uint64_t *term, size_t *tf)
{
    size_t j = *i;

    if (j >= n)
        return false;
    *term = t[j];
    while (j < n && t[j] == *term)
        j++;
    *tf = j - *i;
    *i = j;
    return true;
}

int termstats_add(struct termstats *st, const uint64_t *t, size_t n)
{
    size_t i = 0, tf, distinct = 0, slots = st->mask + 1;
    uint64_t term;

    /* Room first, so that a failure counts nothing. */
    while (next_term(t, n, &i, &term, &tf))
        distinct++;
    while ((st->used + distinct) * 2 > slots)
        slots *= 2;
    if (slots != st->mask + 1 && resize(st, slots) != 0)
        return -ENOMEM;
    prefetch_terms(st, t, n);
    i = 0;
    while (next_term(t, n, &i, &term, &tf)) {
        struct slot *s = &st->slots[find(st, term)];
        if (!s->term) {
            s->term = term;
            st->used++;
        }
        s->count++;
    }
    st->texts++;
    return 0;
}

/* Empty slot i, then move back every later entry of its probe run that
 * would no longer be found past the gap. */
static void take_out(struct termstats *st, size_t i)
{
    size_t j = i;

    for (;;) {
        size_t home;
        j = (j + 1) & st->mask;
        if (!st->slots[j].term)
            break;
        home = st->slots[j].term & st->mask;
        /* Slot j stays when its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        st->slots[i] = st->slots[j];
        i = j;
    }
    st->slots[i].term = 0;
    st->slots[i].count = 0;
    st->used--;
}

void termstats_remove(struct termstats *st, const uint64_t *t, size_t n)
{
    size_t i = 0, tf;
    uint64_t term;

    while (next_term(t, n, &i, &term, &tf)) {
        size_t k = find(st, term);
        if (!st->slots[k].term)
            continue; /* never added: nothing to undo */
        if (--st->slots[k].count == 0)
            take_out(st, k);
    }
    if (st->texts)
        st->texts--;
    /* Shrinking is only a saving: when it fails, the table stays as it is. */
    if (st->mask + 1 > MIN_SLOTS && st->used * 8 < st->mask + 1)
        resize(st, (st->mask + 1) / 2);
}

size_t termstats_texts(const struct termstats *st)
{
    return st->texts;
}

size_t termstats_memory(const struct termstats *st)
{
    return sizeof(*st) + (st->mask + 1) * sizeof(*st->slots);
}

/* Document counts below this have their idf kept, per thread: a lookup
 * weighs its question and every candidate against the same counts. */
#define IDF_MEMO 256

/* idf_memo[c]: the idf of a term in c texts out of n1 - 1 (n1 0: unset). An
 * idf depends on the two numbers alone, so a kept one is the same bits. */
static _Thread_local struct {
    float n1, idf;
} idf_memo[IDF_MEMO];

void terms_weigh(const struct termstats *st, const uint64_t *t, size_t n, struct term_weights *out)
{
    float n1 = (float)(st->texts + 1), norm = 0;
    size_t i = 0, tf;
    uint64_t term;

    out->n = 0;
    prefetch_terms(st, t, n);
    while (next_term(t, n, &i, &term, &tf)) {
        const struct slot *s = &st->slots[find(st, term)];
        float w, f;
        if (!s->term)
            continue; /* no stored text has it: it cannot match, so it has no say */
        if (s->count < IDF_MEMO && idf_memo[s->count].n1 == n1) {
            f = idf_memo[s->count].idf;
        } else {
            f = 1.0f + logf(n1 / (float)(s->count + 1));
            if (s->count < IDF_MEMO) {
                idf_memo[s->count].n1 = n1;
                idf_memo[s->count].idf = f;
            }
        }
        w = (tf == 1 ? 1.0f : 1.0f + logf((float)tf)) * f;
        out->term[out->n] = term;
        out->w[out->n++] = w;
        norm += w * w;
    }
    norm = norm > 0 ? 1.0f / sqrtf(norm) : 0;
    for (size_t k = 0; k < out->n; k++)
        out->w[k] *= norm;
}

float terms_cos(const struct term_weights *a, const struct term_weights *b)
{
    size_t i = 0, j = 0;
    float dot = 0;

    while (i < a->n && j < b->n) {
        if (a->term[i] < b->term[j]) {
            i++;
        } else if (a->term[i] > b->term[j]) {
            j++;
        } else {
            dot += a->w[i++] * b->w[j++];
        }
    }
    return dot > 1.0f ? 1.0f : dot;
}
