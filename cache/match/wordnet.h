/* wordnet.h - a compiled Princeton WordNet 3.0: what the hit verifier needs to
 * tell a paraphrase (same synset, a derivation) from a different argument
 * (an antonym, a co-hyponym, an instance, a member of a closed class).
 *
 * The table is made once at set-up time from Debian's wordnet-base files
 * (deploy/fetch-wordnet.sh runs deploy/wordnet_convert) and only read
 * afterwards; its format is written out at the top of cache/match/wordnet.c.
 *
 * Words are given as they occur in text: any case, multiword lemmas with
 * spaces or underscores ("New York", "day_of_the_week"). Every query first
 * reduces each word to the lemmas WordNet knows for it (the exception lists,
 * then the detachment rules: "wrote" -> "write", "cities" -> "city"), and is
 * true when any lemma of one word relates so to any lemma of the other.
 * After wordnet_load() returns, the table is only read: any thread.
 */
#ifndef PARROT_WORDNET_H
#define PARROT_WORDNET_H

#include <stdbool.h>
#include <stddef.h>

#define WORDNET_WORD_MAX 80 /* longer words are not in the table */

/* Parts of speech, as stored (adjective satellites are adjectives). */
enum wordnet_pos { WORDNET_ANY = 0, WORDNET_NOUN, WORDNET_VERB, WORDNET_ADJ, WORDNET_ADV };

/* The closed classes wordnet_closed_class() knows, by category synset. */
enum wordnet_class {
    WORDNET_CLASS_NONE = -1,
    WORDNET_CLASS_COLOR = 0, /* color.n.01 */
    WORDNET_CLASS_LANGUAGE,  /* language.n.01 */
    WORDNET_CLASS_COUNTRY,   /* country.n.01 (a nation), country.n.02 (its territory) */
    WORDNET_CLASS_MONTH,     /* month.n.01, month.n.02 */
    WORDNET_CLASS_WEEKDAY,   /* day_of_the_week.n.01 */
    WORDNET_CLASS_UNIT,      /* unit_of_measurement.n.01 */
    WORDNET_CLASSES
};

struct wordnet;

/* Loads the table at path in one read. Returns 0, -ENOENT when there is no
 * file, or -EINVAL (with a reason in err) when the file is not a valid table
 * (bad magic, version, size, checksum or an index out of range: every index
 * is checked here, so the queries need not); other negative errnos for I/O
 * and memory. */
int wordnet_load(const char *path, struct wordnet **out, char *err, size_t errlen);

/* wordnet_free(NULL) is a no-op. */
void wordnet_free(struct wordnet *wn);

size_t wordnet_lemma_count(const struct wordnet *wn);
size_t wordnet_synset_count(const struct wordnet *wn);

/* The lemmas WordNet knows for word w[0..n) as part of speech pos (or any):
 * the word itself, its exception-list bases, then the bases the detachment
 * rules give. Up to max distinct names (pointers into the table, valid until
 * wordnet_free) go to out; returns how many. */
size_t wordnet_lemmatise(const struct wordnet *wn, const char *w, size_t n, enum wordnet_pos pos,
                         const char **out, size_t max);

/* a and b share a synset that is among the first rank senses of its part
 * of speech for both (any sense when rank is 0): synonyms in what the words
 * mostly mean. "author" / "writer" and "buy" / "purchase" are, at rank 2;
 * "bill" / "card" share only a late sense ("menu") and are not. */
bool wordnet_synonyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                      size_t blen, unsigned rank);

/* As wordnet_synonyms, with a rank for each part of speech (indexed by
 * enum wordnet_pos; WORDNET_ANY's is not used, 0 leaves a part out). */
bool wordnet_synonyms_ranked(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                             size_t blen, const unsigned rank[WORDNET_ADV + 1]);

/* a and b are linked by a derivational pointer (+): "write" / "writer". */
bool wordnet_derivationally_related(const struct wordnet *wn, const char *a, size_t alen,
                                    const char *b, size_t blen);

/* a and b are antonyms (!): "safe" / "unsafe". */
bool wordnet_antonyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                      size_t blen);

/* One of a and b is an adjective and the other the noun it is a value of,
 * its attribute (=): "tall" / "height", "old" / "age", "far" / "distance".
 * False with a table of version 1, which has no attributes. */
bool wordnet_attribute(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                       size_t blen);

/* Some synset of a and some other synset of b share a direct hypernym (or
 * instance hypernym), and a and b share no synset: "germany" / "france",
 * "blue" / "green". */
bool wordnet_cohyponyms(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                        size_t blen);

/* A verb sense of one of a and b is the other's, or a kind of it within
 * depth hypernym steps (@): "erase" / "remove", "reduce" / "decrease".
 * Only the first rank senses of each part of speech count (all when 0):
 * "list" is a kind of "number" only in a late sense ("enumerate").
 * Verbs only: two nouns so related are two things. */
bool wordnet_verb_hypernym(const struct wordnet *wn, const char *a, size_t alen, const char *b,
                           size_t blen, unsigned depth, unsigned rank);

/* Some noun sense of w is an instance (@i): a named thing, "Germany". */
bool wordnet_is_instance(const struct wordnet *wn, const char *w, size_t n);

/* The first sense WordNet lists for w (or, when w is not a lemma itself,
 * for its first base) is a noun instance: "paris", "tokyo", but not "set"
 * (Set, the Egyptian god, is a later sense of a verb first). */
bool wordnet_instance_first(const struct wordnet *wn, const char *w, size_t n);

/* How many senses WordNet lists for w as part of speech pos (any: all),
 * over the lemmas w reduces to. */
size_t wordnet_sense_count(const struct wordnet *wn, const char *w, size_t n, enum wordnet_pos pos);

/* The closed class some noun sense of w falls under (a hyponym or instance,
 * at any depth, of the class's synset), or WORDNET_CLASS_NONE. */
enum wordnet_class wordnet_closed_class(const struct wordnet *wn, const char *w, size_t n);

static inline bool wordnet_in_closed_class(const struct wordnet *wn, const char *w, size_t n)
{
    return wordnet_closed_class(wn, w, n) != WORDNET_CLASS_NONE;
}

/* "color", "language", ... for logs and tests. */
const char *wordnet_class_name(enum wordnet_class c);

#endif
