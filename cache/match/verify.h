/* verify.h - the hit verifier: cheap checks that a semantic candidate asks
 * the same question as the query.
 *
 * Embeddings blur exactly what answers depend on: "2+2" and "2+3", "turn on"
 * and "turn off", "can" and "cannot", "when did I" and "when should I" land
 * close together. Before a semantic candidate is served, these checks must
 * agree; a failed check is a miss, counted by reason. Pure functions; any
 * thread (a verify_query belongs to the lookup that made it).
 */
#ifndef PARROT_VERIFY_H
#define PARROT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

enum verify_reason {
    VERIFY_OK = 0,
    VERIFY_NUMBERS,  /* the numbers (and so quantities, dates) differ */
    VERIFY_NEGATION, /* one is negated and the other is not */
    VERIFY_OPPOSITE, /* one says on, up, add, my, ... where the other says off, down,
                        remove, your, ... */
    VERIFY_QUESTION, /* they ask different things: when vs where vs who vs why vs how much */
    VERIFY_ACTION,   /* one asks to change something (delete, cancel, increase, ...), the
                        other does not */
    VERIFY_TENSE,    /* one asks about the past (did, was, were) and the other does not */
    VERIFY_CONTENT,  /* a predicate word of one has no counterpart in the other, or
                        more were dropped than a paraphrase drops */
    VERIFY_ARGUMENT, /* an argument (name, place, colour, unit, time word, email, file,
                        quoted string, unknown word, ...) of one is not in the other */
    VERIFY_ROLE,     /* the same arguments in other roles: from X to Y vs from Y to X */
    VERIFY_REASONS   /* count */
};

/* The reason's name for metrics and logs ("numbers", ...). */
const char *verify_reason_name(enum verify_reason r);

/* VERIFY_OK when nothing tells the two questions apart, else the first check
 * that failed, in the order of enum verify_reason. */
enum verify_reason verify_texts(const char *query, size_t qlen, const char *cand, size_t clen);

struct wordvec;
struct wordnet;

/* The tables the verifier can use; any of them may be NULL. Both are only
 * read, so one struct may be shared by every thread. */
struct verify_tables {
    const struct wordvec *wv; /* word vectors: a word they know is a word, not
                                 a typo (they never pair two words) */
    const struct wordnet *wn; /* WordNet: synonyms and derivations account for
                                 predicate words, antonyms and co-hyponyms never
                                 do; instances, closed classes and unknown words
                                 are arguments */
};

/* verify_texts() with tables (t may be NULL: none). */
enum verify_reason verify_texts_with(const char *query, size_t qlen, const char *cand, size_t clen,
                                     const struct verify_tables *t);

/* What every question that passes the checks against text[0..len) shares
 * with it, as a key: its numbers (digits and number words) and its special
 * tokens (emails, URLs, file names, quoted strings, code, the operators
 * beside a number), which the checks require to be the same multiset on
 * both sides whatever the tables. 0 when it has none. Two questions with
 * different keys never pass, so an index may keep them apart; equal keys
 * promise nothing. */
uint64_t verify_group(const char *text, size_t len);

/* A lookup's question, compared with each of its candidates in turn: what
 * the checks need of the question is worked out once, on the first
 * candidate that gets that far. One thread at a time. Each thread that
 * checks candidates also keeps what the last few candidate texts it saw
 * alone tell (about 72 KB, freed when the thread ends): the entry every
 * paraphrase of a question finds is worked out once, not once a lookup. */
struct verify_query;
struct embed_word;

/* query[0..qlen), which embed_split() has already split into qw[0..nq)
 * (the lookup splits its question once for the embedder and the verifier;
 * both must outlive the query), with tables t (may be NULL). NULL when out
 * of memory. Freed by the thread that made it. */
struct verify_query *verify_query_new(const char *query, size_t qlen, const struct embed_word *qw,
                                      size_t nq, const struct verify_tables *t);
void verify_query_free(struct verify_query *q); /* NULL is a no-op */

/* verify_group() of the query, with the parts of it the checks need next
 * worked out on the way. */
uint64_t verify_query_group(struct verify_query *q);

/* verify_texts_with() of the query and cand[0..clen). */
enum verify_reason verify_query_check(struct verify_query *q, const char *cand, size_t clen);

/* verify_texts_with(), and for diagnostics the words that failed (an
 * argument without a counterpart; the predicate words left on each side,
 * "query words | candidate words") into why[0..cap). */
enum verify_reason verify_explain(const char *query, size_t qlen, const char *cand, size_t clen,
                                  const struct verify_tables *t, char *why, size_t cap);

/* verify_texts_with() with a word-vector table only (may be NULL). */
enum verify_reason verify_texts_wv(const char *query, size_t qlen, const char *cand, size_t clen,
                                   const struct wordvec *wv);

#endif
