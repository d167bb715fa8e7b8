/* judge.h - do two answers to one question say the same thing?
 *
 * The audit of semantic hits (docs/audit.md) asks the provider again and
 * compares its fresh answer with the one the cache served. Generated text
 * is rarely identical twice, so the judge accepts a rewording, but only a
 * conservative one: the two answers are the same when they are identical
 * after normalisation (case, whitespace, punctuation); otherwise when the
 * hit verifier's argument checks (numbers, negation, polarity, names and
 * other arguments, roles; cache/match/verify.h) find nothing that tells
 * them apart AND their word-count cosine is at least JUDGE_FLOOR. Unsure
 * is different: a wrong "same" hides a wrong hit, a wrong "different" only
 * costs a cache entry.
 *
 * Pure functions; any thread.
 */
#ifndef PARROT_JUDGE_H
#define PARROT_JUDGE_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/match/verify.h"

/* The least word-count cosine of two answers judged the same (when they are
 * not identical); chosen on test/data/judge_pairs.tsv, see docs/audit.md. */
#define JUDGE_FLOOR 0.6f
/* Words of each answer that count towards the cosine; the rest is ignored. */
#define JUDGE_MAX_WORDS 4096

struct judge_result {
    bool same;
    float score;     /* the word-count cosine, 0..1 (1 when identical) */
    const char *why; /* "identical", "similar", "dissimilar", "empty" or a
                        verify_reason_name(): static text */
};

/* Compare answers a[0..alen) and b[0..blen) (UTF-8, any length) with the
 * verifier's tables t (may be NULL). */
void judge_answers(const char *a, size_t alen, const char *b, size_t blen,
                   const struct verify_tables *t, struct judge_result *out);

#endif
