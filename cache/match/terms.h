/* terms.h - the lexical half of the built-in lookup score: TF-IDF over
 * word n-grams, with document frequencies taken from the cache itself.
 *
 * The built-in embedder's vector is fixed when an entry is stored, so its
 * word weights come from a general prior (word frequency in English). What
 * makes a word informative depends on what a cache holds, though: in a
 * banking assistant's cache "account" says little, in a travel one a lot.
 * So each partition keeps the document frequency of every term of its
 * entries, and a lookup rescores its nearest candidates with the cosine of
 * TF-IDF vectors weighed by the partition's current counts. Terms are the
 * stems of every word (embed_split) and of every run of two and three
 * adjacent words: the runs keep the order a bag of words loses ("meeting
 * schedule" vs "schedule a meeting", "call me" vs "call tom").
 *
 * Weights follow the usual smoothed form: a term seen tf times in a text
 * weighs (1 + ln tf) * (1 + ln((1 + N) / (1 + df))), N the partition's
 * texts and df those holding the term; vectors are compared by cosine.
 * Terms are 64-bit hashes (a collision merges two terms' counts; at 2^-64
 * per pair, never in practice).
 *
 * Threads: a termstats is changed under its owner's write lock and read
 * under its read lock; nothing here locks.
 */
#ifndef PARROT_TERMS_H
#define PARROT_TERMS_H

#include <stddef.h>
#include <stdint.h>

#define TERMS_WORDS 96                /* words of a text that count; the rest is ignored */
#define TERMS_MAX   (3 * TERMS_WORDS) /* terms of one text, at most */

/* The terms of text[0..len), sorted (a repeated term appears once per
 * occurrence). Returns how many were written to out[TERMS_MAX]. */
size_t terms_of(const char *text, size_t len, uint64_t *out);

/* terms_of() of a text embed_split() has already split into w[0..n) (the
 * first TERMS_WORDS count). */
struct embed_word;
size_t terms_of_words(const struct embed_word *w, size_t nw, uint64_t *out);

/* Document frequencies: how many texts hold each term. */
struct termstats;

struct termstats *termstats_new(void); /* NULL when out of memory */
void termstats_free(struct termstats *st);

/* Count a text's terms (sorted, as terms_of gives them) in, or out again.
 * termstats_add returns 0 or -ENOMEM (nothing is then counted);
 * termstats_remove must get exactly the terms that were added. */
int termstats_add(struct termstats *st, const uint64_t *t, size_t n);
void termstats_remove(struct termstats *st, const uint64_t *t, size_t n);

size_t termstats_texts(const struct termstats *st);  /* N */
size_t termstats_memory(const struct termstats *st); /* bytes held */

/* A text's TF-IDF vector under st's counts, unit length. Terms that no
 * counted text holds are left out (a query's new words and word runs would
 * otherwise weigh most and only lower every candidate's score alike; what
 * the candidate lacks is the verifier's to judge). */
struct term_weights {
    size_t n;
    uint64_t term[TERMS_MAX];
    float w[TERMS_MAX];
};

void terms_weigh(const struct termstats *st, const uint64_t *t, size_t n, struct term_weights *out);

/* The cosine of two weighed texts, in [0, 1]. */
float terms_cos(const struct term_weights *a, const struct term_weights *b);

#endif
